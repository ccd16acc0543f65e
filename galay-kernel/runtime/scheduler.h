#pragma once
/// @file scheduler.h
/// Scheduler: one event loop on one thread. It owns a ready queue, a timer heap, an
/// injection queue for other threads (moodycamel::ConcurrentQueue plus a real wakeup), and
/// one I/O backend. Tasks are spawned onto it as roots; when the scheduler is destroyed,
/// roots still suspended have their kernel operations cancelled and drained, then their
/// frames are destroyed exactly once.

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <variant>
#include <vector>

#include "galay-kernel/common/error.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/io/backend_kind.h"
#include "galay-kernel/coro/task.h"
#include "galay-kernel/runtime/metrics.h"
#include "galay-kernel/runtime/timer_queue.h"

namespace galay {

class Scheduler;
class Backend;
class IoOp;

namespace detail {

class AcceptGate;
class LiveMetrics;

/// Shared between a spawned root and its JoinHandle. Thread-safe hand-off of the result.
class SpawnStateBase {
 public:
  virtual ~SpawnStateBase() = default;
  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
  bool finished() const noexcept { return phase_.load(std::memory_order_acquire) == kFinished; }
  /// Register `h` (on `sched`) to be resumed at finish. False if already finished.
  bool set_joiner(std::coroutine_handle<> h, Scheduler* sched) noexcept;
  /// Publish the result and resume the joiner, if any.
  void finish() noexcept;
  /// The joiner's frame is being destroyed while it waits: forget it, so finish() does not
  /// resume freed memory. False if finish() already took it (its resume is in flight).
  bool unset_joiner() noexcept;

  Scheduler* owner = nullptr;         // scheduler the task runs on
  CancelScope* live_scope = nullptr;  // the root's scope while its frame lives (owner thread only)

 private:
  static constexpr std::uint8_t kRunning = 0, kJoined = 1, kFinished = 2;
  std::atomic<std::uint32_t> refs_{2};  // the root frame and the JoinHandle
  std::atomic<std::uint8_t> phase_{kRunning};
  std::coroutine_handle<> joiner_;
  Scheduler* joiner_sched_ = nullptr;
};

template <class T>
class SpawnState final : public SpawnStateBase {
 public:
  // monostate: not finished (or abandoned); T: value; exception_ptr: thrown.
  using Stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;
  std::variant<std::monostate, Stored, std::exception_ptr> result;
  bool has_value = false;
};

/// The detached coroutine that runs a spawned Task and is owned by the scheduler.
class RootTask {
 public:
  class promise_type {
   public:
    RootTask get_return_object() noexcept { return RootTask{std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    std::suspend_never final_suspend() const noexcept { return {}; }
    void return_void() noexcept {}
    [[noreturn]] void unhandled_exception() noexcept { std::terminate(); }
    ~promise_type();

    CancelScope* scope() noexcept { return &scope_; }

    // Intrusive membership in the scheduler's list of live roots.
    promise_type* prev = nullptr;
    promise_type* next = nullptr;
    Scheduler* sched = nullptr;
    SpawnStateBase* state = nullptr;

   private:
    CancelScope scope_;
  };
  std::coroutine_handle<promise_type> handle;
};

template <class T>
RootTask run_root(Task<T> task, SpawnState<T>* state) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await task;
      state->result.template emplace<1>();
    } else {
      state->result.template emplace<1>(co_await task);
    }
    state->has_value = true;
  } catch (...) {
    state->result.template emplace<2>(std::current_exception());
    state->has_value = true;
  }
}

/// The root of a detached spawn: nobody can join it, so there is no state to share and
/// its value or exception is dropped (as with a JoinHandle that was detached).
template <class T>
RootTask run_detached(Task<T> task) {
  try {
    (void)co_await task;
  } catch (...) {  // NOLINT(bugprone-empty-catch): nobody can observe a detached task's exception
  }
}

}  // namespace detail

