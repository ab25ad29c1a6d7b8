// Prometheus text writer and process metrics; see text_writer.hpp.
#include "tether/metrics/text_writer.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace tether::metrics {

void TextWriter::family(std::string_view name, std::string_view type, std::string_view help) {
    out_.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void TextWriter::labels(std::initializer_list<Label> ls, std::string_view extra_name,
                        std::string_view extra_value) {
    if (ls.size() == 0 && extra_name.empty()) return;
    out_.push_back('{');
    bool first = true;
    auto one = [&](std::string_view k, std::string_view v) {
        if (!first) out_.push_back(',');
        first = false;
        out_.append(k).append("=\"");
        for (char c : v) {
            if (c == '\\') out_.append("\\\\");
            else if (c == '"') out_.append("\\\"");
            else if (c == '\n') out_.append("\\n");
            else out_.push_back(c);
        }
        out_.push_back('"');
    };
    for (const auto& [k, v] : ls) one(k, v);
    if (!extra_name.empty()) one(extra_name, extra_value);
    out_.push_back('}');
}

void TextWriter::value(double v) {
    if (std::isinf(v)) {
        out_.append(v > 0 ? "+Inf" : "-Inf");
        return;
    }
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out_.append(buf, end);
}

void TextWriter::sample(std::string_view name, std::initializer_list<Label> ls, double v) {
    out_.append(name);
    labels(ls);
    out_.push_back(' ');
    value(v);
    out_.push_back('\n');
}

void TextWriter::histogram(std::string_view name, std::initializer_list<Label> ls,
                           std::span<const double> bounds, std::span<const std::uint64_t> counts,
                           double sum) {
    std::uint64_t cumulative = 0;
    const std::string bucket = std::string(name) + "_bucket";
    for (std::size_t i = 0; i < counts.size(); ++i) {
        cumulative += counts[i];
        char le[32] = "+Inf";
        if (i < bounds.size()) {
            // Fixed notation, as Prometheus' own clients write bounds ("0.0001", not "1e-04").
            auto [end, ec] = std::to_chars(le, le + sizeof le - 1, bounds[i],
                                           std::chars_format::fixed);
            *end = '\0';
        }
        out_.append(bucket);
        labels(ls, "le", le);
        out_.push_back(' ');
        value(static_cast<double>(cumulative));
        out_.push_back('\n');
    }
    sample(std::string(name) + "_sum", ls, sum);
    sample(std::string(name) + "_count", ls, static_cast<double>(cumulative));
}

namespace {

double boot_time() {
    std::ifstream in("/proc/stat");
    std::string key;
    double value = 0;
    while (in >> key) {
        if (key == "btime") {
            in >> value;
            return value;
        }
        in.ignore(1 << 16, '\n');
    }
    return 0;
}

}  // namespace

void write_process_metrics(TextWriter& w) {
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    std::ifstream stat_file("/proc/self/stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
    // Fields after the ")" that ends the command name: state is field 3.
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string f;
    double utime = 0, stime = 0, start = 0, vsize = 0, rss = 0;
    for (int i = 3; fields >> f; ++i) {
        if (i == 14) utime = std::stod(f);
        else if (i == 15) stime = std::stod(f);
        else if (i == 22) start = std::stod(f);
        else if (i == 23) vsize = std::stod(f);
        else if (i == 24) rss = std::stod(f);
    }
    std::size_t fds = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
        ++fds;
    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    w.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
    w.sample("process_cpu_seconds_total", {}, (utime + stime) / ticks);
    w.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    w.sample("process_resident_memory_bytes", {}, rss * page);
    w.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    w.sample("process_virtual_memory_bytes", {}, vsize);
    w.family("process_open_fds", "gauge", "Number of open file descriptors.");
    w.sample("process_open_fds", {}, static_cast<double>(fds));
    w.family("process_max_fds", "gauge", "Maximum number of open file descriptors.");
    w.sample("process_max_fds", {}, static_cast<double>(rl.rlim_cur));
    w.family("process_start_time_seconds", "gauge",
             "Start time of the process since unix epoch in seconds.");
    w.sample("process_start_time_seconds", {}, boot_time() + start / ticks);
}

}  // namespace tether::metrics
