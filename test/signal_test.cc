// SignalSet on every backend: a wait gets a signal raised during it or before it, several
// signals in one set, timeout and cancellation, several sets on one signal (each gets
// every delivery), a set on a second scheduler in another thread (process- and
// thread-directed signals), the signal mask restored by the last set, bad numbers, no fd
// leak, a wait pending at scheduler shutdown.
//
// Signals are raised to the whole process with kill(2) (or to one thread with
// pthread_kill). A process-directed signal goes to a thread that does not block it, so the
// fixture first checks that no other thread of the process leaves SIGUSR1/SIGUSR2 unblocked:
// ctest runs one test per process, and the blocking-syscall pool of the epoll and kqueue
// backends is started with them blocked (start_blocking_pool_with_test_signals_blocked);
// in a whole-binary run the pool may have been started earlier, and these tests skip.
#include <dirent.h>
#include <pthread.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>

#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

/// True if the calling thread blocks `sig`.
bool blocked_here(int sig) {
  sigset_t now;
  sigemptyset(&now);
  pthread_sigmask(SIG_BLOCK, nullptr, &now);
  return sigismember(&now, sig) == 1;
}

/// True if `sig` is pending for the calling thread or the process.
bool pending_here(int sig) {
  sigset_t p;
  sigemptyset(&p);
  sigpending(&p);
  return sigismember(&p, sig) == 1;
}

/// The SigBlk mask of thread `tid` of this process, from /proc (0 if unreadable).
unsigned long long blocked_mask_of(const std::string& tid) {
  std::ifstream in("/proc/self/task/" + tid + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("SigBlk:", 0) == 0) return std::stoull(line.substr(7), nullptr, 16);
  return 0;
}

/// A thread of this process other than the caller that does not block `sig` (its tid), or "".
std::string other_thread_not_blocking(int sig) {
  const std::string self = std::to_string(::gettid());
  std::string found;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(d)) {
      const std::string tid = e->d_name;
      if (tid == "." || tid == ".." || tid == self) continue;
      if ((blocked_mask_of(tid) & (1ull << (sig - 1))) == 0) found = tid;
    }
    ::closedir(d);
  }
  return found;
}

/// kill(getpid(), sig): the signal goes to the process, not to a thread.
void raise_to_process(int sig) { ASSERT_EQ(::kill(::getpid(), sig), 0); }

/// One wait on `s`, as a task. (Not `co_return co_await`: GCC 12 destroys its temporaries twice.)
Task<Expected<int>> wait_task(SignalSet* s, Timeout timeout = std::chrono::seconds(5)) {
  auto r = co_await s->wait(timeout);
  co_return r;
}

Task<void> sleep_task(std::chrono::milliseconds d) { (void)co_await sleep_for(d); }

/// True once `*v == want` (polled every millisecond for up to 5 s).
template <class T>
Task<bool> eventually(const std::atomic<T>* v, T want) {
  for (int i = 0; i < 5000 && v->load() != want; ++i) (void)co_await sleep_for(1ms);
  co_return v->load() == want;
}

/// The epoll and kqueue backends start a process-wide pool of blocking-syscall threads with
/// their creator's signal mask. Start it here with the test signals blocked, as a program
/// does by calling block_signals() in main() before its first scheduler; then unblock them
/// again in this thread, where the tests check the mask.
void start_blocking_pool_with_test_signals_blocked() {
  static std::once_flag once;
  std::call_once(once, [] {
    sigset_t test_signals, old;
    sigemptyset(&test_signals);
    for (int sig : {SIGUSR1, SIGUSR2, static_cast<int>(SIGRTMIN)}) sigaddset(&test_signals, sig);
    pthread_sigmask(SIG_BLOCK, &test_signals, &old);
    { auto starts_the_pool = Scheduler::create({BackendKind::epoll}); }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  });
}

