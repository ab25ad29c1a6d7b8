// TLS client contexts of the upstreams; see upstream_context.hpp.
#include "tether/tls/upstream_context.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <stdexcept>

#include <boost/asio/ip/address.hpp>

#include "tether/tls/context_setup.hpp"

namespace tether::tls {

namespace ssl = boost::asio::ssl;

namespace {

// ALPN offered to the servers: HTTP/1.1 only (a server that would pick h2
// when offered stays on HTTP/1.1; WebSocket upgrades need it).
constexpr unsigned char kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

// Two SSL ex_data slots (not the app data: asio::ssl uses it): the context
// and the session key of a connection, for the new-session callback.
int context_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}
int key_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

}  // namespace

UpstreamContext::UpstreamContext(const config::UpstreamTls& cfg)
    : ctx_(ssl::context::tls_client), verify_(cfg.verify), server_name_(cfg.server_name) {
    SSL_CTX* raw = ctx_.native_handle();
    ERR_clear_error();
    set_protocol_range(raw, cfg.protocols);
    SSL_CTX_set_options(raw, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(raw, SSL_MODE_RELEASE_BUFFERS);  // idle kept-alive connections hold none
    set_ciphers(raw, cfg.ciphers);
    if (!cfg.ca.empty()) {
        if (SSL_CTX_load_verify_locations(raw, cfg.ca.c_str(), nullptr) != 1)
            throw std::runtime_error("ca " + cfg.ca + ": " + openssl_reason());
    } else if (cfg.verify && SSL_CTX_set_default_verify_paths(raw) != 1) {
        throw std::runtime_error("the system's trust store: " + openssl_reason());
    }
    SSL_CTX_set_verify(raw, cfg.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    if (!cfg.certificate.empty()) use_certificate_and_key(raw, cfg.certificate, cfg.private_key);
    SSL_CTX_set_alpn_protos(raw, kAlpnHttp11, sizeof kAlpnHttp11);
    SSL_CTX_set_session_cache_mode(raw, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(raw, &UpstreamContext::on_new_session);
}

UpstreamContext::~UpstreamContext() {
    for (auto& [key, session] : sessions_) SSL_SESSION_free(session);
}

void UpstreamContext::prepare(SSL* ssl, const std::string& key, std::string_view name) {
    SSL_set_ex_data(ssl, context_index(), this);
    SSL_set_ex_data(ssl, key_index(), const_cast<std::string*>(&key));
    const std::string n(name);
    boost::system::error_code ec;
    boost::asio::ip::make_address(n, ec);  // ec: not an IP address
    if (ec) SSL_set_tlsext_host_name(ssl, n.c_str());  // never an IP literal (RFC 6066 3)
    if (verify_) {
        if (!ec)
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), n.c_str());
        else
            SSL_set1_host(ssl, n.c_str());
    }
    SSL_SESSION* copy = nullptr;
    {
        std::lock_guard lock(mutex_);
        if (auto it = sessions_.find(key); it != sessions_.end())
            copy = SSL_SESSION_dup(it->second);  // this connection's own (see the header)
    }
    if (!copy) return;
    SSL_set_session(ssl, copy);  // takes its own reference
    SSL_SESSION_free(copy);
}

int UpstreamContext::on_new_session(SSL* ssl, SSL_SESSION* session) {
    auto* self = static_cast<UpstreamContext*>(SSL_get_ex_data(ssl, context_index()));
    const auto* key = static_cast<const std::string*>(SSL_get_ex_data(ssl, key_index()));
    if (!self || !key) return 0;
    // A copy: OpenSSL marks the connection's own session not resumable when
    // the connection is freed without a close_notify exchange, which is how
    // kept-alive upstream connections end.
    if (SSL_SESSION* copy = SSL_SESSION_dup(session)) self->store(*key, copy);
    return 0;  // the connection keeps its reference
}

void UpstreamContext::store(const std::string& key, SSL_SESSION* session) {
    std::lock_guard lock(mutex_);
    SSL_SESSION*& slot = sessions_[key];
    if (slot) SSL_SESSION_free(slot);
    slot = session;
}

std::shared_ptr<const UpstreamContexts> build_upstream_contexts(const config::Config& cfg) {
    auto out = std::make_shared<UpstreamContexts>();
    for (const auto& [name, u] : cfg.upstreams) {
        if (!u.tls) continue;
        try {
            out->by_upstream[name] = std::make_shared<UpstreamContext>(*u.tls);
        } catch (const std::exception& e) {
            throw std::runtime_error("upstreams." + name + ".tls: " + e.what());
        }
    }
    return out;
}

}  // namespace tether::tls
