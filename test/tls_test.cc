// TlsStream and TlsContext on every backend: handshakes and bulk transfers, every
// verification failure as its own error, ALPN, SNI, resumption, close orders and truncation,
// peers that are not TLS or stall, records split over 1-byte reads, small socket buffers,
// cancellation and timeouts in every phase, the one-reader-one-writer rule, KeyUpdate
// (a read that has to write), pooled receive, 1,000 concurrent handshakes.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "support/harness.h"
#include "support/tls_certs.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// 1,000 concurrent handshakes take ~1 s here; under ASan+UBSan each takes several times
// longer on this 2-core machine, so the sanitizer build runs 300 (same code paths).
constexpr int kConcurrentHandshakes = kSanitized ? 300 : 1000;

class TlsTest : public BackendTest {};

// ---- contexts ----

TlsContext server_ctx(const PemPair& id = test_pki().server, const std::vector<std::string>& alpn = {}) {
  auto ctx = TlsContext::create(TlsRole::server);
  EXPECT_TRUE(ctx);
  EXPECT_TRUE(ctx->use_certificate_chain_pem(id.cert));
  EXPECT_TRUE(ctx->use_private_key_pem(id.key));
  if (!alpn.empty()) {
    EXPECT_TRUE(ctx->set_alpn(alpn));
  }
  return std::move(*ctx);
}

TlsContext client_ctx(const std::vector<std::string>& alpn = {}) {
  auto ctx = TlsContext::create(TlsRole::client);
  EXPECT_TRUE(ctx);
  EXPECT_TRUE(ctx->add_ca_pem(test_pki().ca.cert));
  if (!alpn.empty()) {
    EXPECT_TRUE(ctx->set_alpn(alpn));
  }
  return std::move(*ctx);
}

TlsClientOptions named(std::string name, TlsSession session = {}, BufferPool* pool = nullptr) {
  TlsClientOptions o;
  o.server_name = std::move(name);
  o.session = std::move(session);
  o.receive_pool = pool;
  return o;
}
TlsClientOptions to_localhost() { return named("localhost"); }
TlsServerOptions pooled(BufferPool* pool) {
  TlsServerOptions o;
  o.receive_pool = pool;
  return o;
}
// (GCC 12 miscompiles brace-init lists whose temporaries live across a co_await, so the
// coroutines below build ALPN lists and such in named variables first.)

// ---- helpers (captureless coroutines: their arguments live in their frames) ----

Task<Expected<void>> handshake_of(TlsStream* s, Timeout t) {
  auto r = co_await s->handshake(t);
  co_return r;
}

Task<Expected<std::size_t>> recv_of(TlsStream* s, std::span<std::byte> buf, Timeout t) {
  auto r = co_await s->recv(buf, t);
  co_return r;
}

Task<Expected<std::size_t>> send_all_of(TlsStream* s, std::span<const std::byte> buf, Timeout t) {
  auto r = co_await s->send_all(buf, t);
  co_return r;
}

Task<Expected<void>> shutdown_of(TlsStream* s, Timeout t) {
  auto r = co_await s->shutdown(t);
  co_return r;
}

struct TlsPair {
  TlsStream client;
  TlsStream server;
  Expected<void> client_result;
  Expected<void> server_result;
  bool ok() const { return client_result.has_value() && server_result.has_value(); }
};

// A loopback TCP pair wrapped in TLS, both handshakes run concurrently.
Task<TlsPair> tls_pair(TlsContext cctx, TlsContext sctx, TlsClientOptions copts = to_localhost(),
                       TlsServerOptions sopts = {}) {
  auto [c, s] = co_await loopback_tcp_pair();
  TlsPair p;
  auto client = TlsStream::client(cctx, std::move(c), copts);
  auto server = TlsStream::server(sctx, std::move(s), sopts);
  EXPECT_TRUE(client) << client.error().message();
  EXPECT_TRUE(server) << server.error().message();
  p.client = std::move(*client);
  p.server = std::move(*server);
  auto [cr, sr] = co_await when_all(handshake_of(&p.client, 5s), handshake_of(&p.server, 5s));
  p.client_result = cr;
  p.server_result = sr;
  co_return p;
}

