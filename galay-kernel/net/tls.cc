// TlsStream: OpenSSL driven through a BIO of our own, its bytes moved by the socket's
// awaitables. See tls.h for the contract; the design notes are inline.
#include "galay-kernel/net/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <variant>

#include "galay-kernel/net/stream_receiver.h"
#include "galay-kernel/io/buffer_pool.h"
#include "galay-kernel/runtime/sleep.h"
#include "galay-kernel/coro/task.h"
#include "galay-kernel/net/detail/tls_internal.h"

namespace galay {
namespace detail {
namespace {

// ---- frame cache for TlsOp coroutines ----
//
// Size classes of 64 bytes up to 4 KiB, a few free frames per class and thread. A TLS
// operation's frame is usually freed on the thread that made it, so its next operation
// reuses it. Under AddressSanitizer frames come from the heap, so it sees every misuse.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCacheFrames = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kCacheFrames = false;
#else
constexpr bool kCacheFrames = true;
#endif
#else
constexpr bool kCacheFrames = true;
#endif

constexpr std::size_t kFrameGrain = 64;
constexpr std::size_t kFrameClasses = 64;
constexpr std::uint8_t kFramesPerClass = 16;

struct FrameCache {
  struct Free {
    Free* next;
  };
  Free* heads[kFrameClasses] = {};
  std::uint8_t counts[kFrameClasses] = {};
  FrameCache() = default;
  FrameCache(const FrameCache&) = delete;
  FrameCache& operator=(const FrameCache&) = delete;
  ~FrameCache();
};
thread_local FrameCache t_frames;
thread_local bool t_frames_gone = false;  // trivially destructible: readable until the thread ends
std::atomic<std::uint64_t> g_frame_heap_allocations{0};

FrameCache::~FrameCache() {
  t_frames_gone = true;
  for (Free*& head : heads) {
    while (head != nullptr) ::operator delete(std::exchange(head, head->next));
  }
}

std::atomic<std::size_t> g_live_streams{0};

// The per-op deadline: a Timeout covers a whole TLS operation, which may run several
// socket operations; each gets what is left.
class Deadline {
 public:
  explicit Deadline(Timeout t) noexcept {
    if (t.enabled() && t.value < std::chrono::hours(24 * 365 * 100)) {
      at_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(t.value);
      has_ = true;
    }
  }
  /// The Timeout for the next socket operation, or nullopt if the deadline has passed.
  std::optional<Timeout> next() const noexcept {
    if (!has_) return Timeout{};
    const auto left = at_ - Clock::now();
    if (left <= Clock::duration::zero()) return std::nullopt;
    return Timeout(left);
  }
  /// This deadline, but no later than `cap` from now.
  Deadline capped(std::chrono::milliseconds cap) const noexcept {
    Deadline d(Timeout{cap});
    if (has_ && at_ < d.at_) d.at_ = at_;
    return d;
  }
  bool has() const noexcept { return has_; }
  bool passed() const noexcept { return has_ && Clock::now() >= at_; }

 private:
  Clock::time_point at_{};
  bool has_ = false;
};

std::error_code errc(std::errc e) noexcept { return std::make_error_code(e); }

// Plaintext encrypted per flush: four full records, so a send_all makes one socket send
// per ~64 KiB and the send buffer never holds more than that.
constexpr std::size_t kMaxPlainPerFlush = std::size_t{4} * 16384;
// Courtesy alerts (after a fatal error) get at most this long to leave.
constexpr std::chrono::milliseconds kAlertLinger{1000};

}  // namespace

void* tls_frame_alloc(std::size_t n) {
  if constexpr (kCacheFrames) {
    const std::size_t cls = (n + kFrameGrain - 1) / kFrameGrain;
    if (cls < kFrameClasses && !t_frames_gone) {
      FrameCache& c = t_frames;
      if (FrameCache::Free* f = c.heads[cls]) {
        c.heads[cls] = f->next;
        --c.counts[cls];
        return f;
      }
      g_frame_heap_allocations.fetch_add(1, std::memory_order_relaxed);
      return ::operator new(cls* kFrameGrain);
    }
  }
  g_frame_heap_allocations.fetch_add(1, std::memory_order_relaxed);
  return ::operator new(n);
}

void tls_frame_free(void* p, std::size_t n) noexcept {
  if constexpr (kCacheFrames) {
    const std::size_t cls = (n + kFrameGrain - 1) / kFrameGrain;
    if (cls < kFrameClasses && !t_frames_gone) {
      FrameCache& c = t_frames;
      if (c.counts[cls] < kFramesPerClass) {
        c.heads[cls] = new (p) FrameCache::Free{c.heads[cls]};
        ++c.counts[cls];
        return;
      }
    }
  }
  ::operator delete(p);
}

std::uint64_t tls_frame_heap_allocations() noexcept { return g_frame_heap_allocations.load(std::memory_order_relaxed); }

// ---- the state of one connection ----

enum class Phase : std::uint8_t { fresh, handshaking, open, failed };

struct TlsState {
  TlsState() { g_live_streams.fetch_add(1, std::memory_order_relaxed); }
  TlsState(const TlsState&) = delete;
  TlsState& operator=(const TlsState&) = delete;
  ~TlsState() {
    // The receiver first (it waits until the kernel lets go of its buffers), then OpenSSL;
    // the socket closes last, as a member.
    chunk.reset();
    rx.reset();
    if (ssl != nullptr) {
      // A connection that was fine when dropped keeps its sessions resumable (OpenSSL drops
      // the sessions of connections freed without close_notify from its caches).
      if (phase == Phase::open && !fatal) SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
      SSL_free(ssl);
    }
    g_live_streams.fetch_sub(1, std::memory_order_relaxed);
  }

