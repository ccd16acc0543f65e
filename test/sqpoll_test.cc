// io_uring with a kernel submission-queue poller (Scheduler::Options::io_uring_sqpoll).
// The whole behaviour suite also runs on the io_uring_sqpoll variant of the backend
// parameter (support/harness.h); these tests check what is particular to SQPOLL: what
// describe_backend() says, the poller's CPU pinning, a refused set-up falling back with the
// reason, and operations submitted after the poller went to sleep.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

// An io_uring scheduler with SQPOLL asked for as `opts` says (nullptr if none at all).
std::unique_ptr<Scheduler> make(Scheduler::Options opts) {
  opts.backend = BackendKind::io_uring;
  opts.io_uring_sqpoll = true;
  auto s = Scheduler::create(opts);
  EXPECT_TRUE(s.has_value()) << s.error().message();
  return s ? std::move(*s) : nullptr;
}

bool granted(const Scheduler& s) { return s.describe_backend().find("SQPOLL|") != std::string::npos; }

// make(), skipping the test (with the backend's reason) where SQPOLL is not granted.
#define SQPOLL_SCHEDULER_OR_SKIP(s, opts) \
  auto s = make(opts);                    \
  ASSERT_NE(s, nullptr);                  \
  if (!granted(*s)) GTEST_SKIP() << "SQPOLL not granted here: " << s->describe_backend()

// One echo over loopback TCP: the ring submits, the poller issues, completions come back.
Task<bool> echo_once() {
  auto [client, server] = co_await loopback_tcp_pair();
  const char msg[] = "through the poller";
  if (!co_await client.send_all(std::as_bytes(std::span(msg)))) co_return false;
  char got[sizeof msg] = {};
  auto n = co_await recv_exactly(server, got, sizeof msg);
  co_return n&&* n == sizeof msg&& std::string(got) == msg;
}

// The CPUs the thread `tid` of this process may run on, as /proc writes them ("0", "0-1").
std::string cpus_allowed(const std::string& tid) {
  std::ifstream f("/proc/self/task/" + tid + "/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("Cpus_allowed_list:", 0) == 0) return line.substr(line.find_first_not_of(" \t", 18));
  return {};
}

// The thread ids of this process whose name starts with `prefix`.
std::vector<std::string> threads_named(const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(e.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name.rfind(prefix, 0) == 0) out.push_back(e.path().filename().string());
  }
  return out;
}

class SqpollTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = backend_unavailable_reason(BackendKind::io_uring); !why.empty())
      GTEST_SKIP() << "io_uring backend unavailable: " << why;
  }
};

TEST_F(SqpollTest, GrantedRingSaysSoAndEchoes) {
  Scheduler::Options opts;
  opts.io_uring_sqpoll_idle_ms = 20;
  SQPOLL_SCHEDULER_OR_SKIP(s, opts);
  const std::string d = s->describe_backend();
  EXPECT_NE(d.find("sqpoll-idle=20ms"), std::string::npos) << d;
  EXPECT_EQ(d.find("DEFER_TASKRUN"), std::string::npos) << "SQPOLL excludes the task-run flags: " << d;
  EXPECT_EQ(d.find("refused"), std::string::npos) << d;
  EXPECT_TRUE(s->block_on(echo_once()));
}

TEST_F(SqpollTest, PollerIsPinnedToTheCpuAskedFor) {
  const std::string before_tids = [] {
    std::string all;
    for (const auto& t : threads_named("iou-sqp-")) all += t + ",";
    return all;
  }();
  Scheduler::Options opts;
  opts.io_uring_sqpoll_cpu = 0;
  SQPOLL_SCHEDULER_OR_SKIP(s, opts);
  const std::string d = s->describe_backend();
  EXPECT_NE(d.find("SQ_AFF"), std::string::npos) << d;
  EXPECT_NE(d.find("sqpoll-cpu=0"), std::string::npos) << d;
  EXPECT_TRUE(s->block_on(echo_once()));
  // The kernel names the poller "iou-sqp-<pid>" and makes it a thread of this process.
  std::vector<std::string> pollers;
  for (const auto& t : threads_named("iou-sqp-"))
    if (before_tids.find(t + ",") == std::string::npos) pollers.push_back(t);
  ASSERT_EQ(pollers.size(), 1u) << "expected one new SQPOLL thread";
  EXPECT_EQ(cpus_allowed(pollers[0]), "0");
}

TEST_F(SqpollTest, RefusedSetUpFallsBackToTheOrdinaryRingAndSaysWhy) {
  // A CPU that does not exist: io_uring_setup refuses SQ_AFF with EINVAL.
  Scheduler::Options opts;
  opts.io_uring_sqpoll_cpu = 4095;
  auto s = make(opts);
  ASSERT_NE(s, nullptr);
  const std::string d = s->describe_backend();
  EXPECT_FALSE(granted(*s)) << d;
  EXPECT_NE(d.find("SQPOLL refused: "), std::string::npos) << d;
  EXPECT_NE(d.find("CPU 4095"), std::string::npos) << d;
  EXPECT_EQ(s->backend_kind(), BackendKind::io_uring);
  EXPECT_TRUE(s->block_on(echo_once())) << "the fallback ring must work";
}

TEST_F(SqpollTest, NotAskedMeansNoPollerAndNoNote) {
  auto s = Scheduler::create({BackendKind::io_uring});
  ASSERT_TRUE(s.has_value());
  const std::string d = (*s)->describe_backend();
  EXPECT_EQ(d.find("SQPOLL"), std::string::npos) << d;
  EXPECT_EQ(d.find("sqpoll"), std::string::npos) << d;
}

TEST_F(SqpollTest, OperationsAfterThePollerSleptAreWokenAndComplete) {
  // Idle 1 ms: after each pause below the poller is asleep, and the next submission must
  // wake it (IORING_SQ_NEED_WAKEUP) or the operation would never be issued.
  Scheduler::Options opts;
  opts.io_uring_sqpoll_idle_ms = 1;
  SQPOLL_SCHEDULER_OR_SKIP(s, opts);
  const int rounds = s->block_on([]() -> Task<int> {
    auto [a, b] = co_await loopback_tcp_pair();
    int ok = 0;
    for (int i = 0; i < 20; ++i) {
      co_await sleep_for(10ms);
      const char c = static_cast<char>('a' + i);
      if (!co_await a.send_all(std::as_bytes(std::span(&c, 1)))) break;
      char got = 0;
      auto n = co_await b.recv(&got, 1, 2s);
      if (!n || *n != 1 || got != c) break;
      ++ok;
    }
    co_return ok;
  }());
  EXPECT_EQ(rounds, 20);
}

}  // namespace
}  // namespace galay::test
