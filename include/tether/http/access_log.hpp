// Access log (SPEC access_log): nginx's "combined" format or JSON lines.
// Workers format entries into their own AccessLogBuffer (no lock per
// request) and hand whole batches to the process's AccessLogWriter, whose
// thread does the write(2)s, so an I/O thread never blocks on a slow disk
// or pipe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "tether/config/config.hpp"

namespace tether::http {

struct AccessEntry {
    std::string_view client_ip;
    std::string_view method;
    std::string_view target;
    unsigned version = 11;
    int status = 0;
    std::uint64_t bytes_sent = 0;  ///< response body bytes sent to the client
    std::string_view referer;
    std::string_view user_agent;
    std::string_view upstream;
    std::string_view server;      ///< backend name ("" when none was used)
    std::string_view request_id;
    double duration_s = 0;
};

/// Appends one line for `e` in `format` to `out` (time = now, UTC).
void format_access_entry(const AccessEntry& e, config::LogFormat format, std::string& out);

class AccessLogWriter {
public:
    /// Opens `cfg.path` (stdout, stderr or a file in append mode); "off"
    /// makes enabled() false. Throws std::runtime_error if the file can't open.
    explicit AccessLogWriter(const config::AccessLog& cfg);
    ~AccessLogWriter();  // writes what is queued, then joins
    AccessLogWriter(const AccessLogWriter&) = delete;
    AccessLogWriter& operator=(const AccessLogWriter&) = delete;

    bool enabled() const { return fd_ >= 0; }
    config::LogFormat format() const { return format_; }
    /// Queues a batch of complete lines (called by workers, a few times a second).
    void submit(std::string batch);

private:
    void run();

    int fd_ = -1;
    bool own_fd_ = false;
    config::LogFormat format_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::string> queue_;
    bool done_ = false;
    std::thread thread_;
};

/// One per worker: formats into a local string, flushed to the writer when
/// it passes a size or on the worker's tick.
class AccessLogBuffer {
public:
    explicit AccessLogBuffer(AccessLogWriter* writer) : writer_(writer) {}
    bool enabled() const { return writer_ && writer_->enabled(); }
    void record(const AccessEntry& e);
    void flush();

private:
    AccessLogWriter* writer_;
    std::string pending_;
};

}  // namespace tether::http
