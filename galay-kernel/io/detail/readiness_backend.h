#pragma once
/// @file readiness_backend.h
/// Internal. ReadinessBackend: everything epoll and kqueue share, so that each of them is
/// only its notifier. The shared part routes every op: sockets and readiness waits to the
/// ReadinessEngine (syscall first, park per fd and direction until the notifier reports
/// readiness), file ops to a kernel file engine where the backend has one (libaio for
/// O_DIRECT on epoll) and to the BlockingPool otherwise (regular files are always
/// "ready", so readiness can't wait for them).
///
/// A notifier implements four things: register an fd once for its whole life (both
/// directions, edge-triggered), wait for readiness and report it to engine().on_ready(),
/// wake that wait from any thread, and describe itself.

#include <time.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "galay-kernel/io/detail/backend.h"
#include "galay-kernel/io/detail/kernel_file_engine.h"
#include "galay-kernel/io/detail/readiness_engine.h"
#include "galay-kernel/runtime/detail/blocking_pool.h"

namespace galay {

/// The Backend of epoll and kqueue (see the file comment); subclasses are the notifiers.
class ReadinessBackend : public Backend {
 public:
  explicit ReadinessBackend(Scheduler& sched) noexcept;
  ~ReadinessBackend() override;

  bool start(IoOp& op) noexcept final;
  void start_batch(std::span<IoOp* const> ops) noexcept final;
  void cancel(IoOp& op) noexcept final;
  void abandon(IoOp& op) noexcept final;
  void close_fd(int fd) noexcept final;
  void cancel_all_and_drain() noexcept final;
  std::size_t pending_ops() const noexcept final;
  std::error_code attach_pool(BufferPool& pool) final { return engine_.attach_pool(pool); }
  void detach_pool(BufferPool&) noexcept final {}
  void recycle(BufferPool& pool, std::uint16_t id, PooledRecvState* owner) noexcept final {
    engine_.recycle(pool, id, owner);
  }
  void release_multishot(MultishotState& st) noexcept final { engine_.release_multishot(st); }

  /// The notifier: register `fd` for both directions for its whole life. 0 or -errno.
  virtual int register_fd(int fd) noexcept = 0;

  /// Backend::poll: the notifier's wait (wait_for_readiness), then the pool's completions.
  void poll(std::optional<std::chrono::nanoseconds> timeout) final;

 protected:
  /// The notifier: wait up to `timeout` (nullopt: no limit) and report each ready fd to
  /// engine().on_ready(); return early on wake().
  virtual void wait_for_readiness(std::optional<std::chrono::nanoseconds> timeout) = 0;
  /// The kernel file engine for `op`, or null for the BlockingPool (the default).
  virtual KernelFileEngine* file_engine_for(IoOp& op) noexcept {
    (void)op;
    return nullptr;
  }
  /// The kernel file engine if one was started, for cancel/abandon/drain; null otherwise.
  virtual KernelFileEngine* started_file_engine() const noexcept { return nullptr; }
  /// Drain what the kernel and the pool still hold; subclasses call it first thing in their
  /// destructor, while the notifier that wakes the loop still exists.
  void drain_before_destruction() noexcept;

  ReadinessEngine& engine() noexcept { return engine_; }
  Scheduler& scheduler() noexcept { return sched_; }

 private:
  Scheduler& sched_;
  ReadinessEngine engine_;
  BlockingPool::Client pool_;
  std::vector<IoOp*> batch_buf_;
};

/// `timeout` as the timespec a wait call (epoll_pwait2, kevent) takes, kept in `storage`;
/// null (wait until woken) when there is none.
timespec* wait_timespec(std::optional<std::chrono::nanoseconds> timeout, timespec& storage) noexcept;

/// A readiness backend's probe, given the notifier descriptor `call` just returned
/// (epoll_create1, kqueue): "" if it opened (it is closed again), else "call: reason".
std::string notifier_probe(const char* call, int fd);

}  // namespace galay
