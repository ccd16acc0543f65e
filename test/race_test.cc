// Interleavings on every backend: the orders in which completions, cancels, closes and fd
// reuse can arrive, each driven on purpose. One test per defect of docs/reliability.md's
// "races" table (numbered as there); each was written before its fix and seen failing.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "galay-kernel/net/zero_copy.h"
#include "galay-kernel/sync/event.h"
#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

class RaceTest : public BackendTest {};

// Whether `fd` names an open file (chaos decoys, parked on closed numbers, are retired first).
bool fd_is_open(int fd) {
  chaos::retire_all();
  return ::fcntl(fd, F_GETFD) != -1;
}

// Fills every free fd number below `target` (kept open while this lives), so that once
// `target` is closed it is the lowest free number: the next descriptor made takes it.
struct FdHoles {
  explicit FdHoles(int target) {
    for (;;) {
      int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0) break;
      if (fd > target) {
        ::close(fd);
        break;
      }
      if (fd == target) {  // target is already free: give it back
        ::close(fd);
        break;
      }
      held.push_back(fd);
    }
  }
  ~FdHoles() {
    for (int fd : held) ::close(fd);
  }
  std::vector<int> held;
};

// The tests below want a closed fd number taken by the next descriptor. Under chaos mode a
// decoy may hold it instead, and the decoy itself then checks that nothing uses the number.
void expect_reused(int got, int wanted) {
  if (!chaos::enabled()) {
    EXPECT_EQ(got, wanted) << "the test wants the fd number reused";
  }
}

// A connected AF_UNIX pair made synchronously, so it takes the lowest free fd numbers at
// once (before the loop runs again).
struct UnixPair {
  int fds[2] = {-1, -1};
  UnixPair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0); }
  ~UnixPair() {
    for (int fd : fds)
      if (fd >= 0) ::close(fd);
  }
  // Bytes readable on the other end (what was written into fds[0]), drained.
  std::size_t pending_on_peer() const {
    std::size_t n = 0;
    char buf[65536];
    for (ssize_t r; (r = ::recv(fds[1], buf, sizeof buf, MSG_DONTWAIT)) > 0;) n += static_cast<std::size_t>(r);
    return n;
  }
};

// ---- 1. close() during send_all must not send the rest on a reused fd number ----

TEST_P(RaceTest, R01_CloseDuringSendAllSendsNothingOnTheReusedFdNumber) {
  auto body = []() -> Task<void> {
    constexpr std::size_t kBig = 64u << 20;
    std::vector<char> big(kBig, 'A');
    int mid_send = 0;  // rounds where the close really landed in the middle of the send
    for (int round = 0; round < 40; ++round) {
      auto [a, a_peer] = co_await loopback_tcp_pair();
      const int a_fd = a.native_handle();
      auto writer = spawn([](TcpSocket* s, const std::vector<char>* buf) -> Task<std::error_code> {
        auto r = co_await s->send_all(buf->data(), buf->size());
        co_return r ? std::error_code{} : r.error();
      }(&a, &big));
      // A reader on its own thread keeps room in the socket buffer, so the send completes
      // in many partial pieces; close lands in the middle of them. The reader is held to
      // about 256 MiB/s (a pause after each 64 KiB): the whole 64 MiB then takes at least
      // a quarter of a second, so even on a loaded machine the loop sees `close_at` and
      // closes long before the send could finish.
      std::atomic<bool> stop{false};
      std::atomic<std::size_t> got{0};
      std::thread reader([fd = a_peer.native_handle(), &stop, &got] {
        std::vector<char> sink(1 << 16);
        while (!stop.load()) {
          pollfd p{fd, POLLIN, 0};
          if (::poll(&p, 1, 10) <= 0) continue;
          const ssize_t n = ::recv(fd, sink.data(), sink.size(), 0);
          if (n <= 0) break;
          got += static_cast<std::size_t>(n);
          std::this_thread::sleep_for(250us);
        }
      });
      const std::size_t close_at = (2u + static_cast<unsigned>(round) % 8u) << 20;
      while (got.load() < close_at) co_await sleep_for(50us);
      FdHoles holes(a_fd);
      { TcpSocket gone = std::move(a); }  // destroyed with the send_all still in flight
      // The number is reused at once by a connected socket: any send still aimed at the
      // number would land there.
      UnixPair reuse;
      expect_reused(reuse.fds[0], a_fd);
      co_await sleep_for(50ms);
      stop = true;
      reader.join();
      const std::size_t leaked = reuse.pending_on_peer();
      EXPECT_EQ(leaked, 0u) << "round " << round << ": bytes of the closed connection arrived on the new one";
      const std::error_code result = co_await writer;
      if (got.load() < kBig) {  // the close came first: the send must say so
        ++mid_send;
        EXPECT_EQ(result, std::errc::operation_canceled) << "round " << round;
      }
      if (leaked != 0) co_return;
    }
    EXPECT_GE(mid_send, 30) << "the close rarely landed mid-send: the test did not test";
  };
  run(body(), 120s);
}

