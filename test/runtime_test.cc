// Runtime: N schedulers on N threads; spawning across them, block_on, spawn_blocking,
// graceful shutdown, and listening on every scheduler. On every backend.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "galay-kernel/net/multi_listener.h"
#include "galay-kernel/sync/latch.h"
#include "support/runtime_harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

class ThreadRuntimeTest : public RuntimeTest {};

// ---- spawning ----

TEST_P(ThreadRuntimeTest, MillionTasksFromEightThreadsCompleteExactlyOnce) {
  // 1M in optimised builds; sanitizers (TSan especially) are 5-20x slower, so 100k there
  // keeps the test well under 10 s while still overlapping all eight spawners.
  const std::size_t total = kSanitized ? 100'000 : 1'000'000;
  constexpr int kThreads = 8;
  auto runs = std::make_unique<std::atomic<std::uint8_t>[]>(total);
  std::atomic<std::size_t> done{0};
  std::atomic<std::size_t> per_worker[2] = {0, 0};
  std::vector<std::thread> spawners;
  for (int t = 0; t < kThreads; ++t) {
    spawners.emplace_back([&, t] {
      for (std::size_t i = t; i < total; i += kThreads) {
        // Bound the tasks in flight so the test's memory stays small.
        while (i - std::min(i, done.load(std::memory_order_relaxed)) > 200'000) std::this_thread::yield();
        rt().spawn([](std::atomic<std::uint8_t>* slot, std::atomic<std::size_t>* done,
                      std::atomic<std::size_t>* per_worker, Runtime* rt) -> Task<void> {
              slot->fetch_add(1, std::memory_order_relaxed);
              per_worker[*rt->worker_index()].fetch_add(1, std::memory_order_relaxed);
              done->fetch_add(1, std::memory_order_release);
              co_return;
            }(&runs[i], &done, per_worker, &rt()))
            .detach();
      }
    });
  }
  for (auto& t : spawners) t.join();
  const auto limit = Clock::now() + 60s;
  while (done.load(std::memory_order_acquire) < total && Clock::now() < limit) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(done.load(), total);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < total; ++i) wrong += runs[i].load(std::memory_order_relaxed) != 1;
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(per_worker[0] + per_worker[1], total);
  EXPECT_GT(per_worker[0].load(), 0u);
  EXPECT_GT(per_worker[1].load(), 0u);
}

TEST_P(ThreadRuntimeTest, SpawnOnAndSpawnLocalRunWhereAsked) {
  for (std::size_t i = 0; i < rt().size(); ++i) {
    auto where = [](Runtime* rt) -> Task<std::size_t> {
      EXPECT_EQ(Runtime::current(), rt);
      co_return rt->worker_index().value_or(99);
    };
    auto h = rt().spawn_on(i, where(&rt()));
    EXPECT_EQ(run([](JoinHandle<std::size_t>* h) -> Task<std::size_t> { co_return co_await *h; }(&h)), i);
    // From worker i, spawn_local stays on worker i.
    auto local = [](Runtime* rt) -> Task<bool> {
      std::size_t me = *rt->worker_index();
      auto inner = rt->spawn_local([](Runtime* rt) -> Task<std::size_t> { co_return *rt->worker_index(); }(rt));
      co_return co_await inner == me&& & rt->scheduler(me) == Scheduler::current();
    };
    auto l = rt().spawn_on(i, local(&rt()));
    EXPECT_TRUE(run([](JoinHandle<bool>* h) -> Task<bool> { co_return co_await *h; }(&l)));
  }
  for (Scheduler* s : rt().schedulers()) EXPECT_EQ(s->backend_kind(), GetParam());
  EXPECT_FALSE(rt().worker_index().has_value());
}

// ---- block_on ----

Task<int> forty_two() {
  co_await sleep_for(1ms);
  co_return 42;
}
Task<int> throws_after_a_sleep() {
  co_await sleep_for(1ms);
  throw std::runtime_error("boom");
}

