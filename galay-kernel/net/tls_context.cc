// TlsContext, TlsSession and the TLS error category.
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <memory>
#include <string>

#include "galay-kernel/net/detail/tls_internal.h"
#include "galay-kernel/net/tls.h"

namespace galay {
namespace detail {
namespace {

const char* kind_text(int kind) noexcept {
  switch (static_cast<TlsError>(kind)) {
    case TlsError::handshake_failed:
      return "TLS handshake failed";
    case TlsError::certificate_expired:
      return "TLS certificate expired";
    case TlsError::certificate_not_yet_valid:
      return "TLS certificate not yet valid";
    case TlsError::host_name_mismatch:
      return "TLS certificate does not match the host name";
    case TlsError::unknown_ca:
      return "TLS certificate issued by an unknown CA";
    case TlsError::self_signed:
      return "TLS certificate is self-signed";
    case TlsError::certificate_verify_failed:
      return "TLS certificate verification failed";
    case TlsError::protocol_version:
      return "TLS protocol version not accepted";
    case TlsError::not_tls:
      return "peer does not speak TLS";
    case TlsError::unexpected_eof:
      return "TLS connection truncated (EOF without close_notify)";
    case TlsError::protocol_error:
      return "TLS protocol error";
    case TlsError::configuration_error:
      return "TLS configuration rejected";
  }
  return "unknown TLS error";
}

class TlsCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "galay.tls"; }

  std::string message(int value) const override {
    const int kind = kind_of(value);
    std::string text = kind_text(kind);
    const auto source = static_cast<TlsDetail>((value >> kTlsSourceShift) & 3);
    const int reason = value & kTlsReasonMask;
    if (value < (1 << kTlsKindShift) || source == TlsDetail::none) return text;
    text += ": ";
    if (source == TlsDetail::verify) {
      text += X509_verify_cert_error_string(reason);
    } else {
      const int lib = (value >> kTlsLibShift) & kTlsLibMask;
      const char* r = ERR_reason_error_string(ERR_PACK(lib, 0, reason));
      if (r != nullptr) {
        text += r;
      } else {
        text += "OpenSSL library " + std::to_string(lib) + " reason " + std::to_string(reason);
      }
    }
    return text;
  }

  std::error_condition default_error_condition(int value) const noexcept override { return {kind_of(value), *this}; }

  bool equivalent(int value, const std::error_condition& cond) const noexcept override {
    if (cond.category() != *this) return false;
    const int kind = kind_of(value);
    if (kind == cond.value()) return true;
    const auto k = static_cast<TlsError>(kind);
    switch (static_cast<TlsError>(cond.value())) {
      case TlsError::certificate_verify_failed:
        return k == TlsError::certificate_expired || k == TlsError::certificate_not_yet_valid ||
               k == TlsError::host_name_mismatch || k == TlsError::unknown_ca || k == TlsError::self_signed;
      case TlsError::unknown_ca:
        return k == TlsError::self_signed;
      default:
        return false;
    }
  }

 private:
  static int kind_of(int value) noexcept { return value < (1 << kTlsKindShift) ? value : value >> kTlsKindShift; }
};

int no_password(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) { return 0; }

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// "*.example.com" matches "a.example.com", not "example.com" nor "a.b.example.com".
bool name_matches(std::string_view pattern, std::string_view name) {
  if (pattern == name) return true;
  if (pattern.size() < 3 || pattern.substr(0, 2) != "*.") return false;
  const std::string_view suffix = pattern.substr(1);  // ".example.com"
  if (name.size() <= suffix.size() || name.substr(name.size() - suffix.size()) != suffix) return false;
  const std::string_view label = name.substr(0, name.size() - suffix.size());
  return label.find('.') == std::string_view::npos;
}

// SNI: switch the connection to the context registered for the name the client sent.
int on_server_name(SSL* ssl, int* /*alert*/, void* arg) {
  const auto* cs = static_cast<const TlsContextState*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return SSL_TLSEXT_ERR_OK;
  TlsContext keep;
  const TlsContext* chosen = nullptr;
  try {
    chosen = cs->select(name, keep);
  } catch (...) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;  // a throwing callback must not unwind through OpenSSL
  }
  if (chosen == nullptr || !chosen->valid()) return SSL_TLSEXT_ERR_OK;
  const auto& state = TlsContextState::of(*chosen);
  if (state->role != TlsRole::server) return SSL_TLSEXT_ERR_OK;
  if (SSL_set_SSL_CTX(ssl, state->ctx) == nullptr) return SSL_TLSEXT_ERR_ALERT_FATAL;
  if (keep.valid()) keep_sni_context(ssl, std::move(keep));
  return SSL_TLSEXT_ERR_OK;
}

