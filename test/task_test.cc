// Task<T>, spawn/join, when_all, when_any and frame lifetime, on every backend.
#include <atomic>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

class TaskTest : public BackendTest {};

Task<int> answer() { co_return 42; }
Task<void> nothing(int* touched) {
  *touched = 1;
  co_return;
}
Task<int> throws() {
  throw std::runtime_error("boom");
  co_return 0;
}
Task<int> add_nested(int depth) {
  if (depth == 0) co_return 0;
  int below = co_await add_nested(depth - 1);
  co_return below + 1;
}
Task<std::string> after(std::chrono::milliseconds d, std::string s) {
  co_await sleep_for(d);
  co_return s;
}

TEST_P(TaskTest, ReturnsValue) { EXPECT_EQ(run(answer()), 42); }

TEST_P(TaskTest, VoidTaskRuns) {
  int touched = 0;
  run(nothing(&touched));
  EXPECT_EQ(touched, 1);
}

TEST_P(TaskTest, ExceptionPropagatesToAwaiter) {
  auto outer = []() -> Task<std::string> {
    try {
      co_await throws();
    } catch (const std::runtime_error& e) {
      co_return std::string(e.what());
    }
    co_return "no exception";
  };
  EXPECT_EQ(run(outer()), "boom");
  EXPECT_THROW(run(throws()), std::runtime_error);
}

TEST_P(TaskTest, DeepNestingRunsInBoundedStack) {
  // 100k nested awaits would overflow the stack if every level took a frame; past
  // kMaxInlineDepth the trampoline runs them one at a time, with or without tail calls
  // (so also under ASan/TSan and -O0, where the compilers emit none).
  constexpr int kDepth = 100000;
  EXPECT_EQ(run(add_nested(kDepth)), kDepth);
}

TEST_P(TaskTest, SpawnAndJoin) {
  auto body = []() -> Task<int> {
    auto a = spawn(after(20ms, "a"));
    auto b = spawn(answer());
    std::string s = co_await a;
    int v = co_await b;
    co_return v + static_cast<int>(s.size());
  };
  EXPECT_EQ(run(body()), 43);
}

TEST_P(TaskTest, JoinRethrowsSpawnedException) {
  auto body = []() -> Task<bool> {
    auto h = spawn(throws());
    try {
      co_await h;
    } catch (const std::runtime_error&) {
      co_return true;
    }
    co_return false;
  };
  EXPECT_TRUE(run(body()));
}

TEST_P(TaskTest, SpawnDetachedRunsTheTaskAndDropsItsException) {
  auto body = []() -> Task<int> {
    int touched = 0;
    spawn_detached(throws());  // nobody can observe it: it must not take the loop down
    spawn_detached(nothing(&touched));
    spawn_detached(after(5ms, "late"));
    co_await sleep_for(20ms);
    co_return touched;
  };
  EXPECT_EQ(run(body()), 1);
}

TEST_P(TaskTest, SpawnDetachedWithNoSchedulerOnTheThreadThrows) {
  EXPECT_THROW(spawn_detached(answer()), std::system_error);
}

TEST_P(TaskTest, SpawnDetachedFromAnotherThreadRuns) {
  std::atomic<int> done{0};
  std::thread t([&] {
    for (int i = 0; i < 100; ++i)
      sched().spawn_detached([](std::atomic<int>* d) -> Task<void> {
        d->fetch_add(1);
        co_return;
      }(&done));
  });
  t.join();
  auto wait = [](std::atomic<int>* d) -> Task<void> {
    for (int i = 0; i < 1000 && d->load() < 100; ++i) co_await sleep_for(1ms);
  };
  run(wait(&done));
  EXPECT_EQ(done.load(), 100);
}

