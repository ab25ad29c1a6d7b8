// What the loader refuses before yaml-cpp builds a tree (src/config/yaml_guard.hpp): files
// over 1 MiB, tokens yaml-cpp 0.7 never consumes (it then grows without bound), nesting
// deeper than 64, more than a million nodes counting aliases, aliases inside their own
// anchor. Each is refused quickly with FILE[:LINE:COL]: message, through the public API
// that `tether -t`, start-up and SIGHUP use.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tether/config/loader.hpp"

namespace tether::config {
namespace {

namespace fs = std::filesystem;

/// tools/fuzz/corpus/config_loader/regression-memory-blowup.yaml, found by
/// fuzz_config_loader: YAML::LoadAll grew by tens of GB a minute on it. yaml-cpp ends
/// the first document at line 3 (indented less than line 2) and then never consumes the
/// ',' of line 5.
constexpr std::string_view kMemoryBlowup =
    "# tether demo configukeepali one HTTP listener ineft out takes the defame: s2\n"
    "        address: 127.0.0.1:3002\n"
    "      - name: s3\n"
    "     O   address: 127.0. . mo b$ackendr\x92"
    "\x9e"
    "m `de\n"
    "  , addre in the combdmin:\n"
    "  address: 127.0.0.1:9901\n"
    "\n"
    "# The backend pool. No affinity: every request is placed by round robin.\n"
    "upstreams:\n"
    "  demo:\n"
    "    ccess_log:\n"
    "  h: stdout\n"
    "  format: combined\n";

constexpr std::string_view kMinimal = R"(listen:
  - address: 0.0.0.0:8080
    upstream: app
upstreams:
  app:
    servers:
      - address: 127.0.0.1:3001
)";

std::vector<std::string> errors(std::string_view yaml) {
    LoadResult r = load_config_text(yaml, "t.yaml", "/nonexistent-dir");
    EXPECT_EQ(r.config.has_value(), r.errors.empty());
    std::vector<std::string> out;
    for (const Diagnostic& d : r.errors) out.push_back(d.text());
    return out;
}

std::vector<std::string> one(std::string text) { return {std::move(text)}; }

TEST(YamlGuard, MemoryBlowupReproducerIsRefusedAtTheComma) {
    EXPECT_EQ(errors(kMemoryBlowup), one("t.yaml:5:3: invalid YAML: ',' outside [ ] or { }"));
}

// Every place where yaml-cpp 0.7 starts a document on a ',' and never consumes it.
TEST(YamlGuard, CommaWhereADocumentWouldStartIsRefused) {
    EXPECT_EQ(errors(",\n"), one("t.yaml:1:1: invalid YAML: ',' outside [ ] or { }"));
    EXPECT_EQ(errors("# c\n  ,\n"), one("t.yaml:2:3: invalid YAML: ',' outside [ ] or { }"));
    EXPECT_EQ(errors("a: 1\n---\n,\n"), one("t.yaml:3:1: invalid YAML: ',' outside [ ] or { }"));
    EXPECT_EQ(errors("--- ,\n"), one("t.yaml:1:5: invalid YAML: ',' outside [ ] or { }"));
    EXPECT_EQ(errors("%YAML 1.2\n---\n, c:\n"),
              one("t.yaml:3:1: invalid YAML: ',' outside [ ] or { }"));
    EXPECT_EQ(errors("  a: 1\n,\n"), one("t.yaml:2:1: invalid YAML: ',' outside [ ] or { }"));
    EXPECT_EQ(errors("a: 1\n...\n,\n"), one("t.yaml:3:1: invalid YAML: ',' outside [ ] or { }"));
    EXPECT_EQ(errors("\xEF\xBB\xBF,\n").size(), 1u);  // after a UTF-8 byte order mark
    // A ',' yaml-cpp consumes is left to it: a syntax error, or text.
    EXPECT_EQ(errors("a: 1\n,\n c:\n"), one("t.yaml:2:1: invalid YAML: end of map not found"));
    for (std::string_view yaml : {"x: |\n  ,\n", "x: [a, ,]\n"}) {  // unknown key, 2 missing
        const auto list = errors(yaml);
        EXPECT_EQ(list.size(), 3u) << yaml;
        for (const auto& e : list) EXPECT_EQ(e.find("YAML"), std::string::npos) << e;
    }
}

TEST(YamlGuard, ASecondDocumentIsAnErrorThatSaysWhy) {
    EXPECT_EQ(errors(std::string(kMinimal) + "---\nworkers: 2\n"),
              one("t.yaml:8:1: expected one YAML document, found 2"));
    EXPECT_EQ(errors(std::string(kMinimal) + "...\n# c\n\nworkers: 2\n"),
              one("t.yaml:11:1: expected one YAML document, found 2"));
    // yaml-cpp 0.7 ends a document where a line is indented less than its first one.
    EXPECT_EQ(errors("  listen: []\nupstreams: {}\nworkers: 1\n"),
              one("t.yaml:2:1: expected one YAML document, found 2 (yaml-cpp ends a document "
                  "at a line indented less than its first line)"));
}

TEST(YamlGuard, NestingDeeperThan64IsRefused) {
    const std::string deep64 = std::string(64, '[') + std::string(64, ']') + "\n";
    EXPECT_EQ(errors(deep64), one("t.yaml:1:1: expected a map of top-level keys, got a list"));
    EXPECT_EQ(errors(std::string(65, '[') + std::string(65, ']') + "\n"),
              one("t.yaml:1:65: YAML nested deeper than 64 levels"));
    // Far deeper than yaml-cpp's own guard (2000) is refused at level 65 all the same
    // (yaml-cpp marks that unterminated sequence at another column).
    const auto unterminated = errors(std::string(500'000, '['));
    ASSERT_EQ(unterminated.size(), 1u);
    EXPECT_TRUE(unterminated[0].ends_with(": YAML nested deeper than 64 levels"))
        << unterminated[0];
    std::string block;
    for (int i = 0; i < 100; ++i) block += std::string(2 * i, ' ') + "a:\n";
    EXPECT_EQ(errors(block), one("t.yaml:65:129: YAML nested deeper than 64 levels"));
}

TEST(YamlGuard, BillionLaughsIsRefusedAndModestAliasesWork) {
    std::string laughs = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
    for (char c = 'b'; c <= 'i'; ++c) {
        laughs += std::string(1, c) + ": &" + c + " [";
        for (int i = 0; i < 9; ++i) laughs += std::string(i ? ", *" : "*") + char(c - 1);
        laughs += "]\n";
    }
    const auto refused = errors(laughs);
    ASSERT_EQ(refused.size(), 1u);
    EXPECT_TRUE(refused[0].ends_with(
        ": YAML with more than 250000 nodes (an alias counts as all the nodes it repeats)"))
        << refused[0];

    // Without aliases too: a flat list filling 1 MiB is ~520,000 nodes (~250 MB in yaml-cpp).
    std::string flat = "x: [";
    while (flat.size() < (1 << 20) - 8) flat += "1,";
    const auto too_many = errors(flat + "]\n");
    ASSERT_EQ(too_many.size(), 1u);
    EXPECT_EQ(too_many[0].substr(0, 7), "t.yaml:") << too_many[0];
    EXPECT_TRUE(too_many[0].ends_with("more than 250000 nodes (an alias counts as all the nodes "
                                      "it repeats)"))
        << too_many[0];
    // A large genuine config is far from it: 10,000 servers.
    std::string servers = std::string(kMinimal);
    for (int i = 0; i < 10'000; ++i)
        servers += "      - address: 127.0.0." + std::to_string(i % 250 + 1) + ":" +
                   std::to_string(1000 + i) + "\n";
    LoadResult big = load_config_text(servers, "t.yaml", "/nonexistent-dir");
    ASSERT_TRUE(big.config.has_value()) << big.errors.at(0).text();
    EXPECT_EQ(big.config->upstreams.at("app").servers.size(), 10'001u);

    LoadResult shared = load_config_text(R"(listen:
  - address: 0.0.0.0:8080
    upstream: a
  - address: 0.0.0.0:8081
    upstream: b
upstreams:
  a:
    servers: &pool
      - address: 127.0.0.1:3001
      - address: 127.0.0.1:3002
  b:
    servers: *pool
)",
                                         "t.yaml", "/nonexistent-dir");
    ASSERT_TRUE(shared.config.has_value()) << shared.errors.at(0).text();
    EXPECT_EQ(shared.config->upstreams.at("b").servers.size(), 2u);
}

TEST(YamlGuard, AliasInsideItsOwnAnchorIsRefused) {
    EXPECT_EQ(errors("a: &x [1, *x]\n"),
              one("t.yaml:1:11: invalid YAML: an alias inside the node its anchor names"));
    EXPECT_EQ(errors("&r {a: *r}\n"),
              one("t.yaml:1:8: invalid YAML: an alias inside the node its anchor names"));
}

class YamlGuardFile : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("tether_yaml_guard_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }

    /// kMinimal padded with a comment to exactly `size` bytes.
    std::string padded(std::size_t size) const {
        std::string text(kMinimal);
        text += "#" + std::string(size - text.size() - 2, 'x') + "\n";
        return text;
    }
    std::string write(const std::string& name, const std::string& text) const {
        const std::string path = (dir_ / name).string();
        std::ofstream(path, std::ios::binary) << text;
        return path;
    }

    fs::path dir_;
};

TEST_F(YamlGuardFile, OneMebibyteLoadsOneByteMoreIsRefused) {
    const std::string ok = write("ok.yaml", padded(1 << 20));
    LoadResult loaded = load_config(ok);
    EXPECT_TRUE(loaded.config.has_value());

    const std::string big = write("big.yaml", padded((1 << 20) + 1));
    LoadResult refused = load_config(big);
    ASSERT_EQ(refused.errors.size(), 1u);
    EXPECT_EQ(refused.errors[0].text(), big + ": config file larger than 1 MiB (1048577 bytes)");

    // Text handed over in memory has the same limit.
    EXPECT_EQ(errors(padded((2 << 20))), one("t.yaml: larger than 1 MiB (2097152 bytes)"));
}

TEST_F(YamlGuardFile, AnEndlessFileIsReadOnlyToTheLimit) {
    LoadResult r = load_config("/dev/zero");
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].text(), "/dev/zero: config file larger than 1 MiB");
}

}  // namespace
}  // namespace tether::config
