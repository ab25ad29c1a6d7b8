// The growable scratch of a client session (its read buffer, the head strings
// it writes, its request id), kept by the worker when a session ends and
// handed to the next one: with a new connection per request they would
// otherwise be grown from nothing every time (about nine allocations a
// connection: the buffer once, the strings by doubling).
// Threading: one per worker (in ProxyContext), used on its thread only.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include <boost/beast/core/flat_buffer.hpp>

namespace tether::http {

class SessionScratchPool {
public:
    static constexpr std::size_t kMaxFree = 64;           ///< sets kept per worker
    static constexpr std::size_t kMaxBuffer = 16 * 1024;  ///< a larger buffer is freed
    static constexpr std::size_t kMaxString = 4 * 1024;   ///< a longer string is freed

    /// A session's scratch, each part moved in and out as it is.
    struct Parts {
        boost::beast::flat_buffer& buffer;
        std::string& head;
        std::string& upstream_head;
        std::string& request_id;
    };

    /// Moves a kept set into `p` (left as it is when there is none).
    void take(Parts p) {
        if (free_.empty()) return;
        Set& s = free_.back();
        p.buffer = std::move(s.buffer);
        p.head = std::move(s.head);
        p.upstream_head = std::move(s.upstream_head);
        p.request_id = std::move(s.request_id);
        free_.pop_back();
    }

    /// Keeps what `p` holds, emptied, for the next session; a part too large
    /// is freed, and nothing is kept when the pool is full or `p` holds no memory.
    void give_back(Parts p) {
        if (free_.size() >= kMaxFree) return;
        p.buffer.clear();
        if (p.buffer.capacity() > kMaxBuffer) p.buffer.shrink_to_fit();
        for (std::string* str : {&p.head, &p.upstream_head, &p.request_id})
            if (str->capacity() > kMaxString) std::string().swap(*str);
        if (p.buffer.capacity() == 0 && p.upstream_head.capacity() <= kSso) return;
        Set& s = free_.emplace_back();
        s.buffer = std::move(p.buffer);
        s.head = std::move(p.head);
        s.head.clear();
        s.upstream_head = std::move(p.upstream_head);
        s.upstream_head.clear();
        s.request_id = std::move(p.request_id);
        s.request_id.clear();
    }

    std::size_t free_count() const { return free_.size(); }

private:
    static constexpr std::size_t kSso = std::string().capacity();
    struct Set {
        boost::beast::flat_buffer buffer;
        std::string head, upstream_head, request_id;
    };
    std::vector<Set> free_;
};

}  // namespace tether::http