TEST_P(ThreadRuntimeTest, BlockOnReturnsTheValueOrRethrows) {
  EXPECT_EQ(rt().block_on(forty_two()), 42);
  try {
    rt().block_on(throws_after_a_sleep());
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom");
  }
  // On a worker, block_on would deadlock: it refuses.
  EXPECT_TRUE(run([](Runtime* rt) -> Task<bool> {
    try {
      rt->block_on(forty_two());
    } catch (const std::logic_error&) {
      co_return true;
    }
    co_return false;
  }(&rt())));
  rt().shutdown();
  try {
    rt().block_on(forty_two());
    ADD_FAILURE() << "no exception after shutdown";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), Error::task_abandoned);
  }
}

// ---- spawn_blocking ----

TEST_P(ThreadRuntimeTest, SpawnBlockingResumesOnTheAwaitingScheduler) {
  auto body = [](Runtime* rt) -> Task<bool> {
    const std::size_t me = *rt->worker_index();
    Scheduler* sched = Scheduler::current();
    auto worker_thread = std::this_thread::get_id();
    auto ran_on = co_await rt->spawn_blocking([] {
      std::this_thread::sleep_for(5ms);  // a blocking call
      return std::this_thread::get_id();
    });
    EXPECT_NE(ran_on, worker_thread);
    bool same = *rt->worker_index() == me && Scheduler::current() == sched;
    try {
      co_await rt->spawn_blocking([]() -> int { throw std::out_of_range("x"); });
      ADD_FAILURE() << "no exception";
    } catch (const std::out_of_range&) {
    }
    co_return same;
  };
  for (std::size_t i = 0; i < rt().size(); ++i) {
    auto h = rt().spawn_on(i, body(&rt()));
    EXPECT_TRUE(run([](JoinHandle<bool>* h) -> Task<bool> { co_return co_await *h; }(&h)));
  }
}

class ThreadRuntimeOneBlockingThread : public RuntimeTest {
  Runtime::Builder configure(Runtime::Builder b) override { return b.blocking_threads(1); }
};

TEST_P(ThreadRuntimeOneBlockingThread, CancellingAQueuedBlockingJobMeansItNeverRuns) {
  auto body = [](Runtime* rt) -> Task<bool> {
    std::atomic<bool> second_ran{false};
    // Occupy the only blocking thread, then queue a second job and cancel its waiter.
    auto first = rt->spawn_local(
        [](Runtime* rt) -> Task<void> { co_await rt->spawn_blocking([] { std::this_thread::sleep_for(100ms); }); }(rt));
    co_await sleep_for(10ms);
    bool cancelled = false;
    auto second = [](Runtime* rt, std::atomic<bool>* ran, bool* cancelled) -> Task<void> {
      try {
        co_await rt->spawn_blocking([ran] { ran->store(true); });
      } catch (const std::system_error& e) {
        *cancelled = e.code() == std::errc::operation_canceled;
      }
    };
    auto timeout = []() -> Task<void> { co_await sleep_for(10ms); };
    co_await when_any(second(rt, &second_ran, &cancelled), timeout());
    co_await first;
    co_return cancelled && !second_ran.load();
  };
  EXPECT_TRUE(run(body(&rt())));
}

// ---- shutdown ----

void raise_fd_limit(rlim_t want) {
  rlimit lim{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &lim), 0);
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &lim), 0);
  }
  if (lim.rlim_cur < want) GTEST_SKIP() << "RLIMIT_NOFILE hard limit " << lim.rlim_max << " < " << want;
}

Task<void> pending_recv(int fd, std::atomic<int>* parked, std::atomic<int>* cancelled) {
  auto sock = TcpSocket::adopt(fd);
  if (!sock) {
    ::close(fd);
    co_return;
  }
  char buf[16];
  parked->fetch_add(1);
  auto r = co_await sock->recv(buf, sizeof(buf));
  if (!r && r.error() == std::errc::operation_canceled) cancelled->fetch_add(1);
}

