// nginx's request and connection limits -> tether's limits.rate and
// limits.max_connections_per_ip. Only zones keyed by the client address have an equivalent
// (tether limits per client IP). Differences that remain are reported as notes: tether's
// limits are process-wide (nginx's apply where `limit_req` stands), a request over the rate
// gets 429 at once (nginx delays it unless `nodelay`, and answers 503 by default), and a
// connection over the per-IP limit is closed unanswered (nginx answers 503).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "converter.hpp"

namespace tether::nginx {
namespace {

bool per_client_ip(const std::string& key) {
    return key == "$binary_remote_addr" || key == "$remote_addr";
}

/// "10r/s" -> 10, "30r/m" -> 0.5.
std::optional<double> parse_rate(const std::string& text) {
    auto r = text.find("r/");
    if (r == std::string::npos || r + 3 != text.size()) return std::nullopt;
    double n = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + r, n);
    if (ec != std::errc{} || ptr != text.data() + r || !(n > 0)) return std::nullopt;
    if (text.back() == 's') return n;
    if (text.back() == 'm') return n / 60;
    return std::nullopt;
}

/// 0.5 -> "0.5", 10 -> "10".
std::string format_number(double v) {
    std::ostringstream out;
    out.precision(6);
    out << v;
    return out.str();
}

/// `param=value` among a directive's arguments, or "".
std::string param(const Directive& d, std::string_view name) {
    for (const std::string& a : d.args)
        if (a.starts_with(name) && a.size() > name.size() && a[name.size()] == '=')
            return a.substr(name.size() + 1);
    return {};
}

}  // namespace

void Converter::collect_zone(const Directive& d) {
    std::string zone = param(d, "zone");
    std::string name = zone.substr(0, zone.find(':'));
    if (name.empty()) return f_.differs(d, "no zone=NAME:SIZE");
    Zone z{d.arg(0), 0};
    if (d.name == "limit_req_zone") {
        auto rate = parse_rate(param(d, "rate"));
        if (!rate) return f_.differs(d, "invalid rate '" + param(d, "rate") + "'");
        z.per_second = *rate;
        req_zones_[name] = z;
    } else {
        conn_zones_[name] = z;
    }
}

bool Converter::rate_limits(const Directive& d) {
    if (d.name == "limit_req_zone" || d.name == "limit_conn_zone") return true;  // collected
    if (d.name == "limit_req") {
        auto zone = req_zones_.find(param(d, "zone"));
        if (zone == req_zones_.end())
            return f_.differs(d, "unknown zone '" + param(d, "zone") + "'"), true;
        if (!per_client_ip(zone->second.key))
            return f_.differs(d, "a rate limit keyed by '" + zone->second.key +
                                     "': tether limits per client IP only"),
                   true;
        if (out_.rate_per_second) {
            f_.note(d, "tether has one rate limit for the whole process; the one at " +
                           out_.rate_per_second->origin + " is kept");
            return true;
        }
        long burst = std::strtol(param(d, "burst").c_str(), nullptr, 10);
        double rps = zone->second.per_second;
        out_.rate_per_second = OutValue{format_number(rps), 0, d.where()};
        out_.rate_burst = OutValue{std::to_string(std::max(1L, burst + 1)), 0, d.where()};
        bool nodelay = std::find(d.args.begin(), d.args.end(), "nodelay") != d.args.end();
        f_.note(d, std::string("limits.rate applies to every request of the process, and a "
                               "request over it gets 429 at once") +
                       (nodelay ? "" : " (nginx delays requests within the burst)") +
                       "; burst = nginx's burst + 1 (tether's bucket includes the request "
                       "the rate allows)");
        return true;
    }
    if (d.name == "limit_conn") {
        auto zone = conn_zones_.find(d.arg(0));
        long n = std::strtol(d.arg(1).c_str(), nullptr, 10);
        if (zone == conn_zones_.end() || n < 1)
            return f_.differs(d, "unknown zone '" + d.arg(0) + "' or invalid number"), true;
        if (!per_client_ip(zone->second.key))
            return f_.differs(d, "a connection limit keyed by '" + zone->second.key +
                                     "': tether limits per client IP only"),
                   true;
        set_value(out_.limits, "max_connections_per_ip", std::to_string(n), n, d);
        f_.note(d,
                "limits.max_connections_per_ip applies to the whole process; a connection "
                "over it is closed unanswered (nginx answers 503)");
        return true;
    }
    if (d.name == "limit_req_status" || d.name == "limit_conn_status" ||
        d.name == "limit_req_log_level" || d.name == "limit_conn_log_level" ||
        d.name == "limit_req_dry_run" || d.name == "limit_conn_dry_run") {
        f_.ignored(d,
                   "tether answers 429 over the rate and closes connections over the "
                   "per-IP limit");
        return true;
    }
    return false;
}

}  // namespace tether::nginx