  StreamSocket& socket() noexcept {
    if (auto* t = std::get_if<TcpSocket>(&sock)) return *t;
    return std::get<UnixStream>(sock);
  }

  // ---- inbound ciphertext (read by the BIO) ----
  std::size_t inbound_available() const noexcept { return (in_end - in_begin) + (chunk.size() - chunk_pos); }
  std::size_t take_inbound(char* out, std::size_t len) noexcept {
    std::size_t n = 0;
    if (in_begin < in_end) {
      n = std::min(len, in_end - in_begin);
      std::memcpy(out, in.get() + in_begin, n);
      in_begin += n;
      if (in_begin == in_end) in_begin = in_end = 0;
    }
    if (n < len && chunk_pos < chunk.size()) {
      const std::size_t m = std::min(len - n, chunk.size() - chunk_pos);
      std::memcpy(out + n, chunk.data().data() + chunk_pos, m);
      chunk_pos += m;
      n += m;
      if (chunk_pos == chunk.size()) {
        chunk.reset();  // the pool buffer goes back as soon as OpenSSL has it all
        chunk_pos = 0;
      }
    }
    return n;
  }

  /// A failure of the whole stream: later operations return `ec`.
  std::error_code fail(std::error_code ec) noexcept {
    if (!fatal) fatal = ec;
    phase = Phase::failed;
    return ec;
  }

  // Members in destruction order, last first: the socket outlives the receiver and chunk.
  std::variant<std::monostate, TcpSocket, UnixStream> sock;
  TlsContext ctx;      // its callbacks and SNI table must outlive `ssl`
  TlsContext sni_ctx;  // a context an SNI callback chose for this connection
  SSL* ssl = nullptr;
  TlsRole role = TlsRole::client;
  std::string server_name;  // client: the name asked for

  std::optional<StreamReceiver> rx;  // pooled receive, if asked for
  PooledChunk chunk;                 // the chunk OpenSSL is reading from
  std::size_t chunk_pos = 0;
  std::unique_ptr<std::byte[]> in;  // own receive buffer (no pool)
  std::size_t in_cap = 0, in_begin = 0, in_end = 0;
  bool eof = false;  // the socket said EOF

  // Outbound records: OpenSSL appends to `out`; a flush swaps it into `out_inflight` and
  // sends that, so records produced while a send is in flight never move its buffer.
  std::vector<std::byte> out;
  std::vector<std::byte> out_inflight;

  Phase phase = Phase::fresh;
  bool reading = false;            // a recv() is running
  bool writing = false;            // a send/send_all/shutdown is running
  bool flushing = false;           // somebody is sending `out_inflight`
  bool close_sent = false;         // shutdown() produced close_notify
  std::error_code fatal;           // the stream's final error
  std::error_code write_error;     // the sending side's final error
  SleepAwaitable* gate = nullptr;  // a writer waiting for a reader's flush to end
  bool gate_woken = false;

