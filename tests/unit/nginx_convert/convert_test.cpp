// nginx.conf -> tether YAML (tools/nginx_convert/convert.hpp). Each sample under
// tests/data/nginx/ is converted and the YAML is read back by tether's own loader (the code
// behind `tether -t`), so the assertions are on the configuration tether would run with.
// Inline snippets pin single mappings and the findings (file:line, kind) of what is lost.
#include "convert.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "tether/config/loader.hpp"

namespace tether::nginx {
namespace {

using config::Affinity;
using config::Balance;
using Kind = Finding::Kind;
using std::chrono::milliseconds;

const std::string kData = std::string(TETHER_TESTDATA) + "/nginx";

struct Converted {
    Conversion conversion;
    config::LoadResult loaded;
    const config::Config& cfg() const { return *loaded.config; }
    bool has(Kind kind, int line, std::string_view text = "") const {
        return std::any_of(conversion.findings.begin(), conversion.findings.end(), [&](auto& f) {
            return f.kind == kind && f.line == line && f.message.find(text) != std::string::npos;
        });
    }
    int count(Kind kind) const {
        return static_cast<int>(std::count_if(conversion.findings.begin(),
                                              conversion.findings.end(),
                                              [&](auto& f) { return f.kind == kind; }));
    }
};

Converted load(const ParseResult& parsed, const std::string& name) {
    EXPECT_TRUE(parsed.errors.empty()) << parsed.errors.at(0).text();
    Converted c{convert(parsed.directives, name, kData), {}};
    c.loaded = config::load_config_text(c.conversion.yaml, "converted.yaml", kData);
    for (const auto& e : c.loaded.errors) ADD_FAILURE() << e.text() << "\n" << c.conversion.yaml;
    return c;
}

Converted sample(const std::string& file) { return load(parse_file(kData + "/" + file), file); }

Converted snippet(std::string_view text) {
    return load(parse_text(text, "s.conf", kData), "s.conf");
}

TEST(ConvertSamples, SocketIoDocsHashOnRemoteAddr) {
    auto c = sample("socketio_docs.conf");
    EXPECT_FALSE(c.conversion.differs());
    const auto& cfg = c.cfg();
    ASSERT_EQ(cfg.listen.size(), 1u);
    EXPECT_EQ(cfg.listen[0].address.text(), "0.0.0.0:80");
    EXPECT_EQ(cfg.listen[0].upstream, "nodes");
    const auto& u = cfg.upstreams.at("nodes");
    EXPECT_EQ(u.affinity, Affinity::ip_hash);
    EXPECT_EQ(u.ip_hash.prefix_v4, 32);
    EXPECT_EQ(u.ip_hash.prefix_v6, 128);
    ASSERT_EQ(u.servers.size(), 3u);
    EXPECT_EQ(u.servers[2].address.text(), "app03:3000");
    EXPECT_EQ(u.servers[0].max_fails, 1);  // nginx's defaults, written out
    EXPECT_EQ(u.servers[0].fail_timeout, milliseconds(10'000));
    EXPECT_TRUE(cfg.headers.forwarded);
    EXPECT_FALSE(cfg.headers.request_id);
    EXPECT_TRUE(c.has(Kind::ignored, 6, "server_name"));
}

TEST(ConvertSamples, IpHashTutorialKeepsNginxKeyAndSuggestsSid) {
    auto c = sample("ip_hash_tutorial.conf");
    EXPECT_FALSE(c.conversion.differs());
    const auto& cfg = c.cfg();
    EXPECT_EQ(cfg.workers, 0);  // auto
    const auto& u = cfg.upstreams.at("socket_nodes");
    EXPECT_EQ(u.affinity, Affinity::ip_hash);
    EXPECT_EQ(u.ip_hash.prefix_v4, 24);
    EXPECT_EQ(u.balance, Balance::round_robin);
    EXPECT_EQ(u.servers[0].weight, 2);
    EXPECT_EQ(u.servers[2].max_fails, 2);
    EXPECT_EQ(u.servers[2].fail_timeout, milliseconds(15'000));
    ASSERT_EQ(cfg.listen.size(), 2u);
    EXPECT_EQ(cfg.listen[1].address.text(), "[::]:80");
    EXPECT_EQ(cfg.timeouts.upstream_response, milliseconds(86'400'000));
    EXPECT_EQ(cfg.timeouts.idle, milliseconds(65'000));
    EXPECT_TRUE(c.has(Kind::suggestion, 32, "affinity: sid"));
    EXPECT_TRUE(c.has(Kind::ignored, 13, "gzip"));
    EXPECT_TRUE(c.has(Kind::ignored, 41, "marker header"));
}

TEST(ConvertSamples, WeightedCookieHash) {
    auto c = sample("weighted_cookie.conf");
    EXPECT_FALSE(c.conversion.differs());
    const auto& u = c.cfg().upstreams.at("app");
    EXPECT_EQ(u.affinity, Affinity::cookie);
    EXPECT_EQ(u.cookie.name, "tether");  // never the application's own cookie
    EXPECT_EQ(u.servers[0].weight, 3);
    EXPECT_EQ(u.servers[1].weight, 1);
    EXPECT_TRUE(c.cfg().headers.request_id);
    EXPECT_TRUE(c.has(Kind::note, 5, "session_id"));
}

TEST(ConvertSamples, ArgSidUnderCustomPath) {
    auto c = sample("sid.conf");
    EXPECT_FALSE(c.conversion.differs());
    const auto& u = c.cfg().upstreams.at("realtime");
    EXPECT_EQ(u.affinity, Affinity::sid);
    EXPECT_EQ(u.sid.path, "/realtime/");
    EXPECT_EQ(u.sid.param, "sid");
    EXPECT_EQ(c.cfg().listen.at(0).address.text(), "0.0.0.0:8081");
    EXPECT_FALSE(c.cfg().headers.forwarded);  // nginx sent none of them here
}

TEST(ConvertSamples, LeastConnWithBackupAndLimits) {
    auto c = sample("least_conn_backup.conf");
    EXPECT_FALSE(c.conversion.differs());
    const auto& u = c.cfg().upstreams.at("api");
    EXPECT_EQ(u.affinity, Affinity::none);
    EXPECT_EQ(u.balance, Balance::least_conn);
    EXPECT_EQ(u.keepalive, 16);
    ASSERT_EQ(u.servers.size(), 3u);  // the `down` one is left out
    EXPECT_EQ(u.servers[0].weight, 5);
    EXPECT_EQ(u.servers[0].max_conns, 200);
    EXPECT_EQ(u.servers[0].fail_timeout, milliseconds(30'000));
    EXPECT_TRUE(u.servers[2].backup);
    EXPECT_EQ(u.servers[2].address.text(), "192.0.2.20:8000");
    EXPECT_EQ(c.cfg().timeouts.connect, milliseconds(3'000));
    EXPECT_TRUE(c.has(Kind::ignored, 8, "down"));
}

TEST(ConvertSamples, TlsServerBlock) {
    auto c = sample("tls.conf");
    EXPECT_FALSE(c.conversion.differs());  // tether terminates TLS
    const auto& l = c.cfg().listen.at(0);
    EXPECT_EQ(l.address.text(), "0.0.0.0:443");
    ASSERT_TRUE(l.tls);
    ASSERT_EQ(l.tls->certificates.size(), 1u);
    EXPECT_EQ(l.tls->certificates[0].certificate, kData + "/tls/cert.pem");
    EXPECT_EQ(l.tls->certificates[0].private_key, kData + "/tls/key.pem");
    EXPECT_EQ(l.tls->protocols, (std::vector<std::string>{"TLSv1.2", "TLSv1.3"}));
    EXPECT_EQ(c.cfg().upstreams.at("io").balance, Balance::random_two);
    EXPECT_EQ(c.cfg().limits.max_body_size, 10u << 20);
    EXPECT_EQ(c.cfg().limits.max_header_size, 64u << 10);
    EXPECT_EQ(c.cfg().timeouts.client_header, milliseconds(20'000));
    EXPECT_TRUE(c.has(Kind::note, 8, "older than TLSv1.2"));
    EXPECT_TRUE(c.has(Kind::ignored, 16, "http2"));
}

TEST(ConvertSamples, IncludesSeveralUpstreamsAndQuoting) {
    auto c = sample("multi.conf");
    const auto& cfg = c.cfg();
    EXPECT_EQ(cfg.workers, 4);
    EXPECT_EQ(cfg.access_log.path, "off");
    ASSERT_EQ(cfg.listen.size(), 2u);
    EXPECT_EQ(cfg.listen[0].address.text(), "127.0.0.1:9080");
    EXPECT_EQ(cfg.listen[0].upstream, "chat");
    EXPECT_EQ(cfg.listen[1].upstream, "api-v2");  // the quoted upstream name
    EXPECT_EQ(cfg.upstreams.at("chat").affinity, Affinity::cookie);
    EXPECT_EQ(cfg.upstreams.at("api-v2").servers.at(0).weight, 2);
    EXPECT_TRUE(cfg.headers.forwarded);  // inherited from http{} ('quoted' header name)
    // conf.d/20-api.conf:10: a second location to another upstream on the same listener
    ASSERT_TRUE(c.conversion.differs());
    auto f = std::find_if(c.conversion.findings.begin(), c.conversion.findings.end(),
                          [](auto& f) { return f.kind == Kind::not_translated; });
    EXPECT_TRUE(f->file.ends_with("conf.d/20-api.conf"));
    EXPECT_EQ(f->line, 10);
    EXPECT_EQ(c.count(Kind::not_translated), 1);
}

TEST(ConvertSamples, UntranslatableDirectivesAreListedWithTheirLines) {
    auto c = sample("untranslatable.conf");
    EXPECT_TRUE(c.conversion.differs());
    EXPECT_TRUE(c.has(Kind::not_translated, 5, "without proxy_pass"));
    EXPECT_TRUE(c.has(Kind::not_translated, 7, "redirects"));
    EXPECT_TRUE(c.has(Kind::not_translated, 11, "add_header"));
    EXPECT_TRUE(c.has(Kind::not_translated, 15, "X-Tenant"));
    EXPECT_TRUE(c.has(Kind::not_translated, 17, "/static/"));
    EXPECT_TRUE(c.has(Kind::not_translated, 21, "URI"));
    EXPECT_EQ(c.count(Kind::not_translated), 6);
    ASSERT_EQ(c.cfg().listen.size(), 1u);  // what could be translated still is
    EXPECT_EQ(c.cfg().listen[0].address.text(), "0.0.0.0:8443");
}

TEST(ConvertSnippets, NoMethodIsRoundRobinAsInNginx) {
    auto c = snippet(
        "upstream u { server a:1; } server { listen 81; location / { proxy_pass http://u; } }");
    EXPECT_EQ(c.cfg().upstreams.at("u").balance, Balance::round_robin);
    EXPECT_EQ(c.cfg().upstreams.at("u").affinity, Affinity::none);
    EXPECT_TRUE(c.has(Kind::note, 1, "Host"));  // nginx would have sent $proxy_host
}

TEST(ConvertSnippets, ImplicitUpstreamFromProxyPassHostPort) {
    auto c = snippet("server { listen 82; location / { proxy_pass http://127.0.0.1:3000; } }");
    ASSERT_EQ(c.cfg().listen.size(), 1u);
    const auto& u = c.cfg().upstreams.at(c.cfg().listen[0].upstream);
    ASSERT_EQ(u.servers.size(), 1u);
    EXPECT_EQ(u.servers[0].address.text(), "127.0.0.1:3000");
}

TEST(ConvertSnippets, StickyCookieOfNginxPlus) {
    auto c = snippet(
        "upstream u { sticky cookie srv_id expires=1h domain=.x path=/; server a:1; }\n"
        "server { listen 83; location / { proxy_pass http://u; } }");
    const auto& u = c.cfg().upstreams.at("u");
    EXPECT_EQ(u.affinity, Affinity::cookie);
    EXPECT_EQ(u.cookie.name, "srv_id");
    EXPECT_EQ(u.cookie.max_age, milliseconds(3'600'000));
    EXPECT_TRUE(c.has(Kind::ignored, 1, "domain=.x"));
}

TEST(ConvertSnippets, HashOnAnotherKeyMatters) {
    auto c = snippet(
        "upstream u { hash $request_uri; server a:1; }\n"
        "server { listen 84; location / { proxy_pass http://u; } }");
    EXPECT_TRUE(c.has(Kind::not_translated, 1, "$request_uri"));
    EXPECT_EQ(c.cfg().upstreams.at("u").affinity, Affinity::none);
}

TEST(ConvertSnippets, TwoUpstreamsOnOneAddressMatter) {
    auto c = snippet(
        "upstream a { server a:1; } upstream b { server b:1; }\n"
        "server { listen 85; server_name a; location / { proxy_pass http://a; } }\n"
        "server { listen 85; server_name b; location / { proxy_pass http://b; } }");
    EXPECT_TRUE(c.has(Kind::not_translated, 3, "virtual hosts"));
    ASSERT_EQ(c.cfg().listen.size(), 1u);
    EXPECT_EQ(c.cfg().listen[0].upstream, "a");
}

TEST(ConvertSnippets, SameAddressSameUpstreamMergesCertificatesForSni) {
    auto c = snippet(
        "upstream a { server a:1; }\n"
        "server { listen 443 ssl; server_name x; ssl_certificate tls/cert.pem;"
        " ssl_certificate_key tls/key.pem; location / { proxy_pass http://a; } }\n"
        "server { listen 443 ssl; server_name y; ssl_certificate ./tls/../tls/cert.pem;"
        " ssl_certificate_key tls/key.pem; location / { proxy_pass http://a; } }");
    EXPECT_FALSE(c.conversion.differs());
    ASSERT_EQ(c.cfg().listen.size(), 1u);
    EXPECT_EQ(c.cfg().listen[0].tls->certificates.size(), 1u);  // same file, written once
}

TEST(ConvertSnippets, ProxyProtocolListenerIsWritten) {
    auto c = snippet(
        "upstream u { server a:1; }\n"
        "server { listen 91 proxy_protocol; location / { proxy_pass http://u; } }");
    EXPECT_TRUE(c.cfg().listen.at(0).proxy_protocol);
    EXPECT_FALSE(c.conversion.differs());
}

TEST(ConvertSnippets, LimitReqAndLimitConnPerClientIp) {
    auto c = snippet(
        "http { limit_req_zone $binary_remote_addr zone=one:10m rate=30r/m;\n"
        "  limit_conn_zone $binary_remote_addr zone=addr:10m;\n"
        "  upstream u { server a:1; }\n"
        "  server { listen 92; limit_conn addr 20;\n"
        "    location / { limit_req zone=one burst=5 nodelay; proxy_pass http://u; } } }");
    EXPECT_FALSE(c.conversion.differs());
    ASSERT_TRUE(c.cfg().limits.rate);
    EXPECT_DOUBLE_EQ(c.cfg().limits.rate->requests_per_second, 0.5);
    EXPECT_DOUBLE_EQ(c.cfg().limits.rate->burst, 6);
    EXPECT_EQ(c.cfg().limits.max_connections_per_ip, 20);
    EXPECT_TRUE(c.has(Kind::note, 5, "429"));
    EXPECT_TRUE(c.has(Kind::note, 4, "unanswered"));
}

TEST(ConvertSnippets, LimitReqOnAnotherKeyMatters) {
    auto c = snippet(
        "http { limit_req_zone $server_name zone=s:1m rate=100r/s;\n"
        "  upstream u { server a:1; }\n"
        "  server { listen 93; location / { limit_req zone=s; proxy_pass http://u; } } }");
    EXPECT_TRUE(c.has(Kind::not_translated, 3, "$server_name"));
    EXPECT_FALSE(c.cfg().limits.rate);
}

TEST(ConvertSnippets, LimitsAndTimeoutEdges) {
    auto c = snippet(
        "http { client_max_body_size 0; keepalive_timeout 0;\n"
        "upstream u { server a:1 weight=5000; server a:1; }\n"
        "server { listen 86; location / { proxy_pass http://u; } } }");
    EXPECT_EQ(c.cfg().limits.max_body_size, 1u << 30);
    EXPECT_TRUE(c.has(Kind::note, 1, "unlimited"));
    EXPECT_TRUE(c.has(Kind::not_translated, 1, "keep-alive"));
    ASSERT_EQ(c.cfg().upstreams.at("u").servers.size(), 1u);  // merged
    EXPECT_EQ(c.cfg().upstreams.at("u").servers[0].weight, 1000);
}

TEST(ConvertSnippets, ScopedTimeoutsTakeTheLargest) {
    auto c = snippet(
        "upstream u { server a:1; }\n"
        "server { listen 87; proxy_read_timeout 30s;\n"
        "  location / { proxy_pass http://u; }\n"
        "  location /io/ { proxy_pass http://u; proxy_read_timeout 2m; } }");
    EXPECT_EQ(c.cfg().timeouts.upstream_response, milliseconds(120'000));
    EXPECT_TRUE(c.has(Kind::note, 4, "larger"));
}

TEST(ConvertSnippets, InheritanceDoesNotDependOnOrder) {
    // nginx merges a block's settings into its nested blocks after reading the whole file:
    // settings written after a server or location still reach it.
    auto c = snippet(
        "http {\n"
        "  server { listen 89; location / { proxy_pass http://u; } proxy_set_header Host $host;\n"
        "    ssl_certificate tls/cert.pem; }\n"
        "  upstream u { server a:1; }\n"
        "  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "}");
    EXPECT_FALSE(c.has(Kind::note, 2, "Host"));  // the server's Host line reached /
    EXPECT_FALSE(c.cfg().headers.forwarded);     // the server's own list replaced http's

    auto d = snippet(
        "http { server { listen 90; location / { proxy_pass http://u; } }\n"
        "  upstream u { server a:1; }\n"
        "  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }");
    EXPECT_TRUE(d.cfg().headers.forwarded);  // written after the server, inherited all the same
}

TEST(ConvertSnippets, UnixSocketsAndStreamMatter) {
    auto c = snippet(
        "stream { server { listen 53; } }\n"
        "upstream u { server unix:/run/app.sock; server a:1; }\n"
        "server { listen 88; location / { proxy_pass http://u; } }");
    EXPECT_TRUE(c.has(Kind::not_translated, 1, "TCP/UDP"));
    EXPECT_TRUE(c.has(Kind::not_translated, 2, "unix"));
    EXPECT_EQ(c.cfg().upstreams.at("u").servers.size(), 1u);
}

TEST(ConvertSnippets, OnlyNonProxyServersGiveNoListenerAndMatter) {
    auto c = Converted{
        convert(parse_text("server { listen 80; return 200; }", "s.conf", kData).directives,
                "s.conf", kData),
        {}};
    EXPECT_TRUE(c.conversion.differs());
    EXPECT_TRUE(c.has(Kind::not_translated, 0, "nothing to listen on"));
}

/// The (lo, hi) pairs of an upstream's fail_on_status.
std::vector<std::pair<int, int>> fail_on_status(const Converted& c, const std::string& upstream) {
    std::vector<std::pair<int, int>> out;
    for (const auto& r : c.cfg().upstreams.at(upstream).fail_on_status) out.emplace_back(r.lo, r.hi);
    return out;
}

TEST(ConvertSnippets, NextUpstreamStatusesBecomeFailOnStatus) {
    auto c = snippet(
        "upstream u { server a:1; server b:1; }\n"
        "server { listen 93; proxy_next_upstream error timeout http_502 http_504 http_404;\n"
        "  location / { proxy_pass http://u; } }");
    EXPECT_FALSE(c.conversion.differs());
    EXPECT_EQ(fail_on_status(c, "u"),
              (std::vector<std::pair<int, int>>{{502, 502}, {504, 504}}));
    // What is and is not the same, on the directive's line.
    for (const char* part : {"fail_on_status: [502, 504] on upstream 'u'",
                             "counts toward max_fails", "passes the request to the next server",
                             "never re-sends a request a backend received",
                             "No equivalent for http_404 (retried by nginx, never counted)"})
        EXPECT_TRUE(c.has(Kind::note, 2, part)) << part;
}

TEST(ConvertSnippets, NextUpstreamIsInheritedAndReplacedAsInNginx) {
    auto c = snippet(
        "upstream a { server a:1; }\n"
        "upstream b { server b:1; }\n"
        "http { proxy_next_upstream error timeout http_500 http_503 http_429;\n"
        "  server { listen 94; location / { proxy_pass http://a; } }\n"
        "  server { listen 95; location / { proxy_next_upstream error;\n"
        "    proxy_pass http://b; } } }");
    EXPECT_EQ(fail_on_status(c, "a"),
              (std::vector<std::pair<int, int>>{{429, 429}, {500, 500}, {503, 503}}));
    EXPECT_TRUE(fail_on_status(c, "b").empty());  // the location's own line replaces it
    EXPECT_TRUE(c.has(Kind::ignored, 5, "never after a backend received it"));
}

TEST(ConvertSnippets, NextUpstreamOfTwoLocationsIsUnitedPerUpstream) {
    auto c = snippet(
        "upstream u { server a:1; }\n"
        "server { listen 96;\n"
        "  location /a { proxy_next_upstream http_502; proxy_pass http://u; }\n"
        "  location /b { proxy_next_upstream http_503; proxy_pass http://u; } }");
    EXPECT_EQ(fail_on_status(c, "u"),
              (std::vector<std::pair<int, int>>{{502, 502}, {503, 503}}));
    EXPECT_TRUE(c.has(Kind::note, 4, "fail_on_status is per upstream: [502, 503] is written"));
}

TEST(ConvertSnippets, NextUpstreamWithoutStatusesOrProxyWritesNothing) {
    auto c = snippet(
        "upstream u { server a:1; }\n"
        "server { listen 97; proxy_next_upstream error timeout; location / { proxy_pass "
        "http://u; } }\n"
        "server { listen 98; location / { proxy_next_upstream http_502; return 204; } }");
    EXPECT_TRUE(fail_on_status(c, "u").empty());
    EXPECT_TRUE(c.has(Kind::ignored, 2, "upstreams.*.retries"));
    EXPECT_TRUE(c.has(Kind::ignored, 3, "no location under it proxies"));
}

/// A TLS server block with `stapling` (line 3) converted.
Converted tls_server_with(const std::string& stapling) {
    return snippet(
        "upstream u { server a:1; }\n"
        "server { listen 443 ssl; ssl_certificate tls/cert.pem; ssl_certificate_key tls/key.pem;\n"
        "  " + stapling + "\n"
        "  location / { proxy_pass http://u; } }");
}

TEST(ConvertSnippets, StaplingFileBecomesOcspResponse) {
    auto c = tls_server_with("ssl_stapling on; ssl_stapling_file tls/ocsp.der;");
    const auto& certs = c.cfg().listen.at(0).tls->certificates;
    ASSERT_EQ(certs.size(), 1u);
    EXPECT_EQ(certs[0].ocsp_response, kData + "/tls/ocsp.der");
    EXPECT_TRUE(c.has(Kind::note, 3, "becomes ocsp_response of the certificate"));
    EXPECT_TRUE(c.has(Kind::ignored, 3, "never asks the OCSP responder"));
}

TEST(ConvertSnippets, StaplingFileWithoutStaplingOnIsNotWritten) {
    auto c = tls_server_with("ssl_stapling_file tls/ocsp.der;");
    EXPECT_TRUE(c.cfg().listen.at(0).tls->certificates.at(0).ocsp_response.empty());
    EXPECT_TRUE(c.has(Kind::ignored, 3, "only with 'ssl_stapling on'"));
}

TEST(ConvertSnippets, ProxyPassHttpsBecomesUpstreamTlsWithNginxDefaults) {
    auto c = snippet(
        "upstream u { server a:8443; }\n"
        "server { listen 99; location / { proxy_pass https://u; } }");
    EXPECT_FALSE(c.conversion.differs());
    const auto& tls = c.cfg().upstreams.at("u").tls;
    ASSERT_TRUE(tls);
    EXPECT_FALSE(tls->verify);  // nginx's proxy_ssl_verify off
    EXPECT_TRUE(tls->ca.empty());
    EXPECT_TRUE(tls->server_name.empty());
    EXPECT_TRUE(c.has(Kind::note, 2, "verify: false, as nginx's default proxy_ssl_verify off"));
    EXPECT_TRUE(c.has(Kind::note, 2, "SNI differs"));
}

TEST(ConvertSnippets, ProxySslSettingsAreInheritedOneByOne) {
    auto c = snippet(
        "upstream u { server a:8443; }\n"
        "http { proxy_ssl_verify on; proxy_ssl_trusted_certificate tls/cert.pem;\n"
        "  server { listen 100; proxy_ssl_name api.internal; proxy_ssl_protocols TLSv1.1 TLSv1.2;\n"
        "    proxy_ssl_certificate tls/cert.pem; proxy_ssl_certificate_key tls/key.pem;\n"
        "    location / { proxy_ssl_server_name on; proxy_pass https://u; } } }");
    EXPECT_FALSE(c.conversion.differs());
    const auto& tls = c.cfg().upstreams.at("u").tls;
    ASSERT_TRUE(tls);
    EXPECT_TRUE(tls->verify);
    EXPECT_EQ(tls->ca, kData + "/tls/cert.pem");
    EXPECT_EQ(tls->server_name, "api.internal");
    EXPECT_EQ(tls->certificate, kData + "/tls/cert.pem");
    EXPECT_EQ(tls->private_key, kData + "/tls/key.pem");
    EXPECT_EQ(tls->protocols, (std::vector<std::string>{"TLSv1.2"}));
    EXPECT_TRUE(c.has(Kind::note, 5, "verify: true (proxy_ssl_verify on)"));
    EXPECT_TRUE(c.has(Kind::note, 5, "tether sends 'api.internal' as nginx"));
    EXPECT_TRUE(c.has(Kind::note, 3, "TLSv1.1 not written"));  // TLSv1.2 is
}

struct ExpectedFinding {
    Kind kind;
    int line;
    const char* text;
};

void expect_findings(const Converted& c, std::initializer_list<ExpectedFinding> list) {
    for (const auto& e : list)
        EXPECT_TRUE(c.has(e.kind, e.line, e.text)) << "line " << e.line << ": " << e.text;
}

TEST(ConvertSnippets, ProxySslSettingsTetherCannotCarryAreNotTranslated) {
    auto c = snippet(
        "upstream u { server a:8443; }\n"
        "server { listen 104; proxy_ssl_verify on; proxy_ssl_server_name on;\n"
        "  proxy_ssl_verify_depth 2; proxy_ssl_crl tls/crl.pem;\n"
        "  proxy_ssl_session_reuse off; proxy_ssl_conf_command Options -SessionTicket;\n"
        "  proxy_ssl_name $host; proxy_ssl_certificate_cache off;\n"
        "  proxy_ssl_certificate tls/cert.pem; proxy_ssl_certificate_key tls/key.pem;\n"
        "  proxy_ssl_password_file tls/passwords;\n"
        "  location / { proxy_pass https://u; } }");
    EXPECT_TRUE(c.conversion.differs());
    expect_findings(c, {{Kind::not_translated, 3, "'proxy_ssl_verify_depth': tether limits no"},
                        {Kind::not_translated, 3, "'proxy_ssl_crl': tether reads no revocation"},
                        {Kind::not_translated, 4, "'proxy_ssl_session_reuse': tether always"},
                        {Kind::not_translated, 4, "'proxy_ssl_conf_command': no tether"},
                        {Kind::not_translated, 5, "'proxy_ssl_name': a name made of variables"},
                        {Kind::ignored, 5, "'proxy_ssl_certificate_cache'"},
                        {Kind::not_translated, 7, "'proxy_ssl_password_file': tether reads only"}});
    const auto& tls = c.cfg().upstreams.at("u").tls;
    ASSERT_TRUE(tls);  // what can be carried still is
    EXPECT_TRUE(tls->verify);
    EXPECT_TRUE(tls->server_name.empty());
    EXPECT_EQ(tls->certificate, kData + "/tls/cert.pem");
}

TEST(ConvertSnippets, ProxySslSettingsNginxWouldNotUseAreIgnored) {
    auto c = snippet(
        "upstream u { server a:8443; }\n"
        "server { listen 105; proxy_ssl_verify_depth 3; proxy_ssl_crl tls/crl.pem;\n"
        "  proxy_ssl_session_reuse on; proxy_ssl_name $host; proxy_ssl_password_file tls/pw;\n"
        "  location / { proxy_pass https://u; } }");
    EXPECT_FALSE(c.conversion.differs());  // nginx checks nothing here either
    expect_findings(c, {{Kind::ignored, 2, "'proxy_ssl_verify_depth': nothing is checked"},
                        {Kind::ignored, 2, "'proxy_ssl_crl': nothing is checked"},
                        {Kind::ignored, 3, "'proxy_ssl_session_reuse': tether resumes"},
                        {Kind::ignored, 3, "'proxy_ssl_name': a name made of variables"},
                        {Kind::ignored, 3, "'proxy_ssl_password_file': no client certificate"}});
}

TEST(ConvertSnippets, ProxySslProtocolsAllOlderThanTls12AreNotTranslated) {
    auto c = snippet(
        "upstream u { server a:8443; }\n"
        "server { listen 106; proxy_ssl_protocols TLSv1 TLSv1.1;\n"
        "  location / { proxy_pass https://u; } }");
    EXPECT_TRUE(c.has(Kind::not_translated, 2, "speaks only TLSv1 TLSv1.1 fails its handshake"));
    const auto& tls = c.cfg().upstreams.at("u").tls;
    ASSERT_TRUE(tls);
    EXPECT_EQ(tls->protocols, (std::vector<std::string>{"TLSv1.2", "TLSv1.3"}));
}

TEST(ConvertSnippets, ProxySslCertificateWithVariablesIsNotTranslated) {
    auto c = snippet(
        "upstream u { server a:8443; }\n"
        "server { listen 107; proxy_ssl_certificate $client_cert;\n"
        "  proxy_ssl_certificate_key $client_key; location / { proxy_pass https://u; } }");
    EXPECT_TRUE(c.has(Kind::not_translated, 2, "'proxy_ssl_certificate': a path made of variables"));
    EXPECT_TRUE(c.has(Kind::not_translated, 3, "'proxy_ssl_certificate_key': a path made of"));
    ASSERT_TRUE(c.cfg().upstreams.at("u").tls);
    EXPECT_TRUE(c.cfg().upstreams.at("u").tls->certificate.empty());
}

TEST(ConvertSnippets, StaplingFileOfAPlainServerIsReported) {
    auto c = snippet(
        "upstream u { server a:1; }\n"
        "server { listen 108; ssl_stapling_file tls/ocsp.der;\n"
        "  location / { proxy_pass http://u; } }");
    EXPECT_FALSE(c.conversion.differs());
    EXPECT_TRUE(c.has(Kind::ignored, 2, "'ssl_stapling_file': no TLS listener is translated"));
    EXPECT_FALSE(c.cfg().listen.at(0).tls);
}

TEST(ConvertSnippets, StaplingFileInheritedByATlsServerIsNotReportedUnused) {
    auto c = snippet(
        "upstream u { server a:1; }\n"
        "http { ssl_stapling on; ssl_stapling_file tls/ocsp.der;\n"
        "  server { listen 109; location / { proxy_pass http://u; } }\n"
        "  server { listen 443 ssl; ssl_certificate tls/cert.pem; ssl_certificate_key tls/key.pem;\n"
        "    location / { proxy_pass http://u; } } }");
    EXPECT_TRUE(c.has(Kind::note, 2, "becomes ocsp_response of the certificate"));
    EXPECT_FALSE(c.has(Kind::ignored, 2, "no TLS listener is translated"));
}

TEST(ConvertSnippets, HttpsSchemesPerUpstream) {
    auto c = snippet(
        "upstream u { server a:1; }\n"
        "server { listen 101; location / { proxy_pass https://backend.test; } }\n"
        "server { listen 102; location /x { proxy_pass http://u; }\n"
        "  location /y { proxy_pass https://u; } }\n"
        "server { listen 103; proxy_ssl_verify on; location / { proxy_pass http://u; } }");
    const auto& implicit = c.cfg().upstreams.at(c.cfg().listen.at(0).upstream);
    EXPECT_EQ(implicit.servers.at(0).address.text(), "backend.test:443");
    EXPECT_TRUE(implicit.tls);
    EXPECT_FALSE(c.cfg().upstreams.at("u").tls);  // http:// came first
    EXPECT_TRUE(c.has(Kind::not_translated, 4, "either plain HTTP or TLS"));
    EXPECT_TRUE(c.has(Kind::ignored, 5, "no proxy_pass https:// under it"));
}

}  // namespace
}  // namespace tether::nginx
