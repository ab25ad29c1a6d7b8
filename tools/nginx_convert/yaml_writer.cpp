// Prints the converter's Output as tether YAML, keys in the order of SPEC.md
// "Configuration", with a comment naming the nginx source of each block.
#include <regex>
#include <sstream>

#include "model.hpp"

namespace tether::nginx {
namespace {

/// A scalar as YAML: plain when unambiguous, else double-quoted with escapes.
std::string scalar(const std::string& s) {
    static const std::regex kPlain(R"([A-Za-z0-9_/.][A-Za-z0-9_/.:+@-]*)");
    static const std::regex kSpecial(R"((?:true|false|yes|no|on|off|null|y|n|~)|[0-9.:+-]+)",
                                     std::regex::icase);
    if (std::regex_match(s, kPlain) && !std::regex_match(s, kSpecial) && !s.ends_with(':'))
        return s;
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out + "\"";
}

/// `key: [a, b]` on one line.
void write_list(std::ostringstream& y, const char* key, const std::vector<std::string>& items) {
    y << key << ": [";
    for (std::size_t i = 0; i < items.size(); ++i) y << (i ? ", " : "") << items[i];
    y << "]\n";
}

void write_upstream(std::ostringstream& y, const OutUpstream& u) {
    y << "\n";
    for (const std::string& c : u.comments) y << "  # " << c << "\n";
    y << "  " << scalar(u.name) << ":            # from " << u.origin << "\n";
    y << "    affinity: " << u.affinity << "\n";
    y << "    balance: " << u.balance << "\n";
    if (u.prefix_v4 >= 0 || u.prefix_v6 >= 0) {
        y << "    ip_hash:\n";
        if (u.prefix_v4 >= 0) y << "      prefix_v4: " << u.prefix_v4 << "\n";
        if (u.prefix_v6 >= 0) y << "      prefix_v6: " << u.prefix_v6 << "\n";
    }
    if (!u.cookie_name.empty() || u.cookie_max_age_ms >= 0) {
        y << "    cookie:\n";
        if (!u.cookie_name.empty()) y << "      name: " << scalar(u.cookie_name) << "\n";
        if (u.cookie_max_age_ms >= 0)
            y << "      max_age: " << format_ms(u.cookie_max_age_ms) << "\n";
    }
    if (!u.sid_path.empty() || !u.sid_param.empty()) {
        y << "    sid:\n";
        if (!u.sid_path.empty()) y << "      path: " << scalar(u.sid_path) << "\n";
        if (!u.sid_param.empty()) y << "      param: " << scalar(u.sid_param) << "\n";
    }
    if (u.keepalive >= 0) y << "    keepalive: " << u.keepalive << "\n";
    if (u.retries >= 0) y << "    retries: " << u.retries << "\n";
    if (!u.fail_on_status.empty()) {
        y << "    fail_on_status: [";
        for (std::size_t i = 0; i < u.fail_on_status.size(); ++i)
            y << (i ? ", " : "") << u.fail_on_status[i];
        y << "]    # from " << u.fail_on_status_origin << "\n";
    }
    if (u.tls) {
        y << "    tls:\n      verify: " << (u.tls->verify ? "true" : "false") << "\n";
        const std::pair<const char*, const std::string*> keys[] = {
            {"ca", &u.tls->ca},
            {"server_name", &u.tls->server_name},
            {"certificate", &u.tls->certificate},
            {"private_key", &u.tls->private_key},
            {"ciphers", &u.tls->ciphers}};
        for (const auto& [key, value] : keys)
            if (!value->empty()) y << "      " << key << ": " << scalar(*value) << "\n";
        if (!u.tls->protocols.empty()) write_list(y, "      protocols", u.tls->protocols);
    }
    y << "    servers:\n";
    for (const OutServer& s : u.servers) {
        y << "      - address: " << scalar(s.address) << "\n";
        if (s.weight != 1) y << "        weight: " << s.weight << "\n";
        if (s.max_conns != 0) y << "        max_conns: " << s.max_conns << "\n";
        y << "        max_fails: " << s.max_fails << "\n";
        y << "        fail_timeout: " << format_ms(s.fail_timeout_ms) << "\n";
        if (s.backup) y << "        backup: true\n";
    }
}

void write_values(std::ostringstream& y, const char* section,
                  const std::map<std::string, OutValue>& values) {
    if (values.empty()) return;
    y << "\n" << section << ":\n";
    for (const auto& [key, v] : values)
        y << "  " << key << ": " << scalar(v.text) << "    # from " << v.origin << "\n";
}

}  // namespace

std::string write_yaml(const Output& out, const std::string& source) {
    std::ostringstream y;
    y << "# tether configuration converted from " << source << " by tether-from-nginx.\n"
      << "# Check it with: tether -t -c FILE. Keys left out take tether's defaults\n"
      << "# (docs/configuration.md); nginx's own defaults that differ are written out.\n";
    if (!out.workers.empty()) y << "\nworkers: " << out.workers << "\n";
    y << "\nlisten:\n";
    for (const OutListener& l : out.listen) {
        y << "  - address: " << scalar(l.address) << "    # from " << l.origin << "\n";
        y << "    upstream: " << scalar(l.upstream) << "\n";
        if (l.proxy_protocol) y << "    proxy_protocol: true\n";
        if (!l.tls) continue;
        y << "    tls:\n";
        if (l.certs.size() == 1) {
            y << "      certificate: " << scalar(l.certs[0].certificate) << "\n";
            y << "      private_key: " << scalar(l.certs[0].private_key) << "\n";
            if (!l.certs[0].ocsp_response.empty())
                y << "      ocsp_response: " << scalar(l.certs[0].ocsp_response) << "\n";
        } else {
            y << "      certificates:\n";
            for (const OutCert& c : l.certs) {
                y << "        - certificate: " << scalar(c.certificate) << "\n";
                y << "          private_key: " << scalar(c.private_key) << "\n";
                if (!c.ocsp_response.empty())
                    y << "          ocsp_response: " << scalar(c.ocsp_response) << "\n";
            }
        }
        if (!l.protocols.empty()) write_list(y, "      protocols", l.protocols);
    }
    if (!out.trusted_proxies.empty()) {
        y << "\ntrusted_proxies:\n";
        for (const std::string& cidr : out.trusted_proxies) y << "  - " << scalar(cidr) << "\n";
    }
    y << "\nupstreams:";
    for (const OutUpstream& u : out.upstreams) write_upstream(y, u);
    write_values(y, "timeouts", out.timeouts);
    write_values(y, "limits", out.limits);
    if (out.rate_per_second) {
        if (out.limits.empty()) y << "\nlimits:\n";
        y << "  rate:    # from " << out.rate_per_second->origin << "\n"
          << "    requests_per_second: " << out.rate_per_second->text << "\n"
          << "    burst: " << out.rate_burst->text << "\n";
    }
    y << "\nheaders:\n"
      << "  forwarded: " << (out.forwarded ? "true" : "false") << "\n"
      << "  request_id: " << (out.request_id ? "true" : "false") << "\n";
    y << "\naccess_log:\n  path: " << scalar(out.access_log_path) << "\n";
    return y.str();
}

}  // namespace tether::nginx
