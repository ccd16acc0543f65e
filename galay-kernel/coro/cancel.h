#pragma once
/// @file cancel.h
/// Cooperative cancellation. Every task runs inside a CancelScope; whatever the task is
/// suspended on (an I/O operation, a sleep, a when_any) registers itself as the scope's
/// pending Cancellable. Cancelling the scope cancels that one thing through its real
/// cancellation path (the kernel operation is cancelled, not abandoned), and every later
/// operation in the scope fails at once with the same reason.

#include <system_error>

namespace galay {

/// Something a task is suspended on that can be asked to finish early.
/// cancel() must not resume the waiter inline; the waiter resumes from the run loop,
/// and only after the kernel has let go of any buffer the operation uses.
class Cancellable {
 public:
  /// Ask for the pending operation to stop with `reason` (operation_canceled or timed_out).
  virtual void cancel(std::errc reason) noexcept = 0;

 protected:
  ~Cancellable() = default;
};

/// The cancellation state of one task tree (a spawned task and the tasks it co_awaits).
/// Single-threaded: use it on the scheduler thread that runs the task.
class CancelScope {
 public:
  CancelScope() = default;
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;

  /// True once cancel() has been called.
  bool cancelled() const noexcept { return cancelled_; }
  /// Why it was cancelled (operation_canceled unless a deadline said timed_out).
  std::errc reason() const noexcept { return reason_; }

  /// Cancel whatever is pending now and fail everything that follows.
  void cancel(std::errc reason = std::errc::operation_canceled) noexcept {
    if (cancelled_) return;
    cancelled_ = true;
    reason_ = reason;
    if (pending_ != nullptr) pending_->cancel(reason);
  }

  /// Called by awaitables around their suspension.
  void set_pending(Cancellable* c) noexcept { pending_ = c; }
  /// Undo set_pending(c) (no-op if another operation is pending now).
  void clear_pending(Cancellable* c) noexcept {
    if (pending_ == c) pending_ = nullptr;
  }

 private:
  Cancellable* pending_ = nullptr;
  bool cancelled_ = false;
  std::errc reason_ = std::errc::operation_canceled;
};

namespace detail {
/// The scope of the coroutine behind `h`, or nullptr if its promise has none.
template <class Promise>
CancelScope* scope_of(Promise& p) noexcept {
  if constexpr (requires { p.scope(); })
    return p.scope();
  else
    return nullptr;
}
}  // namespace detail

}  // namespace galay
