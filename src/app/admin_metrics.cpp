// Rendering of /metrics (Prometheus text) from an AdminView; see
// admin_views.hpp. One write_*_metrics function per area.
// Threading: the admin thread, reading snapshots (never a worker's live state).
#include "tether/app/admin_views.hpp"

#include <algorithm>
#include <map>

#include "tether/health/rise_fall.hpp"
#include "tether/metrics/text_writer.hpp"
#include "app/admin_totals.hpp"

namespace tether::app {

namespace {

using metrics::TextWriter;

// TLS handshakes by result, and refused PROXY protocol headers, by listener
// slot (slots of removed listeners are skipped).
void write_tls_metrics(const AdminView& v, TextWriter& w) {
    const auto& rt = v.runtime;
    auto entry = [&](std::size_t slot) -> const config::Listener* {
        const std::size_t i = slot < rt.listener_config.size() ? rt.listener_config[slot]
                                                                : upstream::kNoUpstream;
        return i == upstream::kNoUpstream ? nullptr : &rt.config->listen[i];
    };
    w.family("tether_tls_handshakes_total", "counter",
             "TLS handshakes on TLS listeners, by listener and result (ok, closed, timeout, "
             "plain_http, not_tls, failed).");
    for (std::size_t i = 0; i < rt.listener_address.size(); ++i) {
        const auto* l = entry(i);
        if (!l || !l->tls) continue;
        for (std::size_t r = 0; r < tls::kHandshakeResults; ++r) {
            double n = 0;
            for (const auto& s : v.workers)
                if (i < s->stats.tls_handshakes.size()) n += static_cast<double>(s->stats.tls_handshakes[i][r]);
            w.sample("tether_tls_handshakes_total",
                     {{"listener", rt.listener_address[i]},
                      {"result", tls::to_string(static_cast<tls::Handshake>(r))}},
                     n);
        }
    }
    w.family("tether_proxy_protocol_errors_total", "counter",
             "Connections closed for a missing or malformed PROXY protocol header, by listener.");
    for (std::size_t i = 0; i < rt.listener_address.size(); ++i) {
        const auto* l = entry(i);
        if (!l || !l->proxy_protocol) continue;
        double n = 0;
        for (const auto& s : v.workers)
            if (i < s->stats.proxy_protocol_errors.size()) n += static_cast<double>(s->stats.proxy_protocol_errors[i]);
        w.sample("tether_proxy_protocol_errors_total", {{"listener", rt.listener_address[i]}}, n);
    }
}

void write_connection_metrics(const AdminView& v, TextWriter& w) {
    const auto& rt = v.runtime;  // by listener slot; slots of removed listeners are skipped
    auto per_listener = [&](std::string_view name, std::string_view type, std::string_view help,
                            auto member) {
        w.family(name, type, help);
        for (std::size_t i = 0; i < rt.listener_address.size(); ++i) {
            if (rt.listener_upstream[i] == upstream::kNoUpstream) continue;
            double n = 0;
            for (const auto& s : v.workers)
                if (i < (s->stats.*member).size()) n += static_cast<double>((s->stats.*member)[i]);
            w.sample(name, {{"listener", rt.listener_address[i]}}, n);
        }
    };
    per_listener("tether_connections_active", "gauge", "Client connections open, by listener.",
                 &http::WorkerStats::connections_active);
    per_listener("tether_connections_total", "counter", "Client connections accepted, by listener.",
                 &http::WorkerStats::connections_total);
    write_tls_metrics(v, w);
}

void write_request_metrics(const AdminView& v, TextWriter& w) {
    std::map<std::tuple<std::string, std::string, int>, std::uint64_t> codes;
    std::map<std::string, http::UpstreamCounters> ups;
    for (const auto& s : v.workers) {
        for (const auto& [b, sc] : s->stats.servers)
            for (const auto& [code, n] : sc.responses) codes[{sc.upstream, b->name(), code}] += n;
        for (const auto& [name, uc] : s->stats.upstreams) {
            auto& t = ups[name];
            for (std::size_t i = 0; i < uc.duration_buckets.size(); ++i)
                t.duration_buckets[i] += uc.duration_buckets[i];
            t.duration_sum += uc.duration_sum;
            t.frames_to_server += uc.frames_to_server;
            t.frames_to_client += uc.frames_to_client;
            for (std::size_t i = 0; i < uc.tls_handshakes.size(); ++i)
                t.tls_handshakes[i] += uc.tls_handshakes[i];
            for (const auto& [code, n] : uc.local_responses) codes[{name, "", code}] += n;
        }
    }
    w.family("tether_http_requests_total", "counter",
             "Requests answered, by upstream, server (empty: answered by tether) and status.");
    for (const auto& [k, n] : codes) {
        const std::string code = std::to_string(std::get<2>(k));
        w.sample("tether_http_requests_total",
                 {{"upstream", std::get<0>(k)}, {"server", std::get<1>(k)}, {"code", code}},
                 static_cast<double>(n));
    }
    w.family("tether_http_request_duration_seconds", "histogram",
             "Time from the request head to the end of the response.");
    for (const auto& [name, uc] : ups)
        w.histogram("tether_http_request_duration_seconds", {{"upstream", name}},
                    http::kDurationBuckets, uc.duration_buckets, uc.duration_sum);
    w.family("tether_websocket_frames_total", "counter", "WebSocket frames relayed.");
    for (const auto& [name, uc] : ups) {
        w.sample("tether_websocket_frames_total", {{"upstream", name}, {"direction", "to_server"}},
                 static_cast<double>(uc.frames_to_server));
        w.sample("tether_websocket_frames_total", {{"upstream", name}, {"direction", "to_client"}},
                 static_cast<double>(uc.frames_to_client));
    }
    w.family("tether_upstream_tls_handshakes_total", "counter",
             "TLS handshakes to the servers of upstreams with tls, by result (full, resumed, "
             "failed: refused certificate, wrong name, no common protocol...).");
    for (const auto& u : v.runtime.upstreams) {
        if (!u.config->tls) continue;
        const auto it = ups.find(u.config->name);
        const http::UpstreamCounters none;
        const auto& uc = it == ups.end() ? none : it->second;
        for (std::size_t i = 0; i < uc.tls_handshakes.size(); ++i) {
            static constexpr const char* kResults[] = {"full", "resumed", "failed"};
            w.sample("tether_upstream_tls_handshakes_total",
                     {{"upstream", u.config->name}, {"result", kResults[i]}},
                     static_cast<double>(uc.tls_handshakes[i]));
        }
    }
}

// One sample of family `name` per configured server, labels {upstream,
// server} plus `extra` when given; `value(upstream, backend)` gives it.
template <class F>
void per_server(const AdminView& v, TextWriter& w, std::string_view name, F value,
                metrics::Label extra = {}) {
    for (const auto& u : v.runtime.upstreams)
        for (const auto& b : u.backends) {
            const double x = value(u, *b);
            if (extra.first.empty())
                w.sample(name, {{"upstream", u.config->name}, {"server", b->name()}}, x);
            else
                w.sample(name, {{"upstream", u.config->name}, {"server", b->name()}, extra}, x);
        }
}

void write_server_metrics(const AdminView& v, TextWriter& w) {
    const auto totals = server_totals(v);
    auto total = [&](const upstream::Backend& b) {
        auto t = totals.find(&b);
        return t == totals.end() ? ServerTotals{} : t->second;
    };
    std::map<const upstream::Backend*, std::pair<std::uint64_t, std::uint64_t>> upgrades;
    for (const auto& s : v.workers)
        for (const auto& [b, sc] : s->stats.servers) {
            upgrades[b].first += sc.upgrades_ok;
            upgrades[b].second += sc.upgrades_failed;
        }
    auto upgraded = [&](const upstream::Backend& b, bool ok) {
        auto g = upgrades.find(&b);
        if (g == upgrades.end()) return 0.0;
        return static_cast<double>(ok ? g->second.first : g->second.second);
    };
    using U = upstream::Upstream;
    using B = upstream::Backend;
    w.family("tether_upstream_server_up", "gauge", "1 when the server is up.");
    per_server(v, w, "tether_upstream_server_up", [](const U&, const B& b) { return b.up() ? 1. : 0.; });
    w.family("tether_upstream_server_draining", "gauge",
             "1 when the server is drained (keeps its clients, takes no new ones).");
    per_server(v, w, "tether_upstream_server_draining",
               [](const U&, const B& b) { return b.draining() ? 1. : 0.; });
    w.family("tether_upstream_server_connections", "gauge",
             "Requests in flight and tunnels this process holds to the server.");
    per_server(v, w, "tether_upstream_server_connections",
               [](const U&, const B& b) { return static_cast<double>(b.active()); });
    w.family("tether_websocket_tunnels_active", "gauge", "WebSocket tunnels open.");
    per_server(v, w, "tether_websocket_tunnels_active",
               [&](const U&, const B& b) { return static_cast<double>(total(b).tunnels); });
    w.family("tether_websocket_upgrades_total", "counter",
             "WebSocket upgrade requests by result (ok: the server answered 101).");
    per_server(v, w, "tether_websocket_upgrades_total",
               [&](const U&, const B& b) { return upgraded(b, true); }, {"result", "ok"});
    per_server(v, w, "tether_websocket_upgrades_total",
               [&](const U&, const B& b) { return upgraded(b, false); }, {"result", "failed"});
    w.family("tether_engineio_sessions", "gauge",
             "Live Engine.IO sessions by transport (upstreams with affinity: sid): pending "
             "long-polls and open WebSocket tunnels under sid.path.");
    for (const char* transport : {"polling", "websocket"})
        for (const auto& u : v.runtime.upstreams) {
            if (u.config->affinity != config::Affinity::sid) continue;
            for (const auto& b : u.backends) {
                const auto t = total(*b);
                const bool poll = std::string_view(transport) == "polling";
                w.sample("tether_engineio_sessions",
                         {{"upstream", u.config->name}, {"server", b->name()},
                          {"transport", transport}},
                         static_cast<double>(poll ? t.eio_polling : t.eio_websocket));
            }
        }
}

void write_affinity_metrics(const AdminView& v, TextWriter& w) {
    std::map<std::string, affinity::RouterStats> per;
    for (const auto& s : v.workers)
        for (const auto& [name, st] : s->routing) {
            auto& t = per[name];
            t.local_hits += st.local_hits;
            t.redis_hits += st.redis_hits;
            t.redis_failures += st.redis_failures;
            t.misses += st.misses;
            t.rebinds += st.rebinds;
            t.bad_cookies += st.bad_cookies;
            t.unknown_sids += st.unknown_sids;
            t.sids_learnt += st.sids_learnt;
        }
    w.family("tether_affinity_lookups_total", "counter",
             "Affinity lookups by result: local_hit (this replica's table), redis_hit, miss "
             "(the client was placed by balance).");
    for (const auto& u : v.runtime.upstreams) {
        const std::string& name = u.config->name;
        const auto& st = per[name];
        const char* mode = affinity_name(u.config->affinity);
        w.sample("tether_affinity_lookups_total",
                 {{"upstream", name}, {"mode", mode}, {"result", "local_hit"}},
                 static_cast<double>(st.local_hits));
        w.sample("tether_affinity_lookups_total",
                 {{"upstream", name}, {"mode", mode}, {"result", "redis_hit"}},
                 static_cast<double>(st.redis_hits));
        w.sample("tether_affinity_lookups_total",
                 {{"upstream", name}, {"mode", mode}, {"result", "miss"}},
                 static_cast<double>(st.misses));
    }
    w.family("tether_affinity_rebinds_total", "counter",
             "Clients placed again, by reason: server_down (bound server down or gone), "
             "bad_cookie (forged or stale tether cookie).");
    for (const auto& u : v.runtime.upstreams) {
        const std::string& name = u.config->name;
        const auto& st = per[name];
        w.sample("tether_affinity_rebinds_total", {{"upstream", name}, {"reason", "server_down"}},
                 static_cast<double>(st.rebinds));
        w.sample("tether_affinity_rebinds_total", {{"upstream", name}, {"reason", "bad_cookie"}},
                 static_cast<double>(st.bad_cookies));
    }
    w.family("tether_affinity_sids_learnt_total", "counter",
             "Engine.IO session ids read from handshake answers and bound.");
    for (const auto& u : v.runtime.upstreams)
        if (u.config->affinity == config::Affinity::sid)
            w.sample("tether_affinity_sids_learnt_total", {{"upstream", u.config->name}},
                     static_cast<double>(per[u.config->name].sids_learnt));
    w.family("tether_affinity_unknown_sids_total", "counter",
             "Engine.IO requests answered 'Session ID unknown' (sid bound to a dead server).");
    for (const auto& u : v.runtime.upstreams)
        if (u.config->affinity == config::Affinity::sid)
            w.sample("tether_affinity_unknown_sids_total", {{"upstream", u.config->name}},
                     static_cast<double>(per[u.config->name].unknown_sids));
    w.family("tether_affinity_bindings", "gauge",
             "Bindings in this replica's local affinity table.");
    for (const auto& u : v.runtime.upstreams)
        w.sample("tether_affinity_bindings", {{"upstream", u.config->name}},
                 static_cast<double>(v.table.count_prefix(u.config->name + ":")));
    w.family("tether_affinity_redis_fallbacks_total", "counter",
             "Affinity reads or writes Redis did not answer in time: routed on local state.");
    for (const auto& u : v.runtime.upstreams)
        w.sample("tether_affinity_redis_fallbacks_total", {{"upstream", u.config->name}},
                 static_cast<double>(per[u.config->name].redis_failures));
}

void write_limit_metrics(const AdminView& v, TextWriter& w) {
    double refused = 0, per_ip = 0, limited = 0, fallbacks = 0;
    for (const auto& s : v.workers) {
        refused += static_cast<double>(s->stats.refused_connections);
        per_ip += static_cast<double>(s->stats.refused_per_ip);
        limited += static_cast<double>(s->stats.rate_limited);
        fallbacks += static_cast<double>(s->stats.rate_redis_fallbacks);
    }
    w.family("tether_connections_refused_total", "counter",
             "Client connections closed at accept, by the limit they were over.");
    w.sample("tether_connections_refused_total", {{"reason", "max_connections"}}, refused);
    w.sample("tether_connections_refused_total", {{"reason", "max_connections_per_ip"}}, per_ip);
    w.family("tether_rate_limited_total", "counter", "Requests answered 429 (limits.rate).");
    w.sample("tether_rate_limited_total", {}, limited);
    w.family("tether_rate_limit_redis_fallbacks_total", "counter",
             "Shared rate-limit decisions taken locally because Redis did not answer in time.");
    w.sample("tether_rate_limit_redis_fallbacks_total", {}, fallbacks);
}

void write_redis_metrics(const AdminView& v, TextWriter& w) {
    const redis::Stats st = v.redis ? v.redis->stats() : redis::Stats{};
    w.family("tether_redis_up", "gauge",
             "1 when Redis is configured, connected and answering within redis.timeout.");
    w.sample("tether_redis_up", {}, st.up ? 1 : 0);
    if (!v.redis) return;
    w.family("tether_redis_command_duration_seconds", "histogram",
             "Time from sending a Redis command to its reply.");
    w.histogram("tether_redis_command_duration_seconds", {}, redis::kLatencyBuckets,
                st.latency_buckets, st.latency_sum);
    w.family("tether_redis_commands_total", "counter", "Redis commands by outcome.");
    const std::uint64_t failed = st.timeouts + st.unavailable + st.errors;
    w.sample("tether_redis_commands_total", {{"result", "ok"}},
             static_cast<double>(st.commands > failed ? st.commands - failed : 0));
    w.sample("tether_redis_commands_total", {{"result", "timeout"}}, static_cast<double>(st.timeouts));
    w.sample("tether_redis_commands_total", {{"result", "unavailable"}},
             static_cast<double>(st.unavailable));
    w.sample("tether_redis_commands_total", {{"result", "error"}}, static_cast<double>(st.errors));
    w.family("tether_redis_reconnects_total", "counter", "Connection attempts after the first.");
    w.sample("tether_redis_reconnects_total", {}, static_cast<double>(st.reconnects));
    if (st.used_memory >= 0) {
        w.family("tether_redis_used_memory_bytes", "gauge", "used_memory from Redis INFO memory.");
        w.sample("tether_redis_used_memory_bytes", {}, static_cast<double>(st.used_memory));
    }
}

// Active checks by result and passive failure accounting, from each server's
// shared state (atomics written by the health thread and the workers).
void write_health_metrics(const AdminView& v, TextWriter& w) {
    static constexpr health::HealthResult kResults[] = {
        health::HealthResult::ok, health::HealthResult::bad_status, health::HealthResult::timeout,
        health::HealthResult::error};
    w.family("tether_health_checks_total", "counter", "Active health checks by result.");
    for (const auto& u : v.runtime.upstreams) {
        if (!u.config->health_check) continue;
        for (const auto& b : u.backends)
            for (auto r : kResults)
                w.sample("tether_health_checks_total",
                         {{"upstream", u.config->name}, {"server", b->name()},
                          {"result", health::to_string(r)}},
                         static_cast<double>(
                             b->state().checks[static_cast<std::size_t>(r)].load()));
    }
    auto per_server = [&](std::string_view name, std::string_view help, auto value) {
        w.family(name, "counter", help);
        for (const auto& u : v.runtime.upstreams)
            for (const auto& b : u.backends)
                w.sample(name, {{"upstream", u.config->name}, {"server", b->name()}},
                         static_cast<double>(value(b->state().passive)));
    };
    per_server("tether_upstream_server_failures_total",
               "Failures counted by passive checks (connect, reset or timeout before a response; "
               "answers in fail_on_status).",
               [](const upstream::PassiveHealth& p) { return p.failures(); });
    per_server("tether_upstream_server_ejections_total",
               "Times passive checks took the server out for fail_timeout.",
               [](const upstream::PassiveHealth& p) { return p.trips(); });
}

}  // namespace

std::string render_metrics(const AdminView& v) {
    TextWriter w;
    w.family("tether_build_info", "gauge", "Version of this tether binary.");
    w.sample("tether_build_info", {{"version", TETHER_VERSION_STRING}}, 1);
    write_connection_metrics(v, w);
    write_request_metrics(v, w);
    write_server_metrics(v, w);
    write_health_metrics(v, w);
    write_affinity_metrics(v, w);
    write_redis_metrics(v, w);
    write_limit_metrics(v, w);
    w.family("tether_config_generation", "gauge", "Configuration generation every worker routes with (+1 per reload).");
    w.sample("tether_config_generation", {}, static_cast<double>(applied_generation(v)));
    w.family("tether_event_loop_lag_seconds", "gauge",
             "Worst lateness of the worker's 100 ms tick over the last second.");
    const auto now = Clock::now();
    for (const auto& s : v.workers) {
        // A worker that did not answer has been late at least since its last copy.
        const auto& st = v.worker_states[s->worker];
        const double since = st.stale ? std::chrono::duration<double>(now - st.taken).count() : 0;
        w.sample("tether_event_loop_lag_seconds", {{"worker", std::to_string(s->worker)}},
                 std::max(s->stats.loop_lag_seconds, since));
    }
    w.family("tether_worker_snapshot_stale", "gauge",
             "1 when the worker did not copy its counters for this scrape within 1 s (event loop "
             "blocked): its counters here are from its last copy.");
    for (std::size_t i = 0; i < v.worker_states.size(); ++i)
        w.sample("tether_worker_snapshot_stale", {{"worker", std::to_string(i)}},
                 v.worker_states[i].stale ? 1 : 0);
    w.family("tether_worker_snapshot_misses_total", "counter",
             "Reads of /metrics or /status the worker did not copy its counters for within 1 s.");
    for (std::size_t i = 0; i < v.worker_states.size(); ++i)
        w.sample("tether_worker_snapshot_misses_total", {{"worker", std::to_string(i)}},
                 static_cast<double>(v.worker_states[i].misses));
    metrics::write_process_metrics(w);
    return w.text();
}

}  // namespace tether::app
