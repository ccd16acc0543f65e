#pragma once
/// @file task.h
/// Task<T>: a lazy, stackless coroutine. It starts when awaited (or spawned), returns a
/// value or void, and rethrows its exception in the awaiter. Destroying a Task destroys its
/// frame (and, recursively, the frames of the tasks it is awaiting).
///
/// Awaiting runs the child at once, inside the awaiter's await_suspend. A child that
/// finishes without suspending hands control straight back (the awaiter never suspends),
/// so a loop over children that complete at once runs in constant stack, with or without
/// tail calls (sanitizer and -O0 builds have none). A child that suspends resumes its
/// awaiter by symmetric transfer when it finishes later.
///
/// Inline starts nest at most kMaxInlineDepth deep on one thread. Deeper, a child is handed
/// to a trampoline: the innermost inline start runs the queued starts and the resumptions
/// of their awaiters one after another, so a chain of any depth (100k nested awaits) also
/// runs in bounded stack without tail calls.
///
/// Spawn site: every task carries the place its root was spawned (SpawnSite; a task
/// inherits the site of the task that created it, Scheduler::spawn sets the
/// root's). Each time a task starts or resumes it records its site in a per-thread
/// variable, so the scheduler's stall detector can name the root that ran too long
/// (Scheduler::Options::stall_threshold). That costs one store per resumption.

#include <cassert>
#include <coroutine>
#include <exception>
#include <type_traits>
#include <utility>
#include <variant>

#include "galay-kernel/coro/cancel.h"

namespace galay {

template <class T = void>
class Task;

/// A place in the source: what std::source_location gives, made from __builtin_FILE and
/// __builtin_LINE because clang 14 with libstdc++ 12 has no std::source_location. As a
/// defaulted argument, `SpawnSite::current()` is the caller's file and line.
class SpawnSite {
 public:
  constexpr SpawnSite() noexcept = default;
  /// The file and line this is evaluated at (the call site, as a default argument).
  static constexpr SpawnSite current(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) noexcept {
    SpawnSite s;
    s.file_ = file;
    s.line_ = line;
    return s;
  }
  /// The file's name as the compiler saw it ("" when unknown).
  constexpr const char* file_name() const noexcept { return file_; }
  /// The line (0 when unknown).
  constexpr unsigned line() const noexcept { return line_; }

 private:
  const char* file_ = "";
  unsigned line_ = 0;
};

namespace detail {

/// The spawn site of the task running on this thread: set when a task starts or resumes,
/// cleared by the scheduler before it resumes a coroutine (line() == 0: unknown).
inline constinit thread_local SpawnSite running_spawn_site{};

/// The awaiter behind `co_await x` in a task: `x`'s own awaiter, and on resumption the
/// task's spawn site recorded first. `A` is the awaiter's type, or a reference to it when
/// `x` is its own awaiter (it lives until the end of the co_await's full expression).
template <class A>
struct SiteRecordingAwaiter {
  A inner;
  const SpawnSite* site;
  bool await_ready() { return static_cast<bool>(inner.await_ready()); }
  template <class P>
  decltype(auto) await_suspend(std::coroutine_handle<P> h) {
    return inner.await_suspend(h);
  }
  decltype(auto) await_resume() {
    running_spawn_site = *site;
    return inner.await_resume();
  }
};

/// What `co_await x` uses as the awaiter: x.operator co_await(), operator co_await(x), or
/// x itself.
template <class X>
decltype(auto) awaiter_of(X&& x) {
  if constexpr (requires { std::forward<X>(x).operator co_await(); })
    return std::forward<X>(x).operator co_await();
  else if constexpr (requires { operator co_await(std::forward<X>(x)); })
    return operator co_await(std::forward<X>(x));
  else
    return std::forward<X>(x);
}

/// What every task promise shares: who to resume at the end, and the cancel scope.
class TaskPromiseBase {
 public:
  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      TaskPromiseBase& p = h.promise();
      if (p.starting_inline_) {  // still inside the awaiter's await_suspend: it continues
        p.finished_inline_ = true;
        return std::noop_coroutine();
      }
      if (trampoline().draining) {  // the trampoline below us resumes the awaiter next
        trampoline().push(p, p.continuation_);
        return std::noop_coroutine();
      }
      return p.continuation_;
    }
    void await_resume() const noexcept {}
  };