class SignalTest : public BackendTest {
 protected:
  void SetUp() override {
    start_blocking_pool_with_test_signals_blocked();
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    for (int sig : {SIGUSR1, SIGUSR2}) {
      ASSERT_FALSE(blocked_here(sig)) << "signal " << sig << " is blocked before the test";
      ASSERT_FALSE(pending_here(sig)) << "signal " << sig << " is pending before the test";
      if (std::string tid = other_thread_not_blocking(sig); !tid.empty())
        GTEST_SKIP() << "thread " << tid << " (not this test's) leaves signal " << sig
                     << " unblocked and would take it; run one test per process (ctest)";
    }
  }
};

TEST_P(SignalTest, WaitGetsASignalRaisedWhileItWaits) {
  auto body = []() -> Task<void> {
    auto set = SignalSet::create({SIGUSR1});
    CO_ASSERT_TRUE(set);
    EXPECT_TRUE(set->contains(SIGUSR1));
    EXPECT_FALSE(set->contains(SIGUSR2));
    EXPECT_TRUE(blocked_here(SIGUSR1));
    auto raiser = spawn([]() -> Task<void> {
      co_await sleep_for(20ms);
      raise_to_process(SIGUSR1);
    }());
    const auto start = Clock::now();
    auto sig = co_await set->wait(5s);
    CO_ASSERT_TRUE(sig);
    EXPECT_EQ(*sig, SIGUSR1);
    EXPECT_GE(Clock::now() - start, 15ms) << "it did not wait for the signal";
    co_await raiser;
    // Again, with no timeout at all.
    auto again = spawn([]() -> Task<void> {
      co_await sleep_for(5ms);
      raise_to_process(SIGUSR1);
    }());
    auto sig2 = co_await set->wait();
    EXPECT_TRUE(sig2 && *sig2 == SIGUSR1);
    co_await again;
  };
  run(body());
}

TEST_P(SignalTest, ASignalRaisedBeforeTheWaitIsDeliveredAndRepeatsCoalesce) {
  auto body = []() -> Task<void> {
    auto set = SignalSet::create({SIGUSR1});
    CO_ASSERT_TRUE(set);
    // Three of the same standard signal before anyone waits: pending once, as in the kernel.
    for (int i = 0; i < 3; ++i) raise_to_process(SIGUSR1);
    auto sig = co_await set->wait(5s);
    CO_ASSERT_TRUE(sig);
    EXPECT_EQ(*sig, SIGUSR1);
    auto more = co_await set->wait(50ms);
    CO_ASSERT_FALSE(more);
    EXPECT_EQ(more.error(), std::errc::timed_out);
  };
  run(body());
}

TEST_P(SignalTest, RealTimeSignalsAreCountedOneWaitEach) {
  const int rt = SIGRTMIN;
  if (std::string tid = other_thread_not_blocking(rt); !tid.empty())
    GTEST_SKIP() << "thread " << tid << " leaves signal " << rt << " unblocked";
  auto body = [](int rt) -> Task<void> {
    auto set = SignalSet::create({rt, SIGUSR1});
    CO_ASSERT_TRUE(set);
    for (int i = 0; i < 3; ++i) {
      const sigval value{.sival_int = i};
      CO_ASSERT_TRUE(::sigqueue(::getpid(), rt, value) == 0);
    }
    for (int i = 0; i < 3; ++i) {
      auto sig = co_await set->wait(5s);
      CO_ASSERT_TRUE(sig);
      EXPECT_EQ(*sig, rt);
    }
    auto none = co_await set->wait(30ms);
    EXPECT_TRUE(!none && none.error() == std::errc::timed_out);
  };
  run(body(rt));
  EXPECT_FALSE(blocked_here(rt));
}

TEST_P(SignalTest, TwoSignalsInOneSet) {
  auto body = []() -> Task<void> {
    auto set = SignalSet::create({SIGUSR1, SIGUSR2});
    CO_ASSERT_TRUE(set);
    // Both pending: the lowest number first, whatever the order they came in.
    raise_to_process(SIGUSR2);
    raise_to_process(SIGUSR1);
    auto first = co_await set->wait(5s);
    auto second = co_await set->wait(5s);
    CO_ASSERT_TRUE(first && second);
    EXPECT_EQ(*first, SIGUSR1);
    EXPECT_EQ(*second, SIGUSR2);
    // One at a time while waiting.
    for (int sig : {SIGUSR2, SIGUSR1}) {
      auto raiser = spawn([](int s) -> Task<void> {
        co_await sleep_for(10ms);
        raise_to_process(s);
      }(sig));
      auto got = co_await set->wait(5s);
      EXPECT_TRUE(got && *got == sig) << sig;
      co_await raiser;
    }
  };
  run(body());
}

