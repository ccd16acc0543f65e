#pragma once
/// @file op.h
/// IoOp: the one description of an I/O operation that every backend consumes. It lives
/// inside an awaitable in the coroutine frame, so starting an operation allocates nothing;
/// backends keep a pointer to it (epoll's waiter list, io_uring's user_data) until they
/// finish it with IoOp::complete(): the op delivers itself, so no backend names the
/// scheduler. What each backend does with each OpCode (its io_uring SQE, its readiness
/// syscall, its blocking call) is described once per opcode in the library's internal
/// io/ops/ folder; this file is backend-neutral.

#include <sys/socket.h>
#include <sys/uio.h>

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <system_error>
#include <vector>

#include "galay-kernel/common/error.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/common/intrusive_list.h"
#include "galay-kernel/coro/cancel.h"
#include "galay-kernel/runtime/timer_queue.h"

namespace galay {

class Scheduler;
struct MultishotState;  // io/multishot.h
namespace fs {
struct DirEntry;  // fs/fs_ops.h
}  // namespace fs

namespace detail {
/// Scheduler::current(), for headers that cannot include scheduler.h.
Scheduler* current_scheduler() noexcept;
}  // namespace detail

/// A relative deadline for one operation; default-constructed means "no timeout".
/// Durations too long for nanoseconds (milliseconds::max(), hours::max(): the usual
/// "forever") saturate to "no timeout"; negative ones mean "expire at once".
struct Timeout {
  /// The limit; nanoseconds::max() means none.
  std::chrono::nanoseconds value = std::chrono::nanoseconds::max();
  constexpr Timeout() noexcept = default;
  template <class Rep, class Period>
  /// A limit of `d` (implicit, so any std::chrono duration can be passed where a Timeout is expected).
  constexpr Timeout(std::chrono::duration<Rep, Period> d) noexcept  // NOLINT: implicit by design
      : value(saturating_nanoseconds(d)) {}
  /// True if a limit was set.
  constexpr bool enabled() const noexcept { return value != std::chrono::nanoseconds::max(); }
};

/// What an IoOp does. Each code has one op struct in io/ops/ (internal) that says how every
/// backend runs it.
enum class OpCode : std::uint8_t {
  accept,            ///< fd: listener; addr/addrlen: peer out; result: new fd (non-blocking, cloexec)
  connect,           ///< addr/addrlen: peer in; result: 0
  recv,              ///< buf/len; result: bytes (0 = EOF)
  send,              ///< buf/len; result: bytes sent (may be partial unless OpFlag::all)
  readv,             ///< iov/iovcnt; result: bytes
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
  recv_pooled,       ///< multishot: the PooledRecvState; result: bytes (0 = EOF), aux: buffer id
  accept_multishot,  ///< multishot: the AcceptQueueState; result: new fd (io_uring keeps one multishot accept armed)
  recvmsg,  ///< msg (msg_name, msg_iov set), aux: recvmsg flags; result: bytes; msg->msg_flags/msg_namelen filled in
  sendmsg,  ///< msg; result: bytes (never raises SIGPIPE); also a stream's gather send (writev)
  // Path operations (fs/fs_ops.h). fd: the directory a relative path starts from (AT_FDCWD,
  // or a directory fd; File::stat passes its own fd with AT_EMPTY_PATH); path: the path, a
  // NUL-terminated string owned by the awaitable.
  openat,    ///< aux: open flags (O_CLOEXEC included), len: mode; result: new fd (op_result_is_fd)
  statx,     ///< aux: AT_* flags; stat_buf: the awaitable's stat buffer; result: 0
  renameat,  ///< aux: the new path's directory fd; new_path: the new path; result: 0
  unlinkat,  ///< aux: 0 (unlink) or AT_REMOVEDIR (rmdir); result: 0
  mkdirat,   ///< aux: mode; result: 0
  sync_dir,  ///< open the directory O_DIRECTORY, fsync, close (blocking pool on every backend); result: 0
  read_dir,  ///< dir_entries: filled in (blocking pool everywhere); result: entries
};

/// How many OpCodes there are (read_dir is the last).
inline constexpr std::size_t kOpCodeCount = static_cast<std::size_t>(OpCode::read_dir) + 1;

/// The opcode's name ("recv", "read_at", ...), for diagnostics and metrics labels.
const char* to_string(OpCode code) noexcept;

/// The most bytes one read/write/send/recv submission moves: the kernel's MAX_RW_COUNT,
/// and below io_uring's 32-bit length field. Page-aligned, so clamping keeps an O_DIRECT
/// length aligned. Larger buffers are clamped per submission (a short count for recv and
/// read; send_all loops).
inline constexpr std::size_t kMaxTransfer = 0x7ffff000;

/// Modifiers for an IoOp.
enum OpFlag : std::uint8_t {
  op_all = 1u << 0,          ///< send/write: keep going until all `len` bytes are out (done_bytes tracks progress)
  op_stream = 1u << 1,       ///< the fd is a byte stream: a short read/write means the kernel buffer is drained/full
  op_direct_file = 1u << 2,  ///< the file was opened O_DIRECT (libaio can do it asynchronously)
  /// send: io_uring sends with SEND_ZC (the NIC reads the caller's pages) and completes the
  /// op only after the kernel's notification that it released them; other backends send normally.
  op_zero_copy = 1u << 3,
  /// A non-negative result is a new descriptor (accept): closed if nobody takes it.
  op_result_is_fd = 1u << 4,
  /// recvmsg: descriptors may arrive in msg's control data (SCM_RIGHTS): closed if nobody takes them.
  op_result_fds_in_msg = 1u << 5,
  /// The awaitable has taken the result (await_resume ran): nothing to release.
  op_result_taken = 1u << 6,
};

/// True for the positioned file opcodes (read_at ... fallocate), which readiness backends
/// cannot wait for and hand to libaio or the blocking pool instead.
constexpr bool is_file_op(OpCode c) noexcept { return c >= OpCode::read_at && c <= OpCode::fallocate; }

/// True for the path opcodes (openat ... read_dir). Readiness backends run them on the
/// blocking pool; io_uring runs those its kernel supports as SQEs, the rest on the pool.
/// Their fd may be negative (AT_FDCWD).
constexpr bool is_path_op(OpCode c) noexcept { return c >= OpCode::openat && c <= OpCode::read_dir; }

/// Where an IoOp is in its life: not started, held by the scheduler before any backend saw
/// it (an accept waiting out descriptor exhaustion), owned by a backend, or finished with
/// `result` set.
enum class OpState : std::uint8_t { idle, queued, pending, done };

/// True for the accept opcodes (the ones the scheduler throttles on descriptor exhaustion).
constexpr bool is_accept_op(OpCode c) noexcept { return c == OpCode::accept || c == OpCode::accept_multishot; }

/// Result value used when an operation was started with no scheduler on the thread.
inline constexpr std::int64_t kNoSchedulerResult = -(std::int64_t{1} << 40);

/// Results at or below this encode a galay::Error rather than an errno, for argument checks
/// that fail an op before any backend sees it (O_DIRECT alignment). Far below any -errno.
inline constexpr std::int64_t kGalayErrorBase = -(std::int64_t{1} << 41);
/// The IoOp::result that makes error() yield `e`.
constexpr std::int64_t galay_error_result(Error e) noexcept { return kGalayErrorBase - static_cast<std::int64_t>(e); }

/// One in-flight (or finished) I/O operation. Not movable: backends hold its address.
class IoOp final : public Cancellable, private TimerNode {
 public:
  /// An operation `c` on `f`; the awaitable fills in the rest before starting it.
  IoOp(OpCode c, int f) noexcept : code(c), fd(f) {}
  /// Moving is allowed only before the op starts (awaitables are returned by value);
  /// once begin() has run, backends hold its address.
  IoOp(IoOp&& o) noexcept;
  IoOp& operator=(IoOp&&) = delete;
  IoOp(const IoOp&) = delete;
  IoOp& operator=(const IoOp&) = delete;
  /// Abandons a pending op (waiting until the kernel let go of it), then releases what an
  /// untaken result holds (op_result_is_fd, op_result_fds_in_msg).
  ~IoOp();

