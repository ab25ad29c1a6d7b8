// Head rewriting: hop-by-hop removal, forwarding headers, framing.
#include <gtest/gtest.h>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "tether/http/error_response.hpp"
#include "tether/http/headers.hpp"

namespace {

using namespace tether::http;
namespace bhttp = boost::beast::http;

template <bool IsRequest>
bhttp::header<IsRequest, Fields> parse(std::string_view raw) {
    bhttp::parser<IsRequest, bhttp::empty_body, FieldsAllocator> p;
    p.eager(false);
    boost::beast::error_code ec;
    p.put(boost::asio::buffer(raw.data(), raw.size()), ec);
    EXPECT_TRUE(!ec || ec == bhttp::error::need_more) << ec.message();
    return p.release().base();
}

std::string rewrite(std::string_view raw, RequestRewrite rw) {
    auto req = parse<true>(raw);
    std::string out;
    write_request_head(req, rw, out);
    return out;
}

TEST(Headers, HopByHopRemovedAndForwardedAdded) {
    RequestRewrite rw{"10.1.2.3", "http", "abc", true, false, Framing::none, ""};
    const std::string out = rewrite(
        "GET /p?q=1 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Secret\r\n"
        "Keep-Alive: timeout=5\r\nX-Secret: 1\r\nTE: trailers\r\nProxy-Connection: x\r\n"
        "Accept: */*\r\n\r\n",
        rw);
    EXPECT_EQ(out,
              "GET /p?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n"
              "X-Forwarded-For: 10.1.2.3\r\nX-Real-IP: 10.1.2.3\r\nX-Forwarded-Proto: http\r\n"
              "X-Forwarded-Host: example.com\r\nX-Request-Id: abc\r\n\r\n");
}

// Fields are matched by Beast's parsed field enum where they have one: any
// spelling of a hop-by-hop name is dropped, a name that only starts like one
// is kept, a field the Connection header names is dropped in any case, and
// the last X-Forwarded-For and the first Host are the ones used (Beast
// keeps fields of one name together, in the order they came).
TEST(Headers, FieldsMatchedInAnyCase) {
    RequestRewrite rw{"10.1.2.3", "http", "", true, false, Framing::none, ""};
    const std::string out = rewrite(
        "GET / HTTP/1.1\r\nhost: first.example\r\nCONNECTION: close, x-drop\r\n"
        "keep-alive: 1\r\nConnection-Id: 7\r\nX-DROP: 1\r\nTe: trailers\r\n"
        "x-forwarded-for: 1.1.1.1\r\nX-FORWARDED-FOR: 2.2.2.2\r\nexpect: 100-continue\r\n"
        "X-Real-Ip: 6.6.6.6\r\nHost: second.example\r\n\r\n",
        rw);
    EXPECT_EQ(out,
              "GET / HTTP/1.1\r\nhost: first.example\r\nHost: second.example\r\n"
              "Connection-Id: 7\r\nX-Forwarded-For: 2.2.2.2, 10.1.2.3\r\n"
              "X-Real-IP: 10.1.2.3\r\nX-Forwarded-Proto: http\r\n"
              "X-Forwarded-Host: first.example\r\n\r\n");
    auto res = parse<false>(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: X-Internal\r\nx-internal: 1\r\n"
        "UPGRADE: h2c\r\nProxy-Connection: x\r\nTrailer-Info: kept\r\n\r\n");
    std::string head;
    ResponseRewrite rrw;
    rrw.body = Framing::length;
    write_response_head(res, 11, rrw, head);
    EXPECT_EQ(head, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nTrailer-Info: kept\r\n\r\n");
    head.clear();
    rrw.body = Framing::chunked;
    write_response_head(res, 11, rrw, head);
    EXPECT_EQ(head, "HTTP/1.1 200 OK\r\nTrailer-Info: kept\r\nTransfer-Encoding: chunked\r\n\r\n");
}

TEST(Headers, ForwardedForAppendsToExistingChain) {
    RequestRewrite rw{"10.0.0.9", "https", "", true, false, Framing::none, ""};
    const std::string out = rewrite(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\nX-Real-IP: 6.6.6.6\r\n"
        "X-Forwarded-Proto: gopher\r\n\r\n",
        rw);
    EXPECT_NE(out.find("X-Forwarded-For: 1.1.1.1, 10.0.0.9\r\n"), std::string::npos);
    EXPECT_NE(out.find("X-Real-IP: 10.0.0.9\r\n"), std::string::npos);
    EXPECT_NE(out.find("X-Forwarded-Proto: https\r\n"), std::string::npos);
    EXPECT_EQ(out.find("6.6.6.6"), std::string::npos);
    EXPECT_EQ(out.find("gopher"), std::string::npos);
}

TEST(Headers, TrustedChainKeepsPeerHopAndRealIpIsClient) {
    // From a trusted proxy 10.0.0.2: the client (right-most untrusted hop) is X-Real-IP,
    // the chain gets the proxy's own address appended.
    RequestRewrite rw{"203.0.113.5", "http", "", true, false, Framing::none, "10.0.0.2"};
    const std::string out =
        rewrite("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.5\r\n\r\n", rw);
    EXPECT_NE(out.find("X-Forwarded-For: 203.0.113.5, 10.0.0.2\r\n"), std::string::npos) << out;
    EXPECT_NE(out.find("X-Real-IP: 203.0.113.5\r\n"), std::string::npos) << out;
}

TEST(Headers, ForwardingOffPassesClientHeadersUntouched) {
    RequestRewrite rw{"10.0.0.9", "http", "", false, false, Framing::none, ""};
    const std::string out = rewrite("GET / HTTP/1.1\r\nHost: h\r\nX-Real-IP: 6.6.6.6\r\n\r\n", rw);
    EXPECT_EQ(out, "GET / HTTP/1.1\r\nHost: h\r\nX-Real-IP: 6.6.6.6\r\n\r\n");
}

TEST(Headers, ChunkedRequestReframedAndUpgradeKept) {
    RequestRewrite rw{"1.2.3.4", "http", "", false, false, Framing::chunked, ""};
    std::string out = rewrite("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", rw);
    EXPECT_EQ(out, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    rw.body = Framing::none;
    rw.upgrade = true;
    out = rewrite("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: k\r\n\r\n",
                  rw);
    EXPECT_EQ(out,
              "GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k\r\nUpgrade: websocket\r\n"
              "Connection: upgrade\r\n\r\n");
}

TEST(Headers, ExpectIsNotForwarded) {
    RequestRewrite rw{"1.2.3.4", "http", "", false, false, Framing::length, ""};
    const std::string out = rewrite(
        "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", rw);
    EXPECT_EQ(out, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n");
}

TEST(Headers, ResponseReframedAsChunkedDropsLengthAndHopByHop) {
    auto res = parse<false>(
        "HTTP/1.1 200 OK\r\nConnection: close, X-Internal\r\nX-Internal: 1\r\nKeep-Alive: 5\r\n"
        "Transfer-Encoding: chunked\r\nX-App: y\r\n\r\n");
    std::string out;
    ResponseRewrite rw;
    rw.body = Framing::chunked;
    write_response_head(res, 11, rw, out);
    EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nX-App: y\r\nTransfer-Encoding: chunked\r\n\r\n");
}

TEST(Headers, ResponseToHttp10ClientSaysKeepAliveOrClose) {
    auto res = parse<false>("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
    std::string out;
    ResponseRewrite rw;
    rw.body = Framing::length;
    rw.keep_alive_header = true;
    write_response_head(res, 10, rw, out);
    EXPECT_EQ(out, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n");
    out.clear();
    rw.keep_alive_header = false;
    rw.close = true;
    write_response_head(res, 11, rw, out);
    EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n");
}

TEST(Headers, SwitchingProtocolsKeepsUpgrade) {
    auto res = parse<false>(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
    std::string out;
    ResponseRewrite rw;
    rw.upgrade = true;
    write_response_head(res, 11, rw, out);
    EXPECT_EQ(out,
              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nConnection: upgrade\r\n\r\n");
}

// A status below 100 comes as three digits ("001", as Beast's parser takes
// it) and goes out as three digits: "1" would not parse (found by
// tools/fuzz/fuzz_response_head).
TEST(Headers, StatusWrittenAsThreeDigits) {
    for (const auto& [in, line] : {std::pair{"001 Odd", "001 Odd"}, std::pair{"042 X", "042 X"},
                                   std::pair{"200 OK", "200 OK"}, std::pair{"999 Max", "999 Max"}}) {
        auto res = parse<false>(std::string("HTTP/1.1 ") + in + "\r\n\r\n");
        std::string out = "before";
        write_response_head(res, 11, ResponseRewrite{}, out);
        EXPECT_EQ(out, std::string("beforeHTTP/1.1 ") + line + "\r\n\r\n") << in;
    }
}

TEST(Headers, ChunkHeaderIsHex) {
    std::string out;
    write_chunk_header(0x1a2b, out);
    EXPECT_EQ(out, "1a2b\r\n");
}

TEST(ErrorResponse, CarriesRequestIdRetryAfterAndPlainBody) {
    std::string out;
    write_error_response(tether::errc::no_server, "rid-1", true, out);
    EXPECT_EQ(out,
              "HTTP/1.1 503 Service Unavailable\r\nServer: tether\r\n"
              "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 24\r\n"
              "X-Request-Id: rid-1\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
              "503 Service Unavailable\n");
    out.clear();
    write_error_response(tether::errc::header_too_large, "r", true, out);
    EXPECT_EQ(out.rfind("HTTP/1.1 431 ", 0), 0u);
    out.clear();
    write_error_response(tether::errc::upstream_timeout, "r", true, out);
    EXPECT_EQ(out.rfind("HTTP/1.1 504 ", 0), 0u);
}

}  // namespace