/// Handle to a spawned task: await it for the result, cancel it, or drop it to detach.
template <class T>
class [[nodiscard]] JoinHandle {
 public:
  JoinHandle() noexcept = default;
  /// Adopt the shared state made by Scheduler::spawn (not for users).
  explicit JoinHandle(detail::SpawnState<T>* s) noexcept : state_(s) {}
  /// Take over another handle; it becomes empty.
  JoinHandle(JoinHandle&& o) noexcept : state_(std::exchange(o.state_, nullptr)) {}
  /// Drop this handle (detaching its task), then take over the other's.
  JoinHandle& operator=(JoinHandle&& o) noexcept {
    if (this != &o) {
      reset();
      state_ = std::exchange(o.state_, nullptr);
    }
    return *this;
  }
  ~JoinHandle() { reset(); }

  /// True once the task has finished (or was destroyed unfinished). Thread-safe.
  bool done() const noexcept { return state_ && state_->finished(); }

  /// Cancel the task's current and future operations (they fail with operation_canceled).
  /// Call on the task's scheduler thread.
  void cancel() noexcept {
    if (state_ && state_->live_scope) state_->live_scope->cancel();
  }

  /// Let the task run on without a handle.
  void detach() noexcept { reset(); }

  /// `co_await handle` yields the task's value, rethrows its exception, or throws
  /// std::system_error(Error::task_abandoned) if its scheduler destroyed it unfinished.
  /// Cancelling the awaiting task cancels the joined task (same scheduler) and still waits.
  class Awaiter final : public Cancellable {
   public:
    /// Await the task behind `s`.
    explicit Awaiter(detail::SpawnState<T>* s) noexcept : state_(s) {}
    Awaiter(const Awaiter&) = delete;
    Awaiter& operator=(const Awaiter&) = delete;
    /// Destroyed while suspended (the awaiting frame is torn down, e.g. by its scheduler's
    /// shutdown): unregister, so the joined task's end does not resume a dead frame.
    ~Awaiter() {
      if (waiting_) state_->unset_joiner();
    }
    /// Coroutine protocol: ready once the task has finished.
    bool await_ready() const noexcept { return state_->finished(); }
    template <class P>
    /// Coroutine protocol: registers as the joiner; false if the task finished meanwhile.
    bool await_suspend(std::coroutine_handle<P> h) noexcept {
      scope_ = detail::scope_of(h.promise());
      if (!suspend(h)) return false;
      waiting_ = true;
      if (scope_) {
        if (scope_->cancelled()) cancel(scope_->reason());
        scope_->set_pending(this);
      }
      return true;
    }
    /// Coroutine protocol: the value, the task's exception rethrown, or task_abandoned.
    T await_resume() {
      waiting_ = false;
      if (scope_) scope_->clear_pending(this);
      if (state_->result.index() == 2) std::rethrow_exception(std::get<2>(state_->result));
      if (!state_->has_value) throw std::system_error(make_error_code(Error::task_abandoned));
      if constexpr (!std::is_void_v<T>) return std::move(std::get<1>(state_->result));
    }
    /// Cancellation of the awaiting task: cancels the joined task if it runs on this scheduler.
    void cancel(std::errc reason) noexcept override {
      if (state_->live_scope && state_->owner == current_scheduler()) state_->live_scope->cancel(reason);
    }

   private:
    bool suspend(std::coroutine_handle<> h) noexcept;
    static Scheduler* current_scheduler() noexcept;
    detail::SpawnState<T>* state_;
    CancelScope* scope_ = nullptr;
    bool waiting_ = false;  // registered as the joiner and not resumed yet
  };
  /// Wait for the task: `co_await handle`.
  Awaiter operator co_await() const noexcept { return Awaiter{state_}; }

 private:
  void reset() noexcept {
    if (state_) state_->release();
    state_ = nullptr;
  }
  detail::SpawnState<T>* state_ = nullptr;
};

/// What the stall detector (Scheduler::Options::stall_threshold) reports: how long one
/// resumption ran without suspending, and where the root task that ran was spawned.
struct StallReport {
  std::chrono::nanoseconds duration{0};  ///< from the resumption to the next suspension
  /// The spawn site of the task that ran (Scheduler::spawn's caller); line() == 0 when it
  /// was not a task (a combinator's branch, a runtime-internal coroutine) or unknown.
  SpawnSite spawned_at{};
};

