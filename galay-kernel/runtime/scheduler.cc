#include "galay-kernel/runtime/scheduler.h"

#include "galay-kernel/runtime/detail/accept_gate.h"
#include "galay-kernel/runtime/detail/chaos.h"
#include "galay-kernel/runtime/detail/live_metrics.h"
#include "galay-kernel/io/fault_injection.h"

#include <concurrentqueue/concurrentqueue.h>

#include <array>
#include <cassert>
#include <cstddef>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include <sys/socket.h>
#include <unistd.h>

#include "galay-kernel/io/detail/builtin_backends.h"

namespace galay {

namespace {
thread_local Scheduler* tls_current = nullptr;

// ---- backend registry ----
struct Registry {
  std::mutex mutex;
  std::array<BackendFactory, 4> factories{};
  Registry() {
    register_builtin_backends([this](BackendKind k, BackendFactory f) { factories[size_t(k)] = f; });
  }
};
Registry& registry() {
  static Registry r;
  return r;
}
}  // namespace

std::string_view to_string(BackendKind kind) noexcept {
  switch (kind) {
    case BackendKind::automatic:
      return "auto";
    case BackendKind::epoll:
      return "epoll";
    case BackendKind::io_uring:
      return "io_uring";
    case BackendKind::kqueue:
      return "kqueue";
  }
  return "?";
}

std::optional<BackendKind> parse_backend_kind(std::string_view name) noexcept {
  if (name == "auto" || name == "automatic") return BackendKind::automatic;
  if (name == "epoll") return BackendKind::epoll;
  if (name == "io_uring" || name == "iouring" || name == "uring") return BackendKind::io_uring;
  if (name == "kqueue") return BackendKind::kqueue;
  return std::nullopt;
}

void register_backend(BackendKind kind, BackendFactory factory) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  r.factories[size_t(kind)] = factory;
}

const BackendFactory* find_backend(BackendKind kind) noexcept {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  const BackendFactory& f = r.factories[size_t(kind)];
  return f.create ? &f : nullptr;
}

std::string backend_unavailable_reason(BackendKind kind) {
  const BackendFactory* f = find_backend(kind);
  if (f == nullptr) return std::string(to_string(kind)) + " is not built into this library";
  return f->probe ? f->probe() : std::string();
}

// ---- spawn state ----

namespace detail {

bool SpawnStateBase::set_joiner(std::coroutine_handle<> h, Scheduler* sched) noexcept {
  joiner_ = h;
  joiner_sched_ = sched;
  std::uint8_t expected = kRunning;
  return phase_.compare_exchange_strong(expected, kJoined, std::memory_order_acq_rel);
}

void SpawnStateBase::finish() noexcept {
  if (phase_.exchange(kFinished, std::memory_order_acq_rel) == kJoined) joiner_sched_->schedule(joiner_);
}

bool SpawnStateBase::unset_joiner() noexcept {
  std::uint8_t expected = kJoined;
  return phase_.compare_exchange_strong(expected, kRunning, std::memory_order_acq_rel);
}

RootTask::promise_type::~promise_type() {
  if (sched != nullptr) sched->unlink_root(*this);
  if (state != nullptr) {
    state->live_scope = nullptr;
    state->finish();
    state->release();
  }
}

}  // namespace detail

// ---- scheduler ----

struct Scheduler::InjectionQueue {
  moodycamel::ConcurrentQueue<Injected> queue{256};
};

Scheduler* Scheduler::current() noexcept { return tls_current; }

Scheduler* detail::current_scheduler() noexcept { return tls_current; }

Scheduler* Scheduler::exchange_current(Scheduler* s) noexcept { return std::exchange(tls_current, s); }

