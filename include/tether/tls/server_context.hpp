// TLS server contexts of the listeners (OpenSSL 3 through asio::ssl), built
// from the `listen[].tls` blocks at start and on every reload. One
// ServerContext per TLS listener, shared by all workers (an SSL_CTX is safe
// to create connections from on several threads): the first certificate is
// the default, the others are chosen by SNI (servername callback, names
// matched with X509_check_host: SANs and wildcards); protocols min/max,
// `ciphers` (TLS 1.2 and below), ALPN http/1.1, session tickets and a
// session cache. A reload builds new contexts: new connections use them,
// open ones keep the one they started with; the ticket key is new with each
// context (tickets from before a reload end in a full handshake).
// Threading: built on the main thread; immutable afterwards (OpenSSL's own
// locks cover its session cache).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ssl/context.hpp>

#include "tether/config/config.hpp"

namespace tether::tls {

/// How a TLS server handshake ended (a metric label).
enum class Handshake { ok, closed, timeout, plain_http, not_tls, failed };
inline constexpr std::size_t kHandshakeResults = 6;
std::string_view to_string(Handshake h);

class ServerContext {
public:
    /// Loads every certificate chain and key; throws std::runtime_error with
    /// the file and OpenSSL's reason ("certificate /x.pem: no such file ...").
    explicit ServerContext(const config::TlsConfig& cfg);
    ServerContext(const ServerContext&) = delete;
    ServerContext& operator=(const ServerContext&) = delete;

    /// The context new connections start with (the default certificate).
    boost::asio::ssl::context& context() { return *main_; }
    /// The context whose certificate serves `servername` (SNI); null: the default.
    SSL_CTX* pick(const char* servername) const;

private:
    struct Alternate {
        std::unique_ptr<boost::asio::ssl::context> ctx;
        X509* leaf = nullptr;  // owned by ctx
    };

    std::unique_ptr<boost::asio::ssl::context> main_;
    X509* main_leaf_ = nullptr;
    std::vector<Alternate> alternates_;
};

/// The contexts of a configuration's TLS listeners, by listen address text
/// (upstream::Runtime::listener_address: stable across reloads).
struct ServerContexts {
    std::map<std::string, std::shared_ptr<ServerContext>, std::less<>> by_address;
    std::shared_ptr<ServerContext> at(std::string_view address) const {
        const auto it = by_address.find(address);
        return it == by_address.end() ? nullptr : it->second;
    }
};

/// Builds the contexts of every TLS listener of `cfg`; throws
/// std::runtime_error naming the listener ("listen[1] 0.0.0.0:8443: ...").
std::shared_ptr<const ServerContexts> build_server_contexts(const config::Config& cfg);

}  // namespace tether::tls