/// One event loop on one thread, with a pluggable I/O backend.
class Scheduler {
 public:
  /// How to build a Scheduler.
  struct Options {
    /// `automatic` tries io_uring, then epoll (kqueue on Apple/BSD). GALAY_KERNEL_BACKEND
    /// (epoll|io_uring|kqueue) overrides `automatic`, never an explicit choice.
    BackendKind backend = BackendKind::automatic;
    /// io_uring: submission queue entries (a full SQ is submitted and retried, never an
    /// error) and completion queue entries (0: 8x the SQ; overflow is flushed, not lost).
    unsigned io_uring_sq_entries = 1024;
    /// io_uring completion queue entries (0: 8x the SQ).
    unsigned io_uring_cq_entries = 0;
    /// io_uring: a kernel thread polls the submission queue (IORING_SETUP_SQPOLL), so
    /// submitting costs no system call while it is awake. It spins for
    /// `io_uring_sqpoll_idle_ms` after the last submission, then sleeps until the next one
    /// wakes it (one system call). It spends a CPU while it spins: worth it only with a
    /// core to spare (docs/guide.md, "SQPOLL"). A kernel or privilege that refuses it gives
    /// the ordinary ring; describe_backend() says "SQPOLL" or why not.
    bool io_uring_sqpoll = false;
    /// How long the SQPOLL thread spins without work before it sleeps.
    unsigned io_uring_sqpoll_idle_ms = 1000;
    /// The CPU the SQPOLL thread is pinned to (IORING_SETUP_SQ_AFF); -1: not pinned.
    int io_uring_sqpoll_cpu = -1;
    /// Stall detector: a coroutine that runs longer than this without suspending is
    /// reported to `on_stall` and counted in metrics().stalls. Zero (the default) turns it
    /// off; on, it reads the clock once per resumption (docs/guide.md, "Live metrics").
    std::chrono::nanoseconds stall_threshold{0};
    /// Called on the loop thread after a stall; empty: one line on stderr.
    std::function<void(const StallReport&)> on_stall{};
  };

  /// Build a scheduler. An explicitly requested backend that can't run is an error
  /// (Error::backend_unavailable); `automatic` falls back and says why in backend_reason().
  static Expected<std::unique_ptr<Scheduler>> create(Options options);
  /// create() with default Options.
  static Expected<std::unique_ptr<Scheduler>> create() { return create(Options{}); }

  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;
  /// shutdown(), then releases the backend. Must not run while run() is active.
  ~Scheduler();

  /// Cancel every pending operation, wait until the kernel has let go of all of them, then
  /// destroy every unfinished task (each frame exactly once). Objects the tasks use that
  /// outlive them (a BufferPool, say) can be destroyed after this and before the
  /// scheduler. The scheduler stays usable. Call on the loop's thread, not during run().
  void shutdown() noexcept;

  /// The backend this scheduler runs on.
  BackendKind backend_kind() const noexcept { return kind_; }
  /// Why this backend was chosen (and why others were not).
  const std::string& backend_reason() const noexcept { return backend_reason_; }
  /// How the backend was set up, one line (flags, features: "io_uring sq=4096 ... send-zc").
  std::string describe_backend() const;
  /// Operations the backend holds now (started, not yet completed).
  std::size_t pending_io_ops() const noexcept;
  /// The backend itself (internal: io/detail/backend.h, not installed).
  Backend& backend() noexcept { return *backend_; }
  /// The options it was created with.
  const Options& options() const noexcept { return options_; }

  /// Start `task` on this scheduler. Callable from any thread. `site` (the caller's, by
  /// default) is the task's spawn site, the name the stall detector reports it by.
  template <class T>
  JoinHandle<T> spawn(Task<T> task, const SpawnSite& site = SpawnSite::current()) {
    if (task.valid()) task.handle().promise().set_spawn_site(site);
    auto* state = new detail::SpawnState<T>();
    state->owner = this;
    detail::RootTask root = detail::run_root<T>(std::move(task), state);
    root.handle.promise().state = state;
    root.handle.promise().sched = this;
    post_root(root.handle);
    return JoinHandle<T>(state);
  }

