// The WebSocket tunnel after a 101: two pumps, client->server and
// server->client, each waiting for readability WITHOUT a buffer, then
// borrowing one relay buffer from the worker's pool for a single
// read-write step (backpressure: nothing more is read from a side until the
// other side took the last bytes). An idle tunnel therefore holds two sockets
// and a few hundred bytes of state, no buffer.
//
// Frame boundaries are followed in both directions (FrameTracker) to count
// frames and to close at a boundary on graceful stop or when its server is
// drained (TrackedConnection::drain): 1001 to the client
// (unmasked) and to the server (masked), then the tunnel waits, bounded, for
// both peers to finish the close handshake.
//
// Either side may be TLS (wss from the client; an upstream with `tls` on
// the server side): a pump reading from a TLS side waits inside a TLS read
// into a borrowed buffer (a record is decrypted whole, so socket readiness
// says nothing), holding it while it waits; a pump writing to a TLS side
// writes through the TLS stream. Cancellation for the close at a frame
// boundary works the same on both.
//
// Idle limit (timeouts.tunnel) and the close schedule are driven by the
// worker's tick (TrackedConnection), not by a timer per tunnel.
// Threading: runs on, and is only touched from, its worker's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <boost/asio/ip/tcp.hpp>

#include "tether/core/buffer_pool.hpp"
#include "tether/core/connection_registry.hpp"
#include "tether/core/executor.hpp"
#include "tether/core/stream_inspector.hpp"
#include "tether/tls/client_stream.hpp"

namespace tether::ws {

struct TunnelSetup {
    tls::ClientStream& client;  ///< owned by the session, which outlives the tunnel
    tls::ClientStream& server;  ///< the upstream connection, owned by the session too
    std::string to_server;  ///< bytes the client sent after the upgrade request
    std::string to_client;  ///< bytes the server sent after its 101 head
    /// Sees the payload of the server's first frame before it is forwarded
    /// (the Engine.IO open packet of a websocket-only handshake).
    StreamInspector* first_frame_inspector = nullptr;
    /// Identifies the server for drains (TrackedConnection::server_key).
    const void* server_key = nullptr;
};

struct TunnelContext {
    BufferPool& buffers;
    ConnectionRegistry& registry;
    std::chrono::milliseconds idle;         ///< timeouts.tunnel (0 = never)
    std::chrono::milliseconds close_grace;  ///< wait for peers after our close frames
    bool stopping = false;                  ///< worker already stopping: close at once
    /// Counters (the worker's, same thread) that get the frames relayed,
    /// added on each tick and at the end, so a long tunnel shows in metrics
    /// while it lives. Null: not counted live (TunnelStats still has them).
    std::uint64_t* frames_to_server_total = nullptr;
    std::uint64_t* frames_to_client_total = nullptr;
};

struct TunnelStats {
    std::uint64_t frames_to_server = 0;
    std::uint64_t frames_to_client = 0;
    std::uint64_t bytes_to_server = 0;
    std::uint64_t bytes_to_client = 0;
    bool closed_by_tether = false;  ///< 1001 sent because of stop or drain
};

/// Runs the tunnel until both directions ended; never throws.
Awaitable<TunnelStats> run_tunnel(TunnelSetup setup, TunnelContext ctx);

}  // namespace tether::ws
