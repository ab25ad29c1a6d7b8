// The converter's second half: global values (tether's timeouts and limits are process-wide
// while nginx scopes them per block: the largest value wins and the others are reported),
// listeners with TLS from the server blocks, the forwarding headers and the Socket.IO
// suggestion; plus the public entry points of convert.hpp.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <set>

#include "converter.hpp"

namespace tether::nginx {
namespace {

namespace fs = std::filesystem;
using Kind = Finding::Kind;

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
}

}  // namespace

void Converter::set_value(std::map<std::string, OutValue>& values, const std::string& key,
                          const std::string& text, std::int64_t number, const Directive& d) {
    auto [it, inserted] = values.try_emplace(key, OutValue{text, number, d.where()});
    if (inserted || it->second.text == text) return;
    OutValue& kept = it->second;
    std::string other = kept.origin;
    if (number > kept.number) kept = OutValue{text, number, d.where()};
    f_.note(d, "tether's '" + key +
                   "' is one value for the whole process; nginx sets it "
                   "differently here and at " +
                   other + "; the larger (" + kept.text + ") is used");
}

bool Converter::timeouts_and_limits(const Directive& d) {
    auto time = [&](const char* key, bool zero_ok = false) {
        auto ms = parse_time(d.arg(0));
        if (!ms || (*ms == 0 && !zero_ok))
            return f_.differs(d, "invalid or zero time '" + d.arg(0) + "'"), true;
        set_value(out_.timeouts, key, format_ms(*ms), *ms, d);
        return true;
    };
    if (d.name == "proxy_read_timeout") {
        time("upstream_response");
        f_.note(d,
                "proxy_read_timeout also bounds idle WebSocket tunnels in nginx; tether "
                "uses timeouts.tunnel (default 1h) for them");
        return true;
    }
    if (d.name == "proxy_connect_timeout") return time("connect");
    if (d.name == "client_header_timeout") return time("client_header");
    if (d.name == "keepalive_timeout") {
        if (parse_time(d.arg(0)) == 0) {
            f_.differs(d, "keep-alive cannot be switched off in tether (timeouts.idle > 0)");
            return true;
        }
        return time("idle");
    }
    if (d.name == "client_max_body_size") {
        auto bytes = parse_bytes(d.arg(0));
        if (!bytes) return f_.differs(d, "invalid size '" + d.arg(0) + "'"), true;
        if (*bytes == 0 || *bytes > (1ULL << 30)) {
            f_.note(d, "nginx's '" + d.arg(0) +
                           "' (0 = unlimited) is written as tether's "
                           "maximum, 1g");
            *bytes = 1ULL << 30;
        }
        set_value(out_.limits, "max_body_size", format_bytes(*bytes),
                  static_cast<std::int64_t>(*bytes), d);
        return true;
    }
    if (d.name == "large_client_header_buffers") {
        auto count = parse_bytes(d.arg(0));
        auto size = parse_bytes(d.arg(1));
        if (!count || !size || *count == 0 || *size == 0)
            return f_.differs(d, "invalid buffers '" + d.arg(0) + " " + d.arg(1) + "'"), true;
        std::uint64_t total = std::min<std::uint64_t>(*count * *size, 1ULL << 30);
        set_value(out_.limits, "max_header_size", format_bytes(total),
                  static_cast<std::int64_t>(total), d);
        f_.note(d, "nginx bounds each header line by " + d.arg(1) +
                       " and the head by their sum; tether bounds the whole head: " +
                       format_bytes(total));
        return true;
    }
    return false;
}

void Converter::access_log(const Directive& d) {
    std::string path = d.arg(0);
    if (path == "off" || path == "/dev/null") {
        path = "off";
    } else if (path == "/dev/stdout" || path == "/dev/stderr") {
        path = path.substr(5);
    } else {
        std::error_code ec;
        fs::path file(path);
        if (file.is_relative()) file = fs::path(conf_dir_) / file;
        if (!fs::is_directory(file.parent_path(), ec)) {
            f_.note(d, "the directory of '" + path + "' does not exist here; logging to stdout");
            path = "stdout";
        } else {
            path = file.lexically_normal().string();
        }
    }
    if (d.args.size() > 1 && d.arg(1) != "combined" && path != "off")
        f_.note(d, "log format '" + d.arg(1) +
                       "' becomes tether's combined format "
                       "(access_log.format: combined | json)");
    if (out_.access_log_path != "stdout" && out_.access_log_path != path)
        f_.note(d, "tether has one access log; '" + out_.access_log_path + "' is kept");
    else
        out_.access_log_path = path;
}

