// TLS server contexts of the listeners (OpenSSL 3 through asio::ssl), built
// from the `listen[].tls` blocks at start and on every reload. One
// ServerContext per TLS listener, shared by all workers (an SSL_CTX is safe
// to create connections from on several threads): the first certificate is
// the default, the others are chosen by SNI (servername callback, names
// matched with X509_check_host: SANs and wildcards); protocols min/max,
// `ciphers` (TLS 1.2 and below), ALPN http/1.1, an OCSP response stapled per
// certificate (ocsp_staple.cpp), session tickets and a session cache. A
// reload builds new contexts: new connections use them, open ones keep the
// one they started with. Ticket keys are not the contexts' own but the
// process's TicketKeys ring, rotated on reload (a ticket resumes across one
// reload, not two); the session-id cache is per context (lost on reload).
// Threading: built on the main thread; immutable afterwards (OpenSSL's own
// locks cover its session cache).
#pragma once

#include <array>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ssl/context.hpp>

#include "tether/config/config.hpp"
#include "tether/tls/ticket_keys.hpp"

namespace tether::tls {

/// How a TLS server handshake ended (a metric label).
enum class Handshake { ok, closed, timeout, plain_http, not_tls, failed };
inline constexpr std::size_t kHandshakeResults = 6;
std::string_view to_string(Handshake h);

class ServerContext {
public:
    /// Loads every certificate chain, key and OCSP response of the listener
    /// `listener` (its address text); tickets use `ticket_keys`. Throws
    /// std::runtime_error with the file and the reason ("certificate /x.pem:
    /// no such file ...").
    ServerContext(const config::TlsConfig& cfg, std::string_view listener,
                  std::shared_ptr<TicketKeys> ticket_keys);
    ServerContext(const ServerContext&) = delete;
    ServerContext& operator=(const ServerContext&) = delete;

    /// The context new connections start with (the default certificate).
    boost::asio::ssl::context& context() { return *main_.ctx; }
    /// The context whose certificate serves `servername` (SNI); null: the default.
    SSL_CTX* pick(const char* servername) const;

private:
    struct Loaded {
        std::unique_ptr<boost::asio::ssl::context> ctx;
        X509* leaf = nullptr;               // owned by ctx
        std::unique_ptr<std::string> ocsp;  // DER, stapled; null: none (a stable address)
    };
    Loaded load(const config::CertKey& ck);

    std::shared_ptr<TicketKeys> ticket_keys_;
    std::array<unsigned char, SSL_MAX_SID_CTX_LENGTH> sid_ctx_;
    Loaded main_;
    std::vector<Loaded> alternates_;
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

/// Builds the contexts of every TLS listener of `cfg`, their tickets under
/// `keys`; throws std::runtime_error naming the listener ("listen[1]
/// 0.0.0.0:8443: ...").
std::shared_ptr<const ServerContexts> build_server_contexts(const config::Config& cfg,
                                                            std::shared_ptr<TicketKeys> keys);

}  // namespace tether::tls