// ALPN, server side: the first of our protocols (in our order) that the client offers.
int on_alpn_select(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                   unsigned int inlen, void* arg) {
  const auto* cs = static_cast<const TlsContextState*>(arg);
  const auto* ours = reinterpret_cast<const unsigned char*>(cs->alpn_wire.data());
  const std::size_t ours_len = cs->alpn_wire.size();
  for (std::size_t i = 0; i < ours_len; i += 1 + ours[i]) {
    const unsigned char n = ours[i];
    for (unsigned int j = 0; j < inlen; j += 1u + in[j]) {
      if (in[j] == n && j + 1u + n <= inlen && std::equal(ours + i + 1, ours + i + 1 + n, in + j + 1)) {
        *out = in + j + 1;
        *outlen = n;
        return SSL_TLSEXT_ERR_OK;
      }
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

int on_new_session(SSL* ssl, SSL_SESSION* session) {
  keep_session(ssl, session);
  return 0;  // OpenSSL keeps (and later drops) its own reference
}

int version_number(TlsVersion v) noexcept { return v == TlsVersion::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION; }

// Read every certificate of a PEM text; 0 certificates is an error.
template <class F>
Expected<void> for_each_pem_certificate(std::string_view pem, F&& f) {
  if (pem.size() > static_cast<std::size_t>(INT32_MAX))
    return make_error(std::make_error_code(std::errc::invalid_argument));
  ERR_clear_error();
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  if (!bio) return make_error(configuration_failure());
  int count = 0;
  for (;;) {
    X509* x = PEM_read_bio_X509(bio.get(), nullptr, no_password, nullptr);
    if (x == nullptr) break;
    const bool ok = f(x, count);  // takes ownership of x
    ++count;
    if (!ok) return make_error(configuration_failure());
  }
  if (count == 0) return make_error(configuration_failure());
  ERR_clear_error();  // the end of the text reads as "no start line"
  return {};
}

}  // namespace

std::error_code tls_code(TlsError kind, TlsDetail source, int lib, int reason) noexcept {
  const int value = (static_cast<int>(kind) << kTlsKindShift) | (static_cast<int>(source) << kTlsSourceShift) |
                    ((lib & kTlsLibMask) << kTlsLibShift) | (reason & kTlsReasonMask);
  return {value, tls_category()};
}

TlsError classify_ssl_reason(int reason, bool handshake) noexcept {
  switch (reason) {
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_WRONG_SSL_VERSION:
      return handshake ? TlsError::not_tls : TlsError::protocol_error;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_VERSION_TOO_HIGH:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_UNSUPPORTED_SSL_VERSION:
    case SSL_R_INAPPROPRIATE_FALLBACK:
    case SSL_R_TLSV1_ALERT_INAPPROPRIATE_FALLBACK:
      return TlsError::protocol_version;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
      return TlsError::unexpected_eof;
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
      return TlsError::certificate_expired;
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
      return TlsError::unknown_ca;
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
      return TlsError::certificate_verify_failed;
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
    case SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL:
    case SSL_R_NO_APPLICATION_PROTOCOL:
    case SSL_R_SSL_HANDSHAKE_FAILURE:
      return TlsError::handshake_failed;
    default:
      return handshake ? TlsError::handshake_failed : TlsError::protocol_error;
  }
}

TlsError classify_verify_result(long result) noexcept {
  switch (result) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return TlsError::certificate_expired;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return TlsError::certificate_not_yet_valid;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
    case X509_V_ERR_EMAIL_MISMATCH:
      return TlsError::host_name_mismatch;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      return TlsError::self_signed;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
      return TlsError::unknown_ca;
    default:
      return TlsError::certificate_verify_failed;
  }
}

unsigned long drain_error_queue(std::string* detail) {
  unsigned long first = 0;
  unsigned long first_ssl = 0;
  const char* data = nullptr;
  int flags = 0;
  for (;;) {
    const unsigned long e = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags);
    if (e == 0) break;
    if (first == 0) first = e;
    if (first_ssl == 0 && !ERR_SYSTEM_ERROR(e) && ERR_GET_LIB(e) == ERR_LIB_SSL) first_ssl = e;
    if (detail != nullptr) {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof buf);
      if (!detail->empty()) detail->append("; ");
      detail->append(buf);
      if (data != nullptr && (flags & ERR_TXT_STRING) != 0 && *data != '\0')
        detail->append(" (").append(data).append(")");
    }
  }
  return first_ssl != 0 ? first_ssl : first;
}

