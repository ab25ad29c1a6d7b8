// The reactor-driven plain tunnel; see plain_tunnel.hpp for the design.
#include "tether/ws/plain_tunnel.hpp"

#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <optional>

#include <boost/asio/co_spawn.hpp>

#include "tether/core/socket_calls.hpp"
#include "tether/ws/frame_tracker.hpp"

namespace tether::ws {

namespace {

constexpr std::size_t kMaxFirstFrame = 4096;  // as the coroutine tunnel

bool would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK; }

// recv and send without glibc's cancellation-point wrappers (in normal builds;
// sanitizer builds keep glibc's, which ASan and TSan intercept): see
// core/socket_calls.hpp.
ssize_t recv_some(int fd, void* p, std::size_t n) {
    ssize_t r;
    do r = core::sys_recv(fd, p, n, 0);
    while (r < 0 && errno == EINTR);
    return r;
}

ssize_t send_some(int fd, const void* p, std::size_t n) {
    ssize_t r;
    do r = core::sys_send(fd, p, n, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    return r;
}

class PlainTunnel;

// One socket of the tunnel: its descriptor and what the last events said.
struct Side final : ReadyHandler {
    PlainTunnel* tunnel = nullptr;
    int fd = -1;
    bool readable = false;  // until a read returns short or EAGAIN
    bool writable = true;   // until a send returns short or EAGAIN
    bool rdhup = false;     // the peer's FIN is queued: read on to the 0 after a short read
    void on_ready(std::uint32_t events) override;
};

// One direction: bytes from src to dst, and those dst has not taken yet.
struct Direction final : SendHandler {
    PlainTunnel* tunnel = nullptr;
    Side* src = nullptr;
    Side* dst = nullptr;
    FrameTracker tracker;
    BufferPool::Lease lease;  // owns `out` when a read was not sent whole
    std::string spill;        // owns `out` for bytes read before the tunnel (or held)
    const char* out = nullptr;
    std::size_t out_len = 0;
    std::uint64_t bytes = 0;
    std::uint64_t reported_frames = 0;
    bool eof = false;         // the source ended
    bool finished = false;    // nothing more will go this way
    bool close_sent = false;  // our 1001 close frame is queued or written
    bool to_client = false;
    bool holding = false;     // collecting the server's first frame for the inspector
    // A send queued in the reactor's batch (queued_len bytes at queued_at),
    // its result not known yet: nothing more is read or sent this way.
    const char* queued_at = nullptr;
    std::size_t queued_len = 0;
    void on_sent(int result) override;
    void on_flushed() override;
};

class PlainTunnel final : public TrackedConnection, public ReactorClient {
public:
    PlainTunnel(TunnelReactor& r, PlainTunnelSetup& s, const TunnelContext& ctx,
                std::unique_ptr<TunnelOwner> owner)
        : reactor_(r), ctx_(ctx), owner_(std::move(owner)), entry_(ctx.registry, this),
          inspector_(s.first_frame_inspector), server_key_(s.server_key),
          last_activity_(Clock::now()) {
        client_.tunnel = server_.tunnel = this;
        to_server_.tunnel = to_client_.tunnel = this;
        client_.fd = s.client_fd;
        server_.fd = s.server_fd;
        s.client_fd = s.server_fd = -1;
        to_server_.src = &client_;
        to_server_.dst = &server_;
        to_client_.src = &server_;
        to_client_.dst = &client_;
        to_client_.to_client = true;
        take_leftover(to_server_, s.to_server);
        if (inspector_) {
            to_client_.holding = true;
            to_client_.spill = std::move(s.to_client);
        } else {
            take_leftover(to_client_, s.to_client);
        }
    }

    ~PlainTunnel() override { close_sockets(); }

    void start() {
        for (Side* side : {&client_, &server_}) {
            int on = 1;
            if (::ioctl(side->fd, FIONBIO, &on) != 0 || !reactor_.add(side->fd, side))
                return abort();
        }
        if (ctx_.stopping) begin_stop(Clock::now());
        pump(to_server_);
        pump(to_client_);
    }

    void on_ready(Side& side, std::uint32_t events) {
        if (ended_) return;
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) side.readable = true;
        if (events & EPOLLRDHUP) side.rdhup = true;
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) side.writable = true;
        Direction& from = &side == &client_ ? to_server_ : to_client_;
        Direction& into = &side == &client_ ? to_client_ : to_server_;
        pump(from);
        pump(into);
    }

