// nginx configuration reader; see nginx_conf.hpp. The tokenizer follows
// ngx_conf_read_token(): a `#` starts a comment only where a word could start, a quote only
// at the start of a word, and after a closing quote there must be a space, `;`, `{` or `}`.
// Backslash escapes (\" \' \\ \t \r \n) are resolved in quoted and plain words alike; any
// other backslash is kept as written.
#include "nginx_conf.hpp"

#include <glob.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace tether::nginx {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxIncludeDepth = 16;

struct Token {
    enum Kind { word, semicolon, open, close } kind = word;
    std::string text;
    int line = 0;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
bool is_special(char c) { return c == ';' || c == '{' || c == '}'; }

/// Splits one file into tokens; problems go to `errors`.
class Tokenizer {
public:
    Tokenizer(std::string_view text, const std::string& file, std::vector<ParseError>& errors)
        : text_(text), file_(file), errors_(errors) {}

    std::vector<Token> run() {
        std::vector<Token> out;
        while (pos_ < text_.size()) {
            char c = text_[pos_];
            if (c == '\n') ++line_;
            if (is_space(c)) {
                ++pos_;
            } else if (c == '#') {
                while (pos_ < text_.size() && text_[pos_] != '\n') ++pos_;
            } else if (is_special(c)) {
                auto kind = c == ';' ? Token::semicolon : c == '{' ? Token::open : Token::close;
                out.push_back({kind, std::string(1, c), line_});
                ++pos_;
            } else if (c == '"' || c == '\'') {
                if (!quoted(out)) return out;
            } else {
                plain(out);
            }
        }
        return out;
    }

private:
    /// Resolves the escape at text_[pos_] == '\\' into `word`; advances past it.
    void escape(std::string& word) {
        char next = pos_ + 1 < text_.size() ? text_[pos_ + 1] : '\0';
        switch (next) {
            case '"':
            case '\'':
            case '\\':
                word += next;
                break;
            case 't':
                word += '\t';
                break;
            case 'r':
                word += '\r';
                break;
            case 'n':
                word += '\n';
                break;
            default:
                word += '\\';
                ++pos_;
                return;
        }
        pos_ += 2;
    }

    bool quoted(std::vector<Token>& out) {
        const char quote = text_[pos_];
        const int start = line_;
        std::string word;
        ++pos_;
        while (pos_ < text_.size() && text_[pos_] != quote) {
            if (text_[pos_] == '\\') {
                escape(word);
                continue;
            }
            if (text_[pos_] == '\n') ++line_;
            word += text_[pos_++];
        }
        if (pos_ >= text_.size()) {
            errors_.push_back(
                {file_, start, std::string("unterminated quoted string (") + quote + ")"});
            return false;
        }
        ++pos_;
        if (pos_ < text_.size() && !is_space(text_[pos_]) && !is_special(text_[pos_])) {
            errors_.push_back(
                {file_, line_,
                 std::string("unexpected '") + text_[pos_] + "' after a quoted string"});
            return false;
        }
        out.push_back({Token::word, std::move(word), start});
        return true;
    }

    void plain(std::vector<Token>& out) {
        std::string word;
        const int start = line_;
        while (pos_ < text_.size()) {
            char c = text_[pos_];
            if (c == '{' && word.ends_with('$')) {  // "${name}": not a block
                word += c;
                ++pos_;
                continue;
            }
            if (is_space(c) || c == ';' || c == '{') break;
            if (c == '}' && !(word.size() >= 2 && in_variable_braces(word))) break;
            if (c == '\\') {
                escape(word);
                continue;
            }
            word += c;
            ++pos_;
        }
        out.push_back({Token::word, std::move(word), start});
    }

    /// True inside "${name" (the `}` closes the variable, not a block).
    static bool in_variable_braces(const std::string& word) {
        auto open = word.rfind("${");
        return open != std::string::npos && word.find('}', open) == std::string::npos;
    }

    std::string_view text_;
    const std::string& file_;
    std::vector<ParseError>& errors_;
    std::size_t pos_ = 0;
    int line_ = 1;
};

bool read_whole(const std::string& path, std::string& out, std::string& why) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) return why = "is a directory", false;
    std::ifstream in(path, std::ios::binary);
    if (!in) return why = "cannot open", false;
    std::ostringstream text;
    text << in.rdbuf();
    out = text.str();
    return true;
}

class Parser {
public:
    Parser(std::string conf_dir, std::vector<ParseError>& errors)
        : conf_dir_(std::move(conf_dir)), errors_(errors) {}