  /// Start the operation for coroutine `h` (from an awaitable's await_suspend).
  /// Returns true if `h` must stay suspended; false if the result is already available.
  bool begin(std::coroutine_handle<> h, CancelScope* scope, Timeout timeout) noexcept;

  /// Hand the op to its scheduler's backend now (fault injection applies first). False if
  /// it finished at once, with `result` set and state done.
  bool start_now() noexcept;

  /// Mark the result as taken by the awaitable (nothing to release at destruction).
  void take_result() noexcept { flags |= op_result_taken; }

  /// Cancellable: ask the backend to finish the operation early with `reason`.
  void cancel(std::errc reason) noexcept override;

  /// Deliver the result: the one way a backend (or the blocking pool, or the accept gate)
  /// finishes an op. Disarms the deadline, detaches the op from its cancel scope, turns
  /// -ECANCELED into the cancel reason (timed_out for deadlines), marks the op done and
  /// queues `waiter` on its scheduler. Scheduler thread only; the backend must not touch
  /// the op afterwards.
  void complete(std::int64_t res) noexcept;

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
  /// Why cancellation was requested (an std::errc value; 0 = not requested). Kept in one
  /// byte: the only reasons are operation_canceled and timed_out.
  std::uint8_t cancel_code = 0;
  /// The descriptor operated on.
  int fd;
  int aux = 0;                     ///< fallocate mode; recvmsg flags; path ops: see OpCode
  std::uint32_t backend_word = 0;  ///< backend-owned scratch (io_uring phase, kqueue filter, ...)

