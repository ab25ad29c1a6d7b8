// The bounded pre-pass over a config's YAML; see yaml_guard.hpp.
#include "yaml_guard.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/parser.h>

#include <exception>
#include <sstream>
#include <unordered_map>
#include <vector>

namespace tether::config {

namespace {

/// Thrown out of yaml-cpp's parser by the handler to stop at once.
struct Stop {
    YamlProblem problem;
};

class Guard final : public YAML::EventHandler {
public:
    Guard(std::string_view yaml, const YamlLimits& limits) : yaml_(yaml), limits_(limits) {}

    std::size_t documents() const { return documents_; }
    const YAML::Mark& second_document() const { return second_; }

    void OnDocumentStart(const YAML::Mark& mark) override {
        // A document that consumed nothing: yaml-cpp would start this one
        // again forever.
        if (documents_ > 0 && mark.pos == last_start_.pos) throw Stop{{mark, stuck_at(mark)}};
        if (documents_ == 1) second_ = mark;
        last_start_ = mark;
        ++documents_;
    }
    void OnDocumentEnd() override {}

    void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { leaf(mark, anchor); }
    void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  const std::string&) override {
        leaf(mark, anchor);
    }
    void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
        const auto it = anchored_.find(anchor);
        if (it == anchored_.end())  // registered but not closed: an enclosing node
            throw Stop{{mark, "invalid YAML: an alias inside the node its anchor names"}};
        count(mark, it->second);
    }

    void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                         YAML::EmitterStyle::value) override {
        open(mark, anchor);
    }
    void OnSequenceEnd() override { close(); }
    void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                    YAML::EmitterStyle::value) override {
        open(mark, anchor);
    }
    void OnMapEnd() override { close(); }

private:
    struct Open {
        YAML::anchor_t anchor;
        std::size_t nodes_before;
    };

    void count(const YAML::Mark& mark, std::size_t n) {
        nodes_ += n;
        if (nodes_ > limits_.max_nodes)
            throw Stop{{mark, "YAML with more than " + std::to_string(limits_.max_nodes) +
                                  " nodes (an alias counts as all the nodes it repeats)"}};
    }
    void leaf(const YAML::Mark& mark, YAML::anchor_t anchor) {
        count(mark, 1);
        if (anchor != YAML::NullAnchor) anchored_[anchor] = 1;
    }
    void open(const YAML::Mark& mark, YAML::anchor_t anchor) {
        if (open_.size() >= limits_.max_depth)
            throw Stop{{mark, "YAML nested deeper than " + std::to_string(limits_.max_depth) +
                                  " levels"}};
        open_.push_back({anchor, nodes_});
        count(mark, 1);
    }
    void close() {
        if (open_.empty()) return;
        const Open o = open_.back();
        open_.pop_back();
        if (o.anchor != YAML::NullAnchor) anchored_[o.anchor] = nodes_ - o.nodes_before;
    }

    std::string stuck_at(const YAML::Mark& mark) const {
        const auto pos = static_cast<std::size_t>(mark.pos);
        if (pos < yaml_.size() && yaml_[pos] == ',') return "invalid YAML: ',' outside [ ] or { }";
        return "invalid YAML: unexpected token";
    }

    std::string_view yaml_;
    const YamlLimits& limits_;
    std::vector<Open> open_;
    std::unordered_map<YAML::anchor_t, std::size_t> anchored_;  ///< closed node -> its size
    std::size_t nodes_ = 0;
    std::size_t documents_ = 0;
    YAML::Mark last_start_, second_;
};

std::string size_text(std::size_t bytes) {
    if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
    if (bytes >= (1u << 10) && bytes % (1u << 10) == 0) return std::to_string(bytes >> 10) + " KiB";
    return std::to_string(bytes) + " bytes";
}

/// Whether the document starting at `pos` follows a '---' or '...' marker
/// (comments and blank lines between them aside).
bool explicitly_started(std::string_view yaml, std::size_t pos) {
    auto marker = [](std::string_view line) {
        return line.size() >= 3 && (line.substr(0, 3) == "---" || line.substr(0, 3) == "...");
    };
    if (pos > yaml.size() || marker(yaml.substr(pos, 3))) return true;
    std::size_t end = yaml.rfind('\n', pos == 0 ? 0 : pos - 1);
    if (end == std::string_view::npos) return marker(yaml.substr(0, pos));
    if (marker(yaml.substr(end + 1, pos - end - 1))) return true;  // "--- value"
    while (end != std::string_view::npos && end > 0) {
        const std::size_t start = yaml.rfind('\n', end - 1);
        const std::size_t from = start == std::string_view::npos ? 0 : start + 1;
        std::string_view line = yaml.substr(from, end - from);
        const auto text = line.find_first_not_of(" \t\r");
        if (text != std::string_view::npos && line[text] != '#') return marker(line);
        if (start == std::string_view::npos) break;
        end = start;
    }
    return false;
}

}  // namespace

std::optional<YamlProblem> check_yaml(std::string_view yaml, const YamlLimits& limits) {
    if (yaml.size() > limits.max_bytes)
        return YamlProblem{YAML::Mark::null_mark(), "larger than " + size_text(limits.max_bytes) +
                                                        " (" + std::to_string(yaml.size()) +
                                                        " bytes)"};
    std::istringstream in{std::string(yaml)};
    Guard guard(yaml, limits);
    try {
        YAML::Parser parser(in);
        while (parser.HandleNextDocument(guard)) {
        }
    } catch (const Stop& stop) {
        return stop.problem;
    } catch (const YAML::Exception& e) {  // syntax errors, with their position
        return YamlProblem{e.mark, "invalid YAML: " + e.msg};
    } catch (const std::exception& e) {  // bad_alloc: the loader throws nothing
        return YamlProblem{YAML::Mark::null_mark(), std::string("cannot load: ") + e.what()};
    }
    if (guard.documents() > 1) {
        const YAML::Mark& second = guard.second_document();
        std::string message = "expected one YAML document, found " +
                              std::to_string(guard.documents());
        if (!explicitly_started(yaml, static_cast<std::size_t>(second.pos)))
            message += " (yaml-cpp ends a document at a line indented less than its first line)";
        return YamlProblem{second, std::move(message)};
    }
    return std::nullopt;
}

}  // namespace tether::config
