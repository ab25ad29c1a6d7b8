// Sockets registered with Asio's reactor only when needed; see
// reactor_registration.hpp.
#include "tether/tls/reactor_registration.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <boost/asio/error.hpp>

#include "tether/core/socket_calls.hpp"

namespace tether::tls {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

#if defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) || defined(BOOST_ASIO_HAS_IOCP) || \
    defined(BOOST_ASIO_WINDOWS_RUNTIME)
#define TETHER_ASIO_REACTIVE_SOCKETS 0
#else
#define TETHER_ASIO_REACTIVE_SOCKETS 1
#endif

#if TETHER_ASIO_REACTIVE_SOCKETS
namespace ops = asio::detail::socket_ops;

// Asio's implementation of a socket (reactive_socket_service's
// implementation_type: the descriptor, the flags of what Asio knows about
// it, its reactor registration, the protocol) lives in the protected member
// of basic_socket, reached through a pointer to member formed in a derived
// class (the standard's way to name a protected member from outside).
struct SocketImpl : TcpSocket {
    static auto& of(TcpSocket& s) { return (s.*(&SocketImpl::impl_)).get_implementation(); }
};

asio::detail::reactor& reactor_of(TcpSocket& s) {
    return asio::use_service<asio::detail::reactor>(
        asio::query(s.get_executor(), asio::execution::context));
}
#endif

}  // namespace

boost::system::error_code adopt_descriptor(TcpSocket& socket, int fd, const tcp& protocol,
                                           bool now) {
    boost::system::error_code ec;
    if (socket.is_open()) {
        ::close(fd);
        return asio::error::already_open;
    }
#if TETHER_ASIO_REACTIVE_SOCKETS
    auto& impl = SocketImpl::of(socket);
    if (now) {
        auto& reactor = reactor_of(socket);
        if (const int err = reactor.register_descriptor(fd, impl.reactor_data_)) {
            reactor.cleanup_descriptor_data(impl.reactor_data_);
            ::close(fd);
            return {err, asio::error::get_system_category()};
        }
    }
    // What assign() sets, less possible_dup (close would deregister first),
    // plus internal_non_blocking (no ioctl before the first operation).
    impl.socket_ = fd;
    impl.state_ = ops::stream_oriented | ops::internal_non_blocking;
    impl.protocol_ = protocol;
#else
    (void)now;
    socket.assign(protocol, fd, ec);
    if (ec) ::close(fd);
#endif
    return ec;
}

bool unregistered(TcpSocket& socket) {
#if TETHER_ASIO_REACTIVE_SOCKETS
    return socket.is_open() && SocketImpl::of(socket).reactor_data_ == nullptr;
#else
    (void)socket;
    return false;
#endif
}

boost::system::error_code register_socket(TcpSocket& socket) {
#if TETHER_ASIO_REACTIVE_SOCKETS
    if (!unregistered(socket)) return {};
    auto& impl = SocketImpl::of(socket);
    auto& reactor = reactor_of(socket);
    if (const int err = reactor.register_descriptor(impl.socket_, impl.reactor_data_)) {
        reactor.cleanup_descriptor_data(impl.reactor_data_);  // allocated even on a failure
        return {err, asio::error::get_system_category()};
    }
#else
    (void)socket;
#endif
    return {};
}

std::size_t receive_now(int fd, iovec* v, std::size_t n, boost::system::error_code& ec) {
    msghdr m{};
    m.msg_iov = v;
    m.msg_iovlen = n;
    for (;;) {
        const ssize_t got = core::sys_recvmsg(fd, &m, MSG_DONTWAIT);
        if (got > 0) {
            ec.clear();
            return static_cast<std::size_t>(got);
        }
        if (got == 0) {
            ec = asio::error::eof;
            return 0;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) ec = asio::error::would_block;
        else ec.assign(errno, asio::error::get_system_category());
        return 0;
    }
}

std::size_t send_now(int fd, const iovec* v, std::size_t n, boost::system::error_code& ec) {
    msghdr m{};
    m.msg_iov = const_cast<iovec*>(v);
    m.msg_iovlen = n;
    for (;;) {
        const ssize_t put = core::sys_sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (put >= 0) {
            ec.clear();
            return static_cast<std::size_t>(put);
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) ec = asio::error::would_block;
        else ec.assign(errno, asio::error::get_system_category());
        return 0;
    }
}

}  // namespace tether::tls
