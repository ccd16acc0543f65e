// Pooled receive (StreamReceiver on a BufferPool) on every backend: io_uring runs it as a
// multishot recv on a provided-buffer ring; epoll/kqueue as recv into pool buffers.
#include <sys/socket.h>

#include <string>
#include <vector>

#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

class StreamReceiverTest : public BackendTest {};

// Read everything until EOF, returning the bytes.
Task<std::string> drain(StreamReceiver& rx) {
  std::string out;
  for (;;) {
    auto chunk = co_await rx.recv(5s);
    EXPECT_TRUE(chunk) << chunk.error().message();
    if (!chunk || chunk->empty()) break;
    out.append(reinterpret_cast<const char*>(chunk->data().data()), chunk->size());
  }
  co_return out;
}

TEST_P(StreamReceiverTest, ReceivesAStreamInOrderAndSeesEof) {
  auto body = []() -> Task<void> {
    auto pool = BufferPool::create(64, 512);
    CO_ASSERT_TRUE(pool);
    auto [client, server] = co_await loopback_tcp_pair();
    std::string sent;
    for (int i = 0; i < 2000; ++i) sent += "line " + std::to_string(i) + "\n";
    StreamReceiver rx(server, **pool);
    auto writer = [](TcpSocket* c, const std::string* s) -> Task<bool> {
      auto r = co_await c->send_all(*s);
      c->shutdown(ShutdownHow::write);
      co_return bool(r);
    };
    auto [got, ok] = co_await when_all(drain(rx), writer(&client, &sent));
    EXPECT_TRUE(ok);
    EXPECT_EQ(got, sent);
    EXPECT_EQ((*pool)->available(), 64u) << "every buffer must be back in the pool";
  };
  run(body());
}

TEST_P(StreamReceiverTest, ExhaustedPoolDoesNotHangAnotherConnection) {
  // The original galay-kernel hung here: connection A fills the whole pool, so
  // connection B's receive fails for lack of buffers and is never re-armed, even after A
  // frees them. Here B must complete once A's chunks are dropped.
  auto body = []() -> Task<void> {
    auto pool = BufferPool::create(8, 64);
    CO_ASSERT_TRUE(pool);
    auto [a_client, a_server] = co_await loopback_tcp_pair();
    auto [b_client, b_server] = co_await loopback_tcp_pair();
    StreamReceiver rx_a(a_server, **pool);
    StreamReceiver rx_b(b_server, **pool);

    // A: 2 KiB arrives; hold every chunk we get until the pool is dry.
    std::string big(2048, 'a');
    EXPECT_TRUE(co_await a_client.send_all(big));
    std::vector<PooledChunk> held;
    std::size_t a_bytes = 0;
    while ((*pool)->available() > 0 || held.empty()) {
      auto c = co_await rx_a.recv(2s);
      CO_ASSERT_TRUE(c && !c->empty());
      a_bytes += c->size();
      held.push_back(std::move(*c));
    }
    EXPECT_EQ((*pool)->available(), 0u);

    // B: a receive is waiting, data arrives, but there is no buffer to put it in.
    auto b_wait = spawn([](StreamReceiver* rx) -> Task<std::string> {
      std::string got;
      while (got.size() < 12) {  // the bytes may come in several chunks
        auto c = co_await rx->recv(5s);
        if (!c) co_return "error: " + c.error().message();
        if (c->empty()) break;
        got.append(reinterpret_cast<const char*>(c->data().data()), c->size());
      }
      co_return got;
    }(&rx_b));
    EXPECT_TRUE(co_await b_client.send_all("hello from b"));
    co_await sleep_for(50ms);
    EXPECT_FALSE(b_wait.done()) << "no buffer yet, so B must still be waiting";
    // io_uring: the multishot receive ran out of provided buffers, and the metrics say so.
    const std::uint64_t rearms = Scheduler::current()->metrics().enobufs_rearms;
    if (Scheduler::current()->backend_kind() == BackendKind::io_uring)
      EXPECT_GE(rearms, 1u);
    else
      EXPECT_EQ(rearms, 0u) << "only io_uring has provided-buffer rings";

    held.clear();  // A returns its buffers
    std::string b_got = co_await b_wait;
    EXPECT_EQ(b_got, "hello from b");

    // And A still gets the rest of its data.
    std::string rest;
    while (a_bytes + rest.size() < big.size()) {
      auto c = co_await rx_a.recv(2s);
      CO_ASSERT_TRUE(c && !c->empty());
      rest.append(reinterpret_cast<const char*>(c->data().data()), c->size());
    }
    EXPECT_EQ(a_bytes + rest.size(), big.size());
  };
  run(body());
}

