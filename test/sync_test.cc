// Task synchronisation primitives (Mutex, Semaphore, Event, Latch, WaitGroup, Channel),
// within one scheduler and across the schedulers of a Runtime, on every backend.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <numeric>
#include <thread>
#include <vector>

#include "galay-kernel/sync/channel.h"
#include "galay-kernel/sync/event.h"
#include "galay-kernel/sync/latch.h"
#include "galay-kernel/sync/mutex.h"
#include "galay-kernel/sync/semaphore.h"
#include "support/runtime_harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;
using sync::Channel;
using sync::Event;
using sync::Latch;
using sync::Mutex;
using sync::Semaphore;
using sync::WaitGroup;

// ---- across two schedulers ----

class ThreadSyncTest : public RuntimeTest {};

Task<void> produce(Channel<std::uint64_t>* ch, WaitGroup* wg, std::uint64_t first, std::uint64_t count) {
  for (std::uint64_t v = first; v < first + count; ++v) {
    auto r = co_await ch->send(v);
    EXPECT_TRUE(r) << r.error().message();
  }
  wg->done();
}

Task<void> close_when_done(Channel<std::uint64_t>* ch, WaitGroup* wg) {
  EXPECT_TRUE(co_await wg->wait());
  ch->close();
}

struct Sum {
  std::uint64_t sum = 0, count = 0;
};

Task<Sum> channel_sum(Runtime* rt, std::size_t capacity, int producers, std::uint64_t per) {
  Channel<std::uint64_t> ch(capacity);
  WaitGroup wg;
  wg.add(producers);
  for (int p = 0; p < producers; ++p) rt->spawn(produce(&ch, &wg, p * per, per)).detach();
  auto closer = rt->spawn(close_when_done(&ch, &wg));
  Sum s;
  for (;;) {
    auto v = co_await ch.recv();
    if (!v) {
      EXPECT_EQ(v.error(), std::errc::broken_pipe);
      break;
    }
    s.sum += *v;
    ++s.count;
  }
  co_await closer;
  co_return s;
}

TEST_P(ThreadSyncTest, ChannelWithSixteenProducersHasTheExactSum) {
  constexpr int kProducers = 16;
  const std::uint64_t per = kSanitized ? 1000 : 20000;
  const std::uint64_t n = kProducers * per;
  for (std::size_t capacity : {Channel<std::uint64_t>::unbounded, std::size_t{64}, std::size_t{1}, std::size_t{0}}) {
    Sum s = run(channel_sum(&rt(), capacity, kProducers, per));
    EXPECT_EQ(s.count, n) << "capacity " << capacity;
    EXPECT_EQ(s.sum, n * (n - 1) / 2) << "capacity " << capacity;
  }
}

Task<void> lock_and_record(Mutex* m, std::vector<int>* order, int id, WaitGroup* wg) {
  auto g = co_await m->scoped_lock();
  EXPECT_TRUE(g);
  order->push_back(id);  // guarded by the mutex
  g->unlock();
  wg->done();
}

Task<std::vector<int>> fifo_order(Runtime* rt, int waiters) {
  Mutex m;
  std::vector<int> order;
  WaitGroup wg;
  EXPECT_TRUE(co_await m.lock());
  for (int k = 0; k < waiters; ++k) {
    wg.add();
    rt->spawn_on(static_cast<std::size_t>(k), lock_and_record(&m, &order, k, &wg)).detach();
    // Queue the waiters in a known order, alternating schedulers.
    while (m.waiters() < static_cast<std::size_t>(k + 1)) co_await sleep_for(50us);
  }
  m.unlock();
  EXPECT_TRUE(co_await wg.wait());
  EXPECT_FALSE(m.is_locked());
  co_return order;
}

TEST_P(ThreadSyncTest, MutexIsFifoAcrossSchedulers) {
  std::vector<int> expected(40);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(run(fifo_order(&rt(), 40)), expected);
}

Task<void> hammer(Mutex* m, long* counter, int iterations, int id, WaitGroup* wg) {
  for (int i = 0; i < iterations; ++i) {
    if (i % 2 == 0) {
      auto g = co_await m->scoped_lock();
      EXPECT_TRUE(g);
      long v = *counter;
      if ((i + id) % 64 == 0) co_await yield();  // hold the lock across a suspension
      *counter = v + 1;
    } else {
      EXPECT_TRUE(co_await m->lock());
      ++*counter;
      m->unlock();
    }
  }
  wg->done();
}

