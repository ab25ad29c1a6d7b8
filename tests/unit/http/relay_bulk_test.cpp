// relay_body's buffer (src/http/relay.hpp) on real TCP sockets on 127.0.0.1:
// a body of known length larger than one relay buffer is relayed through a
// bulk buffer (ProxyContext::bulk, 64 KiB: a 1 MiB download in 64 KiB sends,
// not 16 KiB ones); a body that fits one relay buffer, a chunked body (a
// stream, held for as long as it lasts) and a relay without a bulk pool use
// the relay buffer. Every byte arrives once, in order, whichever is used.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <functional>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "../../../src/http/relay.hpp"
#include "tether/http/proxy_context.hpp"
#include "tether/http/response_parser.hpp"
#include "tether/tls/client_stream.hpp"

namespace tether::http {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

constexpr std::size_t kRelayBuffer = 16 * 1024;

std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
    return s;
}

struct RelayRun {
    BufferPool buffers{kRelayBuffer, 8};
    BufferPool bulk{kBulkBufferSize, 8};
    std::string received;
    RelayStatus status;
    bool done = false;
};

// Relays a response of `head` (parsed before the relay, as the session does)
// and `body_on_wire` from a "backend" socket to a "client" socket.
void relay(RelayRun& r, const std::string& head, const std::string& body_on_wire, Framing framing,
           bool with_bulk) {
    asio::io_context io;
    tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::socket backend_peer(io), client_peer(io);
    TcpSocket to_backend(io), to_client(io);
    to_backend.connect(acc.local_endpoint());
    acc.accept(backend_peer);
    to_client.connect(acc.local_endpoint());
    acc.accept(client_peer);
    tls::ClientStream src(std::move(to_backend));
    tls::ClientStream dst(std::move(to_client));

    ResponseParser p;
    boost::beast::error_code ec;
    ASSERT_EQ(p.put(asio::buffer(head), ec), head.size());
    ASSERT_FALSE(ec);
    ASSERT_TRUE(p.is_header_done());

    // The backend writes the body; the client reads until the relay is done
    // and the socket has nothing more.
    asio::async_write(backend_peer, asio::buffer(body_on_wire), [](auto, auto) {});
    std::array<char, 4096> piece;
    bool client_closed = false;
    std::function<void()> read_more = [&] {
        client_peer.async_read_some(asio::buffer(piece), [&](boost::system::error_code rec,
                                                              std::size_t n) {
            r.received.append(piece.data(), n);
            if (!rec) read_more();
            else client_closed = true;
        });
    };
    read_more();

    boost::beast::flat_buffer src_buf;
    RelayProgress progress;
    RelayEnv env{r.buffers, 5000ms, 5000ms, nullptr, nullptr, with_bulk ? &r.bulk : nullptr};
    asio::co_spawn(
        io,
        [&]() -> Awaitable<void> {
            r.status = co_await relay_body(src, src_buf, p, dst, "", framing, env, progress);
            r.done = true;
            boost::system::error_code ignored;
            dst.socket().shutdown(tcp::socket::shutdown_send, ignored);
        },
        asio::detached);
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < until && !(r.done && client_closed))
        io.run_one_for(20ms);
    ASSERT_TRUE(r.done) << "the relay ended within 10 s";
}

// A response of `body` framed by its Content-Length.
void relay_with_length(RelayRun& r, const std::string& body, bool with_bulk) {
    relay(r, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n",
          body, Framing::length, with_bulk);
}

TEST(RelayBulk, ABodyOfKnownLengthLargerThanOneBufferGoesThroughABulkBuffer) {
    const std::string body = pattern(300 * 1024 + 17);
    RelayRun r;
    relay_with_length(r, body, true);
    EXPECT_EQ(r.status.failed_side, RelaySide::none);
    EXPECT_EQ(r.received.size(), body.size());
    EXPECT_TRUE(r.received == body) << "every byte once, in order";
    EXPECT_EQ(r.bulk.free_count(), 1u) << "one bulk buffer borrowed and given back";
    EXPECT_EQ(r.buffers.free_count(), 0u) << "no relay buffer borrowed";
}

TEST(RelayBulk, ABodyThatFitsOneBufferUsesTheRelayBuffer) {
    const std::string body = pattern(kRelayBuffer);
    RelayRun r;
    relay_with_length(r, body, true);
    EXPECT_TRUE(r.received == body);
    EXPECT_EQ(r.buffers.free_count(), 1u);
    EXPECT_EQ(r.bulk.free_count(), 0u);
}

TEST(RelayBulk, AChunkedBodyUsesTheRelayBuffer) {
    // A stream of unknown length may last for hours: it holds the small buffer.
    const std::string data = pattern(100 * 1024);
    std::string wire;
    for (std::size_t at = 0; at < data.size(); at += 10000) {
        const std::size_t n = std::min<std::size_t>(10000, data.size() - at);
        char size[16];
        wire += std::string(size, static_cast<std::size_t>(std::snprintf(size, sizeof size, "%zx\r\n", n)));
        wire += data.substr(at, n) + "\r\n";
    }
    wire += "0\r\n\r\n";
    RelayRun r;
    relay(r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", wire, Framing::chunked, true);
    EXPECT_EQ(r.status.failed_side, RelaySide::none);
    // Re-framed by tether: its own chunk sizes; the data is the same.
    std::string unchunked;
    for (std::size_t at = 0; at < r.received.size();) {
        const std::size_t eol = r.received.find("\r\n", at);
        ASSERT_NE(eol, std::string::npos);
        const std::size_t n = std::stoul(r.received.substr(at, eol - at), nullptr, 16);
        if (n == 0) break;
        unchunked += r.received.substr(eol + 2, n);
        at = eol + 2 + n + 2;
    }
    EXPECT_TRUE(unchunked == data);
    EXPECT_EQ(r.buffers.free_count(), 1u);
    EXPECT_EQ(r.bulk.free_count(), 0u);
}

TEST(RelayBulk, WithoutABulkPoolALargeBodyUsesTheRelayBuffer) {
    const std::string body = pattern(200 * 1024);
    RelayRun r;
    relay_with_length(r, body, false);
    EXPECT_TRUE(r.received == body);
    EXPECT_EQ(r.buffers.free_count(), 1u);
    EXPECT_EQ(r.bulk.free_count(), 0u);
}

}  // namespace
}  // namespace tether::http
