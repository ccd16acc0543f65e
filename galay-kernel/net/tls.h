#pragma once
/// @file tls.h
/// TLS (OpenSSL 3) over the library's stream sockets: TlsContext (certificates, trust,
/// verification, versions, ALPN, SNI), TlsSession (resumption) and TlsStream (handshake,
/// recv, send, send_all, shutdown).
///
/// How bytes move: OpenSSL never touches the fd. A TlsStream gives its SSL object a BIO of
/// its own whose reads take ciphertext from the stream's receive buffer (or from the
/// BufferPool chunks of a StreamReceiver) and whose writes append records to the stream's
/// send buffer; the stream moves those bytes with the socket's own awaitables (recv /
/// StreamReceiver::recv / send_all). So TLS runs unchanged on io_uring, epoll and kqueue,
/// with the same timeouts and cancellation as every other operation.
///
/// Contract:
/// - Every operation returns a TlsOp (tls_op.h), awaited like a Task, yielding an
///   Expected. Each takes an optional Timeout for the whole operation (std::errc::timed_out
///   when it expires) and runs in the awaiting task's CancelScope (a cancelled task's
///   operation yields operation_canceled). When it returns, no kernel operation on the
///   caller's behalf is pending and the kernel no longer touches the caller's buffers.
/// - Concurrency: at most one recv() and one sending operation (send, send_all, shutdown)
///   at a time, and those two may run concurrently (one reader task and one writer task:
///   full duplex). handshake() runs alone. Anything else fails at once with
///   std::errc::device_or_resource_busy. When TLS makes a read write (a KeyUpdate the
///   application scheduled, an alert), recv() sends those bytes itself if no send is
///   running, and a running send takes them along otherwise; a send that starts while a
///   recv() is sending them waits (within its timeout) before it encrypts anything, so
///   records leave in order. A send never has to read: renegotiation is refused.
/// - After an error: a failed, timed-out or cancelled handshake() is final (the SSL object
///   is mid-handshake): every later operation returns the same error. A recv() that times
///   out or is cancelled leaves the stream usable; ciphertext already received is kept. A
///   sending operation that fails, times out or is cancelled once it has encrypted data
///   may have sent part of a record (and a send_all cannot say how much went out), so the
///   sending side is broken from then on: later sends and shutdown() return the same
///   error, while recv() keeps working. One that stops before encrypting anything (waiting
///   for its turn) leaves it usable. A protocol error (bad record, alert) is final for
///   both directions.
/// - Closing: shutdown() sends close_notify and does not wait for the peer's; recv()
///   returns 0 only once the peer's close_notify arrived (a clean close). A connection that
///   ends without it is TlsError::unexpected_eof (truncation), never 0. Destroying a
///   TlsStream closes its socket without close_notify.
/// - Lifetime: a TlsStream belongs to the scheduler of the thread that made its socket, like
///   the socket. Moving it is always safe (operations hold its heap state, not the object);
///   destroying it while one of its operations is pending is not. A TlsContext is a shared
///   handle: configure it first, then use it from any thread.
/// - Errors are values: socket errors pass through (connection_reset, timed_out, ...); TLS
///   failures are std::error_codes in tls_category() whose message() includes OpenSSL's
///   reason, comparable with TlsError: `ec == TlsError::certificate_expired`.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include "galay-kernel/net/stream_socket.h"
#include "galay-kernel/net/tcp_socket.h"
#include "galay-kernel/net/unix_socket.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/io/op.h"
#include "galay-kernel/net/tls_op.h"

struct ssl_st;
struct ssl_ctx_st;
struct ssl_session_st;

