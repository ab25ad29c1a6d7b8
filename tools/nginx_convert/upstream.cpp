// One nginx `upstream` block -> one tether upstream: its servers and their parameters, and
// the balancing method mapped onto tether's affinity modes (see docs/migrating.md):
//   (none)                      -> affinity none, balance round_robin (nginx's default)
//   ip_hash                     -> affinity ip_hash, prefix_v4 24, prefix_v6 128
//   hash $remote_addr consistent -> affinity ip_hash, prefix_v4 32, prefix_v6 128
//   hash $cookie_NAME consistent -> affinity cookie (tether's own signed cookie)
//   hash $arg_NAME consistent   -> affinity sid, sid.param NAME
//   least_conn / random [two]   -> balance least_conn / random_two
//   sticky cookie NAME          -> affinity cookie, cookie.name NAME
#include <algorithm>

#include "model.hpp"

namespace tether::nginx {
namespace {

using Kind = Finding::Kind;

constexpr int kMaxWeight = 1000;  // tether's bound for servers[].weight

std::optional<int> int_value(const std::string& s) {
    if (s.empty() ||
        !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; }) ||
        s.size() > 9)
        return std::nullopt;
    return std::stoi(s);
}

/// `server ADDRESS [weight=N] [max_fails=N] [fail_timeout=T] [max_conns=N] [backup] [down]`.
/// Returns false when the server is left out.
bool convert_server(const Directive& d, OutServer& s, Findings& f) {
    auto address = parse_address(d.arg(0), 80, "0.0.0.0");
    if (!address) {
        f.differs(d, "server '" + d.arg(0) +
                         "' is not a host:port (unix sockets are not supported); left out");
        return false;
    }
    s.address = *address;
    s.origin = d.where();
    for (std::size_t i = 1; i < d.args.size(); ++i) {
        const std::string& a = d.args[i];
        auto eq = a.find('=');
        std::string key = a.substr(0, eq);
        std::string value = eq == std::string::npos ? "" : a.substr(eq + 1);
        if (key == "weight" && int_value(value) && *int_value(value) >= 1) {
            s.weight = *int_value(value);
            if (s.weight > kMaxWeight) {
                f.note(d, "weight=" + value + " is above tether's maximum; written as " +
                              std::to_string(kMaxWeight));
                s.weight = kMaxWeight;
            }
        } else if (key == "max_fails" && int_value(value)) {
            s.max_fails = *int_value(value);
        } else if (key == "max_conns" && int_value(value)) {
            s.max_conns = *int_value(value);
        } else if (key == "fail_timeout" && parse_time(value) && *parse_time(value) > 0) {
            s.fail_timeout_ms = *parse_time(value);
        } else if (a == "backup") {
            s.backup = true;
        } else if (a == "down") {
            f.add(Kind::ignored, d,
                  "server " + s.address +
                      " is marked 'down' in nginx: left out (it takes no "
                      "traffic there either)");
            return false;
        } else if (a == "resolve" || key == "slow_start" || key == "route" || key == "service") {
            f.add(Kind::ignored, d, "server parameter '" + a + "' has no tether equivalent");
        } else {
            f.differs(d, "unknown or invalid server parameter '" + a + "'");
        }
    }
    return true;
}

/// `hash KEY [consistent]`.
void convert_hash(const Directive& d, OutUpstream& u, Findings& f) {
    const std::string& key = d.arg(0);
    bool consistent = d.arg(1) == "consistent";
    if (key == "$remote_addr" || key == "$binary_remote_addr") {
        u.affinity = "ip_hash", u.prefix_v4 = 32, u.prefix_v6 = 128;
    } else if (key.starts_with("$cookie_") && key.size() > 8) {
        u.affinity = "cookie";
        f.note(d, "hash on the application's cookie '" + key.substr(8) +
                      "' becomes affinity: cookie: tether pins a client with its own signed "
                      "cookie (cookie.name, default 'tether') and does not read '" +
                      key.substr(8) +
                      "'; set cookie.secret (or TETHER_COOKIE_SECRET) on "
                      "every replica");
    } else if (key.starts_with("$arg_") && key.size() > 5) {
        u.affinity = "sid";
        if (key.substr(5) != "sid") u.sid_param = key.substr(5);
    } else {
        f.differs(d, "hashing on '" + key +
                         "' has no tether equivalent (tether pins by client IP, cookie or "
                         "Engine.IO sid); the upstream is balanced without affinity");
        return;
    }
    if (!consistent)
        f.note(d,
               "nginx's plain 'hash' remaps most clients when a server is added; tether's "
               "placement is consistent (Maglev) and bindings are kept in its table");
}

