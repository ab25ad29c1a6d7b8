// Access log formatting and the writer thread; see access_log.hpp.
#include "tether/http/access_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <stdexcept>

namespace tether::http {

namespace {

constexpr std::size_t kFlushBytes = 64 * 1024;

// nginx escapes '"', '\' and bytes outside printable ASCII as \xHH.
void append_escaped(std::string& out, std::string_view s) {
    for (unsigned char c : s) {
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x7f) {
            char hex[5];
            std::snprintf(hex, sizeof hex, "\\x%02X", c);
            out.append(hex);
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
}

void append_json_string(std::string& out, std::string_view s) {
    out.push_back('"');
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(static_cast<char>(c));
        } else if (c < 0x20 || c >= 0x7f) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\u%04x", c);
            out.append(hex);
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
    out.push_back('"');
}

std::tm utc_now() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    return tm;
}

std::string_view or_dash(std::string_view s) { return s.empty() ? std::string_view("-") : s; }

void format_combined(const AccessEntry& e, std::string& out) {
    char when[40];
    const std::tm tm = utc_now();
    std::strftime(when, sizeof when, "[%d/%b/%Y:%H:%M:%S +0000]", &tm);
    append_escaped(out, or_dash(e.client_ip));
    out.append(" - - ").append(when).append(" \"");
    append_escaped(out, e.method);
    out.push_back(' ');
    append_escaped(out, e.target);
    out.append(e.version == 10 ? " HTTP/1.0\" " : " HTTP/1.1\" ");
    out.append(std::to_string(e.status)).push_back(' ');
    out.append(std::to_string(e.bytes_sent)).append(" \"");
    append_escaped(out, or_dash(e.referer));
    out.append("\" \"");
    append_escaped(out, or_dash(e.user_agent));
    out.append("\"\n");
}

void format_json(const AccessEntry& e, std::string& out) {
    char when[32];
    const std::tm tm = utc_now();
    std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char duration[32];
    std::snprintf(duration, sizeof duration, "%.6f", e.duration_s);
    out.append("{\"time\":\"").append(when).append("\",\"remote_addr\":");
    append_json_string(out, e.client_ip);
    out.append(",\"method\":");
    append_json_string(out, e.method);
    out.append(",\"uri\":");
    append_json_string(out, e.target);
    out.append(e.version == 10 ? ",\"protocol\":\"HTTP/1.0\"" : ",\"protocol\":\"HTTP/1.1\"");
    out.append(",\"status\":").append(std::to_string(e.status));
    out.append(",\"bytes_sent\":").append(std::to_string(e.bytes_sent));
    out.append(",\"referer\":");
    append_json_string(out, e.referer);
    out.append(",\"user_agent\":");
    append_json_string(out, e.user_agent);
    out.append(",\"upstream\":");
    append_json_string(out, e.upstream);
    out.append(",\"server\":");
    append_json_string(out, e.server);
    out.append(",\"request_id\":");
    append_json_string(out, e.request_id);
    out.append(",\"request_time\":").append(duration).append("}\n");
}

}  // namespace

void format_access_entry(const AccessEntry& e, config::LogFormat format, std::string& out) {
    if (format == config::LogFormat::json) format_json(e, out);
    else format_combined(e, out);
}

AccessLogWriter::AccessLogWriter(const config::AccessLog& cfg) : format_(cfg.format) {
    if (cfg.path == "off") return;
    if (cfg.path == "stdout") {
        fd_ = 1;
    } else if (cfg.path == "stderr") {
        fd_ = 2;
    } else {
        fd_ = ::open(cfg.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd_ < 0) throw std::runtime_error("cannot open access log '" + cfg.path + "'");
        own_fd_ = true;
    }
    thread_ = std::thread([this] { run(); });
}

AccessLogWriter::~AccessLogWriter() {
    {
        std::lock_guard lock(mutex_);
        done_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
    if (own_fd_) ::close(fd_);
}

void AccessLogWriter::submit(std::string batch) {
    {
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(batch));
    }
    cv_.notify_one();
}

void AccessLogWriter::run() {
    std::unique_lock lock(mutex_);
    for (;;) {
        cv_.wait(lock, [this] { return done_ || !queue_.empty(); });
        if (queue_.empty() && done_) return;
        std::string batch = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        const char* p = batch.data();
        std::size_t left = batch.size();
        while (left > 0) {
            const ssize_t n = ::write(fd_, p, left);
            if (n <= 0) break;  // a closed stdout must not stop the proxy
            p += n;
            left -= static_cast<std::size_t>(n);
        }
        lock.lock();
    }
}

void AccessLogBuffer::record(const AccessEntry& e) {
    if (!enabled()) return;
    format_access_entry(e, writer_->format(), pending_);
    if (pending_.size() >= kFlushBytes) flush();
}

void AccessLogBuffer::flush() {
    if (pending_.empty() || !writer_) return;
    std::string batch;
    batch.reserve(pending_.size());
    batch.swap(pending_);
    writer_->submit(std::move(batch));
}

}  // namespace tether::http