TEST_P(ThreadRuntimeTest, ShutdownCancelsTenThousandPendingSocketOperations) {
  constexpr int kPairs = 5000;
  raise_fd_limit(2 * kPairs + 512);
  if (IsSkipped()) return;
  std::atomic<int> parked{0}, cancelled{0};
  std::vector<int> fds;
  for (int p = 0; p < kPairs; ++p) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0) << p;
    fds.insert(fds.end(), {sv[0], sv[1]});
    // Both ends wait to receive; pairs alternate between the schedulers. The two ends of a
    // pair share a scheduler, so one sweep cancels both before either closes its socket
    // (otherwise the peer's recv could legitimately end with EOF instead).
    rt().spawn_on(static_cast<std::size_t>(p), pending_recv(sv[0], &parked, &cancelled)).detach();
    rt().spawn_on(static_cast<std::size_t>(p), pending_recv(sv[1], &parked, &cancelled)).detach();
  }
  const auto limit = Clock::now() + 60s;
  while (parked.load() < 2 * kPairs && Clock::now() < limit) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(parked.load(), 2 * kPairs);
  std::this_thread::sleep_for(20ms);  // let the last recvs reach the kernel

  const auto t0 = Clock::now();
  ShutdownReport report = rt().shutdown(Clock::now() + 50ms);  // nothing finishes by itself
  EXPECT_LT(Clock::now() - t0, 30s);
  EXPECT_EQ(report.cancelled, static_cast<std::size_t>(2 * kPairs));
  EXPECT_EQ(report.unfinished, 0u);  // every recv was cancelled through the kernel
  EXPECT_EQ(cancelled.load(), 2 * kPairs);
  // Every socket was closed by its task's TcpSocket: none leaked. (Nothing else opens fds
  // meanwhile, so a number still open would be one of ours.)
  std::size_t still_open = 0;
  for (int fd : fds) still_open += ::fcntl(fd, F_GETFD) != -1;
  EXPECT_EQ(still_open, 0u);
}

struct Spawnery {
  Runtime* rt;
  std::atomic<int> live{0};  // frames alive right now
  std::atomic<long> spawned{0};
};

Task<void> child(Spawnery* s, int depth) {
  s->live.fetch_add(1);
  struct Dec {
    std::atomic<int>* c;
    ~Dec() { c->fetch_sub(1); }
  } dec{&s->live};
  if (!co_await sleep_for(std::chrono::microseconds(500 + 100 * depth))) co_return;
  if (depth < 6) {
    s->spawned.fetch_add(2);
    s->rt->spawn(child(s, depth + 1)).detach();
    s->rt->spawn_local(child(s, depth + 1)).detach();
  }
}

Task<void> spawner(Spawnery* s) {
  s->live.fetch_add(1);
  struct Dec {
    std::atomic<int>* c;
    ~Dec() { c->fetch_sub(1); }
  } dec{&s->live};
  for (;;) {
    if (!co_await sleep_for(200us)) co_return;  // cancelled: stop
    s->spawned.fetch_add(1);
    s->rt->spawn(child(s, 0)).detach();
  }
}

