#pragma once
/// @file sleep.h
/// sleep_for / sleep_until: suspend the current task on the scheduler's timer heap.
/// Both yield Expected<void>: success when the time has passed, operation_canceled (or the
/// scope's reason) when the task was cancelled while sleeping.

#include <chrono>
#include <coroutine>

#include "galay-kernel/common/expected.h"
#include "galay-kernel/kernel/cancel.h"
#include "galay-kernel/kernel/timer_queue.h"

namespace galay {

class Scheduler;

class SleepAwaitable final : public Cancellable {
 public:
  explicit SleepAwaitable(Clock::time_point deadline) noexcept : deadline_(deadline) {}
  SleepAwaitable(SleepAwaitable&& o) noexcept : Cancellable(o), deadline_(o.deadline_) {}
  SleepAwaitable(const SleepAwaitable&) = delete;
  SleepAwaitable& operator=(const SleepAwaitable&) = delete;
  ~SleepAwaitable();

  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    return suspend(h, detail::scope_of(h.promise()));
  }
  Expected<void> await_resume() const noexcept;

  void cancel(std::errc reason) noexcept override;

 private:
  bool suspend(std::coroutine_handle<> h, CancelScope* scope) noexcept;
  static void on_fire(void* self);

  Clock::time_point deadline_;
  TimerNode node_;
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
  return SleepAwaitable(Clock::now() + std::chrono::duration_cast<Clock::duration>(d));
}

/// Give other ready tasks a turn (resumes on the next loop turn).
struct YieldAwaitable {
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) noexcept;
  void await_resume() const noexcept {}
};
inline YieldAwaitable yield() noexcept { return {}; }

}  // namespace galay
