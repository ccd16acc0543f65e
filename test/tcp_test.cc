// TCP sockets on every backend: echo, large transfers, many connections, half-close,
// resets, refused connects, timeouts, cancel-on-close, bad fds, bad addresses.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include <cstring>
#include <numeric>
#include <vector>

#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

class TcpTest : public BackendTest {};

struct Pair {
  TcpSocket client;
  TcpSocket server;
};

Task<Pair> connected_pair(TcpSocket& listener) {
  Pair p;
  auto c = TcpSocket::open();
  EXPECT_TRUE(c);
  p.client = std::move(*c);
  auto accept_task = [](TcpSocket* l) -> Task<TcpSocket> {
    auto s = co_await l->accept();
    EXPECT_TRUE(s) << s.error().message();
    co_return std::move(*s);
  };
  auto connect_task = [](TcpSocket* c, SocketAddress a) -> Task<void> {
    auto r = co_await c->connect(a);
    EXPECT_TRUE(r) << r.error().message();
  };
  auto [server, unit] = co_await when_all(accept_task(&listener), connect_task(&p.client, *listener.local_address()));
  (void)unit;
  p.server = std::move(server);
  co_return p;
}

Task<void> echo_loop(TcpSocket sock) {
  std::vector<std::byte> buf(16384);
  for (;;) {
    auto n = co_await sock.recv(buf);
    if (!n || *n == 0) co_return;
    if (!co_await sock.send_all(std::span(buf.data(), *n))) co_return;
  }
}

TEST_P(TcpTest, Echo) {
  auto body = []() -> Task<void> {
    TcpSocket listener = loopback_listener();
    Pair p = co_await connected_pair(listener);
    auto server = spawn(echo_loop(std::move(p.server)));
    for (int i = 0; i < 100; ++i) {
      std::string msg = "message #" + std::to_string(i);
      auto sent = co_await p.client.send_all(msg);
      EXPECT_TRUE(sent && *sent == msg.size());
      std::string got(msg.size(), '\0');
      std::size_t have = 0;
      while (have < got.size()) {
        auto n = co_await p.client.recv(got.data() + have, got.size() - have);
        EXPECT_TRUE(n && *n > 0);
        if (!n || *n == 0) co_return;
        have += *n;
      }
      EXPECT_EQ(got, msg);
    }
    EXPECT_TRUE(p.client.shutdown(ShutdownHow::write));
    co_await server;  // server sees EOF and ends
  };
  run(body());
}

TEST_P(TcpTest, Ipv6Echo) {
  {
    auto probe = TcpSocket::listen_on(SocketAddress::loopback(0, AddressFamily::ipv6));
    if (!probe) GTEST_SKIP() << "no IPv6 loopback here: " << probe.error().message();
  }
  auto body = []() -> Task<void> {
    auto l = TcpSocket::listen_on(SocketAddress::loopback(0, AddressFamily::ipv6));
    CO_ASSERT_TRUE(l);
    auto c = TcpSocket::open(AddressFamily::ipv6);
    EXPECT_TRUE(co_await c->connect(*l->local_address()));
    SocketAddress peer;
    auto s = co_await l->accept(&peer);
    EXPECT_TRUE(s);
    EXPECT_EQ(peer.family(), AddressFamily::ipv6);
    EXPECT_TRUE(co_await c->send_all("v6"));
    char b[2];
    auto n = co_await recv_exactly(*s, b, 2);
    EXPECT_TRUE(n && *n == 2 && b[0] == 'v');
  };
  run(body());
}

constexpr std::size_t kSize = 64u << 20;
constexpr int kConns = 1000;

