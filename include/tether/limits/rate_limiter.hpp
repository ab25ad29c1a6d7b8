// Request rate limits per client IP (`limits.rate`): a token bucket of
// `burst` tokens refilled at `requests_per_second`; a request takes one
// token or is refused (429 with Retry-After).
//
// Local buckets live in this process (sharded, one mutex held for one map
// operation, bounded by max_entries: a full shard drops its idlest buckets).
// With `shared: true` and Redis configured, the bucket of an IP lives in
// Redis instead ("{key_prefix}rate:{ip}", one Lua script per request, clock
// from Redis' TIME so replicas agree), so all replicas together hold the
// rate; when Redis is slow or down the local bucket decides (each replica
// then allows the rate on its own).
// Threading: take() runs on a worker coroutine; everything is thread-safe.
#pragma once

#include <array>
#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "tether/core/executor.hpp"
#include "tether/core/hash.hpp"

#include "tether/config/config.hpp"
#include "tether/core/connection_registry.hpp"

namespace tether::redis {
class Client;
}

namespace tether::limits {

struct RateDecision {
    bool allowed = true;
    std::chrono::milliseconds retry_after{0};  ///< when refused: until one token is back
    bool shared = false;                       ///< decided by the bucket in Redis
    bool redis_failed = false;                 ///< Redis was asked and did not answer in time
};

class RateLimiter {
public:
    static constexpr std::size_t kShards = 32;

    /// `redis` may be null (local buckets only).
    RateLimiter(std::size_t max_entries, redis::Client* redis, std::string key_prefix);

    /// Takes one token for `ip` under `rate`.
    Awaitable<RateDecision> take(std::string ip, config::RateLimit rate);
    /// False when take() would only use the local bucket (not shared, or no
    /// Redis): the caller may call take_local() directly, without a coroutine.
    bool may_use_redis(const config::RateLimit& rate) const { return rate.shared && redis_; }
    /// The local bucket alone (also the fallback of take()).
    RateDecision take_local(std::string_view ip, const config::RateLimit& rate,
                            Clock::time_point now);
    std::size_t size() const;

private:
    struct Bucket {
        double tokens = 0;
        Clock::time_point last{};
    };
    struct Shard {
        mutable std::mutex mutex;
        std::unordered_map<std::string, Bucket, StringViewHash, std::equal_to<>> map;
    };
    void make_room(Shard& s, const config::RateLimit& rate, Clock::time_point now);

    std::size_t per_shard_max_;
    std::array<Shard, kShards> shards_;
    redis::Client* redis_;
    std::string prefix_;
};

}  // namespace tether::limits
