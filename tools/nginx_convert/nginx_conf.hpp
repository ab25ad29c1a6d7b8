// Reader of nginx configuration files: the token grammar of nginx's ngx_conf_file.c
// (words, "double" and 'single' quotes with backslash escapes, # comments at the start of a
// word, `;` ends a directive, `{ }` a block, ${var} inside a word) into a tree of directives,
// each remembering the file and line it came from. `include` directives are followed where
// they stand: relative paths against the directory of the main file (nginx's conf prefix),
// globs expanded in sorted order (no match is no error, as in nginx), a missing plain file is
// an error. Pure: no state beyond the files read; single-threaded.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tether::nginx {

/// One directive: `name args...;` or `name args... { children }`.
struct Directive {
    std::string name;
    std::vector<std::string> args;  ///< unquoted, escapes resolved
    std::string file;               ///< as named on the command line or by `include`
    int line = 0;                   ///< 1-based line of the directive's name
    bool block = false;
    std::vector<Directive> children;

    /// args[i], or "" when there are fewer.
    const std::string& arg(std::size_t i) const;
    /// "FILE:LINE"
    std::string where() const;
};

struct ParseError {
    std::string file;
    int line = 0;
    std::string message;
    std::string text() const;  ///< "FILE:LINE: message"
};

struct ParseResult {
    std::vector<Directive> directives;  ///< top level, includes spliced in
    std::vector<ParseError> errors;
};

/// Reads `path` and every file it includes.
ParseResult parse_file(const std::string& path);

/// Parses `text` (named `file` in diagnostics); includes resolve against `conf_dir`.
ParseResult parse_text(std::string_view text, const std::string& file, const std::string& conf_dir);

}  // namespace tether::nginx