TEST_P(TcpTest, LargeTransferWithPartialSends) {
  auto body = []() -> Task<void> {
    TcpSocket listener = loopback_listener();
    Pair p = co_await connected_pair(listener);
    // Small kernel buffers force many partial sends inside send_all.
    EXPECT_TRUE(p.client.set_send_buffer_size(16 * 1024));
    EXPECT_TRUE(p.server.set_recv_buffer_size(16 * 1024));
    std::vector<std::uint8_t> data(kSize);
    for (std::size_t i = 0; i < kSize; ++i) data[i] = static_cast<std::uint8_t>((i * 2654435761u) >> 24);
    auto reader = [](TcpSocket* s, const std::vector<std::uint8_t>* expect) -> Task<std::size_t> {
      std::vector<std::uint8_t> buf(256 * 1024);
      std::size_t got = 0;
      for (;;) {
        auto n = co_await s->recv(buf.data(), buf.size());
        EXPECT_TRUE(n) << n.error().message();
        if (!n || *n == 0) break;
        EXPECT_EQ(std::memcmp(buf.data(), expect->data() + got, *n), 0) << "at offset " << got;
        got += *n;
      }
      co_return got;
    };
    auto writer = [](TcpSocket* s, const std::vector<std::uint8_t>* d) -> Task<std::size_t> {
      auto r = co_await s->send_all(d->data(), d->size());
      EXPECT_TRUE(r) << r.error().message();
      EXPECT_TRUE(s->shutdown(ShutdownHow::write));
      co_return r ? *r : 0;
    };
    auto [received, sent] = co_await when_all(reader(&p.server, &data), writer(&p.client, &data));
    EXPECT_EQ(sent, kSize);
    EXPECT_EQ(received, kSize);
  };
  run(body(), 60s);
}

TEST_P(TcpTest, ThousandConcurrentConnections) {
  auto body = []() -> Task<int> {
    TcpSocket listener = loopback_listener(4096);
    auto addr = *listener.local_address();
    auto acceptor = spawn([](TcpSocket* l) -> Task<void> {
      for (int i = 0; i < kConns; ++i) {
        auto s = co_await l->accept();
        EXPECT_TRUE(s) << s.error().message();
        if (!s) co_return;
        spawn(echo_loop(std::move(*s))).detach();
      }
    }(&listener));
    auto client = [](SocketAddress a, int id) -> Task<int> {
      auto c = TcpSocket::open();
      if (!c || !co_await c->connect(a)) co_return 0;
      int ok = 0;
      for (int round = 0; round < 5; ++round) {
        char out[64], in[64];
        int len = std::snprintf(out, sizeof(out), "conn %d round %d", id, round);
        if (!co_await c->send_all(out, static_cast<std::size_t>(len))) co_return 0;
        int have = 0;
        while (have < len) {
          auto n = co_await c->recv(in + have, static_cast<std::size_t>(len - have));
          if (!n || *n == 0) co_return 0;
          have += static_cast<int>(*n);
        }
        if (std::memcmp(in, out, static_cast<std::size_t>(len)) == 0) ++ok;
      }
      co_return ok == 5 ? 1 : 0;
    };
    std::vector<Task<int>> clients;
    for (int i = 0; i < kConns; ++i) clients.push_back(client(addr, i));
    auto results = co_await when_all(std::move(clients));
    co_await acceptor;
    co_return std::accumulate(results.begin(), results.end(), 0);
  };
  EXPECT_EQ(run(body(), 60s), kConns);
}

TEST_P(TcpTest, HalfCloseBothDirections) {
  auto body = []() -> Task<void> {
    TcpSocket listener = loopback_listener();
    Pair p = co_await connected_pair(listener);
    // Client stops sending; server reads EOF but can still answer.
    EXPECT_TRUE(co_await p.client.send_all("request"));
    EXPECT_TRUE(p.client.shutdown(ShutdownHow::write));
    char buf[32];
    std::size_t total = 0;
    for (;;) {
      auto n = co_await p.server.recv(buf + total, sizeof(buf) - total);
      EXPECT_TRUE(n);
      if (!n || *n == 0) break;
      total += *n;
    }
    EXPECT_EQ(std::string(buf, total), "request");
    auto again = co_await p.server.recv(buf, sizeof(buf));  // EOF is sticky
    EXPECT_TRUE(again && *again == 0);
    EXPECT_TRUE(co_await p.server.send_all("response"));
    EXPECT_TRUE(p.server.shutdown(ShutdownHow::write));
    total = 0;
    for (;;) {
      auto n = co_await p.client.recv(buf + total, sizeof(buf) - total);
      EXPECT_TRUE(n);
      if (!n || *n == 0) break;
      total += *n;
    }
    EXPECT_EQ(std::string(buf, total), "response");
  };
  run(body());
}