  TlsSession session;
  std::string error_detail;
};

namespace {

// ---- the BIO: OpenSSL's only view of the connection ----

TlsState* bio_state(BIO* b) noexcept { return static_cast<TlsState*>(BIO_get_data(b)); }

int bio_write(BIO* b, const char* data, std::size_t len, std::size_t* written) {
  TlsState* st = bio_state(b);
  BIO_clear_retry_flags(b);
  const auto* p = reinterpret_cast<const std::byte*>(data);
  st->out.insert(st->out.end(), p, p + len);  // capacity is kept between flushes
  *written = len;
  return 1;
}

int bio_read(BIO* b, char* out, std::size_t len, std::size_t* read) {
  TlsState* st = bio_state(b);
  BIO_clear_retry_flags(b);
  *read = st->take_inbound(out, len);
  if (*read > 0) return 1;
  if (!st->eof) BIO_set_retry_read(b);  // no retry at EOF: OpenSSL reports unexpected EOF
  return 0;
}

long bio_ctrl(BIO* b, int cmd, long /*num*/, void* /*ptr*/) {
  TlsState* st = bio_state(b);
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;  // flushing is the stream's job, after every OpenSSL call
    case BIO_CTRL_EOF:
      return st->eof && st->inbound_available() == 0 ? 1 : 0;
    case BIO_CTRL_PENDING:
      return static_cast<long>(st->inbound_available());
    case BIO_CTRL_WPENDING:
      return static_cast<long>(st->out.size());
    default:
      return 0;
  }
}

int bio_create(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

int bio_destroy(BIO* /*b*/) { return 1; }

BIO_METHOD* bio_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "galay-kernel TLS stream");
    if (m == nullptr) return m;
    BIO_meth_set_write_ex(m, bio_write);
    BIO_meth_set_read_ex(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    BIO_meth_set_destroy(m, bio_destroy);
    return m;
  }();
  return method;
}

TlsState* state_of(SSL* ssl) noexcept { return static_cast<TlsState*>(SSL_get_ex_data(ssl, ssl_state_index())); }

// ---- errors ----

// The error of a failed SSL call (SSL_get_error said `ssl_error`), with OpenSSL's detail.
std::error_code ssl_error_code(TlsState& st, int ssl_error, bool handshake) {
  st.error_detail.clear();
  const unsigned long e = drain_error_queue(&st.error_detail);
  if (e != 0 && ERR_SYSTEM_ERROR(e)) return errno_code(ERR_GET_REASON(e));
  if (e != 0) {
    const int lib = ERR_GET_LIB(e);
    const int reason = ERR_GET_REASON(e);
    if (lib == ERR_LIB_SSL && reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
      const long v = SSL_get_verify_result(st.ssl);
      if (v != X509_V_OK) {
        st.error_detail += std::string(st.error_detail.empty() ? "" : "; ") + X509_verify_cert_error_string(v);
        return tls_code(classify_verify_result(v), TlsDetail::verify, 0, static_cast<int>(v));
      }
    }
    const TlsError kind = lib == ERR_LIB_SSL ? classify_ssl_reason(reason, handshake)
                                             : (handshake ? TlsError::handshake_failed : TlsError::protocol_error);
    return tls_code(kind, TlsDetail::openssl, lib, reason);
  }
  if (st.eof && ssl_error == SSL_ERROR_SYSCALL)
    return tls_code(TlsError::unexpected_eof, TlsDetail::openssl, ERR_LIB_SSL, SSL_R_UNEXPECTED_EOF_WHILE_READING);
  return make_error_code(handshake ? TlsError::handshake_failed : TlsError::protocol_error);
}

std::error_code ssl_failure(TlsState& st, int ssl_error, bool handshake) {
  std::error_code ec = ssl_error_code(st, ssl_error, handshake);
  // A fatal alert ends resumption of the connection's session (RFC 5246 7.2.2); a peer
  // that merely closed without close_notify does not.
  if (ec != TlsError::unexpected_eof) st.session = TlsSession();
  return ec;
}

// ---- RAII guards: a frame destroyed mid-operation (scheduler teardown) leaves the state
// consistent ----

struct FlagGuard {
  explicit FlagGuard(bool& f) noexcept : flag(f) { flag = true; }
  FlagGuard(const FlagGuard&) = delete;
  FlagGuard& operator=(const FlagGuard&) = delete;
  ~FlagGuard() { flag = false; }
  bool& flag;
};

// Holds the right to send `out_inflight`; on release wakes a writer waiting for it.
struct FlushGuard {
  explicit FlushGuard(TlsState& s) noexcept : st(s) { st.flushing = true; }
  FlushGuard(const FlushGuard&) = delete;
  FlushGuard& operator=(const FlushGuard&) = delete;
  ~FlushGuard() {
    st.flushing = false;
    if (st.gate != nullptr) {
      st.gate_woken = true;
      st.gate->cancel(std::errc::interrupted);  // resumes the writer from the loop, not inline
    }
  }
  TlsState& st;
};

struct HandshakeGuard {
  explicit HandshakeGuard(TlsState& s) noexcept : st(s) { st.phase = Phase::handshaking; }
  HandshakeGuard(const HandshakeGuard&) = delete;
  HandshakeGuard& operator=(const HandshakeGuard&) = delete;
  ~HandshakeGuard() {
    if (st.phase == Phase::handshaking) st.fail(errc(std::errc::operation_canceled));
  }
  TlsState& st;
};

struct GateGuard {
  GateGuard(TlsState& s, SleepAwaitable* w) noexcept : st(s) {
    st.gate = w;
    st.gate_woken = false;
  }
  GateGuard(const GateGuard&) = delete;
  GateGuard& operator=(const GateGuard&) = delete;
  ~GateGuard() { st.gate = nullptr; }
  TlsState& st;
};

// ---- the socket side ----

// Receive more ciphertext (OpenSSL asked for it: the inbound buffer is empty). EOF sets
// st.eof; OpenSSL then sees it through the BIO.
TlsOp<Expected<void>> fill_inbound(TlsState& st, Deadline dl) {
  const std::optional<Timeout> t = dl.next();
  if (!t) co_return make_error(errc(std::errc::timed_out));
  if (st.rx) {
    if (st.chunk_pos < st.chunk.size()) co_return Expected<void>{};  // not consumed yet
    auto c = co_await st.rx->recv(*t);
    if (!c) co_return make_error(c.error());
    if (c->empty()) {
      st.eof = true;
    } else {
      st.chunk = std::move(*c);
      st.chunk_pos = 0;
    }
    co_return Expected<void>{};
  }
  if (st.in_end == st.in_cap && st.in_begin > 0) {
    std::memmove(st.in.get(), st.in.get() + st.in_begin, st.in_end - st.in_begin);
    st.in_end -= st.in_begin;
    st.in_begin = 0;
  }
  if (st.in_end == st.in_cap) co_return Expected<void>{};  // full: OpenSSL reads first
  auto n = co_await st.socket().recv(st.in.get() + st.in_end, st.in_cap - st.in_end, *t);
  if (!n) co_return make_error(n.error());
  if (*n == 0) {
    st.eof = true;
  } else {
    st.in_end += *n;
  }
  co_return Expected<void>{};
}

// Send every queued record. The caller holds the flush (FlushGuard) or runs alone.
TlsOp<Expected<void>> flush_out(TlsState& st, Deadline dl) {
  while (!st.out.empty()) {
    const std::optional<Timeout> t = dl.next();
    if (!t) co_return make_error(errc(std::errc::timed_out));
    std::swap(st.out, st.out_inflight);  // out_inflight was empty; both keep their capacity
    auto r = co_await st.socket().send_all(std::span<const std::byte>(st.out_inflight), *t);
    st.out_inflight.clear();
    if (!r) co_return make_error(r.error());
  }
  co_return Expected<void>{};
}

// Best effort: let a fatal alert OpenSSL queued leave, for at most kAlertLinger.
TlsOp<Expected<void>> send_alert(TlsState& st, Deadline dl) {
  if (st.out.empty() || st.flushing || st.write_error) co_return Expected<void>{};
  FlushGuard flush(st);
  auto r = co_await flush_out(st, dl.capped(kAlertLinger));
  if (!r) st.write_error = r.error();
  co_return Expected<void>{};
}

// A writer waits here while a reader is flushing records it produced.
TlsOp<Expected<void>> wait_for_flush(TlsState& st, Deadline dl) {
  while (st.flushing) {
    std::optional<Timeout> t = dl.next();
    if (!t) co_return make_error(errc(std::errc::timed_out));
    // A sleep as long as the deadline (or an hour, re-armed), ended early by the flusher
    // (FlushGuard), or by the task's scope like any sleep.
    const auto wait = t->enabled() ? t->value : std::chrono::nanoseconds(std::chrono::hours(1));
    SleepAwaitable sleep = sleep_for(wait);
    GateGuard gate(st, &sleep);
    auto r = co_await sleep;
    if (st.gate_woken) continue;
    if (!r) co_return make_error(r.error());
    if (dl.passed()) co_return make_error(errc(std::errc::timed_out));
  }
  co_return Expected<void>{};
}

// The checks every operation starts with.
std::error_code usable_for_io(const TlsState& st) noexcept {
  if (st.fatal) return st.fatal;
  if (st.phase == Phase::handshaking) return errc(std::errc::device_or_resource_busy);
  if (st.phase != Phase::open) return errc(std::errc::not_connected);
  return {};
}

// What recv checks besides usable_for_io: one reader at a time.
std::error_code usable_for_reading(const TlsState& st) noexcept {
  if (auto ec = usable_for_io(st)) return ec;
  if (st.reading) return errc(std::errc::device_or_resource_busy);
  return {};
}

// What send and shutdown check besides usable_for_io: one writer at a time, and no writes
// after a write failed (the record stream is broken from there on).
std::error_code usable_for_writing(const TlsState& st) noexcept {
  if (auto ec = usable_for_io(st)) return ec;
  if (st.writing) return errc(std::errc::device_or_resource_busy);
  return st.write_error;
}

std::error_code cancelled(CancelScope* scope) noexcept {
  if (scope != nullptr && scope->cancelled()) return errc(scope->reason());
  return {};
}

// The prologue of recv, send and shutdown, in this order: a moved-from stream, a
// cancelled scope, then `usable` (usable_for_reading or usable_for_writing).
std::error_code refused(const TlsState* sp, CancelScope* scope,
                        std::error_code (*usable)(const TlsState&) noexcept) noexcept {
  if (sp == nullptr) return errc(std::errc::bad_file_descriptor);
  if (auto ec = cancelled(scope)) return ec;
  return usable(*sp);
}

// ---- operations ----

TlsOp<Expected<void>> do_handshake(TlsState* sp, Timeout timeout) {
  if (sp == nullptr) co_return make_error(errc(std::errc::bad_file_descriptor));
  TlsState& st = *sp;
  if (auto ec = cancelled(co_await current_scope())) co_return make_error(ec);
  if (st.phase == Phase::open) co_return Expected<void>{};
  if (st.fatal) co_return make_error(st.fatal);
  if (st.phase == Phase::handshaking || st.reading || st.writing)
    co_return make_error(errc(std::errc::device_or_resource_busy));
  HandshakeGuard running(st);
  FlushGuard exclusive(st);
  const Deadline dl(timeout);
  for (;;) {
    ERR_clear_error();
    const int r = SSL_do_handshake(st.ssl);
    const int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(st.ssl, r);
    if (err == SSL_ERROR_SSL || err == SSL_ERROR_SYSCALL) {
      const std::error_code ec = st.fail(ssl_failure(st, err, true));
      if (!st.out.empty()) {
        auto ignored = co_await flush_out(st, dl.capped(kAlertLinger));  // the alert, if it can go
        (void)ignored;
      }
      co_return make_error(ec);
    }
    if (!st.out.empty()) {
      auto f = co_await flush_out(st, dl);
      if (!f) co_return make_error(st.fail(f.error()));
    }
    if (r == 1) {
      st.phase = Phase::open;
      co_return Expected<void>{};
    }
    if (err != SSL_ERROR_WANT_READ) {
      co_return make_error(st.fail(make_error_code(TlsError::handshake_failed)));
    }
    auto got = co_await fill_inbound(st, dl);
    if (!got) co_return make_error(st.fail(got.error()));
  }
}

TlsOp<Expected<std::size_t>> do_recv(TlsState* sp, std::span<std::byte> buf, Timeout timeout) {
  if (auto ec = refused(sp, co_await current_scope(), usable_for_reading)) co_return make_error(ec);
  TlsState& st = *sp;
  if (buf.empty()) co_return std::size_t{0};
  FlagGuard reading(st.reading);
  const Deadline dl(timeout);
  for (;;) {
    if (st.fatal) co_return make_error(st.fatal);  // a concurrent send failed for good
    ERR_clear_error();
    std::size_t n = 0;
    const int r = SSL_read_ex(st.ssl, buf.data(), buf.size(), &n);
    const int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(st.ssl, r);
    if (err == SSL_ERROR_SSL || err == SSL_ERROR_SYSCALL) {
      const std::error_code ec = st.fail(ssl_failure(st, err, false));
      if (!st.writing) {
        auto ignored = co_await send_alert(st, dl);
        (void)ignored;
      }
      co_return make_error(ec);
    }
    // Records this read produced (a KeyUpdate answer, an alert): a running send takes them
    // along; otherwise this read sends them itself.
    if (!st.out.empty()) {
      if (st.write_error) {
        st.out.clear();  // nobody can send them any more
      } else if (!st.writing && !st.flushing) {
        FlushGuard flush(st);
        auto f = co_await flush_out(st, dl);
        if (!f) {
          st.write_error = f.error();
          if (r != 1) co_return make_error(f.error());
        }
      }
    }
    if (r == 1) co_return n;
    if (err == SSL_ERROR_ZERO_RETURN) co_return std::size_t{0};
    if (err != SSL_ERROR_WANT_READ) co_return make_error(st.fail(make_error_code(TlsError::protocol_error)));
    auto got = co_await fill_inbound(st, dl);
    if (!got) co_return make_error(got.error());  // timeout/cancel/socket error: the stream stays consistent
  }
}

TlsOp<Expected<std::size_t>> do_send(TlsState* sp, std::span<const std::byte> buf, Timeout timeout, bool all) {
  if (auto ec = refused(sp, co_await current_scope(), usable_for_writing)) co_return make_error(ec);
  TlsState& st = *sp;
  if (st.close_sent) co_return make_error(errc(std::errc::broken_pipe));
  if (buf.empty()) co_return std::size_t{0};
  FlagGuard writing(st.writing);
  const Deadline dl(timeout);
  std::size_t done = 0;
  // A send_all that stops after some chunks went out cannot say how many: the sending side
  // is done then. One that stops before encrypting anything leaves it usable.
  auto stop = [&](std::error_code ec) {
    if (done > 0) st.write_error = ec;
    return make_error(ec);
  };
  do {
    // Records go out in the order OpenSSL made them: wait until a reader's flush is over
    // before encrypting (nothing is committed while waiting, so a timeout here is clean).
    auto waited = co_await wait_for_flush(st, dl);
    if (!waited) co_return stop(waited.error());
    if (st.fatal) co_return make_error(st.fatal);
    if (st.write_error) co_return make_error(st.write_error);
    if (dl.passed()) co_return stop(errc(std::errc::timed_out));  // before encrypting more
    const std::size_t chunk = std::min(buf.size() - done, kMaxPlainPerFlush);
    ERR_clear_error();
    std::size_t n = 0;
    const int r = SSL_write_ex(st.ssl, buf.data() + done, chunk, &n);
    if (r != 1) {
      const int err = SSL_get_error(st.ssl, r);
      const std::error_code ec =
          st.fail(err == SSL_ERROR_SSL || err == SSL_ERROR_SYSCALL ? ssl_failure(st, err, false)
                                                                   : make_error_code(TlsError::protocol_error));
      auto ignored = co_await send_alert(st, dl);
      (void)ignored;
      co_return make_error(ec);
    }
    done += n;
    FlushGuard flush(st);
    auto f = co_await flush_out(st, dl);
    if (!f) {
      st.write_error = f.error();  // part of a record may be out: the sending side is done
      co_return make_error(f.error());
    }
  } while (all && done < buf.size());
  co_return done;
}

TlsOp<Expected<void>> do_shutdown(TlsState* sp, Timeout timeout) {
  if (auto ec = refused(sp, co_await current_scope(), usable_for_writing)) co_return make_error(ec);
  TlsState& st = *sp;
  if (st.close_sent) co_return Expected<void>{};
  FlagGuard writing(st.writing);
  const Deadline dl(timeout);
  auto waited = co_await wait_for_flush(st, dl);
  if (!waited) co_return make_error(waited.error());
  if (st.fatal) co_return make_error(st.fatal);
  if (st.write_error) co_return make_error(st.write_error);
  if (dl.passed()) co_return make_error(errc(std::errc::timed_out));
  ERR_clear_error();
  const int r = SSL_shutdown(st.ssl);  // queues close_notify; never reads on this first call
  if (r < 0) {
    const int err = SSL_get_error(st.ssl, r);
    co_return make_error(st.fail(err == SSL_ERROR_SSL || err == SSL_ERROR_SYSCALL
                                     ? ssl_failure(st, err, false)
                                     : make_error_code(TlsError::protocol_error)));
  }
  st.close_sent = true;
  FlushGuard flush(st);
  auto f = co_await flush_out(st, dl);
  if (!f) {
    st.write_error = f.error();
    co_return make_error(f.error());
  }
  co_return Expected<void>{};
}

bool is_ip_literal(const std::string& name) noexcept {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, name.c_str(), buf) == 1 || ::inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

}  // namespace