OutUpstream* Converter::upstream(const std::string& name) {
    for (OutUpstream& u : out_.upstreams)
        if (u.name == name) return &u;
    return nullptr;
}

void Converter::build_listeners() {
    for (const ServerInfo& server : servers_) {
        if (server.proxies.empty()) {
            if (!server.listens.empty() || !server.block->children.empty())
                f_.differs(*server.block,
                           "server block without proxy_pass is not translated "
                           "(tether only proxies): its addresses get no "
                           "listener");
            continue;
        }
        auto main = std::find_if(server.proxies.begin(), server.proxies.end(),
                                 [](const ProxyLocation& p) { return p.path == "/"; });
        if (main == server.proxies.end()) main = server.proxies.begin();
        for (const ProxyLocation& p : server.proxies)
            if (p.upstream != main->upstream)
                f_.differs(*p.block, "location " + p.path + " proxies to '" + p.upstream +
                                         "', but a tether listener sends every request to one "
                                         "upstream ('" +
                                         main->upstream + "', from location " + main->path + ")");
        if (server.listens.empty()) {
            f_.note(*server.block, "no 'listen': nginx's default *:80 is used");
            Directive implicit;
            implicit.name = "listen";
            implicit.args = {"80"};
            implicit.file = server.block->file;
            implicit.line = server.block->line;
            add_listener(server, implicit, main->upstream);
        }
        for (const Directive* listen : server.listens)
            add_listener(server, *listen, main->upstream);
    }
}

void Converter::add_listener(const ServerInfo& server, const Directive& d,
                             const std::string& upstream) {
    auto address = parse_address(d.arg(0), 80, "0.0.0.0");
    if (!address)
        return f_.differs(d, "'" + d.arg(0) +
                                 "' cannot be translated (unix sockets "
                                 "are not supported)");
    OutListener l;
    l.address = *address;
    l.upstream = upstream;
    l.origin = d.where();
    l.tls = server.scope.ssl_on;
    for (std::size_t i = 1; i < d.args.size(); ++i) {
        const std::string& a = d.args[i];
        if (a == "ssl")
            l.tls = true;
        else if (a == "proxy_protocol")
            l.proxy_protocol = true;
        else if (a == "http2")
            f_.add(Kind::ignored, d,
                   "listen parameter 'http2': tether speaks HTTP/1.1; clients "
                   "fall back to it through ALPN");
        else if (a == "quic" || a.starts_with("setfib"))
            f_.differs(d, "listen parameter '" + a + "' is not supported");
        else if (a != "default_server" && a != "default")
            f_.add(Kind::ignored, d, "listen parameter '" + a + "' has no tether equivalent");
    }
    if (l.tls && !tls_material(server, d, l)) return;
    auto same = std::find_if(out_.listen.begin(), out_.listen.end(),
                             [&](const OutListener& o) { return o.address == l.address; });
    if (same == out_.listen.end()) return out_.listen.push_back(std::move(l));
    if (same->upstream != l.upstream || same->tls != l.tls)
        return f_.differs(d, "address " + l.address + " is already served by the server at " +
                                 same->origin +
                                 "; tether has no virtual hosts, one listener "
                                 "goes to one upstream");
    for (const OutCert& c : l.certs)  // more names on one address: certificates chosen by SNI
        if (std::none_of(same->certs.begin(), same->certs.end(),
                         [&](auto& o) { return o.certificate == c.certificate; }))
            same->certs.push_back(c);
}

