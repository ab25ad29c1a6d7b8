// WebSocket tunnel pumps; see tunnel.hpp for the design.
#include "tether/ws/tunnel.hpp"

#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "tether/ws/frame_tracker.hpp"

namespace tether::ws {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

class Tunnel final : public TrackedConnection {
public:
    Tunnel(TunnelSetup& s, TunnelContext& ctx)
        : setup_(s), ctx_(ctx), entry_(ctx.registry, this) {
        // The pumps start Asio's operations on the sockets directly: a client
        // socket not yet with the reactor joins it now (its error, if any,
        // ends the first operation).
        s.client.tcp().join_reactor();
        s.server.tcp().join_reactor();
        to_server_.src = &s.client.socket();
        to_server_.dst = &s.server.socket();
        to_client_.src = &s.server.socket();
        to_client_.dst = &s.client.socket();
        if (s.client.is_tls()) {
            to_server_.src_tls = &s.client;
            to_client_.dst_tls = &s.client;
        }
        if (s.server.is_tls()) {
            to_client_.src_tls = &s.server;
            to_server_.dst_tls = &s.server;
        }
        to_client_.to_client = true;
        last_activity_ = Clock::now();
    }

    Awaitable<TunnelStats> run() {
        using namespace asio::experimental::awaitable_operators;
        boost::system::error_code ec;
        if (!setup_.client.is_tls()) setup_.client.socket().non_blocking(true, ec);
        if (!setup_.server.is_tls()) setup_.server.socket().non_blocking(true, ec);
        if (ctx_.stopping) begin_stop(Clock::now());
        co_await (pump(to_server_, setup_.to_server) && pump(to_client_, setup_.to_client));
        stats_.frames_to_server = to_server_.tracker.frames();
        stats_.frames_to_client = to_client_.tracker.frames();
        report_frames();
        stats_.bytes_to_server = to_server_.bytes;
        stats_.bytes_to_client = to_client_.bytes;
        co_return stats_;
    }

    void begin_stop(Clock::time_point close_at) override {
        if (!close_at_ || close_at < *close_at_) close_at_ = close_at;
    }

    const void* server_key() const override { return setup_.server_key; }
    void drain(std::optional<Clock::time_point> close_at) override { drain_close_at_ = close_at; }

    void tick(Clock::time_point now) override {
        report_frames();
        if (!closing_ && ((close_at_ && now >= *close_at_) ||
                          (drain_close_at_ && now >= *drain_close_at_)))
            start_close(now);
        if (closing_ && now >= close_deadline_) abort();
        if (!closing_ && ctx_.idle.count() > 0 && now - last_activity_ > ctx_.idle) abort();
    }

private:
    struct Direction {
        TcpSocket* src = nullptr;
        TcpSocket* dst = nullptr;
        tls::ClientStream* src_tls = nullptr;  // reads go through TLS (wss client)
        tls::ClientStream* dst_tls = nullptr;  // writes go through TLS
        FrameTracker tracker;
        asio::cancellation_signal cancel_wait;
        bool waiting = false;
        bool close_sent = false;
        bool to_client = false;
        std::uint64_t bytes = 0;
        std::uint64_t reported_frames = 0;  // already added to the worker's counters
    };

    // Adds the frames relayed since the last report to the worker's counters.
    void report_frames() {
        for (auto [d, total] : {std::pair{&to_server_, ctx_.frames_to_server_total},
                                std::pair{&to_client_, ctx_.frames_to_client_total}}) {
            if (!total) continue;
            *total += d->tracker.frames() - d->reported_frames;
            d->reported_frames = d->tracker.frames();
        }
    }

    void start_close(Clock::time_point now) {
        closing_ = true;
        stats_.closed_by_tether = true;
        close_deadline_ = now + ctx_.close_grace;
        for (Direction* d : {&to_server_, &to_client_})
            if (d->waiting) d->cancel_wait.emit(asio::cancellation_type::terminal);
    }

    void abort() {
        boost::system::error_code ec;
        setup_.client.socket().close(ec);
        setup_.server.socket().close(ec);
    }

    /// Writes what the socket takes at once, without suspending (the common
    /// case); returns how much, or nullopt on an error.
    std::optional<std::size_t> write_now(Direction& d, const void* p, std::size_t n) {
        if (d.dst_tls) return 0;  // records are written by write_all
        boost::system::error_code ec;
        const std::size_t w = d.dst->write_some(asio::buffer(p, n), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) return 0;
        if (ec) return std::nullopt;
        d.bytes += w;
        return w;
    }

    Awaitable<bool> write_all(Direction& d, const void* p, std::size_t n) {
        const auto now = write_now(d, p, n);
        if (!now) co_return false;
        if (*now == n) co_return true;
        const auto* rest = static_cast<const char*>(p) + *now;
        auto [ec, written] =
            d.dst_tls ? co_await asio::async_write(*d.dst_tls, asio::buffer(rest, n - *now), use_tuple)
                      : co_await asio::async_write(*d.dst, asio::buffer(rest, n - *now), use_tuple);
        d.bytes += written;
        co_return !ec;
    }

    Awaitable<bool> send_close(Direction& d) {
        d.close_sent = true;
        if (d.to_client)
            co_return co_await write_all(d, kCloseGoingAwayToClient, sizeof kCloseGoingAwayToClient);
        co_return co_await write_all(d, kCloseGoingAwayToServer, sizeof kCloseGoingAwayToServer);
    }