int ssl_state_index() noexcept {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

void keep_sni_context(SSL* ssl, TlsContext ctx) {
  if (TlsState* st = state_of(ssl)) st->sni_ctx = std::move(ctx);
}

void keep_session(SSL* ssl, SSL_SESSION* session) {
  TlsState* st = state_of(ssl);
  if (st == nullptr) return;
  // A copy: OpenSSL marks a connection's own session not resumable when that connection
  // ends with an error (or without close_notify), which must not reach the user's copy.
  SSL_SESSION* copy = SSL_SESSION_dup(session);
  if (copy == nullptr) return;
  st->session = TlsSession::share(copy);
  SSL_SESSION_free(copy);  // the TlsSession holds its own reference
}

}  // namespace detail

// ---- TlsStream ----

TlsStream::TlsStream() noexcept = default;
TlsStream::TlsStream(std::unique_ptr<detail::TlsState> s) noexcept : state_(std::move(s)) {}
TlsStream::TlsStream(TlsStream&& o) noexcept = default;
TlsStream& TlsStream::operator=(TlsStream&& o) noexcept = default;
TlsStream::~TlsStream() = default;

Expected<TlsStream> TlsStream::make(const TlsContext& ctx, TlsRole role, TcpSocket* tcp, UnixStream* unix_stream,
                                    const TlsClientOptions* client, const TlsServerOptions* server) {
  using detail::TlsState;
  const auto& cs = detail::TlsContextState::of(ctx);
  if (!cs) return errno_error(EBADF);
  if (cs->role != role) return errno_error(EINVAL);
  BufferPool* pool = client != nullptr ? client->receive_pool : server->receive_pool;
  const std::size_t buffer = client != nullptr ? client->receive_buffer : server->receive_buffer;
  if (pool != nullptr && tcp == nullptr) return errno_error(EINVAL);  // StreamReceiver is TCP only
  if (client != nullptr && client->verify_host && cs->verify_peer && client->server_name.empty())
    return errno_error(EINVAL);  // nothing to check the certificate against

  auto st = std::make_unique<TlsState>();
  if (tcp != nullptr) {
    if (tcp->is_open()) {
      if (auto r = tcp->set_nodelay(true); !r) return make_error(r.error());
    }
    st->sock.emplace<TcpSocket>(std::move(*tcp));
  } else {
    st->sock.emplace<UnixStream>(std::move(*unix_stream));
  }
  if (!st->socket().is_open()) return errno_error(EBADF);
  st->ctx = ctx;
  st->role = role;

  ERR_clear_error();
  BIO_METHOD* method = detail::bio_method();
  st->ssl = method != nullptr ? SSL_new(cs->ctx) : nullptr;
  if (st->ssl == nullptr) return make_error(detail::configuration_failure());
  BIO* bio = BIO_new(method);
  if (bio == nullptr) return make_error(detail::configuration_failure());
  BIO_set_data(bio, st.get());
  SSL_set_bio(st->ssl, bio, bio);  // one reference, owned by the SSL object now
  SSL_set_ex_data(st->ssl, detail::ssl_state_index(), st.get());
  SSL_set_read_ahead(st->ssl, 1);  // take whole records (and more) per BIO read

  if (client != nullptr) {
    SSL_set_connect_state(st->ssl);
    st->server_name = client->server_name;
    const std::string& name = st->server_name;
    if (!name.empty()) {
      if (detail::is_ip_literal(name)) {
        // No SNI for addresses (RFC 6066); check the IP SANs instead.
        if (client->verify_host && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(st->ssl), name.c_str()) != 1)
          return make_error(detail::configuration_failure());
      } else {
        if (SSL_set_tlsext_host_name(st->ssl, name.c_str()) != 1) return make_error(detail::configuration_failure());
        if (client->verify_host) {
          SSL_set_hostflags(st->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
          if (SSL_set1_host(st->ssl, name.c_str()) != 1) return make_error(detail::configuration_failure());
        }
      }
    }
    if (client->session.valid() && SSL_set_session(st->ssl, client->session.native_handle()) != 1)
      return make_error(detail::configuration_failure());
  } else {
    SSL_set_accept_state(st->ssl);
  }

  if (pool != nullptr) {
    st->rx.emplace(std::get<TcpSocket>(st->sock), *pool);
  } else {
    st->in_cap = std::max<std::size_t>(buffer, 1024);
    st->in = std::make_unique_for_overwrite<std::byte[]>(st->in_cap);
  }
  return TlsStream(std::move(st));
}