std::string as_string(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// Receive exactly `n` bytes (or fewer if the stream ends or fails).
Task<std::string> recv_exactly(TlsStream* s, std::size_t n, Timeout t = 5s) {
  std::string out;
  std::vector<std::byte> buf(16384);
  while (out.size() < n) {
    auto r = co_await s->recv(std::span(buf.data(), std::min(buf.size(), n - out.size())), t);
    EXPECT_TRUE(r) << r.error().message();
    if (!r || *r == 0) break;
    out += as_string(std::span(buf.data(), *r));
  }
  co_return out;
}

// The byte at `offset` of a pattern stream (differs per `seed`, never periodic on 256).
std::byte pattern_at(std::uint64_t offset, std::uint64_t seed) {
  const std::uint64_t x = offset ^ (offset >> 7) ^ (offset >> 17) ^ seed;
  return static_cast<std::byte>(x * 0x9E3779B1u >> 24);
}

void fill_pattern(std::span<std::byte> buf, std::uint64_t offset, std::uint64_t seed) {
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = pattern_at(offset + i, seed);
}

// Send `total` pattern bytes with send_all in pieces of `piece`.
Task<bool> send_pattern(TlsStream* s, std::size_t total, std::uint64_t seed, std::size_t piece = 1 << 20) {
  std::vector<std::byte> buf(piece);
  for (std::size_t off = 0; off < total; off += piece) {
    const std::size_t n = std::min(piece, total - off);
    fill_pattern(std::span(buf.data(), n), off, seed);
    auto r = co_await s->send_all(std::span<const std::byte>(buf.data(), n), 30s);
    EXPECT_TRUE(r) << r.error().message();
    if (!r) co_return false;
  }
  co_return true;
}

// Receive `total` bytes and check them against the pattern; yields the bytes that matched.
Task<std::size_t> recv_pattern(TlsStream* s, std::size_t total, std::uint64_t seed, std::size_t piece = 65536) {
  std::vector<std::byte> buf(piece);
  std::size_t off = 0;
  while (off < total) {
    auto r = co_await s->recv(std::span(buf.data(), std::min(piece, total - off)), 30s);
    EXPECT_TRUE(r) << r.error().message();
    if (!r || *r == 0) break;
    for (std::size_t i = 0; i < *r; ++i) {
      if (buf[i] != pattern_at(off + i, seed)) {
        ADD_FAILURE() << "byte " << off + i << " differs";
        co_return off + i;
      }
    }
    off += *r;
  }
  co_return off;
}

// Both ends close cleanly: client close_notify first, then the server's.
Task<void> clean_close(TlsStream* first, TlsStream* second) {
  std::byte b[16];
  EXPECT_TRUE(co_await first->shutdown(5s));
  auto n = co_await second->recv(b, 5s);
  EXPECT_TRUE(n && *n == 0) << (n ? "data" : n.error().message());
  EXPECT_TRUE(co_await second->shutdown(5s));
  n = co_await first->recv(b, 5s);
  EXPECT_TRUE(n && *n == 0) << (n ? "data" : n.error().message());
}

// ---- handshake and bulk ----

TEST_P(TlsTest, HandshakeAnd64MiBBothWaysByteForByte) {
  auto body = []() -> Task<void> {
    TlsPair p = co_await tls_pair(client_ctx(), server_ctx());
    CO_ASSERT_TRUE(p.ok());
    EXPECT_TRUE(p.client.handshake_done());
    EXPECT_EQ(p.client.protocol(), "TLSv1.3");
    EXPECT_EQ(p.server.protocol(), "TLSv1.3");
    EXPECT_FALSE(p.client.cipher().empty());
    EXPECT_FALSE(p.client.resumed());
    EXPECT_EQ(p.client.alpn(), "");
    EXPECT_EQ(p.server.server_name(), "localhost");

    constexpr std::size_t kTotal = 64u << 20;
    // Full duplex: each end has a writer and a reader running at once.
    auto [c_sent, s_sent, c_got, s_got] =
        co_await when_all(send_pattern(&p.client, kTotal, 1), send_pattern(&p.server, kTotal, 2),
                          recv_pattern(&p.client, kTotal, 2), recv_pattern(&p.server, kTotal, 1));
    EXPECT_TRUE(c_sent);
    EXPECT_TRUE(s_sent);
    EXPECT_EQ(c_got, kTotal);
    EXPECT_EQ(s_got, kTotal);
    co_await clean_close(&p.client, &p.server);
  };
  run(body(), 60s);
}

TEST_P(TlsTest, WorksOverUnixStreams) {
  auto body = []() -> Task<void> {
    auto pair = UnixStream::pair();
    CO_ASSERT_TRUE(pair);
    auto client = TlsStream::client(client_ctx(), std::move(pair->first), to_localhost());
    auto server = TlsStream::server(server_ctx(), std::move(pair->second));
    CO_ASSERT_TRUE(client && server);
    auto [cr, sr] = co_await when_all(handshake_of(&*client, 5s), handshake_of(&*server, 5s));
    CO_ASSERT_TRUE(cr && sr);
    EXPECT_TRUE(co_await client->send_all("over a unix socket", 5s));
    EXPECT_EQ(co_await recv_exactly(&*server, 18), "over a unix socket");
    co_await clean_close(&*server, &*client);
  };
  run(body());
}

TEST_P(TlsTest, ContextFromPemFilesAndIpAddressCheck) {
  auto body = []() -> Task<void> {
    TempDir tmp;
    const std::string d = tmp.create("galay-tls");
    EXPECT_FALSE(d.empty()) << tmp.error();
    CO_ASSERT_FALSE(d.empty());
    auto write = [&](const std::string& name, const std::string& text) {
      std::ofstream(d + "/" + name) << text;
      return d + "/" + name;
    };
    const std::string cert = write("cert.pem", test_pki().server.cert);
    const std::string key = write("key.pem", test_pki().server.key);
    const std::string ca = write("ca.pem", test_pki().ca.cert);

    auto sctx = TlsContext::create(TlsRole::server);
    auto cctx = TlsContext::create(TlsRole::client);
    CO_ASSERT_TRUE(sctx && cctx);
    EXPECT_TRUE(sctx->use_certificate_chain_file(cert));
    EXPECT_TRUE(sctx->use_private_key_file(key));
    EXPECT_TRUE(cctx->add_ca_file(ca));
    for (const std::string* f : std::array{&cert, &key, &ca}) ::unlink(f->c_str());  // loaded: not read again

    // Verified against the certificate's IP SAN (and no SNI is sent for an address).
    TlsPair p = co_await tls_pair(*cctx, *sctx, named("127.0.0.1"));
    EXPECT_TRUE(p.ok()) << (p.client_result ? "" : p.client_result.error().message());
    EXPECT_EQ(p.server.server_name(), "");
    // The alt.test certificate has no 127.0.0.1.
    TlsPair q = co_await tls_pair(*cctx, server_ctx(test_pki().alt_server), named("127.0.0.1"));
    CO_ASSERT_FALSE(q.client_result);
    EXPECT_EQ(q.client_result.error(), TlsError::host_name_mismatch) << q.client_result.error().message();
  };
  run(body());
}

// ---- verification failures: each its own error ----

struct VerifyCase {
  const char* what;
  const PemPair* server;
  TlsError expected;
  long verify_code;  // the X509_V_ERR_* whose OpenSSL text the message must contain
};

TEST_P(TlsTest, EveryVerificationFailureHasItsOwnError) {
  auto body = []() -> Task<void> {
    const TestPki& pki = test_pki();
    const std::array<VerifyCase, 5> cases = {{
        {"expired", &pki.expired, TlsError::certificate_expired, X509_V_ERR_CERT_HAS_EXPIRED},
        {"not yet valid", &pki.not_yet_valid, TlsError::certificate_not_yet_valid, X509_V_ERR_CERT_NOT_YET_VALID},
        {"wrong name", &pki.wrong_name, TlsError::host_name_mismatch, X509_V_ERR_HOSTNAME_MISMATCH},
        {"self-signed", &pki.self_signed, TlsError::self_signed, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT},
        {"unknown CA", &pki.untrusted, TlsError::unknown_ca, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY},
    }};
    const std::array kinds = {TlsError::certificate_expired, TlsError::certificate_not_yet_valid,
                              TlsError::host_name_mismatch,  TlsError::self_signed,
                              TlsError::unknown_ca,          TlsError::protocol_version,
                              TlsError::handshake_failed,    TlsError::not_tls,
                              TlsError::unexpected_eof};
    for (const VerifyCase& c : cases) {
      SCOPED_TRACE(c.what);
      const int fds = open_fd_count();
      {
        TlsPair p = co_await tls_pair(client_ctx(), server_ctx(*c.server));
        CO_ASSERT_FALSE(p.client_result);
        const std::error_code ec = p.client_result.error();
        EXPECT_EQ(ec.category(), tls_category());
        EXPECT_EQ(ec, c.expected) << ec.message();
        EXPECT_EQ(ec, TlsError::certificate_verify_failed);
        for (TlsError k : kinds) {
          const bool same = k == c.expected || (c.expected == TlsError::self_signed && k == TlsError::unknown_ca);
          EXPECT_EQ(ec == k, same) << ec.message() << " vs kind " << static_cast<int>(k);
        }
        EXPECT_NE(ec.message().find(X509_verify_cert_error_string(c.verify_code)), std::string::npos) << ec.message();
        EXPECT_FALSE(p.client.last_error_detail().empty());
        // The server hears about it through the client's alert (or the closed connection).
        EXPECT_FALSE(p.server_result);
        // A failed handshake is final.
        auto again = co_await p.client.handshake(1s);
        EXPECT_FALSE(again);
        std::byte b[4];
        auto r = co_await p.client.recv(b, 1s);
        CO_ASSERT_FALSE(r);
        EXPECT_EQ(r.error(), ec);
      }
      EXPECT_EQ(open_fd_count(), fds);
    }
  };
  run(body());
}

TEST_P(TlsTest, CertificateChainWithAnIntermediate) {
  auto body = []() -> Task<void> {
    TlsPair p = co_await tls_pair(client_ctx(), server_ctx(test_pki().chained));
    EXPECT_TRUE(p.client_result) << p.client_result.error().message();
    EXPECT_TRUE(p.ok());
    // Without the intermediate the client cannot reach its trusted root.
    TlsPair q = co_await tls_pair(client_ctx(), server_ctx(test_pki().chained_leaf));
    CO_ASSERT_FALSE(q.client_result);
    EXPECT_EQ(q.client_result.error(), TlsError::unknown_ca) << q.client_result.error().message();
    EXPECT_NE(q.client_result.error(), TlsError::self_signed);
  };
  run(body());
}

TEST_P(TlsTest, ExpiredCertificateAlertReachesTheServer) {
  auto body = []() -> Task<void> {
    TlsPair p = co_await tls_pair(client_ctx(), server_ctx(test_pki().expired));
    CO_ASSERT_FALSE(p.server_result);
    EXPECT_EQ(p.server_result.error(), TlsError::certificate_expired) << p.server_result.error().message();
    EXPECT_NE(p.server_result.error().message().find("certificate expired"), std::string::npos)
        << p.server_result.error().message();
  };
  run(body());
}

TEST_P(TlsTest, ProtocolVersionMismatch) {
  auto body = []() -> Task<void> {
    TlsContext cctx = client_ctx();
    EXPECT_TRUE(cctx.set_min_version(TlsVersion::tls1_3));
    TlsContext sctx = server_ctx();
    EXPECT_TRUE(sctx.set_max_version(TlsVersion::tls1_2));
    TlsPair p = co_await tls_pair(cctx, sctx);
    CO_ASSERT_FALSE(p.client_result);
    CO_ASSERT_FALSE(p.server_result);
    EXPECT_EQ(p.client_result.error(), TlsError::protocol_version) << p.client_result.error().message();
    EXPECT_EQ(p.server_result.error(), TlsError::protocol_version) << p.server_result.error().message();
    EXPECT_NE(p.client_result.error(), TlsError::handshake_failed);
  };
  run(body());
}

TEST_P(TlsTest, NoSharedCipherIsHandshakeFailure) {
  auto body = []() -> Task<void> {
    TlsContext cctx = client_ctx();
    EXPECT_TRUE(cctx.set_max_version(TlsVersion::tls1_2));
    // RSA-only suites against an ECDSA certificate.
    EXPECT_EQ(SSL_CTX_set_cipher_list(cctx.native_handle(), "ECDHE-RSA-AES128-GCM-SHA256"), 1);
    TlsPair p = co_await tls_pair(cctx, server_ctx());
    CO_ASSERT_FALSE(p.client_result);
    CO_ASSERT_FALSE(p.server_result);
    EXPECT_EQ(p.server_result.error(), TlsError::handshake_failed) << p.server_result.error().message();
    EXPECT_EQ(p.client_result.error(), TlsError::handshake_failed) << p.client_result.error().message();
    EXPECT_NE(p.server_result.error().message().find("no shared cipher"), std::string::npos)
        << p.server_result.error().message();
  };
  run(body());
}

TEST_P(TlsTest, ClientCertificateRequiredAndGiven) {
  auto body = []() -> Task<void> {
    TlsContext sctx = server_ctx();
    EXPECT_TRUE(sctx.add_ca_pem(test_pki().ca.cert));
    sctx.set_verify_peer(true);
    // Without a client certificate: the server refuses. In TLS 1.3 the client's handshake
    // is over before the server decides, so the client hears it on its first recv().
    {
      TlsPair p = co_await tls_pair(client_ctx(), sctx);
      CO_ASSERT_FALSE(p.server_result);
      EXPECT_EQ(p.server_result.error(), TlsError::certificate_verify_failed) << p.server_result.error().message();
      if (p.client_result) {
        std::byte b[8];
        auto r = co_await p.client.recv(b, 5s);
        CO_ASSERT_FALSE(r);
        EXPECT_EQ(r.error(), TlsError::certificate_verify_failed) << r.error().message();
      }
    }
    // With one.
    TlsContext cctx = client_ctx();
    EXPECT_TRUE(cctx.use_certificate_chain_pem(test_pki().client.cert));
    EXPECT_TRUE(cctx.use_private_key_pem(test_pki().client.key));
    TlsPair p = co_await tls_pair(cctx, sctx);
    EXPECT_TRUE(p.ok());
    EXPECT_NE(SSL_get0_peer_certificate(p.server.native_handle()), nullptr);
  };
  run(body());
}

// ---- peers that are not TLS ----

// Accept one TCP connection, optionally read what the client sends, write `reply`, close.
Task<void> plain_server(TcpSocket* listener, std::string reply, bool read_first) {
  auto conn = co_await listener->accept(5s);
  if (!conn) co_return;
  if (read_first) {
    std::byte b[4096];
    (void)co_await conn->recv(b, 5s);
  }
  if (!reply.empty()) (void)co_await conn->send_all(reply, 5s);
  co_await sleep_for(20ms);
  (void)co_await conn->close();
}

Task<Expected<void>> tls_client_to(SocketAddress addr, Timeout t) {
  auto sock = TcpSocket::open();
  if (!sock) co_return make_error(sock.error());
  auto c = co_await sock->connect(addr, 5s);
  if (!c) co_return make_error(c.error());
  auto tls = TlsStream::client(client_ctx(), std::move(*sock), to_localhost());
  if (!tls) co_return make_error(tls.error());
  auto r = co_await tls->handshake(t);
  co_return r;
}

TEST_P(TlsTest, PlainTextServerIsNotTls) {
  auto body = []() -> Task<void> {
    TcpSocket listener = loopback_listener();
    auto [unit, r] =
        co_await when_all(plain_server(&listener, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", true),
                          tls_client_to(*listener.local_address(), 5s));
    (void)unit;
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), TlsError::not_tls) << r.error().message();
    EXPECT_NE(r.error().message().find("wrong version number"), std::string::npos) << r.error().message();
  };
  run(body());
}

