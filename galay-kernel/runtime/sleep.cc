#include "galay-kernel/runtime/sleep.h"

#include "galay-kernel/runtime/scheduler.h"

#include <system_error>

namespace galay {

SleepAwaitable::~SleepAwaitable() {
  if (armed() && sched_ != nullptr) sched_->timers().cancel(*this);
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
  fire = &SleepAwaitable::on_fire;
  sched_->timers().arm(*this, deadline_);
  if (scope != nullptr) {
    scope_ = scope;
    scope->set_pending(this);
  }
  return true;
}

void SleepAwaitable::on_fire(TimerNode* node) {
  auto* self = static_cast<SleepAwaitable*>(node);
  if (self->scope_ != nullptr) {
    self->scope_->clear_pending(self);
    self->scope_ = nullptr;
  }
  self->sched_->schedule(self->waiter_);
}

void SleepAwaitable::cancel(std::errc reason) noexcept {
  if (!armed()) return;
  sched_->timers().cancel(*this);
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

bool YieldAwaitable::await_suspend(std::coroutine_handle<> h) noexcept {
  Scheduler* s = Scheduler::current();
  if (s == nullptr) {
    no_scheduler_ = true;
    return false;
  }
  s->schedule(h);
  return true;
}

void YieldAwaitable::await_resume() const {
  if (no_scheduler_) throw std::system_error(make_error_code(Error::not_bound_to_scheduler));
}

}  // namespace galay