TEST_P(SignalTest, TimeoutAndNothingLostAfterIt) {
  auto body = []() -> Task<void> {
    auto set = SignalSet::create({SIGUSR1});
    CO_ASSERT_TRUE(set);
    const auto start = Clock::now();
    auto r = co_await set->wait(30ms);
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), std::errc::timed_out);
    EXPECT_GE(Clock::now() - start, 25ms);
    // A zero (or negative) timeout: at once.
    auto now = co_await set->wait(0ms);
    EXPECT_TRUE(!now && now.error() == std::errc::timed_out);
    // ... but a pending signal still wins over a zero timeout.
    raise_to_process(SIGUSR1);
    auto got = co_await set->wait(0ms);
    EXPECT_TRUE(got && *got == SIGUSR1);
  };
  run(body());
}

TEST_P(SignalTest, CancellationAndNothingLostAfterIt) {
  auto body = []() -> Task<void> {
    auto set = SignalSet::create({SIGUSR1});
    CO_ASSERT_TRUE(set);
    auto waiter = spawn(wait_task(&*set, {}));
    co_await sleep_for(20ms);  // suspended in the wait by now
    waiter.cancel();
    auto r = co_await waiter;
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), std::errc::operation_canceled);
    // A task cancelled before it waits fails at once, and leaves a pending signal alone.
    raise_to_process(SIGUSR1);
    auto doomed = spawn([](SignalSet* s) -> Task<Expected<int>> {
      CancelScope* scope = co_await current_scope();
      scope->cancel();
      auto r = co_await s->wait(5s);
      co_return r;
    }(&*set));
    auto d = co_await doomed;
    EXPECT_TRUE(!d && d.error() == std::errc::operation_canceled);
    auto got = co_await set->wait(5s);
    EXPECT_TRUE(got && *got == SIGUSR1);
    // A wait that loses a when_any (the timer wins) is cancelled; the set stays usable.
    auto lost = co_await when_any(wait_task(&*set), sleep_task(10ms));
    EXPECT_EQ(lost.index(), 1u);
    raise_to_process(SIGUSR1);
    auto after = co_await set->wait(5s);
    EXPECT_TRUE(after && *after == SIGUSR1);
  };
  run(body());
}

TEST_P(SignalTest, CloseWhileWaitingAndOneWaiterAtATime) {
  auto body = []() -> Task<void> {
    auto set = SignalSet::create({SIGUSR1});
    CO_ASSERT_TRUE(set);
    auto waiter = spawn(wait_task(&*set));
    co_await sleep_for(10ms);
    auto busy = co_await set->wait(10ms);
    CO_ASSERT_FALSE(busy);
    EXPECT_EQ(busy.error(), std::errc::device_or_resource_busy);
    set->close();
    auto r = co_await waiter;
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), std::errc::operation_canceled);
    auto after = co_await set->wait(10ms);
    EXPECT_TRUE(!after && after.error() == std::errc::bad_file_descriptor);
    EXPECT_FALSE(blocked_here(SIGUSR1)) << "closing the last set restores the mask";
    // A moved-from set is empty.
    auto a = SignalSet::create({SIGUSR2});
    CO_ASSERT_TRUE(a);
    SignalSet b = std::move(*a);
    auto empty = co_await a->wait(10ms);  // NOLINT(bugprone-use-after-move): testing it
    EXPECT_TRUE(!empty && empty.error() == std::errc::bad_file_descriptor);
    EXPECT_EQ(a->add(SIGUSR1).error(), std::errc::bad_file_descriptor);
    EXPECT_TRUE(b.contains(SIGUSR2));
  };
  run(body());
}

