// Client stream, TLS half; see client_stream.hpp. asio::ssl's composed
// operations are instantiated here only, for the type-erased handler.
#include "tether/tls/client_stream.hpp"

#include <openssl/ssl.h>

#include <cstring>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>

#include "tether/tls/upstream_context.hpp"

// GCC 12 reports a false -Wmismatched-new-delete on the coroutine frames of
// this file (asio's awaitable_frame has a matching operator new/delete pair;
// the warning appears depending on how the frames get inlined).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace tether::tls {

namespace asio = boost::asio;
namespace beast = boost::beast;

namespace {

constexpr std::size_t kFirstRead = 1024;   // the start of a ClientHello, or of a plain request
constexpr std::size_t kGatherLimit = 4096;  // small pieces gathered into one TLS record
constexpr auto kPlainLinger = std::chrono::seconds(1);

// nginx's answer to plain HTTP on an HTTPS port, sent in clear text.
constexpr std::string_view kPlainHttpAnswer =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 47\r\n"
    "Connection: close\r\n\r\nThe plain HTTP request was sent to HTTPS port.\n";

}  // namespace

struct ClientStream::Tls {
    template <class Context>  // ServerContext or UpstreamContext
    Tls(TimedSocket& tcp, std::shared_ptr<Context> c)
        : ctx(c), stream(tcp, c->context()) {}
    // The ServerContext or UpstreamContext: outlives the SSL object (the SNI
    // and new-session callbacks' argument).
    std::shared_ptr<void> ctx;
    std::string session_key;  // upstream: the server, for the new-session callback
    asio::ssl::stream<TimedSocket&> stream;
    std::unique_ptr<char[]> gather;  // kGatherLimit bytes, made on the first gathered write
};

std::string_view to_string(Handshake h) {
    switch (h) {
        case Handshake::ok: return "ok";
        case Handshake::closed: return "closed";
        case Handshake::timeout: return "timeout";
        case Handshake::plain_http: return "plain_http";
        case Handshake::not_tls: return "not_tls";
        case Handshake::failed: return "failed";
    }
    return "failed";
}

ClientStream::ClientStream(TcpSocket&& socket) : tcp_(std::move(socket)) {}
ClientStream::ClientStream(const executor_type& ex) : tcp_(ex) {}
ClientStream::~ClientStream() = default;

std::size_t ClientStream::tls_pending() const {
    if (!tls_) return 0;
    const int n = SSL_pending(const_cast<Tls&>(*tls_).stream.native_handle());
    return n > 0 ? static_cast<std::size_t>(n) : 0;
}

std::string_view ClientStream::tls_version() const {
    if (!tls_) return {};
    return SSL_get_version(const_cast<Tls&>(*tls_).stream.native_handle());
}

Awaitable<Handshake> ClientStream::handshake(std::shared_ptr<ServerContext> ctx,
                                             std::chrono::milliseconds deadline,
                                             std::string_view preread, std::string& reason) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    std::string first(preread);
    if (first.empty()) {
        first.resize(kFirstRead);
        tcp_.expires_at(until);
        auto [ec, n] = co_await tcp_.async_read_some(asio::buffer(first), use_tuple);
        if (ec == beast::error::timeout) co_return Handshake::timeout;
        if (ec) co_return Handshake::closed;
        first.resize(n);
    }
    const auto c = static_cast<unsigned char>(first.front());
    if (c != 0x16) {  // not a TLS handshake record
        if (c < 'A' || c > 'Z') {
            reason = "not a TLS handshake";
            co_return Handshake::not_tls;
        }
        reason = "plain HTTP request on a TLS port";
        tcp_.expires_after(deadline);
        auto [wec, wn] = co_await asio::async_write(tcp_, asio::buffer(kPlainHttpAnswer), use_tuple);
        boost::system::error_code ignored;
        tcp_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
        if (!wec) {  // let the client read the answer before the close (no reset under it)
            char sink[1024];
            tcp_.expires_after(kPlainLinger);
            for (int i = 0; i < 64; ++i) {
                auto [rec, rn] = co_await tcp_.async_read_some(asio::buffer(sink), use_tuple);
                if (rec) break;
            }
        }
        co_return Handshake::plain_http;
    }
    tls_ = std::make_unique<Tls>(tcp_, std::move(ctx));
    tcp_.expires_at(until);
    auto [ec, used] = co_await tls_->stream.async_handshake(asio::ssl::stream_base::server,
                                                            asio::buffer(first), use_tuple);
    tcp_.expires_never();
    if (!ec) co_return Handshake::ok;
    if (ec == beast::error::timeout) co_return Handshake::timeout;
    if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated ||
        ec == asio::error::connection_reset) {
        reason = "closed by the client during the handshake";
        co_return Handshake::closed;
    }
    reason = ec.message();
    co_return Handshake::failed;
}

Awaitable<boost::system::error_code> ClientStream::connect_tls(std::shared_ptr<UpstreamContext> ctx,
                                                               std::string key,
                                                               std::string_view name,
                                                               std::string& reason) {
    UpstreamContext& uc = *ctx;
    tls_ = std::make_unique<Tls>(tcp_, std::move(ctx));
    tls_->session_key = std::move(key);
    SSL* ssl = tls_->stream.native_handle();
    uc.prepare(ssl, tls_->session_key, name);
    auto [ec] = co_await tls_->stream.async_handshake(asio::ssl::stream_base::client, use_tuple);
    if (ec) {
        const long verify = SSL_get_verify_result(ssl);
        reason = ec.message();
        if (ec == beast::error::timeout) reason = "timed out";
        else if (verify != X509_V_OK)
            reason += std::string(": ") + X509_verify_cert_error_string(verify);
    }
    co_return ec;
}

bool ClientStream::tls_resumed() const {
    return tls_ && SSL_session_reused(const_cast<Tls&>(*tls_).stream.native_handle()) == 1;
}

// The erased handler runs on the stream's executor (the worker's, as the
// coroutine's): Boost 1.81's any_completion_executor cannot be posted to by
// asio::ssl's operations.
void ClientStream::tls_read(asio::mutable_buffer b, Handler h) {
    tls_->stream.async_read_some(b, asio::bind_executor(get_executor(), std::move(h)));
}

void ClientStream::tls_write(const std::array<asio::const_buffer, kMaxGather>& bufs,
                             std::size_t n, Handler h) {
    if (n == 0) {
        asio::post(get_executor(), [h = std::move(h)]() mutable {
            std::move(h)(boost::system::error_code(), std::size_t{0});
        });
        return;
    }
    if (n == 1 || bufs[0].size() >= kGatherLimit)
        return tls_->stream.async_write_some(bufs[0],
                                             asio::bind_executor(get_executor(), std::move(h)));
    // Several pieces (a head, a chunk header, a body piece, CRLF): as many as
    // fit go out in one record instead of one record each.
    if (!tls_->gather) tls_->gather = std::make_unique<char[]>(kGatherLimit);
    std::size_t used = 0;
    for (std::size_t i = 0; i < n && used < kGatherLimit; ++i) {
        const std::size_t take = std::min(bufs[i].size(), kGatherLimit - used);
        std::memcpy(tls_->gather.get() + used, bufs[i].data(), take);
        used += take;
    }
    tls_->stream.async_write_some(asio::buffer(tls_->gather.get(), used),
                                  asio::bind_executor(get_executor(), std::move(h)));
}

}  // namespace tether::tls
