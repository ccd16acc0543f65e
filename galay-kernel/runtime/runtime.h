#pragma once
/// @file runtime.h
/// Runtime: N schedulers, one per worker thread (by default one per core), so a service
/// uses every core of the machine.
///
///   auto rt = galay::Runtime::builder().threads(4).pin_threads().build();  // Expected<...>
///   int v = (*rt)->block_on(main_task());   // from main: runs on a worker, waits
///   (*rt)->shutdown(std::chrono::seconds(5));
///
/// - Each worker creates its Scheduler on its own thread (io_uring's SINGLE_ISSUER ring
///   must be created by the thread that submits) and runs it. The backend is chosen once:
///   the first worker probes (Scheduler::Options::backend, GALAY_KERNEL_BACKEND), the others
///   are forced to the same kind.
/// - spawn() goes round-robin, spawn_on(i) to a given worker, spawn_local() to the calling
///   worker. A spawn from another thread costs a wakeup syscall only if the target loop
///   sleeps (see Scheduler::inject).
/// - spawn_blocking(fn) runs fn on a small pool of blocking threads and resumes the awaiting
///   task on its own scheduler.
/// - shutdown(deadline): stopping() turns true and stop_event() is set (accept loops stop
///   accepting), running tasks may finish until the deadline, then every remaining root task
///   is cancelled through its CancelScope (pending I/O is cancelled in the kernel), and
///   after a grace period the loops stop, every leftover frame is destroyed on its own
///   thread, and the threads are joined.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "galay-kernel/common/error.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/io/backend_kind.h"
#include "galay-kernel/coro/cancel.h"
#include "galay-kernel/runtime/blocking_job.h"
#include "galay-kernel/runtime/scheduler.h"
#include "galay-kernel/sync/event.h"
#include "galay-kernel/coro/task.h"
#include "galay-kernel/runtime/timer_queue.h"

namespace galay {

class Runtime;

namespace detail {

/// Resume-anywhere coroutine for Runtime internals: runs `fn` once when scheduled, then
/// frees itself. Not a root task: it has no CancelScope and no JoinHandle.
struct PostedCall {
  struct promise_type {
    PostedCall get_return_object() noexcept {
      return PostedCall{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    std::suspend_never final_suspend() const noexcept { return {}; }
    void return_void() noexcept {}
    [[noreturn]] void unhandled_exception() noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> handle;
};

template <class Fn>
PostedCall posted_call(Fn fn) {
  fn();
  co_return;
}

/// Bumps a counter that only its owner thread writes: a load and a release store, no
/// read-modify-write (readers on other threads only need a monotonic snapshot).
inline void bump_owned(std::atomic<std::int64_t>& c) noexcept {
  c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

/// Wraps every root spawned through a Runtime: counts it as ended when it finishes (so
/// shutdown() can wait for the work to drain), and cancels it at once if it starts after
/// the shutdown deadline (so spawning cannot outrun the cancellation sweeps). It runs, and
/// ends, on the worker that owns `ended`.
template <class T>
Task<T> tracked(Task<T> task, std::atomic<std::int64_t>* ended, const std::atomic<bool>* cancelling) {
  struct Leave {
    std::atomic<std::int64_t>* ended;
    ~Leave() { bump_owned(*ended); }
  } leave{ended};
  if (cancelling->load(std::memory_order_acquire)) {
    if (CancelScope* scope = co_await current_scope()) scope->cancel();
  }
  if constexpr (std::is_void_v<T>) {
    co_await task;
  } else {
    co_return co_await task;
  }
}

/// Where a task run by Runtime::block_on leaves its outcome for the blocked thread. Unlike
/// std::promise, the task hands over its only reference to an exception, so the exception
/// object is freed by the thread that caught it (TSan cannot see libstdc++'s internal
/// reference counting, and a std::future would leave the last release on the worker).
template <class T>
class Rendezvous {
 public:
  using Stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

  /// Record the outcome (first call wins) and wake the waiter.
  void finish(std::optional<Stored> value, std::exception_ptr error) noexcept {
    {
      std::lock_guard lock(mutex_);
      if (done_) return;
      done_ = true;
      value_ = std::move(value);
      error_ = std::move(error);
    }
    cv_.notify_all();
  }
  /// Wait up to `limit`; true once finished.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> limit) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, limit, [&] { return done_; });
  }
  void wait() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return done_; });
  }
  /// After wait(): the value, or the task's exception, or task_abandoned.
  T take() {
    std::unique_lock lock(mutex_);
    std::exception_ptr error = std::move(error_);
    std::optional<Stored> value = std::move(value_);
    lock.unlock();
    if (error) std::rethrow_exception(std::move(error));
    if (!value) throw std::system_error(make_error_code(Error::task_abandoned));
    if constexpr (!std::is_void_v<T>) return std::move(*value);
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::optional<Stored> value_;
  std::exception_ptr error_;
};

/// Owning reference to a Rendezvous that reports task_abandoned if dropped unfinished. It
/// is a coroutine parameter, so it is destroyed even with a frame that never started.
template <class T>
class RendezvousRef {
 public:
  explicit RendezvousRef(std::shared_ptr<Rendezvous<T>> r) noexcept : r_(std::move(r)) {}
  RendezvousRef(RendezvousRef&&) noexcept = default;
  RendezvousRef& operator=(RendezvousRef&&) = delete;
  ~RendezvousRef() {
    if (r_) r_->finish(std::nullopt, nullptr);  // no-op once finished
  }
  Rendezvous<T>* operator->() const noexcept { return r_.get(); }