  /// A task starts suspended; when it first runs, it records its spawn site.
  struct InitialAwaiter {
    const TaskPromiseBase* promise;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<>) const noexcept {}
    void await_resume() const noexcept { running_spawn_site = promise->site_; }
  };

  InitialAwaiter initial_suspend() const noexcept { return {this}; }
  FinalAwaiter final_suspend() const noexcept { return {}; }

  /// Every `co_await` in a task records the task's spawn site when it resumes.
  template <class X>
  auto await_transform(X&& x) {
    using A = decltype(awaiter_of(std::forward<X>(x)));
    return SiteRecordingAwaiter<A>{awaiter_of(std::forward<X>(x)), &site_};
  }

  /// Where this task's root was spawned (line() == 0: unknown).
  const SpawnSite& spawn_site() const noexcept { return site_; }
  /// Scheduler::spawn: this task is a root spawned at `site`.
  void set_spawn_site(const SpawnSite& site) noexcept { site_ = site; }

  CancelScope* scope() const noexcept { return scope_; }
  void set_scope(CancelScope* s) noexcept { scope_ = s; }
  void set_continuation(std::coroutine_handle<> c) noexcept { continuation_ = c; }

  /// Run the task now, from its awaiter's await_suspend. True if it finished without
  /// suspending (the awaiter goes on at once); false if it suspended (it resumes the
  /// awaiter when it finishes).
  template <class P>
  static bool start_inline(std::coroutine_handle<P> h) {
    TaskPromiseBase& p = h.promise();
    Trampoline& t = trampoline();
    if (t.depth >= kMaxInlineDepth) {  // too deep: the innermost inline start runs it
      t.push(p, h);
      return false;
    }
    p.starting_inline_ = true;
    ++t.depth;
    h.resume();
    if (t.head != nullptr && !t.draining) {
      // Children deeper than the limit were queued while `h` ran: run them (and, as they
      // finish, their awaiters) here, one at a time, until nothing is queued. `h` may
      // finish meanwhile; p.starting_inline_ still says so to its final awaiter.
      t.draining = true;
      while (TaskPromiseBase* q = t.pop()) q->trampoline_next_.resume();
      t.draining = false;
    }
    --t.depth;
    p.starting_inline_ = false;
    return p.finished_inline_;
  }

  /// How deep inline starts may nest on one thread before the trampoline takes over.
  static constexpr int kMaxInlineDepth = 32;

 private:
  /// Per-thread state of inline starts: their depth and the FIFO of deferred resumptions
  /// (linked through the promises, so it allocates nothing).
  struct Trampoline {
    int depth = 0;
    bool draining = false;
    TaskPromiseBase* head = nullptr;
    TaskPromiseBase* tail = nullptr;
    void push(TaskPromiseBase& p, std::coroutine_handle<> next) noexcept {
      p.trampoline_next_ = next;
      p.trampoline_link_ = nullptr;
      p.in_trampoline_ = true;
      if (tail != nullptr)
        tail->trampoline_link_ = &p;
      else
        head = &p;
      tail = &p;
    }
    TaskPromiseBase* pop() noexcept {
      TaskPromiseBase* p = head;
      if (p != nullptr) {
        head = p->trampoline_link_;
        if (head == nullptr) tail = nullptr;
        p->in_trampoline_ = false;
      }
      return p;
    }
    // A queued task destroyed before its turn (its owner went away meanwhile) leaves.
    void remove(TaskPromiseBase& p) noexcept {
      TaskPromiseBase* prev = nullptr;
      for (TaskPromiseBase* q = head; q != nullptr; prev = q, q = q->trampoline_link_) {
        if (q != &p) continue;
        (prev != nullptr ? prev->trampoline_link_ : head) = q->trampoline_link_;
        if (tail == q) tail = prev;
        return;
      }
    }
  };
  static Trampoline& trampoline() noexcept {
    static thread_local Trampoline t;
    return t;
  }

  std::coroutine_handle<> continuation_ = std::noop_coroutine();
  CancelScope* scope_ = nullptr;
  SpawnSite site_ = running_spawn_site;         // inherited from the creating task
  std::coroutine_handle<> trampoline_next_;     // what the trampoline resumes for this entry
  TaskPromiseBase* trampoline_link_ = nullptr;  // next entry in the trampoline's FIFO
  bool starting_inline_ = false;
  bool finished_inline_ = false;
  bool in_trampoline_ = false;

 protected:
  TaskPromiseBase() noexcept = default;
  ~TaskPromiseBase() {
    if (in_trampoline_) trampoline().remove(*this);
  }
  TaskPromiseBase(const TaskPromiseBase&) = delete;
  TaskPromiseBase& operator=(const TaskPromiseBase&) = delete;
};

