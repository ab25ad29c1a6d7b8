// Request refusal rules: every ambiguous or malformed head is refused before
// anything could be forwarded (tether runs Beast's parser, then check_request).
#include <gtest/gtest.h>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "tether/http/request_check.hpp"
#include "tether/http/strict_parser.hpp"

namespace {

using namespace tether;
namespace bhttp = boost::beast::http;

// What tether decides for raw request bytes: a parse failure is a 400 too.
http::RequestVerdict verdict(std::string_view raw, std::uint64_t max_body = 1 << 20) {
    http::StrictRequestParser<bhttp::empty_body> p;
    p.eager(false);
    boost::beast::error_code ec;
    p.put(boost::asio::buffer(raw.data(), raw.size()), ec);
    if (ec && ec != bhttp::error::need_more) return {errc::bad_request};
    if (!p.is_header_done()) return {errc::bad_request};
    return http::check_request(p.get(), max_body);
}

constexpr const char* kWsHeaders =
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

TEST(RequestCheck, PlainGetPasses) {
    EXPECT_EQ(verdict("GET / HTTP/1.1\r\nHost: a\r\n\r\n").error, errc::ok);
}

TEST(RequestCheck, ContentLengthWithTransferEncodingRefused) {
    EXPECT_EQ(verdict("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n")
                  .error,
              errc::bad_request);
    EXPECT_EQ(verdict("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                      "Content-Length: 5\r\n\r\n")
                  .error,
              errc::bad_request);
}

TEST(RequestCheck, DuplicateContentLengthRefused) {
    EXPECT_EQ(verdict("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
                  .error,
              errc::bad_request);
    EXPECT_EQ(verdict("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
                  .error,
              errc::bad_request);
}

TEST(RequestCheck, TransferEncodingOtherThanFinalChunkedRefused) {
    for (const char* te : {"gzip", "chunked, identity", "identity", "chunked, gzip", "xchunked"}) {
        const std::string raw = std::string("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ") +
                                te + "\r\n\r\n";
        EXPECT_EQ(verdict(raw).error, errc::bad_request) << te;
    }
    EXPECT_EQ(verdict("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n")
                  .error,
              errc::bad_request);
}

TEST(RequestCheck, ChunkedAloneAccepted) {
    EXPECT_EQ(verdict("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").error,
              errc::ok);
}

TEST(RequestCheck, HostMissingOrRepeatedRefused) {
    EXPECT_EQ(verdict("GET / HTTP/1.1\r\n\r\n").error, errc::bad_request);
    EXPECT_EQ(verdict("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").error, errc::bad_request);
    EXPECT_EQ(verdict("GET / HTTP/1.0\r\n\r\n").error, errc::ok);
}

// RFC 3986 reg-name / IPv4 / IP-literal characters and a port; anything
// else (space, "/", "@", "?", "#", "\\", controls, bytes past ASCII) refused.
TEST(RequestCheck, HostCharactersAsRfc3986) {
    const auto host = [](std::string_view h) {
        return verdict("GET / HTTP/1.1\r\nHost: " + std::string(h) + "\r\n\r\n").error;
    };
    EXPECT_EQ(host("Example-1.test:8080"), errc::ok);
    EXPECT_EQ(host("[::1]:443"), errc::ok);
    EXPECT_EQ(host("a_b~c!d$e&f'g(h)i*j+k,l;m=n%41"), errc::ok);
    EXPECT_EQ(host("zZ09"), errc::ok);
    for (const char* bad : {"a b", "a/b", "a@b", "a?b", "a#b", "a\\b", "a\tb", "a\x7f", "caf\xc3\xa9",
                            "a\xe9", "a\"b", "a<b", "a{b", "a^b", "a`b", "a|b"})
        EXPECT_EQ(host(bad), errc::bad_request) << bad;
}

TEST(RequestCheck, NonOriginTargetsRefused) {
    EXPECT_EQ(verdict("GET http://x/ HTTP/1.1\r\nHost: a\r\n\r\n").error, errc::bad_request);
    EXPECT_EQ(verdict("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n").error, errc::bad_request);
    EXPECT_EQ(verdict("GET * HTTP/1.1\r\nHost: a\r\n\r\n").error, errc::bad_request);
    EXPECT_EQ(verdict("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").error, errc::ok);
}

TEST(RequestCheck, BodyOverLimitIs413) {
    EXPECT_EQ(verdict("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n", 1000).error,
              errc::body_too_large);
    EXPECT_EQ(verdict("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n", 1000).error,
              errc::ok);
}

TEST(RequestCheck, ValidWebSocketUpgradeRecognised) {
    auto v = verdict(std::string("GET /ws HTTP/1.1\r\nHost: a\r\n") + kWsHeaders +
                     "Sec-WebSocket-Version: 13\r\n\r\n");
    EXPECT_EQ(v.error, errc::ok);
    EXPECT_TRUE(v.websocket_upgrade);
}

TEST(RequestCheck, WebSocketWrongVersionIs426) {
    auto v = verdict(std::string("GET /ws HTTP/1.1\r\nHost: a\r\n") + kWsHeaders +
                     "Sec-WebSocket-Version: 8\r\n\r\n");
    EXPECT_EQ(v.error, errc::upgrade_required);
}

TEST(RequestCheck, WebSocketBadKeyOrMethodIs400) {
    EXPECT_EQ(verdict("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n")
                  .error,
              errc::bad_request);
    EXPECT_EQ(verdict(std::string("POST /ws HTTP/1.1\r\nHost: a\r\n") + kWsHeaders +
                      "Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n")
                  .error,
              errc::bad_request);
}

TEST(RequestCheck, WebSocketUpgradeWithoutConnectionUpgradeRefused) {
    EXPECT_EQ(verdict("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n")
                  .error,
              errc::bad_request);
    EXPECT_EQ(verdict("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                      "Connection: keep-alive\r\n\r\n")
                  .error,
              errc::bad_request);
}

TEST(RequestCheck, OtherUpgradeIsPlainRequest) {
    auto v = verdict("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n");
    EXPECT_EQ(v.error, errc::ok);
    EXPECT_FALSE(v.websocket_upgrade);
}

TEST(RequestCheck, WebSocketKeyMustBeBase64Of16Bytes) {
    auto with_key = [](std::string key) {
        return verdict("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                       "\r\nSec-WebSocket-Version: 13\r\n\r\n")
            .error;
    };
    EXPECT_EQ(with_key("dGhlIHNhbXBsZSBub25jZQ=="), errc::ok);
    EXPECT_EQ(with_key("!!!!!!!!!!!!!!!!!!!!!!=="), errc::bad_request);
    EXPECT_EQ(with_key("dGhlIHNhbXBsZSBub25jZQAA"), errc::bad_request);  // 18 bytes
    EXPECT_EQ(with_key("dGhlIHNhbXBsZSBub25jZR=="), errc::bad_request);  // stray bits
}

TEST(RequestCheck, WebSocketRepeatedFieldsRefused) {
    const std::string key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    const std::string base = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n";
    EXPECT_EQ(verdict(base + "Upgrade: websocket\r\nUpgrade: websocket\r\n" + key +
                      "Sec-WebSocket-Version: 13\r\n\r\n")
                  .error,
              errc::bad_request);
    EXPECT_EQ(verdict(base + "Upgrade: websocket\r\n" + key + key +
                      "Sec-WebSocket-Version: 13\r\n\r\n")
                  .error,
              errc::bad_request);
}

TEST(RequestCheck, ObsFoldRefused) {
    EXPECT_EQ(verdict("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n").error,
              errc::bad_request);
    EXPECT_EQ(verdict("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n\tb\r\n\r\n").error,
              errc::bad_request);
    // An empty first line folded: Beast would read "chunked" as the value.
    EXPECT_EQ(verdict("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
                      "0\r\n\r\n")
                  .error,
              errc::bad_request);
    EXPECT_EQ(verdict("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n")
                  .error,
              errc::bad_request);
    // Whitespace around a value on one line is not a fold.
    EXPECT_EQ(verdict("GET / HTTP/1.1\r\nHost: a\r\nX-A: \t a b \t\r\nX-B:\r\n\r\n").error,
              errc::ok);
}

TEST(RequestCheck, FramingLookalikeNamesRefused) {
    EXPECT_EQ(verdict("POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\nhello").error,
              errc::bad_request);
    EXPECT_EQ(verdict("POST / HTTP/1.1\r\nHost: a\r\ntransfer_encoding: chunked\r\n\r\n").error,
              errc::bad_request);
    EXPECT_EQ(verdict("GET / HTTP/1.1\r\nHost: a\r\nX_Custom: 1\r\n\r\n").error, errc::ok);
}

TEST(RequestCheck, ChunkedInHttp10Refused) {
    EXPECT_EQ(verdict("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").error,
              errc::bad_request);
}

TEST(RequestCheck, HostMustBeAHost) {
    for (const char* host : {"a b", "x/r", "u@x", "x?y", "x#y", "x\\y"})
        EXPECT_EQ(verdict(std::string("GET / HTTP/1.1\r\nHost: ") + host + "\r\n\r\n").error,
                  errc::bad_request)
            << host;
    for (const char* host : {"", "x", "x:8080", "[::1]:80", "10.0.0.1", "a-b.example_c"})
        EXPECT_EQ(verdict(std::string("GET / HTTP/1.1\r\nHost: ") + host + "\r\n\r\n").error,
                  errc::ok)
            << host;
}

// Chunk extensions are checked while the body is parsed.
TEST(StrictParser, OverlongChunkExtensionRefused) {
    auto parse = [](std::string ext) {
        http::StrictRequestParser<bhttp::string_body> p;
        std::string raw = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;" +
                          ext + "\r\nhello\r\n0\r\n\r\n";
        boost::beast::error_code ec;
        std::size_t used = 0;
        while (!ec && !p.is_done() && used < raw.size())
            used += p.put(boost::asio::buffer(raw.data() + used, raw.size() - used), ec);
        return ec;
    };
    EXPECT_FALSE(parse("name=value"));
    EXPECT_EQ(parse(std::string(http::kMaxChunkExtension + 1, 'a')),
              bhttp::error::bad_chunk_extension);
}

TEST(RequestCheck, Http2PrefaceAndHttp09Refused) {
    EXPECT_EQ(verdict("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").error, errc::bad_request);
    EXPECT_EQ(verdict("GET /\r\n\r\n").error, errc::bad_request);
}

// The chunked bytes that came with the head are checked before anything goes
// upstream: a valid prefix or whole body passes, bad framing is refused.
TEST(ChunkedPrefix, ValidPrefixesAndBodiesPass) {
    using http::check_chunked_prefix;
    EXPECT_EQ(check_chunked_prefix("", 100), errc::ok);
    EXPECT_EQ(check_chunked_prefix("5\r\nhel", 100), errc::ok);
    EXPECT_EQ(check_chunked_prefix("5;a=b\r\nhello\r\n0\r\n\r\n", 100), errc::ok);
    EXPECT_EQ(check_chunked_prefix("0\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n", 100), errc::ok);
    EXPECT_EQ(check_chunked_prefix("3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n", 100), errc::ok);
    const std::string big = "2000\r\n" + std::string(0x2000, 'x') + "\r\n0\r\n\r\n";
    EXPECT_EQ(check_chunked_prefix(big, 1 << 20), errc::ok);  // larger than the scratch
}

TEST(ChunkedPrefix, BadFramingRefused) {
    using http::check_chunked_prefix;
    for (const char* bad : {"zz\r\nhello\r\n", " 5\r\nhello\r\n", "\r\nhello\r\n",
                            "3\r\nhello\r\n0\r\n\r\n", "5\r\nhelloX0\r\n\r\n",
                            "5\r\nhello\r\n0\r\nX-T: a\x01\r\n\r\n", "-5\r\nhello\r\n"})
        EXPECT_EQ(check_chunked_prefix(bad, 100), errc::bad_request) << bad;
    EXPECT_EQ(check_chunked_prefix("5;" + std::string(2000, 'a') + "\r\nhello\r\n", 100),
              errc::bad_request);
    EXPECT_EQ(check_chunked_prefix("1000\r\n", 100), errc::body_too_large);
}

}  // namespace