 private:
  std::shared_ptr<Rendezvous<T>> r_;
};

/// Runs `task` and hands its outcome to `slot` (Runtime::block_on).
template <class T>
Task<void> fulfil(Task<T> task, RendezvousRef<T> slot) {
  std::exception_ptr error;
  try {
    if constexpr (std::is_void_v<T>) {
      co_await task;
      slot->finish(std::monostate{}, nullptr);
    } else {
      auto value = co_await task;
      slot->finish(std::move(value), nullptr);
    }
  } catch (...) {
    error = std::current_exception();
  }
  if (error) {
    // The task's frame holds a reference to the exception too: free the frame here, so
    // the thread that receives the exception holds the only reference.
    task = Task<T>();
    slot->finish(std::nullopt, std::move(error));
  }
}

}  // namespace detail

/// `co_await rt.spawn_blocking(fn)`: fn() runs on a blocking thread; the awaiting task
/// resumes on its own scheduler with fn's value (or fn's exception rethrown). If the task is
/// cancelled before fn has started, fn never runs and std::system_error(operation_canceled)
/// is thrown; once fn runs, cancellation waits for it (a thread cannot be interrupted).
/// With no scheduler on the calling thread, fn runs inline.
template <class Fn>
class [[nodiscard]] BlockingAwaitable final : public Cancellable, private detail::BlockingJob {
 public:
  /// What `fn()` returns (and `co_await` yields).
  using Result = std::invoke_result_t<Fn&>;

  /// Run `fn` on `pool` when awaited.
  BlockingAwaitable(BlockingPool& pool, Fn fn) : pool_(pool), fn_(std::move(fn)) { run = &BlockingAwaitable::invoke; }
  BlockingAwaitable(const BlockingAwaitable&) = delete;
  BlockingAwaitable& operator=(const BlockingAwaitable&) = delete;
  ~BlockingAwaitable() {
    if (submitted_) detail::forget_blocking(pool_, *this);
    if (scope_ != nullptr) scope_->clear_pending(this);
  }

  /// Coroutine protocol: always suspends (unless await_suspend runs fn inline).
  bool await_ready() const noexcept { return false; }
  template <class P>
  /// Coroutine protocol: hands fn to the blocking threads; false if it ran inline or was refused.
  bool await_suspend(std::coroutine_handle<P> h) {
    CancelScope* scope = detail::scope_of(h.promise());
    if (scope != nullptr && scope->cancelled()) {
      cancelled_ = scope->reason();
      return false;
    }
    sched = Scheduler::current();
    if (sched == nullptr) {
      invoke(this);
      return false;
    }
    handle = h;
    if (!detail::submit_blocking(pool_, *this)) {
      cancelled_ = std::errc::operation_canceled;  // the runtime is shutting down
      return false;
    }
    submitted_ = true;
    if (scope != nullptr) {
      scope_ = scope;
      scope->set_pending(this);
    }
    return true;
  }
  /// Coroutine protocol: fn's value, its exception rethrown, or std::system_error for a cancellation.
  Result await_resume() {
    if (scope_ != nullptr) {
      scope_->clear_pending(this);
      scope_ = nullptr;
    }
    if (cancelled_ != std::errc{}) throw std::system_error(errno_code(static_cast<int>(cancelled_)));
    if (error_) std::rethrow_exception(error_);
    if constexpr (!std::is_void_v<Result>) return std::move(*value_);
  }

