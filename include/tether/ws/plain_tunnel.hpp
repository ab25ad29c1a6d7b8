// The WebSocket tunnel between two plain sockets (ws:// client, plain
// upstream), run by the worker's TunnelReactor without a coroutine: the
// session that switched protocols hands over both descriptors and what its
// connection holds (TunnelOwner), and ends. An idle tunnel is then one
// object of a few hundred bytes, two descriptors registered once in the
// reactor, and its owner: no coroutine frame, no pending Asio operation, no
// timer, no buffer.
//
// A step: the source socket is readable, one recv into the worker's scratch
// buffer (BufferPool::scratch), the frame tracker follows the headers, one
// send of the same bytes. Only when the destination does not take everything
// are the rest copied into a buffer borrowed from the worker's pool, kept (and
// nothing more is read from that source: backpressure) until the destination
// is writable again. A short read means the socket is drained (edge-triggered:
// new bytes bring a new event), so no read is made only to get EAGAIN.
//
// Same behaviour as the coroutine tunnel (tunnel.hpp), which still serves TLS:
// bytes read past the heads forwarded first, the server's first frame shown to
// a StreamInspector before it goes on, half-close, the idle limit and the
// close schedule driven by the worker's tick, 1001 close frames at a frame
// boundary on stop or drain, then a bounded wait for the peers.
// Threading: runs on, and is only touched from, its worker's thread.
#pragma once

#include <memory>
#include <string>

#include "tether/ws/tunnel.hpp"
#include "tether/ws/tunnel_reactor.hpp"

namespace tether::ws {

/// What the tunnel's connection holds while it lives (the session's counts and
/// guards); told the figures when the tunnel ends, then destroyed with it.
class TunnelOwner {
public:
    virtual ~TunnelOwner() = default;
    /// Both directions ended; called at most once (not when the worker is torn down).
    virtual void finished(const TunnelStats& stats) = 0;
};

struct PlainTunnelSetup {
    int client_fd = -1;  ///< taken over (closed by the tunnel)
    int server_fd = -1;  ///< taken over
    std::string to_server;  ///< bytes the client sent after the upgrade request
    std::string to_client;  ///< bytes the server sent after its 101 head
    /// Sees the payload of the server's first frame before it is forwarded
    /// (owned by the owner, which outlives the inspection).
    StreamInspector* first_frame_inspector = nullptr;
    const void* server_key = nullptr;  ///< TrackedConnection::server_key for drains
};

/// Starts the tunnel and returns; the reactor owns it until it ends. On a
/// failure to register the descriptors the tunnel ends at once (finished()
/// is called, the descriptors closed).
void start_plain_tunnel(TunnelReactor& reactor, PlainTunnelSetup setup, const TunnelContext& ctx,
                        std::unique_ptr<TunnelOwner> owner);

}  // namespace tether::ws