void reset_on_close(TcpSocket& s) {
  linger lg{1, 0};  // close() then sends RST instead of FIN
  EXPECT_EQ(::setsockopt(s.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
}

TEST_P(TcpTest, PeerResetGivesConnectionResetOrBrokenPipe) {
  auto body = []() -> Task<void> {
    TcpSocket listener = loopback_listener();
    Pair p = co_await connected_pair(listener);
    // A recv pending when the RST arrives.
    auto pending = spawn([](TcpSocket* s) -> Task<std::error_code> {
      char b[16];
      auto r = co_await s->recv(b, sizeof(b));
      co_return r ? std::error_code() : r.error();
    }(&p.client));
    co_await sleep_for(10ms);
    reset_on_close(p.server);
    EXPECT_TRUE(co_await p.server.close());
    std::error_code ec = co_await pending;
    EXPECT_EQ(ec, std::errc::connection_reset) << ec.message();
    // Sends on the reset connection fail with EPIPE or ECONNRESET, never SIGPIPE.
    std::vector<char> big(1 << 20, 'x');
    auto s = co_await p.client.send_all(big.data(), big.size());
    CO_ASSERT_FALSE(s);
    EXPECT_TRUE(s.error() == std::errc::broken_pipe || s.error() == std::errc::connection_reset) << s.error().message();
  };
  run(body());
}

TEST_P(TcpTest, ResetDuringLargeSend) {
  auto body = []() -> Task<void> {
    TcpSocket listener = loopback_listener();
    Pair p = co_await connected_pair(listener);
    EXPECT_TRUE(p.client.set_send_buffer_size(16 * 1024));
    std::vector<char> big(32 << 20, 'y');
    auto sender = spawn([](TcpSocket* s, std::vector<char>* b) -> Task<std::error_code> {
      auto r = co_await s->send_all(b->data(), b->size());
      co_return r ? std::error_code() : r.error();
    }(&p.client, &big));
    co_await sleep_for(20ms);  // the send is now blocked on a full buffer
    reset_on_close(p.server);
    p.server = TcpSocket();
    std::error_code ec = co_await sender;
    EXPECT_TRUE(ec == std::errc::broken_pipe || ec == std::errc::connection_reset) << ec.message();
  };
  run(body());
}

TEST_P(TcpTest, ConnectRefused) {
  auto body = []() -> Task<void> {
    // Bind a port and close it again: nobody listens there.
    std::uint16_t port;
    {
      auto l = loopback_listener();
      port = port_of(l);
    }
    auto c = TcpSocket::open();
    auto r = co_await c->connect(SocketAddress::loopback(port));
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), std::errc::connection_refused) << r.error().message();
  };
  run(body());
}

TEST_P(TcpTest, ConnectTimeout) {
  auto body = []() -> Task<void> {
    // A listener that never accepts, with its accept queue full: further SYNs are dropped,
    // so a connect stays in progress until our deadline.
    TcpSocket listener = loopback_listener(0);
    auto addr = *listener.local_address();
    std::vector<TcpSocket> fillers;
    bool timed_out = false;
    for (int i = 0; i < 16 && !timed_out; ++i) {
      auto c = TcpSocket::open();
      auto t0 = Clock::now();
      auto r = co_await c->connect(addr, 200ms);
      if (!r) {
        EXPECT_EQ(r.error(), std::errc::timed_out) << r.error().message();
        EXPECT_GE(Clock::now() - t0, 190ms);
        timed_out = true;
      }
      fillers.push_back(std::move(*c));
    }
    EXPECT_TRUE(timed_out) << "the accept queue never filled up";
  };
  run(body());
}

TEST_P(TcpTest, RecvTimeoutLeavesSocketUsable) {
  auto body = []() -> Task<void> {
    TcpSocket listener = loopback_listener();
    Pair p = co_await connected_pair(listener);
    char b[8];
    auto t0 = Clock::now();
    auto r = co_await p.server.recv(b, sizeof(b), 50ms);
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), std::errc::timed_out);
    EXPECT_GE(Clock::now() - t0, 45ms);
    EXPECT_TRUE(co_await p.client.send_all("late"));
    auto n = co_await recv_exactly(p.server, b, 4);
    EXPECT_TRUE(n && *n == 4);
  };
  run(body());
}

