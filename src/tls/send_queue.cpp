// The worker's queue of small writes; see send_queue.hpp.
#include "tether/tls/send_queue.hpp"

#include <algorithm>
#include <utility>

#include <boost/asio/post.hpp>

#include "tether/core/log.hpp"

namespace tether::tls {

bool SendQueue::ready() {
    if (!ring_tried_) {  // here: on the worker's thread, the one that submits
        ring_tried_ = true;
        if (enabled_) {
            ring_ = core::SendRing::open(kRingEntries);
            if (!ring_) log::info("http: io_uring not available, one sendmsg per write");
        }
    }
    return ring_ != nullptr;
}

bool SendQueue::push(TimedSocketState& s, const iovec* v, std::size_t n, std::size_t bytes) {
    if (n == 0 || n > kMaxPieces || bytes == 0 || !ready()) return false;
    Entry& e = entries_.emplace_back(s);
    std::copy(v, v + n, e.v);
    e.n = n;
    s.send_queue = this;
    s.send_slot = static_cast<std::uint32_t>(entries_.size());
    ++sends_queued_;
    if (!flush_posted_) {
        flush_posted_ = true;
        boost::asio::post(executor_, [this] { flush(); });
    }
    return true;
}

void SendQueue::wait(TimedSocketState& s, SendWaiter* w) {
    entries_[s.send_slot - 1].w = w;
}

// Results of what the ring took, each into its entry (the tag: its index).
void SendQueue::reap() {
    ring_->submit();
    std::uint64_t tag;
    int res;
    while (ring_->next_result(tag, res)) flushing_[tag].res = res;
}

void SendQueue::flush() {
    flush_posted_ = false;
    flushing_.swap(entries_);  // a send queued while the waiters run goes in the next batch
    for (std::size_t i = 0; i < flushing_.size(); ++i) {
        Entry& e = flushing_[i];
        e.s->send_slot = 0;
        // Read now: a socket closed since the write was queued has no
        // descriptor any more (its number may be another socket's by now).
        if (!e.s->socket.is_open()) {
            e.res = -EBADF;
            continue;
        }
        const int fd = e.s->socket.native_handle();
        if (ring_->full()) reap();
        if (e.n == 1) {
            ring_->push(fd, e.v[0].iov_base, e.v[0].iov_len, i);
        } else {
            e.m = msghdr{};
            e.m.msg_iov = e.v;
            e.m.msg_iovlen = e.n;
            ring_->push_msg(fd, &e.m, i);
        }
    }
    reap();
    for (Entry& e : flushing_) finish(e);
    flushing_.clear();
}

// The result to the coroutine waiting for it, resumed here (as Asio resumes
// one from a completion: this runs as a handler on the worker's thread).
void SendQueue::finish(Entry& e) {
    TimedSocketState& s = *e.s;
    s.send_queue = nullptr;
    const auto ec = send_error(e.res);
    const std::size_t n = e.res > 0 ? static_cast<std::size_t>(e.res) : 0;
    if (SendWaiter* w = std::exchange(e.w, nullptr)) {
        w->complete(w, ec, n);
    } else {  // no waiter yet: async_queued_send completes with this
        s.send_done = true;
        s.send_result = e.res;
    }
}

void SendQueue::abandon() {
    for (auto* list : {&entries_, &flushing_}) {
        for (Entry& e : *list) {
            e.s->send_slot = 0;
            e.s->send_queue = nullptr;
            if (SendWaiter* w = std::exchange(e.w, nullptr)) w->destroy(w);
        }
        list->clear();
    }
}

}  // namespace tether::tls