Expected<TlsStream> TlsStream::client(const TlsContext& ctx, TcpSocket socket, const TlsClientOptions& options) {
  return make(ctx, TlsRole::client, &socket, nullptr, &options, nullptr);
}
Expected<TlsStream> TlsStream::client(const TlsContext& ctx, UnixStream socket, const TlsClientOptions& options) {
  return make(ctx, TlsRole::client, nullptr, &socket, &options, nullptr);
}
Expected<TlsStream> TlsStream::server(const TlsContext& ctx, TcpSocket socket, const TlsServerOptions& options) {
  return make(ctx, TlsRole::server, &socket, nullptr, nullptr, &options);
}
Expected<TlsStream> TlsStream::server(const TlsContext& ctx, UnixStream socket, const TlsServerOptions& options) {
  return make(ctx, TlsRole::server, nullptr, &socket, nullptr, &options);
}

TlsOp<Expected<void>> TlsStream::handshake(Timeout timeout) { return detail::do_handshake(state_.get(), timeout); }

TlsOp<Expected<std::size_t>> TlsStream::recv(std::span<std::byte> buf, Timeout timeout) {
  return detail::do_recv(state_.get(), buf, timeout);
}

TlsOp<Expected<std::size_t>> TlsStream::send(std::span<const std::byte> buf, Timeout timeout) {
  return detail::do_send(state_.get(), buf, timeout, false);
}

