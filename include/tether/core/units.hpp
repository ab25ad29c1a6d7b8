// Parsing of the configuration's units: durations ("500ms", "30s", "5m", "1h",
// "7d", bare "0") and sizes ("512", "16k", "1m", "1g"). Pure functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tether {

/// "250ms" -> 250ms. Units: ms, s, m, h, d. A bare "0" is zero. Anything else
/// (negative, missing unit, overflow) -> nullopt.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

/// "16k" -> 16384. Suffixes k, m, g (either case); a bare number is bytes.
std::optional<std::uint64_t> parse_size(std::string_view text);

}  // namespace tether
