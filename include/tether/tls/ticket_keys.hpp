// Session ticket keys of the process: one small ring shared by every TLS
// server context (all listeners, all SNI certificates, all workers: the
// workers are threads of one process and share the contexts). The newest key
// encrypts new tickets; the one before it still decrypts, and a ticket it
// decrypts is renewed under the newest key. A reload rotates the ring, so a
// ticket survives one reload and is refused (full handshake) after the second,
// as with nginx's several ssl_session_ticket_key files or HAProxy's
// tls-ticket-keys. Listeners are kept apart by their session id context (a
// ticket of one listener does not resume on another): see server_context.cpp.
// Keys are random (RAND_bytes), never written anywhere.
// Threading: install() and rotate() on the main thread; the ticket callback
// runs on the workers during handshakes and reads the ring under a mutex held
// for a copy of one key.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <cstddef>
#include <mutex>

namespace tether::tls {

class TicketKeys {
public:
    static constexpr std::size_t kKeys = 2;  ///< the current key and the previous one

    /// A ring holding one fresh key.
    TicketKeys();
    TicketKeys(const TicketKeys&) = delete;
    TicketKeys& operator=(const TicketKeys&) = delete;

    /// A new current key; the current one becomes the previous; the oldest is
    /// dropped.
    void rotate();
    /// Makes `ctx` encrypt and decrypt its tickets with this ring (which must
    /// outlive it).
    void install(SSL_CTX* ctx);
    /// How many rotations so far (0 at start).
    unsigned long generation() const;

private:
    struct Key {
        std::array<unsigned char, 16> name{};
        std::array<unsigned char, 32> aes{};   // AES-256-CBC
        std::array<unsigned char, 32> hmac{};  // HMAC-SHA256
    };
    static Key make_key();
    static int on_ticket(SSL* s, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                         EVP_MAC_CTX* mac, int enc);

    mutable std::mutex mutex_;
    std::array<Key, kKeys> keys_;  // [0] current, [1] previous
    std::size_t count_ = 1;        // keys in use
    unsigned long generation_ = 0;
};

}  // namespace tether::tls
