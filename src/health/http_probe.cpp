// One HTTP health check; see http_probe.hpp.
#include "tether/health/http_probe.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>

#include "tether/core/connection_registry.hpp"

namespace tether::health {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::uint32_t kMaxHead = 16 * 1024;  // a health answer's head; larger is a failure

ProbeOutcome failed(const beast::error_code& ec, const char* stage) {
    ProbeOutcome out;
    out.result = ec == beast::error::timeout ? HealthResult::timeout : HealthResult::error;
    out.detail = std::string(stage) + ": " + (ec == beast::error::timeout ? "timed out" : ec.message());
    return out;
}
}  // namespace

std::string probe_request(const std::string& path, const std::string& host) {
    return "GET " + path + " HTTP/1.1\r\nHost: " + host +
           "\r\nUser-Agent: tether-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n";
}

asio::awaitable<ProbeOutcome> http_probe(beast::tcp_stream& stream,
                                         const std::vector<asio::ip::tcp::endpoint>& endpoints,
                                         const std::string& request,
                                         const config::HealthCheck& check) {
    const auto deadline = Clock::now() + check.timeout;
    struct Closer {
        beast::tcp_stream& s;
        ~Closer() {
            beast::error_code ignored;
            s.socket().close(ignored);
        }
    } closer{stream};
    stream.expires_at(deadline);
    auto [cec, ep] = co_await stream.async_connect(endpoints, use_tuple);
    if (cec) co_return failed(cec, "connect");
    stream.expires_at(deadline);
    auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(request), use_tuple);
    if (wec) co_return failed(wec, "send");
    beast::flat_buffer buffer(kMaxHead);
    bhttp::response_parser<bhttp::empty_body> parser;
    parser.header_limit(kMaxHead);
    stream.expires_at(deadline);
    auto [rec, rn] = co_await bhttp::async_read_header(stream, buffer, parser, use_tuple);
    if (rec) co_return failed(rec, "response");
    ProbeOutcome out;
    out.status = parser.get().result_int();
    if (status_expected(out.status, check.expect_status)) {
        out.result = HealthResult::ok;
    } else {
        out.result = HealthResult::bad_status;
        out.detail = "status " + std::to_string(out.status);
    }
    co_return out;
}

}  // namespace tether::health