Task<long> contended_mutex(Runtime* rt, int tasks, int iterations) {
  Mutex m;
  long counter = 0;  // plain: TSan checks that the mutex really excludes
  WaitGroup wg;
  wg.add(tasks);
  for (int t = 0; t < tasks; ++t)
    rt->spawn_on(static_cast<std::size_t>(t), hammer(&m, &counter, iterations, t, &wg)).detach();
  EXPECT_TRUE(co_await wg.wait());
  EXPECT_FALSE(m.is_locked());
  EXPECT_EQ(m.waiters(), 0u);
  auto g = co_await m.scoped_lock();  // acquire: the last writer's increment is visible
  co_return counter;
}

TEST_P(ThreadSyncTest, MutexLosesNoWakeupsUnderContention) {
  const int tasks = 16, iterations = kSanitized ? 2000 : 20000;
  EXPECT_EQ(run(contended_mutex(&rt(), tasks, iterations)), static_cast<long>(tasks) * iterations);
}

Task<void> use_permit(Semaphore* sem, std::atomic<int>* inside, std::atomic<int>* peak, WaitGroup* wg) {
  EXPECT_TRUE(co_await sem->acquire());
  int now = inside->fetch_add(1) + 1;
  int seen = peak->load();
  while (now > seen && !peak->compare_exchange_weak(seen, now)) {
  }
  co_await sleep_for(1ms);
  inside->fetch_sub(1);
  sem->release();
  wg->done();
}

Task<int> semaphore_peak(Runtime* rt) {
  Semaphore sem(3);
  std::atomic<int> inside{0}, peak{0};
  WaitGroup wg;
  wg.add(30);
  for (int i = 0; i < 30; ++i) rt->spawn(use_permit(&sem, &inside, &peak, &wg)).detach();
  EXPECT_TRUE(co_await wg.wait());
  EXPECT_EQ(sem.available(), 3u);
  co_return peak.load();
}

TEST_P(ThreadSyncTest, SemaphoreBoundsConcurrency) {
  int peak = run(semaphore_peak(&rt()));
  EXPECT_LE(peak, 3);
  EXPECT_GE(peak, 1);
}

Task<void> wait_event(Event* ev, std::atomic<int>* woken, WaitGroup* wg) {
  EXPECT_TRUE(co_await ev->wait());
  woken->fetch_add(1);
  wg->done();
}

TEST_P(ThreadSyncTest, EventSetFromAnotherThreadWakesEveryWaiter) {
  Event ev;
  std::atomic<int> woken{0};
  WaitGroup wg;
  wg.add(10);
  for (int i = 0; i < 10; ++i) rt().spawn(wait_event(&ev, &woken, &wg)).detach();
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(woken.load(), 0);
  ev.set();  // from the test thread, which runs no scheduler
  run([](WaitGroup* wg) -> Task<void> { EXPECT_TRUE(co_await wg->wait()); }(&wg));
  EXPECT_EQ(woken.load(), 10);
  // Set: waits go straight through. Reset: they suspend again.
  run([](Event* ev) -> Task<void> { EXPECT_TRUE(co_await ev->wait()); }(&ev));
  ev.reset();
  EXPECT_FALSE(ev.is_set());
  auto late = rt().spawn([](Event* ev) -> Task<bool> { co_return static_cast<bool>(co_await ev->wait()); }(&ev));
  std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(late.done());
  ev.set();
  EXPECT_TRUE(run([](JoinHandle<bool>* h) -> Task<bool> { co_return co_await *h; }(&late)));
}

TEST_P(ThreadSyncTest, LatchReleasesWaitersOnAllSchedulers) {
  Latch latch(8);
  std::atomic<int> passed{0};
  WaitGroup wg;
  wg.add(6);
  for (int i = 0; i < 6; ++i)
    rt().spawn([](Latch* l, std::atomic<int>* p, WaitGroup* wg) -> Task<void> {
          EXPECT_TRUE(co_await l->wait());
          p->fetch_add(1);
          wg->done();
        }(&latch, &passed, &wg))
        .detach();
  for (int i = 0; i < 4; ++i)
    rt().spawn([](Latch* l) -> Task<void> {
          l->count_down();
          co_return;
        }(&latch))
        .detach();
  std::thread counter([&] { latch.count_down(3); });  // plain threads may count down too
  counter.join();
  std::this_thread::sleep_for(10ms);
  EXPECT_EQ(passed.load(), 0);
  EXPECT_FALSE(latch.try_wait());
  latch.count_down();
  run([](WaitGroup* wg) -> Task<void> { EXPECT_TRUE(co_await wg->wait()); }(&wg));
  EXPECT_EQ(passed.load(), 6);
  EXPECT_TRUE(latch.try_wait());
}

