// TcpAcceptor on every backend (io_uring: multishot accept; others: accept4 per call).
#include <vector>

#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

class AcceptorTest : public BackendTest {};

TEST_P(AcceptorTest, BurstOfConnectionsAllAccepted) {
  auto body = []() -> Task<int> {
    TcpSocket listener = loopback_listener();
    auto addr = *listener.local_address();
    TcpAcceptor acceptor(listener);
    // Arm the acceptor, then let 200 connections arrive while nobody awaits: on io_uring
    // they queue in the acceptor.
    auto first = spawn([](TcpAcceptor* a) -> Task<bool> { co_return bool(co_await a->accept(5s)); }(&acceptor));
    std::vector<TcpSocket> clients;
    for (int i = 0; i < 200; ++i) {
      auto c = TcpSocket::open();
      EXPECT_TRUE(co_await c->connect(addr, 5s));
      clients.push_back(std::move(*c));
    }
    EXPECT_TRUE(co_await first);
    co_await sleep_for(20ms);
    int accepted = 1;
    for (int i = 1; i < 200; ++i) {
      auto s = co_await acceptor.accept(5s);
      EXPECT_TRUE(s) << s.error().message();
      if (!s) break;
      // Each accepted socket works.
      if (i % 50 == 0) {
        EXPECT_TRUE(co_await clients[static_cast<std::size_t>(i)].send_all("x"));
        char b;
        auto n = co_await s->recv(&b, 1, 5s);
        EXPECT_TRUE(n && *n == 1);
      }
      ++accepted;
    }
    co_return accepted;
  };
  EXPECT_EQ(run(body()), 200);
}

TEST_P(AcceptorTest, TimeoutAndCloseWhileArmed) {
  auto body = []() -> Task<void> {
    TcpSocket listener = loopback_listener();
    {
      TcpAcceptor acceptor(listener);
      auto r = co_await acceptor.accept(20ms);
      CO_ASSERT_FALSE(r);
      EXPECT_EQ(r.error(), std::errc::timed_out);
      // Still usable after the timeout.
      auto c = TcpSocket::open();
      EXPECT_TRUE(co_await c->connect(*listener.local_address(), 5s));
      auto s = co_await acceptor.accept(5s);
      EXPECT_TRUE(s) << s.error().message();
    }
    // A pending accept is cancelled by closing the listener.
    TcpAcceptor acceptor(listener);
    auto waiting = spawn([](TcpAcceptor* a) -> Task<std::error_code> {
      auto r = co_await a->accept(5s);
      co_return r ? std::error_code() : r.error();
    }(&acceptor));
    co_await sleep_for(10ms);
    EXPECT_TRUE(co_await listener.close());
    EXPECT_EQ(co_await waiting, std::errc::operation_canceled);
  };
  run(body());
}

TEST_P(AcceptorTest, DestroyedWithQueuedConnectionsClosesThem) {
  sched_.reset();
  const int fds_before = open_fd_count();
  {
    auto s = Scheduler::create({GetParam()});
    ASSERT_TRUE(s);
    (*s)->block_on([]() -> Task<void> {
      TcpSocket listener = loopback_listener();
      TcpAcceptor acceptor(listener);
      auto first = spawn([](TcpAcceptor* a) -> Task<void> { (void)co_await a->accept(5s); }(&acceptor));
      std::vector<TcpSocket> clients;
      for (int i = 0; i < 20; ++i) {
        auto c = TcpSocket::open();
        EXPECT_TRUE(co_await c->connect(*listener.local_address(), 5s));
        clients.push_back(std::move(*c));
      }
      co_await first;
      co_await sleep_for(20ms);  // io_uring: the rest sit in the acceptor's queue
    }());
  }
  EXPECT_EQ(open_fd_count(), fds_before) << "queued connections must be closed with the acceptor";
}

GALAY_INSTANTIATE_ALL_BACKENDS(AcceptorTest);

}  // namespace
}  // namespace galay::test
