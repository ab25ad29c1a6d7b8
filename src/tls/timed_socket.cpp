// TimedSocket's construction and destruction; see timed_socket.hpp.
// Threading: the socket's executor (one worker thread) only.
#include "tether/tls/timed_socket.hpp"

namespace tether::tls {

TimedSocket::TimedSocket(TcpSocket&& socket) : s_(new State(std::move(socket))) {}

TimedSocket::TimedSocket(const executor_type& ex)
    : s_(new State(TcpSocket(ex))) {}

TimedSocket::~TimedSocket() {
    boost::system::error_code ignored;
    s_->socket.close(ignored);
    if (s_->armed != Clock::time_point::max()) {
        ++s_->generation;
        s_->armed = Clock::time_point::max();
        s_->timer->cancel();  // its handler drops the last reference soon
    }
}

}  // namespace tether::tls
