// Request refusal rules: every ambiguous or malformed head is refused before
// anything could be forwarded (tether runs Beast's parser, then check_request).
#include <gtest/gtest.h>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "tether/http/request_check.hpp"

namespace {

using namespace tether;
namespace bhttp = boost::beast::http;

// What tether decides for raw request bytes: a parse failure is a 400 too.
http::RequestVerdict verdict(std::string_view raw, std::uint64_t max_body = 1 << 20) {
    bhttp::request_parser<bhttp::empty_body> p;
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

TEST(RequestCheck, UpgradeWithoutConnectionIsPlainRequest) {
    auto v = verdict("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
    EXPECT_EQ(v.error, errc::ok);
    EXPECT_FALSE(v.websocket_upgrade);
}

TEST(RequestCheck, Http2PrefaceAndHttp09Refused) {
    EXPECT_EQ(verdict("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").error, errc::bad_request);
    EXPECT_EQ(verdict("GET /\r\n\r\n").error, errc::bad_request);
}

}  // namespace
