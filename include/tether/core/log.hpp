// Diagnostic log to stderr (not the access log). One line per call, written
// with a single write(2) so lines from several threads do not interleave.
// For rare events only (start, stop, errors): never per request.
#pragma once

#include <string_view>

namespace tether::log {

enum class Level { debug, info, warn, error };

void write(Level level, std::string_view message);
inline void info(std::string_view m) { write(Level::info, m); }
inline void warn(std::string_view m) { write(Level::warn, m); }
inline void error(std::string_view m) { write(Level::error, m); }

}  // namespace tether::log
