// Session ticket key ring; see ticket_keys.hpp. The callback follows
// SSL_CTX_set_tlsext_ticket_key_evp_cb(3): 1 = use (encrypt with) this key,
// 2 = the ticket decrypts but is to be renewed, 0 = unknown key (the ticket
// is ignored: full handshake), -1 = failure.
#include "tether/tls/ticket_keys.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace tether::tls {

namespace {

/// The SSL_CTX ex_data slot holding the ring of a context.
int ring_index() {
    static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

/// Sets the HMAC-SHA256 key of a ticket's MAC.
bool set_mac_key(EVP_MAC_CTX* mac, const std::array<unsigned char, 32>& key) {
    static char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY,
                                          const_cast<unsigned char*>(key.data()), key.size()),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end()};
    return EVP_MAC_CTX_set_params(mac, params) == 1;
}

}  // namespace

TicketKeys::TicketKeys() { keys_[0] = make_key(); }

TicketKeys::Key TicketKeys::make_key() {
    Key k;
    if (RAND_bytes(k.name.data(), static_cast<int>(k.name.size())) != 1 ||
        RAND_bytes(k.aes.data(), static_cast<int>(k.aes.size())) != 1 ||
        RAND_bytes(k.hmac.data(), static_cast<int>(k.hmac.size())) != 1)
        throw std::runtime_error("session ticket key: no random bytes from OpenSSL");
    return k;
}

void TicketKeys::rotate() {
    Key fresh = make_key();
    std::lock_guard lock(mutex_);
    for (std::size_t i = kKeys - 1; i > 0; --i) keys_[i] = keys_[i - 1];
    keys_[0] = fresh;
    count_ = std::min(count_ + 1, kKeys);
    ++generation_;
}

unsigned long TicketKeys::generation() const {
    std::lock_guard lock(mutex_);
    return generation_;
}

void TicketKeys::install(SSL_CTX* ctx) {
    SSL_CTX_set_ex_data(ctx, ring_index(), this);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, &TicketKeys::on_ticket);
}

int TicketKeys::on_ticket(SSL* s, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                          EVP_MAC_CTX* mac, int enc) {
    // Every context of the process holds the same ring: the one the
    // connection is on now (after SNI) is as good as the one it started on.
    auto* self = static_cast<TicketKeys*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), ring_index()));
    if (!self) return -1;
    Key key;
    int result = 1;
    {
        std::lock_guard lock(self->mutex_);
        if (enc) {
            key = self->keys_[0];
        } else {
            std::size_t i = 0;
            while (i < self->count_ && std::memcmp(self->keys_[i].name.data(), name, 16) != 0) ++i;
            if (i == self->count_) return 0;
            key = self->keys_[i];
            result = i == 0 ? 1 : 2;
        }
    }
    const EVP_CIPHER* aes = EVP_aes_256_cbc();
    if (enc) {
        std::memcpy(name, key.name.data(), key.name.size());
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(aes)) != 1) return -1;
        if (EVP_EncryptInit_ex(cipher, aes, nullptr, key.aes.data(), iv) != 1) return -1;
    } else if (EVP_DecryptInit_ex(cipher, aes, nullptr, key.aes.data(), iv) != 1) {
        return -1;
    }
    if (!set_mac_key(mac, key.hmac)) return -1;
    OPENSSL_cleanse(&key, sizeof key);
    return result;
}

}  // namespace tether::tls