namespace galay {

class BufferPool;

namespace detail {
struct TlsContextState;
struct TlsState;
}  // namespace detail

/// Kinds of TLS failure, for comparison: `ec == TlsError::host_name_mismatch`. The codes
/// TlsStream produces (tls_category()) carry OpenSSL's exact reason on top of their kind;
/// they compare equal to their kind, and a verification failure also to
/// certificate_verify_failed (a self-signed certificate also to unknown_ca).
enum class TlsError {
  handshake_failed = 1,  ///< no shared cipher, group or protocol; a handshake_failure alert; other handshake failures
  certificate_expired,   ///< the certificate's notAfter has passed (or the peer said so in an alert)
  certificate_not_yet_valid,  ///< the certificate's notBefore is in the future
  host_name_mismatch,         ///< the certificate is not for the name (or IP address) the client asked for
  unknown_ca,                 ///< the chain does not end at a trusted CA (self-signed included; or the peer's alert)
  self_signed,                ///< the certificate is self-signed and not trusted (also unknown_ca)
  certificate_verify_failed,  ///< any certificate verification failure, or a peer rejecting ours
  protocol_version,           ///< no TLS version both sides accept
  not_tls,                    ///< the peer does not speak TLS (plain text, HTTP, garbage)
  unexpected_eof,             ///< the connection ended without close_notify (truncation)
  protocol_error,             ///< a malformed or unexpected record or message, or an alert, after the handshake
  configuration_error,        ///< a certificate, key, CA file or setting that OpenSSL refused
};

/// The category of TLS errors: codes made by TlsContext/TlsStream (kind plus OpenSSL's
/// reason; message() names both) and TlsError conditions.
const std::error_category& tls_category() noexcept;
/// The condition for `e` (found by ADL so `ec == TlsError::x` works).
std::error_condition make_error_condition(TlsError e) noexcept;
/// An error code of kind `e` without an OpenSSL reason.
std::error_code make_error_code(TlsError e) noexcept;

/// Which end of the handshake a context or stream plays.
enum class TlsRole : std::uint8_t { client, server };

/// Protocol versions a context can be limited to.
enum class TlsVersion : std::uint8_t { tls1_2, tls1_3 };

class TlsContext;

/// Server name indication: given the name the client asked for, return the context to use
/// (its certificate, ALPN list, ...), or nullopt to keep the default one.
using TlsServerNameCallback = std::function<std::optional<TlsContext>(std::string_view server_name)>;

/// Settings shared by many connections: certificates and key, trusted CAs, verification,
/// versions, ALPN, SNI. A cheap shared handle (copies refer to the same settings).
/// Configure it before use; afterwards it may be used from any thread, not changed.
///
/// Defaults: TLS 1.2 minimum (1.3 preferred); a client verifies the server's certificate
/// chain and host name (trust must be added: add_ca_*() or use_system_trust()); a server
/// does not ask for client certificates; session tickets on.
class TlsContext {
 public:
  /// An empty handle (valid() == false); make one with create().
  TlsContext() noexcept = default;
  /// A new context for `role` with the defaults above.
  static Expected<TlsContext> create(TlsRole role);

  /// True if this handle refers to a context.
  bool valid() const noexcept { return static_cast<bool>(state_); }
  /// The role it was created for.
  TlsRole role() const noexcept;

  /// The certificate chain (leaf first, then intermediates) from PEM text.
  Expected<void> use_certificate_chain_pem(std::string_view pem);
  /// The certificate chain from a PEM file.
  Expected<void> use_certificate_chain_file(const std::string& path);
  /// The private key (PEM, unencrypted) matching the certificate.
  Expected<void> use_private_key_pem(std::string_view pem);
  /// The private key from a PEM file.
  Expected<void> use_private_key_file(const std::string& path);
  /// Trust the CA certificates in PEM text (one or more).
  Expected<void> add_ca_pem(std::string_view pem);
  /// Trust the CA certificates of a PEM bundle file.
  Expected<void> add_ca_file(const std::string& path);
  /// Trust the system's CA store (OpenSSL's default paths).
  Expected<void> use_system_trust();
  /// Client: verify the server's certificate (default on; off is insecure). Server: ask
  /// for a client certificate and verify it against the trusted CAs (default off).
  void set_verify_peer(bool on);
  /// The lowest protocol version accepted (default TLS 1.2).
  Expected<void> set_min_version(TlsVersion v);
  /// The highest protocol version accepted (default: the newest, TLS 1.3).
  Expected<void> set_max_version(TlsVersion v);
  /// ALPN. Client: the protocols it offers, in its order of preference. Server: the
  /// protocols it accepts, in its order of preference; the first of them the client offers
  /// is chosen, and with no overlap the handshake goes on without ALPN (alpn() empty).
  /// Each name is 1 to 255 bytes (invalid_argument otherwise).
  Expected<void> set_alpn(const std::vector<std::string>& protocols);
  /// Server: use `ctx` for connections whose client asks for `server_name` (exact,
  /// case-insensitive; "*.example.com" matches one label). `ctx` must be a server context.
  /// It supplies the certificate, ALPN list and client verification; the protocol versions
  /// are this (default) context's, as OpenSSL has chosen the version by then.
  Expected<void> add_server_name(std::string_view server_name, TlsContext ctx);
  /// Server: choose the context by callback (asked when no add_server_name() entry matches),
  /// during the handshake, on the connection's thread. It must not throw (a throw fails
  /// the handshake).
  void set_server_name_callback(TlsServerNameCallback callback);