TEST_P(ThreadRuntimeTest, ShutdownWhileTasksAreSpawningTasks) {
  Spawnery s{&rt()};
  for (int i = 0; i < 16; ++i) rt().spawn(spawner(&s)).detach();
  // A plain thread spawns too, racing with shutdown: after it, spawns are refused.
  std::atomic<bool> stop_outside{false};
  std::atomic<long> refused{0};
  std::thread outside([&] {
    while (!stop_outside.load()) {
      auto h = rt().spawn(child(&s, 5));
      if (h.done()) refused.fetch_add(1);
      std::this_thread::sleep_for(100us);
    }
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_GT(s.spawned.load(), 100);
  const auto t0 = Clock::now();
  ShutdownReport report = rt().shutdown(Clock::now() + 20ms);
  EXPECT_LT(Clock::now() - t0, 10s);
  EXPECT_EQ(report.unfinished, 0u);
  EXPECT_GT(report.cancelled, 0u);
  stop_outside.store(true);
  outside.join();
  EXPECT_EQ(s.live.load(), 0);  // every frame is gone
  auto late = rt().spawn(child(&s, 0));
  EXPECT_TRUE(late.done());  // refused: abandoned at once
  EXPECT_EQ(s.live.load(), 0);
}

TEST_P(ThreadRuntimeTest, ShutdownWaitsForTasksThatFinishBeforeTheDeadline) {
  std::atomic<int> finished{0};
  for (int i = 0; i < 100; ++i)
    rt().spawn([](std::atomic<int>* f) -> Task<void> {
          if (co_await sleep_for(30ms)) f->fetch_add(1);
        }(&finished))
        .detach();
  const auto t0 = Clock::now();
  ShutdownReport report = rt().shutdown(Clock::now() + 10s);
  EXPECT_LT(Clock::now() - t0, 5s);  // returned as soon as the work drained
  EXPECT_EQ(finished.load(), 100);
  EXPECT_EQ(report.cancelled, 0u);
  EXPECT_TRUE(rt().stopping());
  EXPECT_EQ(rt().shutdown().elapsed, report.elapsed);  // idempotent
}

class ThreadRuntimeShortGrace : public RuntimeTest {
  Runtime::Builder configure(Runtime::Builder b) override { return b.cancel_grace(100ms); }
};

TEST_P(ThreadRuntimeShortGrace, TasksIgnoringCancellationAreDestroyedAfterTheGrace) {
  std::atomic<int> live{0};
  for (int i = 0; i < 4; ++i)
    rt().spawn([](std::atomic<int>* live) -> Task<void> {
          live->fetch_add(1);
          struct Dec {
            std::atomic<int>* c;
            ~Dec() { c->fetch_sub(1); }
          } dec{live};
          for (;;) {
            (void)co_await sleep_for(1ms);  // ignores the cancellation error...
            co_await yield();               // ...but still lets its loop turn
          }
        }(&live))
        .detach();
  std::this_thread::sleep_for(10ms);
  const auto t0 = Clock::now();
  ShutdownReport report = rt().shutdown();
  EXPECT_LT(Clock::now() - t0, 5s);
  EXPECT_EQ(report.unfinished, 4u);
  EXPECT_EQ(live.load(), 0);
}

// ---- listening on every scheduler ----

int connect_blocking(const SocketAddress& addr) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, addr.data(), addr.size()) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

Task<void> greet(TcpSocket conn, std::shared_ptr<std::atomic<int>[]> per_worker, Runtime* rt) {
  per_worker[*rt->worker_index()].fetch_add(1);
  (void)co_await conn.send_all("x");
  char b[1];
  (void)co_await conn.recv(b, 1);  // until the client closes
}

void connect_many(const SocketAddress& addr, int n) {
  for (int i = 0; i < n; ++i) {
    int fd = connect_blocking(addr);
    ASSERT_GE(fd, 0) << "connection " << i;
    char b = 0;
    ASSERT_EQ(::recv(fd, &b, 1, 0), 1) << "connection " << i << " was not served";
    ::close(fd);
  }
}

TEST_P(ThreadRuntimeTest, ReusePortListenerPerSchedulerSpreadsConnections) {
  auto per_worker = std::shared_ptr<std::atomic<int>[]>(new std::atomic<int>[rt().size()]());
  Runtime* r = &rt();
  auto server = rt().block_on(serve_reuseport(
      rt(), SocketAddress::loopback(0), [per_worker, r](TcpSocket c) { return greet(std::move(c), per_worker, r); }));
  ASSERT_TRUE(server) << server.error().message();
  EXPECT_EQ(server->listeners(), rt().size());
  ASSERT_NE(server->address().port(), 0);
  // The kernel hashes each connection's 4-tuple onto a listener: with 200 connections the
  // chance that one of two listeners gets none is 2^-199.
  connect_many(server->address(), 200);
  for (std::size_t i = 0; i < rt().size(); ++i) {
    EXPECT_GE(per_worker[i].load(), 1) << "worker " << i << " accepted nothing";
    EXPECT_GE(server->accepted_on(i), 1u);
  }
  EXPECT_EQ(server->accepted(), 200u);
  ShutdownReport report = rt().shutdown(Clock::now() + 5s);
  EXPECT_EQ(report.unfinished, 0u);
  // The listeners closed when shutdown began: nobody accepts any more.
  EXPECT_LT(connect_blocking(server->address()), 0);
}

TEST_P(ThreadRuntimeTest, SingleAcceptorHandsConnectionsRoundRobin) {
  auto per_worker = std::shared_ptr<std::atomic<int>[]>(new std::atomic<int>[rt().size()]());
  Runtime* r = &rt();
  auto server = rt().block_on(serve_round_robin(
      rt(), SocketAddress::loopback(0), [per_worker, r](TcpSocket c) { return greet(std::move(c), per_worker, r); }));
  ASSERT_TRUE(server) << server.error().message();
  EXPECT_EQ(server->listeners(), 1u);
  connect_many(server->address(), 100);
  for (std::size_t i = 0; i < rt().size(); ++i) EXPECT_EQ(per_worker[i].load(), 100 / static_cast<int>(rt().size()));
  // Server::stop closes the listener without shutting the runtime down.
  server->stop();
  const auto limit = Clock::now() + 10s;
  int fd;
  while ((fd = connect_blocking(server->address())) >= 0 && Clock::now() < limit) {
    ::close(fd);
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_LT(fd, 0);
  EXPECT_FALSE(rt().stopping());
}

// ---- builder ----

TEST(ThreadRuntimeBuilder, DefaultsToOneWorkerPerCoreAndPinsWhenAsked) {
  auto rt = Runtime::builder().pin_threads().build();
  ASSERT_TRUE(rt) << rt.error().message();
  EXPECT_EQ((*rt)->size(), std::max(1u, std::thread::hardware_concurrency()));
  for (std::size_t i = 0; i < (*rt)->size(); ++i) {
    auto h = (*rt)->spawn_on(i, []() -> Task<int> {
      cpu_set_t set;
      CPU_ZERO(&set);
      ::sched_getaffinity(0, sizeof(set), &set);
      co_return CPU_COUNT(&set);
    }());
    EXPECT_EQ((*rt)->block_on([](JoinHandle<int>* h) -> Task<int> { co_return co_await *h; }(&h)), 1);
  }
  // Destruction without an explicit shutdown is clean too.
}

TEST(ThreadRuntimeBuilder, PassesRingSizesThrough) {
  auto rt = Runtime::builder().threads(3).io_uring_entries(8, 64).build();
  ASSERT_TRUE(rt) << rt.error().message();
  EXPECT_EQ((*rt)->size(), 3u);
  for (Scheduler* s : (*rt)->schedulers()) {
    EXPECT_EQ(s->options().io_uring_sq_entries, 8u);
    EXPECT_EQ(s->options().io_uring_cq_entries, 64u);
    EXPECT_EQ(s->backend_kind(), (*rt)->backend_kind());
  }
}

GALAY_INSTANTIATE_RUNTIME_BACKENDS(ThreadRuntimeTest);
GALAY_INSTANTIATE_RUNTIME_BACKENDS(ThreadRuntimeOneBlockingThread);
GALAY_INSTANTIATE_RUNTIME_BACKENDS(ThreadRuntimeShortGrace);

}  // namespace
}  // namespace galay::test
