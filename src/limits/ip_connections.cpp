// Connections per client IP; see ip_connections.hpp.
#include "tether/limits/ip_connections.hpp"

#include "tether/core/hash.hpp"

namespace tether::limits {

IpConnections::Shard& IpConnections::shard_for(std::string_view ip) {
    return shards_[mix64(std::hash<std::string_view>{}(ip)) % kShards];
}

bool IpConnections::try_add(std::string_view ip, int max) {
    Shard& s = shard_for(ip);
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(ip);
    if (it == s.map.end()) {
        s.map.emplace(std::string(ip), 1);
        return true;
    }
    if (it->second >= max) return false;
    ++it->second;
    return true;
}

void IpConnections::remove(std::string_view ip) {
    Shard& s = shard_for(ip);
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(ip);
    if (it == s.map.end()) return;
    if (--it->second <= 0) s.map.erase(it);
}

int IpConnections::count(std::string_view ip) const {
    const Shard& s = shards_[mix64(std::hash<std::string_view>{}(ip)) % kShards];
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(ip);
    return it == s.map.end() ? 0 : it->second;
}

}  // namespace tether::limits
