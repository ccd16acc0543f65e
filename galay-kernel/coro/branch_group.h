#pragma once
/// @file branch_group.h
/// Shared machinery of when_all and when_any: run N tasks concurrently on the current
/// scheduler, each in its own CancelScope, and resume the awaiting task once all of them
/// have finished. Cancelling the awaiting task cancels every branch.

#include <coroutine>
#include <cstddef>
#include <exception>
#include <memory>
#include <type_traits>
#include <utility>
#include <variant>

#include "galay-kernel/coro/cancel.h"
#include "galay-kernel/coro/task.h"

namespace galay::detail {

/// void results are stored as std::monostate.
template <class T>
using StoredResult = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
struct BranchSlot {
  std::variant<std::monostate, StoredResult<T>, std::exception_ptr> value;
};

class BranchGroup : public Cancellable {
 public:
  explicit BranchGroup(std::size_t n)
      : count_(n),
        scopes_(std::make_unique<CancelScope[]>(n)),
        drivers_(std::make_unique<std::coroutine_handle<>[]>(n)) {}
  BranchGroup(const BranchGroup&) = delete;
  BranchGroup& operator=(const BranchGroup&) = delete;

  /// Destroyed while branches are still suspended (the awaiting task's frame is being
  /// destroyed, e.g. by Scheduler::shutdown()): destroy them first, while the scopes they
  /// point into still exist. Each driver owns its branch task, so this frees everything.
  ~BranchGroup() {
    for (std::size_t i = 0; i < count_; ++i)
      if (drivers_[i]) std::exchange(drivers_[i], nullptr).destroy();
  }

  void set_driver(std::size_t i, std::coroutine_handle<> h) noexcept { drivers_[i] = h; }
  void forget_driver(std::size_t i) noexcept { drivers_[i] = nullptr; }

  CancelScope& scope(std::size_t i) noexcept { return scopes_[i]; }
  std::size_t count() const noexcept { return count_; }

  /// Cancelling the group cancels every branch still running.
  void cancel(std::errc reason) noexcept override {
    for (std::size_t i = 0; i < count_; ++i) scopes_[i].cancel(reason);
  }

  /// Called when branch `i` finishes; returns what to resume next.
  std::coroutine_handle<> branch_done(std::size_t i) noexcept {
    if (first_done_ == kNone) {
      first_done_ = i;
      if (cancel_others_on_first_) {
        for (std::size_t j = 0; j < count_; ++j)
          if (j != i) scopes_[j].cancel(std::errc::operation_canceled);
      }
    }
    if (--remaining_ == 0) return parent_;
    return std::noop_coroutine();
  }

  std::size_t first_done() const noexcept { return first_done_; }
  void set_cancel_others_on_first(bool v) noexcept { cancel_others_on_first_ = v; }

  // Launch protocol: remaining_ starts at count+1 so a branch that finishes during launch
  // cannot resume the parent before it has suspended.
  void begin_launch(std::coroutine_handle<> parent) noexcept {
    parent_ = parent;
    remaining_ = count_ + 1;
  }
  bool end_launch() noexcept { return --remaining_ != 0; }  // true: parent must suspend

 private:
  static constexpr std::size_t kNone = ~std::size_t{0};
  std::size_t count_;
  std::unique_ptr<CancelScope[]> scopes_;
  std::unique_ptr<std::coroutine_handle<>[]> drivers_;  // live (unfinished) branch drivers
  std::size_t remaining_ = 0;
  std::size_t first_done_ = kNone;
  bool cancel_others_on_first_ = false;
  std::coroutine_handle<> parent_;
};

/// A coroutine that owns and awaits one branch task and reports to the group. It destroys
/// itself when the branch finishes; the group destroys it if it never does.
class BranchDriver {
 public:
  class promise_type {
   public:
    BranchDriver get_return_object() noexcept {
      return BranchDriver{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    struct FinalAwaiter {
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) noexcept {
        BranchGroup* group = h.promise().group;
        std::size_t index = h.promise().index;
        group->forget_driver(index);
        h.destroy();  // nothing of this frame is touched after this point
        return group->branch_done(index);
      }
      void await_resume() const noexcept {}
    };
    FinalAwaiter final_suspend() const noexcept { return {}; }
    void return_void() noexcept {}
    [[noreturn]] void unhandled_exception() noexcept { std::terminate(); }
    CancelScope* scope() noexcept { return &group->scope(index); }

    BranchGroup* group = nullptr;
    std::size_t index = 0;
  };
  std::coroutine_handle<promise_type> handle;
};

template <class T>
BranchDriver drive_branch(Task<T> task, BranchSlot<T>& slot) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await task;
      slot.value.template emplace<1>();
    } else {
      slot.value.template emplace<1>(co_await task);
    }
  } catch (...) {
    slot.value.template emplace<2>(std::current_exception());
  }
}

/// Awaiter that launches every branch and suspends the parent until all have finished.
template <class LaunchFn>
class GroupAwaiter {
 public:
  GroupAwaiter(BranchGroup& group, LaunchFn launch) : group_(group), launch_(std::move(launch)) {}

  bool await_ready() const noexcept { return group_.count() == 0; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> parent) {
    parent_scope_ = scope_of(parent.promise());
    if (parent_scope_ && parent_scope_->cancelled()) group_.cancel(parent_scope_->reason());
    group_.begin_launch(parent);
    launch_();
    if (!group_.end_launch()) return false;
    if (parent_scope_) parent_scope_->set_pending(&group_);
    return true;
  }
  void await_resume() noexcept {
    if (parent_scope_) parent_scope_->clear_pending(&group_);
  }

 private:
  BranchGroup& group_;
  LaunchFn launch_;
  CancelScope* parent_scope_ = nullptr;
};

/// Start driver `d` for branch `i` of `group`.
inline void launch_driver(BranchGroup& group, std::size_t i, BranchDriver d) {
  d.handle.promise().group = &group;
  d.handle.promise().index = i;
  group.set_driver(i, d.handle);
  d.handle.resume();
}

template <class T>
StoredResult<T> take_slot(BranchSlot<T>& slot) {
  if (slot.value.index() == 2) std::rethrow_exception(std::get<2>(slot.value));
  return std::move(std::get<1>(slot.value));
}

}  // namespace galay::detail
