#pragma once
/// @file metrics.h
/// Live I/O metrics of a Scheduler (Scheduler::metrics()) and of a Runtime (the sum of its
/// schedulers, Runtime::metrics()): operations started, completed and failed per kind,
/// bytes in and out, operations in flight, loop turns and their durations, blocking waits,
/// cross-thread wakeups, the ready queue and the armed timers, stalls (Scheduler::Options::
/// stall_threshold), and io_uring's full-SQ retries, CQ overflows and ENOBUFS re-arms.
///
/// The loop thread keeps the counters as it goes (relaxed atomic stores on memory only it
/// writes: no lock, no read-modify-write instruction); any thread may take a snapshot at
/// any time. A snapshot is not one instant: each counter is exact, but two of them may be
/// a few operations apart (in_flight() is clamped at zero for that reason).
///
/// Counting rules: an operation is started when its awaitable hands it to the scheduler
/// (a FileBatch request when the batch is submitted), and finished once, when its result
/// is known: completed with a result >= 0, failed with an error (cancellation and
/// timeouts included). Bytes are the results of the data-moving kinds: recv, readv,
/// recv_pooled, recvmsg, read_at and readv_at in; send, sendmsg, write_at and writev_at
/// out. A loop turn is one pass over the ready coroutines (Scheduler's run_ready_work);
/// its duration is what the tasks resumed in it took without suspending.
///
/// format_prometheus() writes a snapshot in the Prometheus text format (version 0.0.4).

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "galay-kernel/io/op.h"

namespace galay {

/// A snapshot of a scheduler's (or a runtime's, summed) counters.
struct SchedulerMetrics {
  /// One operation kind's counts.
  struct Ops {
    std::uint64_t started = 0;    ///< handed to the scheduler
    std::uint64_t completed = 0;  ///< finished with a result >= 0
    std::uint64_t failed = 0;     ///< finished with an error (cancelled and timed out included)
    /// Started and not finished yet.
    std::uint64_t in_flight() const noexcept { return started > completed + failed ? started - completed - failed : 0; }
  };
  /// Number of duration buckets: bucket i counts turns of [2^i, 2^(i+1)) ns (bucket 0
  /// also counts shorter ones; the last also longer ones, from 2^31 ns, about 2.1 s).
  static constexpr std::size_t kTurnBuckets = 32;

  std::array<Ops, kOpCodeCount> ops{};                          ///< indexed by OpCode
  std::uint64_t bytes_in = 0;                                   ///< bytes received and read
  std::uint64_t bytes_out = 0;                                  ///< bytes sent and written
  std::uint64_t loop_turns = 0;                                 ///< passes over the ready coroutines
  std::uint64_t loop_turn_ns = 0;                               ///< their total duration
  std::array<std::uint64_t, kTurnBuckets> loop_turn_buckets{};  ///< their durations (see kTurnBuckets)
  std::uint64_t blocking_waits = 0;                             ///< times the loop went to sleep in the backend
  std::uint64_t wakeups = 0;                                    ///< cross-thread wakeups sent to the sleeping loop
  std::uint64_t coop_yields = 0;     ///< tasks made to yield after Scheduler::kCoopBudget inline completions
  std::uint64_t ready_queue = 0;     ///< coroutines ready to run, at the end of the last turn (a gauge)
  std::uint64_t timers_armed = 0;    ///< timers armed (deadlines, sleeps), at the end of the last turn (a gauge)
  std::uint64_t stalls = 0;          ///< resumptions over Scheduler::Options::stall_threshold
  std::uint64_t sq_full_waits = 0;   ///< io_uring: SQ full when an op wanted an entry (submitted, retried)
  std::uint64_t cq_overflows = 0;    ///< io_uring: CQ found overflowed into the kernel's backlog (flushed)
  std::uint64_t enobufs_rearms = 0;  ///< io_uring: multishot recvs that ran out of provided buffers

  /// The counts of `code`.
  const Ops& of(OpCode code) const noexcept { return ops[static_cast<std::size_t>(code)]; }
  /// Every kind together.
  Ops total() const noexcept;
  /// Operations started and not finished, all kinds.
  std::uint64_t in_flight() const noexcept { return total().in_flight(); }
  /// Add another snapshot (Runtime::metrics() sums its schedulers').
  SchedulerMetrics& operator+=(const SchedulerMetrics& o) noexcept;
};

/// `m` in the Prometheus text exposition format, every name starting with `prefix` and
/// `_`: `<prefix>_ops_started_total{op="recv"}` (and `_completed_total`, `_failed_total`,
/// `_in_flight`) for each kind that has been used, `_bytes_in_total`, `_bytes_out_total`,
/// `_loop_turns_total`, the `_loop_turn_seconds` histogram, `_blocking_waits_total`,
/// `_wakeups_total`, `_coop_yields_total`, `_stalls_total`, `_sq_full_waits_total`,
/// `_cq_overflows_total`, `_enobufs_rearms_total`, `_ready_queue` and `_timers_armed`. `labels`,
/// if not empty, is added to every sample (`worker="0"`: no braces, already escaped).
std::string format_prometheus(const SchedulerMetrics& m, std::string_view prefix = "galay",
                              std::string_view labels = {});

/// One snapshot and the labels that tell it apart on a page of several.
struct LabeledMetrics {
  std::string_view labels;   ///< label pairs without braces, already escaped (`worker="0"`); may be empty
  SchedulerMetrics metrics;  ///< the snapshot
};

/// Several snapshots on one page (one per worker, say): each family's HELP and TYPE once,
/// then its samples for every snapshot, told apart by their labels.
std::string format_prometheus(std::span<const LabeledMetrics> sets, std::string_view prefix = "galay");

}  // namespace galay
