// The echo mode of tether-ws-bench (ws_bench.cpp parses the options): a closed-loop WebSocket
// echo client on plain sockets and one level-triggered epoll, single-threaded.
#pragma once

#include <netinet/in.h>

#include <chrono>
#include <cstddef>
#include <string>

namespace tether::bench {

struct EchoOptions {
    sockaddr_in endpoint{};
    std::string host_header;
    std::string path = "/";
    std::size_t conns = 64;
    std::size_t size = 256;
    double seconds = 10;
    std::chrono::milliseconds timeout{5000};
};

// Runs the echo benchmark, prints its JSON line; returns the process exit code.
int run_raw_echo(const EchoOptions& opt);

}  // namespace tether::bench
