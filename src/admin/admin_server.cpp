// Admin HTTP server; see admin_server.hpp.
#include "tether/admin/admin_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "tether/core/log.hpp"

namespace tether::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::chrono::seconds kAdminTimeout{10};
constexpr std::uint32_t kAdminHeaderLimit = 8192;

using Response = bhttp::response<bhttp::string_body>;

Response reply(unsigned version, bhttp::status status, std::string_view type, std::string body) {
    Response res{status, version};
    res.set(bhttp::field::server, "tether");
    res.set(bhttp::field::content_type, type);
    res.set(bhttp::field::cache_control, "no-store");
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
}

// "/upstreams/{u}/servers/{s}/drain" or ".../enable" -> (u, s, drain)
bool parse_drain(std::string_view path, std::string_view& u, std::string_view& s, bool& drain) {
    constexpr std::string_view kPrefix = "/upstreams/";
    if (!path.starts_with(kPrefix)) return false;
    path.remove_prefix(kPrefix.size());
    const auto slash = path.find('/');
    if (slash == std::string_view::npos) return false;
    u = path.substr(0, slash);
    path.remove_prefix(slash);
    constexpr std::string_view kServers = "/servers/";
    if (!path.starts_with(kServers)) return false;
    path.remove_prefix(kServers.size());
    const auto last = path.rfind('/');
    if (last == std::string_view::npos) return false;
    s = path.substr(0, last);
    const auto action = path.substr(last + 1);
    if (action != "drain" && action != "enable") return false;
    drain = action == "drain";
    return !u.empty() && !s.empty();
}

}  // namespace

struct AdminServer::Impl {
    Impl(const tcp::endpoint& ep, Handlers h) : acceptor(io), handlers(std::move(h)) {
        acceptor.open(ep.protocol());
        acceptor.set_option(asio::socket_base::reuse_address(true));
        acceptor.bind(ep);
        acceptor.listen();
    }

    Response handle(const bhttp::request<bhttp::string_body>& req) {
        const unsigned v = req.version();
        std::string_view path = req.target();
        path = path.substr(0, path.find('?'));
        const bool get = req.method() == bhttp::verb::get || req.method() == bhttp::verb::head;
        if (get && path == "/metrics")
            return reply(v, bhttp::status::ok, "text/plain; version=0.0.4; charset=utf-8",
                         handlers.metrics());
        if (get && path == "/healthz") return reply(v, bhttp::status::ok, "text/plain", "ok\n");
        if (get && path == "/readyz") {
            const bool ready = handlers.ready();
            return reply(v, ready ? bhttp::status::ok : bhttp::status::service_unavailable,
                         "text/plain", ready ? "ready\n" : "not ready\n");
        }
        if (get && path == "/status")
            return reply(v, bhttp::status::ok, "application/json", handlers.status());
        if (get && path == "/")
            return reply(v, bhttp::status::ok, "text/html; charset=utf-8",
                         std::string(status_page()));
        std::string_view u, s;
        bool drain = false;
        if (parse_drain(path, u, s, drain)) {
            if (req.method() != bhttp::verb::post)
                return reply(v, bhttp::status::method_not_allowed, "text/plain", "use POST\n");
            if (!handlers.set_drain(u, s, drain))
                return reply(v, bhttp::status::not_found, "text/plain", "no such server\n");
            return reply(v, bhttp::status::ok, "application/json",
                         std::string(R"({"upstream":")") + std::string(u) + R"(","server":")" +
                             std::string(s) + R"(","draining":)" + (drain ? "true" : "false") +
                             "}\n");
        }
        return reply(v, bhttp::status::not_found, "text/plain", "not found\n");
    }

    awaitable<void> serve(tcp::socket socket) {
        beast::tcp_stream stream(std::move(socket));
        beast::flat_buffer buffer;
        for (;;) {
            bhttp::request_parser<bhttp::string_body> parser;
            parser.header_limit(kAdminHeaderLimit);
            parser.body_limit(kAdminHeaderLimit);
            stream.expires_after(kAdminTimeout);
            auto [ec, n] = co_await bhttp::async_read(stream, buffer, parser, use_tuple);
            if (ec) break;
            auto res = handle(parser.get());
            res.keep_alive(parser.get().keep_alive());
            if (parser.get().method() == bhttp::verb::head) {  // headers of the GET, no body
                const auto length = res.body().size();
                res.body().clear();
                res.content_length(length);
            }
            stream.expires_after(kAdminTimeout);
            auto [wec, wn] = co_await bhttp::async_write(stream, res, use_tuple);
            if (wec || !res.keep_alive()) break;
        }
        beast::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }

    awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
            if (!acceptor.is_open()) co_return;
            if (ec) continue;
            asio::co_spawn(io, serve(std::move(socket)), [](std::exception_ptr e) {
                if (e) log::error("admin connection ended by an exception");
            });
        }
    }

    asio::io_context io{1};
    tcp::acceptor acceptor;
    Handlers handlers;
};

AdminServer::AdminServer(const tcp::endpoint& ep, Handlers handlers)
    : impl_(std::make_unique<Impl>(ep, std::move(handlers))) {
    port_ = impl_->acceptor.local_endpoint().port();
}

AdminServer::~AdminServer() { stop(); }

void AdminServer::start() {
    asio::co_spawn(impl_->io, impl_->accept_loop(), [](std::exception_ptr e) {
        if (e) log::error("admin accept loop ended by an exception");
    });
    thread_ = std::thread([this] { impl_->io.run(); });
}

void AdminServer::stop() {
    if (!thread_.joinable()) return;
    impl_->io.stop();
    thread_.join();
}

}  // namespace tether::admin