  // What the op works on. Each opcode uses one member of each union (the OpCode comments
  // say which), so the slots are shared: an op costs the largest opcode's fields, not the
  // sum of all of them.
  union {
    void* buf = nullptr;        ///< recv/send/read_at/write_at: the caller's bytes
    MultishotState* multishot;  ///< recv_pooled: its PooledRecvState; accept_multishot: its AcceptQueueState
    const iovec* iov;           ///< readv/writev/readv_at/writev_at: the caller's array (must outlive the op)
    sockaddr* addr;             ///< accept: filled in; connect: read
    msghdr* msg;                ///< recvmsg/sendmsg: the header, in the awaitable, for as long as the op is in flight
    const char* path;           ///< path ops: a NUL-terminated path owned by the awaitable
  };
  union {
    std::size_t len = 0;  ///< bytes at `buf`; openat: the mode
    int iovcnt;           ///< entries at `iov`
    socklen_t addrlen;    ///< accept: capacity in, length out; connect: length
  };
  union {
    std::uint64_t offset = 0;                ///< positioned file I/O: the file offset
    std::size_t done_bytes;                  ///< send with op_all: bytes already sent
    const char* new_path;                    ///< renameat: the new path, owned by the awaitable
    void* stat_buf;                          ///< statx: struct statx on Linux, struct stat elsewhere
    std::vector<fs::DirEntry>* dir_entries;  ///< read_dir: filled in
  };

  // ---- progress and result ----
  std::int64_t result = 0;  ///< >= 0 value, < 0 -errno

  // ---- plumbing ----
  /// The scheduler that started the op and resumes `waiter`.
  Scheduler* sched = nullptr;
  /// The coroutine resumed on completion.
  std::coroutine_handle<> waiter;
  /// The cancel scope the op is registered with while pending, or null.
  CancelScope* scope = nullptr;
  /// Backend-owned links: the op is on at most one WaitList (a readiness waiter list, the
  /// blocking pool's queue, the io_uring per-fd list, the accept gate).
  ListLinks<IoOp> links;

  /// Its deadline timer (a base, so the op costs 16 bytes for it): armed while a Timeout runs.
  TimerNode& timer() noexcept { return *this; }
  /// The reason given to cancel(), or errc{} if none was.
  std::errc cancel_reason() const noexcept { return static_cast<std::errc>(cancel_code); }
  /// Record `reason` as why the op is being cancelled.
  void set_cancel_reason(std::errc reason) noexcept { cancel_code = static_cast<std::uint8_t>(reason); }