TEST_P(TlsTest, PeerThatClosesAtOnceIsUnexpectedEof) {
  auto body = []() -> Task<void> {
    TcpSocket listener = loopback_listener();
    auto [unit, r] =
        co_await when_all(plain_server(&listener, "", false), tls_client_to(*listener.local_address(), 5s));
    (void)unit;
    CO_ASSERT_FALSE(r);
    // Either the EOF (normal) or a reset, if the close raced the ClientHello.
    if (r.error() != std::errc::connection_reset) {
      EXPECT_EQ(r.error(), TlsError::unexpected_eof) << r.error().message();
      EXPECT_NE(r.error(), TlsError::not_tls);
    }
  };
  run(body());
}

// A TLS server on one accepted connection; yields its handshake result.
Task<Expected<void>> tls_server_on(TcpSocket* listener, Timeout t) {
  auto conn = co_await listener->accept(5s);
  if (!conn) co_return make_error(conn.error());
  auto tls = TlsStream::server(server_ctx(), std::move(*conn));
  if (!tls) co_return make_error(tls.error());
  auto r = co_await tls->handshake(t);
  co_return r;
}

// Connect, send `bytes`, then keep the connection open for `hold`.
Task<void> plain_client(SocketAddress addr, std::string bytes, std::chrono::milliseconds hold) {
  auto sock = TcpSocket::open();
  if (!sock || !co_await sock->connect(addr, 5s)) co_return;
  if (!bytes.empty()) (void)co_await sock->send_all(bytes, 5s);
  co_await sleep_for(hold);
}

TEST_P(TlsTest, PlainHttpClientAndGarbageAreNotTls) {
  auto body = []() -> Task<void> {
    const std::array<const char*, 2> inputs = {"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
                                               "hello, this is not TLS at all\n"};
    for (const char* input : inputs) {
      SCOPED_TRACE(input);
      TcpSocket listener = loopback_listener();
      auto [r, unit] =
          co_await when_all(tls_server_on(&listener, 5s), plain_client(*listener.local_address(), input, 200ms));
      (void)unit;
      CO_ASSERT_FALSE(r);
      EXPECT_EQ(r.error(), TlsError::not_tls) << r.error().message();
    }
  };
  run(body());
}

// ---- stalls, timeouts and leaks ----

TEST_P(TlsTest, StalledServerTimesOutWithoutLeaks) {
  auto body = []() -> Task<void> {
    const int fds = open_fd_count();
    const std::size_t live = TlsStream::live_count();
    {
      TcpSocket listener = loopback_listener();
      // The "server" reads the ClientHello and never answers.
      auto stall = [](TcpSocket* l) -> Task<void> {
        auto conn = co_await l->accept(5s);
        if (!conn) co_return;
        std::byte b[4096];
        (void)co_await conn->recv(b, 5s);
        co_await sleep_for(500ms);
      };
      const auto start = Clock::now();
      auto [unit, r] = co_await when_all(stall(&listener), tls_client_to(*listener.local_address(), 150ms));
      (void)unit;
      CO_ASSERT_FALSE(r);
      EXPECT_EQ(r.error(), std::errc::timed_out) << r.error().message();
      EXPECT_LT(Clock::now() - start, 2s);
    }
    EXPECT_EQ(TlsStream::live_count(), live);
    EXPECT_EQ(open_fd_count(), fds);
  };
  run(body());
}

TEST_P(TlsTest, StalledClientTimesOutOnTheServer) {
  auto body = []() -> Task<void> {
    const int fds = open_fd_count();
    const std::size_t live = TlsStream::live_count();
    {
      TcpSocket listener = loopback_listener();
      // The first bytes of a handshake record header, then nothing.
      auto [r, unit] = co_await when_all(tls_server_on(&listener, 150ms),
                                         plain_client(*listener.local_address(), "\x16\x03\x01", 400ms));
      (void)unit;
      CO_ASSERT_FALSE(r);
      EXPECT_EQ(r.error(), std::errc::timed_out) << r.error().message();
    }
    EXPECT_EQ(TlsStream::live_count(), live);
    EXPECT_EQ(open_fd_count(), fds);
  };
  run(body());
}