TEST_P(TaskTest, WhenAllCollectsInOrder) {
  auto body = []() -> Task<std::tuple<std::string, int, std::monostate>> {
    int touched = 0;
    auto r = co_await when_all(after(30ms, "slow"), answer(), nothing(&touched));
    EXPECT_EQ(touched, 1);
    co_return r;
  };
  auto [s, v, m] = run(body());
  EXPECT_EQ(s, "slow");
  EXPECT_EQ(v, 42);
  (void)m;
}

TEST_P(TaskTest, WhenAllRunsConcurrently) {
  auto body = []() -> Task<std::chrono::milliseconds> {
    auto t0 = Clock::now();
    std::vector<Task<std::string>> tasks;
    for (int i = 0; i < 10; ++i) tasks.push_back(after(100ms, std::to_string(i)));
    auto r = co_await when_all(std::move(tasks));
    EXPECT_EQ(r.size(), 10u);
    EXPECT_EQ(r[7], "7");
    co_return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  };
  auto took = run(body());
  EXPECT_GE(took, 100ms);
  EXPECT_LT(took, 900ms) << "ten 100 ms sleeps should overlap";
}

TEST_P(TaskTest, WhenAllRethrowsAfterAllFinish) {
  auto body = []() -> Task<bool> {
    try {
      co_await when_all(throws(), after(20ms, "x"));
    } catch (const std::runtime_error&) {
      co_return true;
    }
    co_return false;
  };
  EXPECT_TRUE(run(body()));
}

TEST_P(TaskTest, WhenAnyCancelsAndAwaitsTheLosers) {
  // The loser is blocked in a recv that will never complete; when_any must cancel that
  // kernel operation and wait for the loser to observe it.
  auto body = []() -> Task<void> {
    TcpSocket listener = loopback_listener();
    auto client = TcpSocket::open();
    EXPECT_TRUE(client);
    EXPECT_TRUE(co_await client->connect(*listener.local_address()));
    auto server = co_await listener.accept();
    EXPECT_TRUE(server);
    std::error_code loser_error;
    bool loser_finished = false;
    auto loser = [&]() -> Task<int> {
      char buf[16];
      auto r = co_await server->recv(buf, sizeof(buf));
      if (!r) loser_error = r.error();
      loser_finished = true;
      co_return -1;
    };
    auto r = co_await when_any(loser(), after(20ms, "timer"));
    EXPECT_EQ(r.index(), 1u);
    EXPECT_EQ(std::get<1>(r), "timer");
    EXPECT_TRUE(loser_finished);
    EXPECT_EQ(loser_error, std::errc::operation_canceled);
    // The socket is still usable after the cancelled recv.
    EXPECT_TRUE(co_await client->send_all("ping"));
    char buf[4];
    auto n = co_await recv_exactly(*server, buf, 4);
    EXPECT_TRUE(n && *n == 4);
  };
  run(body());
}

TEST_P(TaskTest, WhenAnyOverList) {
  auto body = []() -> Task<AnyResult<std::string>> {
    std::vector<Task<std::string>> tasks;
    tasks.push_back(after(300ms, "slow"));
    tasks.push_back(after(10ms, "fast"));
    tasks.push_back(after(200ms, "medium"));
    co_return co_await when_any(std::move(tasks));
  };
  auto t0 = Clock::now();
  auto r = run(body());
  EXPECT_EQ(r.index, 1u);
  EXPECT_EQ(r.value, "fast");
  EXPECT_LT(Clock::now() - t0, 250ms) << "losers must be cancelled, not waited out";
}

TEST_P(TaskTest, CancelledJoinHandleStopsTheTask) {
  auto body = []() -> Task<bool> {
    auto sleeper = []() -> Task<bool> {
      auto r = co_await sleep_for(10s);
      co_return !r && r.error() == std::errc::operation_canceled;
    };
    auto h = spawn(sleeper());
    co_await sleep_for(5ms);
    h.cancel();
    co_return co_await h;
  };
  EXPECT_TRUE(run(body(), 5s));
}