TlsOp<Expected<std::size_t>> TlsStream::send_all(std::span<const std::byte> buf, Timeout timeout) {
  return detail::do_send(state_.get(), buf, timeout, true);
}

TlsOp<Expected<void>> TlsStream::shutdown(Timeout timeout) { return detail::do_shutdown(state_.get(), timeout); }

bool TlsStream::handshake_done() const noexcept { return state_ && state_->phase == detail::Phase::open; }

TlsRole TlsStream::role() const noexcept { return state_ ? state_->role : TlsRole::client; }

std::string_view TlsStream::alpn() const noexcept {
  if (!state_) return {};
  const unsigned char* data = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(state_->ssl, &data, &len);
  return data != nullptr ? std::string_view(reinterpret_cast<const char*>(data), len) : std::string_view();
}

std::string_view TlsStream::server_name() const noexcept {
  if (!state_) return {};
  if (state_->role == TlsRole::client) return state_->server_name;
  const char* name = SSL_get_servername(state_->ssl, TLSEXT_NAMETYPE_host_name);
  return name != nullptr ? std::string_view(name) : std::string_view();
}

std::string_view TlsStream::protocol() const noexcept {
  if (!handshake_done()) return {};
  return SSL_get_version(state_->ssl);
}

std::string_view TlsStream::cipher() const noexcept {
  if (!handshake_done()) return {};
  const char* name = SSL_get_cipher_name(state_->ssl);
  return name != nullptr ? std::string_view(name) : std::string_view();
}

bool TlsStream::resumed() const noexcept { return handshake_done() && SSL_session_reused(state_->ssl) == 1; }

TlsSession TlsStream::session() const {
  if (!state_) return {};
  if (state_->session.valid()) return state_->session;
  SSL_SESSION* s = SSL_get1_session(state_->ssl);
  TlsSession out = TlsSession::share(s);
  SSL_SESSION_free(s);
  return out.resumable() ? out : TlsSession();
}

std::string_view TlsStream::last_error_detail() const noexcept {
  return state_ ? std::string_view(state_->error_detail) : std::string_view();
}

StreamSocket& TlsStream::socket() noexcept { return state_->socket(); }

ssl_st* TlsStream::native_handle() const noexcept { return state_ ? state_->ssl : nullptr; }

std::size_t TlsStream::live_count() noexcept { return detail::g_live_streams.load(std::memory_order_relaxed); }

}  // namespace galay
