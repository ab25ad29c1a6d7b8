// Rise/fall verdicts; see rise_fall.hpp.
#include "tether/health/rise_fall.hpp"

namespace tether::health {

const char* to_string(HealthResult r) {
    switch (r) {
        case HealthResult::ok: return "ok";
        case HealthResult::bad_status: return "bad_status";
        case HealthResult::timeout: return "timeout";
        case HealthResult::error: return "error";
    }
    return "error";
}

bool status_expected(int status, std::span<const config::StatusRange> ranges) {
    for (const auto& r : ranges)
        if (status >= r.lo && status <= r.hi) return true;
    return false;
}

bool RiseFall::record(bool ok) {
    if (ok == up_) {  // confirms the verdict: any run towards the other one ends
        run_ = 0;
        return false;
    }
    if (++run_ < (up_ ? fall_ : rise_)) return false;
    up_ = !up_;
    run_ = 0;
    return true;
}

}  // namespace tether::health