TEST_P(TaskTest, SchedulerDestructionDestroysSuspendedFramesExactlyOnce) {
  LiveCounter::live = 0;
  sched_.reset();  // only the scheduler made below may own fds
  const int fds_before = open_fd_count();
  {
    auto s = Scheduler::create({GetParam()});
    ASSERT_TRUE(s);
    Scheduler& sc = **s;
    for (int i = 0; i < 50; ++i) {
      // Each task owns a connected pair and waits in a recv that never completes.
      sc.spawn([]() -> Task<void> {
          LiveCounter c;
          int fds[2];
          EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
          TcpSocket a = std::move(*TcpSocket::adopt(fds[0]));
          TcpSocket b = std::move(*TcpSocket::adopt(fds[1]));
          char buf[64];
          auto r = co_await a.recv(buf, sizeof(buf));
          ADD_FAILURE() << "recv completed during shutdown: " << (r ? "data" : r.error().message());
        }())
          .detach();
      // Half through spawn_detached: no JoinHandle state, destroyed by shutdown all the same.
      auto sleeper = []() -> Task<void> {
        LiveCounter c;
        auto inner = []() -> Task<void> {
          LiveCounter c2;
          co_await sleep_for(std::chrono::hours(1));
        };
        co_await inner();
      };
      if (i % 2 == 0)
        sc.spawn(sleeper()).detach();
      else
        sc.spawn_detached(sleeper());
    }
    // Let them all reach their suspension points.
    sc.block_on([]() -> Task<void> { co_await sleep_for(20ms); }());
    EXPECT_EQ(LiveCounter::live, 150);
    EXPECT_GE(sc.pending_io_ops(), 50u);
  }
  EXPECT_EQ(LiveCounter::live, 0);
  EXPECT_EQ(open_fd_count(), fds_before) << "sockets and backend fds must all be closed";
}

TEST_P(TaskTest, ShutdownWhileSuspendedInWhenAllOrWhenAny) {
  // Regression (found by fuzz_scheduler): destroying a task suspended in when_all/when_any
  // used to free the branch scopes before the branches, and leak the branch drivers.
  LiveCounter::live = 0;
  auto slow = []() -> Task<int> {
    LiveCounter c;
    co_await sleep_for(std::chrono::hours(1));
    co_return 1;
  };
  auto all = [](auto slow) -> Task<void> { (void)co_await when_all(slow(), slow()); };
  auto any = [](auto slow) -> Task<void> { (void)co_await when_any(slow(), slow()); };
  auto list = [](auto slow) -> Task<void> {
    std::vector<Task<int>> v;
    v.push_back(slow());
    v.push_back(slow());
    (void)co_await when_all(std::move(v));
  };
  sched().spawn(all(slow)).detach();
  sched().spawn(any(slow)).detach();
  sched().spawn(list(slow)).detach();
  sched().block_on([]() -> Task<void> { co_await sleep_for(10ms); }());
  EXPECT_EQ(LiveCounter::live, 6);
  sched().shutdown();  // ASan: no use-after-free, no leaked driver frames
  EXPECT_EQ(LiveCounter::live, 0);
}

// A child that finishes without suspending hands control straight back: a long loop of
// them must run in constant stack even where the compiler makes no tail calls (ASan, -O0),
// which symmetric transfer alone needs. (Found by an IPC peer overflowing its stack under
// ASan; fails there without the inline start.)
TEST_P(TaskTest, TasksThatFinishAtOnceRunInConstantStack) {
  auto body = []() -> Task<void> {
    auto one = [](int i) -> Task<int> { co_return i; };
    long long sum = 0;
    for (int i = 0; i < 300'000; ++i) sum += co_await one(i);
    EXPECT_EQ(sum, 300'000LL * 299'999 / 2);
  };
  run(body());
}

GALAY_INSTANTIATE_ALL_BACKENDS(TaskTest);

}  // namespace
}  // namespace galay::test
