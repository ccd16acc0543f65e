#include "galay-kernel/kernel/sleep.h"

#include "galay-kernel/kernel/scheduler.h"

namespace galay {

SleepAwaitable::~SleepAwaitable() {
  if (node_.armed() && sched_ != nullptr) sched_->timers().cancel(node_);
  if (scope_ != nullptr) scope_->clear_pending(this);
}

bool SleepAwaitable::suspend(std::coroutine_handle<> h, CancelScope* scope) noexcept {
  sched_ = Scheduler::current();
  waiter_ = h;
  if (sched_ == nullptr) {
    no_scheduler_ = true;
    return false;
  }
  if (scope != nullptr && scope->cancelled()) {
    cancelled_ = scope->reason();
    return false;
  }
  // Even an expired deadline goes through the timer heap, so sleeps of zero yield fairly.
  node_.fire = &SleepAwaitable::on_fire;
  node_.owner = this;
  sched_->timers().arm(node_, deadline_);
  if (scope != nullptr) {
    scope_ = scope;
    scope->set_pending(this);
  }
  return true;
}

void SleepAwaitable::on_fire(void* owner) {
  auto* self = static_cast<SleepAwaitable*>(owner);
  if (self->scope_ != nullptr) {
    self->scope_->clear_pending(self);
    self->scope_ = nullptr;
  }
  self->sched_->schedule(self->waiter_);
}

void SleepAwaitable::cancel(std::errc reason) noexcept {
  if (!node_.armed()) return;
  sched_->timers().cancel(node_);
  cancelled_ = reason;
  if (scope_ != nullptr) {
    scope_->clear_pending(this);
    scope_ = nullptr;
  }
  sched_->schedule(waiter_);
}

Expected<void> SleepAwaitable::await_resume() const noexcept {
  if (no_scheduler_) return make_error(make_error_code(Error::not_bound_to_scheduler));
  if (cancelled_ != std::errc{}) return make_error(errno_code(static_cast<int>(cancelled_)));
  return {};
}

void YieldAwaitable::await_suspend(std::coroutine_handle<> h) noexcept { Scheduler::current()->schedule(h); }

}  // namespace galay
