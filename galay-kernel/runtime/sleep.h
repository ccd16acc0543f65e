#pragma once
/// @file sleep.h
/// sleep_for / sleep_until: suspend the current task on the scheduler's timer heap.
/// Both yield Expected<void>: success when the time has passed, operation_canceled (or the
/// scope's reason) when the task was cancelled while sleeping.

#include <chrono>
#include <coroutine>

#include "galay-kernel/common/expected.h"
#include "galay-kernel/coro/cancel.h"
#include "galay-kernel/runtime/timer_queue.h"

namespace galay {

class Scheduler;

/// Awaitable of sleep_for / sleep_until: a timer in the scheduler's heap, cancellable
/// through the task's scope.
class [[nodiscard]] SleepAwaitable final : public Cancellable, private TimerNode {
 public:
  /// Sleep until `deadline`.
  explicit SleepAwaitable(Clock::time_point deadline) noexcept : deadline_(deadline) {}
  /// Move before the first co_await (the timer is armed only in await_suspend).
  SleepAwaitable(SleepAwaitable&& o) noexcept : Cancellable(o), TimerNode(), deadline_(o.deadline_) {}
  SleepAwaitable(const SleepAwaitable&) = delete;
  SleepAwaitable& operator=(const SleepAwaitable&) = delete;
  ~SleepAwaitable();

  /// Coroutine protocol: always suspends (even for a past deadline: a yield).
  bool await_ready() const noexcept { return false; }
  template <class P>
  /// Coroutine protocol: arms the timer; false if the task is already cancelled.
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    return suspend(h, detail::scope_of(h.promise()));
  }
  /// Coroutine protocol: success at the deadline, or the cancellation error.
  Expected<void> await_resume() const noexcept;

  /// Cancellation from the task's scope: disarm the timer and resume with `reason`.
  void cancel(std::errc reason) noexcept override;

 private:
  bool suspend(std::coroutine_handle<> h, CancelScope* scope) noexcept;
  static void on_fire(TimerNode* self);

  Clock::time_point deadline_;
  std::coroutine_handle<> waiter_;
  Scheduler* sched_ = nullptr;
  CancelScope* scope_ = nullptr;
  std::errc cancelled_{};
  bool no_scheduler_ = false;
};

/// Suspend until `deadline` (steady clock).
inline SleepAwaitable sleep_until(Clock::time_point deadline) noexcept { return SleepAwaitable(deadline); }

/// Suspend for at least `d`.
template <class Rep, class Period>
SleepAwaitable sleep_for(std::chrono::duration<Rep, Period> d) noexcept {
  return SleepAwaitable(deadline_after(Clock::now(), d));  // hours::max() sleeps "forever"
}

/// Give other ready tasks a turn (resumes on the next loop turn).
struct [[nodiscard]] YieldAwaitable {
  /// Coroutine protocol: always suspends.
  bool await_ready() const noexcept { return false; }
  /// Coroutine protocol: re-queues the task behind the ones ready now (continues at once
  /// when no scheduler runs on this thread).
  bool await_suspend(std::coroutine_handle<> h) noexcept;
  /// Coroutine protocol: throws std::system_error(Error::not_bound_to_scheduler) when no
  /// scheduler ran on this thread: yielding to nobody is a bug worth hearing about.
  void await_resume() const;

 private:
  bool no_scheduler_ = false;
};
/// `co_await yield()`: let the other ready tasks (and, periodically, I/O) run first.
inline YieldAwaitable yield() noexcept { return {}; }

}  // namespace galay
