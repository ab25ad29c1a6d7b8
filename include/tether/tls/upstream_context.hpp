// TLS client contexts for the connections to the servers of an upstream
// (`upstreams.X.tls`; nginx proxy_ssl_*, HAProxy `server ... ssl verify
// required ca-file sni crt`). One UpstreamContext per TLS upstream, shared by
// all workers: the trust anchors (`ca`, or the system store), verification
// on or off, a client certificate for mTLS, protocols and ciphers.
//
// The name checked in the server's certificate, and sent as SNI, is
// `server_name` or else the server's host (an IP address is checked against
// the certificate's IP SANs and never sent as SNI, RFC 6066 3).
//
// Session resumption: the last session (TLS 1.3 ticket or 1.2 session) each
// server gave is kept here, by server address and name, and offered on the
// next new connection to that server, whichever worker opens it. The cache
// is behind a mutex held for one map operation, on new connections only.
// A cached session is never given to a connection: each gets a copy
// (SSL_SESSION_dup, made under the mutex; ~0.3 us, the certificates shared
// by reference), because OpenSSL changes the session of a handshake in
// progress, so one SSL_SESSION must not serve two workers' handshakes at once
// (ThreadSanitizer showed it: one worker's handshake read a session that
// another worker's store() freed); and a connection freed without a
// close_notify exchange (how kept-alive ones end) marks only its copy not
// resumable, not the cached one.
// A reload builds new contexts (files read again); the caches start empty.
// Threading: built on the main thread; afterwards only the session cache
// changes (locked), and OpenSSL's SSL_CTX is safe to share.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include <boost/asio/ssl/context.hpp>

#include "tether/config/config.hpp"

namespace tether::tls {

class UpstreamContext {
public:
    /// Loads the CA file, the client certificate and key; throws
    /// std::runtime_error naming the file and OpenSSL's reason.
    explicit UpstreamContext(const config::UpstreamTls& cfg);
    ~UpstreamContext();
    UpstreamContext(const UpstreamContext&) = delete;
    UpstreamContext& operator=(const UpstreamContext&) = delete;

    boost::asio::ssl::context& context() { return ctx_; }
    bool verify() const { return verify_; }
    /// The name to check and send for a server whose host is `host`.
    std::string_view name_for(std::string_view host) const {
        return server_name_.empty() ? host : std::string_view(server_name_);
    }

    /// Prepares `ssl` for a connection to the server `key` (address text)
    /// known as `name`: SNI, the name to verify, the cached session, if any.
    /// `key` must outlive the SSL object (the session callback reads it).
    void prepare(SSL* ssl, const std::string& key, std::string_view name);

private:
    static int on_new_session(SSL* ssl, SSL_SESSION* session);
    void store(const std::string& key, SSL_SESSION* session);

    boost::asio::ssl::context ctx_;
    bool verify_ = true;
    std::string server_name_;
    std::mutex mutex_;
    std::unordered_map<std::string, SSL_SESSION*> sessions_;  // owned; only touched locked
};

/// The contexts of a configuration's TLS upstreams, by upstream name.
struct UpstreamContexts {
    std::map<std::string, std::shared_ptr<UpstreamContext>, std::less<>> by_upstream;
    std::shared_ptr<UpstreamContext> at(std::string_view upstream) const {
        const auto it = by_upstream.find(upstream);
        return it == by_upstream.end() ? nullptr : it->second;
    }
};

/// Builds the contexts of every upstream of `cfg` with `tls`; throws
/// std::runtime_error naming the upstream ("upstreams.api.tls: ca /x.pem: ...").
std::shared_ptr<const UpstreamContexts> build_upstream_contexts(const config::Config& cfg);

}  // namespace tether::tls
