// A real redis-server for the tests of this folder: started on a free
// 127.0.0.1 port with no persistence, stopped by its PID (never by name).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <hiredis/hiredis.h>

extern char** environ;

namespace tether::testing {

inline int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

/// Polls `cond` every 10 ms until it holds or `limit` passes; its last value.
inline bool wait_until(const std::function<bool()>& cond,
                       std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
        if (cond()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return cond();
}

class RedisServer {
public:
    explicit RedisServer(int port = free_port(), std::string password = {})
        : port_(port), password_(std::move(password)) {
        start();
    }
    ~RedisServer() { kill_now(); }
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    int port() const { return port_; }

    void start() {
        std::vector<std::string> args = {"redis-server", "--port", std::to_string(port_),
                                         "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--loglevel", "warning",
                                         "--enable-debug-command", "yes"};
        if (!password_.empty()) {
            args.push_back("--requirepass");
            args.push_back(password_);
        }
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t files;
        posix_spawn_file_actions_init(&files);
        posix_spawn_file_actions_addopen(&files, 1, "/dev/null", O_WRONLY, 0);
        const int rc = posix_spawnp(&pid_, "redis-server", &files, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&files);
        if (rc != 0) throw std::runtime_error("cannot start redis-server");
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
            if (auto r = command({"PING"}); r == "PONG" || r.starts_with("NOAUTH")) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        throw std::runtime_error("redis-server did not come up");
    }

    /// SIGKILL and reap: Redis is gone at once, as in a crash.
    void kill_now() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
    }

    /// One command on a short blocking connection of the test's own; the
    /// reply as text ("" for nil, the error text for an error).
    std::string command(const std::vector<std::string>& args, int db = 0) const {
        timeval tv{2, 0};
        redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
        if (!c || c->err) {
            if (c) redisFree(c);
            return "<no connection>";
        }
        redisSetTimeout(c, tv);
        auto run = [&](const std::vector<std::string>& a) {
            std::vector<const char*> argv;
            std::vector<size_t> lens;
            for (const auto& s : a) {
                argv.push_back(s.data());
                lens.push_back(s.size());
            }
            auto* r = static_cast<redisReply*>(
                redisCommandArgv(c, static_cast<int>(a.size()), argv.data(), lens.data()));
            std::string out = "<no reply>";
            if (r) {
                if (r->type == REDIS_REPLY_INTEGER) out = std::to_string(r->integer);
                else if (r->type == REDIS_REPLY_NIL) out = "";
                else if (r->str) out.assign(r->str, r->len);
                else out = "<array>";
                freeReplyObject(r);
            }
            return out;
        };
        if (!password_.empty()) run({"AUTH", password_});
        if (db != 0) run({"SELECT", std::to_string(db)});
        std::string out = run(args);
        redisFree(c);
        return out;
    }

private:
    int port_;
    std::string password_;
    pid_t pid_ = -1;
};

}  // namespace tether::testing