bool Converter::tls_material(const ServerInfo& server, const Directive& d, OutListener& l) {
    const Scope& s = server.scope;
    if (s.certificates.empty() || s.keys.empty()) {
        f_.differs(d, "TLS listener without ssl_certificate and ssl_certificate_key");
        return false;
    }
    auto resolve = [&](const Directive* x) { return path_of(*x); };
    for (std::size_t i = 0; i < s.certificates.size() && i < s.keys.size(); ++i) {
        if (s.certificates[i]->arg(0).find('$') != std::string::npos ||
            s.keys[i]->arg(0).find('$') != std::string::npos) {
            f_.differs(*s.certificates[i],
                       "certificate paths with variables cannot be "
                       "translated");
            return false;
        }
        if (i > 0) {
            f_.ignored(*s.certificates[i],
                       "a second certificate for one server (RSA + ECDSA) "
                       "is not supported; the first is used");
            continue;
        }
        l.certs.push_back({resolve(s.certificates[i]), resolve(s.keys[i]), {}});
    }
    if (s.stapling_file && !s.stapling_on) {
        if (reported_.insert(s.stapling_file).second)
            f_.ignored(*s.stapling_file,
                       "nginx reads it only with 'ssl_stapling on'; not written (tether would "
                       "staple it)");
    } else if (s.stapling_file && !l.certs.empty()) {
        l.certs.front().ocsp_response = resolve(s.stapling_file);
        if (reported_.insert(s.stapling_file).second)
            f_.note(*s.stapling_file,
                    "becomes ocsp_response of the certificate " + l.certs.front().certificate +
                        ": stapled to clients that ask (TLS 1.2 and 1.3), read again on each "
                        "reload. tether checks it when it loads it: a file that is not a "
                        "successful OCSP response with a status for this certificate refuses "
                        "the start, the reload and tether -t");
    }
    if (s.protocols) {
        for (const std::string& p : s.protocols->args) {
            if (p == "TLSv1.2" || p == "TLSv1.3")
                l.protocols.push_back(p);
            else if (reported_.insert(s.protocols).second)
                f_.note(*s.protocols, "protocols older than TLSv1.2 are not offered by tether");
        }
        if (l.protocols.empty()) {
            f_.differs(*s.protocols, "none of the protocols is TLSv1.2 or TLSv1.3");
            return false;
        }
    }
    return true;
}

// An ssl_stapling_file no translated TLS listener took (tls_material reports the others):
// a server block without 'listen ... ssl', where nginx staples nothing either.
void Converter::unused_stapling_files() {
    for (const Directive* d : stapling_seen_)
        if (reported_.insert(d).second)
            f_.ignored(*d, "no TLS listener is translated under it (no 'listen ... ssl' in its "
                           "server block, where nginx staples nothing either); not written");
}

void Converter::fail_statuses() {
    static const std::map<std::string, int> kCounted = {
        {"http_500", 500}, {"http_502", 502}, {"http_503", 503}, {"http_504", 504},
        {"http_429", 429}};
    for (const ServerInfo& server : servers_) {
        for (const ProxyLocation& p : server.proxies) {
            const Directive* d = p.next_upstream;
            OutUpstream* u = d ? upstream(p.upstream) : nullptr;
            if (!u) continue;
            std::set<int> statuses(u->fail_on_status.begin(), u->fail_on_status.end());
            std::string retried;  // statuses nginx retries on but never counts
            for (const std::string& a : d->args) {
                if (auto it = kCounted.find(a); it != kCounted.end()) statuses.insert(it->second);
                if (a == "http_403" || a == "http_404") retried += (retried.empty() ? "" : ", ") + a;
            }
            const bool changed = statuses.size() != u->fail_on_status.size();
            const bool merged = changed && !u->fail_on_status.empty();
            u->fail_on_status.assign(statuses.begin(), statuses.end());
            std::string list;
            for (int code : u->fail_on_status) list += (list.empty() ? "" : ", ") + std::to_string(code);
            if (merged)
                f_.note(*d, "upstream '" + u->name + "' is also proxied to under " +
                                u->fail_on_status_origin +
                                " with other statuses; tether's fail_on_status is per upstream: "
                                "[" + list + "] is written");
            if (u->fail_on_status_origin.empty()) u->fail_on_status_origin = d->where();
            if (!reported_.insert(d).second) continue;
            f_.note(*d,
                    "becomes fail_on_status: [" + list + "] on upstream '" + u->name +
                        "'. The same as nginx: such an answer counts toward max_fails within "
                        "fail_timeout. Not the same: nginx then passes the request to the next "
                        "server (up to proxy_next_upstream_tries, a non-idempotent one only with "
                        "non_idempotent) and the client gets that server's answer; tether sends "
                        "the failing answer to the client and never re-sends a request a backend "
                        "received (retries covers refused or timed-out connects only)" +
                        (retried.empty() ? std::string()
                                         : ". No equivalent for " + retried +
                                               " (retried by nginx, never counted): the "
                                               "answer goes to the client"));
        }
    }
    for (const Directive* d : next_upstreams_)
        if (!reported_.contains(d))
            f_.ignored(*d, "no location under it proxies to an upstream; nothing is written");
}