// ---- 2. a StreamReceiver starved of pool buffers ends when its socket closes ----

TEST_P(RaceTest, R02_StarvedStreamReceiverEndsOnCloseAndNeverReadsTheReusedFd) {
  auto body = []() -> Task<void> {
    auto pool = BufferPool::create(2, 1024);
    CO_ASSERT_TRUE(pool);
    auto [client, server] = co_await loopback_tcp_pair();
    const int server_fd = server.native_handle();
    StreamReceiver rx(server, **pool);
    EXPECT_TRUE(co_await client.send_all(std::string(8192, 'a')));
    // Hold every pool buffer, so the next receive waits for one.
    std::vector<PooledChunk> held;
    while (held.size() < 2) {
      auto c = co_await rx.recv(2s);
      CO_ASSERT_TRUE(c && !c->empty());
      held.push_back(std::move(*c));
    }
    auto waiting = spawn([](StreamReceiver* r) -> Task<std::error_code> {
      auto c = co_await r->recv(5s);
      co_return c ? std::error_code{} : c.error();
    }(&rx));
    co_await sleep_for(10ms);
    FdHoles holes(server_fd);
    EXPECT_TRUE(co_await server.close());
    EXPECT_EQ(co_await waiting, std::errc::operation_canceled);
    // Another socket gets the number; its bytes belong to it alone.
    UnixPair reuse;
    expect_reused(reuse.fds[0], server_fd);
    EXPECT_EQ(::send(reuse.fds[1], "for b only", 10, MSG_NOSIGNAL), 10);
    held.clear();  // buffers come back: a starved receiver would re-arm now
    co_await sleep_for(20ms);
    auto again = co_await rx.recv(200ms);
    CO_ASSERT_FALSE(again);
    EXPECT_EQ(again.error(), std::errc::bad_file_descriptor);
    char buf[32] = {};
    EXPECT_EQ(::recv(reuse.fds[0], buf, sizeof buf, MSG_DONTWAIT), 10) << "another receiver took the bytes";
  };
  run(body());
}

// ---- 3. send_all cut short by a deadline or a cancel is an error, never a short success ----

