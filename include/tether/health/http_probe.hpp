// One active HTTP check of a server (SPEC "Health"): a new connection (each
// resolved address in turn), `GET health_check.path` with `Connection: close`,
// the response head read, the status matched against expect_status. The whole
// check, connect included, runs within health_check.timeout.
// Threading: runs on the executor of `stream`; the caller may cancel it by
// closing the stream (the check then ends with HealthResult::error).
#pragma once

#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "tether/config/config.hpp"
#include "tether/health/rise_fall.hpp"

namespace tether::health {

struct ProbeOutcome {
    HealthResult result = HealthResult::error;
    int status = 0;         ///< the answer's status, 0 when none came
    std::string detail;     ///< why it failed, for the log ("" when ok)
};

/// The request bytes of a check of `path` on a server known as `host` (host:port).
std::string probe_request(const std::string& path, const std::string& host);

/// Runs one check on a fresh `stream` (closed on return).
boost::asio::awaitable<ProbeOutcome> http_probe(
    boost::beast::tcp_stream& stream, const std::vector<boost::asio::ip::tcp::endpoint>& endpoints,
    const std::string& request, const config::HealthCheck& check);

}  // namespace tether::health