void Converter::check_headers() {
    bool any_proxy = false, forwarded_missing = false;
    for (const ServerInfo& server : servers_) {
        for (const ProxyLocation& p : server.proxies) {
            any_proxy = true;
            bool host = false, forwarded = false;
            for (const Directive* d : p.headers) {
                std::string name = lower(d->arg(0));
                const std::string& value = d->arg(1);
                bool first = reported_.insert(d).second;
                if (name == "host") {
                    host = true;
                    if (first && value != "$host" && value != "$http_host")
                        f_.differs(*d,
                                   "tether forwards the client's Host header unchanged; "
                                   "Host '" +
                                       value + "' is not sent");
                } else if (name == "x-forwarded-for" || name == "x-real-ip" ||
                           name == "x-forwarded-proto" || name == "x-forwarded-host") {
                    forwarded = out_.forwarded = true;
                } else if (name == "x-request-id") {
                    out_.request_id = true;
                } else if (name == "upgrade" || name == "connection") {
                    // tether forwards WebSocket upgrades itself
                } else if (first && name == "x-nginx-proxy") {
                    f_.ignored(*d, "a marker header; tether does not send it (harmless)");
                } else if (first) {
                    f_.differs(*d, "tether cannot set request header '" + d->arg(0) + "'");
                }
            }
            forwarded_missing = forwarded_missing || !forwarded;
            if (!host)
                f_.note(*p.block,
                        "nginx sent 'Host: $proxy_host' (the upstream's name) here; "
                        "tether forwards the client's Host");
        }
    }
    if (any_proxy && out_.forwarded && forwarded_missing)
        f_.add(Kind::note, "", 0,
               "some locations set X-Forwarded-*/X-Real-IP and others do "
               "not; tether sends them on every request (headers.forwarded)");
}

void Converter::suggest_sid() {
    for (const ServerInfo& server : servers_) {
        for (const ProxyLocation& p : server.proxies) {
            OutUpstream* u = upstream(p.upstream);
            if (!u) continue;
            std::string path = p.path.ends_with('/') ? p.path : p.path + "/";
            if (u->affinity == "sid") {  // Engine.IO served under this location's prefix
                if (path != "/" && path != "/socket.io/" && path.starts_with('/') &&
                    u->sid_path.empty())
                    u->sid_path = path;
                continue;
            }
            if (p.path.find("/socket.io") == std::string::npos) continue;
            f_.add(Kind::suggestion, p.block->file, p.block->line,
                   "location " + p.path + " carries Socket.IO traffic to upstream '" + u->name +
                       "' (affinity: " + u->affinity +
                       "): consider 'affinity: sid' (with "
                       "sid.path: " +
                       path +
                       "), which pins each Socket.IO session whatever "
                       "the client's IP and works across tether replicas");
        }
    }
}

std::string Finding::text() const {
    static constexpr const char* kNames[] = {"ignored", "note", "suggestion", "not translated"};
    std::string where = file.empty() ? ""
                        : line > 0   ? file + ":" + std::to_string(line) + ": "
                                     : file + ": ";
    return where + kNames[static_cast<int>(kind)] + ": " + message;
}

bool Conversion::differs() const {
    return std::any_of(findings.begin(), findings.end(),
                       [](const Finding& f) { return f.kind == Finding::Kind::not_translated; });
}

Conversion convert(const std::vector<Directive>& directives, const std::string& source,
                   const std::string& conf_dir) {
    return Converter(conf_dir).run(directives, source);
}

}  // namespace tether::nginx
