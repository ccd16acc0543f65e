#pragma once
/// @file backend.h
/// Internal (not installed). The small interface every I/O backend implements (epoll, io_uring, kqueue). The
/// Scheduler owns one backend and drives it; all per-operation knowledge lives inside the
/// backend's start() for each OpCode. Backends are single-threaded except wake().

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

#include "galay-kernel/common/expected.h"
#include "galay-kernel/io/backend_kind.h"
#include "galay-kernel/io/buffer_pool.h"
#include "galay-kernel/io/op.h"

namespace galay {

/// The interface every I/O backend implements (epoll, io_uring, kqueue): start, cancel and
/// abandon operations described by an IoOp, wait for completions, wake the loop. One
/// instance per Scheduler, used only on its thread except wake(). See docs/architecture.md.
class Backend {
 public:
  virtual ~Backend() = default;

  /// Which backend this is.
  virtual BackendKind kind() const noexcept = 0;
  /// A one-line description of how the backend was set up (flags, features).
  virtual std::string describe() const = 0;

  /// Start `op`. Returns true if it is now pending: the backend will finish it later through
  /// IoOp::complete(). Returns false if it finished synchronously with op.result set.
  virtual bool start(IoOp& op) noexcept = 0;

  /// Start several ops as one group (FileBatch::submit()); the caller has marked each one
  /// pending and set its scheduler and waiter. On return each op is either still pending
  /// (it completes later through IoOp::complete(), never inside this call) or finished
  /// now, with op.state == OpState::done and op.result set. The default starts the ops one
  /// by one. epoll overrides it to hand the libaio ops to the kernel in one io_submit;
  /// io_uring needs no override: start() only queues SQEs, so the whole group goes to the
  /// kernel in the loop's next io_uring_enter (one submission, and no extra syscall).
  virtual void start_batch(std::span<IoOp* const> ops) noexcept {
    for (IoOp* op : ops)
      if (!start(*op)) op->state = OpState::done;
  }

  /// Ask a pending op to finish early (op.cancel_reason is set). It still completes through
  /// IoOp::complete(), and only once the kernel no longer uses its buffers.
  virtual void cancel(IoOp& op) noexcept = 0;

  /// The awaitable holding a pending op is being destroyed (scheduler shutdown). On return
  /// the backend and the kernel hold no reference to `op` or its buffers.
  virtual void abandon(IoOp& op) noexcept = 0;

  /// Close `fd` now (destructors). Ops pending on it complete with operation_canceled.
  virtual void close_fd(int fd) noexcept = 0;

  /// Wait up to `timeout` (nullopt: no limit; zero: don't block) for completions and
  /// deliver them. Returns early when wake() is called.
  virtual void poll(std::optional<std::chrono::nanoseconds> timeout) = 0;

  /// Interrupt poll() from any thread.
  virtual void wake() noexcept = 0;

  /// Wake `target` (another scheduler's backend, sleeping in poll()) through this backend,
  /// called on this backend's own loop thread. True if a wakeup was queued: it reaches the
  /// kernel with this loop's next submission (io_uring: IORING_OP_MSG_RING posts a CQE
  /// straight into the target ring, so no eventfd write is needed). False: the caller
  /// falls back to target.wake().
  virtual bool post_wake_to(Backend& target) noexcept {
    (void)target;
    return false;
  }

  /// True while work is queued for the kernel but not yet handed over (io_uring SQEs). The
  /// scheduler may skip poll() on busy turns, but never while this is true.
  virtual bool has_unsubmitted() const noexcept { return false; }

  /// Cancel every pending op and wait until the kernel has released all of them.
  virtual void cancel_all_and_drain() noexcept = 0;

  /// Number of ops the backend currently holds.
  virtual std::size_t pending_ops() const noexcept = 0;

  // ---- registered buffers (RegisteredBuffers) ----

