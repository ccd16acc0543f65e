// Microbenchmarks of the runtime's building blocks (Google Benchmark). Figures and the
// method are in docs/runtime.md. Every galay benchmark runs on the default backend
// (io_uring where it works; GALAY_KERNEL_BACKEND=epoll to compare).
//
//   micro_bench --benchmark_min_time=0.5 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
//
// Counters: "per_op" is wall time per operation (task, hop, round trip, lock/unlock);
// "wakeups/op" is how many cross-thread wakeups cost a syscall, per operation.
#include <benchmark/benchmark.h>
#include <concurrentqueue/concurrentqueue.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "args.h"
#include "galay-kernel/runtime/runtime.h"
#include "galay-kernel/runtime/scheduler.h"
#include "galay-kernel/runtime/sleep.h"
#include "galay-kernel/sync/channel.h"
#include "galay-kernel/sync/latch.h"
#include "galay-kernel/sync/mutex.h"
#include "galay-kernel/runtime/timer_queue.h"

using namespace galay;

namespace {

constexpr int kBatch = 1024;

benchmark::Counter per_op(double ops_per_iteration) {
  return benchmark::Counter(ops_per_iteration,
                            benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

std::unique_ptr<Scheduler> make_scheduler() {
  auto s = Scheduler::create();
  if (!s) {
    std::fprintf(stderr, "no scheduler: %s\n", s.error().message().c_str());
    std::exit(1);
  }
  return std::move(*s);
}

// Unpinned: the benchmark's own thread must not share a core with a worker it waits for.
std::unique_ptr<Runtime> make_runtime(std::size_t threads) {
  auto rt = Runtime::builder().threads(threads).build();
  if (!rt) {
    std::fprintf(stderr, "no runtime: %s\n", rt.error().message().c_str());
    std::exit(1);
  }
  return std::move(*rt);
}

// ---- spawn + complete on one scheduler ----

Task<void> bump(int* n) {
  ++*n;
  co_return;
}

Task<void> spawn_batch(int n) {
  int done = 0;
  for (int i = 0; i < n; ++i) spawn(bump(&done)).detach();
  while (done < n) co_await yield();
}

void BM_SpawnComplete_OneScheduler(benchmark::State& state) {
  auto sched = make_scheduler();
  for (auto _ : state) sched->block_on(spawn_batch(kBatch));
  state.counters["per_op"] = per_op(kBatch);
}
BENCHMARK(BM_SpawnComplete_OneScheduler);

// The same through Runtime::spawn_local (adds the runtime's live-task tracking frame).
Task<void> spawn_batch_runtime(Runtime* rt, int n) {
  int done = 0;
  for (int i = 0; i < n; ++i) rt->spawn_local(bump(&done)).detach();
  while (done < n) co_await yield();
}

void BM_SpawnComplete_RuntimeLocal(benchmark::State& state) {
  auto rt = make_runtime(1);
  for (auto _ : state) rt->block_on(spawn_batch_runtime(rt.get(), kBatch));
  state.counters["per_op"] = per_op(kBatch);
}
BENCHMARK(BM_SpawnComplete_RuntimeLocal)->UseRealTime();

// Plain Scheduler::spawn, but on a runtime worker thread: separates the cost of the
// tracking frame from the cost of running on a worker (its malloc arena, block_on hand-off).
void BM_SpawnComplete_RuntimeWorkerPlain(benchmark::State& state) {
  auto rt = make_runtime(1);
  for (auto _ : state) rt->block_on(spawn_batch(kBatch));
  state.counters["per_op"] = per_op(kBatch);
}
BENCHMARK(BM_SpawnComplete_RuntimeWorkerPlain)->UseRealTime();

// ---- spawn from another thread onto a running scheduler ----

Task<void> count_up(std::atomic<int>* n) {
  n->fetch_add(1, std::memory_order_release);
  co_return;
}

void BM_CrossThreadSpawn(benchmark::State& state) {
  auto rt = make_runtime(1);
  Scheduler& target = rt->scheduler(0);
  std::atomic<int> done{0};
  const auto wakeups0 = target.stats().wakeups_sent;
  int expected = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) target.spawn(count_up(&done)).detach();
    expected += kBatch;
    while (done.load(std::memory_order_acquire) < expected) std::this_thread::yield();
  }
  state.counters["per_op"] = per_op(kBatch);
  state.counters["wakeups/op"] =
      benchmark::Counter(double(target.stats().wakeups_sent - wakeups0) / double(state.iterations() * kBatch));
}
BENCHMARK(BM_CrossThreadSpawn)->UseRealTime();

// Through Runtime::spawn_on from a non-worker thread (tracking + shutdown guard).
void BM_CrossThreadSpawn_Runtime(benchmark::State& state) {
  auto rt = make_runtime(1);
  std::atomic<int> done{0};
  int expected = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) rt->spawn_on(0, count_up(&done)).detach();
    expected += kBatch;
    while (done.load(std::memory_order_acquire) < expected) std::this_thread::yield();
  }
  state.counters["per_op"] = per_op(kBatch);
}
BENCHMARK(BM_CrossThreadSpawn_Runtime)->UseRealTime();

