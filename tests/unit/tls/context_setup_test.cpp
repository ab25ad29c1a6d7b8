// The context setup steps shared by the server and upstream contexts: the
// protocol range, the cipher list, a certificate with its key (files made by
// the test: a fresh EC key and a self-signed certificate).
#include "tether/tls/context_setup.hpp"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include "tls_test_util.hpp"

namespace tether::tls {
namespace {

using test::CtxPtr;

CtxPtr server_ctx() { return CtxPtr(SSL_CTX_new(TLS_server_method())); }

std::pair<int, int> range_of(const std::vector<std::string>& protocols) {
    CtxPtr ctx = server_ctx();
    set_protocol_range(ctx.get(), protocols);
    return {static_cast<int>(SSL_CTX_get_min_proto_version(ctx.get())),
            static_cast<int>(SSL_CTX_get_max_proto_version(ctx.get()))};
}

TEST(ProtocolRange, LowestAndHighestOfTheList) {
    EXPECT_EQ(range_of({"TLSv1.2", "TLSv1.3"}), std::make_pair(TLS1_2_VERSION, TLS1_3_VERSION));
    EXPECT_EQ(range_of({"TLSv1.3", "TLSv1.2"}), std::make_pair(TLS1_2_VERSION, TLS1_3_VERSION));
    EXPECT_EQ(range_of({"TLSv1.3"}), std::make_pair(TLS1_3_VERSION, TLS1_3_VERSION));
    EXPECT_EQ(range_of({"TLSv1.2"}), std::make_pair(TLS1_2_VERSION, TLS1_2_VERSION));
}

TEST(ProtocolRange, EmptyListIsTls12To13) {
    EXPECT_EQ(range_of({}), std::make_pair(TLS1_2_VERSION, TLS1_3_VERSION));
}

TEST(Ciphers, EmptyKeepsOpenSslDefaultAndBadListNamesIt) {
    CtxPtr ctx = server_ctx();
    EXPECT_NO_THROW(set_ciphers(ctx.get(), ""));
    EXPECT_NO_THROW(set_ciphers(ctx.get(), "ECDHE-ECDSA-AES128-GCM-SHA256"));
    try {
        set_ciphers(ctx.get(), "NO-SUCH-CIPHER");
        FAIL() << "a cipher list OpenSSL does not know was taken";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("ciphers 'NO-SUCH-CIPHER': "), std::string::npos)
            << e.what();
    }
}

class CertificateFiles : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("tether-tls-unit-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::create_directories(dir_);
        key_a_ = test::make_key();
        key_b_ = test::make_key();
        test::X509Ptr cert = test::self_signed(key_a_.get(), "localhost");
        write(cert_path(), [&](FILE* f) { return PEM_write_X509(f, cert.get()); });
        write(key_a_path(), [&](FILE* f) {
            return PEM_write_PrivateKey(f, key_a_.get(), nullptr, nullptr, 0, nullptr, nullptr);
        });
        write(key_b_path(), [&](FILE* f) {
            return PEM_write_PrivateKey(f, key_b_.get(), nullptr, nullptr, 0, nullptr, nullptr);
        });
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    template <class Fn>
    void write(const std::string& path, Fn fn) {
        FILE* f = std::fopen(path.c_str(), "w");
        ASSERT_NE(f, nullptr) << path;
        ASSERT_EQ(fn(f), 1) << path;
        std::fclose(f);
    }
    std::string cert_path() const { return (dir_ / "cert.pem").string(); }
    std::string key_a_path() const { return (dir_ / "key_a.pem").string(); }
    std::string key_b_path() const { return (dir_ / "key_b.pem").string(); }

    std::filesystem::path dir_;
    test::PkeyPtr key_a_, key_b_;
};

TEST_F(CertificateFiles, MatchingKeyLoads) {
    CtxPtr ctx = server_ctx();
    EXPECT_NO_THROW(use_certificate_and_key(ctx.get(), cert_path(), key_a_path()));
    EXPECT_NE(SSL_CTX_get0_certificate(ctx.get()), nullptr);
}

TEST_F(CertificateFiles, OtherKeyIsRefusedNamingBothFiles) {
    CtxPtr ctx = server_ctx();
    try {
        use_certificate_and_key(ctx.get(), cert_path(), key_b_path());
        FAIL() << "a key of another certificate was taken";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("private key " + key_b_path() +
                                             " does not match certificate " + cert_path()),
                  std::string::npos)
            << e.what();
    }
}

TEST_F(CertificateFiles, MissingCertificateIsNamed) {
    CtxPtr ctx = server_ctx();
    const std::string missing = (dir_ / "missing.pem").string();
    try {
        use_certificate_and_key(ctx.get(), missing, key_a_path());
        FAIL() << "a missing certificate file was taken";
    } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()).rfind("certificate " + missing + ": ", 0), 0u) << e.what();
    }
}

TEST(OpenSslReason, EmptyQueueSaysUnknownError) {
    ERR_clear_error();
    EXPECT_EQ(openssl_reason(), "unknown error");
}

}  // namespace
}  // namespace tether::tls