  /// The OpenSSL context, for settings this class does not wrap.
  ssl_ctx_st* native_handle() const noexcept;

 private:
  friend class TlsStream;
  friend struct detail::TlsContextState;
  explicit TlsContext(std::shared_ptr<detail::TlsContextState> s) noexcept : state_(std::move(s)) {}
  std::shared_ptr<detail::TlsContextState> state_;
};

/// A TLS session a client can offer on its next connection to the same server, to skip the
/// full handshake (TlsStream::resumed() then says so). A shared handle.
class TlsSession {
 public:
  /// An empty session (valid() == false).
  TlsSession() noexcept = default;
  /// Share `o`'s session.
  TlsSession(const TlsSession& o) noexcept;
  /// Share `o`'s session (dropping this one's).
  TlsSession& operator=(const TlsSession& o) noexcept;
  /// Take over `o`'s session; `o` becomes empty.
  TlsSession(TlsSession&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  /// Drop this one's session, then take over `o`'s.
  TlsSession& operator=(TlsSession&& o) noexcept;
  /// Drops the reference.
  ~TlsSession();

  /// True if it holds a session.
  bool valid() const noexcept { return s_ != nullptr; }
  /// True if it can be offered for resumption (a ticket or id that has not expired).
  bool resumable() const noexcept;
  /// The OpenSSL session (still owned by this object).
  ssl_session_st* native_handle() const noexcept { return s_; }
  /// Share an OpenSSL session (its reference count goes up).
  static TlsSession share(ssl_session_st* s) noexcept;

 private:
  ssl_session_st* s_ = nullptr;
};

/// Per-connection settings of a client.
struct TlsClientOptions {
  /// The server's name: sent as SNI (unless it is an IP literal) and checked against the
  /// certificate (a DNS name, or an IP address against the IP SANs).
  std::string server_name{};
  /// Check server_name against the certificate (default on; needs a non-empty name).
  bool verify_host = true;
  /// A session from an earlier connection to offer for resumption.
  TlsSession session{};
  /// Receive ciphertext through a StreamReceiver on this pool (TcpSocket only): no copy
  /// between the kernel and the pool buffer. Null: recv into the stream's own buffer.
  BufferPool* receive_pool = nullptr;
  /// Size of the stream's own receive buffer (at least one TLS record helps: 16 KiB+).
  std::size_t receive_buffer = 32768;
};

/// Per-connection settings of a server.
struct TlsServerOptions {
  /// As TlsClientOptions::receive_pool.
  BufferPool* receive_pool = nullptr;
  /// As TlsClientOptions::receive_buffer.
  std::size_t receive_buffer = 32768;
};

/// One TLS connection over a TcpSocket or UnixStream it owns. See the file comment for the
/// rules on concurrency, errors and closing. Over TCP it turns Nagle off (TCP_NODELAY): it
/// already writes whole flights and 64 KiB chunks, and Nagle would hold a flight back for
/// the peer's delayed ACK (~40 ms) whenever two follow each other (tickets, then data).
///
///   auto tls = TlsStream::client(ctx, std::move(sock), {.server_name = "example.com"});
///   if (auto r = co_await tls->handshake(5s); !r) ...  // r.error() == TlsError::... etc.
///   co_await tls->send_all("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", 5s);
///   auto n = co_await tls->recv(buf, 5s);             // 0: the server closed cleanly
class TlsStream {
 public:
  /// An empty stream (is_open() == false); its operations fail with bad_file_descriptor.
  TlsStream() noexcept;
  /// A client over `socket` (connected). Fails for a non-client context, an empty name with
  /// verify_host, or a pool with a UnixStream (invalid_argument).
  static Expected<TlsStream> client(const TlsContext& ctx, TcpSocket socket, const TlsClientOptions& options);
  /// A client over a connected Unix stream.
  static Expected<TlsStream> client(const TlsContext& ctx, UnixStream socket, const TlsClientOptions& options);
  /// A server over an accepted `socket`.
  static Expected<TlsStream> server(const TlsContext& ctx, TcpSocket socket, const TlsServerOptions& options = {});
  /// A server over a Unix stream.
  static Expected<TlsStream> server(const TlsContext& ctx, UnixStream socket, const TlsServerOptions& options = {});

  /// Take over another stream (even with operations pending); it becomes empty.
  TlsStream(TlsStream&& o) noexcept;
  /// Destroy this stream's state, then take over the other's.
  TlsStream& operator=(TlsStream&& o) noexcept;
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;
  /// Frees the SSL object and closes the socket (no close_notify: call shutdown() first).
  ~TlsStream();

