#pragma once
/// @file wait_queue.h
/// Shared machinery of the task synchronisation primitives (Mutex, Semaphore, Event,
/// Latch/WaitGroup, Channel): a small spinlock, and an intrusive FIFO of suspended waiters.
///
/// Rules every primitive follows:
/// - A waiter node lives in the awaitable, i.e. in the waiting coroutine's frame, so a
///   wait allocates nothing.
/// - The primitive's state and its waiter lists are guarded by one SpinLock. The lock is
///   never held while a coroutine is resumed: a waker unlinks waiters under the lock, then
///   hands each to its own scheduler's schedule() after unlocking (wake_all()).
/// - A waiter is resumed on the scheduler it suspended on, never inline by the waker, so a
///   primitive shared by tasks on different schedulers is safe.
/// - A waiter registers itself as its task's pending Cancellable: cancelling the task
///   unlinks the waiter and resumes it (through schedule(), never inline) with the
///   scope's reason (operation_canceled, or timed_out for deadlines).

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <mutex>
#include <system_error>
#include <thread>

#include "galay-kernel/common/error.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/common/intrusive_list.h"
#include "galay-kernel/coro/cancel.h"
#include "galay-kernel/runtime/scheduler.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace galay::sync::detail {

/// Test-and-test-and-set spinlock. Critical sections here are a few pointer updates, so
/// spinning beats a futex; after a short spin it yields the CPU, because on a machine with
/// fewer cores than threads the holder may have been preempted.
class SpinLock {
 public:
  void lock() noexcept {
    for (unsigned spins = 0;; ++spins) {
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins >= 64) {
          std::this_thread::yield();
          spins = 0;
        } else {
          cpu_relax();
        }
      }
    }
  }
  bool try_lock() noexcept {
    return !locked_.load(std::memory_order_relaxed) && !locked_.exchange(true, std::memory_order_acquire);
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  static void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }
  std::atomic<bool> locked_{false};
};

using Guard = std::lock_guard<SpinLock>;

class Waiter;
class WaitQueue;
class WakeBatch;

/// The part of a primitive's awaitable that waits: a list node, where to resume, and
/// the cancellation hook. Subclasses implement the fast path and the result.
class Waiter : public Cancellable {
 public:
  /// idle: never queued; waiting: on a list; granted: a waker took it off the list with
  /// success; failed: taken off with `error` (cancelled, or the primitive was closed).
  enum class State : std::uint8_t { idle, waiting, granted, failed };

  Waiter() noexcept = default;
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  /// Cancellable: runs on this waiter's scheduler thread (scopes are single-threaded).
  inline void cancel(std::errc reason) noexcept override;

  // ---- used by primitives, under their lock ----

  /// Take this waiter (already unlinked) as granted.
  void grant_locked() noexcept { state_ = State::granted; }
  /// Take this waiter (already unlinked) as failed with `ec`.
  void fail_locked(std::error_code ec) noexcept {
    state_ = State::failed;
    error_ = ec;
  }
  State state() const noexcept { return state_; }

 protected:
  ~Waiter() = default;

  /// Common start of await_suspend: false (don't suspend) with error() set if the scope is
  /// already cancelled.
  bool check_scope(CancelScope* scope) noexcept {
    scope_ = scope;
    if (scope != nullptr && scope->cancelled()) {
      error_ = errno_code(static_cast<int>(scope->reason()));
      scope_ = nullptr;
      return false;
    }
    return true;
  }

  /// Queue on `list` (caller holds `lock`). False, with error() set, if there is no
  /// scheduler on this thread to resume on.
  inline bool enqueue_locked(SpinLock& lock, WaitQueue& list, std::coroutine_handle<> h) noexcept;

  /// After unlocking, once queued: become the scope's pending operation. Safe after the
  /// unlock because a waker can only schedule us, and we resume on this very thread.
  void register_with_scope() noexcept {
    if (scope_ != nullptr) scope_->set_pending(this);
  }

  /// Start of await_resume.
  void finish_wait() noexcept {
    if (scope_ != nullptr) {
      scope_->clear_pending(this);
      scope_ = nullptr;
    }
    resumed_ = true;
  }

  /// True if this waiter was queued and never resumed: its frame is being destroyed while
  /// suspended (scheduler teardown). The caller must then undo whatever it was granted.
  bool destroyed_while_suspended() const noexcept { return queued_ && !resumed_; }

  /// Destructor helper: if still queued, unlink. Returns the state seen under the lock.
  inline State unlink_if_waiting() noexcept;

  std::error_code error() const noexcept { return error_; }
  bool failed() const noexcept { return static_cast<bool>(error_); }

