#pragma once
/// @file semaphore.h
/// An async counting Semaphore for tasks: acquire() suspends the task while no permit is
/// free. Permits go to waiters in FIFO order (release() hands them over directly, so a
/// newcomer cannot overtake a waiter). Works across schedulers; waits are cancellable and
/// allocate nothing (see wait_queue.h).

#include <cstddef>

#include "galay-kernel/common/expected.h"
#include "galay-kernel/sync/wait_queue.h"

namespace galay::sync {

/// A counting semaphore for tasks: acquire() suspends the task (never the thread) until a
/// permit is free; waiters are served in FIFO order, across schedulers.
class Semaphore {
 public:
  /// A semaphore with `initial` free permits.
  explicit Semaphore(std::size_t initial = 0) noexcept : count_(initial) {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  /// `co_await sem.acquire()` → Expected<void>: one permit taken, or the task's
  /// cancellation reason (no permit taken).
  class [[nodiscard]] AcquireAwaitable final : public detail::LockedWait<Semaphore> {
   public:
    /// Wait for a permit of `s`.
    explicit AcquireAwaitable(Semaphore& s) noexcept : LockedWait(s) {}
    ~AcquireAwaitable() {
      // Destroyed while queued (scheduler teardown): give back a permit handed to us.
      if (destroyed_while_suspended() && unlink_if_waiting() == State::granted) primitive_.release();
    }
  };

  /// Take a permit now if one is free and nobody waits. Never suspends.
  bool try_acquire() noexcept {
    detail::Guard g(lock_);
    return take_locked();
  }
  /// Take one permit, waiting if none is free.
  AcquireAwaitable acquire() noexcept { return AcquireAwaitable(*this); }

  /// Return `n` permits: waiters first (FIFO), the rest to the pool. Any thread.
  void release(std::size_t n = 1) noexcept {
    detail::WakeBatch batch;
    {
      detail::Guard g(lock_);
      while (n > 0 && !waiters_.empty()) {
        detail::Waiter* w = waiters_.pop_front();
        w->grant_locked();
        batch.add(w);
        --n;
      }
      count_ += n;
    }
    batch.wake_all();
  }

  /// Snapshot: free permits.
  std::size_t available() const noexcept {
    detail::Guard g(lock_);
    return count_;
  }
  /// Snapshot: queued waiters.
  std::size_t waiters() const noexcept {
    detail::Guard g(lock_);
    return waiters_.size();
  }

 private:
  friend class detail::LockedWait<Semaphore>;
  detail::SpinLock& wait_lock() noexcept { return lock_; }
  detail::WaitQueue& wait_queue() noexcept { return waiters_; }
  // A free permit goes to a newcomer only when nobody queues before it (FIFO).
  bool take_locked() noexcept {
    if (count_ == 0 || !waiters_.empty()) return false;
    --count_;
    return true;
  }

  mutable detail::SpinLock lock_;
  std::size_t count_;
  detail::WaitQueue waiters_;
};

}  // namespace galay::sync
