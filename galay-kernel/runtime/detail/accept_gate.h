#pragma once
/// @file accept_gate.h
/// AcceptGate (internal to the Scheduler): what keeps an accept loop from spinning when
/// the process is out of descriptors or memory. An accept that fails with EMFILE, ENFILE,
/// ENOBUFS or ENOMEM still returns that error as a value, but it closes the gate: the next
/// accepts on this scheduler wait in the gate (not in any backend) until a descriptor is
/// closed through this scheduler or a back-off elapses (1 ms, doubling per consecutive
/// failure, at most 100 ms), then try again. A successful accept resets the back-off.
/// Waiting accepts keep their timeout and cancellation; closing their listener completes
/// them with operation_canceled.

#include <chrono>
#include <cstdint>

#include "galay-kernel/io/op.h"
#include "galay-kernel/runtime/timer_queue.h"
#include "galay-kernel/io/detail/wait_list.h"

namespace galay {

class Scheduler;

namespace detail {

class AcceptGate : private TimerNode {
 public:
  static constexpr std::chrono::nanoseconds kFirstBackoff = std::chrono::milliseconds(1);
  static constexpr std::chrono::nanoseconds kMaxBackoff = std::chrono::milliseconds(100);

  explicit AcceptGate(Scheduler& sched) noexcept : sched_(sched) {}
  AcceptGate(const AcceptGate&) = delete;
  AcceptGate& operator=(const AcceptGate&) = delete;

  /// True if accept ops must wait in the gate now.
  bool closed() const noexcept { return closed_; }

  /// An accept finished with `result`: close the gate on resource exhaustion, reset the
  /// back-off on success.
  void note_result(std::int64_t result) noexcept;

  /// Hold `op` (state OpState::queued) until the gate opens.
  void park(IoOp& op) noexcept { parked_.push_back(&op); }
  /// Take `op` out (cancelled or destroyed while parked).
  void unpark(IoOp& op) noexcept { parked_.remove(&op); }

  /// A descriptor was closed through the scheduler: parked accepts on `fd` (its listener
  /// was closed) complete with operation_canceled, and the others may try again now.
  void fd_closed(int fd) noexcept;

  /// The scheduler shuts down: complete every parked op with operation_canceled.
  void cancel_all() noexcept;

 private:
  static void on_timer(TimerNode* self);
  void open() noexcept;  // release every parked op into its backend

  Scheduler& sched_;
  bool closed_ = false;
  std::chrono::nanoseconds backoff_ = kFirstBackoff;
  WaitList parked_;
};

}  // namespace detail
}  // namespace galay
