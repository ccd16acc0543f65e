// Hostile traffic on every backend (issue 15): loops of operations that finish at once must
// not starve the scheduler; an accept loop out of descriptors must neither spin nor stop
// serving; one connection must not take the whole receive pool.
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

class HostileTest : public BackendTest {};

// A task that loops on an operation that always finishes at once (EOF on a half-closed
// socket, EBADF on a closed one) must still let a sleeping timer fire on time.
TEST_P(HostileTest, ATaskLoopingOnReadyOperationsLetsATimerFireOnTime) {
  auto body = []() -> Task<void> {
    auto [a, b] = co_await loopback_tcp_pair();
    EXPECT_TRUE(b.shutdown(ShutdownHow::write));  // a.recv() is EOF from now on, at once
    TcpSocket closed;                             // every op on it is EBADF, at once
    for (int kind = 0; kind < 2; ++kind) {
      bool fired = false;
      const auto deadline = Clock::now() + 20ms;
      Clock::time_point fired_at{};
      auto timer = spawn([](Clock::time_point at, bool* f, Clock::time_point* when) -> Task<void> {
        (void)co_await sleep_until(at);
        *when = Clock::now();
        *f = true;
      }(deadline, &fired, &fired_at));
      std::uint64_t spins = 0;
      char c;
      const auto give_up = Clock::now() + 3s;
      while (!fired && Clock::now() < give_up) {
        auto r = kind == 0 ? co_await a.recv(&c, 1) : co_await closed.recv(&c, 1);
        EXPECT_TRUE(kind == 0 ? (r && *r == 0) : !r);
        ++spins;
      }
      co_await timer;
      CO_ASSERT_TRUE(fired);
      EXPECT_LT(fired_at - deadline, 200ms)
          << "the timer fired " << (fired_at - deadline).count() / 1000000 << " ms late after " << spins << " spins";
    }
  };
  run(body());
}

// ---- the README's accept loop with 64 descriptors ----

std::uint64_t cpu_ticks(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(f, line);
  // Fields after the command (which is in parentheses and may contain spaces).
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string field;
  std::uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return utime + stime;
}

