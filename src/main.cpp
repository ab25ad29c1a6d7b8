// tether's entry point: the command line of SPEC.md. The only catch-all.
#include <cstring>
#include <exception>
#include <iostream>
#include <string>

#include "tether/app/app.hpp"

namespace {

void usage() {
    std::cerr << "usage: tether -c FILE        run in the foreground\n"
                 "       tether -t -c FILE     check FILE and exit\n"
                 "       tether --version      print the version\n";
}

}  // namespace

int main(int argc, char** argv) {
    std::string config;
    bool test = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--version" || arg == "-v") {
            std::cout << "tether " << TETHER_VERSION_STRING << '\n';
            return 0;
        }
        if (arg == "-t") test = true;
        else if ((arg == "-c" || arg == "--config") && i + 1 < argc) config = argv[++i];
        else if (arg == "-h" || arg == "--help") {
            usage();
            return 0;
        } else {
            std::cerr << "tether: unknown argument '" << arg << "'\n";
            usage();
            return 2;
        }
    }
    if (config.empty()) {
        usage();
        return 2;
    }
    try {
        return test ? tether::app::check_config(config) : tether::app::run(config);
    } catch (const std::exception& e) {
        std::cerr << "tether: fatal: " << e.what() << '\n';
        return 1;
    }
}