 private:
  friend class WaitQueue;
  friend class WakeBatch;
  ListLinks<Waiter> links_;  // on the primitive's WaitQueue, then on a WakeBatch
  std::coroutine_handle<> handle_;
  Scheduler* sched_ = nullptr;
  CancelScope* scope_ = nullptr;
  SpinLock* lock_ = nullptr;
  WaitQueue* list_ = nullptr;
  std::error_code error_;
  State state_ = State::idle;
  bool queued_ = false;   // owner thread only: it suspended on a list
  bool resumed_ = false;  // owner thread only: await_resume ran
};

/// FIFO of waiters (guarded by the owning primitive's SpinLock), with its length.
class WaitQueue {
 public:
  bool empty() const noexcept { return list_.empty(); }
  Waiter* front() const noexcept { return list_.front(); }
  std::size_t size() const noexcept { return size_; }
  void push_back(Waiter* w) noexcept {
    list_.push_back(w);
    ++size_;
  }
  void remove(Waiter* w) noexcept {
    list_.remove(w);
    --size_;
  }
  Waiter* pop_front() noexcept {
    Waiter* w = list_.pop_front();
    if (w) --size_;
    return w;
  }

 private:
  IntrusiveList<Waiter, &Waiter::links_> list_;
  std::size_t size_ = 0;
};

inline void Waiter::cancel(std::errc reason) noexcept {
  std::coroutine_handle<> h;
  Scheduler* s = nullptr;
  {
    Guard g(*lock_);
    if (state_ != State::waiting) return;  // a waker got there first; it resumes us
    list_->remove(this);
    fail_locked(errno_code(static_cast<int>(reason)));
    h = handle_;
    s = sched_;
  }
  s->schedule(h);  // never inline: the canceller may be deep inside other code
}

inline bool Waiter::enqueue_locked(SpinLock& lock, WaitQueue& list, std::coroutine_handle<> h) noexcept {
  sched_ = Scheduler::current();
  if (sched_ == nullptr) {
    error_ = make_error_code(Error::not_bound_to_scheduler);
    return false;
  }
  lock_ = &lock;
  list_ = &list;
  handle_ = h;
  state_ = State::waiting;
  queued_ = true;
  list.push_back(this);
  return true;
}

inline Waiter::State Waiter::unlink_if_waiting() noexcept {
  Guard g(*lock_);
  if (state_ == State::waiting) {
    list_->remove(this);
    state_ = State::failed;
    return State::waiting;
  }
  return state_;
}

/// The wait every primitive offers (Event::wait, Latch::wait, Semaphore::acquire,
/// Mutex::lock): after the scope check, under the primitive's lock, either take what it
/// waits for at once or queue. `Primitive` provides, for LockedWait only:
///   SpinLock& wait_lock(); WaitQueue& wait_queue();
///   bool take_locked();          // under the lock: true (and take it) if available now
///   bool ready_unlocked() const; // optional lock-free "already available" hint
template <class Primitive>
class LockedWait : public Waiter {
 public:
  explicit LockedWait(Primitive& p) noexcept : primitive_(p) {}
  /// Coroutine protocol: always goes through await_suspend (under the primitive's lock).
  bool await_ready() const noexcept { return false; }
  template <class P>
  /// Coroutine protocol: continues at once (false) if available, else queues the task.
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    if (!check_scope(::galay::detail::scope_of(h.promise()))) return false;
    if constexpr (requires { primitive_.ready_unlocked(); }) {
      if (primitive_.ready_unlocked()) return false;
    }
    {
      Guard g(primitive_.wait_lock());
      if (primitive_.take_locked()) return false;
      if (!enqueue_locked(primitive_.wait_lock(), primitive_.wait_queue(), h)) return false;
    }
    register_with_scope();
    return true;
  }
  /// Coroutine protocol: success once granted, or the cancellation error.
  Expected<void> await_resume() noexcept {
    finish_wait();
    if (failed()) return make_error(error());
    return {};
  }

 protected:
  Primitive& primitive_;
};

/// A singly linked batch of waiters taken off a list under the lock, to be woken after it.
class WakeBatch {
 public:
  inline void add(Waiter* w) noexcept;
  /// Hand every waiter to its scheduler. Call with no lock held.
  inline void wake_all() noexcept;

 private:
  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
};

inline void WakeBatch::add(Waiter* w) noexcept {
  w->links_.next = nullptr;  // off the WaitQueue already: reuse its links
  if (tail_)
    tail_->links_.next = w;
  else
    head_ = w;
  tail_ = w;
}

inline void WakeBatch::wake_all() noexcept {
  for (Waiter* w = head_; w != nullptr;) {
    // Read everything first: once scheduled, the waiter may run and free its frame.
    Waiter* next = w->links_.next;
    std::coroutine_handle<> h = w->handle_;
    Scheduler* s = w->sched_;
    s->schedule(h);
    w = next;
  }
  head_ = tail_ = nullptr;
}

}  // namespace galay::sync::detail
