// stable_hash and Rng; see hash.hpp for the algorithms and their sources.
#include "tether/core/hash.hpp"

namespace tether {

__extension__ using Uint128 = unsigned __int128;

std::uint64_t stable_hash(std::string_view bytes, std::uint64_t seed) {
    std::uint64_t h = 0xcbf29ce484222325ull ^ mix64(seed);
    for (unsigned char c : bytes) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return mix64(h ^ bytes.size());
}

Rng::Rng(std::uint64_t seed) {
    for (auto& word : s_) {
        seed = mix64(seed);
        word = seed;
    }
}

std::uint64_t Rng::next() {
    auto rotl = [](std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
}

std::uint64_t Rng::below(std::uint64_t bound) {
    return static_cast<std::uint64_t>((static_cast<Uint128>(next()) * bound) >> 64);
}

}  // namespace tether