// ---- ALPN, SNI, resumption ----

TEST_P(TlsTest, AlpnServerPreferenceAndNoOverlap) {
  auto body = []() -> Task<void> {
    const std::vector<std::string> h2_h1 = {"h2", "http/1.1"}, h1_h2 = {"http/1.1", "h2"};
    const std::vector<std::string> h2 = {"h2"}, h1 = {"http/1.1"};
    {
      TlsContext c = client_ctx(h2_h1), s = server_ctx(test_pki().server, h1_h2);
      TlsPair p = co_await tls_pair(c, s);
      CO_ASSERT_TRUE(p.ok());
      EXPECT_EQ(p.client.alpn(), "http/1.1");
      EXPECT_EQ(p.server.alpn(), "http/1.1");
    }
    {
      TlsContext c = client_ctx(h2), s = server_ctx(test_pki().server, h1);
      TlsPair p = co_await tls_pair(c, s);
      CO_ASSERT_TRUE(p.ok());  // no overlap: no ALPN, no failure
      EXPECT_EQ(p.client.alpn(), "");
      EXPECT_EQ(p.server.alpn(), "");
    }
    {
      TlsContext c = client_ctx(), s = server_ctx(test_pki().server, h1);
      TlsPair p = co_await tls_pair(c, s);
      CO_ASSERT_TRUE(p.ok());
      EXPECT_EQ(p.client.alpn(), "");
    }
  };
  run(body());
}

TEST_P(TlsTest, SniSelectsTheContextByMapAndByCallback) {
  auto body = []() -> Task<void> {
    const std::vector<std::string> alt_protos = {"alt-proto"}, offered = {"h2", "alt-proto"};
    TlsContext alt = server_ctx(test_pki().alt_server, alt_protos);
    // By table.
    {
      TlsContext sctx = server_ctx();
      EXPECT_TRUE(sctx.add_server_name("ALT.test", alt));
      TlsContext cctx = client_ctx(offered);
      TlsPair p = co_await tls_pair(cctx, sctx, named("alt.test"));
      EXPECT_TRUE(p.client_result) << p.client_result.error().message();
      CO_ASSERT_TRUE(p.ok());
      EXPECT_EQ(p.server.server_name(), "alt.test");
      EXPECT_EQ(p.client.server_name(), "alt.test");
      EXPECT_EQ(p.client.alpn(), "alt-proto");    // the chosen context's ALPN list applies
      TlsPair d = co_await tls_pair(cctx, sctx);  // localhost: the default
      CO_ASSERT_TRUE(d.ok());
      EXPECT_EQ(d.server.server_name(), "localhost");
      EXPECT_EQ(d.client.alpn(), "");
    }
    // By wildcard entry.
    {
      TlsContext sctx = server_ctx();
      EXPECT_TRUE(sctx.add_server_name("*.test", alt));
      TlsPair p = co_await tls_pair(client_ctx(), sctx, named("alt.test"));
      EXPECT_TRUE(p.ok());
    }
    // By callback.
    {
      TlsContext sctx = server_ctx();
      int asked = 0;
      sctx.set_server_name_callback([&asked, alt](std::string_view name) -> std::optional<TlsContext> {
        ++asked;
        if (name == "alt.test") return alt;
        return std::nullopt;
      });
      TlsPair p = co_await tls_pair(client_ctx(), sctx, named("alt.test"));
      EXPECT_TRUE(p.ok());
      TlsPair d = co_await tls_pair(client_ctx(), sctx);
      EXPECT_TRUE(d.ok());
      EXPECT_EQ(asked, 2);
    }
    // Without SNI selection the alt.test name fails verification against localhost's certificate.
    TlsPair bad = co_await tls_pair(client_ctx(), server_ctx(), named("alt.test"));
    CO_ASSERT_FALSE(bad.client_result);
    EXPECT_EQ(bad.client_result.error(), TlsError::host_name_mismatch);
  };
  run(body());
}

// One connection that reads the server's greeting (TLS 1.3 tickets come with it); yields
// the session and whether the handshake was a resumption on both ends.
struct ResumeResult {
  TlsSession session;
  bool client_resumed = false;
  bool server_resumed = false;
};
Task<ResumeResult> resume_round(TlsContext cctx, TlsContext sctx, TlsSession offer) {
  ResumeResult out;
  TlsPair p = co_await tls_pair(cctx, sctx, named("localhost", std::move(offer)));
  EXPECT_TRUE(p.ok());
  if (!p.ok()) co_return out;
  EXPECT_TRUE(co_await p.server.send_all("hello", 5s));
  EXPECT_EQ(co_await recv_exactly(&p.client, 5), "hello");
  out.session = p.client.session();
  out.client_resumed = p.client.resumed();
  out.server_resumed = p.server.resumed();
  co_await clean_close(&p.client, &p.server);
  co_return out;
}

TEST_P(TlsTest, ResumptionWithTicketsTls13AndTls12) {
  auto body = []() -> Task<void> {
    const std::array versions{TlsVersion::tls1_3, TlsVersion::tls1_2};
    for (TlsVersion v : versions) {
      SCOPED_TRACE(v == TlsVersion::tls1_3 ? "TLS 1.3" : "TLS 1.2");
      TlsContext cctx = client_ctx();
      EXPECT_TRUE(cctx.set_max_version(v));
      TlsContext sctx = server_ctx();
      ResumeResult first = co_await resume_round(cctx, sctx, {});
      EXPECT_FALSE(first.client_resumed);
      CO_ASSERT_TRUE(first.session.valid());
      EXPECT_TRUE(first.session.resumable());
      ResumeResult second = co_await resume_round(cctx, sctx, first.session);
      EXPECT_TRUE(second.client_resumed);
      EXPECT_TRUE(second.server_resumed);
      // A session from another server context (other ticket keys) is not resumed.
      ResumeResult third = co_await resume_round(cctx, server_ctx(), first.session);
      EXPECT_FALSE(third.client_resumed);
    }
  };
  run(body());
}

// ---- close orders and truncation ----

TEST_P(TlsTest, CloseNotifyBothOrdersAndSimultaneous) {
  auto body = []() -> Task<void> {
    {  // client first
      TlsPair p = co_await tls_pair(client_ctx(), server_ctx());
      CO_ASSERT_TRUE(p.ok());
      co_await clean_close(&p.client, &p.server);
      auto s = co_await p.client.send("late", 1s);
      CO_ASSERT_FALSE(s);
      EXPECT_EQ(s.error(), std::errc::broken_pipe);
      EXPECT_TRUE(co_await p.client.shutdown(1s));  // idempotent
    }
    {  // server first, with data still in flight before its close_notify
      TlsPair p = co_await tls_pair(client_ctx(), server_ctx());
      CO_ASSERT_TRUE(p.ok());
      EXPECT_TRUE(co_await p.server.send_all("bye", 5s));
      EXPECT_TRUE(co_await p.server.shutdown(5s));
      EXPECT_EQ(co_await recv_exactly(&p.client, 3), "bye");
      std::byte b[8];
      auto n = co_await p.client.recv(b, 5s);
      EXPECT_TRUE(n && *n == 0);
      n = co_await p.client.recv(b, 5s);  // and it stays closed
      EXPECT_TRUE(n && *n == 0);
      // Half-closed: the client can still send, and the server still reads it.
      EXPECT_TRUE(co_await p.client.send_all("after", 5s));
      EXPECT_EQ(co_await recv_exactly(&p.server, 5), "after");
      EXPECT_TRUE(co_await p.client.shutdown(5s));
      n = co_await p.server.recv(b, 5s);
      EXPECT_TRUE(n && *n == 0);
    }
    {  // both at once
      TlsPair p = co_await tls_pair(client_ctx(), server_ctx());
      CO_ASSERT_TRUE(p.ok());
      auto [a, b] = co_await when_all(shutdown_of(&p.client, 5s), shutdown_of(&p.server, 5s));
      EXPECT_TRUE(a && b);
      std::byte buf[8];
      auto [x, y] = co_await when_all(recv_of(&p.client, buf, 5s), recv_of(&p.server, buf, 5s));
      EXPECT_TRUE(x && *x == 0);
      EXPECT_TRUE(y && *y == 0);
    }
  };
  run(body());
}

