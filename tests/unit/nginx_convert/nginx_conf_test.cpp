// The nginx configuration reader (tools/nginx_convert/nginx_conf.hpp): nginx's token rules
// (quotes, escapes, comments, ${var}), blocks, line numbers, and includes with globs.
#include "nginx_conf.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace tether::nginx {
namespace {

namespace fs = std::filesystem;

ParseResult parse(std::string_view text) { return parse_text(text, "t.conf", "/nonexistent"); }

TEST(NginxConf, DirectivesArgsBlocksAndLines) {
    auto r =
        parse("worker_processes 4;\nhttp {\n  upstream a {\n    server x:1 weight=2;\n  }\n}\n");
    ASSERT_TRUE(r.errors.empty());
    ASSERT_EQ(r.directives.size(), 2u);
    EXPECT_EQ(r.directives[0].name, "worker_processes");
    EXPECT_EQ(r.directives[0].args, std::vector<std::string>{"4"});
    const Directive& http = r.directives[1];
    EXPECT_TRUE(http.block);
    EXPECT_EQ(http.line, 2);
    const Directive& server = http.children.at(0).children.at(0);
    EXPECT_EQ(server.name, "server");
    EXPECT_EQ(server.args, (std::vector<std::string>{"x:1", "weight=2"}));
    EXPECT_EQ(server.line, 4);
    EXPECT_EQ(server.where(), "t.conf:4");
}

TEST(NginxConf, QuotesAndEscapesAreResolved) {
    auto r = parse(R"(a "two words" 'single \'q\'' "esc \"d\" \\ \n" plain\"x "a;b{c}";)");
    ASSERT_TRUE(r.errors.empty()) << r.errors[0].text();
    EXPECT_EQ(r.directives.at(0).args,
              (std::vector<std::string>{"two words", "single 'q'", "esc \"d\" \\ \n", "plain\"x",
                                        "a;b{c}"}));
}

TEST(NginxConf, UnknownEscapeKeepsTheBackslash) {
    auto r = parse(R"(rewrite ^/a\.b$ /c;)");
    ASSERT_TRUE(r.errors.empty());
    EXPECT_EQ(r.directives.at(0).arg(0), R"(^/a\.b$)");
}

TEST(NginxConf, HashStartsACommentOnlyAtAWordStart) {
    auto r = parse("hash $cookie_a#b consistent; # trailing comment ; {\n# whole line\nx 1;");
    ASSERT_TRUE(r.errors.empty());
    ASSERT_EQ(r.directives.size(), 2u);
    EXPECT_EQ(r.directives[0].args, (std::vector<std::string>{"$cookie_a#b", "consistent"}));
    EXPECT_EQ(r.directives[1].line, 3);
}

TEST(NginxConf, VariableInBracesDoesNotCloseABlock) {
    auto r = parse("server { set $x ${host}_y; }");
    ASSERT_TRUE(r.errors.empty());
    EXPECT_EQ(r.directives.at(0).children.at(0).arg(1), "${host}_y");
}

TEST(NginxConf, MultiLineQuotedStringKeepsTheStartLine) {
    auto r = parse("a 'x\ny';\nb;");
    ASSERT_TRUE(r.errors.empty());
    EXPECT_EQ(r.directives[0].line, 1);
    EXPECT_EQ(r.directives[0].arg(0), "x\ny");
    EXPECT_EQ(r.directives[1].line, 3);
}

TEST(NginxConf, SyntaxErrorsNameTheLine) {
    EXPECT_EQ(parse("a 'open;\n").errors.at(0).text(), "t.conf:1: unterminated quoted string (')");
    EXPECT_EQ(parse("http {\n  a 1;\n").errors.at(0).line, 2);
    EXPECT_EQ(parse("a 1;\n}\n").errors.at(0).text(), "t.conf:2: unexpected '}'");
    EXPECT_FALSE(parse("a 1").errors.empty());
    EXPECT_FALSE(parse("a \"x\"y;").errors.empty());
}

class NginxInclude : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("nginx-conf-test-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(dir_ / "conf.d");
    }
    void TearDown() override { fs::remove_all(dir_); }
    void write(const std::string& name, const std::string& text) {
        std::ofstream(dir_ / name) << text;
    }
    fs::path dir_;
};

TEST_F(NginxInclude, GlobIsSortedAndSplicedInPlaceWithItsOwnFileAndLine) {
    write("conf.d/b.conf", "\nb 1;\n");
    write("conf.d/a.conf", "a 1;\n");
    write("main.conf", "http {\n  first;\n  include conf.d/*.conf;\n  last;\n}\n");
    auto r = parse_file((dir_ / "main.conf").string());
    ASSERT_TRUE(r.errors.empty()) << r.errors[0].text();
    const auto& c = r.directives.at(0).children;
    ASSERT_EQ(c.size(), 4u);
    EXPECT_EQ(c[0].name, "first");
    EXPECT_EQ(c[1].name, "a");
    EXPECT_EQ(c[2].name, "b");
    EXPECT_EQ(c[2].line, 2);
    EXPECT_EQ(fs::path(c[2].file).filename(), "b.conf");
    EXPECT_EQ(c[3].name, "last");
}

TEST_F(NginxInclude, GlobWithoutMatchIsFineMissingFileIsAnError) {
    write("main.conf", "include none-*.conf;\ninclude missing.conf;\n");
    auto r = parse_file((dir_ / "main.conf").string());
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].line, 2);
    EXPECT_NE(r.errors[0].message.find("missing.conf"), std::string::npos);
}

TEST_F(NginxInclude, CycleIsReportedNotFollowedForever) {
    write("main.conf", "include main.conf;\n");
    auto r = parse_file((dir_ / "main.conf").string());
    ASSERT_FALSE(r.errors.empty());
    EXPECT_NE(r.errors[0].message.find("nested deeper"), std::string::npos);
}

TEST(NginxConf, UnreadableFileIsAnError) {
    auto r = parse_file("/nonexistent/nginx.conf");
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_NE(r.errors[0].text().find("cannot read file"), std::string::npos);
}

}  // namespace
}  // namespace tether::nginx