  /// Use `region` for fixed-buffer file I/O: read_at/write_at whose buffer lies inside it
  /// are submitted against the registered pages. Returns {} if the backend now does, with
  /// `note` saying how; otherwise the error, with `note` saying why not (the region then
  /// stays ordinary memory). The default: operation_not_supported (readiness backends).
  virtual std::error_code register_buffers(std::span<std::byte> region, std::string& note) {
    (void)region;
    note = std::string(to_string(kind())) + " has no registered buffers: ordinary reads and writes";
    return std::make_error_code(std::errc::operation_not_supported);
  }
  /// Stop using `region` (registered by register_buffers); no op uses it any more.
  virtual void unregister_buffers(std::span<std::byte> region) noexcept { (void)region; }

  // ---- registered files (FdOwner::register_file) ----

  /// Put `fd` in the backend's table of registered files, so its ops skip the kernel's
  /// per-request file lookup. True if it is (or already was) registered; false if the
  /// backend has no such table (nothing changes). The backend drops the registration
  /// itself when the fd is closed through it (close_fd, OpCode::close).
  virtual Expected<bool> register_file(int fd) {
    (void)fd;
    return false;
  }

  // ---- pooled receive (BufferPool, StreamReceiver; OpCode::recv_pooled) ----

  /// Prepare `pool` for this backend (io_uring: register it as a provided-buffer ring).
  virtual std::error_code attach_pool(BufferPool& pool) = 0;
  /// The pool is being destroyed (no receiver or chunk uses it any more).
  virtual void detach_pool(BufferPool& pool) noexcept = 0;
  /// The caller dropped buffer `id`, which `owner` held (null if that receiver is gone):
  /// make it receivable again, resume `owner` if it had stopped at its limit, and wake
  /// starved receivers.
  virtual void recycle(BufferPool& pool, std::uint16_t id, PooledRecvState* owner) noexcept = 0;
  /// A StreamReceiver or TcpAcceptor is going away: end its kernel operation, wait until
  /// the kernel has, and release what it queued (buffers back to the pool, fds closed).
  virtual void release_multishot(MultishotState& st) noexcept = 0;
};

class Scheduler;
namespace detail {
class LiveMetrics;
}

/// What a backend is built with: the backend-specific part of Scheduler::Options, copied
/// out so backends need not include the scheduler's header.
struct BackendSettings {
  unsigned io_uring_sq_entries = 1024;  ///< 0 means 1024
  unsigned io_uring_cq_entries = 0;     ///< 0 means 8x the SQ
  bool io_uring_sqpoll = false;         ///< a kernel thread polls the SQ (IORING_SETUP_SQPOLL)
  unsigned io_uring_sqpoll_idle_ms = 1000;
  int io_uring_sqpoll_cpu = -1;  ///< -1: the poller is not pinned
  /// Where the backend counts its own events (SQ full, CQ overflow, ENOBUFS re-arms): the
  /// scheduler's counters, a sink only (backends never call up into the scheduler).
  detail::LiveMetrics* metrics = nullptr;
};

/// How a backend is built; registered per kind so optional backends (the kqueue emulation
/// in tests) can plug in without the core knowing about them.
struct BackendFactory {
  std::string (*probe)() = nullptr;  ///< "" if the backend can run here, else the reason it cannot
  /// A backend for `scheduler` (which it only passes on, e.g. to chaos mode; ops complete
  /// themselves), set up as `settings` say.
  Expected<std::unique_ptr<Backend>> (*create)(Scheduler& scheduler, const BackendSettings& settings) = nullptr;
};

/// BackendFactory::create for a backend class with `B(Scheduler&, const BackendSettings&)`
/// or `B(Scheduler&)`, and `std::error_code init()`.
template <class B>
Expected<std::unique_ptr<Backend>> make_backend(Scheduler& scheduler, const BackendSettings& settings) {
  std::unique_ptr<B> backend;
  if constexpr (std::is_constructible_v<B, Scheduler&, const BackendSettings&>)
    backend = std::make_unique<B>(scheduler, settings);
  else
    backend = std::make_unique<B>(scheduler);
  if (auto ec = backend->init()) return make_error(ec);
  return std::unique_ptr<Backend>(std::move(backend));
}

/// Register (or replace) the factory for `kind`. Call before creating schedulers.
void register_backend(BackendKind kind, BackendFactory factory);
/// The factory for `kind`, or nullptr if this build has none.
const BackendFactory* find_backend(BackendKind kind) noexcept;

}  // namespace galay