    /// Forwards bytes already read by the HTTP layer, then pumps.
    Awaitable<void> pump(Direction& d, std::string& leftover) {
        if (d.to_client && setup_.first_frame_inspector) {
            if (!co_await hold_first_frame(d, leftover)) co_return abort();
        }
        if (!leftover.empty()) {
            d.tracker.feed(reinterpret_cast<const unsigned char*>(leftover.data()),
                           leftover.size());
            const bool ok = co_await write_all(d, leftover.data(), leftover.size());
            std::string().swap(leftover);
            if (!ok) co_return abort();
        }
        co_await pump_loop(d);
    }

    /// Reads until the server's first frame is complete (at most
    /// OpenPacket-sized: kMaxFirstFrame bytes), lets the inspector see its
    /// payload, and leaves the bytes in `held` to be forwarded as usual.
    Awaitable<bool> hold_first_frame(Direction& d, std::string& held) {
        static constexpr std::size_t kMaxFirstFrame = 4096;
        for (;;) {
            FrameTracker probe;
            const std::size_t end = probe.feed(
                reinterpret_cast<const unsigned char*>(held.data()), held.size(), true);
            if (probe.frames() > 0) {
                co_await setup_.first_frame_inspector->inspect(text_frame_payload(std::string_view(held).substr(0, end)));
                co_return true;
            }
            if (held.size() >= kMaxFirstFrame) co_return true;
            char tmp[kMaxFirstFrame];
            boost::system::error_code ec;
            std::size_t n = 0;
            if (d.src_tls) {  // a TLS server: the read waits for a whole record
                std::tie(ec, n) = co_await d.src_tls->async_read_some(
                    asio::buffer(tmp, kMaxFirstFrame - held.size()), use_tuple);
            } else {
                auto [wec] = co_await d.src->async_wait(tcp::socket::wait_read, use_tuple);
                if (wec) co_return false;
                n = d.src->read_some(asio::buffer(tmp, kMaxFirstFrame - held.size()), ec);
            }
            if (ec == asio::error::would_block || ec == asio::error::try_again) continue;
            if (ec) co_return !held.empty();  // forward what came, then the pump sees the end
            held.append(tmp, n);
        }
    }

    /// One step per readiness: read what is there into a borrowed buffer and
    /// write it on. Returns when the source ended or the tunnel failed.
    Awaitable<void> pump_loop(Direction& d) {
        for (;;) {
            if (closing_ && !d.close_sent && d.tracker.at_boundary()) {
                if (!co_await send_close(d)) co_return abort();
            }
            BufferPool::Lease buf;
            boost::system::error_code ec;
            std::size_t n = 0;
            d.waiting = true;
            if (d.src_tls) {  // a TLS record is decrypted whole: wait inside the read
                buf = ctx_.buffers.borrow();
                std::tie(ec, n) = co_await d.src_tls->async_read_some(
                    asio::buffer(buf.data(), buf.size()),
                    asio::bind_cancellation_slot(d.cancel_wait.slot(), use_tuple));
                d.waiting = false;
                if (ec == asio::error::operation_aborted && closing_ && d.src->is_open()) continue;
                if (ec == asio::ssl::error::stream_truncated) ec = asio::error::eof;
            } else {
                auto [wec] = co_await d.src->async_wait(
                    tcp::socket::wait_read,
                    asio::bind_cancellation_slot(d.cancel_wait.slot(), use_tuple));
                d.waiting = false;
                if (wec == asio::error::operation_aborted && closing_ && d.src->is_open()) continue;
                if (wec) co_return abort();
                buf = ctx_.buffers.borrow();
                n = d.src->read_some(asio::buffer(buf.data(), buf.size()), ec);
                if (ec == asio::error::would_block || ec == asio::error::try_again) continue;
            }
            if (ec == asio::error::eof) co_return half_close(d);
            if (ec) co_return abort();
            last_activity_ = Clock::now();
            const auto* bytes = reinterpret_cast<const unsigned char*>(buf.data());
            if (d.close_sent) {
                if (consume_after_close(d, bytes, n)) co_return;
                continue;
            }
            const std::size_t len = d.tracker.feed(bytes, n, closing_);
            const auto now = write_now(d, buf.data(), len);  // fast path: no suspension
            if (!now) co_return abort();
            if (*now < len && !co_await write_all(d, buf.data() + *now, len - *now))
                co_return abort();
        }
    }

    void half_close(Direction& d) {
        boost::system::error_code ec;
        d.dst->shutdown(tcp::socket::shutdown_send, ec);
    }

    /// After our close frame went out in this direction, what the source sends
    /// is dropped. The client's close reply ends its side: tether plays the
    /// server there, and the server closes the TCP connection first (RFC 6455
    /// 7.1.1). Returns true when this direction is finished.
    bool consume_after_close(Direction& d, const unsigned char* bytes, std::size_t n) {
        const std::uint64_t before = d.tracker.frames();
        d.tracker.feed(bytes, n);
        if (d.to_client || d.tracker.frames() == before || d.tracker.opcode() != 0x8) return false;
        boost::system::error_code ec;
        d.src->shutdown(tcp::socket::shutdown_both, ec);
        return true;
    }

    TunnelSetup& setup_;
    TunnelContext& ctx_;
    RegistryEntry entry_;
    Direction to_server_;
    Direction to_client_;
    TunnelStats stats_;
    Clock::time_point last_activity_;
    std::optional<Clock::time_point> close_at_;
    std::optional<Clock::time_point> drain_close_at_;  // its server was drained
    Clock::time_point close_deadline_;
    bool closing_ = false;
};

}  // namespace

Awaitable<TunnelStats> run_tunnel(TunnelSetup setup, TunnelContext ctx) {
    Tunnel tunnel(setup, ctx);
    co_return co_await tunnel.run();
}

}  // namespace tether::ws
