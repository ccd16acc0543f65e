// Test PKI with the OpenSSL 3 API (see tls_certs.h).
#include "support/tls_certs.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

namespace galay::test {
namespace {

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "tls_certs: %s failed\n", what);
  std::abort();
}

using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Cert = std::unique_ptr<X509, decltype(&X509_free)>;

Key new_key() {
  EVP_PKEY* k = EVP_EC_gen("P-256");
  if (k == nullptr) die("EVP_EC_gen");
  return {k, &EVP_PKEY_free};
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr || X509_add_ext(cert, ext, -1) != 1) die("X509_add_ext");
  X509_EXTENSION_free(ext);
}

struct Spec {
  const char* cn;
  const char* san = nullptr;  // subjectAltName value, e.g. "DNS:localhost,IP:127.0.0.1"
  bool is_ca = false;
  long not_before_days = -1;  // relative to now
  long not_after_days = 365;
  const char* eku = nullptr;  // extendedKeyUsage
};

// Make a certificate for `key`, signed by `issuer_key` (issuer_cert null: self-signed).
Cert make_cert(const Spec& spec, EVP_PKEY* key, X509* issuer_cert, EVP_PKEY* issuer_key) {
  static long serial = 1;
  Cert cert(X509_new(), &X509_free);
  if (!cert) die("X509_new");
  X509* c = cert.get();
  X509_set_version(c, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c), serial++);
  X509_gmtime_adj(X509_getm_notBefore(c), spec.not_before_days * 24 * 3600);
  X509_gmtime_adj(X509_getm_notAfter(c), spec.not_after_days * 24 * 3600);
  X509_set_pubkey(c, key);
  X509_NAME* name = X509_get_subject_name(c);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("galay-kernel tests"), -1,
                             -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(spec.cn), -1, -1, 0);
  X509* issuer = issuer_cert != nullptr ? issuer_cert : c;
  X509_set_issuer_name(c, X509_get_subject_name(issuer));
  if (spec.is_ca) {
    add_ext(c, issuer, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(c, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else if (issuer_cert != nullptr) {
    add_ext(c, issuer, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(c, issuer, NID_key_usage, "critical,digitalSignature");
    add_ext(c, issuer, NID_ext_key_usage, spec.eku != nullptr ? spec.eku : "serverAuth");
  }  // a self-signed leaf has no key usage: OpenSSL then sees it as self-signed (not signing-restricted)
  add_ext(c, issuer, NID_subject_key_identifier, "hash");
  if (issuer_cert != nullptr) add_ext(c, issuer, NID_authority_key_identifier, "keyid:always");
  if (spec.san != nullptr) add_ext(c, issuer, NID_subject_alt_name, spec.san);
  if (X509_sign(c, issuer_key != nullptr ? issuer_key : key, EVP_sha256()) == 0) die("X509_sign");
  return cert;
}

std::string pem_of(X509* cert) {
  BIO* b = BIO_new(BIO_s_mem());
  if (b == nullptr || PEM_write_bio_X509(b, cert) != 1) die("PEM_write_bio_X509");
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  std::string out(data, static_cast<std::size_t>(n));
  BIO_free(b);
  return out;
}

std::string pem_of(EVP_PKEY* key) {
  BIO* b = BIO_new(BIO_s_mem());
  if (b == nullptr || PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    die("PEM_write_bio_PrivateKey");
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  std::string out(data, static_cast<std::size_t>(n));
  BIO_free(b);
  return out;
}

PemPair leaf(const Spec& spec, X509* ca_cert, EVP_PKEY* ca_key) {
  Key key = new_key();
  Cert cert = make_cert(spec, key.get(), ca_cert, ca_key);
  return {pem_of(cert.get()), pem_of(key.get())};
}

TestPki make_pki() {
  TestPki pki;
  Key ca_key = new_key();
  Cert ca = make_cert({.cn = "galay test CA", .is_ca = true, .not_after_days = 3650}, ca_key.get(), nullptr, nullptr);
  pki.ca = {pem_of(ca.get()), pem_of(ca_key.get())};

  Key other_key = new_key();
  Cert other =
      make_cert({.cn = "galay other CA", .is_ca = true, .not_after_days = 3650}, other_key.get(), nullptr, nullptr);
  pki.other_ca = {pem_of(other.get()), pem_of(other_key.get())};

  const char* local_san = "DNS:localhost,IP:127.0.0.1";
  pki.server = leaf({.cn = "localhost", .san = local_san}, ca.get(), ca_key.get());
  pki.alt_server = leaf({.cn = "alt.test", .san = "DNS:alt.test"}, ca.get(), ca_key.get());
  pki.expired =
      leaf({.cn = "localhost", .san = local_san, .not_before_days = -30, .not_after_days = -1}, ca.get(), ca_key.get());
  pki.not_yet_valid =
      leaf({.cn = "localhost", .san = local_san, .not_before_days = 1, .not_after_days = 30}, ca.get(), ca_key.get());
  pki.wrong_name = leaf({.cn = "wrong.example", .san = "DNS:wrong.example"}, ca.get(), ca_key.get());
  pki.untrusted = leaf({.cn = "localhost", .san = local_san}, other.get(), other_key.get());
  pki.client = leaf({.cn = "client", .eku = "clientAuth"}, ca.get(), ca_key.get());

  Key mid_key = new_key();
  Cert mid = make_cert({.cn = "galay intermediate CA", .is_ca = true, .not_after_days = 3650}, mid_key.get(), ca.get(),
                       ca_key.get());
  pki.chained_leaf = leaf({.cn = "localhost", .san = local_san}, mid.get(), mid_key.get());
  pki.chained = {pki.chained_leaf.cert + pem_of(mid.get()), pki.chained_leaf.key};

  Key self_key = new_key();
  Cert self = make_cert({.cn = "localhost", .san = local_san}, self_key.get(), nullptr, nullptr);
  pki.self_signed = {pem_of(self.get()), pem_of(self_key.get())};
  return pki;
}

}  // namespace

const TestPki& test_pki() {
  static const TestPki pki = make_pki();
  return pki;
}

}  // namespace galay::test