TEST_P(StreamReceiverTest, TimeoutKeepsTheReceiverUsable) {
  auto body = []() -> Task<void> {
    auto pool = BufferPool::create(16, 256);
    CO_ASSERT_TRUE(pool);
    auto [client, server] = co_await loopback_tcp_pair();
    StreamReceiver rx(server, **pool);
    auto r = co_await rx.recv(30ms);
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), std::errc::timed_out);
    EXPECT_TRUE(co_await client.send_all("after timeout"));
    std::string got;
    while (got.size() < 13) {  // the bytes may come in several chunks
      auto c = co_await rx.recv(5s);
      CO_ASSERT_TRUE(c && !c->empty());
      got.append(reinterpret_cast<const char*>(c->data().data()), c->size());
    }
    EXPECT_EQ(got, "after timeout");
  };
  run(body());
}

TEST_P(StreamReceiverTest, PeerResetAndCloseWhileArmed) {
  auto body = []() -> Task<void> {
    auto pool = BufferPool::create(16, 256);
    CO_ASSERT_TRUE(pool);
    {
      auto [client, server] = co_await loopback_tcp_pair();
      StreamReceiver rx(server, **pool);
      auto waiting = spawn([](StreamReceiver* rx) -> Task<std::error_code> {
        auto c = co_await rx->recv(5s);
        co_return c ? std::error_code() : c.error();
      }(&rx));
      co_await sleep_for(10ms);
      linger lg{1, 0};
      ::setsockopt(client.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
      client = TcpSocket();  // RST
      EXPECT_EQ(co_await waiting, std::errc::connection_reset);
    }
    {
      auto [client, server] = co_await loopback_tcp_pair();
      StreamReceiver rx(server, **pool);
      auto waiting = spawn([](StreamReceiver* rx) -> Task<std::error_code> {
        auto c = co_await rx->recv(5s);
        co_return c ? std::error_code() : c.error();
      }(&rx));
      co_await sleep_for(10ms);
      EXPECT_TRUE(co_await server.close());  // our own close, with the receive armed
      EXPECT_EQ(co_await waiting, std::errc::operation_canceled);
    }
    EXPECT_EQ((*pool)->available(), 16u);
  };
  run(body());
}

TEST_P(StreamReceiverTest, SchedulerShutdownWithArmedReceivers) {
  // Receivers armed on many connections when the scheduler is destroyed: no hang, no leak.
  sched()
      .spawn([]() -> Task<void> {
        auto pool = BufferPool::create(32, 128);
        std::vector<std::pair<TcpSocket, TcpSocket>> pairs;
        for (int i = 0; i < 20; ++i) pairs.push_back(co_await loopback_tcp_pair());
        std::vector<std::unique_ptr<StreamReceiver>> rxs;
        std::vector<JoinHandle<void>> waits;
        for (auto& p : pairs) {
          rxs.push_back(std::make_unique<StreamReceiver>(p.second, **pool));
          waits.push_back(spawn([](StreamReceiver* rx) -> Task<void> { (void)co_await rx->recv(); }(rxs.back().get())));
        }
        co_await sleep_for(std::chrono::hours(1));
      }())
      .detach();
  sched().block_on([]() -> Task<void> { co_await sleep_for(50ms); }());
  sched_.reset();  // must return; ASan checks that nothing leaks
}

TEST_P(StreamReceiverTest, PoolRejectsBadSizes) {
  auto body = []() -> Task<void> {
    EXPECT_FALSE(BufferPool::create(0, 64));
    EXPECT_FALSE(BufferPool::create(3, 64));
    EXPECT_FALSE(BufferPool::create(65536, 64));
    EXPECT_FALSE(BufferPool::create(8, 0));
    co_return;
  };
  run(body());
}

// ReceiverOptions::max_buffers: a receiver whose caller keeps its chunks stops at its share
// of the pool (the rest of the data waits in the socket) and resumes once chunks are dropped.
TEST_P(StreamReceiverTest, AReceiverStopsAtItsShareOfThePoolAndResumes) {
  auto pool = BufferPool::create(sched(), 64, 1024);
  ASSERT_TRUE(pool);
  auto body = [](BufferPool* pool) -> Task<void> {
    auto [client, server] = co_await loopback_tcp_pair();
    StreamReceiver rx(server, *pool, ReceiverOptions{4});
    std::string sent(64 * 1024, '\0');
    for (std::size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<char>('a' + i % 23);
    auto writer = spawn([](TcpSocket* c, const std::string* s) -> Task<bool> {
      co_return static_cast<bool>(co_await c->send_all(*s, 10s));
    }(&client, &sent));
    std::vector<PooledChunk> kept;
    std::string got;
    for (int i = 0; i < 4; ++i) {  // keep four chunks
      auto c = co_await rx.recv(5s);
      CO_ASSERT_TRUE(c && !c->empty());
      got.append(reinterpret_cast<const char*>(c->data().data()), c->size());
      kept.push_back(std::move(*c));
    }
    co_await sleep_for(100ms);  // plenty of data waits; the receiver must not take more buffers
    EXPECT_GE(pool->available(), 64u - 8u) << "a receiver limited to 4 buffers holds " << 64 - pool->available();
    kept.clear();
    while (got.size() < sent.size()) {
      auto c = co_await rx.recv(5s);
      CO_ASSERT_TRUE(c && !c->empty());
      got.append(reinterpret_cast<const char*>(c->data().data()), c->size());
    }
    EXPECT_TRUE(got == sent) << "bytes lost or reordered across the stop";
    EXPECT_TRUE(co_await writer);
  };
  run(body(pool->get()));
  sched().shutdown();
}

// When the pool is dry, a buffer that comes back goes to a receiver that holds nothing
// before one that already holds buffers.
TEST_P(StreamReceiverTest, AReturnedBufferGoesFirstToAReceiverHoldingNothing) {
  auto pool = BufferPool::create(sched(), 4, 1024);
  ASSERT_TRUE(pool);
  auto body = [](BufferPool* pool) -> Task<void> {
    auto [a_client, a_server] = co_await loopback_tcp_pair();
    auto [b_client, b_server] = co_await loopback_tcp_pair();
    StreamReceiver rx_a(a_server, *pool);
    StreamReceiver rx_b(b_server, *pool);
    EXPECT_TRUE(co_await a_client.send_all(std::string(16 * 1024, 'a')));
    std::vector<PooledChunk> a_held;
    while (pool->available() > 0) {  // A takes every buffer
      auto c = co_await rx_a.recv(2s);
      CO_ASSERT_TRUE(c && !c->empty());
      a_held.push_back(std::move(*c));
    }
    // Both wait: A for more of its (plentiful) data, B for its first bytes.
    auto a_next =
        spawn([](StreamReceiver* rx) -> Task<bool> { co_return static_cast<bool>(co_await rx->recv(5s)); }(&rx_a));
    auto b_next = spawn([](StreamReceiver* rx) -> Task<std::string> {
      auto c = co_await rx->recv(5s);
      if (!c) co_return "error: " + c.error().message();
      co_return std::string(reinterpret_cast<const char*>(c->data().data()), c->size());
    }(&rx_b));
    EXPECT_TRUE(co_await b_client.send_all(std::string("b")));
    co_await sleep_for(30ms);
    a_held.pop_back();  // one buffer comes back
    co_await sleep_for(50ms);
    EXPECT_TRUE(b_next.done()) << "the returned buffer went to the receiver that already held three";
    EXPECT_EQ(co_await b_next, "b");
    a_held.clear();
    EXPECT_TRUE(co_await a_next);
  };
  run(body(pool->get()));
  sched().shutdown();
}

GALAY_INSTANTIATE_ALL_BACKENDS(StreamReceiverTest);

}  // namespace
}  // namespace galay::test
