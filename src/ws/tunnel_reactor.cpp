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

}  // namespace

TunnelReactor::TunnelReactor(Executor ex)
    : executor_(ex), epoll_(ex, make_epoll()), now_(std::chrono::steady_clock::now()) {
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

// Takes every ready event: a full array means there may be more.
void TunnelReactor::run_batch() {
    epoll_event events[kBatch];
    in_batch_ = true;
    for (;;) {
        const int n = ::epoll_wait(epoll_.native_handle(), events, kBatch, 0);
        if (n <= 0) break;
        now_ = std::chrono::steady_clock::now();
        for (int i = 0; i < n; ++i) static_cast<ReadyHandler*>(events[i].data.ptr)->on_ready(events[i].events);
        if (n < kBatch) break;
    }
    in_batch_ = false;
    collect();
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