TEST_P(SignalTest, TwoSetsOnOneSignalEachGetEveryDelivery) {
  auto body = []() -> Task<void> {
    auto a = SignalSet::create({SIGUSR1, SIGUSR2});
    auto b = SignalSet::create({SIGUSR1});
    CO_ASSERT_TRUE(a && b);
    // Both waiting: one signal wakes both.
    auto wa = spawn(wait_task(&*a));
    auto wb = spawn(wait_task(&*b));
    co_await sleep_for(10ms);
    raise_to_process(SIGUSR1);
    auto ra = co_await wa;
    auto rb = co_await wb;
    EXPECT_TRUE(ra && *ra == SIGUSR1);
    EXPECT_TRUE(rb && *rb == SIGUSR1);
    // Only `a` waits: it reads the signal and keeps b's delivery for b's next wait.
    auto wa2 = spawn(wait_task(&*a));
    co_await sleep_for(10ms);
    raise_to_process(SIGUSR1);
    auto ra2 = co_await wa2;
    EXPECT_TRUE(ra2 && *ra2 == SIGUSR1);
    auto rb2 = co_await b->wait(0ms);
    EXPECT_TRUE(rb2 && *rb2 == SIGUSR1) << "b lost the delivery a read";
    // Nobody waits: whichever set reads first hands the other its copy; once each.
    raise_to_process(SIGUSR1);
    auto rb3 = co_await b->wait(5s);
    auto ra3 = co_await a->wait(5s);
    EXPECT_TRUE(ra3 && *ra3 == SIGUSR1);
    EXPECT_TRUE(rb3 && *rb3 == SIGUSR1);
    auto none_a = co_await a->wait(20ms);
    auto none_b = co_await b->wait(20ms);
    EXPECT_TRUE(!none_a && none_a.error() == std::errc::timed_out);
    EXPECT_TRUE(!none_b && none_b.error() == std::errc::timed_out);
    // A signal only `a` watches never reaches b.
    raise_to_process(SIGUSR2);
    auto only_a = co_await a->wait(5s);
    EXPECT_TRUE(only_a && *only_a == SIGUSR2);
    auto not_b = co_await b->wait(20ms);
    EXPECT_TRUE(!not_b && not_b.error() == std::errc::timed_out);
  };
  run(body());
}

TEST_P(SignalTest, ASetOnASecondSchedulerInAnotherThread) {
  // This thread's set blocks SIGUSR1 before the other thread starts (which inherits that).
  auto mine = SignalSet::create({SIGUSR1});
  ASSERT_TRUE(mine);
  std::atomic<int> received{0};    // signals the other thread's set got
  std::atomic<bool> ready{false};  // its set exists and checked the binding
  std::atomic<bool> wrong_sched_ok{false};
  run([](SignalSet* mine) -> Task<void> {  // bind `mine` to this scheduler
    auto r = co_await mine->wait(1ms);
    EXPECT_TRUE(!r && r.error() == std::errc::timed_out);
  }(&*mine));
  const BackendKind kind = GetParam();
  std::thread other([&] {
    auto s = Scheduler::create({.backend = kind});
    if (!s) {
      ADD_FAILURE() << s.error().message();
      ready = true;
      return;
    }
    (*s)->block_on([](SignalSet* mine, std::atomic<int>* received, std::atomic<bool>* ready,
                      std::atomic<bool>* wrong_sched_ok) -> Task<void> {
      // `mine` belongs to the first thread's scheduler.
      auto refused = co_await mine->wait(1ms);
      wrong_sched_ok->store(!refused && refused.error() == std::errc::operation_not_permitted);
      auto theirs = SignalSet::create({SIGUSR1});
      if (!theirs) {
        ready->store(true);
        co_return;
      }
      ready->store(true);
      // No timeout: a signal that this thread's own signalfd does not show (directed to the
      // first thread) must wake this wait through the hand-over.
      for (int i = 0; i < 3; ++i) {
        auto sig = co_await theirs->wait(10s);
        if (!sig) break;
        if (*sig == SIGUSR1) received->fetch_add(1);
      }
    }(&*mine, &received, &ready, &wrong_sched_ok));
  });
  const pthread_t other_thread = other.native_handle();
  auto body = [](SignalSet* mine, std::atomic<int>* received, std::atomic<bool>* ready,
                 pthread_t other_thread) -> Task<void> {
    CO_ASSERT_TRUE(co_await eventually(ready, true));
    // 1. To the process: both sets, each on its own scheduler.
    raise_to_process(SIGUSR1);
    auto a = co_await mine->wait(5s);
    EXPECT_TRUE(a && *a == SIGUSR1);
    EXPECT_TRUE(co_await eventually(received, 1)) << received->load();
    // 2. To the other thread only: its set reads it and hands this one its copy.
    EXPECT_EQ(::pthread_kill(other_thread, SIGUSR1), 0);
    auto b = co_await mine->wait(5s);
    EXPECT_TRUE(b && *b == SIGUSR1);
    EXPECT_TRUE(co_await eventually(received, 2)) << received->load();
    // 3. To this thread only: the other way round.
    EXPECT_EQ(::pthread_kill(::pthread_self(), SIGUSR1), 0);
    auto c = co_await mine->wait(5s);
    EXPECT_TRUE(c && *c == SIGUSR1);
    EXPECT_TRUE(co_await eventually(received, 3)) << received->load();
  };
  run(body(&*mine, &received, &ready, other_thread));
  other.join();
  EXPECT_TRUE(wrong_sched_ok.load()) << "a wait from another scheduler was not refused";
  EXPECT_EQ(received.load(), 3);
  EXPECT_TRUE(blocked_here(SIGUSR1));  // `mine` still watches
  mine->close();
  EXPECT_FALSE(blocked_here(SIGUSR1));
  EXPECT_FALSE(pending_here(SIGUSR1));
}