TEST_P(RaceTest, R03_SendAllCutShortByADeadlineOrCancelIsAnError) {
  auto body = []() -> Task<void> {
    std::vector<char> big(16u << 20, 'x');
    for (int round = 0; round < 6; ++round) {
      auto [a, peer] = co_await loopback_tcp_pair();
      // A slow reader: the send completes in many partial pieces.
      auto reader = spawn([](TcpSocket* p) -> Task<void> {
        std::vector<char> buf(1 << 16);
        for (;;) {
          auto n = co_await p->recv(buf.data(), buf.size(), 2s);
          if (!n || *n == 0) co_return;
          co_await sleep_for(1ms);
        }
      }(&peer));
      if (round % 2 == 0) {
        auto r = co_await a.send_all(big.data(), big.size(), 30ms);
        EXPECT_FALSE(r) << "round " << round << ": success with " << (r ? *r : 0) << " of " << big.size();
        if (!r) {
          EXPECT_EQ(r.error(), std::errc::timed_out);
        }
      } else {
        auto sender = spawn([](TcpSocket* s, const std::vector<char>* b) -> Task<Expected<std::size_t>> {
          co_return co_await s->send_all(b->data(), b->size());
        }(&a, &big));
        co_await sleep_for(30ms);
        sender.cancel();
        auto r = co_await sender;
        EXPECT_FALSE(r) << "round " << round << ": success with " << (r ? *r : 0) << " of " << big.size();
        if (!r) {
          EXPECT_EQ(r.error(), std::errc::operation_canceled);
        }
      }
      EXPECT_TRUE(co_await a.close());
      co_await reader;
    }
  };
  run(body(), 60s);
}

// ---- 4. buffers of 4 GiB and more are not truncated to 32 bits ----

struct HugeMapping {
  explicit HugeMapping(std::size_t n) : size(n) {
    void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    data = p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
  }
  ~HugeMapping() {
    if (data) ::munmap(data, size);
  }
  std::size_t size;
  std::byte* data = nullptr;
};

TEST_P(RaceTest, R04_FourGibBuffersAreNotTruncated) {
  HugeMapping huge((std::size_t{1} << 32) + 4096);
  if (huge.data == nullptr) GTEST_SKIP() << "cannot map 4 GiB of address space here";
  auto body = [](std::byte* mem) -> Task<void> {
    auto [a, b] = co_await loopback_tcp_pair();
    for (std::size_t size : {std::size_t{1} << 32, (std::size_t{1} << 32) + 5}) {
      EXPECT_TRUE(co_await b.send_all(std::string("hello")));
      auto n = co_await a.recv(std::span(mem, size), 2s);
      CO_ASSERT_TRUE(n);
      EXPECT_EQ(*n, 5u) << "recv of a " << size << "-byte span";
    }
    // Nobody reads: a 4 GiB send_all can only time out, never succeed early.
    auto s = co_await a.send_all(std::span<const std::byte>(mem, std::size_t{1} << 32), 200ms);
    EXPECT_FALSE(s) << "send_all of 4 GiB returned success with " << (s ? *s : 0);
    if (!s) {
      EXPECT_EQ(s.error(), std::errc::timed_out);
    }
  };
  run(body(huge.data));
}

// ---- 5. file offsets at or past 2^63 are invalid on every path ----

TEST_P(RaceTest, R05_FileOffsetsPastInt64MaxAreInvalidEverywhere) {
  auto body = []() -> Task<void> {
    char path[] = "/tmp/galay_offset_XXXXXX";
    int raw = ::mkstemp(path);
    CO_ASSERT_TRUE(raw >= 0);
    ::close(raw);
    auto f = File::open(path, O_RDWR);
    ::unlink(path);
    CO_ASSERT_TRUE(f);
    const std::string head = "the start of the file";
    EXPECT_TRUE(co_await f->write_at(head.data(), head.size(), 0));
    char buf[8] = {'X', 'X', 'X', 'X', 'X', 'X', 'X', 'X'};
    iovec iov{buf, sizeof buf};
    for (std::uint64_t off : {std::numeric_limits<std::uint64_t>::max(), std::uint64_t{1} << 63}) {
      auto w = co_await f->write_at(buf, sizeof buf, off);
      EXPECT_FALSE(w);
      if (!w) {
        EXPECT_EQ(w.error(), std::errc::invalid_argument);
      }
      auto r = co_await f->read_at(buf, sizeof buf, off);
      EXPECT_FALSE(r);
      if (!r) {
        EXPECT_EQ(r.error(), std::errc::invalid_argument);
      }
      auto wv = co_await f->writev_at(std::span(&iov, 1), off);
      EXPECT_FALSE(wv);
      auto rv = co_await f->readv_at(std::span(&iov, 1), off);
      EXPECT_FALSE(rv);
      auto fa = co_await f->fallocate(0, off, 4096);
      EXPECT_FALSE(fa);
      FileBatch batch(2);
      batch.write_at(*f, std::as_bytes(std::span(buf)), off);
      batch.read_at(*f, std::as_writable_bytes(std::span(buf)), off);
      EXPECT_FALSE(co_await batch.submit());
      for (std::size_t i = 0; i < 2; ++i) {
        auto res = batch.result(i);
        EXPECT_FALSE(res);
        if (!res) {
          EXPECT_EQ(res.error(), std::errc::invalid_argument);
        }
      }
    }
    std::string back(head.size(), '\0');
    auto n = co_await f->read_at(back.data(), back.size(), 0);
    EXPECT_TRUE(n);
    EXPECT_EQ(back, head) << "a write at a huge offset landed at the file position";
  };
  run(body());
}

