#pragma once
// Test certificates made at run time with the OpenSSL API (ECDSA P-256: fast to make and
// to use): a CA, a server certificate for localhost and 127.0.0.1 signed by it, and the
// broken variants the verification tests need. Made once per process.

#include <string>

namespace galay::test {

/// A certificate and its private key, both PEM.
struct PemPair {
  std::string cert;
  std::string key;
};

struct TestPki {
  PemPair ca;             ///< the trusted CA (self-signed, CA:TRUE)
  PemPair other_ca;       ///< a CA the clients do not trust
  PemPair server;         ///< CN/SAN localhost + IP 127.0.0.1, signed by `ca`
  PemPair alt_server;     ///< SAN alt.test, signed by `ca` (the SNI tests' second name)
  PemPair expired;        ///< localhost, signed by `ca`, expired yesterday
  PemPair not_yet_valid;  ///< localhost, signed by `ca`, valid from tomorrow
  PemPair wrong_name;     ///< SAN wrong.example only, signed by `ca`
  PemPair self_signed;    ///< localhost, self-signed
  PemPair untrusted;      ///< localhost, signed by `other_ca`
  PemPair client;         ///< a client certificate (CN client), signed by `ca`
  PemPair chained;        ///< localhost signed by an intermediate CA; cert = leaf + intermediate
  PemPair chained_leaf;   ///< the same leaf without the intermediate (key included)
};

/// The process's test PKI (made on first use; aborts the test run if OpenSSL fails).
const TestPki& test_pki();

}  // namespace galay::test
