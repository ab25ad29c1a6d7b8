// proxy_pass https:// and the proxy_ssl_* settings around it -> upstreams.*.tls (nginx's
// defaults kept where tether's differ: no certificate check unless proxy_ssl_verify on).
// tether has one tls block per upstream: an upstream proxied to with both schemes, or
// with different proxy_ssl_* settings, is reported. Part of the Converter; single-threaded.
#include <filesystem>

#include "converter.hpp"

namespace tether::nginx {

std::string Converter::path_of(const Directive& d) const {
    std::filesystem::path p(d.arg(0));
    return (p.is_relative() ? std::filesystem::path(conf_dir_) / p : p).lexically_normal().string();
}

void Converter::upstream_scheme(const Directive& pass, const Scope& scope, const std::string& name) {
    OutUpstream* u = upstream(name);
    if (!u) return;
    const bool tls = pass.arg(0).starts_with("https://");
    if (!u->scheme_origin.empty() && tls != u->tls.has_value())
        return f_.differs(pass, "upstream '" + name + "' is proxied to with " +
                                    (tls ? "http:// at " : "https:// at ") + u->scheme_origin +
                                    "; tether speaks either plain HTTP or TLS to an upstream");
    if (u->scheme_origin.empty()) u->scheme_origin = pass.where();
    if (!tls) return;
    auto get = [&](const char* key) -> const Directive* {
        auto it = scope.proxy_ssl.find(key);
        if (it == scope.proxy_ssl.end()) return nullptr;
        proxy_ssl_used_.insert(it->second);
        return it->second;
    };
    OutUpstreamTls t;
    if (const Directive* d = get("proxy_ssl_verify")) t.verify = d->arg(0) == "on";
    if (const Directive* d = get("proxy_ssl_trusted_certificate")) t.ca = path_of(*d);
    const Directive* cert = get("proxy_ssl_certificate");
    const Directive* key = get("proxy_ssl_certificate_key");
    if (cert && key) {
        t.certificate = path_of(*cert), t.private_key = path_of(*key);
    } else if (cert || key) {
        f_.differs(cert ? *cert : *key, "a client certificate needs both proxy_ssl_certificate "
                                        "and proxy_ssl_certificate_key; none is sent");
    }
    if (const Directive* d = get("proxy_ssl_ciphers")) t.ciphers = d->arg(0);
    if (const Directive* d = get("proxy_ssl_protocols"))
        for (const std::string& p : d->args)
            if (p == "TLSv1.2" || p == "TLSv1.3") t.protocols.push_back(p);
    const Directive* sni = get("proxy_ssl_name");
    if (sni && sni->arg(0).find('$') == std::string::npos) t.server_name = sni->arg(0);
    const Directive* sni_on = get("proxy_ssl_server_name");
    const bool sends_sni = sni_on && sni_on->arg(0) == "on";
    if (u->tls) {
        if (*u->tls != t)
            f_.differs(pass, "upstream '" + name + "' is proxied to with other proxy_ssl_* "
                             "settings at " + u->scheme_origin +
                             "; tether has one tls block per upstream: that one is written");
        return;
    }
    u->tls = t;
    f_.note(pass,
            "becomes tls on upstream '" + name + "': " +
                (t.verify ? std::string("verify: true (proxy_ssl_verify on)") +
                                (t.ca.empty() ? ", against the system's trust store as no "
                                                "proxy_ssl_trusted_certificate is set"
                                              : "")
                          : std::string("verify: false, as nginx's default proxy_ssl_verify off "
                                        "(the servers' certificates are not checked)")) +
                (sends_sni ? ". SNI (and the name checked): tether sends "
                           : ". SNI differs: tether sends ") +
                (t.server_name.empty() ? "each server's host name (never an IP address)"
                                       : "'" + t.server_name + "'") +
                (sends_sni ? (t.server_name.empty()
                                  ? " where nginx sends proxy_ssl_name (by default the "
                                    "upstream's name)"
                                  : std::string(" as nginx"))
                           : std::string(" where nginx sends none (proxy_ssl_server_name off)")) +
                (sni && t.server_name.empty()
                     ? "; proxy_ssl_name " + sni->arg(0) + " has no equivalent"
                     : std::string()));
}

void Converter::unused_proxy_ssl() {
    for (const Directive* d : proxy_ssl_seen_)
        if (!proxy_ssl_used_.contains(d))
            f_.ignored(*d, "no proxy_pass https:// under it; nothing is written");
}

}  // namespace tether::nginx