// ---- 6. when_any: a loser that completed keeps its value ----

// One recv as a task (what when_any races).
Task<Expected<std::size_t>> recv_task(TcpSocket* s, std::span<char> buf) {
  co_return co_await s->recv(buf.data(), buf.size());
}
Task<void> sleep_task(std::chrono::microseconds d) { (void)co_await sleep_for(d); }

TEST_P(RaceTest, R06_WhenAnyLoserThatCompletedInTheSameTurnKeepsItsData) {
  auto body = []() -> Task<void> {
    for (int round = 0; round < 10; ++round) {
      auto [a, b] = co_await loopback_tcp_pair();
      const auto deadline = Clock::now() + 20ms;
      // A task that makes the data arrive and then keeps the loop busy past the sleep's
      // deadline: the recv's completion and the timer then land in the same loop turn.
      auto busy = spawn([](int fd, Clock::time_point until) -> Task<void> {
        co_await sleep_for(5ms);
        EXPECT_EQ(::send(fd, "data", 4, MSG_NOSIGNAL), 4);
        while (Clock::now() < until + 2ms) {
        }
      }(b.native_handle(), deadline));
      char buf[16];
      auto r = co_await when_any(recv_task(&a, buf),
                                 [](Clock::time_point t) -> Task<void> { (void)co_await sleep_until(t); }(deadline));
      co_await busy;
      std::size_t got = 0;
      if (r.index() == 0) {
        auto& v = std::get<0>(r);
        CO_ASSERT_TRUE(v);
        got = *v;
      } else if (auto& loser = std::get<0>(r.losers); loser && *loser) {
        got = **loser;  // completed, but after the sleep had won
      } else {
        auto n = co_await a.recv(buf, sizeof buf, 200ms);  // never consumed: still in the socket
        got = n ? *n : 0;
      }
      while (got > 0 && got < 4) {  // the rest of a short read is still in the socket
        auto n = co_await a.recv(buf, sizeof buf, 200ms);
        if (!n || *n == 0) break;
        got += *n;
      }
      EXPECT_EQ(got, 4u) << "round " << round << ": the bytes were consumed and dropped";
    }
  };
  run(body());
}