TEST_P(TcpTest, AcceptTimeout) {
  auto body = []() -> Task<void> {
    TcpSocket listener = loopback_listener();
    auto r = co_await listener.accept(30ms);
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), std::errc::timed_out);
  };
  run(body());
}

TEST_P(TcpTest, CloseCancelsPendingOperations) {
  auto body = []() -> Task<void> {
    TcpSocket listener = loopback_listener();
    Pair p = co_await connected_pair(listener);
    auto reader = spawn([](TcpSocket* s) -> Task<std::error_code> {
      char b[16];
      auto r = co_await s->recv(b, sizeof(b));
      co_return r ? std::error_code() : r.error();
    }(&p.server));
    auto acceptor = spawn([](TcpSocket* l) -> Task<std::error_code> {
      auto r = co_await l->accept();
      co_return r ? std::error_code() : r.error();
    }(&listener));
    co_await sleep_for(10ms);
    EXPECT_TRUE(co_await p.server.close());
    EXPECT_TRUE(co_await listener.close());
    EXPECT_EQ(co_await reader, std::errc::operation_canceled);
    EXPECT_EQ(co_await acceptor, std::errc::operation_canceled);
    EXPECT_FALSE(p.server.is_open());
  };
  run(body());
}

TEST_P(TcpTest, OperationsOnClosedOrInvalidSockets) {
  auto body = []() -> Task<void> {
    char b[4];
    TcpSocket empty;
    auto r1 = co_await empty.recv(b, 4);
    EXPECT_EQ(r1.error(), std::errc::bad_file_descriptor);
    auto r2 = co_await empty.send_all("x");
    EXPECT_EQ(r2.error(), std::errc::bad_file_descriptor);
    auto r3 = co_await empty.accept();
    EXPECT_EQ(r3.error(), std::errc::bad_file_descriptor);
    auto r4 = co_await empty.close();
    EXPECT_EQ(r4.error(), std::errc::bad_file_descriptor);
    EXPECT_EQ(empty.shutdown(ShutdownHow::both).error(), std::errc::bad_file_descriptor);

    TcpSocket listener = loopback_listener();
    Pair p = co_await connected_pair(listener);
    EXPECT_TRUE(co_await p.client.close());
    auto r5 = co_await p.client.recv(b, 4);
    EXPECT_EQ(r5.error(), std::errc::bad_file_descriptor);
    auto r6 = co_await p.client.connect(SocketAddress::loopback(1));
    EXPECT_EQ(r6.error(), std::errc::bad_file_descriptor);

    EXPECT_FALSE(TcpSocket::adopt(-1));
    EXPECT_EQ(TcpSocket::adopt(1 << 20).error(), std::errc::bad_file_descriptor);
    // recv on a listening socket is an error from the kernel, not a hang.
    auto r7 = co_await listener.recv(b, 4, 2s);
    CO_ASSERT_FALSE(r7);
    EXPECT_NE(r7.error(), std::errc::timed_out) << r7.error().message();
  };
  run(body());
}

TEST_P(TcpTest, MovingASocketKeepsPendingStateSafe) {
  auto body = []() -> Task<void> {
    TcpSocket listener = loopback_listener();
    Pair p = co_await connected_pair(listener);
    TcpSocket moved = std::move(p.server);
    EXPECT_FALSE(p.server.is_open());
    TcpSocket again;
    again = std::move(moved);
    EXPECT_TRUE(co_await p.client.send_all("abc"));
    char b[3];
    auto n = co_await recv_exactly(again, b, 3);
    EXPECT_TRUE(n && *n == 3);
  };
  run(body());
}

