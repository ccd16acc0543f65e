#pragma once
/// @file io_op.h
/// IoOp: the one description of an I/O operation that every backend consumes. It lives
/// inside an awaitable in the coroutine frame, so starting an operation allocates nothing;
/// backends keep a pointer to it (epoll's waiter list, io_uring's user_data) until they
/// complete it through Scheduler::complete(). The per-backend difference is the backend's
/// `start()` for each OpCode; this file is backend-neutral.

#include <sys/socket.h>
#include <sys/uio.h>

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <system_error>

#include "galay-kernel/common/error.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/kernel/cancel.h"
#include "galay-kernel/kernel/timer_queue.h"

namespace galay {

class Scheduler;

/// A relative deadline for one operation; default-constructed means "no timeout".
struct Timeout {
  /// The limit; nanoseconds::max() means none.
  std::chrono::nanoseconds value = std::chrono::nanoseconds::max();
  constexpr Timeout() noexcept = default;
  template <class Rep, class Period>
  /// A limit of `d` (implicit, so any std::chrono duration can be passed where a Timeout is expected).
  constexpr Timeout(std::chrono::duration<Rep, Period> d) noexcept  // NOLINT: implicit by design
      : value(std::chrono::duration_cast<std::chrono::nanoseconds>(d)) {}
  /// True if a limit was set.
  constexpr bool enabled() const noexcept { return value != std::chrono::nanoseconds::max(); }
};

/// What an IoOp does. Each backend maps every code to its own mechanism.
enum class OpCode : std::uint8_t {
  accept,            ///< fd: listener; addr/addrlen: peer out; result: new fd (non-blocking, cloexec)
  connect,           ///< addr/addrlen: peer in; result: 0
  recv,              ///< buf/len; result: bytes (0 = EOF)
  send,              ///< buf/len; result: bytes sent (may be partial unless OpFlag::all)
  readv,             ///< iov/iovcnt; result: bytes
  writev,            ///< iov/iovcnt; result: bytes (never raises SIGPIPE)
  close,             ///< cancel everything pending on fd, then close it; result: 0
  poll_read,         ///< wait until fd is readable; result: 0
  poll_write,        ///< wait until fd is writable; result: 0
  read_at,           ///< file: buf/len at offset; result: bytes (short at EOF)
  write_at,          ///< file: buf/len at offset
  readv_at,          ///< file: iov/iovcnt at offset
  writev_at,         ///< file: iov/iovcnt at offset
  fsync,             ///< file: flush data and metadata
  fdatasync,         ///< file: flush data
  fallocate,         ///< file: aux = mode, offset, len
  recv_pooled,       ///< buf: PooledRecvState*; result: bytes (0 = EOF), aux: buffer id
  accept_multishot,  ///< buf: AcceptQueueState*; result: new fd (io_uring keeps one multishot accept armed)
  recvmsg,  ///< msg (msg_name, msg_iov set), aux: recvmsg flags; result: bytes; msg.msg_flags/msg_namelen filled in
  sendmsg,  ///< msg; result: bytes (never raises SIGPIPE)
};

/// Modifiers for an IoOp.
enum OpFlag : std::uint8_t {
  op_all = 1u << 0,          ///< send/write: keep going until all `len` bytes are out (done_bytes tracks progress)
  op_stream = 1u << 1,       ///< the fd is a byte stream: a short read/write means the kernel buffer is drained/full
  op_direct_file = 1u << 2,  ///< the file was opened O_DIRECT (libaio can do it asynchronously)
  /// send: io_uring sends with SEND_ZC (the NIC reads the caller's pages) and completes the
  /// op only after the kernel's notification that it released them; other backends send normally.
  op_zero_copy = 1u << 3,
};

/// True for the positioned file opcodes (read_at ... fallocate), which readiness backends
/// cannot wait for and hand to libaio or the blocking pool instead.
constexpr bool is_file_op(OpCode c) noexcept { return c >= OpCode::read_at && c <= OpCode::fallocate; }

/// Where an IoOp is in its life: not started, owned by a backend, or finished with `result` set.
enum class OpState : std::uint8_t { idle, pending, done };

/// Result value used when an operation was started with no scheduler on the thread.
inline constexpr std::int64_t kNoSchedulerResult = -(std::int64_t{1} << 40);

/// Results at or below this encode a galay::Error rather than an errno, for argument checks
/// that fail an op before any backend sees it (O_DIRECT alignment). Far below any -errno.
inline constexpr std::int64_t kGalayErrorBase = -(std::int64_t{1} << 41);
/// The IoOp::result that makes error() yield `e`.
constexpr std::int64_t galay_error_result(Error e) noexcept { return kGalayErrorBase - static_cast<std::int64_t>(e); }

/// One in-flight (or finished) I/O operation. Not movable: backends hold its address.
class IoOp final : public Cancellable {
 public:
  /// An operation `c` on `f`; the awaitable fills in the rest before starting it.
  IoOp(OpCode c, int f) noexcept : code(c), fd(f) {}
  /// Moving is allowed only before the op starts (awaitables are returned by value);
  /// once begin() has run, backends hold its address.
  IoOp(IoOp&& o) noexcept;
  IoOp& operator=(IoOp&&) = delete;
  IoOp(const IoOp&) = delete;
  IoOp& operator=(const IoOp&) = delete;
  ~IoOp();