  /// Start `task` on this scheduler with no handle: `spawn(task).detach()` without the
  /// state a JoinHandle shares with the task (one allocation, 72 B, less per task; the way
  /// to start one task per connection). Its value or exception is dropped; shutdown
  /// destroys it like any root. Callable from any thread.
  template <class T>
  void spawn_detached(Task<T> task, const SpawnSite& site = SpawnSite::current()) {
    if (task.valid()) task.handle().promise().set_spawn_site(site);
    detail::RootTask root = detail::run_detached<T>(std::move(task));
    root.handle.promise().sched = this;
    post_root(root.handle);
  }

  /// Run the loop on this thread until stop() is called.
  void run() {
    run_until([] { return false; });
  }
  /// Make run() / block_on() return soon. Callable from any thread.
  void stop() noexcept;

  /// Run the loop until `task` finishes; return its value or rethrow its exception.
  template <class T>
  T block_on(Task<T> task, const SpawnSite& site = SpawnSite::current()) {
    JoinHandle<T> handle = spawn(std::move(task), site);
    run_until([&] { return handle.done(); });
    return take_blocking(handle);
  }

  /// The scheduler whose loop runs on this thread, or nullptr.
  static Scheduler* current() noexcept;

  /// Cancel the CancelScope of every live root task, so whatever each one is suspended on
  /// finishes early through its own cancellation path (used by Runtime::shutdown). Roots
  /// still in the injection queue are not reached. Call on this scheduler's thread (scopes
  /// are single-threaded). Returns how many roots were live.
  std::size_t cancel_all_tasks() noexcept;

  // ---- plumbing for awaitables and backends ----

  /// Resume `h` from this scheduler's loop. From another thread this goes through the
  /// injection queue and wakes the loop if it sleeps.
  void schedule(std::coroutine_handle<> h) noexcept;
  /// Close `fd` now through the backend (pending ops complete with operation_canceled);
  /// accepts waiting out descriptor exhaustion may retry. For fd owners' destructors.
  void close_fd(int fd) noexcept;
  /// An awaitable's op finished without suspending: false to let the task go on, or (once
  /// it has done kCoopBudget of those in a row) queue `h` to resume next turn and return
  /// true, so one task looping on ready or failing ops cannot starve the loop.
  bool coop_yield(std::coroutine_handle<> h) noexcept;
  /// How many ops a task may finish without suspending before it must yield. Measured:
  /// the echo benchmark's CPU per message is unchanged at 128 (docs/benchmark.md).
  static constexpr unsigned kCoopBudget = 128;
  /// The timer heap (for awaitables that arm deadlines).
  TimerQueue& timers() noexcept { return timers_; }
  /// True while the destructor is draining: completions must not resume anything.
  bool shutting_down() const noexcept { return shutting_down_; }

  /// Loop counters (for tests and benchmarks).
  struct Stats {
    std::uint64_t loop_turns = 0;      ///< times the loop ran its ready work
    std::uint64_t polls_blocking = 0;  ///< times it went to sleep in the backend
    std::uint64_t wakeups_sent = 0;    ///< cross-thread wakeups sent to this loop while it slept
    std::uint64_t coop_yields = 0;     ///< tasks made to yield after kCoopBudget inline completions
  };
  /// A snapshot of the counters (any thread).
  Stats stats() const noexcept;
  /// A snapshot of the I/O metrics (runtime/metrics.h), from any thread.
  SchedulerMetrics metrics() const noexcept;
  /// The live counters behind metrics() (internal: the library's ops and batches count
  /// themselves into them).
  detail::LiveMetrics& live_metrics() noexcept { return *metrics_; }

 private:
  friend class detail::RootTask::promise_type;
  friend class IoOp;
  struct Injected {
    void* address = nullptr;
    bool new_root = false;
  };