// Task on worker 0 spawning onto worker 1 (scheduler-to-scheduler).
Task<void> spawn_across(Runtime* rt, int n) {
  std::atomic<int> done{0};
  for (int i = 0; i < n; ++i) rt->spawn_on(1, count_up(&done)).detach();
  while (done.load(std::memory_order_acquire) < n) co_await yield();
}

void BM_CrossSchedulerSpawn(benchmark::State& state) {
  auto rt = make_runtime(2);
  for (auto _ : state) {
    auto h = rt->spawn_on(0, spawn_across(rt.get(), kBatch));
    rt->block_on([](JoinHandle<void>* h) -> Task<void> { co_await *h; }(&h));
  }
  state.counters["per_op"] = per_op(kBatch);
}
BENCHMARK(BM_CrossSchedulerSpawn)->UseRealTime();

// ---- wakeup latency: ping-pong between two schedulers ----

Task<void> echo(sync::Channel<int>* in, sync::Channel<int>* out) {
  for (;;) {
    auto v = co_await in->recv();
    if (!v) break;
    (void)co_await out->send(*v);
  }
}

Task<void> ping(sync::Channel<int>* out, sync::Channel<int>* in, int rounds) {
  for (int i = 0; i < rounds; ++i) {
    (void)co_await out->send(i);
    (void)co_await in->recv();
  }
}

void BM_WakeupLatency_PingPong(benchmark::State& state) {
  auto rt = make_runtime(2);
  sync::Channel<int> a(1), b(1);
  auto echoer = rt->spawn_on(1, echo(&a, &b));
  const auto w0 = rt->scheduler(0).stats().wakeups_sent + rt->scheduler(1).stats().wakeups_sent;
  constexpr int kRounds = 256;
  for (auto _ : state) {
    auto h = rt->spawn_on(0, ping(&a, &b, kRounds));
    rt->block_on([](JoinHandle<void>* h) -> Task<void> { co_await *h; }(&h));
  }
  const auto w1 = rt->scheduler(0).stats().wakeups_sent + rt->scheduler(1).stats().wakeups_sent;
  a.close();
  rt->block_on([](JoinHandle<void>* h) -> Task<void> { co_await *h; }(&echoer));
  state.counters["per_op"] = per_op(kRounds);  // one round trip = two cross-thread hops
  state.counters["wakeups/op"] = benchmark::Counter(double(w1 - w0) / double(state.iterations() * kRounds));
}
BENCHMARK(BM_WakeupLatency_PingPong)->UseRealTime();

// ---- channel on one scheduler ----

Task<void> channel_hops(sync::Channel<int>* ch, int n) {
  long sum = 0;
  for (int i = 0; i < n; ++i) {
    (void)co_await ch->send(i);
    sum += *co_await ch->recv();
  }
  benchmark::DoNotOptimize(sum);
}

// Uncontended hop: send then receive in one task (no suspension).
void BM_ChannelHop_OneScheduler(benchmark::State& state) {
  auto sched = make_scheduler();
  sync::Channel<int> ch(64);
  for (auto _ : state) sched->block_on(channel_hops(&ch, kBatch));
  state.counters["per_op"] = per_op(kBatch);
}
BENCHMARK(BM_ChannelHop_OneScheduler);

// Hand-off between two tasks on one scheduler: the receiver suspends and is resumed
// through the ready queue each time.
void BM_ChannelPingPong_OneScheduler(benchmark::State& state) {
  auto sched = make_scheduler();
  for (auto _ : state) {
    sched->block_on([](int n) -> Task<void> {
      sync::Channel<int> a(1), b(1);
      auto e = spawn(echo(&a, &b));
      co_await ping(&a, &b, n);
      a.close();
      co_await e;
    }(kBatch));
  }
  state.counters["per_op"] = per_op(kBatch);
}
BENCHMARK(BM_ChannelPingPong_OneScheduler);