TEST_P(SignalTest, TheLastSetRestoresTheMask) {
  auto body = []() -> Task<void> {
    {
      auto a = SignalSet::create({SIGUSR1});
      CO_ASSERT_TRUE(a);
      EXPECT_TRUE(blocked_here(SIGUSR1));
      {
        auto b = SignalSet::create({SIGUSR1, SIGUSR2});
        CO_ASSERT_TRUE(b);
        EXPECT_TRUE(blocked_here(SIGUSR2));
        auto r = co_await b->wait(1ms);  // registered with the backend, then closed through it
        EXPECT_TRUE(!r && r.error() == std::errc::timed_out);
      }
      EXPECT_TRUE(blocked_here(SIGUSR1)) << "a still watches SIGUSR1";
      EXPECT_FALSE(blocked_here(SIGUSR2)) << "b was the last to watch SIGUSR2";
      auto r = co_await a->wait(1ms);
      EXPECT_TRUE(!r && r.error() == std::errc::timed_out);
      // Pending and never read when the last set goes: discarded, not handed to the
      // default action (which would end this process).
      raise_to_process(SIGUSR1);
      EXPECT_TRUE(pending_here(SIGUSR1));
    }
    EXPECT_FALSE(blocked_here(SIGUSR1));
    EXPECT_FALSE(pending_here(SIGUSR1));
    // add() and remove() count the same way.
    auto c = SignalSet::create({});
    CO_ASSERT_TRUE(c);
    EXPECT_TRUE(c->add(SIGUSR2));
    EXPECT_TRUE(c->add(SIGUSR2));  // already there: no-op
    EXPECT_TRUE(blocked_here(SIGUSR2));
    raise_to_process(SIGUSR2);
    auto got = co_await c->wait(5s);
    EXPECT_TRUE(got && *got == SIGUSR2);
    EXPECT_TRUE(c->remove(SIGUSR2));
    EXPECT_TRUE(c->remove(SIGUSR2));  // not there: no-op
    EXPECT_FALSE(c->contains(SIGUSR2));
    EXPECT_FALSE(blocked_here(SIGUSR2));
    // A signal blocked before the first set stays blocked after the last one.
    EXPECT_TRUE(block_signals({SIGUSR2}));
    {
      auto d = SignalSet::create({SIGUSR2});
      CO_ASSERT_TRUE(d);
    }
    EXPECT_TRUE(blocked_here(SIGUSR2));
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &usr2, nullptr);
    // block_signals() while a set that blocked the signal exists: it stays blocked.
    {
      auto e = SignalSet::create({SIGUSR2});
      CO_ASSERT_TRUE(e);
      EXPECT_TRUE(block_signals({SIGUSR2}));
    }
    EXPECT_TRUE(blocked_here(SIGUSR2));
    pthread_sigmask(SIG_UNBLOCK, &usr2, nullptr);
  };
  run(body());
  EXPECT_FALSE(blocked_here(SIGUSR1));
  EXPECT_FALSE(blocked_here(SIGUSR2));
}