 private:
  bool begin_close() noexcept;
  static void on_deadline(TimerNode* node) noexcept;
};

/// The header of a sendmsg/recvmsg op, kept in its awaitable (which stays put from
/// await_suspend on) so the op itself carries only a pointer to it. The one place a msghdr
/// is built for an op: a single data buffer (datagrams, descriptor passing) or an iovec
/// array (writev), an optional address and control block.
struct MessageHeader {
  msghdr msg{};  ///< what the kernel reads, and writes back (name length, flags) on receive
  iovec iov{};   ///< the single data buffer, when there is one

  /// Describe `len` bytes at `data`, with `name`/`namelen` and `control`/`controllen` (both
  /// optional), and point `op` at the header.
  void bind(IoOp& op, void* data, std::size_t len, void* name = nullptr, socklen_t namelen = 0, void* control = nullptr,
            std::size_t controllen = 0) noexcept {
    iov = {data, len};
    bind_vector(op, &iov, 1, name, namelen, control, controllen);
  }
  /// The same for the `count` buffers at `vec` (which must outlive the op).
  void bind_vector(IoOp& op, const iovec* vec, std::size_t count, void* name = nullptr, socklen_t namelen = 0,
                   void* control = nullptr, std::size_t controllen = 0) noexcept {
    msg = msghdr{};
    msg.msg_name = name;
    msg.msg_namelen = namelen;
    msg.msg_iov = const_cast<iovec*>(vec);
    msg.msg_iovlen = static_cast<decltype(msg.msg_iovlen)>(count);
    msg.msg_control = control;
    msg.msg_controllen = static_cast<decltype(msg.msg_controllen)>(controllen);
    op.msg = &msg;
  }
};

/// Base of every socket/file awaitable: holds the IoOp and the timeout. Awaitables are
/// [[nodiscard]]: one that is never co_awaited never runs (`sock.close();` would leak).
class [[nodiscard]] IoAwaitable {
 public:
  /// An awaitable for operation `code` on `fd` with an optional `timeout`.
  IoAwaitable(OpCode code, int fd, Timeout timeout = {}) noexcept : op_(code, fd), timeout_(timeout) {}
  /// Ready at once only when fail_before_submit() was called; the op then never starts.
  bool await_ready() noexcept {
    if (!failed_before_submit()) return false;
    op_.state = OpState::done;
    return true;
  }
  template <class P>
  /// Coroutine protocol: starts the op; false when it finished at once (the coroutine continues).
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    return op_.begin(h, detail::scope_of(h.promise()), timeout_);
  }
  /// Make the awaitable yield `e` without reaching any backend (a bad argument found while
  /// building it). Kept in the idle op's `result` (which a move carries along).
  void fail_before_submit(Error e) noexcept { op_.result = galay_error_result(e); }
  /// The same with an IoOp result: -errno, or galay_error_result().
  void fail_before_submit(std::int64_t result) noexcept { op_.result = result; }
  /// True once fail_before_submit() was called (the op will never start).
  bool failed_before_submit() const noexcept { return op_.state == OpState::idle && op_.result != 0; }

 protected:
  /// The operation, inside the awaitable (so inside the coroutine frame: no allocation).
  IoOp op_;
  /// The per-operation time limit.
  Timeout timeout_;
};

/// Awaitable whose result is a byte count (recv, send, readv, ...).
class [[nodiscard]] SizeAwaitable : public IoAwaitable {
 public:
  /// Same constructor as IoAwaitable.
  using IoAwaitable::IoAwaitable;
  /// Coroutine protocol: the bytes transferred, or the error.
  Expected<std::size_t> await_resume() const noexcept { return op_.size_result(); }
  /// The underlying operation (for awaitables that fill in extra fields).
  IoOp& op() noexcept { return op_; }
};

/// Awaitable with no value (connect, close, fsync, ...).
class [[nodiscard]] VoidAwaitable : public IoAwaitable {
 public:
  /// Same constructor as IoAwaitable.
  using IoAwaitable::IoAwaitable;
  /// Coroutine protocol: success, or the error.
  Expected<void> await_resume() const noexcept { return op_.void_result(); }
  /// The underlying operation (for awaitables that fill in extra fields).
  IoOp& op() noexcept { return op_; }
};

}  // namespace galay
