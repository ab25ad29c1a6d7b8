// Active health checks of every server of every upstream that has a
// `health_check` block: one prober per server per process (not per worker),
// all on the checker's own thread and io_context, so a slow or dead backend
// never holds up a worker. Verdicts (rise/fall, see rise_fall.hpp) are
// published by writing the server's shared atomic state, which every worker
// reads on its next pick: no lock on the request path, and a server is usable
// the moment its rise-th good check lands. A server coming up also forgets
// its passive failures (it was restarted and checked).
//
// The first check of a server waits a random time in [0, interval), so that
// checks of many servers (and of many replicas) do not go out together; then
// checks start every `interval`, each bounded by `timeout`.
//
// Threading: constructed, started, updated and stopped from the main thread;
// probers live on the checker's thread (reached through post()).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "tether/core/hash.hpp"
#include "tether/upstream/backend.hpp"

namespace tether::health {

class HealthChecker {
public:
    explicit HealthChecker(std::uint64_t seed);
    ~HealthChecker();  ///< stop()

    /// Starts the checker's thread.
    void start();
    /// Checks the servers of `rt` from now on (start-up and every reload): a
    /// server whose state and check settings are unchanged keeps its prober
    /// (and its rise/fall run); a new or changed one gets a new prober that
    /// starts from the server's current verdict; removed ones are stopped.
    void update(std::shared_ptr<const upstream::Runtime> rt);
    /// Stops every prober (a check in flight is abandoned) and joins the thread.
    void stop();

    class Prober;  // one server's check loop (checker.cpp)

private:
    void reconcile(const upstream::Runtime& rt);

    boost::asio::io_context io_{1};
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
    std::thread thread_;
    // Touched on the checker's thread only:
    std::map<const upstream::BackendState*, std::shared_ptr<Prober>> probers_;
    Rng rng_;
};

}  // namespace tether::health