TEST_P(RaceTest, R06_WhenAnyAsATimeoutUnderLoadLosesNoBytes) {
  auto body = []() -> Task<void> {
    auto [a, b] = co_await loopback_tcp_pair();
    constexpr std::size_t kTotal = 200 * 1024;
    auto sender = spawn([](TcpSocket* s) -> Task<void> {
      std::string chunk(512, '\0');
      std::size_t sent = 0;
      unsigned x = 12345;
      while (sent < kTotal) {
        for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<char>('a' + (sent + i) % 26);
        EXPECT_TRUE(co_await s->send_all(chunk));
        sent += chunk.size();
        x = x * 1103515245u + 12345u;
        if ((x >> 16) % 4 == 0) (void)co_await sleep_for(std::chrono::microseconds((x >> 8) % 300));
      }
    }(&b));
    std::size_t received = 0;
    char buf[700];
    unsigned y = 777;
    while (received < kTotal) {
      y = y * 1103515245u + 12345u;
      auto r = co_await when_any(recv_task(&a, buf), sleep_task(std::chrono::microseconds((y >> 8) % 200)));
      const Expected<std::size_t>* v = nullptr;
      if (r.index() == 0)
        v = &std::get<0>(r);
      else if (auto& l = std::get<0>(r.losers); l && *l)
        v = &*l;
      if (v == nullptr || !*v) continue;
      CO_ASSERT_TRUE(**v > 0);
      for (std::size_t i = 0; i < **v; ++i) {
        if (buf[i] != static_cast<char>('a' + (received + i) % 26)) {
          ADD_FAILURE() << "byte " << received + i << " is wrong: bytes were lost before it";
          co_return;
        }
      }
      received += **v;
    }
    co_await sender;
    EXPECT_EQ(received, kTotal);
  };
  run(body(), 60s);
}

// ---- 7. send_file and splice_stream never raise SIGPIPE ----