Task<std::error_code> recv_error(Channel<int>* ch) {
  auto r = co_await ch->recv();
  co_return r ? std::error_code{} : r.error();
}
Task<std::error_code> send_error(Channel<int>* ch, int v) {
  auto r = co_await ch->send(v);
  co_return r ? std::error_code{} : r.error();
}

TEST_P(ThreadSyncTest, CloseWakesEveryWaiterWithBrokenPipe) {
  Channel<int> empty(4);
  std::vector<JoinHandle<std::error_code>> receivers;
  for (int i = 0; i < 4; ++i) receivers.push_back(rt().spawn(recv_error(&empty)));
  Channel<int> full(1);
  ASSERT_TRUE(full.try_send(7));
  std::vector<JoinHandle<std::error_code>> senders;
  for (int i = 0; i < 4; ++i) senders.push_back(rt().spawn(send_error(&full, i)));
  std::this_thread::sleep_for(20ms);
  empty.close();
  full.close();
  auto all = [](std::vector<JoinHandle<std::error_code>>* hs) -> Task<int> {
    int broken = 0;
    for (auto& h : *hs) broken += (co_await h) == std::errc::broken_pipe;
    co_return broken;
  };
  EXPECT_EQ(run(all(&receivers)), 4);
  EXPECT_EQ(run(all(&senders)), 4);
  // Buffered values survive close; then recv fails; send on a closed channel fails.
  auto r = full.try_recv();
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 7);
  EXPECT_EQ(full.try_recv().error(), std::errc::broken_pipe);
  EXPECT_EQ(full.try_send(1).error(), std::errc::broken_pipe);
  EXPECT_EQ(run(send_error(&full, 1)), std::errc::broken_pipe);
  EXPECT_EQ(run(recv_error(&full)), std::errc::broken_pipe);
}

Task<void> nap(std::chrono::milliseconds d) { (void)co_await sleep_for(d); }

// Every wait is cancellable: the waiter leaves the queue and the primitive stays intact.
Task<void> cancelled_waits() {
  Mutex m;
  EXPECT_TRUE(m.try_lock());
  Semaphore sem(0);
  Event ev;
  Latch latch(1);
  Channel<int> ch(0);
  std::error_code errs[6];
  auto lock_wait = [](Mutex* m, std::error_code* out) -> Task<void> {
    auto r = co_await m->lock();
    *out = r ? std::error_code{} : r.error();
  };
  auto sem_wait = [](Semaphore* s, std::error_code* out) -> Task<void> {
    auto r = co_await s->acquire();
    *out = r ? std::error_code{} : r.error();
  };
  auto ev_wait = [](Event* e, std::error_code* out) -> Task<void> {
    auto r = co_await e->wait();
    *out = r ? std::error_code{} : r.error();
  };
  auto latch_wait = [](Latch* l, std::error_code* out) -> Task<void> {
    auto r = co_await l->wait();
    *out = r ? std::error_code{} : r.error();
  };
  auto recv_wait = [](Channel<int>* c, std::error_code* out) -> Task<void> {
    auto r = co_await c->recv();
    *out = r ? std::error_code{} : r.error();
  };
  auto send_wait = [](Channel<int>* c, std::error_code* out) -> Task<void> {
    auto r = co_await c->send(1);
    *out = r ? std::error_code{} : r.error();
  };
  // when_any cancels the wait (the loser) through the task's scope once the sleep wins.
  co_await when_any(lock_wait(&m, &errs[0]), nap(5ms));
  co_await when_any(sem_wait(&sem, &errs[1]), nap(5ms));
  co_await when_any(ev_wait(&ev, &errs[2]), nap(5ms));
  co_await when_any(latch_wait(&latch, &errs[3]), nap(5ms));
  co_await when_any(recv_wait(&ch, &errs[4]), nap(5ms));
  co_await when_any(send_wait(&ch, &errs[5]), nap(5ms));
  for (auto& e : errs) EXPECT_EQ(e, std::errc::operation_canceled) << e.message();
  EXPECT_EQ(m.waiters(), 0u);
  EXPECT_EQ(sem.waiters(), 0u);
  // Nothing was granted to a cancelled waiter.
  m.unlock();
  EXPECT_FALSE(m.is_locked());
  sem.release();
  EXPECT_EQ(sem.available(), 1u);
  EXPECT_EQ(ch.try_recv().error(), std::errc::resource_unavailable_try_again);
}