  /// Cancellable: only a job that has not started can be taken back.
  void cancel(std::errc reason) noexcept override {
    if (!detail::unqueue_blocking(pool_, *this)) return;
    cancelled_ = reason;
    if (scope_ != nullptr) {
      scope_->clear_pending(this);
      scope_ = nullptr;
    }
    sched->schedule(handle);
  }

 private:
  static void invoke(detail::BlockingJob* job) noexcept {
    auto* self = static_cast<BlockingAwaitable*>(job);
    try {
      if constexpr (std::is_void_v<Result>) {
        self->fn_();
        self->value_.emplace();
      } else {
        self->value_.emplace(self->fn_());
      }
    } catch (...) {
      self->error_ = std::current_exception();
    }
  }

  using Stored = std::conditional_t<std::is_void_v<Result>, std::monostate, Result>;
  BlockingPool& pool_;
  Fn fn_;
  std::optional<Stored> value_;
  std::exception_ptr error_;
  CancelScope* scope_ = nullptr;
  std::errc cancelled_{};
  bool submitted_ = false;
};

/// What Runtime::shutdown() did.
struct ShutdownReport {
  /// Root tasks still live at the deadline; each was cancelled through its CancelScope.
  std::size_t cancelled = 0;
  /// Roots still live when the cancel grace ran out (they ignored cancellation); their
  /// frames were destroyed at their suspension points. 0 for a clean shutdown.
  std::size_t unfinished = 0;
  /// How long shutdown() took.
  std::chrono::nanoseconds elapsed{};
};

/// A multi-core runtime: N worker threads, each running its own Scheduler, with spawning
/// onto a given, the current or the next worker, block_on for main(), spawn_blocking, and a
/// graceful shutdown. Built with Runtime::builder(); see docs/runtime.md.
class Runtime {
 public:
  class Builder;
  /// Start configuring a runtime.
  static Builder builder();

  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;
  /// shutdown() with an immediate deadline, if it has not run. Must not run on a worker.
  ~Runtime();

  /// Number of workers (= schedulers).
  std::size_t size() const noexcept { return n_; }
  /// The schedulers, indexed like the workers. Valid until shutdown() returns.
  std::span<Scheduler* const> schedulers() const noexcept { return {scheds_.data(), scheds_.size()}; }
  /// Worker `i`'s scheduler.
  Scheduler& scheduler(std::size_t i) const noexcept { return *scheds_[i]; }
  /// The backend every worker runs.
  BackendKind backend_kind() const noexcept { return kind_; }
  /// The I/O metrics of every worker's scheduler, summed (runtime/metrics.h); any thread,
  /// until shutdown() returns. Per worker: scheduler(i).metrics().
  SchedulerMetrics metrics() const noexcept {
    SchedulerMetrics sum;
    for (Scheduler* s : scheds_) sum += s->metrics();
    return sum;
  }

  /// The runtime whose worker is the calling thread, or nullptr.
  static Runtime* current() noexcept;
  /// The calling thread's worker index in this runtime, or nullopt if it is not one of its
  /// workers.
  std::optional<std::size_t> worker_index() const noexcept;

  /// Spawn onto the next worker in round-robin order (per calling thread). Any thread.
  /// After shutdown() has closed the runtime, the task is destroyed unstarted and the handle
  /// reports Error::task_abandoned.
  /// `site` is the task's spawn site (Scheduler::spawn).
  template <class T>
  JoinHandle<T> spawn(Task<T> task, const SpawnSite& site = SpawnSite::current()) {
    return spawn_on(next_index(), std::move(task), site);
  }
  /// Spawn onto worker `i % size()`. Any thread.
  template <class T>
  JoinHandle<T> spawn_on(std::size_t i, Task<T> task, const SpawnSite& site = SpawnSite::current());
  /// Spawn onto the calling worker (spawn() if the caller is not one of its workers).
  template <class T>
  JoinHandle<T> spawn_local(Task<T> task, const SpawnSite& site = SpawnSite::current()) {
    if (auto i = worker_index()) return spawn_on(*i, std::move(task), site);
    return spawn(std::move(task), site);
  }