TEST_P(RaceTest, R07_SendFileAndSpliceNeverRaiseSigpipe) {
  struct sigaction old {};
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGPIPE, &dfl, &old);  // the default disposition kills the process
  auto body = []() -> Task<void> {
    char path[] = "/tmp/galay_sigpipe_XXXXXX";
    int file = ::mkstemp(path);
    CO_ASSERT_TRUE(file >= 0);
    ::unlink(path);
    std::string data(1 << 20, 'f');
    EXPECT_EQ(::write(file, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    {
      auto [a, b] = co_await loopback_tcp_pair();
      EXPECT_TRUE(a.shutdown(ShutdownHow::write));
      auto r = co_await send_file(a, file, 0, 0, 2s);
      CO_ASSERT_FALSE(r);
      EXPECT_EQ(r.error(), std::errc::broken_pipe);
    }
    {
      auto [src, src_peer] = co_await loopback_tcp_pair();
      auto [dst, dst_peer] = co_await loopback_tcp_pair();
      EXPECT_TRUE(co_await src_peer.send_all(data));
      EXPECT_TRUE(dst.shutdown(ShutdownHow::write));
      auto r = co_await splice_stream(src, dst, data.size(), 2s);
      CO_ASSERT_FALSE(r);
      EXPECT_EQ(r.error(), std::errc::broken_pipe);
    }
    ::close(file);
  };
  run(body());
  ::sigaction(SIGPIPE, &old, nullptr);
}

// ---- 9. close() releases the descriptor even in a cancelled task, or with no scheduler ----

TEST_P(RaceTest, R09_CloseInACancelledTaskReleasesTheFd) {
  auto body = []() -> Task<void> {
    auto [a, b] = co_await loopback_tcp_pair();
    const int fd = a.native_handle();
    auto closer = spawn([](TcpSocket* s) -> Task<std::error_code> {
      (void)co_await sleep_for(std::chrono::hours(1));  // cancelled here
      auto r = co_await s->close();                     // cleanup in a cancelled scope
      co_return r ? std::error_code{} : r.error();
    }(&a));
    co_await sleep_for(5ms);
    closer.cancel();
    (void)co_await closer;
    EXPECT_FALSE(a.is_open());
    EXPECT_FALSE(fd_is_open(fd)) << "fd " << fd << " leaked by close() in a cancelled task";
  };
  run(body());
}

TEST_P(RaceTest, R09_FileCloseInACancelledTaskReleasesTheFd) {
  auto body = []() -> Task<void> {
    char path[] = "/tmp/galay_close_XXXXXX";
    int raw = ::mkstemp(path);
    CO_ASSERT_TRUE(raw >= 0);
    ::close(raw);
    auto f = File::open(path, O_RDWR);
    ::unlink(path);
    CO_ASSERT_TRUE(f);
    const int fd = f->native_handle();
    auto closer = spawn([](File* file) -> Task<void> {
      (void)co_await sleep_for(std::chrono::hours(1));
      (void)co_await file->close();
    }(&*f));
    co_await sleep_for(5ms);
    closer.cancel();
    co_await closer;
    EXPECT_FALSE(fd_is_open(fd)) << "fd " << fd << " leaked by File::close() in a cancelled task";
  };
  run(body());
}

TEST_P(RaceTest, R09_CloseWithNoSchedulerReleasesTheFd) {
  TcpSocket sock = run([]() -> Task<TcpSocket> { co_return std::move(*TcpSocket::open()); }());
  const int fd = sock.native_handle();
  ASSERT_TRUE(fd_is_open(fd));
  // Driven by hand, outside any loop: the close must still happen.
  Expected<void> result = make_error(make_error_code(Error::task_abandoned));
  auto task = [](TcpSocket* s, Expected<void>* out) -> Task<void> { *out = co_await s->close(); }(&sock, &result);
  task.handle().resume();
  ASSERT_TRUE(task.done());
  EXPECT_FALSE(fd_is_open(fd)) << "close() with no scheduler leaked fd " << fd;
  EXPECT_TRUE(result) << result.error().message();
}

// ---- 10. an accepted fd nobody consumes is closed (scheduler destroyed mid-accept) ----

TEST_P(RaceTest, R10_SchedulerDestroyedWithAnAcceptQueuedLeaksNoFd) {
  const int before = open_fd_count();
  for (int round = 0; round < 20; ++round) {
    Scheduler::Options opts;
    opts.backend = GetParam();
    auto s = Scheduler::create(opts);
    ASSERT_TRUE(s);
    std::unique_ptr<Scheduler> sched = std::move(*s);
    std::optional<TcpSocket> listener;
    int client = -1;
    sched->block_on([](std::optional<TcpSocket>* l, int* c) -> Task<void> {
      l->emplace(loopback_listener());
      // A connection already waiting in the backlog: the accept completes the moment the
      // kernel sees it.
      *c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      auto addr = (*l)->local_address();
      EXPECT_EQ(::connect(*c, addr->data(), addr->size()), 0);
      co_return;
    }(&listener, &client));
    // The accept is started (its SQE queued) and block_on returns before the loop submits it.
    sched->spawn([](TcpSocket* l) -> Task<void> { (void)co_await l->accept(); }(&*listener)).detach();
    sched->block_on([]() -> Task<void> { co_return; }());
    sched->shutdown();  // what the destructor runs first: the accept is drained here
    listener.reset();
    sched.reset();
    ::close(client);
  }
  EXPECT_EQ(open_fd_count(), before) << "accepted fds leaked when the scheduler was destroyed";
}

// ---- 11. cross-thread wakeups still arrive after shutdown() and after stop() ----

TEST_P(RaceTest, R11_CrossThreadWakeupsArriveAfterShutdown) {
  // Something pending when shutdown() runs, so its cancel-all has work to do.
  std::optional<std::pair<TcpSocket, TcpSocket>> pair;
  sched()
      .spawn([](std::optional<std::pair<TcpSocket, TcpSocket>>* p) -> Task<void> {
        p->emplace(co_await loopback_tcp_pair());
        char c;
        (void)co_await p->value().first.recv(&c, 1);  // pending at shutdown
      }(&pair))
      .detach();
  run([]() -> Task<void> { co_await sleep_for(20ms); }());
  sched().shutdown();
  pair.reset();
  sync::Event done;
  std::thread t([&] {
    std::this_thread::sleep_for(50ms);
    sched()
        .spawn([](sync::Event* e) -> Task<void> {
          e->set();
          co_return;
        }(&done))
        .detach();
  });
  const auto start = Clock::now();
  run([](sync::Event* e) -> Task<void> { (void)co_await e->wait(); }(&done), 5s);
  t.join();
  EXPECT_LT(Clock::now() - start, 3s) << "the loop slept through the cross-thread spawn";
}

TEST_P(RaceTest, R11_CrossThreadWakeupsArriveAfterStopFromAnotherThread) {
  std::thread stopper([&] {
    std::this_thread::sleep_for(30ms);
    sched().stop();
  });
  sched().run();  // returns once stopped
  stopper.join();
  sync::Event done;
  std::thread t([&] {
    std::this_thread::sleep_for(50ms);
    sched()
        .spawn([](sync::Event* e) -> Task<void> {
          e->set();
          co_return;
        }(&done))
        .detach();
  });
  const auto start = Clock::now();
  run([](sync::Event* e) -> Task<void> { (void)co_await e->wait(); }(&done), 5s);
  t.join();
  EXPECT_LT(Clock::now() - start, 3s) << "the loop slept through the cross-thread spawn";
}

// ---- 12. a socket destroyed outside the loop does not poison its fd number ----

TEST_P(RaceTest, R12_SocketDestroyedOutsideTheLoopDoesNotPoisonItsFdNumber) {
  // Made outside any loop, used inside one (its fd gets registered), destroyed outside.
  int early_fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, early_fds), 0);
  auto made = TcpSocket::adopt(early_fds[0]);
  ASSERT_TRUE(made);
  TcpSocket early = std::move(*made);
  const int fd = early.native_handle();
  run([](TcpSocket* s) -> Task<void> {
    char c;
    (void)co_await s->recv(&c, 1, 10ms);  // parks: the backend registers the fd
  }(&early));
  { TcpSocket gone = std::move(early); }  // no scheduler on this thread now
  ::close(early_fds[1]);
  FdHoles holes(fd);
  run([](int old_fd) -> Task<void> {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    expect_reused(fds[0] == old_fd ? fds[0] : fds[1], old_fd);
    auto a = TcpSocket::adopt(fds[0]);
    auto b = TcpSocket::adopt(fds[1]);
    CO_ASSERT_TRUE(a && b);
    auto later = spawn([](TcpSocket* peer) -> Task<void> {
      co_await sleep_for(20ms);
      EXPECT_TRUE(co_await peer->send_all(std::string("x")));
    }(&*b));
    char c;
    auto n = co_await a->recv(&c, 1, 2s);  // must park and be woken
    EXPECT_TRUE(n) << (n ? "" : n.error().message());
    co_await later;
  }(fd));
}

