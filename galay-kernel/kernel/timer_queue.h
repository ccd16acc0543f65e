#pragma once
/// @file timer_queue.h
/// Deadlines for one scheduler: an intrusive binary min-heap of TimerNodes. Nodes live in
/// the awaitables (coroutine frames), so arming a timer allocates nothing once the heap's
/// vector has grown; cancel is O(log n) through the node's stored heap index. The earliest
/// deadline sets the backend's wait timeout.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace galay {

using Clock = std::chrono::steady_clock;

/// One armed deadline. `fire` runs on the scheduler thread when the deadline passes.
struct TimerNode {
  static constexpr std::size_t npos = ~std::size_t{0};
  Clock::time_point deadline{};
  std::uint64_t seq = 0;          ///< tie-break: equal deadlines fire in arming order
  std::size_t heap_index = npos;  ///< npos while not armed
  void (*fire)(void* owner) = nullptr;
  void* owner = nullptr;  ///< passed to fire: the awaitable that armed the node

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
  Clock::time_point next_deadline() const noexcept { return heap_.front()->deadline; }

 private:
  static bool earlier(const TimerNode* a, const TimerNode* b) noexcept {
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
  }
  void sift_up(std::size_t i) noexcept;
  void sift_down(std::size_t i) noexcept;
  void place(std::size_t i, TimerNode* n) noexcept {
    heap_[i] = n;
    n->heap_index = i;
  }

  std::vector<TimerNode*> heap_;
  std::uint64_t next_seq_ = 0;
};

}  // namespace galay
