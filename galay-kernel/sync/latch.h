#pragma once
/// @file latch.h
/// Latch and WaitGroup for tasks: wait() suspends the task until a counter reaches zero.
/// - Latch: counts down once from its initial value (like std::latch).
/// - WaitGroup: add() and done() in any order (like Go's sync.WaitGroup); it may be reused
///   once it has reached zero.
/// Waiters are woken on their own schedulers; waits are cancellable and allocate nothing
/// (see wait_queue.h).

#include <atomic>
#include <cassert>
#include <cstddef>

#include "galay-kernel/common/expected.h"
#include "galay-kernel/sync/wait_queue.h"

namespace galay::sync {

namespace detail {

/// A counter whose waiters are released when it reaches zero.
class Countdown {
 public:
  explicit Countdown(std::ptrdiff_t n) noexcept : count_(n) {}
  Countdown(const Countdown&) = delete;
  Countdown& operator=(const Countdown&) = delete;

  class [[nodiscard]] WaitAwaitable final : public LockedWait<Countdown> {
   public:
    explicit WaitAwaitable(Countdown& c) noexcept : LockedWait(c) {}
    ~WaitAwaitable() {
      if (destroyed_while_suspended()) unlink_if_waiting();
    }
  };

  void add(std::ptrdiff_t n) noexcept {
    WakeBatch batch;
    {
      Guard g(lock_);
      std::ptrdiff_t now = count_.load(std::memory_order_relaxed) + n;
      assert(now >= 0 && "counter went below zero");
      // release: what the counting tasks wrote is visible to a waiter that sees zero.
      count_.store(now, std::memory_order_release);
      if (now == 0) {
        while (Waiter* w = waiters_.pop_front()) {
          w->grant_locked();
          batch.add(w);
        }
      }
    }
    batch.wake_all();
  }
  std::ptrdiff_t count() const noexcept { return count_.load(std::memory_order_acquire); }

 private:
  friend class LockedWait<Countdown>;
  SpinLock& wait_lock() noexcept { return lock_; }
  WaitQueue& wait_queue() noexcept { return waiters_; }
  bool ready_unlocked() const noexcept { return count_.load(std::memory_order_acquire) == 0; }
  bool take_locked() const noexcept { return count_.load(std::memory_order_relaxed) == 0; }

  SpinLock lock_;
  std::atomic<std::ptrdiff_t> count_;
  WaitQueue waiters_;
};

}  // namespace detail

/// Single-use countdown: wait() resumes once count_down() has been called `expected`
/// times (in total). Any thread may count down.
class Latch {
 public:
  /// A latch that opens after `expected` count-downs.
  explicit Latch(std::ptrdiff_t expected) noexcept : c_(expected) {}
  /// Decrement by `n`; at zero every waiter is woken.
  void count_down(std::ptrdiff_t n = 1) noexcept { c_.add(-n); }
  /// True once the counter is zero.
  bool try_wait() const noexcept { return c_.count() == 0; }
  /// `co_await latch.wait()` → Expected<void>: zero reached, or the cancellation reason.
  detail::Countdown::WaitAwaitable wait() noexcept { return detail::Countdown::WaitAwaitable(c_); }

 private:
  detail::Countdown c_;
};

/// Reusable task counter: add() before starting work, done() when each piece finishes,
/// and `co_await wg.wait()` resumes when the count is zero.
class WaitGroup {
 public:
  WaitGroup() noexcept : c_(0) {}
  /// Add `n` pieces of outstanding work.
  void add(std::ptrdiff_t n = 1) noexcept { c_.add(n); }
  /// One piece finished; at zero every waiter is woken.
  void done() noexcept { c_.add(-1); }
  /// Outstanding pieces (snapshot).
  std::ptrdiff_t count() const noexcept { return c_.count(); }
  /// `co_await wg.wait()` → Expected<void>: zero reached, or the cancellation reason.
  detail::Countdown::WaitAwaitable wait() noexcept { return detail::Countdown::WaitAwaitable(c_); }

 private:
  detail::Countdown c_;
};

}  // namespace galay::sync
