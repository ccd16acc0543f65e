#pragma once
/// @file live_metrics.h (internal)
/// The counters behind SchedulerMetrics (runtime/metrics.h), as the loop thread keeps
/// them. Only that thread writes; a counter is bumped with a relaxed load and store (no
/// locked instruction: it costs what a plain increment costs), and any thread may read
/// them for a snapshot.
///
/// Built with GALAY_KERNEL_METRICS=0 (CMake -DGALAY_KERNEL_METRICS=OFF), the per-operation
/// counts and loop-turn durations are compiled out (to measure what they cost); the loop
/// and backend event counters stay, since Scheduler::stats() and the tests read them.

#include <atomic>
#include <bit>
#include <cstdint>

#include "galay-kernel/io/ops/op_kind.h"
#include "galay-kernel/runtime/metrics.h"

#ifndef GALAY_KERNEL_METRICS
#define GALAY_KERNEL_METRICS 1
#endif

namespace galay::detail {

class LiveMetrics {
 public:
  /// False when the per-operation counts and turn durations are compiled out.
  static constexpr bool kPerOpCounting = GALAY_KERNEL_METRICS != 0;

  /// The loop thread: add `n` to `c`.
  static void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  /// The loop thread: set the gauge `g`.
  static void set(std::atomic<std::uint64_t>& g, std::uint64_t v) noexcept { g.store(v, std::memory_order_relaxed); }

  /// An op of kind `code` was handed to the scheduler.
  void op_started(OpCode code) noexcept {
    if constexpr (kPerOpCounting) bump(ops_[index(code)].started);
  }
  /// An op of kind `code` finished with `result` (>= 0 a value, < 0 an error).
  void op_finished(OpCode code, std::int64_t result) noexcept {
    if constexpr (!kPerOpCounting) return;
    Ops& o = ops_[index(code)];
    if (result < 0) {
      bump(o.failed);
      return;
    }
    bump(o.completed);
    const ByteFlow flow = op_kind(code).flow;
    if (flow == ByteFlow::in) bump(bytes_in_, static_cast<std::uint64_t>(result));
    if (flow == ByteFlow::out) bump(bytes_out_, static_cast<std::uint64_t>(result));
  }
  /// A loop turn of `ns` nanoseconds ended with `ready` coroutines queued and `timers` armed.
  void loop_turn(std::uint64_t ns, std::size_t ready, std::size_t timers) noexcept {
    bump(loop_turns_);
    set(ready_queue_, ready);
    set(timers_armed_, timers);
    if constexpr (!kPerOpCounting) return;
    bump(loop_turn_ns_, ns);
    const unsigned b = ns < 2 ? 0u : static_cast<unsigned>(std::bit_width(ns) - 1);
    bump(buckets_[b < SchedulerMetrics::kTurnBuckets ? b : SchedulerMetrics::kTurnBuckets - 1]);
  }
  /// The loop goes to sleep in the backend.
  void blocking_wait() noexcept { bump(blocking_waits_); }
  /// A task was made to yield (coop budget).
  void coop_yield() noexcept { bump(coop_yields_); }
  /// The stall detector reported a resumption.
  void stall() noexcept { bump(stalls_); }
  /// io_uring: the SQ was full when an SQE was wanted (submitted to make room, retried).
  void sq_full() noexcept { bump(sq_full_waits_); }
  /// io_uring: the CQ had overflowed into the kernel's backlog when harvested.
  void cq_overflow() noexcept { bump(cq_overflows_); }
  /// io_uring: a multishot recv ran out of provided buffers (ENOBUFS) and is re-armed
  /// now or when a buffer comes back.
  void enobufs_rearm() noexcept { bump(enobufs_rearms_); }

  /// Any thread: the counters now (`wakeups` is kept by the scheduler).
  SchedulerMetrics snapshot(std::uint64_t wakeups) const noexcept {
    SchedulerMetrics m;
    for (std::size_t i = 0; i < kOpCodeCount; ++i) {
      m.ops[i].started = read(ops_[i].started);
      m.ops[i].completed = read(ops_[i].completed);
      m.ops[i].failed = read(ops_[i].failed);
    }
    m.bytes_in = read(bytes_in_);
    m.bytes_out = read(bytes_out_);
    m.loop_turns = read(loop_turns_);
    m.loop_turn_ns = read(loop_turn_ns_);
    for (std::size_t i = 0; i < SchedulerMetrics::kTurnBuckets; ++i) m.loop_turn_buckets[i] = read(buckets_[i]);
    m.blocking_waits = read(blocking_waits_);
    m.wakeups = wakeups;
    m.coop_yields = read(coop_yields_);
    m.ready_queue = read(ready_queue_);
    m.timers_armed = read(timers_armed_);
    m.stalls = read(stalls_);
    m.sq_full_waits = read(sq_full_waits_);
    m.cq_overflows = read(cq_overflows_);
    m.enobufs_rearms = read(enobufs_rearms_);
    return m;
  }

 private:
  using Counter = std::atomic<std::uint64_t>;
  struct Ops {
    Counter started{0}, completed{0}, failed{0};
  };
  static std::size_t index(OpCode c) noexcept { return static_cast<std::size_t>(c); }
  static std::uint64_t read(const Counter& c) noexcept { return c.load(std::memory_order_relaxed); }
  Ops ops_[kOpCodeCount];
  Counter bytes_in_{0}, bytes_out_{0};
  Counter loop_turns_{0}, loop_turn_ns_{0};
  Counter buckets_[SchedulerMetrics::kTurnBuckets] = {};
  Counter blocking_waits_{0}, coop_yields_{0};
  Counter ready_queue_{0}, timers_armed_{0};
  Counter stalls_{0}, sq_full_waits_{0}, cq_overflows_{0}, enobufs_rearms_{0};
};

}  // namespace galay::detail
