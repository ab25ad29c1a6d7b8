// stderr diagnostics; see log.hpp.
#include "tether/core/log.hpp"

#include <unistd.h>

#include <chrono>
#include <ctime>
#include <string>

namespace tether::log {

void write(Level level, std::string_view message) {
    static constexpr std::string_view kNames[] = {"debug", "info", "warn", "error"};
    const auto now = std::chrono::system_clock::now();
    const std::time_t t = std::chrono::system_clock::to_time_t(now);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    std::string line;
    line.reserve(message.size() + 48);
    line.append(stamp).append(" [").append(kNames[static_cast<int>(level)]).append("] ");
    line.append(message).push_back('\n');
    const char* p = line.data();
    std::size_t left = line.size();
    while (left > 0) {
        const ssize_t n = ::write(2, p, left);
        if (n <= 0) break;
        p += n;
        left -= static_cast<std::size_t>(n);
    }
}

}  // namespace tether::log