// ---- 13. an acceptor or receiver whose socket was closed reports bad_file_descriptor ----

TEST_P(RaceTest, R13_AcceptorOfAClosedListenerIsBadFileDescriptor) {
  auto body = []() -> Task<void> {
    TcpSocket listener = loopback_listener();
    const int fd = listener.native_handle();
    TcpAcceptor acceptor(listener);
    {
      auto c = TcpSocket::open();
      EXPECT_TRUE(co_await c->connect(*listener.local_address()));
      auto s = co_await acceptor.accept(2s);
      EXPECT_TRUE(s);
    }
    EXPECT_TRUE(co_await listener.close());
    TcpSocket other = loopback_listener();
    expect_reused(other.native_handle(), fd);
    auto c = TcpSocket::open();
    EXPECT_TRUE(co_await c->connect(*other.local_address()));
    auto s = co_await acceptor.accept(300ms);
    CO_ASSERT_FALSE(s);
    EXPECT_EQ(s.error(), std::errc::bad_file_descriptor);
    auto mine = co_await other.accept(2s);  // the connection is the new listener's
    EXPECT_TRUE(mine);
  };
  run(body());
}

TEST_P(RaceTest, R13_ReceiverOfAClosedSocketIsBadFileDescriptor) {
  auto body = []() -> Task<void> {
    auto pool = BufferPool::create(16, 1024);
    CO_ASSERT_TRUE(pool);
    auto [client, server] = co_await loopback_tcp_pair();
    const int fd = server.native_handle();
    StreamReceiver rx(server, **pool);
    EXPECT_TRUE(co_await client.send_all(std::string("one")));
    auto first = co_await rx.recv(2s);
    EXPECT_TRUE(first && first->size() == 3);
    FdHoles holes(fd);
    EXPECT_TRUE(co_await server.close());
    UnixPair reuse;
    expect_reused(reuse.fds[0], fd);
    EXPECT_EQ(::send(reuse.fds[1], "two", 3, MSG_NOSIGNAL), 3);
    auto c = co_await rx.recv(300ms);
    CO_ASSERT_FALSE(c);
    EXPECT_EQ(c.error(), std::errc::bad_file_descriptor);
    char buf[8];
    EXPECT_EQ(::recv(reuse.fds[0], buf, sizeof buf, MSG_DONTWAIT), 3) << "the receiver read another socket's bytes";
  };
  run(body());
}

