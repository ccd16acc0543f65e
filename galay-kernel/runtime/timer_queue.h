#pragma once
/// @file timer_queue.h
/// Deadlines for one scheduler: a binary min-heap of (deadline, node) entries. Nodes live in
/// the awaitables (coroutine frames), so arming a timer allocates nothing once the heap's
/// vector has grown; cancel is O(log n) through the node's stored heap index. The earliest
/// deadline sets the backend's wait timeout.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ratio>
#include <vector>

namespace galay {

using Clock = std::chrono::steady_clock;

/// `d` in nanoseconds, saturating instead of overflowing: nanoseconds::max() for anything
/// at least that long (the "no limit" value), 0 for negative durations.
template <class Rep, class Period>
constexpr std::chrono::nanoseconds saturating_nanoseconds(std::chrono::duration<Rep, Period> d) noexcept {
  using std::chrono::nanoseconds;
  if (d <= d.zero()) return nanoseconds::zero();
  if constexpr (std::chrono::treat_as_floating_point_v<Rep>) {
    const double ns = std::chrono::duration<double, std::nano>(d).count();
    if (!(ns < static_cast<double>(nanoseconds::max().count()))) return nanoseconds::max();  // also NaN
    return nanoseconds(static_cast<nanoseconds::rep>(ns));
  } else if constexpr (std::ratio_less_equal_v<Period, std::nano>) {
    return std::chrono::duration_cast<nanoseconds>(d);  // coarsening: cannot overflow
  } else {
    // A unit coarser than ns: compare in that unit (converting max() down cannot overflow).
    if (d >= std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(nanoseconds::max()))
      return nanoseconds::max();
    return std::chrono::duration_cast<nanoseconds>(d);
  }
}

/// `now + d`, saturating at time_point::max() (a deadline that never comes) instead of
/// wrapping into the past.
template <class Rep, class Period>
Clock::time_point deadline_after(Clock::time_point now, std::chrono::duration<Rep, Period> d) noexcept {
  const std::chrono::nanoseconds rel = saturating_nanoseconds(d);
  const auto room = Clock::time_point::max() - now;
  if (rel >= room) return Clock::time_point::max();
  return now + std::chrono::duration_cast<Clock::duration>(rel);
}

/// One armed deadline: 16 bytes, meant to be a base of the object it times (an IoOp, a
/// sleep), which `fire` gets back with a static_cast. The deadline itself lives in the
/// queue's heap entry, not here. `fire` runs on the scheduler thread when it passes.
struct TimerNode {
  static constexpr std::uint32_t npos = ~std::uint32_t{0};
  std::uint32_t heap_index = npos;  ///< npos while not armed
  void (*fire)(TimerNode* self) = nullptr;

  bool armed() const noexcept { return heap_index != npos; }
};

class TimerQueue {
 public:
  /// Arm `node` (which must not be armed) for `deadline`.
  void arm(TimerNode& node, Clock::time_point deadline);
  /// Disarm `node` if armed; no-op otherwise.
  void cancel(TimerNode& node) noexcept;
  /// Fire every node whose deadline is <= now. Returns how many fired.
  std::size_t fire_expired(Clock::time_point now);
  bool empty() const noexcept { return heap_.empty(); }
  std::size_t size() const noexcept { return heap_.size(); }
  /// Earliest deadline; only valid when !empty().
  Clock::time_point next_deadline() const noexcept { return heap_.front().deadline; }

 private:
  /// A heap slot: the deadline is kept by value, so sifting compares without touching the
  /// nodes (which sit in coroutine frames all over memory).
  struct Entry {
    Clock::time_point deadline;
    std::uint64_t seq;  ///< tie-break: equal deadlines fire in arming order
    TimerNode* node;
  };
  static bool earlier(const Entry& a, const Entry& b) noexcept {
    return a.deadline < b.deadline || (a.deadline == b.deadline && a.seq < b.seq);
  }
  void sift_up(std::size_t i) noexcept;
  void sift_down(std::size_t i) noexcept;
  void place(std::size_t i, const Entry& e) noexcept {
    heap_[i] = e;
    e.node->heap_index = static_cast<std::uint32_t>(i);
  }

  std::vector<Entry> heap_;
  std::uint64_t next_seq_ = 0;
};

}  // namespace galay
