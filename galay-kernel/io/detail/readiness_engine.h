#pragma once
/// @file readiness_engine.h
/// The shared half of the readiness backends (epoll, kqueue): per-fd read and write waiter
/// lists, readiness hints, and the non-blocking syscall for each OpCode. A backend adds
/// only its notification mechanism: how an fd is registered (once, edge-triggered) and how
/// readiness events are fed back through on_ready().
///
/// Every op tries its syscall first and parks only on EAGAIN. A short read or write on a
/// stream socket marks that direction not-ready (the kernel buffer was drained or filled),
/// so the next op waits for the edge instead of paying for a syscall that would say EAGAIN.

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "galay-kernel/io/buffer_pool.h"
#include "galay-kernel/io/op.h"
#include "galay-kernel/io/detail/wait_list.h"

namespace galay {

class Backend;
class ReadinessBackend;
class Scheduler;

class ReadinessEngine {
 public:
  struct FdSlot {
    WaitList readers;
    WaitList writers;
    bool registered = false;
    bool readable = true;  ///< optimistic until a syscall says EAGAIN
    bool writable = true;
    bool read_closed = false;  ///< peer sent FIN/RST: reads never block again, keep trying them
    MultishotList attached;    ///< receivers/acceptors on this fd: closed with it
  };

  /// Registers `fd` with the backend's notifier: 0, or -errno.

  /// `owner` is the backend this core serves (attached receivers record it); `backend` and
  /// `register_fd` are its notifier callback.
  /// The engine of `owner`, whose register_fd() it calls the first time an fd parks.
  ReadinessEngine(Scheduler& sched, ReadinessBackend& owner) noexcept : sched_(sched), owner_(owner) {}

  /// Backend::start for every code the core handles (sockets, close, readiness waits).
  /// File opcodes (is_file_op()) never get here: readiness can't be waited for on regular
  /// files, so the backends route them to libaio or the BlockingPool first (EOPNOTSUPP here).
  bool start(IoOp& op) noexcept;
  /// Backend::cancel / abandon.
  void cancel(IoOp& op) noexcept;
  void abandon(IoOp& op) noexcept { (void)unpark(op); }
  /// Complete every parked op on `fd` with operation_canceled, forget the fd, close it.
  std::int64_t close_now(int fd) noexcept;
  /// Complete every parked op with operation_canceled.
  void cancel_all() noexcept;
  std::size_t pending() const noexcept { return pending_; }

  /// Pooled receive: the readiness backends' half of Backend's pool methods.
  std::error_code attach_pool(BufferPool& pool);
  void recycle(BufferPool& pool, std::uint16_t id, PooledRecvState* owner) noexcept;
  void release_multishot(MultishotState& st) noexcept;

  /// Feed an event: the fd became readable and/or writable, or the peer closed it.
  void on_ready(int fd, bool readable, bool writable, bool peer_closed) noexcept;

 private:
  static constexpr std::size_t kChunk = 1024;
  using Chunk = std::array<FdSlot, kChunk>;

  // Slots live in fixed-size chunks so their addresses never move: an accept inside
  // drive() may create a slot while a reference to another one is in use.
  FdSlot& slot(int fd);
  FdSlot* find_slot(int fd) noexcept;
  // Forget what the slot knew (the fd was closed, or its number is fresh): parked ops must
  // have been completed; attached states are ended (closed).
  static void reset_slot(FdSlot& s) noexcept;
  bool park(IoOp& op, FdSlot& s, WaitList& list) noexcept;
  bool unpark(IoOp& op) noexcept;
  void finish(IoOp& op, std::int64_t result) noexcept;
  std::int64_t perform(IoOp& op, FdSlot& s) noexcept;
  void drive(FdSlot& s, WaitList& list) noexcept;

  Scheduler& sched_;
  ReadinessBackend& owner_;
  std::size_t pending_ = 0;
  std::vector<std::unique_ptr<Chunk>> chunks_;
  std::vector<int> kick_scratch_;                  // recycle(): receivers' fds to retry
  std::vector<PooledRecvState*> starved_scratch_;  // recycle()
};

}  // namespace galay
