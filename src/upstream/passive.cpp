// Passive failure accounting; see passive.hpp.
#include "tether/upstream/passive.hpp"

namespace tether::upstream {

bool PassiveHealth::record_failure(Clock::time_point now, int max_fails,
                                   std::chrono::milliseconds fail_timeout) {
    if (max_fails <= 0) return false;
    failures_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(mutex_);
    if (out(now)) return false;  // requests that were in flight when it went out
    if (fails_ == 0 || now - window_start_ >= fail_timeout) {
        fails_ = 0;
        window_start_ = now;
    }
    ++fails_;
    pending_.store(true, std::memory_order_relaxed);
    if (!probation_ && fails_ < max_fails) return false;
    fails_ = 0;
    probation_ = true;
    out_until_.store((now + fail_timeout).time_since_epoch().count(), std::memory_order_relaxed);
    trips_.fetch_add(1, std::memory_order_relaxed);
    return true;
}

void PassiveHealth::clear() {
    std::lock_guard lock(mutex_);
    fails_ = 0;
    probation_ = false;
    out_until_.store(0, std::memory_order_relaxed);
    pending_.store(false, std::memory_order_relaxed);
}

}  // namespace tether::upstream