std::error_code configuration_failure() {
  const unsigned long e = drain_error_queue(nullptr);
  if (e == 0) return make_error_code(TlsError::configuration_error);
  if (ERR_SYSTEM_ERROR(e)) return errno_code(ERR_GET_REASON(e));
  return tls_code(TlsError::configuration_error, TlsDetail::openssl, ERR_GET_LIB(e), ERR_GET_REASON(e));
}

const TlsContext* TlsContextState::select(std::string_view name, TlsContext& keep) const {
  const std::string n = lower(name);
  for (const auto& [pattern, ctx] : sni) {
    if (name_matches(pattern, n)) return &ctx;
  }
  if (sni_callback) {
    std::optional<TlsContext> r = sni_callback(name);
    if (r && r->valid()) {
      keep = std::move(*r);
      return &keep;
    }
  }
  return nullptr;
}

}  // namespace detail

// ---- error category ----

const std::error_category& tls_category() noexcept {
  static const detail::TlsCategory category;
  return category;
}

std::error_condition make_error_condition(TlsError e) noexcept { return {static_cast<int>(e), tls_category()}; }

std::error_code make_error_code(TlsError e) noexcept { return {static_cast<int>(e), tls_category()}; }

// ---- TlsContext ----

Expected<TlsContext> TlsContext::create(TlsRole role) {
  auto state = std::make_shared<detail::TlsContextState>();
  ERR_clear_error();
  state->ctx = SSL_CTX_new(TLS_method());
  if (state->ctx == nullptr) return make_error(detail::configuration_failure());
  SSL_CTX* c = state->ctx;
  state->role = role;
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  // Renegotiation would make a send need to read; refuse it (TLS 1.3 has none anyway).
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_default_passwd_cb(c, detail::no_password);  // never prompt on a terminal
  if (role == TlsRole::client) {
    state->verify_peer = true;
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
    // Sessions reach TlsStream::session() through the callback (TLS 1.3 tickets arrive
    // after the handshake); the context keeps no cache of its own.
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c, detail::on_new_session);
  } else {
    state->verify_peer = false;
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
    static constexpr unsigned char kSessionContext[] = "galay-kernel";
    SSL_CTX_set_session_id_context(c, kSessionContext, sizeof kSessionContext - 1);
    SSL_CTX_set_tlsext_servername_callback(c, detail::on_server_name);
    SSL_CTX_set_tlsext_servername_arg(c, state.get());
    SSL_CTX_set_alpn_select_cb(c, detail::on_alpn_select, state.get());
  }
  return TlsContext(std::move(state));
}

TlsRole TlsContext::role() const noexcept { return state_ ? state_->role : TlsRole::client; }

ssl_ctx_st* TlsContext::native_handle() const noexcept { return state_ ? state_->ctx : nullptr; }

Expected<void> TlsContext::use_certificate_chain_pem(std::string_view pem) {
  if (!state_) return errno_error(EBADF);
  SSL_CTX* c = state_->ctx;
  bool cleared = false;
  return detail::for_each_pem_certificate(pem, [&](X509* x, int index) {
    if (index == 0) {
      const bool ok = SSL_CTX_use_certificate(c, x) == 1;
      X509_free(x);
      if (ok && !cleared) cleared = SSL_CTX_clear_chain_certs(c) == 1;
      return ok;
    }
    if (SSL_CTX_add0_chain_cert(c, x) == 1) return true;  // took ownership
    X509_free(x);
    return false;
  });
}

Expected<void> TlsContext::use_certificate_chain_file(const std::string& path) {
  if (!state_) return errno_error(EBADF);
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(state_->ctx, path.c_str()) != 1)
    return make_error(detail::configuration_failure());
  return {};
}

namespace {
Expected<void> check_key(SSL_CTX* c) {
  if (SSL_CTX_get0_certificate(c) != nullptr && SSL_CTX_check_private_key(c) != 1)
    return make_error(detail::configuration_failure());
  return {};
}
}  // namespace

Expected<void> TlsContext::use_private_key_pem(std::string_view pem) {
  if (!state_) return errno_error(EBADF);
  if (pem.size() > static_cast<std::size_t>(INT32_MAX))
    return make_error(std::make_error_code(std::errc::invalid_argument));
  ERR_clear_error();
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  if (!bio) return make_error(detail::configuration_failure());
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, detail::no_password, nullptr), &EVP_PKEY_free);
  if (!key || SSL_CTX_use_PrivateKey(state_->ctx, key.get()) != 1) return make_error(detail::configuration_failure());
  return check_key(state_->ctx);
}