// ---- mutex ----

Task<void> lock_unlock(sync::Mutex* m, int n, long* counter) {
  for (int i = 0; i < n; ++i) {
    (void)co_await m->lock();
    ++*counter;
    m->unlock();
  }
}

void BM_MutexUncontended(benchmark::State& state) {
  auto sched = make_scheduler();
  sync::Mutex m;
  long counter = 0;
  for (auto _ : state) sched->block_on(lock_unlock(&m, kBatch, &counter));
  benchmark::DoNotOptimize(counter);
  state.counters["per_op"] = per_op(kBatch);
}
BENCHMARK(BM_MutexUncontended);

Task<void> lock_unlock_done(sync::Mutex* m, int n, long* counter, std::atomic<long>* waits, sync::Latch* gate,
                            sync::WaitGroup* wg) {
  gate->count_down();
  (void)co_await gate->wait();  // every task is running before anyone locks
  long waited = 0;
  for (int i = 0; i < n; ++i) {
    if (!m->try_lock()) {  // count how often the lock really was contended
      ++waited;
      (void)co_await m->lock();
    }
    ++*counter;
    m->unlock();
  }
  waits->fetch_add(waited, std::memory_order_relaxed);
  wg->done();
}

Task<void> contend(Runtime* rt, int tasks_per_worker, int n, long* counter, std::atomic<long>* waits) {
  sync::Mutex m;
  sync::Latch gate(tasks_per_worker * 2);
  sync::WaitGroup wg;
  wg.add(tasks_per_worker * 2);
  for (int t = 0; t < tasks_per_worker * 2; ++t)
    rt->spawn_on(t, lock_unlock_done(&m, n, counter, waits, &gate, &wg)).detach();
  (void)co_await wg.wait();
}

// Two tasks on each of two schedulers hammer one mutex, 4096 lock/unlock each, so both
// threads are inside the loop at the same time (FIFO hand-off between threads).
void BM_MutexContended_TwoSchedulers(benchmark::State& state) {
  auto rt = make_runtime(2);
  long counter = 0;
  constexpr int kPerTask = 4096;
  std::atomic<long> waits{0};
  for (auto _ : state) rt->block_on(contend(rt.get(), 2, kPerTask, &counter, &waits));
  state.counters["per_op"] = per_op(4 * kPerTask);
  state.counters["waits/op"] = benchmark::Counter(double(waits.load()) / double(state.iterations() * 4 * kPerTask));
}
BENCHMARK(BM_MutexContended_TwoSchedulers)->UseRealTime();

// ---- timers ----

// Arm and cancel one deadline in a heap that already holds 10k armed timers.
void BM_TimerInsertCancel(benchmark::State& state) {
  TimerQueue q;
  std::vector<TimerNode> background(10000);
  std::mt19937_64 rng(42);
  const auto now = Clock::now();
  for (auto& n : background) q.arm(n, now + std::chrono::milliseconds(1000 + rng() % 100000));
  std::vector<Clock::time_point> deadlines(4096);
  for (auto& d : deadlines) d = now + std::chrono::milliseconds(1000 + rng() % 100000);
  TimerNode node;
  std::size_t i = 0;
  for (auto _ : state) {
    q.arm(node, deadlines[i++ & 4095]);
    q.cancel(node);
  }
  for (auto& n : background) q.cancel(n);
  state.counters["per_op"] = per_op(1);
}
BENCHMARK(BM_TimerInsertCancel);

// The same through the task API: sleep_for on a scheduler, cancelled via its JoinHandle.
void BM_SleepCancel_Task(benchmark::State& state) {
  auto sched = make_scheduler();
  for (auto _ : state) {
    sched->block_on([](int n) -> Task<void> {
      for (int i = 0; i < n; ++i) {
        auto h = spawn([]() -> Task<void> { (void)co_await sleep_for(std::chrono::hours(1)); }());
        co_await yield();  // let it arm its timer
        h.cancel();
        co_await h;
      }
    }(64));
  }
  state.counters["per_op"] = per_op(64);
}
BENCHMARK(BM_SleepCancel_Task);

// ---- baselines ----