TEST_P(TcpTest, ReadvWritev) {
  auto body = []() -> Task<void> {
    TcpSocket listener = loopback_listener();
    Pair p = co_await connected_pair(listener);
    char a[] = "hello ", b[] = "world";
    iovec out[2] = {{a, 6}, {b, 5}};
    auto w = co_await p.client.writev(out);
    EXPECT_TRUE(w && *w == 11);
    char x[4], y[7];
    iovec in[2] = {{x, 4}, {y, 7}};
    std::size_t got = 0;
    while (got < 11) {
      auto r = co_await p.server.readv(in);
      EXPECT_TRUE(r && *r > 0);
      if (!r || *r == 0) co_return;
      got += *r;
      if (got < 11) {  // rare split delivery: read the rest plainly
        auto more = co_await p.server.recv(y + (got - 4), 11 - got);
        EXPECT_TRUE(more);
        got += more ? *more : 11;
      }
    }
    EXPECT_EQ(std::string(x, 4) + std::string(y, 7), "hello world");
  };
  run(body());
}

// Lowers the soft RLIMIT_NOFILE for its lifetime.
struct FdLimit {
  rlimit saved{};
  explicit FdLimit(rlim_t soft) {
    ::getrlimit(RLIMIT_NOFILE, &saved);
    rlimit lowered = saved;
    lowered.rlim_cur = soft;
    EXPECT_EQ(::setrlimit(RLIMIT_NOFILE, &lowered), 0);
  }
  ~FdLimit() { ::setrlimit(RLIMIT_NOFILE, &saved); }
};

TEST_P(TcpTest, EmfileOnAcceptIsAnErrorAndTheListenerRecovers) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizer runtimes open files of their own (reports, /proc/self/maps); with every
  // descriptor taken they misreport. The plain build runs this test in CI.
  GTEST_SKIP() << "needs free descriptors that the sanitizer runtime would take";
#endif
  auto body = []() -> Task<void> {
    TcpSocket listener = loopback_listener();
    auto addr = *listener.local_address();
    std::vector<TcpSocket> clients;
    for (int i = 0; i < 3; ++i) {  // connected in the kernel's backlog, not yet accepted
      auto c = TcpSocket::open();
      EXPECT_TRUE(co_await c->connect(addr));
      clients.push_back(std::move(*c));
    }
    int spare = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    int highest = spare;
    for (auto& c : clients) highest = std::max(highest, c.native_handle());
    std::vector<TcpSocket> accepted;
    std::vector<int> fillers;
    {
      // Every fd number below the limit is taken (or would be, past the highest one).
      FdLimit limit(static_cast<rlim_t>(highest + 1));
      for (int fd = 0; fd <= highest; ++fd) {
        if (::fcntl(fd, F_GETFD) < 0) {
          fillers.push_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        }
      }
      auto r = co_await listener.accept(2s);
      CO_ASSERT_FALSE(r);
      EXPECT_EQ(r.error(), std::errc::too_many_files_open) << r.error().message();
      // Free one descriptor: the same listener accepts again.
      ::close(spare);
      auto ok = co_await listener.accept(2s);
      EXPECT_TRUE(ok) << (ok ? "" : ok.error().message());
      if (ok) accepted.push_back(std::move(*ok));
      auto again = co_await listener.accept(2s);
      CO_ASSERT_FALSE(again);
      EXPECT_EQ(again.error(), std::errc::too_many_files_open);
    }
    for (int fd : fillers) ::close(fd);
    // Limit restored: the remaining connections are accepted.
    for (int i = 0; i < 2; ++i) {
      auto more = co_await listener.accept(2s);
      EXPECT_TRUE(more) << (more ? "" : more.error().message());
    }
  };
  run(body());
}

TEST_P(TcpTest, SocketOptions) {
  auto body = []() -> Task<void> {
    auto s = TcpSocket::open();
    EXPECT_TRUE(s->set_reuse_addr(true));
    EXPECT_TRUE(s->set_reuse_port(true));
    EXPECT_TRUE(s->set_nodelay(true));
    EXPECT_TRUE(s->set_keepalive(true));
    EXPECT_TRUE(s->set_recv_buffer_size(64 * 1024));
    EXPECT_TRUE(s->set_send_buffer_size(64 * 1024));
    int v = 0;
    socklen_t len = sizeof(v);
    ::getsockopt(s->native_handle(), IPPROTO_TCP, TCP_NODELAY, &v, &len);
    EXPECT_EQ(v, 1);
    co_return;
  };
  run(body());
}

GALAY_INSTANTIATE_ALL_BACKENDS(TcpTest);

}  // namespace
}  // namespace galay::test
