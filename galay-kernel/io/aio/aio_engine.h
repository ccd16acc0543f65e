#pragma once
/// @file aio_engine.h
/// Kernel AIO (libaio) for the epoll backend: truly asynchronous reads and writes on
/// O_DIRECT files. (Buffered files, and fsync/fdatasync/fallocate, go to the BlockingPool:
/// for them io_submit itself would block.)
///
/// - One io_context_t per scheduler, created on the first O_DIRECT op. It starts with
///   kInitialSlots iocb slots; ops beyond that wait in a FIFO and are submitted as slots
///   free up. If that happened, the context is recreated twice as big (up to kMaxSlots)
///   the next time nothing is in flight.
/// - Every iocb carries IOCB_FLAG_RESFD pointing at one eventfd registered (edge-triggered)
///   in the epoll set. When it fires the engine reaps with
///   io_getevents(ctx, 0, N, events, &zero) in batches until the ring is empty; the loop
///   never blocks in io_getevents.
/// - A batch (start_batch) goes to the kernel in one io_submit.
/// - The iocbs live in the engine's slot array, which is only reallocated while idle; the
///   IoOps (and their buffers) live in the caller's coroutine frame or FileBatch, which do
///   not move while an op is pending.
/// - Cancel: an op still waiting for a slot completes at once with its cancel reason. One in
///   the kernel gets io_cancel(), which regular files do not support, so it completes when the
///   device finishes it, with its real result. Nothing completes while the kernel may still
///   DMA into its buffer; abandon() and cancel_all_and_drain() wait for the device.

#include <libaio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "galay-kernel/io/op.h"
#include "galay-kernel/io/detail/wait_list.h"
#include "galay-kernel/io/detail/kernel_file_engine.h"

namespace galay {

class AioEngine final : public KernelFileEngine {
 public:
  static constexpr unsigned kInitialSlots = 256;
  static constexpr unsigned kMaxSlots = 2048;

  /// `epfd`: the epoll set the completion eventfd joins (data.fd = event_fd()).
  explicit AioEngine(int epfd) noexcept : epfd_(epfd) {}
  AioEngine(const AioEngine&) = delete;
  AioEngine& operator=(const AioEngine&) = delete;
  /// Requires pending() == 0 (cancel_all_and_drain() first).
  ~AioEngine() override;

  /// An O_DIRECT read/write/readv/writev, which libaio runs asynchronously.
  static bool eligible(const IoOp& op) noexcept;
  /// True if `op` is eligible and the engine can take it; the first call creates the
  /// context. False (for good) if the kernel refused one: the caller uses the pool instead.
  bool accepts(const IoOp& op) noexcept;
  /// True if `op` went through this engine (for cancel/abandon routing).
  bool owns(const IoOp& op) const noexcept override { return state_ == State::ready && eligible(op); }

  /// Backend::start for an accepted op.
  bool start(IoOp& op) noexcept override;
  /// Start accepted ops with one io_submit (ops beyond the free slots wait in the FIFO).
  /// Ops the kernel rejects at once are left done with their error, as Backend::start_batch says.
  void start_batch(std::span<IoOp* const> ops) noexcept override;
  void cancel(IoOp& op) noexcept override;
  void abandon(IoOp& op) noexcept override;
  /// Cancel what can be cancelled and wait until the kernel has finished every iocb.
  void cancel_all_and_drain() noexcept override;

  /// The completion eventfd (-1 before the first op).
  int event_fd() const noexcept { return efd_; }
  /// The eventfd fired: reap every completion, refill the kernel from the FIFO.
  void on_event() noexcept;

  std::size_t pending() const noexcept override { return inflight_ + backlog_count_; }
  /// "libaio: N slots", "libaio: unavailable (why)" or "libaio: not started".
  std::string describe() const;

 private:
  enum class State : std::uint8_t { unstarted, ready, failed };
  struct Slot {
    iocb cb;
    IoOp* op;
  };

  bool init() noexcept;
  bool setup_context(unsigned slots) noexcept;
  void prepare(IoOp& op, unsigned index) noexcept;
  // Give `n` ops slots and submit them in one io_submit; the rest go to the FIFO. Ops
  // rejected at once are finished inline (`async` false: state=done, for start/start_batch)
  // or through IoOp::complete (`async` true: refills after a reap).
  void submit(IoOp* const* ops, std::size_t n, bool async) noexcept;
  void fail(IoOp& op, std::int64_t result, bool async) noexcept;
  void reap() noexcept;
  void wait_for_events() noexcept;  // blocks on the eventfd (drain/abandon only)
  void refill() noexcept;

  int epfd_;
  int efd_ = -1;
  io_context_t ctx_{};
  State state_ = State::unstarted;
  int setup_error_ = 0;
  unsigned capacity_ = 0;
  std::unique_ptr<Slot[]> slots_;
  std::vector<unsigned> free_;  // free slot indices
  std::vector<iocb*> submit_buf_;
  std::vector<IoOp*> refill_buf_;
  std::size_t inflight_ = 0;
  WaitList backlog_;  // waiting for a slot (or for the kernel after EAGAIN)
  std::size_t backlog_count_ = 0;
  bool wants_growth_ = false;
};

}  // namespace galay