    /// The result of d's queued send (the bytes still readable at d.queued_at).
    void sent(Direction& d, int result) {
        const char* const at = d.queued_at;
        const std::size_t len = d.queued_len;
        d.queued_at = nullptr;
        d.queued_len = 0;
        if (ended_) return;
        if (result < 0 && result != -EAGAIN && result != -EWOULDBLOCK) return abort();
        const std::size_t w = result < 0 ? 0 : static_cast<std::size_t>(result);
        d.bytes += w;
        if (w == len) return;
        keep_unsent(d, at + w, len - w);
    }

    void resume(Direction& d) {
        if (!ended_) pump(d);
    }

    void begin_stop(Clock::time_point close_at) override {
        if (!close_at_ || close_at < *close_at_) close_at_ = close_at;
    }
    const void* server_key() const override { return server_key_; }
    void drain(std::optional<Clock::time_point> close_at) override { drain_close_at_ = close_at; }

    void tick(Clock::time_point now) override {
        if (ended_) return;
        report_frames();
        if (!closing_ && ((close_at_ && now >= *close_at_) ||
                          (drain_close_at_ && now >= *drain_close_at_)))
            start_close(now);
        if (ended_) return;
        if (closing_ && now >= close_deadline_) return abort();
        if (!closing_ && ctx_.idle.count() > 0 && now - last_activity_ > ctx_.idle) abort();
    }

private:
    static void take_leftover(Direction& d, std::string& bytes) {
        if (bytes.empty()) return;
        d.tracker.feed(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
        d.spill = std::move(bytes);
        d.out = d.spill.data();
        d.out_len = d.spill.size();
    }

    /// Moves `d` on as far as the sockets allow without waiting.
    void pump(Direction& d) {
        while (!ended_ && !d.finished && !d.queued_at) {
            if (d.out_len > 0) {
                if (!flush(d)) return;
                continue;
            }
            if (d.holding) {
                if (!hold_first_frame(d)) return;
                continue;
            }
            if (closing_ && !d.close_sent && !d.eof && d.tracker.at_boundary()) {
                queue_close(d);
                continue;
            }
            if (d.eof) return half_close(d);
            if (!d.src->readable) return;
            if (!read_and_forward(d)) return;
        }
    }

    /// Writes what is queued; true when all of it went.
    bool flush(Direction& d) {
        if (!d.dst->writable) return false;
        const ssize_t w = send_some(d.dst->fd, d.out, d.out_len);
        if (w < 0) {
            if (would_block(errno)) d.dst->writable = false;
            else abort();
            return false;
        }
        d.bytes += static_cast<std::size_t>(w);
        d.out += w;
        d.out_len -= static_cast<std::size_t>(w);
        if (d.out_len > 0) {
            d.dst->writable = false;
            return false;
        }
        d.out = nullptr;
        d.lease.release();
        if (d.spill.capacity() > 0) std::string().swap(d.spill);
        return true;
    }

    /// One read into the worker's scratch buffer and one send of it; what the
    /// destination does not take is copied into a borrowed buffer. While the
    /// reactor batches, the read goes into its arena and the send is queued
    /// (its result comes with on_sent). False: stop pumping (wait for an
    /// event or the send's result, or the tunnel ended).
    bool read_and_forward(Direction& d) {
        const std::size_t cap = ctx_.buffers.buffer_size();
        const bool batch = reactor_.batching();
        char* const buf = batch ? reactor_.batch_buffer(cap) : ctx_.buffers.scratch();
        const ssize_t r = recv_some(d.src->fd, buf, cap);
        if (r < 0) {
            if (would_block(errno)) d.src->readable = false;
            else abort();
            return false;
        }
        if (r == 0) {
            d.eof = true;
            d.src->readable = false;
            return true;
        }
        const auto n = static_cast<std::size_t>(r);
        if (n < cap && !d.src->rdhup) d.src->readable = false;  // drained
        last_activity_ = reactor_.now();
        const auto* bytes = reinterpret_cast<const unsigned char*>(buf);
        if (d.close_sent) return !consume_after_close(d, bytes, n);
        const std::size_t len = d.tracker.feed(bytes, n, closing_);
        if (batch && d.dst->writable && len > 0) {
            d.queued_at = buf;
            d.queued_len = len;
            reactor_.queue_send(d.dst->fd, buf, len, &d);
            return false;
        }
        std::size_t w = 0;
        if (d.dst->writable) {
            const ssize_t s = send_some(d.dst->fd, buf, len);
            if (s < 0 && !would_block(errno)) {
                abort();
                return false;
            }
            w = s < 0 ? 0 : static_cast<std::size_t>(s);
            d.bytes += w;
        }
        if (w == len) return true;
        keep_unsent(d, buf + w, len - w);
        return false;
    }

    /// The destination is full: the rest waits in a borrowed buffer.
    void keep_unsent(Direction& d, const char* p, std::size_t n) {
        d.dst->writable = false;
        d.lease = ctx_.buffers.borrow();
        std::memcpy(d.lease.data(), p, n);
        d.out = d.lease.data();
        d.out_len = n;
    }

    void queue_close(Direction& d) {
        d.close_sent = true;
        const unsigned char* frame = d.to_client ? kCloseGoingAwayToClient : kCloseGoingAwayToServer;
        d.out = reinterpret_cast<const char*>(frame);
        d.out_len = d.to_client ? sizeof kCloseGoingAwayToClient : sizeof kCloseGoingAwayToServer;
    }

    /// After our close frame went out in this direction, what the source
    /// sends is dropped. The client's close reply ends its side: tether plays
    /// the server there, and the server closes the TCP connection first (RFC
    /// 6455 7.1.1). True when this direction is finished.
    bool consume_after_close(Direction& d, const unsigned char* bytes, std::size_t n) {
        const std::uint64_t before = d.tracker.frames();
        d.tracker.feed(bytes, n);
        if (d.to_client || d.tracker.frames() == before || d.tracker.opcode() != 0x8) return false;
        ::shutdown(d.src->fd, SHUT_RDWR);
        d.finished = true;
        check_end();
        return true;
    }

    void half_close(Direction& d) {
        ::shutdown(d.dst->fd, SHUT_WR);
        d.finished = true;
        check_end();
    }

    /// Collects the server's first frame (at most kMaxFirstFrame bytes) in
    /// d.spill, then lets the inspector see its payload before it goes on.
    /// False: wait (for bytes, or for the inspector).
    bool hold_first_frame(Direction& d) {
        if (inspecting_) return false;
        for (;;) {
            FrameTracker probe;
            const std::size_t end = probe.feed(
                reinterpret_cast<const unsigned char*>(d.spill.data()), d.spill.size(), true);
            if (probe.frames() > 0) return inspect(d, text_frame_payload(std::string_view(d.spill).substr(0, end)));
            if (d.spill.size() >= kMaxFirstFrame) {
                release_hold(d);
                return true;
            }
            if (!d.src->readable) return false;
            char tmp[kMaxFirstFrame];
            const ssize_t r = recv_some(d.src->fd, tmp, kMaxFirstFrame - d.spill.size());
            if (r < 0 && would_block(errno)) {
                d.src->readable = false;
                return false;
            }
            if (r <= 0) {  // forward what came; the pump then sees the end
                if (d.spill.empty()) {
                    abort();
                    return false;
                }
                release_hold(d);
                return true;
            }
            if (static_cast<std::size_t>(r) < kMaxFirstFrame - d.spill.size() && !d.src->rdhup)
                d.src->readable = false;
            last_activity_ = reactor_.now();
            d.spill.append(tmp, static_cast<std::size_t>(r));
        }
    }

    bool inspect(Direction& d, std::string_view payload) {
        inspecting_ = true;
        boost::asio::co_spawn(reactor_.executor(), inspector_->inspect(payload),
                              [this, &d](std::exception_ptr, bool) {
                                  inspecting_ = false;
                                  if (ended_) return reactor_.retire(this);
                                  release_hold(d);
                                  pump(d);
                              });
        return false;
    }

    /// The held bytes go on as they are (d.spill stays their owner).
    void release_hold(Direction& d) {
        d.holding = false;
        if (d.spill.empty()) return;
        d.tracker.feed(reinterpret_cast<const unsigned char*>(d.spill.data()), d.spill.size());
        d.out = d.spill.data();
        d.out_len = d.spill.size();
    }

    void start_close(Clock::time_point now) {
        closing_ = true;
        stats_.closed_by_tether = true;
        close_deadline_ = now + ctx_.close_grace;
        pump(to_server_);
        pump(to_client_);
    }

    void report_frames() {
        for (auto [d, total] : {std::pair{&to_server_, ctx_.frames_to_server_total},
                                std::pair{&to_client_, ctx_.frames_to_client_total}}) {
            if (!total) continue;
            *total += d->tracker.frames() - d->reported_frames;
            d->reported_frames = d->tracker.frames();
        }
    }

    void check_end() {
        if (to_server_.finished && to_client_.finished) end();
    }

    /// Closes both sockets: both peers see the end at once.
    void abort() {
        to_server_.finished = to_client_.finished = true;
        end();
    }

    void close_sockets() {
        reactor_.flush_sends();  // a queued send names a descriptor closed here
        for (Side* side : {&client_, &server_}) {
            if (side->fd >= 0) ::close(side->fd);  // also leaves the epoll set
            side->fd = -1;
        }
    }

    void end() {
        if (ended_) return;
        ended_ = true;
        close_sockets();
        report_frames();
        stats_.frames_to_server = to_server_.tracker.frames();
        stats_.frames_to_client = to_client_.tracker.frames();
        stats_.bytes_to_server = to_server_.bytes;
        stats_.bytes_to_client = to_client_.bytes;
        for (Direction* d : {&to_server_, &to_client_}) {
            d->lease.release();
            d->out_len = 0;
        }
        if (owner_) owner_->finished(stats_);
        if (!inspecting_) reactor_.retire(this);  // else when the inspector is done
    }

    TunnelReactor& reactor_;
    TunnelContext ctx_;
    std::unique_ptr<TunnelOwner> owner_;
    RegistryEntry entry_;
    StreamInspector* inspector_;
    const void* server_key_;
    Side client_;
    Side server_;
    Direction to_server_;
    Direction to_client_;
    TunnelStats stats_;
    Clock::time_point last_activity_;
    Clock::time_point close_deadline_;
    std::optional<Clock::time_point> close_at_;
    std::optional<Clock::time_point> drain_close_at_;  // its server was drained
    bool closing_ = false;
    bool inspecting_ = false;
    bool ended_ = false;
};

void Side::on_ready(std::uint32_t events) { tunnel->on_ready(*this, events); }
void Direction::on_sent(int result) { tunnel->sent(*this, result); }
void Direction::on_flushed() { tunnel->resume(*this); }

}  // namespace

void start_plain_tunnel(TunnelReactor& reactor, PlainTunnelSetup setup, const TunnelContext& ctx,
                        std::unique_ptr<TunnelOwner> owner) {
    auto* t = new PlainTunnel(reactor, setup, ctx, std::move(owner));
    reactor.adopt(t);
    t->start();
}

}  // namespace tether::ws
