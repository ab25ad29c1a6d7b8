// Shared affinity table in Redis; see redis_store.hpp.
#include "tether/affinity/redis_store.hpp"

#include <random>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "tether/core/log.hpp"

namespace tether::affinity {

namespace asio = boost::asio;
using redis::Reply;

namespace {

// KEYS[1] = key, ARGV[1] = server, ARGV[2] = ttl ms. Returns the holder.
constexpr std::string_view kClaim = R"(local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1])";

// KEYS[1] = key, ARGV[1] = previous, ARGV[2] = server, ARGV[3] = ttl ms.
// Someone else's live rebinding (neither previous nor ours) wins.
constexpr std::string_view kReplace = R"(local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] and v ~= ARGV[2] then return v end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return ARGV[2])";

// KEYS[1] = key, ARGV[1] = previous.
constexpr std::string_view kRemove = R"(if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0)";

// KEYS[1] = key, ARGV[1] = server, ARGV[2] = ttl ms.
constexpr std::string_view kRefresh = R"(if redis.call('PEXPIRE', KEYS[1], ARGV[2]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX')
end
return 1)";

std::string random_id() {
    std::random_device rd;
    std::uint64_t v = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (int i = 0; i < 16; ++i, v >>= 4) out.push_back(kHex[v & 15]);
    return out;
}

std::string ms(std::chrono::milliseconds d) { return std::to_string(std::max<long long>(1, d.count())); }

/// Splits "a\nb\nc" into at most N fields.
template <std::size_t N>
std::size_t split(std::string_view text, std::array<std::string_view, N>& out) {
    std::size_t n = 0;
    while (n < N) {
        const auto nl = text.find('\n');
        out[n++] = text.substr(0, nl);
        if (nl == std::string_view::npos) break;
        text.remove_prefix(nl + 1);
    }
    return n;
}

std::optional<std::string> holder_of(const redis::Result& r) {
    if (!r.ok() || r.reply.kind != Reply::Kind::string) return std::nullopt;
    return r.reply.str;
}

}  // namespace

RedisStore::RedisStore(LocalTable& local, std::string key_prefix)
    : local_(local), prefix_(std::move(key_prefix)), replica_(random_id()) {}

Awaitable<RedisStore::Fetched> RedisStore::fetch(const std::string& key) {
    Fetched out;
    if (!client_ || !client_->up()) {
        out.failed = true;
        co_return out;
    }
    // (GCC 12 cannot take a braced list inside co_await: name the vector.)
    std::vector<std::string> cmd{"GET", prefix_ + key};
    const redis::Result r = co_await client_->async_command(std::move(cmd), use_awaitable);
    if (!r.ok()) out.failed = true;
    else if (r.reply.kind == Reply::Kind::string) out.server = r.reply.str;
    co_return out;
}

Awaitable<std::optional<std::string>> RedisStore::claim(const std::string& key,
                                                        const std::string& server,
                                                        std::chrono::milliseconds ttl) {
    if (!client_ || !client_->up()) co_return std::nullopt;
    std::vector<std::string> cmd{"EVAL", std::string(kClaim), "1", prefix_ + key, server, ms(ttl)};
    const redis::Result r = co_await client_->async_command(std::move(cmd), use_awaitable);
    co_return holder_of(r);
}

Awaitable<std::optional<std::string>> RedisStore::replace(const std::string& key,
                                                          const std::string& previous,
                                                          const std::string& server,
                                                          std::chrono::milliseconds ttl) {
    if (!client_ || !client_->up()) co_return std::nullopt;
    std::vector<std::string> cmd{"EVAL", std::string(kReplace), "1", prefix_ + key,
                                 previous,      server,                ms(ttl)};
    const redis::Result r = co_await client_->async_command(std::move(cmd), use_awaitable);
    auto holder = holder_of(r);
    if (holder && *holder == server) publish("set\n" + key + "\n" + server + "\n" + ms(ttl));
    co_return holder;
}

void RedisStore::refresh(const std::string& key, const std::string& server,
                         std::chrono::milliseconds ttl) {
    if (!client_ || !client_->up()) return;
    client_->send({"EVAL", std::string(kRefresh), "1", prefix_ + key, server, ms(ttl)});
}

void RedisStore::remove(const std::string& key, const std::string& previous) {
    if (!client_ || !client_->up()) return;
    client_->send({"EVAL", std::string(kRemove), "1", prefix_ + key, previous});
    publish("del\n" + key);
}

void RedisStore::publish_drain(std::string_view upstream, std::string_view server, bool drain) {
    if (!client_) return;
    std::string field = std::string(upstream) + "\n" + std::string(server);
    if (drain) client_->send({"HSET", prefix_ + "drains", field, "1"});
    else client_->send({"HDEL", prefix_ + "drains", field});
    publish("drain\n" + field + (drain ? "\n1" : "\n0"));
}

void RedisStore::publish(std::string message) {
    client_->send({"PUBLISH", channel(), replica_ + "\n" + message});
}

void RedisStore::on_event(std::string_view payload) {
    std::array<std::string_view, 5> f{};
    const std::size_t n = split(payload, f);
    if (n < 3 || f[0] == replica_) return;  // our own message, or garbage
    if (f[1] == "del") {
        local_.erase(f[2]);
    } else if (f[1] == "set" && n == 5) {
        long long ttl = 0;
        for (char c : f[4]) ttl = c >= '0' && c <= '9' ? ttl * 10 + (c - '0') : ttl;
        local_.put(f[2], f[3], Clock::now(), std::chrono::milliseconds(ttl));
    } else if (f[1] == "drain" && n == 5 && on_drain_) {
        on_drain_(f[2], f[3], f[4] == "1");
    }
}

void RedisStore::on_ready(bool) {
    if (!client_) return;
    // Drains other replicas made while this one was away.
    client_->async_command(
        {"HGETALL", prefix_ + "drains"},
        asio::bind_executor(client_->executor(), [this](redis::Result r) {
            if (!r.ok() || r.reply.kind != Reply::Kind::array || !on_drain_) return;
            for (std::size_t i = 0; i + 1 < r.reply.elements.size(); i += 2) {
                const std::string& field = r.reply.elements[i].str;
                const auto nl = field.find('\n');
                if (nl == std::string::npos) continue;
                on_drain_(std::string_view(field).substr(0, nl),
                          std::string_view(field).substr(nl + 1), true);
            }
        }));
    write_back(0, ++write_back_gen_);
}

// Writes the live local bindings of one shard with SET NX, then (after a
// PING that says they were all taken) the next shard: a paced pipeline.
void RedisStore::write_back(std::size_t shard, std::uint64_t generation) {
    if (generation != write_back_gen_) return;  // a newer one (re)started
    if (shard == 0) written_back_ = 0;
    if (shard >= LocalTable::kShards) {
        if (written_back_ > 0)
            log::info("redis: wrote back " + std::to_string(written_back_) + " local binding(s)");
        return;
    }
    if (!client_->up()) return;
    const auto batch = local_.bindings(shard, Clock::now());
    for (const auto& b : batch)
        client_->send({"SET", prefix_ + b.key, b.server, "PX", ms(b.left), "NX"});
    written_back_ += batch.size();
    client_->async_command({"PING"}, asio::bind_executor(client_->executor(),
                                                         [this, shard, generation](redis::Result) {
                                                             write_back(shard + 1, generation);
                                                         }));
}

}  // namespace tether::affinity
