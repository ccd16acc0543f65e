#include "galay-kernel/runtime/runtime.h"

#include "galay-kernel/runtime/detail/blocking_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <latch>
#include <string>

namespace galay {

namespace {
thread_local Runtime* tls_runtime = nullptr;
thread_local std::size_t tls_worker = 0;
thread_local std::size_t tls_next = 0;  // round-robin position of this spawning thread

bool log_enabled() { return std::getenv("GALAY_KERNEL_LOG") != nullptr; }

// CPUs the process may run on (honours taskset), in increasing order.
std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

// Back off from 50 µs to 1 ms: shutdown notices quick drains quickly without spinning.
void nap(std::chrono::microseconds& d) {
  std::this_thread::sleep_for(d);
  d = std::min<std::chrono::microseconds>(d * 2, std::chrono::milliseconds(1));
}
}  // namespace

// ---- Builder / start-up ----

Expected<std::unique_ptr<Runtime>> Runtime::Builder::build() const {
  std::unique_ptr<Runtime> rt(new Runtime(config_));
  if (auto r = rt->start(); !r) return make_error(r.error());
  return rt;
}

Runtime::Runtime(Config config) : config_(std::move(config)) {
  n_ = config_.threads != 0 ? config_.threads : std::max(1u, std::thread::hardware_concurrency());
  workers_ = std::make_unique<Worker[]>(n_);
  scheds_.assign(n_, nullptr);
  blocking_ = std::make_unique<BlockingPool>(config_.blocking_threads, 0);  // threads start on demand
}

Runtime* Runtime::current() noexcept { return tls_runtime; }

bool Runtime::on_worker_of(const Runtime* rt) noexcept { return tls_runtime == rt; }

std::optional<std::size_t> Runtime::worker_index() const noexcept {
  if (tls_runtime != this) return std::nullopt;
  return tls_worker;
}

std::size_t Runtime::next_index() noexcept { return tls_next++; }

Expected<void> Runtime::start() {
  if (config_.pin) {
    std::vector<int> cpus = allowed_cpus();
    for (std::size_t i = 0; i < n_ && !cpus.empty(); ++i) workers_[i].cpu = cpus[i % cpus.size()];
  }
  auto launch = [this](std::size_t i, Scheduler::Options options) {
    std::promise<std::error_code> ready;
    std::future<std::error_code> f = ready.get_future();
    workers_[i].thread = std::thread(&Runtime::worker_main, this, i, options, std::move(ready));
    return f;
  };
  // The first worker probes the backend; every other worker is forced to the same kind.
  std::error_code ec = launch(0, config_.options).get();
  if (!ec) {
    kind_ = workers_[0].sched->backend_kind();
    Scheduler::Options forced = config_.options;
    forced.backend = kind_;
    std::vector<std::future<std::error_code>> rest;
    for (std::size_t i = 1; i < n_; ++i) rest.push_back(launch(i, forced));
    for (auto& f : rest) {
      if (auto e = f.get(); e && !ec) ec = e;
    }
  }
  for (std::size_t i = 0; i < n_; ++i) scheds_[i] = workers_[i].sched;
  if (ec) {
    teardown();
    std::lock_guard lock(shutdown_mutex_);
    shut_down_ = true;
    return make_error(ec);
  }
  return {};
}

void Runtime::worker_main(std::size_t i, Scheduler::Options options, std::promise<std::error_code> ready) {
  tls_runtime = this;
  tls_worker = i;
  tls_next = i + 1;  // spread this worker's round-robin spawns from its neighbour on
  char name[16];
  std::snprintf(name, sizeof(name), "galay-w%zu", i);
  ::pthread_setname_np(::pthread_self(), name);
  if (int cpu = workers_[i].cpu; cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (int err = ::pthread_setaffinity_np(::pthread_self(), sizeof(set), &set); err != 0 && log_enabled())
      std::fprintf(stderr, "galay-kernel: pinning worker %zu to CPU %d failed: %s\n", i, cpu,
                   std::generic_category().message(err).c_str());
  }

  // Created on this thread: io_uring's SINGLE_ISSUER ring belongs to its creator.
  auto created = Scheduler::create(std::move(options));
  if (!created) {
    ready.set_value(created.error());
    std::unique_lock lock(life_mutex_);
    ++left_loop_;
    life_cv_.notify_all();
    tls_runtime = nullptr;
    return;
  }
  std::unique_ptr<Scheduler> sched = std::move(*created);
  workers_[i].sched = sched.get();
  ready.set_value({});

  // stop() also ends run() when a task calls it; only exit_ ends the worker.
  while (!exit_.load(std::memory_order_acquire)) sched->run();

  std::unique_lock lock(life_mutex_);
  ++left_loop_;
  life_cv_.notify_all();
  // Destroy this worker's leftover frames when told to, one worker at a time: a frame's
  // destructor may hand a lock to, or finish a join of, a task on another scheduler, which
  // must still exist then (it is stopped, so nothing runs).
  life_cv_.wait(lock, [&] { return shutdown_turn_ == i; });
  lock.unlock();
  sched->shutdown();
  lock.lock();
  ++shutdown_done_;
  life_cv_.notify_all();
  life_cv_.wait(lock, [&] { return destroy_; });
  lock.unlock();
  sched.reset();
  tls_runtime = nullptr;
}

// ---- shutdown ----

Runtime::~Runtime() {
  if (on_worker_of(this)) {
    std::fputs("galay-kernel: a Runtime destroyed on one of its own workers cannot join it\n", stderr);
    std::abort();
  }
  shutdown(Clock::now());
}

std::int64_t Runtime::live_total() const noexcept {
  // Read `ended` first: every end counted was preceded by its spawn, so the difference
  // never goes negative, and a root still running is never missed.
  std::int64_t n = 0;
  for (std::size_t i = 0; i < n_; ++i) {
    const Worker& w = workers_[i];
    n -= w.ended.load(std::memory_order_acquire);
    n += w.local_spawned.load(std::memory_order_acquire) + w.remote_spawned.load(std::memory_order_acquire);
  }
  return n;
}

std::size_t Runtime::sweep() {
  // JoinHandle::cancel and CancelScope are single-threaded, so each scheduler cancels its
  // own roots, from a small call posted onto its loop.
  std::vector<std::size_t> counts(n_, 0);
  std::latch done(static_cast<std::ptrdiff_t>(n_));
  for (std::size_t i = 0; i < n_; ++i) {
    Scheduler* s = workers_[i].sched;
    auto call = detail::posted_call([s, &counts, &done, i] {
      counts[i] = s->cancel_all_tasks();
      done.count_down();
    });
    s->schedule(call.handle);
  }
  done.wait();
  std::size_t total = 0;
  for (std::size_t c : counts) total += c;
  return total;
}

ShutdownReport Runtime::shutdown(Clock::time_point deadline) {
  if (on_worker_of(this)) throw std::logic_error("Runtime::shutdown on one of its own workers would deadlock");
  std::lock_guard guard(shutdown_mutex_);
  if (shut_down_) return report_;
  const auto t0 = Clock::now();
  ShutdownReport report;

  // 1. Stop accepting.
  stopping_.store(true, std::memory_order_release);
  stop_event_.set();

  // 2. Let the work drain until the deadline.
  for (auto d = std::chrono::microseconds(50); live_total() > 0 && Clock::now() < deadline;) nap(d);

  // 3. Cancel every root, again and again (roots spawned meanwhile start cancelled, roots
  //    spawned directly on a Scheduler are caught by the next sweep), until none is left.
  cancelling_.store(true, std::memory_order_seq_cst);
  const auto grace_end = std::max(Clock::now(), deadline) + config_.cancel_grace;
  bool first = true;
  for (auto d = std::chrono::microseconds(50);;) {
    std::size_t roots = sweep();
    if (first) report.cancelled = roots;
    first = false;
    if (roots == 0 && live_total() <= 0) break;
    if (Clock::now() >= grace_end) {
      report.unfinished = roots;
      if (log_enabled())
        std::fprintf(stderr, "galay-kernel: shutdown: %zu task(s) ignored cancellation; destroying them\n", roots);
      break;
    }
    nap(d);
  }

  // 4. Stop, destroy leftovers, join.
  teardown();
  report.elapsed = Clock::now() - t0;
  report_ = report;
  shut_down_ = true;
  return report;
}

void Runtime::teardown() {
  // Refuse spawns, and wait for spawns already past the check on other threads.
  closed_.store(true, std::memory_order_seq_cst);
  while (external_spawns_.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();

  exit_.store(true, std::memory_order_release);
  std::size_t started = 0;
  for (std::size_t i = 0; i < n_; ++i) {
    if (!workers_[i].thread.joinable()) continue;
    ++started;
    if (workers_[i].sched != nullptr) workers_[i].sched->stop();
  }
  {
    std::unique_lock lock(life_mutex_);
    life_cv_.wait(lock, [&] { return left_loop_ == started; });
  }
  // No loop runs now. Running blocking jobs finish (their schedule() lands in a stopped
  // loop's queue); queued ones are dropped before their frames are destroyed below.
  blocking_->close_and_join();
  {
    std::unique_lock lock(life_mutex_);
    for (std::size_t i = 0; i < n_; ++i) {
      if (workers_[i].sched == nullptr) continue;
      std::size_t target = shutdown_done_ + 1;
      shutdown_turn_ = i;
      life_cv_.notify_all();
      life_cv_.wait(lock, [&] { return shutdown_done_ == target; });
    }
    shutdown_turn_ = n_;
    destroy_ = true;
    life_cv_.notify_all();
  }
  for (std::size_t i = 0; i < n_; ++i) {
    if (workers_[i].thread.joinable()) workers_[i].thread.join();
    workers_[i].sched = nullptr;
  }
}

}  // namespace galay