  /// Run `task` on a worker and block the calling thread until it finishes; return its
  /// value or rethrow its exception (std::system_error(Error::task_abandoned) if the runtime
  /// shut down first). For main(); throws std::logic_error on a worker thread (it would
  /// deadlock).
  template <class T>
  T block_on(Task<T> task, const SpawnSite& site = SpawnSite::current());

  /// Awaitable running `fn` on the blocking threads (see BlockingAwaitable).
  template <class Fn>
  BlockingAwaitable<std::decay_t<Fn>> spawn_blocking(Fn&& fn) {
    return BlockingAwaitable<std::decay_t<Fn>>(*blocking_, std::forward<Fn>(fn));
  }

  /// True once shutdown() has begun: accept loops should stop accepting.
  bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }
  /// Set when shutdown() begins; `co_await rt.stop_event().wait()` in a watcher task is the
  /// way to stop a loop blocked in accept() (cancel the loop's JoinHandle from there).
  sync::Event& stop_event() noexcept { return stop_event_; }

  /// Graceful shutdown (call from a thread that is not a worker; idempotent):
  /// 1. stopping() becomes true and stop_event() is set;
  /// 2. until `deadline`, wait for the tasks spawned through this runtime to finish;
  /// 3. then cancel the CancelScope of every root task on every scheduler (repeatedly, so
  ///    tasks spawned meanwhile are cancelled too) until none is left or the cancel grace
  ///    (Builder::cancel_grace) runs out;
  /// 4. refuse new spawns, stop the loops, finish running blocking jobs, destroy what is
  ///    left on each worker's own thread, and join every thread.
  ShutdownReport shutdown(Clock::time_point deadline);
  /// shutdown(now + drain).
  ShutdownReport shutdown(std::chrono::nanoseconds drain = std::chrono::nanoseconds::zero()) {
    return shutdown(deadline_after(Clock::now(), drain));
  }

 private:
  struct Config {
    std::size_t threads = 0;
    Scheduler::Options options;
    bool pin = false;
    std::size_t blocking_threads = 4;
    std::chrono::nanoseconds cancel_grace = std::chrono::seconds(5);
  };
  // Live roots of a worker = local_spawned + remote_spawned - ended. The worker alone
  // writes local_spawned and ended (no atomic read-modify-write on its hot path); other
  // threads add to remote_spawned, on its own cache line.
  struct alignas(64) Worker {
    std::thread thread;
    Scheduler* sched = nullptr;                               // owned by the worker thread
    int cpu = -1;                                             // pinned CPU, or -1
    std::atomic<std::int64_t> local_spawned{0};               // spawned by this worker onto itself
    std::atomic<std::int64_t> ended{0};                       // runtime roots that finished here
    alignas(64) std::atomic<std::int64_t> remote_spawned{0};  // spawned here by other threads
  };

  explicit Runtime(Config config);
  static std::size_t next_index() noexcept;
  static bool on_worker_of(const Runtime* rt) noexcept;
  Expected<void> start();
  void worker_main(std::size_t i, Scheduler::Options options, std::promise<std::error_code> ready);
  std::int64_t live_total() const noexcept;
  std::size_t sweep();  // cancel every root on every scheduler; returns the roots seen
  void teardown();
  template <class T>
  static JoinHandle<T> abandoned(Task<T> task);

  Config config_;
  std::size_t n_ = 0;
  BackendKind kind_ = BackendKind::automatic;
  std::unique_ptr<Worker[]> workers_;
  std::vector<Scheduler*> scheds_;
  std::unique_ptr<BlockingPool> blocking_;  // spawn_blocking's threads (runtime/detail/blocking_pool.h)
  sync::Event stop_event_;

  alignas(64) std::atomic<std::int64_t> external_spawns_{0};  // spawns in progress on non-worker threads
  std::atomic<bool> closed_{false};                           // spawns are refused
  std::atomic<bool> stopping_{false};                         // shutdown has begun
  std::atomic<bool> cancelling_{false};                       // the deadline has passed
  std::atomic<bool> exit_{false};                             // workers leave their loops

