// Live Engine.IO sessions by transport, for upstreams with `affinity: sid`
// (the tether_engineio_sessions gauge and the "sessions" of /status).
//
// What is counted, per server, on the worker that holds the connection:
//   polling    a long-poll GET under sid.path carrying a sid, from the moment
//              a backend is chosen until its answer is relayed. An Engine.IO
//              polling client always keeps exactly one such GET pending (it
//              sends the next one as soon as one is answered), so the number
//              of pending GETs is the number of polling sessions.
//   websocket  a WebSocket tunnel under sid.path, from the 101 until it closes
//              (an upgraded session or a websocket-only one).
// A gauge is an RAII handle on one cell of the worker's ServerCounters: +1
// while it lives. Threading: the worker's thread only, like WorkerStats.
#pragma once

#include <string_view>
#include <utility>

#include "tether/balance/engineio.hpp"
#include "tether/config/config.hpp"
#include "tether/http/proxy_context.hpp"

namespace tether::http {

enum class EioTransport { none, polling, websocket };

/// The gauge a request feeds: `websocket_upgrade` is true for an upgrade
/// request (its tunnel is counted), false for a plain request. `q` is
/// balance::eio_query(target, u.sid.path, u.sid.param), read once per request
/// (left empty for other affinities).
inline EioTransport eio_transport(const config::Upstream& u, std::string_view method,
                                  bool websocket_upgrade, const balance::EioQuery& q) {
    if (u.affinity != config::Affinity::sid || !q.under_path) return EioTransport::none;
    if (websocket_upgrade) return EioTransport::websocket;
    if (method != "GET") return EioTransport::none;
    if (!q.sid) return EioTransport::none;  // a handshake
    // "polling" as written first (no decoding scan), then any spelling of it.
    if (!q.transport || *q.transport == "polling") return EioTransport::polling;
    return balance::param_equals(*q.transport, "polling") ? EioTransport::polling
                                                          : EioTransport::none;
}

class EioSessionGauge {
public:
    EioSessionGauge() = default;
    EioSessionGauge(WorkerStats& stats, const std::shared_ptr<upstream::Backend>& backend,
                    std::string_view upstream, EioTransport t)
        : EioSessionGauge(t == EioTransport::none || !backend ? nullptr
                                                               : &stats.server(backend, upstream),
                          t) {}
    /// On the counters of its server (WorkerStats::server; null: no gauge).
    EioSessionGauge(ServerCounters* sc, EioTransport t) {
        if (t == EioTransport::none || !sc) return;
        cell_ = t == EioTransport::polling ? &sc->eio_polling : &sc->eio_websocket;
        ++*cell_;
    }
    EioSessionGauge(EioSessionGauge&& o) noexcept : cell_(std::exchange(o.cell_, nullptr)) {}
    EioSessionGauge& operator=(EioSessionGauge&& o) noexcept {
        if (this != &o) {
            reset();
            cell_ = std::exchange(o.cell_, nullptr);
        }
        return *this;
    }
    EioSessionGauge(const EioSessionGauge&) = delete;
    EioSessionGauge& operator=(const EioSessionGauge&) = delete;
    ~EioSessionGauge() { reset(); }
    void reset() {
        if (cell_) --*cell_;
        cell_ = nullptr;
    }

private:
    std::int64_t* cell_ = nullptr;  // in WorkerStats::servers (nodes are never erased)
};

}  // namespace tether::http