  /// Run the handshake. Any failure is final (see the file comment).
  TlsOp<Expected<void>> handshake(Timeout timeout = {});

  /// Receive up to buf.size() bytes of plaintext; 0 means the peer closed cleanly
  /// (close_notify), or that `buf` is empty.
  TlsOp<Expected<std::size_t>> recv(std::span<std::byte> buf, Timeout timeout = {});
  /// recv() into `len` bytes at `data`.
  TlsOp<Expected<std::size_t>> recv(void* data, std::size_t len, Timeout timeout = {}) {
    return recv(std::span<std::byte>(static_cast<std::byte*>(data), len), timeout);
  }

  /// Encrypt and send some of `buf` (up to 64 KiB), yielding how much; the records are
  /// handed to the kernel before it returns.
  TlsOp<Expected<std::size_t>> send(std::span<const std::byte> buf, Timeout timeout = {});
  /// send() of `len` bytes at `data`.
  TlsOp<Expected<std::size_t>> send(const void* data, std::size_t len, Timeout timeout = {}) {
    return send(std::span<const std::byte>(static_cast<const std::byte*>(data), len), timeout);
  }
  /// send() of the bytes of `s`.
  TlsOp<Expected<std::size_t>> send(std::string_view s, Timeout timeout = {}) {
    return send(s.data(), s.size(), timeout);
  }

  /// Encrypt and send all of `buf`, yielding buf.size(). The timeout covers the whole call.
  TlsOp<Expected<std::size_t>> send_all(std::span<const std::byte> buf, Timeout timeout = {});
  /// send_all() of `len` bytes at `data`.
  TlsOp<Expected<std::size_t>> send_all(const void* data, std::size_t len, Timeout timeout = {}) {
    return send_all(std::span<const std::byte>(static_cast<const std::byte*>(data), len), timeout);
  }
  /// send_all() of the bytes of `s`.
  TlsOp<Expected<std::size_t>> send_all(std::string_view s, Timeout timeout = {}) {
    return send_all(s.data(), s.size(), timeout);
  }

  /// Send close_notify (once; later calls succeed at once). Does not wait for the peer's:
  /// keep calling recv() until it returns 0 for that. Nothing may be sent afterwards.
  TlsOp<Expected<void>> shutdown(Timeout timeout = {});

  /// True while the stream holds a connection.
  bool is_open() const noexcept { return static_cast<bool>(state_); }
  /// True once handshake() succeeded.
  bool handshake_done() const noexcept;
  /// Client or server.
  TlsRole role() const noexcept;
  /// The negotiated ALPN protocol (empty if none).
  std::string_view alpn() const noexcept;
  /// The SNI name: what the client sent (server) or asked for (client); empty if none.
  std::string_view server_name() const noexcept;
  /// The negotiated protocol version ("TLSv1.3"), after the handshake.
  std::string_view protocol() const noexcept;
  /// The negotiated cipher suite name, after the handshake.
  std::string_view cipher() const noexcept;
  /// True if the handshake resumed an earlier session.
  bool resumed() const noexcept;
  /// Client: the newest session the server granted, to offer on the next connection
  /// (TlsClientOptions::session). TLS 1.3 servers send their tickets after the handshake,
  /// and recv() is what reads them: take the session after at least one recv(). It is a
  /// copy that stays resumable when this connection ends, cleanly or not; after a TLS
  /// error other than unexpected_eof (a fatal alert) the stream has none to give.
  TlsSession session() const;
  /// OpenSSL's error queue text for the last TLS error of this stream (empty if none).
  std::string_view last_error_detail() const noexcept;
  /// The underlying socket (for options; its I/O belongs to the stream).
  StreamSocket& socket() noexcept;
  /// The OpenSSL object, for queries this class does not wrap (not for I/O).
  ssl_st* native_handle() const noexcept;

  /// TlsStreams alive in this process, i.e. SSL objects not yet freed (for leak checks).
  static std::size_t live_count() noexcept;

 private:
  explicit TlsStream(std::unique_ptr<detail::TlsState> s) noexcept;
  static Expected<TlsStream> make(const TlsContext& ctx, TlsRole role, TcpSocket* tcp, UnixStream* unix_stream,
                                  const TlsClientOptions* client, const TlsServerOptions* server);
  std::unique_ptr<detail::TlsState> state_;
};

}  // namespace galay

template <>
struct std::is_error_condition_enum<galay::TlsError> : std::true_type {};