TEST_P(TlsTest, TruncationIsAnErrorNotACleanClose) {
  auto body = []() -> Task<void> {
    TlsPair p = co_await tls_pair(client_ctx(), server_ctx());
    CO_ASSERT_TRUE(p.ok());
    EXPECT_TRUE(co_await p.server.send_all("partial", 5s));
    EXPECT_TRUE(co_await p.server.socket().close());  // no close_notify
    EXPECT_EQ(co_await recv_exactly(&p.client, 7), "partial");
    std::byte b[8];
    auto n = co_await p.client.recv(b, 5s);
    CO_ASSERT_FALSE(n);
    EXPECT_EQ(n.error(), TlsError::unexpected_eof) << n.error().message();
    EXPECT_NE(n.error().message().find("unexpected eof"), std::string::npos) << n.error().message();
    n = co_await p.client.recv(b, 5s);  // final
    CO_ASSERT_FALSE(n);
    EXPECT_EQ(n.error(), TlsError::unexpected_eof);
  };
  run(body());
}

// ---- records split over many reads; small buffers ----

// Forward `from` to `to` one byte per recv and send, then half-close `to`.
Task<void> pump_bytewise(TcpSocket* from, TcpSocket* to) {
  std::byte b[1];
  for (;;) {
    auto n = co_await from->recv(b, 10s);
    if (!n || *n == 0) break;
    if (!co_await to->send_all(std::span<const std::byte>(b, 1), 10s)) break;
  }
  (void)to->shutdown(ShutdownHow::write);
}

TEST_P(TlsTest, RecordsSplitIntoOneByteReadsThroughARelay) {
  auto body = []() -> Task<void> {
    auto [client_sock, relay_in] = co_await loopback_tcp_pair();
    auto [relay_out, server_sock] = co_await loopback_tcp_pair();
    auto client = TlsStream::client(client_ctx(), std::move(client_sock), to_localhost());
    auto server = TlsStream::server(server_ctx(), std::move(server_sock));
    CO_ASSERT_TRUE(client && server);
    auto relay = spawn([](TcpSocket a, TcpSocket b) -> Task<void> {
      co_await when_all(pump_bytewise(&a, &b), pump_bytewise(&b, &a));
    }(std::move(relay_in), std::move(relay_out)));
    auto [cr, sr] = co_await when_all(handshake_of(&*client, 10s), handshake_of(&*server, 10s));
    CO_ASSERT_TRUE(cr && sr);
    constexpr std::size_t kBytes = 40000;  // two full records and a partial one each way
    auto [a, b, c, d] = co_await when_all(send_pattern(&*client, kBytes, 7, 40000), recv_pattern(&*server, kBytes, 7),
                                          send_pattern(&*server, kBytes, 8, 40000), recv_pattern(&*client, kBytes, 8));
    EXPECT_TRUE(a && c);
    EXPECT_EQ(b, kBytes);
    EXPECT_EQ(d, kBytes);
    co_await clean_close(&*client, &*server);
    client = TlsStream();
    server = TlsStream();
    co_await relay;
  };
  run(body(), 60s);
}

TEST_P(TlsTest, EightMiBThroughTinySocketBuffers) {
  auto body = []() -> Task<void> {
    auto [c, s] = co_await loopback_tcp_pair();
    EXPECT_TRUE(c.set_send_buffer_size(4096));  // the kernel makes it 8 KiB: a TLS record needs several sends
    auto client = TlsStream::client(client_ctx(), std::move(c), to_localhost());
    auto server = TlsStream::server(server_ctx(), std::move(s));
    CO_ASSERT_TRUE(client && server);
    auto [cr, sr] = co_await when_all(handshake_of(&*client, 5s), handshake_of(&*server, 5s));
    CO_ASSERT_TRUE(cr && sr);
    constexpr std::size_t kBytes = 8u << 20;
    auto [sent, got] =
        co_await when_all(send_pattern(&*client, kBytes, 3, kBytes), recv_pattern(&*server, kBytes, 3, 3000));
    EXPECT_TRUE(sent);
    EXPECT_EQ(got, kBytes);
    co_await clean_close(&*client, &*server);
  };
  run(body(), 60s);
}

// ---- cancellation and timeouts in every phase ----

TEST_P(TlsTest, CancelledHandshakeLeavesNothingBehind) {
  auto body = []() -> Task<void> {
    const int fds = open_fd_count();
    const std::size_t live = TlsStream::live_count();
    {
      TcpSocket listener = loopback_listener();
      auto peer = spawn(plain_client(*listener.local_address(), "", 1s));  // connects, never speaks
      auto conn = co_await listener.accept(5s);
      CO_ASSERT_TRUE(conn);
      auto tls = TlsStream::server(server_ctx(), std::move(*conn));
      CO_ASSERT_TRUE(tls);
      auto h = spawn(handshake_of(&*tls, {}));
      co_await sleep_for(30ms);
      EXPECT_FALSE(h.done());
      h.cancel();
      auto r = co_await h;
      CO_ASSERT_FALSE(r);
      EXPECT_EQ(r.error(), std::errc::operation_canceled);
      EXPECT_FALSE(tls->handshake_done());
      std::byte b[4];
      auto n = co_await tls->recv(b, 1s);
      CO_ASSERT_FALSE(n);
      EXPECT_EQ(n.error(), std::errc::operation_canceled);  // the handshake's error is final
      peer.cancel();
      (void)co_await peer;
    }
    EXPECT_EQ(TlsStream::live_count(), live);
    EXPECT_EQ(open_fd_count(), fds);
  };
  run(body());
}

TEST_P(TlsTest, CancelledOrTimedOutRecvLeavesTheStreamUsable) {
  auto body = []() -> Task<void> {
    TlsPair p = co_await tls_pair(client_ctx(), server_ctx());
    CO_ASSERT_TRUE(p.ok());
    std::byte b[64];
    auto t = co_await p.client.recv(b, 30ms);
    CO_ASSERT_FALSE(t);
    EXPECT_EQ(t.error(), std::errc::timed_out);

    auto reader = spawn([](TlsStream* s) -> Task<std::pair<std::error_code, std::error_code>> {
      std::byte buf[64];
      auto first = co_await s->recv(buf, Timeout{});
      auto second = co_await s->recv(buf, Timeout{});  // the task is cancelled: fails at once
      co_return std::pair(first ? std::error_code() : first.error(), second ? std::error_code() : second.error());
    }(&p.client));
    co_await sleep_for(20ms);
    reader.cancel();
    auto [e1, e2] = co_await reader;
    EXPECT_EQ(e1, std::errc::operation_canceled);
    EXPECT_EQ(e2, std::errc::operation_canceled);

    // Half a record arrives, the recv times out, the rest arrives: nothing is lost.
    EXPECT_TRUE(co_await p.server.send_all("after the cancel", 5s));
    EXPECT_EQ(co_await recv_exactly(&p.client, 16), "after the cancel");
    co_await clean_close(&p.client, &p.server);
  };
  run(body());
}

