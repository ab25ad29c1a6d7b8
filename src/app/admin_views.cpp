// Rendering of /status and /readyz, and what /metrics shares with them
// (admin_totals.hpp); see admin_views.hpp. /metrics is admin_metrics.cpp.
// Threading: the admin thread, reading snapshots (never a worker's live state).
#include "tether/app/admin_views.hpp"

#include <algorithm>
#include <map>

#include "app/admin_totals.hpp"

namespace tether::app {

namespace {

const char* state_of(const upstream::Backend& b) {
    if (!b.up()) return "down";
    return b.draining() ? "draining" : "up";
}

void json_string(std::string& out, std::string_view s) {
    out.push_back('"');
    for (char c : s) {
        if (c == '"' || c == '\\') out.push_back('\\');
        if (static_cast<unsigned char>(c) < 0x20) continue;
        out.push_back(c);
    }
    out.push_back('"');
}

}  // namespace

const char* affinity_name(config::Affinity a) {
    switch (a) {
        case config::Affinity::none: return "none";
        case config::Affinity::ip_hash: return "ip_hash";
        case config::Affinity::cookie: return "cookie";
        case config::Affinity::sid: return "sid";
    }
    return "none";
}

std::map<const upstream::Backend*, ServerTotals> server_totals(const AdminView& v) {
    std::map<const upstream::Backend*, ServerTotals> out;
    for (const auto& w : v.workers)
        for (const auto& [b, sc] : w->stats.servers) {
            auto& t = out[b];
            for (const auto& [code, n] : sc.responses) {
                t.requests += n;
                if (code >= 500) t.errors += n;
            }
            t.tunnels += sc.tunnels_active;
            t.eio_polling += sc.eio_polling;
            t.eio_websocket += sc.eio_websocket;
        }
    return out;
}

// The generation every worker routes with: a reload counts once each worker
// has installed it (the main thread posts it to them), not when it was built.
std::uint64_t applied_generation(const AdminView& v) {
    std::uint64_t g = v.runtime.generation;
    for (const auto& w : v.workers) g = std::min(g, w->generation);
    return g;
}

std::string render_status(const AdminView& v) {
    const auto totals = server_totals(v);
    std::string out = R"({"upstreams":{)";
    bool first_u = true;
    for (const auto& u : v.runtime.upstreams) {
        if (!first_u) out.push_back(',');
        first_u = false;
        json_string(out, u.config->name);
        out.append(R"(:{"affinity":")").append(affinity_name(u.config->affinity));
        out.append(R"(","servers":[)");
        bool first_s = true;
        for (const auto& b : u.backends) {
            if (!first_s) out.push_back(',');
            first_s = false;
            const auto t = totals.count(b.get()) ? totals.at(b.get()) : ServerTotals{};
            out.append(R"({"name":)");
            json_string(out, b->name());
            out.append(R"(,"address":)");
            json_string(out, b->server().address.text());
            out.append(R"(,"state":")").append(state_of(*b)).append("\"");
            out.append(R"(,"weight":)").append(std::to_string(b->server().weight));
            out.append(R"(,"backup":)").append(b->server().backup ? "true" : "false");
            out.append(R"(,"draining":)").append(b->draining() ? "true" : "false");
            out.append(R"(,"connections":)").append(std::to_string(b->active()));
            out.append(R"(,"tunnels":)").append(std::to_string(t.tunnels));
            if (u.config->affinity == config::Affinity::sid)
                out.append(R"(,"sessions":{"polling":)")
                    .append(std::to_string(t.eio_polling))
                    .append(R"(,"websocket":)")
                    .append(std::to_string(t.eio_websocket))
                    .append("}");
            out.append(R"(,"requests":)").append(std::to_string(t.requests));
            out.append(R"(,"errors":)").append(std::to_string(t.errors)).append("}");
        }
        out.append(R"(],"bindings":)")
            .append(std::to_string(v.table.count_prefix(u.config->name + ":")))
            .append("}");
    }
    out.append(R"(},"redis":{"state":")");
    if (!v.redis) {
        out.append(R"(off"})");
    } else {
        const redis::Stats rs = v.redis->stats();
        out.append(rs.up ? "up" : rs.connected ? "slow" : "down").append(R"(","address":)");
        const auto& a = v.redis->config().address;
        json_string(out, a.host + ":" + std::to_string(a.port));
        out.append(R"(,"commands":)").append(std::to_string(rs.commands));
        out.append(R"(,"timeouts":)").append(std::to_string(rs.timeouts));
        out.append(R"(,"reconnects":)").append(std::to_string(rs.reconnects)).append("}");
    }
    out.append(R"(,"config_generation":)");
    out.append(std::to_string(applied_generation(v)));
    out.append(R"(,"workers":)").append(std::to_string(v.worker_states.size()));
    out.append(R"(,"stale_workers":[)");
    bool first_w = true;
    for (std::size_t i = 0; i < v.worker_states.size(); ++i) {
        if (!v.worker_states[i].stale) continue;
        if (!first_w) out.push_back(',');
        first_w = false;
        out.append(std::to_string(i));
    }
    out.push_back(']');
    out.append(R"(,"stopping":)").append(v.stopping ? "true" : "false").append("}\n");
    return out;
}

bool is_ready(const upstream::Runtime& rt, bool stopping) {
    if (stopping) return false;
    for (const auto& u : rt.upstreams) {
        bool any = false;
        for (const auto& b : u.backends) any = any || b->up();
        if (!any) return false;
    }
    return true;
}

}  // namespace tether::app
