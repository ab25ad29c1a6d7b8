// A pass over a YAML text with yaml-cpp's event parser (no nodes built) that
// bounds what the text can make yaml-cpp 0.7 and the loader do, before the
// loader builds the node tree with YAML::Load:
// - at most max_bytes of text (1 MiB);
// - no token the parser cannot consume: yaml-cpp 0.7 ends a document where a
//   line is indented less than the document's first line, and a ',' outside
//   [ ] or { } at such a point (or at a document's start) is never consumed:
//   YAML::LoadAll then returns one empty document after another and grows
//   without bound (tools/fuzz found ",\n" and the regression-*.yaml seeds);
//   a document that starts where the previous one started is that case;
// - collections nested at most max_depth levels (yaml-cpp's own guard allows
//   2000, deep enough to exhaust a small stack in sanitizer builds);
// - at most max_nodes nodes, an alias counting as every node it repeats (a
//   "billion laughs" file is refused, whatever later walks it; the tree
//   YAML::Load builds stays near 100 MB at most), and no alias
//   inside the node it names (yaml-cpp would build a cyclic tree).
// Syntax errors come back with yaml-cpp's position and message. The text is
// parsed once more by YAML::Load afterwards: twice a file of at most 1 MiB.
// Pure function; any thread.
#pragma once

#include <yaml-cpp/mark.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace tether::config {

struct YamlLimits {
    std::size_t max_bytes = std::size_t{1} << 20;
    std::size_t max_depth = 64;
    /// yaml-cpp takes ~500 bytes a node: a 1 MiB flat list ([1,1,...]) is
    /// ~520,000 nodes, 250 MB; a config of 25,000 servers ~75,000.
    std::size_t max_nodes = 250'000;
};

struct YamlProblem {
    YAML::Mark mark;      ///< 0-based; null_mark() when there is no position
    std::string message;  ///< "invalid YAML: ..." or a limit that was passed
};

/// The first problem of `yaml`, or nullopt when YAML::Load may be given it.
/// More than one document is a problem ("expected one YAML document, found N"
/// at the second one).
std::optional<YamlProblem> check_yaml(std::string_view yaml, const YamlLimits& limits = {});

}  // namespace tether::config