template <class T>
class TaskPromise final : public TaskPromiseBase {
 public:
  Task<T> get_return_object() noexcept;
  template <class U>
  requires std::is_convertible_v<U&&, T>
  void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    result_.template emplace<1>(std::forward<U>(v));
  }
  void unhandled_exception() noexcept { result_.template emplace<2>(std::current_exception()); }

  T take_result() {
    if (result_.index() == 2) std::rethrow_exception(std::get<2>(result_));
    assert(result_.index() == 1 && "Task result read before the task finished");
    return std::move(std::get<1>(result_));
  }

 private:
  std::variant<std::monostate, T, std::exception_ptr> result_;
};

template <>
class TaskPromise<void> final : public TaskPromiseBase {
 public:
  Task<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void unhandled_exception() noexcept { exception_ = std::current_exception(); }
  void take_result() {
    if (exception_) std::rethrow_exception(exception_);
  }

 private:
  std::exception_ptr exception_;
};

}  // namespace detail

/// A lazily started coroutine returning T. Move-only; owns its frame.
template <class T>
class [[nodiscard]] Task {
 public:
  /// The coroutine promise (implementation detail of the coroutine machinery).
  using promise_type = detail::TaskPromise<T>;
  /// The coroutine handle type.
  using handle_type = std::coroutine_handle<promise_type>;
  /// What `co_await task` yields.
  using value_type = T;

  Task() noexcept = default;
  /// Adopt the coroutine `h` (made by the promise; not for users).
  explicit Task(handle_type h) noexcept : h_(h) {}
  /// Take over another Task's coroutine; it becomes empty.
  Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  /// Destroy this Task's coroutine (if not started or finished), then take over the other's.
  Task& operator=(Task&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { reset(); }

  /// True if this object holds a coroutine.
  bool valid() const noexcept { return static_cast<bool>(h_); }
  /// True once the coroutine has run to completion.
  bool done() const noexcept { return h_ && h_.done(); }
  /// The coroutine handle (for schedulers and combinators).
  handle_type handle() const noexcept { return h_; }

  /// Awaiting runs the task at once and resumes the awaiter when it ends (see the file
  /// comment). The child runs in the awaiter's cancel scope.
  struct Awaiter {
    /// The child coroutine.
    handle_type h;
    /// Coroutine protocol: ready if there is nothing to run.
    bool await_ready() const noexcept { return !h || h.done(); }
    template <class P>
    /// Coroutine protocol: runs the child in the parent's scope; false (go on) if it
    /// finished without suspending.
    bool await_suspend(std::coroutine_handle<P> parent) {
      h.promise().set_continuation(parent);
      if (h.promise().scope() == nullptr) h.promise().set_scope(detail::scope_of(parent.promise()));
      return !detail::TaskPromiseBase::start_inline(h);
    }
    /// Coroutine protocol: the child's value, or its exception rethrown.
    T await_resume() { return h.promise().take_result(); }
  };
  /// Run the task and wait for it: `co_await task`.
  Awaiter operator co_await() const& noexcept { return Awaiter{h_}; }
  /// Same, for a temporary: `co_await make_task()`.
  Awaiter operator co_await() const&& noexcept { return Awaiter{h_}; }

 private:
  void reset() noexcept {
    if (h_) h_.destroy();
    h_ = {};
  }
  handle_type h_;
};

namespace detail {
template <class T>
Task<T> TaskPromise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<TaskPromise<T>>::from_promise(*this));
}
inline Task<void> TaskPromise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<TaskPromise<void>>::from_promise(*this));
}
}  // namespace detail

/// Awaitable that yields the current task's CancelScope (nullptr outside a task tree).
struct CurrentScope {
  /// Filled in when the awaiting coroutine suspends.
  CancelScope* scope = nullptr;
  /// Coroutine protocol: always asks the promise (never ready).
  bool await_ready() const noexcept { return false; }
  template <class P>
  /// Coroutine protocol: reads the scope from the awaiting promise and continues at once.
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    scope = detail::scope_of(h.promise());
    return false;
  }
  /// Coroutine protocol: the scope, or nullptr outside a task tree.
  CancelScope* await_resume() const noexcept { return scope; }
};
/// `CancelScope* s = co_await current_scope();`
inline CurrentScope current_scope() noexcept { return {}; }

}  // namespace galay