Expected<void> TlsContext::use_private_key_file(const std::string& path) {
  if (!state_) return errno_error(EBADF);
  ERR_clear_error();
  if (SSL_CTX_use_PrivateKey_file(state_->ctx, path.c_str(), SSL_FILETYPE_PEM) != 1)
    return make_error(detail::configuration_failure());
  return check_key(state_->ctx);
}

Expected<void> TlsContext::add_ca_pem(std::string_view pem) {
  if (!state_) return errno_error(EBADF);
  X509_STORE* store = SSL_CTX_get_cert_store(state_->ctx);
  return detail::for_each_pem_certificate(pem, [&](X509* x, int /*index*/) {
    const bool ok = X509_STORE_add_cert(store, x) == 1;  // takes its own reference
    X509_free(x);
    return ok;
  });
}

Expected<void> TlsContext::add_ca_file(const std::string& path) {
  if (!state_) return errno_error(EBADF);
  ERR_clear_error();
  if (SSL_CTX_load_verify_locations(state_->ctx, path.c_str(), nullptr) != 1)
    return make_error(detail::configuration_failure());
  return {};
}

Expected<void> TlsContext::use_system_trust() {
  if (!state_) return errno_error(EBADF);
  ERR_clear_error();
  if (SSL_CTX_set_default_verify_paths(state_->ctx) != 1) return make_error(detail::configuration_failure());
  return {};
}

void TlsContext::set_verify_peer(bool on) {
  if (!state_) return;
  state_->verify_peer = on;
  int mode = SSL_VERIFY_NONE;
  if (on) mode = state_->role == TlsRole::client ? SSL_VERIFY_PEER : SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(state_->ctx, mode, nullptr);
}

Expected<void> TlsContext::set_min_version(TlsVersion v) {
  if (!state_) return errno_error(EBADF);
  if (SSL_CTX_set_min_proto_version(state_->ctx, detail::version_number(v)) != 1)
    return make_error(detail::configuration_failure());
  return {};
}

Expected<void> TlsContext::set_max_version(TlsVersion v) {
  if (!state_) return errno_error(EBADF);
  if (SSL_CTX_set_max_proto_version(state_->ctx, detail::version_number(v)) != 1)
    return make_error(detail::configuration_failure());
  return {};
}

Expected<void> TlsContext::set_alpn(const std::vector<std::string>& protocols) {
  if (!state_) return errno_error(EBADF);
  std::string wire;
  for (const std::string& p : protocols) {
    if (p.empty() || p.size() > 255) return make_error(std::make_error_code(std::errc::invalid_argument));
    wire.push_back(static_cast<char>(p.size()));
    wire += p;
  }
  if (state_->role == TlsRole::client) {
    ERR_clear_error();
    // Note the inverted convention: 0 is success here.
    if (SSL_CTX_set_alpn_protos(state_->ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                                static_cast<unsigned int>(wire.size())) != 0)
      return make_error(detail::configuration_failure());
  }
  state_->alpn_wire = std::move(wire);
  return {};
}

Expected<void> TlsContext::add_server_name(std::string_view server_name, TlsContext ctx) {
  if (!state_ || !ctx.state_) return errno_error(EBADF);
  if (state_->role != TlsRole::server || ctx.state_->role != TlsRole::server || server_name.empty())
    return make_error(std::make_error_code(std::errc::invalid_argument));
  if (ctx.state_ == state_) return {};  // the default already (and no reference cycle)
  state_->sni.emplace_back(detail::lower(server_name), std::move(ctx));
  return {};
}

void TlsContext::set_server_name_callback(TlsServerNameCallback callback) {
  if (state_) state_->sni_callback = std::move(callback);
}

// ---- TlsSession ----

TlsSession::TlsSession(const TlsSession& o) noexcept : s_(o.s_) {
  if (s_ != nullptr) SSL_SESSION_up_ref(s_);
}

TlsSession& TlsSession::operator=(const TlsSession& o) noexcept {
  if (this != &o) {
    if (o.s_ != nullptr) SSL_SESSION_up_ref(o.s_);
    SSL_SESSION_free(s_);
    s_ = o.s_;
  }
  return *this;
}

TlsSession& TlsSession::operator=(TlsSession&& o) noexcept {
  if (this != &o) {
    SSL_SESSION_free(s_);
    s_ = o.s_;
    o.s_ = nullptr;
  }
  return *this;
}

TlsSession::~TlsSession() { SSL_SESSION_free(s_); }

bool TlsSession::resumable() const noexcept { return s_ != nullptr && SSL_SESSION_is_resumable(s_) == 1; }

TlsSession TlsSession::share(ssl_session_st* s) noexcept {
  TlsSession out;
  if (s != nullptr && SSL_SESSION_up_ref(s) == 1) out.s_ = s;
  return out;
}

}  // namespace galay