    /// Parses one file's text into `out` (appending), following includes.
    void parse(std::string_view text, const std::string& file, std::vector<Directive>& out,
               int depth) {
        std::vector<Token> tokens = Tokenizer(text, file, errors_).run();
        std::size_t i = 0;
        block(tokens, i, file, out, depth, /*nested=*/false);
    }

private:
    /// Reads directives up to the `}` closing a nested block (returns true) or the end.
    bool block(const std::vector<Token>& tokens, std::size_t& i, const std::string& file,
               std::vector<Directive>& out, int depth, bool nested) {
        while (i < tokens.size()) {
            const Token& t = tokens[i];
            if (t.kind == Token::close) {
                ++i;
                if (nested) return true;
                errors_.push_back({file, t.line, "unexpected '}'"});
                continue;
            }
            if (t.kind != Token::word) {
                errors_.push_back({file, t.line, "unexpected '" + t.text + "'"});
                ++i;
                continue;
            }
            Directive d;
            d.name = t.text;
            d.file = file;
            d.line = t.line;
            ++i;
            while (i < tokens.size() && tokens[i].kind == Token::word)
                d.args.push_back(tokens[i++].text);
            if (i >= tokens.size()) {
                errors_.push_back(
                    {file, d.line, "directive '" + d.name + "' has no ending ';' or '{'"});
                return false;
            }
            if (tokens[i].kind == Token::open) {
                ++i;
                d.block = true;
                bool closed = block(tokens, i, file, d.children, depth, /*nested=*/true);
                out.push_back(std::move(d));
                if (!closed) return false;
            } else if (tokens[i].kind == Token::semicolon) {
                ++i;
                if (d.name == "include")
                    include(d, out, depth);
                else
                    out.push_back(std::move(d));
            } else {
                errors_.push_back({file, tokens[i].line, "unexpected '}'"});
                ++i;
            }
        }
        if (nested)
            errors_.push_back({file, tokens.empty() ? 0 : tokens.back().line,
                               "unexpected end of file, expecting '}'"});
        return false;
    }

    void include(const Directive& d, std::vector<Directive>& out, int depth) {
        if (d.args.size() != 1) {
            errors_.push_back({d.file, d.line, "'include' takes one file name or glob"});
            return;
        }
        if (depth >= kMaxIncludeDepth) {
            errors_.push_back({d.file, d.line,
                               "includes nested deeper than " + std::to_string(kMaxIncludeDepth) +
                                   " levels (a cycle?)"});
            return;
        }
        fs::path pattern(d.args[0]);
        if (pattern.is_relative()) pattern = fs::path(conf_dir_) / pattern;
        std::vector<std::string> files;
        if (d.args[0].find_first_of("*?[") != std::string::npos) {
            glob_t g{};
            if (::glob(pattern.c_str(), 0, nullptr, &g) == 0)
                for (std::size_t k = 0; k < g.gl_pathc; ++k) files.emplace_back(g.gl_pathv[k]);
            ::globfree(&g);
            std::sort(files.begin(), files.end());
        } else {
            files.push_back(pattern.string());
        }
        for (const std::string& f : files) {
            std::string text, why;
            if (!read_whole(f, text, why)) {
                errors_.push_back({d.file, d.line, "include '" + f + "': " + why});
                continue;
            }
            parse(text, f, out, depth + 1);
        }
    }

    std::string conf_dir_;
    std::vector<ParseError>& errors_;
};

}  // namespace

const std::string& Directive::arg(std::size_t i) const {
    static const std::string kEmpty;
    return i < args.size() ? args[i] : kEmpty;
}

std::string Directive::where() const { return file + ":" + std::to_string(line); }

std::string ParseError::text() const {
    return line > 0 ? file + ":" + std::to_string(line) + ": " + message : file + ": " + message;
}

ParseResult parse_text(std::string_view text, const std::string& file,
                       const std::string& conf_dir) {
    ParseResult result;
    Parser(conf_dir, result.errors).parse(text, file, result.directives, 0);
    return result;
}

ParseResult parse_file(const std::string& path) {
    std::string text, why;
    if (!read_whole(path, text, why)) {
        ParseResult result;
        result.errors.push_back({path, 0, "cannot read file: " + why});
        return result;
    }
    std::error_code ec;
    fs::path dir = fs::absolute(path, ec).parent_path();
    return parse_text(text, path, dir.string());
}

}  // namespace tether::nginx