TEST_P(TlsTest, CancelledOrTimedOutSendBreaksOnlyTheSendingSide) {
  auto body = []() -> Task<void> {
    for (int round = 0; round < 2; ++round) {
      const bool cancel = round == 0;
      SCOPED_TRACE(cancel ? "cancel" : "timeout");
      TlsPair p = co_await tls_pair(client_ctx(), server_ctx());
      CO_ASSERT_TRUE(p.ok());
      EXPECT_TRUE(p.client.socket().set_send_buffer_size(4096));
      std::vector<std::byte> big(8u << 20);  // the server never reads it
      std::error_code ec;
      if (cancel) {
        auto w = spawn(send_all_of(&p.client, big, {}));
        co_await sleep_for(50ms);
        EXPECT_FALSE(w.done());
        w.cancel();
        auto r = co_await w;
        CO_ASSERT_FALSE(r);
        ec = r.error();
        EXPECT_EQ(ec, std::errc::operation_canceled);
      } else {
        auto r = co_await p.client.send_all(big, 50ms);
        CO_ASSERT_FALSE(r);
        ec = r.error();
        EXPECT_EQ(ec, std::errc::timed_out);
      }
      auto again = co_await p.client.send("x", 1s);
      CO_ASSERT_FALSE(again);
      EXPECT_EQ(again.error(), ec);
      auto sh = co_await p.client.shutdown(1s);
      CO_ASSERT_FALSE(sh);
      EXPECT_EQ(sh.error(), ec);
      // Reading still works.
      EXPECT_TRUE(co_await p.server.send_all("still readable", 5s));
      EXPECT_EQ(co_await recv_exactly(&p.client, 14), "still readable");
    }
  };
  run(body());
}

TEST_P(TlsTest, CancelledOrTimedOutShutdown) {
  auto body = []() -> Task<void> {
    for (int round = 0; round < 2; ++round) {
      const bool cancel = round == 0;
      SCOPED_TRACE(cancel ? "cancel" : "timeout");
      TlsPair p = co_await tls_pair(client_ctx(), server_ctx());
      CO_ASSERT_TRUE(p.ok());
      EXPECT_TRUE(p.client.socket().set_send_buffer_size(4096));
      EXPECT_TRUE(p.server.socket().set_recv_buffer_size(4096));
      // Fill the socket underneath (the peer is not reading) so close_notify cannot leave:
      // big sends until one blocks, then single bytes until even those block.
      std::vector<std::byte> junk(65536);
      while (co_await p.client.socket().send(junk, 20ms)) {
      }
      while (co_await p.client.socket().send(junk.data(), 1, 50ms)) {
      }
      Expected<void> r;
      if (cancel) {
        auto w = spawn(shutdown_of(&p.client, {}));
        co_await sleep_for(30ms);
        EXPECT_FALSE(w.done());
        w.cancel();
        r = co_await w;
        CO_ASSERT_FALSE(r);
        EXPECT_EQ(r.error(), std::errc::operation_canceled);
      } else {
        r = co_await p.client.shutdown(30ms);
        CO_ASSERT_FALSE(r);
        EXPECT_EQ(r.error(), std::errc::timed_out);
      }
    }
  };
  run(body());
}

// ---- the concurrency rule ----

TEST_P(TlsTest, OneReaderAndOneWriterAtATime) {
  auto body = []() -> Task<void> {
    // Before the handshake.
    auto [c, s] = co_await loopback_tcp_pair();
    auto early = TlsStream::client(client_ctx(), std::move(c), to_localhost());
    CO_ASSERT_TRUE(early);
    std::byte b[16];
    auto r0 = co_await early->recv(b, 1s);
    CO_ASSERT_FALSE(r0);
    EXPECT_EQ(r0.error(), std::errc::not_connected);
    auto h1 = spawn(handshake_of(&*early, 2s));
    co_await yield();
    auto h2 = co_await early->handshake(1s);
    CO_ASSERT_FALSE(h2);
    EXPECT_EQ(h2.error(), std::errc::device_or_resource_busy);
    auto r1 = co_await early->recv(b, 1s);
    CO_ASSERT_FALSE(r1);
    EXPECT_EQ(r1.error(), std::errc::device_or_resource_busy);
    h1.cancel();
    (void)co_await h1;

    TlsPair p = co_await tls_pair(client_ctx(), server_ctx());
    CO_ASSERT_TRUE(p.ok());
    EXPECT_TRUE(co_await p.client.handshake(1s));  // done already: succeeds at once
    // Two readers.
    auto reader = spawn(recv_of(&p.client, b, 5s));
    co_await sleep_for(10ms);
    auto second = co_await p.client.recv(b, 1s);
    CO_ASSERT_FALSE(second);
    EXPECT_EQ(second.error(), std::errc::device_or_resource_busy);
    // A writer alongside the reader is fine; a second writer is not.
    EXPECT_TRUE(p.client.socket().set_send_buffer_size(4096));
    std::vector<std::byte> big(8u << 20);
    auto writer = spawn(send_all_of(&p.client, big, 5s));
    co_await sleep_for(20ms);
    EXPECT_FALSE(writer.done());
    auto w2 = co_await p.client.send("x", 1s);
    CO_ASSERT_FALSE(w2);
    EXPECT_EQ(w2.error(), std::errc::device_or_resource_busy);
    auto sh = co_await p.client.shutdown(1s);
    CO_ASSERT_FALSE(sh);
    EXPECT_EQ(sh.error(), std::errc::device_or_resource_busy);
    // The server drains the writer and answers the reader.
    std::vector<std::byte> sink(1 << 16);
    std::size_t drained = 0;
    while (drained < big.size()) {
      auto n = co_await p.server.recv(sink, 5s);
      CO_ASSERT_TRUE(n && *n > 0);
      drained += *n;
    }
    auto w = co_await writer;
    EXPECT_TRUE(w && *w == big.size());
    EXPECT_TRUE(co_await p.server.send_all("r", 5s));
    auto rr = co_await reader;
    EXPECT_TRUE(rr && *rr == 1);
  };
  run(body());
}

// A read that has to write. With OpenSSL 3.0 a received KeyUpdate is answered with the next
// write, but a KeyUpdate scheduled locally (SSL_key_update) is written by whichever call
// comes first: here a recv() with no send running, which must send it itself.
TEST_P(TlsTest, KeyUpdateWrittenByTheReader) {
  auto body = []() -> Task<void> {
    TlsPair p = co_await tls_pair(client_ctx(), server_ctx());
    CO_ASSERT_TRUE(p.ok());
    const int one = 1;  // no Nagle delay: the KeyUpdate must be on the wire when we look
    EXPECT_EQ(::setsockopt(p.client.socket().native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one), 0);
    for (int i = 0; i < 3; ++i) {
      CO_ASSERT_TRUE(SSL_key_update(p.client.native_handle(), SSL_KEY_UPDATE_REQUESTED) == 1);
      std::byte buf[16];
      auto reader = spawn(recv_of(&p.client, buf, 5s));
      co_await sleep_for(20ms);
      EXPECT_FALSE(reader.done());
      int queued = 0;
      EXPECT_EQ(::ioctl(p.server.socket().native_handle(), FIONREAD, &queued), 0);
      EXPECT_GT(queued, 0) << "the reader must have sent the KeyUpdate";
      EXPECT_TRUE(co_await p.server.send_all("pong", 5s));
      auto got = co_await reader;
      EXPECT_TRUE(got && *got == 4);
      // The server reads the KeyUpdate (no data: it times out) and answers it with its next write.
      auto none = co_await p.server.recv(buf, 50ms);
      EXPECT_TRUE(!none && none.error() == std::errc::timed_out);
      EXPECT_TRUE(co_await p.server.send_all("x", 5s));
      EXPECT_EQ(co_await recv_exactly(&p.client, 1), "x");
      EXPECT_TRUE(co_await p.client.send_all("y", 5s));
      EXPECT_EQ(co_await recv_exactly(&p.server, 1), "y");
    }
    // Traffic both ways while KeyUpdates are scheduled and received: whichever of the
    // reader and the writer writes them, records stay in order (else: bad record MAC).
    constexpr std::size_t kBytes = 20 * 200000;  // 20 KeyUpdates, one per 200 kB
    auto updater = [](TlsStream* s) -> Task<bool> {
      for (int i = 0; i < 20; ++i) {
        if (SSL_key_update(s->native_handle(), SSL_KEY_UPDATE_REQUESTED) != 1) co_return false;
        co_await yield();  // give the reader a turn to write it
        std::vector<std::byte> chunk(kBytes / 20);
        fill_pattern(chunk, i * (kBytes / 20), 11);
        if (!co_await s->send_all(chunk, 10s)) co_return false;
      }
      co_return true;
    };
    auto [a, b, c, d] =
        co_await when_all(updater(&p.client), recv_pattern(&p.server, kBytes, 11),
                          send_pattern(&p.server, kBytes, 12, 65536), recv_pattern(&p.client, kBytes, 12));
    EXPECT_TRUE(a && c);
    EXPECT_EQ(b, kBytes);
    EXPECT_EQ(d, kBytes);
    co_await clean_close(&p.client, &p.server);
  };
  run(body(), 60s);
}

