// Token buckets per client IP, local and in Redis; see rate_limiter.hpp.
#include "tether/limits/rate_limiter.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "tether/core/hash.hpp"
#include "tether/redis/client.hpp"

namespace tether::limits {

namespace {

// KEYS[1] = bucket, ARGV = rate (tokens/s), burst, ttl ms. Returns
// {1, 0} when a token was taken, {0, ms until one is back} otherwise.
constexpr std::string_view kTakeScript = R"(local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(v[1]) or burst
local ts = tonumber(v[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local allowed, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {allowed, wait})";

std::string number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}

std::chrono::milliseconds wait_for_token(double tokens, double rate) {
    const double ms = std::ceil((1.0 - tokens) * 1000.0 / std::max(rate, 1e-9));
    return std::chrono::milliseconds(static_cast<long long>(std::max(1.0, ms)));
}

}  // namespace

RateLimiter::RateLimiter(std::size_t max_entries, redis::Client* redis, std::string key_prefix)
    : per_shard_max_(std::max<std::size_t>(1, (max_entries + kShards - 1) / kShards)),
      redis_(redis),
      prefix_(std::move(key_prefix)) {}

void RateLimiter::make_room(Shard& s, const config::RateLimit& rate, Clock::time_point now) {
    if (s.map.size() < per_shard_max_) return;
    // A bucket idle long enough to be full again is the same as no bucket.
    const auto refill = std::chrono::duration<double>(rate.burst / rate.requests_per_second);
    std::erase_if(s.map, [&](const auto& kv) { return now - kv.second.last >= refill; });
    if (s.map.size() >= per_shard_max_) s.map.erase(s.map.begin());
}

RateDecision RateLimiter::take_local(std::string_view ip, const config::RateLimit& rate,
                                     Clock::time_point now) {
    Shard& s = shards_[mix64(std::hash<std::string_view>{}(ip)) % kShards];
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(ip);
    if (it == s.map.end()) {
        make_room(s, rate, now);
        it = s.map.emplace(std::string(ip), Bucket{rate.burst, now}).first;
    }
    Bucket& b = it->second;
    const double elapsed = std::chrono::duration<double>(now - b.last).count();
    b.tokens = std::min(rate.burst, b.tokens + std::max(0.0, elapsed) * rate.requests_per_second);
    b.last = now;
    RateDecision d;
    if (b.tokens >= 1.0) {
        b.tokens -= 1.0;
        return d;
    }
    d.allowed = false;
    d.retry_after = wait_for_token(b.tokens, rate.requests_per_second);
    return d;
}

Awaitable<RateDecision> RateLimiter::take(std::string ip, config::RateLimit rate) {
    bool failed = false;
    if (rate.shared && redis_ && redis_->up()) {
        const double refill_ms = rate.burst / rate.requests_per_second * 1000.0;
        std::vector<std::string> cmd{"EVAL",
                                     std::string(kTakeScript),
                                     "1",
                                     prefix_ + "rate:" + ip,
                                     number(rate.requests_per_second),
                                     number(rate.burst),
                                     std::to_string(static_cast<long long>(refill_ms) + 1000)};
        const redis::Result r = co_await redis_->async_command(std::move(cmd), use_awaitable);
        const auto& e = r.reply.elements;
        if (r.ok() && e.size() == 2 && e[0].kind == redis::Reply::Kind::integer &&
            e[1].kind == redis::Reply::Kind::integer) {
            RateDecision d;
            d.shared = true;
            d.allowed = e[0].integer == 1;
            if (!d.allowed) d.retry_after = std::chrono::milliseconds(std::max(1LL, e[1].integer));
            co_return d;
        }
        failed = true;
    } else if (rate.shared && redis_) {
        failed = true;  // configured but down or slow: local limits hold
    }
    RateDecision d = take_local(ip, rate, Clock::now());
    d.redis_failed = failed;
    co_return d;
}

std::size_t RateLimiter::size() const {
    std::size_t n = 0;
    for (const auto& s : shards_) {
        std::lock_guard lock(s.mutex);
        n += s.map.size();
    }
    return n;
}

}  // namespace tether::limits