/// `sticky cookie NAME [expires=T] ...` (nginx Plus).
void convert_sticky(const Directive& d, OutUpstream& u, Findings& f) {
    if (d.arg(0) != "cookie" || d.arg(1).empty()) {
        f.differs(d, "only 'sticky cookie NAME' has a tether equivalent (affinity: cookie)");
        return;
    }
    u.affinity = "cookie";
    u.cookie_name = d.arg(1);
    for (std::size_t i = 2; i < d.args.size(); ++i) {
        const std::string& a = d.args[i];
        if (a.starts_with("expires=") && parse_time(a.substr(8)))
            u.cookie_max_age_ms = *parse_time(a.substr(8));
        else
            f.add(Kind::ignored, d, "sticky parameter '" + a + "' is not carried over");
    }
}

/// Two `server` lines with one address become one server with the summed weight.
void add_server(OutUpstream& u, OutServer s, const Directive& d, Findings& f) {
    auto same = std::find_if(u.servers.begin(), u.servers.end(),
                             [&](const OutServer& o) { return o.address == s.address; });
    if (same == u.servers.end()) return u.servers.push_back(std::move(s));
    same->weight = std::min(kMaxWeight, same->weight + s.weight);
    f.note(d, "server " + s.address + " is listed twice; merged into one with weight " +
                  std::to_string(same->weight));
}

}  // namespace

void convert_upstream(const Directive& block, OutUpstream& u, Findings& f) {
    u.origin = block.where();
    const Directive* method = nullptr;
    for (const Directive& d : block.children) {
        if (d.name == "server") {
            OutServer s;
            if (convert_server(d, s, f)) add_server(u, std::move(s), d, f);
            continue;
        }
        bool is_method = d.name == "ip_hash" || d.name == "hash" || d.name == "least_conn" ||
                         d.name == "random" || d.name == "sticky" || d.name == "least_time";
        if (is_method && method) {
            f.differs(d, "a second balancing method (the first is at " + method->where() +
                             "); nginx refuses this");
            continue;
        }
        if (is_method) method = &d;
        if (d.name == "ip_hash") {
            u.affinity = "ip_hash", u.prefix_v4 = 24, u.prefix_v6 = 128;
            f.note(d,
                   "ip_hash keeps nginx's key (first three octets of IPv4, whole IPv6) but "
                   "places clients by consistent hashing: after the switch a client may "
                   "land on another server than nginx chose, then stays there");
        } else if (d.name == "hash") {
            convert_hash(d, u, f);
        } else if (d.name == "least_conn") {
            u.balance = "least_conn";
        } else if (d.name == "least_time") {
            u.balance = "least_conn";
            f.note(d,
                   "least_time becomes balance: least_conn (tether does not measure "
                   "response times)");
        } else if (d.name == "random") {
            u.balance = "random_two";
            if (d.arg(0) != "two")
                f.note(d,
                       "plain 'random' becomes random_two (two random servers, the one "
                       "with fewer connections wins)");
        } else if (d.name == "sticky") {
            convert_sticky(d, u, f);
        } else if (d.name == "keepalive" && int_value(d.arg(0))) {
            u.keepalive = *int_value(d.arg(0));
        } else if (d.name == "zone" || d.name == "keepalive_timeout" ||
                   d.name == "keepalive_requests" || d.name == "keepalive_time") {
            f.ignored(d, "tether has no equivalent setting (harmless)");
        } else {
            f.differs(d, "not supported inside 'upstream'");
        }
    }
    if (u.servers.empty()) f.differs(block, "upstream '" + u.name + "' has no usable server");
    if (u.affinity == "ip_hash" &&
        std::any_of(u.servers.begin(), u.servers.end(), [](auto& s) { return s.backup; }))
        f.note(block,
               "nginx refuses 'backup' with ip_hash/hash; tether keeps the backup "
               "servers for when no primary is up");
}

}  // namespace tether::nginx
