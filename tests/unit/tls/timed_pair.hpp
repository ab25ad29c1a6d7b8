// A connected pair of TCP sockets on 127.0.0.1 for the TimedSocket tests: a
// TimedSocket on one end, a plain socket (the peer) on the other, and a
// bounded run of the io_context.
#pragma once

#include <chrono>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "tether/tls/timed_socket.hpp"

namespace tether::tls::test {

struct TimedPair {
    boost::asio::io_context io;
    std::optional<TimedSocket> timed;
    boost::asio::ip::tcp::socket peer{io};

    TimedPair() {
        using boost::asio::ip::tcp;
        tcp::acceptor acc(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
        TcpSocket client(io);
        client.connect(acc.local_endpoint());
        acc.accept(peer);
        timed.emplace(std::move(client));
    }
    // Runs until `done` or 5 s (a hung test fails instead of hanging).
    template <class Done>
    void run_until(Done done) {
        using namespace std::chrono_literals;
        const auto until = std::chrono::steady_clock::now() + 5s;
        io.restart();
        while (!done() && std::chrono::steady_clock::now() < until) io.run_one_for(50ms);
    }
};

}  // namespace tether::tls::test