TEST_P(SignalTest, BadSignalNumbersAreRefused) {
  for (int bad : {0, -1, NSIG, NSIG + 1, 1000, SIGKILL, SIGSTOP}) {
    auto s = SignalSet::create({bad});
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error(), std::errc::invalid_argument) << bad;
    auto b = block_signals({bad});
    EXPECT_TRUE(!b && b.error() == std::errc::invalid_argument) << bad;
  }
#if defined(__GLIBC__)
  EXPECT_FALSE(SignalSet::create({32}));  // reserved by glibc (thread cancellation)
#endif
  // One bad number refuses the whole set, and nothing else is watched or blocked.
  auto mixed = SignalSet::create({SIGUSR1, SIGKILL});
  ASSERT_FALSE(mixed);
  EXPECT_EQ(mixed.error(), std::errc::invalid_argument);
  EXPECT_FALSE(blocked_here(SIGUSR1));
  auto partial = block_signals({SIGUSR1, SIGSTOP});
  EXPECT_FALSE(partial);
  EXPECT_FALSE(blocked_here(SIGUSR1));
  auto set = SignalSet::create({SIGUSR1});
  ASSERT_TRUE(set);
  for (int bad : {0, NSIG, SIGKILL, SIGSTOP}) {
    EXPECT_EQ(set->add(bad).error(), std::errc::invalid_argument) << bad;
    EXPECT_EQ(set->remove(bad).error(), std::errc::invalid_argument) << bad;
    EXPECT_FALSE(set->contains(bad));
  }
  EXPECT_TRUE(set->contains(SIGUSR1));
}

TEST_P(SignalTest, NoDescriptorLeaks) {
  const int before = open_fd_count();
  auto body = []() -> Task<void> {
    for (int round = 0; round < 3; ++round) {
      auto a = SignalSet::create({SIGUSR1, SIGUSR2});
      auto b = SignalSet::create({SIGUSR1});
      CO_ASSERT_TRUE(a && b);
      raise_to_process(SIGUSR1);
      auto got = co_await a->wait(5s);
      EXPECT_TRUE(got && *got == SIGUSR1);
      auto handed = co_await b->wait(5s);
      EXPECT_TRUE(handed && *handed == SIGUSR1);
      auto timed = co_await b->wait(1ms);
      EXPECT_FALSE(timed);
      auto waiter = spawn(wait_task(&*a, {}));
      co_await sleep_for(5ms);
      if (round == 0) {
        waiter.cancel();
      } else {
        a->close();  // closed while a wait is pending
      }
      auto r = co_await waiter;
      EXPECT_FALSE(r);
    }
  };
  run(body());
  EXPECT_EQ(open_fd_count(), before);
  EXPECT_FALSE(blocked_here(SIGUSR1));
  EXPECT_FALSE(blocked_here(SIGUSR2));
}

TEST_P(SignalTest, SchedulerShutdownWithAWaitPending) {
  const int before = open_fd_count();
  sched()
      .spawn([]() -> Task<void> {
        auto set = SignalSet::create({SIGUSR1});
        if (!set) co_return;
        (void)co_await set->wait();  // still pending when the scheduler shuts down
      }())
      .detach();
  run([]() -> Task<void> { co_await sleep_for(20ms); }());
  sched().shutdown();  // cancels the wait, destroys the frame and with it the set
  EXPECT_FALSE(blocked_here(SIGUSR1));
  EXPECT_EQ(open_fd_count(), before);
}

GALAY_INSTANTIATE_ALL_BACKENDS(SignalTest);

}  // namespace
}  // namespace galay::test
