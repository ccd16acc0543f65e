#pragma once
/// @file mutex.h
/// An async Mutex for tasks: lock() suspends the task, never the thread. Waiters are
/// served strictly in FIFO order by direct hand-off (unlock() gives the lock to the first
/// waiter, so a newcomer cannot barge in), on whatever scheduler each waiter runs. A wait
/// is cancellable and allocates nothing (see wait_queue.h for the shared rules).
///
///   galay::sync::Mutex m;
///   auto guard = co_await m.scoped_lock();   // Expected<MutexGuard>
///   if (!guard) co_return;                     // cancelled (operation_canceled / timed_out)
///   ... critical section; may co_await ...
///   // guard unlocks at scope exit

#include <cstddef>
#include <utility>

#include "galay-kernel/common/expected.h"
#include "galay-kernel/sync/wait_queue.h"

namespace galay::sync {

class Mutex;

/// Owns a locked Mutex and unlocks it when destroyed. Move-only.
class [[nodiscard]] MutexGuard {
 public:
  MutexGuard() noexcept = default;
  /// Adopt `m`, which the caller has locked.
  explicit MutexGuard(Mutex& m) noexcept : m_(&m) {}
  /// Take over another guard's lock; it becomes empty.
  MutexGuard(MutexGuard&& o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
  /// Unlock what this guard holds, then take over the other's lock.
  MutexGuard& operator=(MutexGuard&& o) noexcept {
    if (this != &o) {
      unlock();
      m_ = std::exchange(o.m_, nullptr);
    }
    return *this;
  }
  ~MutexGuard() { unlock(); }
  /// True while this guard holds the lock.
  bool owns_lock() const noexcept { return m_ != nullptr; }
  /// Unlock now (idempotent).
  inline void unlock() noexcept;

 private:
  Mutex* m_ = nullptr;
};

/// FIFO async mutex. Not recursive. Any task on any scheduler (or any thread, for
/// try_lock/unlock) may use it; unlock() may run on a different thread than lock().
class Mutex {
  class LockWaiter;

 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;
  /// Destroying a mutex that still has waiters is a bug (they would never resume).
  ~Mutex() = default;

  /// `co_await m.lock()` → Expected<void>: locked, or the task's cancellation reason.
  class [[nodiscard]] LockAwaitable;
  /// `co_await m.scoped_lock()` → Expected<MutexGuard>.
  class [[nodiscard]] ScopedLockAwaitable;

  /// Take the lock if it is free and nobody is queued. Never suspends.
  bool try_lock() noexcept {
    detail::Guard g(lock_);
    if (locked_) return false;
    locked_ = true;
    return true;
  }
  /// `co_await m.lock()` → Expected<void>: the lock, or operation_canceled / timed out by
  /// the task's scope. Pair with unlock().
  inline LockAwaitable lock() noexcept;
  /// `co_await m.scoped_lock()` → Expected<MutexGuard> that unlocks when destroyed.
  inline ScopedLockAwaitable scoped_lock() noexcept;

  /// Release the lock: the first waiter (if any) now owns it and is scheduled on its own
  /// scheduler. Callable from any thread.
  void unlock() noexcept {
    detail::WakeBatch batch;
    {
      detail::Guard g(lock_);
      detail::Waiter* w = waiters_.pop_front();
      if (w == nullptr) {
        locked_ = false;
        return;
      }
      w->grant_locked();  // ownership passes directly: locked_ stays true
      batch.add(w);
    }
    batch.wake_all();
  }

  /// Snapshot: true if somebody holds the lock.
  bool is_locked() const noexcept {
    detail::Guard g(lock_);
    return locked_;
  }
  /// Snapshot: number of queued waiters (diagnostics and tests).
  std::size_t waiters() const noexcept {
    detail::Guard g(lock_);
    return waiters_.size();
  }

 private:
  friend class detail::LockedWait<Mutex>;
  detail::SpinLock& wait_lock() noexcept { return lock_; }
  detail::WaitQueue& wait_queue() noexcept { return waiters_; }
  bool take_locked() noexcept {
    if (locked_) return false;
    locked_ = true;
    return true;
  }

  mutable detail::SpinLock lock_;
  bool locked_ = false;
  detail::WaitQueue waiters_;
};

/// Common part of the lock awaitables: queues the task FIFO when the mutex is held.
class Mutex::LockWaiter : public detail::LockedWait<Mutex> {
 public:
  /// Wait for `m`.
  explicit LockWaiter(Mutex& m) noexcept : LockedWait(m) {}
  ~LockWaiter() {
    // Frame destroyed while queued (scheduler teardown): leave the queue, or pass on a lock
    // that was handed to us but that we never got to use.
    if (destroyed_while_suspended() && unlink_if_waiting() == State::granted) primitive_.unlock();
  }
};

/// Awaitable of Mutex::lock().
class Mutex::LockAwaitable final : public Mutex::LockWaiter {
 public:
  /// Wait for the mutex.
  using LockWaiter::LockWaiter;
};

/// Awaitable of Mutex::scoped_lock().
class Mutex::ScopedLockAwaitable final : public Mutex::LockWaiter {
 public:
  /// Wait for the mutex.
  using LockWaiter::LockWaiter;
  /// Coroutine protocol: a guard owning the lock, or the cancellation error.
  Expected<MutexGuard> await_resume() noexcept {
    finish_wait();
    if (failed()) return make_error(error());
    return MutexGuard(primitive_);
  }
};

inline Mutex::LockAwaitable Mutex::lock() noexcept { return LockAwaitable(*this); }
inline Mutex::ScopedLockAwaitable Mutex::scoped_lock() noexcept { return ScopedLockAwaitable(*this); }

inline void MutexGuard::unlock() noexcept {
  if (m_ != nullptr) std::exchange(m_, nullptr)->unlock();
}

}  // namespace galay::sync