// A blocking client connection with timeouts, to drive the server process from outside.
struct Client {
  int fd = -1;
  explicit Client(std::uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    auto addr = SocketAddress::loopback(port);
    // An interrupted connect goes on in the background (EINTR, see echoes()): ask again
    // until it says connected (EISCONN) or fails.
    int r = ::connect(fd, addr.data(), addr.size());
    while (r != 0 && (errno == EINTR || errno == EALREADY)) {
      std::this_thread::sleep_for(1ms);
      r = ::connect(fd, addr.data(), addr.size());
      if (r != 0 && errno == EISCONN) r = 0;
    }
    if (r != 0) {
      connect_error = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  Client(Client&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  ~Client() {
    if (fd >= 0) ::close(fd);
  }
  // True if `msg` comes back; else why not in `failure` (shown by the test's message).
  bool echoes(const std::string& msg) const {
    if (fd < 0) return fail("not connected: " + connect_error);
    // EINTR is retried: with a timeout set, the socket calls return it when task work of
    // this process's io_uring (a ring torn down just before, say) interrupts them.
    ssize_t sent;
    do sent = ::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    if (sent != static_cast<ssize_t>(msg.size())) return fail(std::string("send: ") + std::strerror(errno));
    std::string got(msg.size(), '\0');
    std::size_t have = 0;
    while (have < got.size()) {
      const ssize_t n = ::recv(fd, got.data() + have, got.size() - have, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        return fail(n == 0 ? "the server closed the connection" : std::string("recv: ") + std::strerror(errno));
      have += static_cast<std::size_t>(n);
    }
    return got == msg || fail("different bytes came back");
  }
  bool fail(std::string why) const {
    failure = std::move(why);
    return false;
  }
  std::string connect_error;
  mutable std::string failure;
};

// The server side, exactly as the README writes it.
Task<void> readme_serve(TcpSocket conn) {
  std::array<std::byte, 1024> buf;
  for (;;) {
    auto n = co_await conn.recv(buf, std::chrono::seconds(60));
    if (!n || *n == 0) co_return;
    if (!co_await conn.send_all(std::span(buf.data(), *n))) co_return;
  }
}

Task<void> readme_listen(TcpSocket* listener) {
  for (;;) {
    auto conn = co_await listener->accept();
    if (conn) spawn(readme_serve(std::move(*conn))).detach();
  }
}

TEST_P(HostileTest, TheReadmeAcceptLoopOutOfDescriptorsKeepsServingWithoutSpinning) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "needs free descriptors that the sanitizer runtime would take";
#endif
  int port_pipe[2];
  ASSERT_EQ(::pipe2(port_pipe, O_CLOEXEC), 0);
  const BackendKind backend = GetParam();
  sched_.reset();  // the child makes its own
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(port_pipe[0]);
    rlimit lim{64, 64};
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) ::_exit(3);
    Scheduler::Options opts;
    opts.backend = backend;
    auto s = Scheduler::create(opts);
    if (!s) ::_exit(4);
    (*s)->block_on([](int out) -> Task<void> {
      auto listener = TcpSocket::listen_on(SocketAddress::loopback(0));
      if (!listener) ::_exit(5);
      const std::uint16_t port = listener->local_address()->port();
      if (::write(out, &port, sizeof port) != sizeof port) ::_exit(6);
      spawn(readme_listen(&*listener)).detach();
      co_await sleep_for(20s);  // bounded: the parent kills us long before
      ::_exit(7);
    }(port_pipe[1]));
    ::_exit(8);
  }
  ::close(port_pipe[1]);
  std::uint16_t port = 0;
  ASSERT_EQ(::read(port_pipe[0], &port, sizeof port), static_cast<ssize_t>(sizeof port));
  ::close(port_pipe[0]);
  struct Reap {
    pid_t pid;
    ~Reap() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reap{child};

  std::vector<Client> served;
  for (int i = 0; i < 10; ++i) {
    served.emplace_back(port);
    ASSERT_TRUE(served.back().echoes("hello " + std::to_string(i))) << served.back().failure;
  }
  // 100 more: the server runs out of descriptors part-way (64 in all).
  std::vector<Client> flood;
  for (int i = 0; i < 100; ++i) flood.emplace_back(port);
  std::this_thread::sleep_for(300ms);
  const std::uint64_t t0 = cpu_ticks(child);
  std::this_thread::sleep_for(1s);
  const std::uint64_t used = cpu_ticks(child) - t0;
  const long hz = ::sysconf(_SC_CLK_TCK);
  EXPECT_LT(static_cast<double>(used) / static_cast<double>(hz), 0.10)
      << "the server burnt " << used << " ticks of " << hz << " in one second while out of descriptors";
  for (std::size_t i = 0; i < served.size(); ++i)
    EXPECT_TRUE(served[i].echoes("still here " + std::to_string(i)))
        << "connection " << i << " lost its service: " << served[i].failure;
  // Free descriptors: the connections still waiting in the backlog are accepted and served.
  std::vector<Client> last;
  for (std::size_t i = 90; i < flood.size(); ++i) last.push_back(std::move(flood[i]));
  flood.clear();
  for (std::size_t i = 0; i < last.size(); ++i)
    EXPECT_TRUE(last[i].echoes("late " + std::to_string(i)))
        << "a connection from the backlog was never served: " << last[i].failure;
}

// ---- one connection must not take the whole receive pool ----

std::size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  std::size_t pages_total = 0, pages_resident = 0;
  f >> pages_total >> pages_resident;
  return pages_resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

// The server of bench_server --recv pooled: a StreamReceiver per connection on one shared
// pool, echoing each chunk.
Task<void> pooled_echo(TcpSocket conn, BufferPool* pool) {
  StreamReceiver rx(conn, *pool);
  for (;;) {
    auto chunk = co_await rx.recv(10s);
    if (!chunk || chunk->empty()) co_return;
    if (!co_await conn.send_all(chunk->data(), 10s)) co_return;
  }
}

Task<void> pooled_server(TcpSocket* listener, BufferPool* pool) {
  for (;;) {
    auto conn = co_await listener->accept();
    if (!conn) co_return;
    spawn(pooled_echo(std::move(*conn), pool)).detach();
  }
}

// Round trips of 64-byte messages on `clients`, all at once, for `window`.
Task<std::uint64_t> echo_round_trips(std::vector<TcpSocket>& clients, std::chrono::milliseconds window,
                                     std::uint64_t* errors) {
  std::uint64_t done = 0;
  const auto until = Clock::now() + window;
  std::vector<Task<void>> loops;
  for (auto& c : clients) {
    loops.push_back([](TcpSocket* s, Clock::time_point end, std::uint64_t* n, std::uint64_t* err) -> Task<void> {
      char msg[64] = {'p'};
      char back[64];
      while (Clock::now() < end) {
        if (!co_await s->send_all(msg, sizeof msg, 5s)) {
          ++*err;
          co_return;
        }
        auto got = co_await recv_exactly(*s, back, sizeof back);
        if (!got || *got != sizeof back) {
          ++*err;
          co_return;
        }
        ++*n;
      }
    }(&c, until, &done, errors));
  }
  (void)co_await when_all(std::move(loops));
  co_return done;
}

TEST_P(HostileTest, AFlooderThatNeverReadsCannotStarveTheOthersOfPoolBuffers) {
  // The pool outlives the connection tasks: it goes after the scheduler's shutdown.
  auto pool = BufferPool::create(sched(), 256, 4096);
  ASSERT_TRUE(pool);
  auto body = [](std::unique_ptr<BufferPool>* pool) -> Task<void> {
    TcpSocket listener = loopback_listener();
    auto server = spawn(pooled_server(&listener, pool->get()));
    const auto addr = *listener.local_address();
    std::vector<TcpSocket> clients;
    for (int i = 0; i < 8; ++i) {
      auto c = TcpSocket::open();
      CO_ASSERT_TRUE(c && co_await c->connect(addr, 5s));
      (void)c->set_nodelay(true);
      clients.push_back(std::move(*c));
    }
    std::uint64_t errors = 0;
    const std::uint64_t alone = co_await echo_round_trips(clients, 400ms, &errors);
    const std::size_t rss_before = rss_bytes();
    // The flooder sends as fast as it can and never reads its echo.
    auto flooder_sock = TcpSocket::open();
    CO_ASSERT_TRUE(flooder_sock && co_await flooder_sock->connect(addr, 5s));
    bool stop = false;
    auto flooder = spawn([](TcpSocket* s, bool* halt) -> Task<void> {
      std::vector<char> junk(65536, 'f');
      while (!*halt) {
        auto r = co_await s->send(junk.data(), junk.size(), 50ms);
        if (!r && r.error() != std::errc::timed_out) co_return;
      }
    }(&*flooder_sock, &stop));
    co_await sleep_for(200ms);  // let it fill whatever it can
    const std::uint64_t flooded = co_await echo_round_trips(clients, 400ms, &errors);
    const std::size_t rss_after = rss_bytes();
    stop = true;
    co_await flooder;
    EXPECT_EQ(errors, 0u);
    // Starved of pool buffers, the others would stall (recv timeouts, errors, next to no
    // round trips); what remains is how the CPU is shared. With SQPOLL a third thread, the
    // kernel poller, competes for the CPUs, and beside another test on 2 cores its share
    // swings between the two windows: 0.36x-0.66x has been seen there with no starvation
    // (the pool check below holds), so that variant asks for less.
    const double min_share = GetParam().sqpoll ? 0.25 : 0.5;
    EXPECT_GE(static_cast<double>(flooded), min_share * static_cast<double>(alone))
        << "well-behaved clients made " << flooded << " round trips beside the flooder, " << alone << " alone";
    EXPECT_LT(rss_after, rss_before + (32u << 20)) << "RSS grew by " << (rss_after - rss_before) << " bytes";
    EXPECT_GE((*pool)->available(), 256u - 64u) << "the flooder holds most of the pool";
    (void)co_await listener.close();
    server.cancel();
    co_await server;
  };
  run(body(&*pool), 60s);
  sched().shutdown();
}

GALAY_INSTANTIATE_ALL_BACKENDS(HostileTest);

}  // namespace
}  // namespace galay::test
