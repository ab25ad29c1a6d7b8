// Unit parsing for config values; see units.hpp.
#include "tether/core/units.hpp"

#include <charconv>
#include <limits>

namespace tether {
namespace {

std::optional<std::uint64_t> leading_number(std::string_view text, std::string_view& rest) {
    std::uint64_t value = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || ptr == text.data()) return std::nullopt;
    rest = text.substr(static_cast<std::size_t>(ptr - text.data()));
    return value;
}

std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) {
    if (a != 0 && b > std::numeric_limits<std::int64_t>::max() / a) return std::nullopt;
    return a * b;
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
    std::string_view unit;
    auto n = leading_number(text, unit);
    if (!n) return std::nullopt;
    std::uint64_t scale = 0;
    if (unit == "ms") scale = 1;
    else if (unit == "s") scale = 1000;
    else if (unit == "m") scale = 60'000;
    else if (unit == "h") scale = 3'600'000;
    else if (unit == "d") scale = 86'400'000;
    else if (unit.empty() && *n == 0) scale = 1;
    else return std::nullopt;
    auto ms = checked_mul(*n, scale);
    if (!ms) return std::nullopt;
    return std::chrono::milliseconds(static_cast<std::int64_t>(*ms));
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
    std::string_view unit;
    auto n = leading_number(text, unit);
    if (!n) return std::nullopt;
    std::uint64_t scale = 1;
    if (unit == "k" || unit == "K") scale = 1024;
    else if (unit == "m" || unit == "M") scale = 1024 * 1024;
    else if (unit == "g" || unit == "G") scale = 1024ull * 1024 * 1024;
    else if (!unit.empty()) return std::nullopt;
    return checked_mul(*n, scale);
}

}  // namespace tether
