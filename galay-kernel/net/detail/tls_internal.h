#pragma once
// Internals shared by tls.cc and tls_context.cc (not installed API: OpenSSL types appear
// here). The error-code layout, the context's state and the OpenSSL ex_data slots.

#include <openssl/ssl.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "galay-kernel/net/tls.h"

namespace galay::detail {

// ---- error codes ----
//
// A tls_category() error code's value packs: bits 24..30 the TlsError kind, bits 22..23
// where the detail comes from, bits 0..21 the detail. A value below 1 << 24 is a bare kind
// (a condition, or a code made by make_error_code(TlsError)).
enum class TlsDetail : std::uint8_t {
  none = 0,
  openssl = 1,  // detail: OpenSSL library (bits 14..21) and reason (bits 0..13)
  verify = 2,   // detail: an X509_V_ERR_* verification result
};

inline constexpr int kTlsKindShift = 24;
inline constexpr int kTlsSourceShift = 22;
inline constexpr int kTlsLibShift = 14;
inline constexpr int kTlsReasonMask = (1 << kTlsLibShift) - 1;
inline constexpr int kTlsLibMask = 0xFF;

/// A code of kind `kind` with OpenSSL's `lib`/`reason` or a verification result as detail.
std::error_code tls_code(TlsError kind, TlsDetail source, int lib, int reason) noexcept;
/// The kind of an OpenSSL SSL-library reason, during the handshake or after it.
TlsError classify_ssl_reason(int reason, bool handshake) noexcept;
/// The kind of an X509_V_ERR_* verification result.
TlsError classify_verify_result(long result) noexcept;
/// Empty the thread's OpenSSL error queue, returning its first SSL-library entry (else its
/// first entry; 0 if empty) and appending every entry's text to `*detail` if given.
unsigned long drain_error_queue(std::string* detail);
/// A configuration failure from the thread's error queue: errno codes for system errors
/// (a missing file), else TlsError::configuration_error with OpenSSL's reason.
std::error_code configuration_failure();

// ---- contexts ----

/// What a TlsContext handle shares: the SSL_CTX and what its callbacks read.
struct TlsContextState {
  TlsContextState() = default;
  TlsContextState(const TlsContextState&) = delete;
  TlsContextState& operator=(const TlsContextState&) = delete;
  ~TlsContextState() { SSL_CTX_free(ctx); }

  SSL_CTX* ctx = nullptr;
  TlsRole role = TlsRole::client;
  bool verify_peer = true;
  std::string alpn_wire;                                // ALPN list, wire format (length-prefixed names)
  std::vector<std::pair<std::string, TlsContext>> sni;  // lower-case name (or *.suffix) -> context
  TlsServerNameCallback sni_callback;

  /// The context to use for `name` (SNI), or nullptr to keep this one. `keep` receives a
  /// context made by the callback so it outlives the connection.
  const TlsContext* select(std::string_view name, TlsContext& keep) const;

  static TlsContext handle(std::shared_ptr<TlsContextState> s) noexcept { return TlsContext(std::move(s)); }
  static const std::shared_ptr<TlsContextState>& of(const TlsContext& c) noexcept { return c.state_; }
};

/// The SSL ex_data slot holding the TlsState of an SSL object.
int ssl_state_index() noexcept;
/// Called from the SNI callback: remember `ctx` (chosen by a callback) for the connection.
void keep_sni_context(SSL* ssl, TlsContext ctx);
/// Called from the new-session callback: remember the session for TlsStream::session().
void keep_session(SSL* ssl, SSL_SESSION* session);

}  // namespace galay::detail