// A writer that arrives while a reader is sending records it produced waits for that
// flush before encrypting: a timeout or cancel while waiting commits nothing, and once
// the flush ends the writer goes on. Counted in raw bytes on the server's socket.
TEST_P(TlsTest, WriterWaitsForTheReadersFlush) {
  auto body = []() -> Task<void> {
    TlsPair p = co_await tls_pair(client_ctx(), server_ctx());
    CO_ASSERT_TRUE(p.ok());
    EXPECT_TRUE(p.client.socket().set_send_buffer_size(4096));
    EXPECT_TRUE(p.server.socket().set_recv_buffer_size(4096));
    // Fill the connection with raw bytes (the server's TLS never reads them).
    std::size_t junk_bytes = 0;
    std::vector<std::byte> junk(65536);
    for (;;) {
      auto n = co_await p.client.socket().send(junk, 20ms);
      if (!n) break;
      junk_bytes += *n;
    }
    for (;;) {
      auto n = co_await p.client.socket().send(junk.data(), 1, 50ms);
      if (!n) break;
      junk_bytes += *n;
    }
    // The reader writes a KeyUpdate and blocks sending it.
    CO_ASSERT_TRUE(SSL_key_update(p.client.native_handle(), SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
    std::byte buf[16];
    auto reader = spawn(recv_of(&p.client, buf, 10s));
    co_await sleep_for(20ms);
    EXPECT_FALSE(reader.done());

    auto timed_out = co_await p.client.send("a", 50ms);
    CO_ASSERT_FALSE(timed_out);
    EXPECT_EQ(timed_out.error(), std::errc::timed_out);
    auto cancelled = spawn(send_all_of(&p.client, std::as_bytes(std::span("bb", 2)), Timeout{}));
    co_await sleep_for(20ms);
    cancelled.cancel();
    auto c = co_await cancelled;
    CO_ASSERT_FALSE(c);
    EXPECT_EQ(c.error(), std::errc::operation_canceled);

    auto writer = spawn(send_all_of(&p.client, std::as_bytes(std::span("ccc", 3)), 5s));
    co_await sleep_for(20ms);
    EXPECT_FALSE(writer.done());
    // Drain the server's socket raw: the junk, the KeyUpdate record (27 bytes) and one
    // record of 3 bytes (25): nothing from the writers that gave up.
    const std::size_t expected = junk_bytes + 27 + 25;
    std::size_t drained = 0;
    while (drained < expected) {
      auto n = co_await p.server.socket().recv(junk, 5s);
      CO_ASSERT_TRUE(n && *n > 0);
      drained += *n;
    }
    auto w = co_await writer;
    EXPECT_TRUE(w && *w == 3);
    auto extra = co_await p.server.socket().recv(junk, 100ms);
    EXPECT_TRUE(!extra && extra.error() == std::errc::timed_out);
    EXPECT_EQ(drained, expected);
    EXPECT_FALSE(reader.done());
    reader.cancel();
    auto r = co_await reader;
    EXPECT_TRUE(!r && r.error() == std::errc::operation_canceled);
  };
  run(body());
}

// ---- pooled receive ----

TEST_P(TlsTest, PooledReceiveBothWays) {
  auto body = []() -> Task<void> {
    auto pool = BufferPool::create(64, 4096);
    CO_ASSERT_TRUE(pool);
    {
      TlsPair p =
          co_await tls_pair(client_ctx(), server_ctx(), named("localhost", {}, pool->get()), pooled(pool->get()));
      CO_ASSERT_TRUE(p.ok());
      constexpr std::size_t kBytes = 4u << 20;
      auto [a, b, c, d] = co_await when_all(send_pattern(&p.client, kBytes, 21), recv_pattern(&p.server, kBytes, 21),
                                            send_pattern(&p.server, kBytes, 22), recv_pattern(&p.client, kBytes, 22));
      EXPECT_TRUE(a && c);
      EXPECT_EQ(b, kBytes);
      EXPECT_EQ(d, kBytes);
      co_await clean_close(&p.client, &p.server);
    }
    EXPECT_EQ((*pool)->available(), 64u) << "every pool buffer must be back";
    // A Unix stream has no pooled receive.
    auto up = UnixStream::pair();
    CO_ASSERT_TRUE(up);
    auto bad = TlsStream::server(server_ctx(), std::move(up->first), pooled(pool->get()));
    CO_ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error(), std::errc::invalid_argument);
  };
  run(body());
}

// Operations that complete without waiting (the plaintext is already decrypted) must not
// nest: 200,000 one-byte reads in a row, where -O0 or ASan builds would overflow the stack
// if each resumed its awaiter by a symmetric transfer that is not a tail call.
TEST_P(TlsTest, ManyImmediateReadsRunInConstantStack) {
  auto body = []() -> Task<void> {
    TlsPair p = co_await tls_pair(client_ctx(), server_ctx());
    CO_ASSERT_TRUE(p.ok());
    constexpr std::size_t kBytes = 200000;
    auto [sent, got] =
        co_await when_all(send_pattern(&p.server, kBytes, 5, kBytes), recv_pattern(&p.client, kBytes, 5, 1));
    EXPECT_TRUE(sent);
    EXPECT_EQ(got, kBytes);
  };
  run(body(), 60s);
}

// ---- no frame allocation per operation ----

TEST_P(TlsTest, SteadyTrafficAllocatesNoFrames) {
  if (kSanitized) GTEST_SKIP() << "the frame cache is off under sanitizers (every frame is a heap block)";
  auto body = []() -> Task<void> {
    TlsPair p = co_await tls_pair(client_ctx(), server_ctx());
    CO_ASSERT_TRUE(p.ok());
    std::byte buf[256];
    auto round = [](TlsStream* a, TlsStream* b, std::byte* buf) -> Task<bool> {
      if (!co_await a->send_all("0123456789abcdef", 5s)) co_return false;
      auto n = co_await b->recv(std::span(buf, 256), 5s);
      co_return n&&* n == 16;
    };
    for (int i = 0; i < 10; ++i) EXPECT_TRUE(co_await round(&p.client, &p.server, buf));  // warm up
    const std::uint64_t before = detail::tls_frame_heap_allocations();
    for (int i = 0; i < 500; ++i) EXPECT_TRUE(co_await round(&p.client, &p.server, buf));
    EXPECT_EQ(detail::tls_frame_heap_allocations(), before);
  };
  run(body());
}

// ---- many handshakes at once ----

// The cost of a handshake, both ends on this thread, one connection at a time: full
// handshakes, then resumed ones (the session of the previous connection offered each
// time). Prints the rates; checks only that every resumption happened.
TEST_P(TlsTest, SequentialHandshakeCost) {
  auto body = []() -> Task<void> {
    const int n = kSanitized ? 20 : 200;
    TlsContext cctx = client_ctx(), sctx = server_ctx();
    auto round = [](TlsContext c, TlsContext s, TlsSession offer) -> Task<TlsSession> {
      TlsPair p = co_await tls_pair(c, s, named("localhost", std::move(offer)));
      EXPECT_TRUE(p.ok());
      if (!p.ok()) co_return TlsSession();
      EXPECT_TRUE(co_await p.server.send_all("k", 5s));  // brings the TLS 1.3 tickets along
      EXPECT_EQ(co_await recv_exactly(&p.client, 1), "k");
      co_return p.client.session();
    };
    auto start = Clock::now();
    TlsSession last;
    for (int i = 0; i < n; ++i) last = co_await round(cctx, sctx, {});
    const double full = std::chrono::duration<double>(Clock::now() - start).count();
    int resumed = 0;
    start = Clock::now();
    for (int i = 0; i < n; ++i) {
      auto [c, s] = co_await loopback_tcp_pair();
      auto client = TlsStream::client(cctx, std::move(c), named("localhost", last));
      auto server = TlsStream::server(sctx, std::move(s));
      CO_ASSERT_TRUE(client && server);
      auto [cr, sr] = co_await when_all(handshake_of(&*client, 5s), handshake_of(&*server, 5s));
      CO_ASSERT_TRUE(cr && sr);
      EXPECT_TRUE(co_await server->send_all("k", 5s));
      EXPECT_EQ(co_await recv_exactly(&*client, 1), "k");
      resumed += client->resumed() ? 1 : 0;
      last = client->session();
    }
    const double fast = std::chrono::duration<double>(Clock::now() - start).count();
    EXPECT_EQ(resumed, n);
    std::printf(
        "[ info     ] %d sequential TLS 1.3 handshakes over loopback TCP (connect + both ends + 1 byte): "
        "full %.0f/s (%.0f us each), resumed %.0f/s (%.0f us each)\n",
        n, n / full, full / n * 1e6, n / fast, fast / n * 1e6);
  };
  run(body(), 60s);
}

TEST_P(TlsTest, ThousandConcurrentHandshakesOnOneScheduler) {
  auto body = []() -> Task<void> {
    const int n = kConcurrentHandshakes;
    TcpSocket listener = loopback_listener();
    const SocketAddress addr = *listener.local_address();
    TlsContext sctx = server_ctx();
    TlsContext cctx = client_ctx();
    auto serve_one = [](TlsContext ctx, TcpSocket conn) -> Task<void> {
      auto tls = TlsStream::server(ctx, std::move(conn));
      if (!tls || !co_await tls->handshake(20s)) co_return;
      (void)co_await tls->send_all("k", 20s);
      std::byte b[1];
      (void)co_await tls->recv(b, 20s);  // the client's close_notify
    };
    auto acceptor = spawn([](TcpSocket* l, TlsContext ctx, int count, decltype(serve_one) serve) -> Task<void> {
      std::vector<JoinHandle<void>> conns;
      for (int i = 0; i < count; ++i) {
        auto conn = co_await l->accept(20s);
        if (!conn) break;
        conns.push_back(spawn(serve(ctx, std::move(*conn))));
      }
      for (auto& h : conns) co_await h;
    }(&listener, sctx, n, serve_one));
    auto client_one = [](TlsContext ctx, SocketAddress a) -> Task<bool> {
      auto sock = TcpSocket::open();
      if (!sock || !co_await sock->connect(a, 20s)) co_return false;
      auto tls = TlsStream::client(ctx, std::move(*sock), to_localhost());
      if (!tls) co_return false;
      auto h = co_await tls->handshake(20s);
      EXPECT_TRUE(h) << h.error().message();
      if (!h) co_return false;
      std::byte b[1];
      auto r = co_await tls->recv(b, 20s);
      const bool ok = r && *r == 1;
      (void)co_await tls->shutdown(20s);
      co_return ok;
    };
    std::vector<Task<bool>> clients;
    clients.reserve(n);
    for (int i = 0; i < n; ++i) clients.push_back(client_one(cctx, addr));
    const auto start = Clock::now();
    auto results = co_await when_all(std::move(clients));
    co_await acceptor;
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    int ok = 0;
    for (bool r : results) ok += r ? 1 : 0;
    EXPECT_EQ(ok, n);
    std::printf(
        "[ info     ] %d concurrent TLS 1.3 handshakes (ECDSA P-256, both ends on one thread) in %.2f s: %.0f/s\n", n,
        secs, n / secs);
    EXPECT_LT(secs, 10.0);
  };
  run(body(), 60s);
}

GALAY_INSTANTIATE_ALL_BACKENDS(TlsTest);

// ---- not backend-specific: configuration, errors ----

TEST(TlsContextTest, ConfigurationErrorsAreValues) {
  auto sctx = TlsContext::create(TlsRole::server);
  ASSERT_TRUE(sctx);
  auto garbage = sctx->use_certificate_chain_pem("not a certificate");
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error(), TlsError::configuration_error) << garbage.error().message();
  EXPECT_TRUE(sctx->use_certificate_chain_pem(test_pki().server.cert));
  auto mismatch = sctx->use_private_key_pem(test_pki().alt_server.key);  // another certificate's key
  ASSERT_FALSE(mismatch);
  EXPECT_EQ(mismatch.error(), TlsError::configuration_error) << mismatch.error().message();
  EXPECT_NE(mismatch.error().message().find("mismatch"), std::string::npos) << mismatch.error().message();
  EXPECT_TRUE(sctx->use_private_key_pem(test_pki().server.key));

  auto missing = sctx->add_ca_file("/nonexistent/ca.pem");
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error() == std::errc::no_such_file_or_directory ||
              missing.error() == TlsError::configuration_error)
      << missing.error().message();
  auto bad_alpn = sctx->set_alpn({"h2", ""});
  ASSERT_FALSE(bad_alpn);
  EXPECT_EQ(bad_alpn.error(), std::errc::invalid_argument);
  EXPECT_FALSE(sctx->set_alpn({std::string(256, 'x')}));

  auto cctx = TlsContext::create(TlsRole::client);
  ASSERT_TRUE(cctx);
  EXPECT_TRUE(cctx->use_system_trust());
  EXPECT_FALSE(sctx->add_server_name("x.test", *cctx));  // not a server context

  // Wrong role, or nothing to check the certificate against.
  auto s1 = TcpSocket::open();
  ASSERT_TRUE(s1);
  auto wrong_role = TlsStream::client(*sctx, std::move(*s1), to_localhost());
  ASSERT_FALSE(wrong_role);
  EXPECT_EQ(wrong_role.error(), std::errc::invalid_argument);
  auto s2 = TcpSocket::open();
  ASSERT_TRUE(s2);
  auto no_name = TlsStream::client(*cctx, std::move(*s2), {});
  ASSERT_FALSE(no_name);
  EXPECT_EQ(no_name.error(), std::errc::invalid_argument);
  EXPECT_EQ(TlsStream::live_count(), 0u);
}