  /// Start the operation for coroutine `h` (from an awaitable's await_suspend).
  /// Returns true if `h` must stay suspended; false if the result is already available.
  bool begin(std::coroutine_handle<> h, CancelScope* scope, Timeout timeout) noexcept;

  /// Cancellable: ask the backend to finish the operation early with `reason`.
  void cancel(std::errc reason) noexcept override;

  /// The result as an error_code (only meaningful when result < 0).
  std::error_code error() const noexcept {
    if (result == kNoSchedulerResult) return make_error_code(Error::not_bound_to_scheduler);
    if (result <= kGalayErrorBase) return make_error_code(static_cast<Error>(kGalayErrorBase - result));
    return errno_code(static_cast<int>(-result));
  }
  /// `result` as a byte count, or its error.
  Expected<std::size_t> size_result() const noexcept {
    if (result < 0) return Unexpected(error());
    return static_cast<std::size_t>(result);
  }
  /// `result` as success, or its error.
  Expected<void> void_result() const noexcept {
    if (result < 0) return Unexpected(error());
    return {};
  }

  // ---- description (set by the awaitable) ----
  /// What to do.
  OpCode code;
  /// Op-specific flags (e.g. send_all's "whole buffer", MSG_* for recvmsg).
  std::uint8_t flags = 0;
  /// Lifecycle state.
  OpState state = OpState::idle;
  /// The descriptor operated on.
  int fd;
  int aux = 0;  ///< fallocate mode
  /// Buffer for recv/send/read/write (or the PooledRecvState for recv_pooled).
  void* buf = nullptr;
  /// Length of `buf` in bytes.
  std::size_t len = 0;
  /// iovec array for readv/writev; must outlive the op.
  const iovec* iov = nullptr;
  /// Number of entries in `iov`.
  int iovcnt = 0;
  sockaddr* addr = nullptr;  ///< accept: filled in; connect: read
  socklen_t addrlen = 0;     ///< accept: capacity in, length out; connect: length
  /// File offset for positioned file I/O.
  std::uint64_t offset = 0;
  msghdr msg{};  ///< sendmsg/recvmsg header for backends that need one in flight

  // ---- progress and result ----
  std::size_t done_bytes = 0;  ///< op_all: bytes already transferred
  std::int64_t result = 0;     ///< >= 0 value, < 0 -errno
  std::errc cancel_reason{};   ///< non-zero once cancellation was requested

  // ---- plumbing ----
  /// The scheduler that started the op and resumes `waiter`.
  Scheduler* sched = nullptr;
  /// The coroutine resumed on completion.
  std::coroutine_handle<> waiter;
  /// The cancel scope the op is registered with while pending, or null.
  CancelScope* scope = nullptr;
  /// Deadline timer, armed when the op has a Timeout.
  TimerNode timer;
  IoOp* prev = nullptr;  ///< backend-owned intrusive links (epoll waiter lists)
  /// Backend-owned intrusive link (see `prev`).
  IoOp* next = nullptr;
  std::uint32_t backend_word = 0;  ///< backend-owned scratch (io_uring phase, kqueue filter, ...)
};

/// Base of every socket/file awaitable: holds the IoOp and the timeout.
class IoAwaitable {
 public:
  /// An awaitable for operation `code` on `fd` with an optional `timeout`.
  IoAwaitable(OpCode code, int fd, Timeout timeout = {}) noexcept : op_(code, fd), timeout_(timeout) {}
  /// Ready at once only when fail_before_submit() was called; the op then never starts.
  bool await_ready() noexcept {
    if (preset_result_ == 0) return false;
    op_.result = preset_result_;
    op_.state = OpState::done;
    return true;
  }
  template <class P>
  /// Coroutine protocol: starts the op; false when it finished at once (the coroutine continues).
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    return op_.begin(h, detail::scope_of(h.promise()), timeout_);
  }
  /// Make the awaitable yield `e` without reaching any backend (a bad argument found while
  /// building it). Kept outside the IoOp, which does not carry results across a move.
  void fail_before_submit(Error e) noexcept { preset_result_ = galay_error_result(e); }

 protected:
  /// The operation, inside the awaitable (so inside the coroutine frame: no allocation).
  IoOp op_;
  /// The per-operation time limit.
  Timeout timeout_;
  /// Non-zero: the result to report without starting the op (see fail_before_submit()).
  std::int64_t preset_result_ = 0;
};

/// Awaitable whose result is a byte count (recv, send, readv, ...).
class SizeAwaitable : public IoAwaitable {
 public:
  /// Same constructor as IoAwaitable.
  using IoAwaitable::IoAwaitable;
  /// Coroutine protocol: the bytes transferred, or the error.
  Expected<std::size_t> await_resume() const noexcept { return op_.size_result(); }
  /// The underlying operation (for awaitables that fill in extra fields).
  IoOp& op() noexcept { return op_; }
};

/// Awaitable with no value (connect, close, fsync, ...).
class VoidAwaitable : public IoAwaitable {
 public:
  /// Same constructor as IoAwaitable.
  using IoAwaitable::IoAwaitable;
  /// Coroutine protocol: success, or the error.
  Expected<void> await_resume() const noexcept { return op_.void_result(); }
  /// The underlying operation (for awaitables that fill in extra fields).
  IoOp& op() noexcept { return op_; }
};

}  // namespace galay
