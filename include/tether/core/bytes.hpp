// Small byte-string helpers for the request path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tether::core {

/// memcmp(a, b, n) == 0, written out for the short strings of the request
/// path (a sid, a path prefix): a library call costs more than the few wide
/// compares they take. Whole words, the last one overlapping the one before;
/// no byte outside [a, a + n) or [b, b + n) is read.
[[gnu::always_inline]] inline bool same_bytes(const char* a, const char* b, std::size_t n) {
    const auto word = [](const char* p) {
        std::uint64_t w;
        std::memcpy(&w, p, sizeof w);
        return w;
    };
    const auto half = [](const char* p) {
        std::uint32_t w;
        std::memcpy(&w, p, sizeof w);
        return w;
    };
    if (n >= 8) {
        for (std::size_t i = 0; i + 8 < n; i += 8)
            if (word(a + i) != word(b + i)) return false;
        return word(a + n - 8) == word(b + n - 8);
    }
    if (n >= 4) return half(a) == half(b) && half(a + n - 4) == half(b + n - 4);
    for (std::size_t i = 0; i < n; ++i)
        if (a[i] != b[i]) return false;
    return true;
}

}  // namespace tether::core
