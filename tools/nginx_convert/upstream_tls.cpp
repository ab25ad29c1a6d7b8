// proxy_pass https:// and the proxy_ssl_* settings around it -> upstreams.*.tls (nginx's
// defaults kept where tether's differ: no certificate check unless proxy_ssl_verify on).
// tether has one tls block per upstream: an upstream proxied to with both schemes, or
// with different proxy_ssl_* settings, is reported. Part of the Converter; single-threaded.
#include <filesystem>
#include <string_view>

#include "converter.hpp"

namespace tether::nginx {
namespace {

// The proxy_ssl_* lines upstream_scheme carries over whole (into upstreams.*.tls or its note).
const std::set<std::string_view> kTranslated = {
    "proxy_ssl_verify",  "proxy_ssl_trusted_certificate", "proxy_ssl_certificate",
    "proxy_ssl_certificate_key", "proxy_ssl_ciphers", "proxy_ssl_protocols",
    "proxy_ssl_name", "proxy_ssl_server_name"};

bool has_variable(const Directive& d) { return d.arg(0).find('$') != std::string::npos; }

}  // namespace

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
        if (!has_variable(*cert) && !has_variable(*key))  // else untranslated_proxy_ssl says so
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
    if (sni && !has_variable(*sni)) t.server_name = sni->arg(0);
    const Directive* sni_on = get("proxy_ssl_server_name");
    const bool sends_sni = sni_on && sni_on->arg(0) == "on";
    untranslated_proxy_ssl(scope, t, sends_sni);
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
                           : std::string(" where nginx sends none (proxy_ssl_server_name off)")));
}

// The proxy_ssl_* lines of `scope` that upstreams.*.tls does not carry (whole or in part),
// each judged once: not translated where tether would send or check something else than
// nginx, ignored where nginx does not use them either. `t` is what was translated.
void Converter::untranslated_proxy_ssl(const Scope& scope, const OutUpstreamTls& t,
                                       bool sends_sni) {
    const std::string unchecked = "nothing is checked with proxy_ssl_verify off; not written";
    for (const auto& [name, d] : scope.proxy_ssl) {
        if (!reported_.insert(d).second) continue;
        proxy_ssl_used_.insert(d);
        const std::string& value = d->arg(0);
        if (name == "proxy_ssl_protocols") {
            std::string older;  // what tether never offers
            for (const std::string& p : d->args)
                if (p != "TLSv1.2" && p != "TLSv1.3") older += (older.empty() ? "" : " ") + p;
            if (older.empty()) continue;
            if (t.protocols.empty())
                f_.differs(*d, "tether speaks only TLSv1.2 and TLSv1.3 to "
                               "backends, and neither is listed: its default (both) is written, "
                               "so a server that speaks only " + older + " fails its handshake");
            else
                f_.note(*d, older + " not written: tether never offers a backend a TLS "
                                    "version older than TLSv1.2");
        } else if (name == "proxy_ssl_name") {
            if (!has_variable(*d)) continue;
            if (sends_sni || t.verify)
                f_.differs(*d, "a name made of variables cannot be translated; "
                               "tether sends and checks each server's host instead");
            else
                f_.ignored(*d, "a name made of variables; nginx uses none here "
                               "(proxy_ssl_server_name and proxy_ssl_verify off)");
        } else if (name == "proxy_ssl_certificate" || name == "proxy_ssl_certificate_key") {
            if (has_variable(*d))
                f_.differs(*d, "a path made of variables (a certificate per "
                               "request) cannot be translated; tether sends no client "
                               "certificate");
        } else if (name == "proxy_ssl_session_reuse") {
            if (value == "off")
                f_.differs(*d, "tether always resumes the last TLS session a "
                               "server gave (one cache per upstream) and cannot be told not to");
            else
                f_.ignored(*d, "tether resumes sessions with the servers too");
        } else if (name == "proxy_ssl_verify_depth") {
            if (t.verify)
                f_.differs(*d, "tether limits no chain depth (OpenSSL's 100), "
                               "so a server chain longer than " + value + " that nginx refuses "
                               "is accepted");
            else
                f_.ignored(*d, unchecked);
        } else if (name == "proxy_ssl_crl") {
            if (t.verify)
                f_.differs(*d, "tether reads no revocation list, so a revoked "
                               "server certificate that nginx refuses is accepted");
            else
                f_.ignored(*d, unchecked);
        } else if (name == "proxy_ssl_password_file") {
            if (!t.private_key.empty())
                f_.differs(*d, "tether reads only private keys without a "
                               "passphrase; write one without it (openssl pkey -in KEY -out "
                               "PLAIN_KEY) and set tls.private_key to it");
            else
                f_.ignored(*d, "no client certificate is sent; not written");
        } else if (name == "proxy_ssl_certificate_cache") {
            f_.ignored(*d, "tether reads the client certificate at start and on each reload");
        } else if (!kTranslated.contains(name)) {
            f_.differs(*d, "no tether equivalent in upstreams.*.tls");
        }
    }
}

void Converter::unused_proxy_ssl() {
    for (const Directive* d : proxy_ssl_seen_)
        if (!proxy_ssl_used_.contains(d))
            f_.ignored(*d, "no proxy_pass https:// under it; nothing is written");
}

}  // namespace tether::nginx
