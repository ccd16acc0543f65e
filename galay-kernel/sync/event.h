#pragma once
/// @file event.h
/// A manual-reset Event for tasks: wait() suspends the task until set(); set() wakes every
/// waiter (each on its own scheduler) and lets later waits through until reset(). Waits are
/// cancellable and allocate nothing (see wait_queue.h).

#include <atomic>

#include "galay-kernel/common/expected.h"
#include "galay-kernel/sync/wait_queue.h"

namespace galay::sync {

/// A manual-reset event for tasks: wait() suspends until set() (immediately if already
/// set); reset() clears it. Waiters on any scheduler are woken.
class Event {
 public:
  /// An event, initially set if `initially_set`.
  explicit Event(bool initially_set = false) noexcept : set_(initially_set) {}
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  /// `co_await ev.wait()` → Expected<void>: the event is (or was) set, or the task's
  /// cancellation reason.
  class [[nodiscard]] WaitAwaitable final : public detail::LockedWait<Event> {
   public:
    /// Wait for `e`.
    explicit WaitAwaitable(Event& e) noexcept : LockedWait(e) {}
    ~WaitAwaitable() {
      if (destroyed_while_suspended()) unlink_if_waiting();
    }
  };

  /// Wait until the event is set.
  WaitAwaitable wait() noexcept { return WaitAwaitable(*this); }

  /// Set the event and wake every waiter. Any thread.
  void set() noexcept {
    detail::WakeBatch batch;
    {
      detail::Guard g(lock_);
      set_.store(true, std::memory_order_release);
      while (detail::Waiter* w = waiters_.pop_front()) {
        w->grant_locked();
        batch.add(w);
      }
    }
    batch.wake_all();
  }

  /// Clear the event: later waits suspend again. Any thread.
  void reset() noexcept {
    detail::Guard g(lock_);
    set_.store(false, std::memory_order_relaxed);
  }

  /// Snapshot: true while set.
  bool is_set() const noexcept { return set_.load(std::memory_order_acquire); }

 private:
  friend class detail::LockedWait<Event>;
  detail::SpinLock& wait_lock() noexcept { return lock_; }
  detail::WaitQueue& wait_queue() noexcept { return waiters_; }
  bool ready_unlocked() const noexcept { return set_.load(std::memory_order_acquire); }
  bool take_locked() const noexcept { return set_.load(std::memory_order_relaxed); }

  detail::SpinLock lock_;
  std::atomic<bool> set_;
  detail::WaitQueue waiters_;
};

}  // namespace galay::sync
