// Sharded LRU+TTL affinity table; see local_table.hpp.
#include "tether/affinity/local_table.hpp"

#include "tether/core/hash.hpp"

namespace tether::affinity {

LocalTable::LocalTable(std::size_t max_entries)
    : per_shard_max_(std::max<std::size_t>(1, (max_entries + kShards - 1) / kShards)) {}

LocalTable::Map::iterator LocalTable::erase_locked(Shard& s, Map::iterator it) {
    ++s.version;
    s.lru.erase(it->second.lru);
    return s.map.erase(it);
}

void LocalTable::insert_locked(Shard& s, std::string_view key, std::string_view server,
                               Clock::time_point now, Clock::time_point expires) {
    while (s.map.size() >= per_shard_max_ && !s.lru.empty()) {
        ++s.version;
        s.map.erase(s.lru.back());
        s.lru.pop_back();
    }
    s.lru.emplace_front(key);
    s.map.emplace(std::string(key), Entry{std::string(server), expires, now, s.lru.begin()});
}

std::optional<std::string> LocalTable::get(std::string_view key, Clock::time_point now,
                                           std::chrono::milliseconds ttl) {
    bool unused = false;
    return get(key, now, ttl, Clock::duration::max(), unused);
}

std::optional<std::string> LocalTable::get(std::string_view key, Clock::time_point now,
                                           std::chrono::milliseconds ttl,
                                           Clock::duration sync_every, bool& sync_due) {
    const Hashed k = hashed(key);
    Shard& s = shard_for(k);
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(k);
    if (it == s.map.end()) return std::nullopt;
    if (it->second.expires <= now) {
        erase_locked(s, it);
        return std::nullopt;
    }
    it->second.expires = now + ttl;
    if (sync_every != Clock::duration::max() && now - it->second.synced >= sync_every) {
        sync_due = true;
        it->second.synced = now;
    }
    s.lru.splice(s.lru.begin(), s.lru, it->second.lru);
    return it->second.server;
}

// Inlined into find() and refind() (a call of its own was ~15 instructions
// of a hit's ~100).
[[gnu::always_inline]] inline LocalTable::Found LocalTable::hit_locked(Shard& s, Entry& e,
                                                                      Clock::time_point now,
                                                                      std::chrono::milliseconds ttl,
                                                                      Clock::duration sync_every,
                                                                      const Names& names) {
    Found out;
    out.bound = true;
    e.expires = now + ttl;
    if (sync_every != Clock::duration::max() && now - e.synced >= sync_every) {
        out.sync_due = true;
        e.synced = now;
    }
    s.lru.splice(s.lru.begin(), s.lru, e.lru);
    if (names.generation == 0 || e.names_generation != names.generation) {
        const auto n = names.index->find(e.server);
        e.names_index = n == names.index->end() ? kNoIndex : n->second;
        e.names_generation = names.generation;
    }
    out.index = e.names_index;
    return out;
}

LocalTable::Found LocalTable::find(std::string_view key, Clock::time_point now,
                                   std::chrono::milliseconds ttl, Clock::duration sync_every,
                                   const Names& names, Handle* where) {
    const Hashed k = hashed(key);
    Shard& s = shard_for(k);
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(k);
    if (it == s.map.end()) return {};
    if (it->second.expires <= now) {
        erase_locked(s, it);
        return {};
    }
    if (where) *where = {&it->second, s.version, static_cast<std::size_t>(&s - shards_.data())};
    return hit_locked(s, it->second, now, ttl, sync_every, names);
}

LocalTable::Found LocalTable::refind(const Handle& where, Clock::time_point now,
                                     std::chrono::milliseconds ttl, Clock::duration sync_every,
                                     const Names& names) {
    if (!where.entry || where.shard >= kShards) return {};
    Shard& s = shards_[where.shard];
    std::lock_guard lock(s.mutex);
    if (s.version != where.version) return {};  // the entry may be gone
    // Still in the map: nothing of the shard was erased since find() saw it.
    Entry& e = *const_cast<Entry*>(static_cast<const Entry*>(where.entry));
    if (e.expires <= now) return {};  // find() by key erases it
    return hit_locked(s, e, now, ttl, sync_every, names);
}

bool LocalTable::contains(std::string_view key, Clock::time_point now) const {
    const Hashed k = hashed(key);
    const Shard& s = shard_for(k);
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(k);
    return it != s.map.end() && it->second.expires > now;
}

std::vector<LocalTable::Binding> LocalTable::bindings(std::size_t shard,
                                                      Clock::time_point now) const {
    std::vector<Binding> out;
    if (shard >= kShards) return out;
    const Shard& s = shards_[shard];
    std::lock_guard lock(s.mutex);
    out.reserve(s.map.size());
    for (const auto& [k, e] : s.map)
        if (e.expires > now)
            out.push_back({k, e.server,
                           std::chrono::ceil<std::chrono::milliseconds>(e.expires - now)});
    return out;
}

std::string LocalTable::put_if_absent(std::string_view key, std::string_view server,
                                      Clock::time_point now, std::chrono::milliseconds ttl) {
    const Hashed k = hashed(key);
    Shard& s = shard_for(k);
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(k);
    if (it != s.map.end() && it->second.expires > now) return it->second.server;
    if (it != s.map.end()) erase_locked(s, it);
    insert_locked(s, key, server, now, now + ttl);
    return std::string(server);
}

void LocalTable::put(std::string_view key, std::string_view server, Clock::time_point now,
                     std::chrono::milliseconds ttl) {
    const Hashed k = hashed(key);
    Shard& s = shard_for(k);
    std::lock_guard lock(s.mutex);
    if (auto it = s.map.find(k); it != s.map.end()) {
        it->second.server.assign(server);
        it->second.names_generation = 0;
        it->second.expires = now + ttl;
        it->second.synced = now;
        s.lru.splice(s.lru.begin(), s.lru, it->second.lru);
        return;
    }
    insert_locked(s, key, server, now, now + ttl);
}

void LocalTable::erase(std::string_view key) {
    const Hashed k = hashed(key);
    Shard& s = shard_for(k);
    std::lock_guard lock(s.mutex);
    if (auto it = s.map.find(k); it != s.map.end()) erase_locked(s, it);
}

std::size_t LocalTable::erase_server(std::string_view prefix, std::string_view server) {
    std::size_t n = 0;
    for (auto& s : shards_) {
        std::lock_guard lock(s.mutex);
        for (auto it = s.map.begin(); it != s.map.end();) {
            if (it->first.starts_with(prefix) && it->second.server == server) {
                it = erase_locked(s, it);
                ++n;
            } else {
                ++it;
            }
        }
    }
    return n;
}

std::size_t LocalTable::size() const {
    std::size_t n = 0;
    for (const auto& s : shards_) {
        std::lock_guard lock(s.mutex);
        n += s.map.size();
    }
    return n;
}

std::size_t LocalTable::count_prefix(std::string_view prefix) const {
    std::size_t n = 0;
    for (const auto& s : shards_) {
        std::lock_guard lock(s.mutex);
        for (const auto& [k, e] : s.map) n += k.starts_with(prefix);
    }
    return n;
}

}  // namespace tether::affinity