TEST_P(ThreadSyncTest, WaitsAreCancellable) { run(cancelled_waits()); }

TEST_P(ThreadSyncTest, CancelReachesAWaiterThroughItsJoinHandle) {
  auto body = [](Runtime* rt) -> Task<bool> {
    Mutex m;
    EXPECT_TRUE(m.try_lock());
    // Same scheduler as this task: JoinHandle::cancel must run on the task's thread.
    auto h = rt->spawn_local([](Mutex* m) -> Task<bool> {
      auto r = co_await m->lock();
      co_return !r && r.error() == std::errc::operation_canceled;
    }(&m));
    while (m.waiters() == 0) co_await sleep_for(100us);
    h.cancel();
    bool ok = co_await h;
    m.unlock();
    co_return ok && !m.is_locked();
  };
  EXPECT_TRUE(run(body(&rt())));
}

GALAY_INSTANTIATE_RUNTIME_BACKENDS(ThreadSyncTest);

// ---- on one scheduler (no runtime) ----

class ThreadSyncLocalTest : public BackendTest {};

TEST_P(ThreadSyncLocalTest, ChannelPingPongOnOneScheduler) {
  auto body = []() -> Task<int> {
    Channel<int> ping(0), pong(0);
    auto echo = spawn([](Channel<int>* in, Channel<int>* out) -> Task<void> {
      for (;;) {
        auto v = co_await in->recv();
        if (!v) break;
        EXPECT_TRUE(co_await out->send(*v + 1));
      }
      out->close();
    }(&ping, &pong));
    int v = 0;
    for (int i = 0; i < 1000; ++i) {
      EXPECT_TRUE(co_await ping.send(v));
      auto r = co_await pong.recv();
      if (!r) co_return -1;
      v = *r;
    }
    ping.close();
    co_await echo;
    co_return v;
  };
  EXPECT_EQ(run(body()), 1000);
}

TEST_P(ThreadSyncLocalTest, MutexHandsOffInFifoOrderOnOneScheduler) {
  auto body = []() -> Task<std::vector<int>> {
    Mutex m;
    std::vector<int> order;
    WaitGroup wg;
    EXPECT_TRUE(co_await m.lock());
    for (int k = 0; k < 10; ++k) {
      wg.add();
      spawn(lock_and_record(&m, &order, k, &wg)).detach();
    }
    while (m.waiters() < 10) co_await yield();
    // A newcomer must not barge past the queue while the lock is handed over.
    m.unlock();
    EXPECT_FALSE(m.try_lock());
    EXPECT_TRUE(co_await wg.wait());
    co_return order;
  };
  std::vector<int> expected(10);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(run(body()), expected);
}

TEST_P(ThreadSyncLocalTest, UnboundedChannelBuffersWithoutWaiting) {
  auto body = []() -> Task<long> {
    Channel<int> ch;
    for (int i = 0; i < 10000; ++i) EXPECT_TRUE(co_await ch.send(i));
    EXPECT_EQ(ch.size(), 10000u);
    long sum = 0;
    for (int i = 0; i < 10000; ++i) sum += *co_await ch.recv();
    co_return sum;
  };
  EXPECT_EQ(run(body()), 10000L * 9999 / 2);
}

TEST_P(ThreadSyncLocalTest, DestroyingASuspendedWaiterPassesTheLockOn) {
  // Scheduler teardown destroys frames suspended in a wait; a waiter that was granted the
  // lock but never resumed must hand it on rather than keep it forever.
  Mutex m;
  ASSERT_TRUE(m.try_lock());
  auto waiter = sched().spawn([](Mutex* m) -> Task<void> {
    auto r = co_await m->lock();
    EXPECT_TRUE(r);
    m->unlock();
  }(&m));
  sched().block_on([]() -> Task<void> { co_await yield(); }());  // the waiter queues
  EXPECT_EQ(m.waiters(), 1u);
  m.unlock();          // granted; its resumption is queued on the scheduler
  sched().shutdown();  // destroys the frame before it runs
  EXPECT_FALSE(m.is_locked());
  EXPECT_EQ(m.waiters(), 0u);
}

GALAY_INSTANTIATE_ALL_BACKENDS(ThreadSyncLocalTest);

}  // namespace
}  // namespace galay::test