Expected<std::unique_ptr<Scheduler>> Scheduler::create(Options options) {
  BackendKind wanted = options.backend;
  std::string reason;
  if (wanted == BackendKind::automatic) {
    if (const char* env = std::getenv("GALAY_KERNEL_BACKEND"); env != nullptr && *env != '\0') {
      if (auto k = parse_backend_kind(env)) {
        wanted = *k;
        if (wanted != BackendKind::automatic) reason = std::string("forced by GALAY_KERNEL_BACKEND=") + env;
      } else {
        reason = std::string("ignored unknown GALAY_KERNEL_BACKEND=") + env + "; ";
      }
    }
  } else {
    reason = "requested explicitly";
  }

  std::unique_ptr<Scheduler> sched;
  auto try_kind = [&](BackendKind k) -> std::error_code {
    const BackendFactory* f = find_backend(k);
    if (f == nullptr) return make_error_code(Error::backend_unavailable);
    if (f->probe) {
      if (std::string why = f->probe(); !why.empty()) {
        reason += std::string(to_string(k)) + " unavailable: " + why + "; ";
        return make_error_code(Error::backend_unavailable);
      }
    }
    // Backends are built for one scheduler (chaos mode keys on it), so build both together.
    sched.reset(new Scheduler(nullptr, {}));
    sched->options_ = options;
    const Options& o = sched->options_;
    const BackendSettings settings{o.io_uring_sq_entries,     o.io_uring_cq_entries, o.io_uring_sqpoll,
                                   o.io_uring_sqpoll_idle_ms, o.io_uring_sqpoll_cpu, sched->metrics_.get()};
    auto backend = f->create(*sched, settings);
    if (!backend) {
      reason += std::string(to_string(k)) + " failed to start: " + backend.error().message() + "; ";
      sched.reset();
      return backend.error();
    }
    sched->backend_ = std::move(*backend);
    sched->kind_ = sched->backend_->kind();
    return {};
  };

  if (wanted != BackendKind::automatic) {
    if (auto ec = try_kind(wanted)) {
      if (find_backend(wanted) == nullptr) reason += std::string(to_string(wanted)) + " is not built into this library";
      if (std::getenv("GALAY_KERNEL_LOG")) std::fprintf(stderr, "galay-kernel: %s\n", reason.c_str());
      return make_error(ec);
    }
  } else {
    bool ok = false;
    for (BackendKind k : {BackendKind::io_uring, BackendKind::epoll, BackendKind::kqueue}) {
      if (find_backend(k) == nullptr) continue;
      if (!try_kind(k)) {
        reason += std::string("chose ") + std::string(to_string(k));
        ok = true;
        break;
      }
    }
    if (!ok) return make_error(make_error_code(Error::backend_unavailable));
  }
  sched->backend_reason_ = std::move(reason);
  if (std::getenv("GALAY_KERNEL_LOG"))
    std::fprintf(stderr, "galay-kernel: backend %s (%s) [%s]\n", std::string(to_string(sched->backend_kind())).c_str(),
                 sched->backend_->describe().c_str(), sched->backend_reason_.c_str());
  return sched;
}

std::string Scheduler::describe_backend() const { return backend_->describe(); }
std::size_t Scheduler::pending_io_ops() const noexcept { return backend_->pending_ops(); }

Scheduler::Scheduler(std::unique_ptr<Backend> backend, std::string reason)
    : backend_(std::move(backend)),
      kind_(backend_ ? backend_->kind() : BackendKind::automatic),
      backend_reason_(std::move(reason)),
      injected_(std::make_unique<InjectionQueue>()),
      metrics_(std::make_unique<detail::LiveMetrics>()),
      accept_gate_(std::make_unique<detail::AcceptGate>(*this)) {
  ready_.reserve(1024);
  running_.reserve(1024);
}

Scheduler::~Scheduler() {
  if (!backend_) return;  // construction failed half-way
  shutdown();
  backend_.reset();
}

void Scheduler::shutdown() noexcept {
  Scheduler* previous = exchange_current(this);
  shutting_down_ = true;
  chaos::forget(this);
  // 1. Take every operation away from the kernel, so no buffer in a frame is still in use.
  backend_->cancel_all_and_drain();
  accept_gate_->cancel_all();
  // 2. Roots that were posted but never started.
  Injected item;
  while (injected_->queue.try_dequeue(item)) {
    if (item.new_root) std::coroutine_handle<>::from_address(item.address).destroy();
  }
  // 3. Destroy every live root; each one unlinks itself, and its Task destroys the frames
  //    it awaits, whose awaitables disarm their timers.
  while (roots_ != nullptr) std::coroutine_handle<detail::RootTask::promise_type>::from_promise(*roots_).destroy();
  ready_.clear();
  injected_count_.store(0, std::memory_order_relaxed);
  chaos::forget(this);  // decoys for the descriptors the destroyed frames closed
  shutting_down_ = false;
  exchange_current(previous);
}

