// Deterministic hashing and a small fast RNG.
//
// stable_hash is a fixed-seed 64-bit hash (FNV-1a over the bytes, then the
// SplitMix64 finaliser to spread the bits): the same input gives the same
// value in every process and on every machine, which is what lets two
// replicas compute the same consistent-hash ring (ENGINEERING.md
// "Deterministic hashing"). Not for adversarial inputs in hash tables.
//
// Rng is xoshiro256** (Blackman & Vigna, 2018), seeded through SplitMix64;
// one per worker, never shared between threads.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

namespace tether {

/// SplitMix64 finaliser: a bijective 64-bit mix.
constexpr std::uint64_t mix64(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/// Fixed-seed hash of `bytes`; `seed` selects an independent hash family.
std::uint64_t stable_hash(std::string_view bytes, std::uint64_t seed = 0);

class Rng {
public:
    explicit Rng(std::uint64_t seed);
    std::uint64_t next();
    /// Uniform in [0, bound) (Lemire's multiply-shift; bound > 0).
    std::uint64_t below(std::uint64_t bound);

private:
    std::uint64_t s_[4];
};

/// Transparent hash for unordered maps keyed by std::string and looked up by
/// std::string_view (with std::equal_to<>): no key copy per lookup.
struct StringViewHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

}  // namespace tether
