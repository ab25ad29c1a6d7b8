// Prometheus text exposition format 0.0.4, written by hand (prometheus-cpp is
// not packaged in Debian 12): one HELP and TYPE line per family, then its
// samples, label values escaped (\\, \", \n). Checked by `promtool check
// metrics` in the tests. Not thread-safe; one writer per scrape.
#pragma once

#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace tether::metrics {

using Label = std::pair<std::string_view, std::string_view>;

class TextWriter {
public:
    /// Starts a family: `type` is counter, gauge or histogram.
    void family(std::string_view name, std::string_view type, std::string_view help);
    void sample(std::string_view name, std::initializer_list<Label> labels, double value);
    /// A histogram's _bucket/_sum/_count samples; `counts` are per bucket
    /// (not cumulative), the last one being +Inf.
    void histogram(std::string_view name, std::initializer_list<Label> labels,
                   std::span<const double> bounds, std::span<const std::uint64_t> counts,
                   double sum);
    const std::string& text() const { return out_; }

private:
    void labels(std::initializer_list<Label> ls, std::string_view extra_name = {},
                std::string_view extra_value = {});
    void value(double v);
    std::string out_;
};

/// Appends process_* metrics read from /proc/self (cpu, memory, fds, start).
void write_process_metrics(TextWriter& w);

}  // namespace tether::metrics