// ---- 14. deadlines saturate instead of overflowing ----

TEST_P(RaceTest, R14_HugeTimeoutsMeanWaitNotExpireNow) {
  auto body = []() -> Task<void> {
    auto [a, b] = co_await loopback_tcp_pair();
    auto later = spawn([](TcpSocket* p) -> Task<void> {
      for (int i = 0; i < 3; ++i) {
        co_await sleep_for(20ms);
        EXPECT_TRUE(co_await p->send_all(std::string("x")));
      }
    }(&b));
    char c;
    auto r1 = co_await a.recv(&c, 1, std::chrono::nanoseconds::max() - std::chrono::nanoseconds(1));
    EXPECT_TRUE(r1) << (r1 ? "" : r1.error().message());
    auto r2 = co_await a.recv(&c, 1, std::chrono::milliseconds::max());
    EXPECT_TRUE(r2) << (r2 ? "" : r2.error().message());
    auto r3 = co_await a.recv(&c, 1, std::chrono::hours::max());
    EXPECT_TRUE(r3) << (r3 ? "" : r3.error().message());
    co_await later;
    // A sleep of "forever" loses to a short one.
    auto r = co_await when_any(
        []() -> Task<int> {
          (void)co_await sleep_for(std::chrono::hours::max());
          co_return 0;
        }(),
        []() -> Task<int> {
          (void)co_await sleep_for(std::chrono::nanoseconds::max());
          co_return 1;
        }(),
        []() -> Task<int> {
          (void)co_await sleep_for(20ms);
          co_return 2;
        }());
    EXPECT_EQ(r.index(), 2u);
  };
  run(body());
  EXPECT_FALSE(Timeout(std::chrono::milliseconds::max()).enabled());
  EXPECT_FALSE(Timeout(std::chrono::hours::max()).enabled());
  EXPECT_TRUE(Timeout(std::chrono::seconds(5)).enabled());
}

// ---- misuse fails loudly ----

TEST(Misuse, SpawnAndYieldWithoutASchedulerThrow) {
  EXPECT_THROW((void)spawn([]() -> Task<void> { co_return; }()), std::system_error);
  bool threw = false;
  auto t = [](bool* out) -> Task<void> {
    try {
      co_await yield();
    } catch (const std::system_error& e) {
      *out = e.code() == Error::not_bound_to_scheduler;
    }
  }(&threw);
  t.handle().resume();
  EXPECT_TRUE(threw);
}

TEST_P(RaceTest, WhenAnyOfAnEmptyListIsAnError) {
  auto body = []() -> Task<void> {
    std::vector<Task<int>> none;
    bool threw = false;
    try {
      (void)co_await when_any(std::move(none));
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    EXPECT_TRUE(threw);
  };
  run(body());
}

GALAY_INSTANTIATE_ALL_BACKENDS(RaceTest);

}  // namespace
}  // namespace galay::test