TEST(TlsContextTest, EmptyStreamFailsWithBadFd) {
  auto sched = Scheduler::create({BackendKind::epoll});
  ASSERT_TRUE(sched);
  TlsStream empty;
  EXPECT_FALSE(empty.is_open());
  auto body = [](TlsStream* s) -> Task<std::error_code> {
    std::byte b[4];
    auto r = co_await s->recv(b);
    co_return r ? std::error_code() : r.error();
  };
  EXPECT_EQ((*sched)->block_on(body(&empty)), std::errc::bad_file_descriptor);
}

TEST(TlsErrorTest, CategoryMessagesAndEquivalence) {
  EXPECT_STREQ(tls_category().name(), "galay.tls");
  const std::error_code plain = make_error_code(TlsError::not_tls);
  EXPECT_EQ(plain, TlsError::not_tls);
  EXPECT_NE(plain, TlsError::handshake_failed);
  EXPECT_NE(plain, std::errc::timed_out);
  EXPECT_NE(std::make_error_code(std::errc::timed_out), TlsError::not_tls);
  EXPECT_EQ(plain.message(), "peer does not speak TLS");
  EXPECT_EQ(plain.default_error_condition(), make_error_condition(TlsError::not_tls));
  EXPECT_EQ(make_error_condition(TlsError::unexpected_eof).message(),
            "TLS connection truncated (EOF without close_notify)");
}

}  // namespace
}  // namespace galay::test