  // Teardown hand-shake between shutdown() and the workers.
  std::mutex life_mutex_;
  std::condition_variable life_cv_;
  std::size_t left_loop_ = 0;                                 // workers out of run()
  std::size_t shutdown_turn_ = static_cast<std::size_t>(-1);  // worker allowed to destroy its frames
  std::size_t shutdown_done_ = 0;                             // workers that did
  bool destroy_ = false;                                      // workers may destroy their schedulers

  std::mutex shutdown_mutex_;
  bool shut_down_ = false;
  ShutdownReport report_;
};

/// Configures and builds a Runtime.
class Runtime::Builder {
 public:
  /// Worker threads; 0 (the default) means std::thread::hardware_concurrency().
  Builder& threads(std::size_t n) noexcept {
    config_.threads = n;
    return *this;
  }
  /// Backend for every worker (default automatic: probed once by the first worker).
  Builder& backend(BackendKind kind) noexcept {
    config_.options.backend = kind;
    return *this;
  }
  /// Pin worker i to the i-th CPU of the process's affinity mask (so `taskset` limits apply).
  Builder& pin_threads(bool on = true) noexcept {
    config_.pin = on;
    return *this;
  }
  /// io_uring ring sizes for every worker (Scheduler::Options).
  Builder& io_uring_entries(unsigned sq_entries, unsigned cq_entries = 0) noexcept {
    config_.options.io_uring_sq_entries = sq_entries;
    config_.options.io_uring_cq_entries = cq_entries;
    return *this;
  }
  /// All scheduler options at once (the backend included).
  Builder& scheduler_options(const Scheduler::Options& options) noexcept {
    config_.options = options;
    return *this;
  }
  /// Most threads spawn_blocking may use (started on demand; default 4).
  Builder& blocking_threads(std::size_t n) noexcept {
    config_.blocking_threads = n;
    return *this;
  }
  /// How long shutdown() waits, after cancelling, for tasks to finish (default 5 s).
  Builder& cancel_grace(std::chrono::nanoseconds d) noexcept {
    config_.cancel_grace = d;
    return *this;
  }
  /// Start the workers. Fails if a worker's scheduler can't be created (e.g. an explicitly
  /// requested backend that can't run here: Error::backend_unavailable).
  Expected<std::unique_ptr<Runtime>> build() const;

 private:
  Config config_;
};

inline Runtime::Builder Runtime::builder() { return Builder{}; }

// ---- template definitions ----

template <class T>
JoinHandle<T> Runtime::abandoned(Task<T> task) {
  // A handle that looks like a task its scheduler destroyed unstarted.
  auto* state = new detail::SpawnState<T>();
  state->finish();   // finished with no value: awaiting it throws task_abandoned
  state->release();  // the reference a root frame would have held
  (void)task;        // destroyed unstarted
  return JoinHandle<T>(state);
}

template <class T>
JoinHandle<T> Runtime::spawn_on(std::size_t i, Task<T> task, const SpawnSite& site) {
  // Workers spawn only while their loop runs, and no scheduler is destroyed before every
  // loop has stopped. Other threads may race with shutdown(): they announce themselves so
  // teardown waits for them (seq_cst pairs with closed_ in teardown(): either they see
  // closed_ or teardown sees them).
  const bool external = !on_worker_of(this);
  if (external) external_spawns_.fetch_add(1, std::memory_order_seq_cst);
  if (closed_.load(std::memory_order_seq_cst)) {
    if (external) external_spawns_.fetch_sub(1, std::memory_order_release);
    return abandoned(std::move(task));
  }
  const std::size_t target = i % n_;
  Worker& w = workers_[target];
  if (!external && worker_index() == target)
    detail::bump_owned(w.local_spawned);
  else
    w.remote_spawned.fetch_add(1, std::memory_order_release);
  if (task.valid()) task.handle().promise().set_spawn_site(site);
  JoinHandle<T> handle = w.sched->spawn(detail::tracked(std::move(task), &w.ended, &cancelling_), site);
  if (external) external_spawns_.fetch_sub(1, std::memory_order_release);
  return handle;
}

template <class T>
T Runtime::block_on(Task<T> task, const SpawnSite& site) {
  if (on_worker_of(this)) throw std::logic_error("Runtime::block_on on one of its own workers would deadlock");
  auto slot = std::make_shared<detail::Rendezvous<T>>();
  spawn(detail::fulfil(std::move(task), detail::RendezvousRef<T>(slot)), site).detach();
  slot->wait();
  return slot->take();
}

}  // namespace galay