void Scheduler::link_root(detail::RootTask::promise_type& p) noexcept {
  p.prev = nullptr;
  p.next = roots_;
  if (roots_) roots_->prev = &p;
  roots_ = &p;
  if (p.state) p.state->live_scope = p.scope();
}

void Scheduler::unlink_root(detail::RootTask::promise_type& p) noexcept {
  if (p.prev)
    p.prev->next = p.next;
  else if (roots_ == &p)
    roots_ = p.next;
  if (p.next) p.next->prev = p.prev;
  p.prev = p.next = nullptr;
}

void Scheduler::post_root(std::coroutine_handle<detail::RootTask::promise_type> root) {
  if (current() == this) {
    link_root(root.promise());
    ready_.push_back(root);
  } else {
    root.promise().sched = nullptr;  // not linked yet: unlinking must not touch the list
    inject({root.address(), true});
  }
}

void Scheduler::inject(Injected item) noexcept {
  injected_->queue.enqueue(item);
  // Dekker-style hand-off with wait_for_work(), all in seq_cst atomics (no fences, so TSan
  // can check it): either the loop sees injected_count_ before it sleeps, or we see it
  // sleeping and wake it. Only a sleeping loop costs a syscall.
  injected_count_.fetch_add(1, std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_seq_cst) && sleeping_.exchange(false, std::memory_order_seq_cst)) {
    wakeups_sent_.fetch_add(1, std::memory_order_relaxed);
    // From another loop, let that loop's backend carry the wakeup if it can (io_uring:
    // MSG_RING, sent with its next batched submit instead of a write() of its own).
    Scheduler* from = current();
    if (from == nullptr || from == this || from->shutting_down_ || !from->backend_->post_wake_to(*backend_))
      backend_->wake();
  }
}

void Scheduler::schedule(std::coroutine_handle<> h) noexcept {
  if (current() == this)
    ready_.push_back(h);
  else
    inject({h.address(), false});
}

void Scheduler::stop() noexcept {
  stop_requested_.store(true, std::memory_order_seq_cst);
  if (current() != this) backend_->wake();
}

std::size_t Scheduler::cancel_all_tasks() noexcept {
  std::size_t n = 0;
  for (detail::RootTask::promise_type* p = roots_; p != nullptr; ++n) {
    detail::RootTask::promise_type* next = p->next;  // read first, in case a root unlinks
    p->scope()->cancel();                            // never resumes inline (Cancellable contract)
    p = next;
  }
  return n;
}

void Scheduler::close_fd(int fd) noexcept {
  backend_->close_fd(fd);
  accept_gate_->fd_closed(fd);
}

bool Scheduler::coop_yield(std::coroutine_handle<> h) noexcept {
  if (--budget_ != 0) return false;
  budget_ = kCoopBudget;
  metrics_->coop_yield();
  ready_.push_back(h);
  return true;
}

bool Scheduler::drain_injected() {
  Injected items[64];
  bool any = false;
  for (;;) {
    std::size_t n = injected_->queue.try_dequeue_bulk(items, 64);
    if (n == 0) break;
    any = true;
    injected_count_.fetch_sub(n, std::memory_order_relaxed);
    for (std::size_t i = 0; i < n; ++i) {
      if (items[i].new_root) {
        auto root = std::coroutine_handle<detail::RootTask::promise_type>::from_address(items[i].address);
        root.promise().sched = this;
        link_root(root.promise());
        ready_.push_back(root);
      } else {
        ready_.push_back(std::coroutine_handle<>::from_address(items[i].address));
      }
    }
    if (n < 64) break;
  }
  return any;
}

Scheduler::Stats Scheduler::stats() const noexcept {
  const SchedulerMetrics m = metrics();
  Stats s;
  s.loop_turns = m.loop_turns;
  s.polls_blocking = m.blocking_waits;
  s.wakeups_sent = m.wakeups;
  s.coop_yields = m.coop_yields;
  return s;
}