  Scheduler(std::unique_ptr<Backend> backend, std::string reason);
  void post_root(std::coroutine_handle<detail::RootTask::promise_type> root);
  void link_root(detail::RootTask::promise_type& p) noexcept;
  void unlink_root(detail::RootTask::promise_type& p) noexcept;
  void inject(Injected item) noexcept;
  template <class Pred>
  void run_until(Pred&& done);
  static Scheduler* exchange_current(Scheduler* s) noexcept;
  /// Take injected work, resume every ready coroutine, fire due timers.
  void run_ready_work();
  /// Block in the backend until I/O, a timer, or a wakeup (no block if work is ready).
  void wait_for_work();
  bool drain_injected();
  /// The stall detector found a resumption that took `took`: count it and report it.
  void report_stall(Clock::duration took);
  template <class T>
  static T take_blocking(JoinHandle<T>& handle);

  std::unique_ptr<Backend> backend_;
  BackendKind kind_;  // backend_->kind(), kept here so the header needs no Backend
  std::string backend_reason_;
  Options options_;
  TimerQueue timers_;
  std::vector<std::coroutine_handle<>> ready_;
  std::vector<std::coroutine_handle<>> running_;
  detail::RootTask::promise_type* roots_ = nullptr;
  struct InjectionQueue;
  std::unique_ptr<InjectionQueue> injected_;
  std::atomic<bool> sleeping_{false};
  std::atomic<std::size_t> injected_count_{0};  // items enqueued and not yet drained
  std::atomic<bool> stop_requested_{false};
  bool shutting_down_ = false;
  // Busy turns (ready work left) since the last poll; see wait_for_work().
  static constexpr unsigned kBusyTurnsPerPoll = 32;
  unsigned busy_turns_ = 0;
  std::unique_ptr<detail::LiveMetrics> metrics_;
  std::atomic<std::uint64_t> wakeups_sent_{0};
  unsigned budget_ = kCoopBudget;  // inline completions left to the running task
  std::unique_ptr<detail::AcceptGate> accept_gate_;
};

// ---- template definitions ----

template <class Pred>
void Scheduler::run_until(Pred&& done) {
  Scheduler* previous = exchange_current(this);
  for (;;) {
    run_ready_work();
    if (done() || stop_requested_.load(std::memory_order_relaxed)) break;
    wait_for_work();
  }
  stop_requested_.store(false, std::memory_order_relaxed);
  exchange_current(previous);
}

template <class T>
T Scheduler::take_blocking(JoinHandle<T>& handle) {
  // block_on owns the only handle; awaiting it synchronously reads the finished state.
  auto awaiter = handle.operator co_await();
  if (!awaiter.await_ready()) throw std::system_error(make_error_code(Error::task_abandoned));
  return awaiter.await_resume();
}

template <class T>
bool JoinHandle<T>::Awaiter::suspend(std::coroutine_handle<> h) noexcept {
  return state_->set_joiner(h, Scheduler::current());
}
template <class T>
Scheduler* JoinHandle<T>::Awaiter::current_scheduler() noexcept {
  return Scheduler::current();
}

/// Spawn onto the scheduler running on this thread. Throws
/// std::system_error(Error::not_bound_to_scheduler) when none runs here.
template <class T>
JoinHandle<T> spawn(Task<T> task, const SpawnSite& site = SpawnSite::current()) {
  Scheduler* s = Scheduler::current();
  if (s == nullptr) throw std::system_error(make_error_code(Error::not_bound_to_scheduler));
  return s->spawn(std::move(task), site);
}

/// Scheduler::spawn_detached onto the scheduler running on this thread. Throws
/// std::system_error(Error::not_bound_to_scheduler) when none runs here.
template <class T>
void spawn_detached(Task<T> task, const SpawnSite& site = SpawnSite::current()) {
  Scheduler* s = Scheduler::current();
  if (s == nullptr) throw std::system_error(make_error_code(Error::not_bound_to_scheduler));
  s->spawn_detached(std::move(task), site);
}

}  // namespace galay
