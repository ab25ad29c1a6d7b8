// TicketKeys, the process's session ticket key ring, through real TLS 1.2 and
// 1.3 handshakes over memory BIOs: a ticket is encrypted by the current key
// and decrypted (resumed) by a new server context holding the same ring; it
// survives one rotation (and comes back renewed under the new key), not two;
// a ring that never made the key refuses it (full handshake). Each handshake
// uses a new server SSL_CTX with its session cache off, so only the ticket
// can resume a session.
#include "tether/tls/ticket_keys.hpp"

#include <gtest/gtest.h>

#include <string>

#include "tls_test_util.hpp"

namespace tether::tls {
namespace {

using test::CtxPtr;
using test::handshake;
using test::Outcome;

class TicketKeysTest : public ::testing::TestWithParam<int> {
protected:
    TicketKeysTest()
        : key_(test::make_key()), cert_(test::self_signed(key_.get(), "localhost")) {}

    /// A new server context whose tickets use `ring`, without a session cache.
    CtxPtr server(TicketKeys& ring) {
        CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
        SSL_CTX_use_certificate(ctx.get(), cert_.get());
        SSL_CTX_use_PrivateKey(ctx.get(), key_.get());
        SSL_CTX_set_min_proto_version(ctx.get(), GetParam());
        SSL_CTX_set_max_proto_version(ctx.get(), GetParam());
        SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
        ring.install(ctx.get());
        return ctx;
    }
    CtxPtr client() {
        CtxPtr ctx(SSL_CTX_new(TLS_client_method()));
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
        SSL_CTX_set_min_proto_version(ctx.get(), GetParam());
        SSL_CTX_set_max_proto_version(ctx.get(), GetParam());
        return ctx;
    }
    /// A handshake with a fresh server context of `ring`, offering `offer`.
    Outcome connect(TicketKeys& ring, SSL_SESSION* offer = nullptr) {
        CtxPtr s = server(ring);
        CtxPtr c = client();
        Outcome out = handshake(s.get(), c.get(), offer);
        EXPECT_TRUE(out.done);
        EXPECT_NE(out.session, nullptr);
        return out;
    }
    /// The key name a ticket starts with (OpenSSL's ticket layout).
    static std::string key_name(SSL_SESSION* session) {
        const unsigned char* tick = nullptr;
        size_t len = 0;
        SSL_SESSION_get0_ticket(session, &tick, &len);
        if (!tick || len < 16) return {};
        return std::string(reinterpret_cast<const char*>(tick), 16);
    }

    test::PkeyPtr key_;
    test::X509Ptr cert_;
};

TEST_P(TicketKeysTest, TicketFromTheCurrentKeyResumesOnAnotherContext) {
    TicketKeys ring;
    Outcome first = connect(ring);
    EXPECT_FALSE(first.resumed);
    ASSERT_EQ(key_name(first.session.get()).size(), 16u) << "no ticket was issued";
    Outcome second = connect(ring, first.session.get());
    EXPECT_TRUE(second.resumed);
}

TEST_P(TicketKeysTest, OneRotationKeepsThePreviousKeyAndRenewsTheTicket) {
    TicketKeys ring;
    Outcome first = connect(ring);
    const std::string old_name = key_name(first.session.get());
    ring.rotate();
    EXPECT_EQ(ring.generation(), 1u);
    Outcome second = connect(ring, first.session.get());
    EXPECT_TRUE(second.resumed) << "the previous key no longer decrypts";
    const std::string new_name = key_name(second.session.get());
    ASSERT_EQ(new_name.size(), 16u);
    EXPECT_NE(new_name, old_name) << "the ticket was not renewed under the new key";
    // The renewed ticket is under the current key: it survives the next rotation.
    ring.rotate();
    EXPECT_TRUE(connect(ring, second.session.get()).resumed);
}

TEST_P(TicketKeysTest, TwoRotationsDropTheKeyAndTheTicketIsRefused) {
    TicketKeys ring;
    Outcome first = connect(ring);
    ring.rotate();
    ring.rotate();
    EXPECT_EQ(ring.generation(), 2u);
    Outcome second = connect(ring, first.session.get());
    EXPECT_FALSE(second.resumed) << "a key two rotations old still decrypts";
    // The full handshake gave a new ticket that resumes.
    EXPECT_TRUE(connect(ring, second.session.get()).resumed);
}

TEST_P(TicketKeysTest, UnknownKeyNameIsRefused) {
    TicketKeys ring, other;
    Outcome first = connect(ring);
    EXPECT_FALSE(connect(other, first.session.get()).resumed);
    EXPECT_TRUE(connect(ring, first.session.get()).resumed);
}

TEST(TicketKeys, GenerationCountsRotations) {
    TicketKeys ring;
    EXPECT_EQ(ring.generation(), 0u);
    for (unsigned long i = 1; i <= 5; ++i) {
        ring.rotate();
        EXPECT_EQ(ring.generation(), i);
    }
}

INSTANTIATE_TEST_SUITE_P(Versions, TicketKeysTest,
                         ::testing::Values(TLS1_2_VERSION, TLS1_3_VERSION),
                         [](const ::testing::TestParamInfo<int>& info) {
                             return info.param == TLS1_3_VERSION ? std::string("TLSv1_3")
                                                                 : std::string("TLSv1_2");
                         });

}  // namespace
}  // namespace tether::tls