SchedulerMetrics Scheduler::metrics() const noexcept {
  return metrics_->snapshot(wakeups_sent_.load(std::memory_order_relaxed));
}

void Scheduler::run_ready_work() {
  const bool detect_stalls = options_.stall_threshold.count() > 0;
  const Clock::time_point turn_start =
      detail::LiveMetrics::kPerOpCounting || detect_stalls ? Clock::now() : Clock::time_point{};
  drain_injected();
  chaos::turn(this, ready_);
  // Resume what is ready now; what they make ready runs next turn, after I/O is polled,
  // so a chatty task cannot starve the backend.
  running_.swap(ready_);
  if (!detect_stalls) {
    for (std::coroutine_handle<> h : running_) {
      budget_ = kCoopBudget;  // each resumed task gets a fresh budget of inline completions
      h.resume();
    }
  } else {
    // The stall detector: time each resumption; a task records its spawn site as it
    // resumes (coro/task.h), so what is left there afterwards names the one that ran.
    Clock::time_point start = turn_start;
    for (std::coroutine_handle<> h : running_) {
      budget_ = kCoopBudget;
      detail::running_spawn_site = SpawnSite{};
      h.resume();
      const Clock::time_point end = Clock::now();
      if (end - start > options_.stall_threshold) report_stall(end - start);
      start = end;
    }
  }
  running_.clear();
  Clock::time_point now = Clock::now();
  if (!timers_.empty() && timers_.next_deadline() <= now) {
    timers_.fire_expired(now);
    now = Clock::now();
  }
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now - turn_start).count();
  metrics_->loop_turn(static_cast<std::uint64_t>(ns > 0 ? ns : 0), ready_.size(), timers_.size());
}

void Scheduler::report_stall(Clock::duration took) {
  metrics_->stall();
  StallReport report;
  report.duration = std::chrono::duration_cast<std::chrono::nanoseconds>(took);
  report.spawned_at = detail::running_spawn_site;
  if (options_.on_stall) {
    options_.on_stall(report);
    return;
  }
  const SpawnSite& at = report.spawned_at;
  std::fprintf(stderr, "galay-kernel: stall: a task spawned at %s:%u ran %.3f ms without suspending\n",
               at.line() != 0 ? at.file_name() : "(unknown)", at.line(),
               static_cast<double>(report.duration.count()) / 1e6);
}

void Scheduler::wait_for_work() {
  if (!ready_.empty() || chaos::busy(this)) {
    // Busy: look for completions without blocking, but not on every turn. A poll is a
    // syscall (epoll_wait, io_uring_enter), and a task that yields or ping-pongs on a
    // channel would pay it per hop; every kBusyTurnsPerPoll turns keeps I/O from starving.
    // Never skip while SQEs wait for submission: the kernel must get them now.
    if (++busy_turns_ < kBusyTurnsPerPoll && !backend_->has_unsubmitted()) return;
    busy_turns_ = 0;
    backend_->poll(std::chrono::nanoseconds(0));
    return;
  }
  busy_turns_ = 0;
  std::optional<std::chrono::nanoseconds> timeout;
  if (!timers_.empty()) {
    auto wait = timers_.next_deadline() - Clock::now();
    timeout = wait > Clock::duration::zero() ? std::chrono::duration_cast<std::chrono::nanoseconds>(wait)
                                             : std::chrono::nanoseconds(0);
  }
  if (timeout && timeout->count() == 0) {
    backend_->poll(timeout);
    return;
  }
  sleeping_.store(true, std::memory_order_seq_cst);
  if (injected_count_.load(std::memory_order_seq_cst) != 0 || stop_requested_.load(std::memory_order_seq_cst)) {
    sleeping_.store(false, std::memory_order_relaxed);
    backend_->poll(std::chrono::nanoseconds(0));
    return;
  }
  metrics_->blocking_wait();
  backend_->poll(timeout);
  sleeping_.store(false, std::memory_order_relaxed);
}

}  // namespace galay
