// tether-from-nginx: converts an nginx configuration into a tether one.
//
//   tether-from-nginx [-o OUT.yaml] NGINX.CONF
//
// Writes the tether YAML to OUT (or stdout) and lists on stderr, with FILE:LINE, every
// directive it did not carry over ("ignored", harmless), translated with a difference
// ("note"), a better tether setting ("suggestion"), and what would behave differently in a
// way that matters ("not translated"). The output is then checked with tether's own loader
// (the same check as `tether -t`). Exit status: 0 converted; 1 converted, but something
// matters (a "not translated" finding, or the output fails the check); 2 the input cannot be
// read or parsed, or bad usage (nothing written).
#include <filesystem>
#include <fstream>
#include <iostream>

#include "convert.hpp"
#include "nginx_conf.hpp"
#include "tether/config/loader.hpp"

namespace {

namespace fs = std::filesystem;

int usage() {
    std::cerr << "usage: tether-from-nginx [-o OUT.yaml] NGINX.CONF\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    std::string input, output;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if ((a == "-o" || a == "--output") && i + 1 < argc)
            output = argv[++i];
        else if (a == "-h" || a == "--help")
            return usage(), 0;
        else if (!a.empty() && a[0] == '-')
            return usage();
        else if (input.empty())
            input = a;
        else
            return usage();
    }
    if (input.empty()) return usage();

    tether::nginx::ParseResult parsed = tether::nginx::parse_file(input);
    for (const auto& e : parsed.errors) std::cerr << e.text() << "\n";
    if (!parsed.errors.empty()) return 2;

    std::error_code ec;
    std::string conf_dir = fs::absolute(input, ec).parent_path().string();
    tether::nginx::Conversion result = tether::nginx::convert(parsed.directives, input, conf_dir);
    for (const auto& f : result.findings) std::cerr << f.text() << "\n";

    std::string name = output.empty() ? "<stdout>" : output;
    std::string base = output.empty() ? fs::current_path(ec).string()
                                      : fs::absolute(output, ec).parent_path().string();
    auto check = tether::config::load_config_text(result.yaml, name, base);
    for (const auto& w : check.warnings) std::cerr << "tether -t: " << w.text(true) << "\n";
    for (const auto& e : check.errors) std::cerr << "tether -t: " << e.text() << "\n";

    if (output.empty()) {
        std::cout << result.yaml;
    } else {
        std::ofstream out(output, std::ios::binary | std::ios::trunc);
        out << result.yaml;
        if (!out.flush()) {
            std::cerr << output << ": cannot write\n";
            return 2;
        }
    }
    bool bad = result.differs() || !check.errors.empty();
    if (bad)
        std::cerr << "tether-from-nginx: the result behaves differently from nginx in ways that "
                     "matter (see 'not translated' above)\n";
    return bad ? 1 : 0;
}
