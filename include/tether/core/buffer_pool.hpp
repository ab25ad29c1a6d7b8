// Per-worker pool of fixed-size relay buffers (limits.buffer_size). A
// connection borrows one only while bytes are in flight, so an idle keep-alive
// connection or an idle WebSocket tunnel holds no relay buffer at all.
// Threading: owned by one worker, used only on its thread.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace tether {

class BufferPool {
public:
    /// `buffer_size` bytes per buffer; at most `max_free` kept for reuse.
    BufferPool(std::size_t buffer_size, std::size_t max_free)
        : size_(buffer_size), max_free_(max_free) {}

    class Lease {
    public:
        Lease() = default;
        Lease(BufferPool* pool, std::unique_ptr<char[]> mem) : pool_(pool), mem_(std::move(mem)) {}
        Lease(Lease&&) noexcept = default;
        Lease& operator=(Lease&& o) noexcept {
            release();
            pool_ = o.pool_;
            mem_ = std::move(o.mem_);
            return *this;
        }
        ~Lease() { release(); }
        char* data() const { return mem_.get(); }
        std::size_t size() const { return pool_ ? pool_->size_ : 0; }
        explicit operator bool() const { return mem_ != nullptr; }
        void release() {
            if (mem_) pool_->give_back(std::move(mem_));
        }

    private:
        BufferPool* pool_ = nullptr;
        std::unique_ptr<char[]> mem_;
    };

    Lease borrow() {
        if (free_.empty()) return Lease(this, std::make_unique_for_overwrite<char[]>(size_));
        auto mem = std::move(free_.back());
        free_.pop_back();
        return Lease(this, std::move(mem));
    }
    std::size_t buffer_size() const { return size_; }
    std::size_t free_count() const { return free_.size(); }

    /// A buffer of buffer_size() bytes for one synchronous step (read into it,
    /// hand the bytes on, return) that is never held across a wait: the same
    /// one every time, allocated on first use, apart from the borrowed ones. A
    /// step that has to keep bytes borrows a buffer and copies them (the plain
    /// WebSocket tunnel, when the destination does not take a whole read).
    char* scratch() {
        if (!scratch_) scratch_ = std::make_unique_for_overwrite<char[]>(size_);
        return scratch_.get();
    }

private:
    void give_back(std::unique_ptr<char[]> mem) {
        if (free_.size() < max_free_) free_.push_back(std::move(mem));
    }

    std::size_t size_;
    std::size_t max_free_;
    std::vector<std::unique_ptr<char[]>> free_;
    std::unique_ptr<char[]> scratch_;
};

}  // namespace tether