// Two std::threads passing a token with a mutex + condition_variable (one round trip).
void BM_Baseline_CondvarPingPong(benchmark::State& state) {
  std::mutex m;
  std::condition_variable cv;
  int turn = 0;  // 0: main's turn, 1: partner's turn, 2: stop
  std::thread partner([&] {
    std::unique_lock lock(m);
    for (;;) {
      cv.wait(lock, [&] { return turn != 0; });
      if (turn == 2) return;
      turn = 0;
      cv.notify_all();
    }
  });
  for (auto _ : state) {
    std::unique_lock lock(m);
    turn = 1;
    cv.notify_all();
    cv.wait(lock, [&] { return turn == 0; });
  }
  {
    std::lock_guard lock(m);
    turn = 2;
  }
  cv.notify_all();
  partner.join();
  state.counters["per_op"] = per_op(1);
}
BENCHMARK(BM_Baseline_CondvarPingPong)->UseRealTime();

// One enqueue + one dequeue on a moodycamel::ConcurrentQueue (the scheduler's injection
// queue), same thread: the floor under a cross-thread spawn.
void BM_Baseline_MoodycamelHop(benchmark::State& state) {
  moodycamel::ConcurrentQueue<void*> q(256);
  moodycamel::ProducerToken tok(q);
  void* out = nullptr;
  int x = 0;
  for (auto _ : state) {
    q.enqueue(tok, &x);
    q.try_dequeue_from_producer(tok, out);
    benchmark::DoNotOptimize(out);
  }
  state.counters["per_op"] = per_op(1);
}
BENCHMARK(BM_Baseline_MoodycamelHop);

// Same with implicit producers (what Scheduler::inject uses).
void BM_Baseline_MoodycamelHopImplicit(benchmark::State& state) {
  moodycamel::ConcurrentQueue<void*> q(256);
  void* out = nullptr;
  int x = 0;
  for (auto _ : state) {
    q.enqueue(&x);
    q.try_dequeue(out);
    benchmark::DoNotOptimize(out);
  }
  state.counters["per_op"] = per_op(1);
}
BENCHMARK(BM_Baseline_MoodycamelHopImplicit);

// Cross-thread hand-off through the same queue: a producer thread enqueues, a consumer
// thread dequeues in bulk (like Scheduler::inject / drain_injected). With Arg(1) each item
// is a 256-byte block malloc'd by the producer and freed by the consumer, as a spawned
// frame is: that shows what cross-thread malloc/free costs on its own.
void BM_Baseline_MoodycamelCrossThread(benchmark::State& state) {
  const bool with_malloc = state.range(0) != 0;
  moodycamel::ConcurrentQueue<void*> q(256);
  std::atomic<long> done{0};
  std::atomic<bool> stop{false};
  std::thread consumer([&] {
    void* items[64];
    while (!stop.load(std::memory_order_relaxed)) {
      std::size_t n = q.try_dequeue_bulk(items, 64);
      if (with_malloc)
        for (std::size_t i = 0; i < n; ++i) {
          static_cast<volatile char*>(items[i])[0] = 1;
          std::free(items[i]);
        }
      if (n != 0) done.fetch_add(static_cast<long>(n), std::memory_order_release);
    }
  });
  static int token;
  long expected = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      void* p = &token;
      if (with_malloc) {
        p = std::malloc(256);
        static_cast<volatile char*>(p)[0] = 0;
      }
      q.enqueue(p);
    }
    expected += kBatch;
    while (done.load(std::memory_order_acquire) < expected) std::this_thread::yield();
  }
  stop.store(true);
  consumer.join();
  state.counters["per_op"] = per_op(kBatch);
}
BENCHMARK(BM_Baseline_MoodycamelCrossThread)->Arg(0)->Arg(1)->UseRealTime();

}  // namespace

// Google Benchmark takes its flags (--benchmark_filter=..., --help) first. What it leaves is
// reported like any program's bad command line (one line, exit 2): a --benchmark_* flag left
// over had a value it refused, anything else is unknown.
int main(int argc, char** argv) {
  std::ostringstream said;  // what Initialize() writes to std::cerr: shown unless replaced below
  std::streambuf* const cerr_buffer = std::cerr.rdbuf(said.rdbuf());
  benchmark::Initialize(&argc, argv);
  std::cerr.rdbuf(cerr_buffer);
  if (argc <= 1) std::cerr << said.str();
  cli::Parser args("micro_bench", "[--benchmark_*=VALUE ...]  (Google Benchmark's flags: --help lists them)");
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const std::size_t eq = arg.find('=');
    if (arg.starts_with("--benchmark_") && eq != std::string_view::npos)
      args.option(arg.substr(0, eq), "VALUE", "", [](std::string_view) {
        return std::string("a value Google Benchmark accepts (--help lists its flags)");
      });
  }
  args.parse(argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
