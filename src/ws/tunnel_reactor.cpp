// The nested epoll set of plain tunnels; see tunnel_reactor.hpp.
#include "tether/ws/tunnel_reactor.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>

#include <boost/asio/post.hpp>

#include "tether/core/log.hpp"

namespace tether::ws {

namespace asio = boost::asio;

namespace {

int make_epoll() {
    const int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0)
        throw boost::system::system_error(errno, boost::system::system_category(), "epoll_create1");
    return fd;
}

constexpr int kBatch = 128;
constexpr unsigned kRingEntries = 128;  // sends per submission at most
constexpr std::size_t kArenaReads = 4;  // the arena holds this many full reads

}  // namespace

TunnelReactor::TunnelReactor(Executor ex, bool batch_sends)
    : executor_(ex), epoll_(ex, make_epoll()), now_(std::chrono::steady_clock::now()),
      batch_sends_(batch_sends) {
    wait();
}

TunnelReactor::~TunnelReactor() {
    destroy_list(live_);
    destroy_list(retired_);
    boost::system::error_code ec;
    epoll_.close(ec);
}

bool TunnelReactor::add(int fd, ReadyHandler* h) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = h;
    return ::epoll_ctl(epoll_.native_handle(), EPOLL_CTL_ADD, fd, &ev) == 0;
}

void TunnelReactor::adopt(ReactorClient* c) {
    push(live_, c);
    ++live_count_;
}

void TunnelReactor::retire(ReactorClient* c) {
    if (c->retired_) return;
    c->retired_ = true;
    unlink(live_, c);
    --live_count_;
    push(retired_, c);
    if (!in_batch_ && !collect_posted_) {
        collect_posted_ = true;
        asio::post(executor_, [this] {
            collect_posted_ = false;
            collect();
        });
    }
}

void TunnelReactor::collect() { destroy_list(retired_); }

void TunnelReactor::wait() {
    epoll_.async_wait(asio::posix::stream_descriptor::wait_read,
                      [this](const boost::system::error_code& ec) {
                          if (ec == asio::error::operation_aborted || !epoll_.is_open()) return;
                          if (ec) log::error("tunnel reactor wait failed: " + ec.message());
                          run_batch();
                          wait();
                      });
}

// Takes every ready event: a full array means there may be more. The sends
// queued while handling them go out before the next epoll_wait.
void TunnelReactor::run_batch() {
    if (batch_sends_ && !ring_tried_) {  // here: on the thread that will submit
        ring_tried_ = true;
        ring_ = core::SendRing::open(kRingEntries);
        if (!ring_) log::info("tunnel reactor: io_uring not available, one send() per step");
    }
    epoll_event events[kBatch];
    in_batch_ = true;
    for (;;) {
        const int n = ::epoll_wait(epoll_.native_handle(), events, kBatch, 0);
        if (n <= 0) break;
        now_ = std::chrono::steady_clock::now();
        for (int i = 0; i < n; ++i) static_cast<ReadyHandler*>(events[i].data.ptr)->on_ready(events[i].events);
        drain_sends();
        if (n < kBatch) break;
    }
    in_batch_ = false;
    collect();
}

char* TunnelReactor::batch_buffer(std::size_t n) {
    if (arena_size_ < kArenaReads * n) {
        flush_sends();  // nothing may point into the old arena
        arena_size_ = kArenaReads * n;
        arena_ = std::make_unique_for_overwrite<char[]>(arena_size_);
        arena_used_ = 0;
    }
    if (arena_size_ - arena_used_ < n || ring_->full()) flush_sends();
    return arena_.get() + arena_used_;
}

void TunnelReactor::queue_send(int fd, const char* p, std::size_t len, SendHandler* h) {
    ring_->push(fd, p, len, reinterpret_cast<std::uintptr_t>(h));
    arena_used_ = static_cast<std::size_t>(p + len - arena_.get() + 63) & ~std::size_t{63};
    ++sends_batched_;
}

// One submission; every result to its handler while the bytes are still
// there, then the arena is free again. Handlers go on in drain_sends().
// A call from inside on_sent (a tunnel that ends) finds everything submitted.
void TunnelReactor::flush_sends() {
    if (!ring_ || ring_->queued() == 0 || reaping_) return;
    ring_->submit();
    reaping_ = true;
    std::uint64_t tag;
    int res;
    while (ring_->next_result(tag, res)) {
        auto* h = reinterpret_cast<SendHandler*>(static_cast<std::uintptr_t>(tag));
        h->on_sent(res);
        resume_.push_back(h);
    }
    reaping_ = false;
    arena_used_ = 0;
}

// Until nothing is queued: submit, then let the senders go on (a sender that
// read a whole buffer reads again and queues again).
void TunnelReactor::drain_sends() {
    while (ring_ && (ring_->queued() > 0 || !resume_.empty())) {
        flush_sends();
        resuming_.swap(resume_);
        for (SendHandler* h : resuming_) h->on_flushed();
        resuming_.clear();
    }
}

void TunnelReactor::destroy_list(ReactorClient*& head) {
    while (ReactorClient* c = head) {
        head = c->next_;
        if (head) head->prev_ = nullptr;
        delete c;
    }
}

void TunnelReactor::unlink(ReactorClient*& head, ReactorClient* c) {
    if (c->prev_) c->prev_->next_ = c->next_;
    else head = c->next_;
    if (c->next_) c->next_->prev_ = c->prev_;
    c->prev_ = c->next_ = nullptr;
}

void TunnelReactor::push(ReactorClient*& head, ReactorClient* c) {
    c->prev_ = nullptr;
    c->next_ = head;
    if (head) head->prev_ = c;
    head = c;
}

}  // namespace tether::ws
