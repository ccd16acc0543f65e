// Failures injected where the kernel cannot be made to fail on demand
// (galay-kernel/io/fault_injection.h), on every backend.
#include <cerrno>
#include <string>

#include "galay-kernel/io/fault_injection.h"
#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

class FaultInjectionTest : public BackendTest {
 protected:
  void TearDown() override {
    fault::reset();
    BackendTest::TearDown();
  }
};

TEST_P(FaultInjectionTest, AcceptFailingWithEmfileIsReportedAndTheListenerRecovers) {
  auto body = []() -> Task<void> {
    TcpSocket listener = loopback_listener();
    auto client = TcpSocket::open();
    CO_ASSERT_TRUE(client.has_value());
    auto connected = co_await client->connect(*listener.local_address(), 5s);
    CO_ASSERT_TRUE(connected.has_value());  // queued in the listener's backlog
    fault::fail_ops(OpCode::accept, EMFILE, 3);
    for (int i = 0; i < 3; ++i) {
      auto failed = co_await listener.accept(5s);
      CO_ASSERT_FALSE(failed.has_value());
      EXPECT_EQ(failed.error(), std::errc::too_many_files_open);
    }
    // The connection was left in the backlog, as with a real EMFILE: it is accepted now.
    auto accepted = co_await listener.accept(5s);
    CO_ASSERT_TRUE(accepted.has_value());
    auto sent = co_await client->send_all(std::string_view("ping"));
    CO_ASSERT_TRUE(sent.has_value());
    char buf[4];
    auto got = co_await recv_exactly(*accepted, buf, sizeof buf);
    CO_ASSERT_TRUE(got.has_value());
    EXPECT_EQ(std::string(buf, *got), "ping");
  };
  run(body(), 20s);
}

TEST_P(FaultInjectionTest, AFailedRecvLosesNoData) {
  auto body = []() -> Task<void> {
    auto pair = UnixStream::pair();
    CO_ASSERT_TRUE(pair.has_value());
    auto& [a, b] = *pair;
    CO_ASSERT_TRUE((co_await b.send_all(std::string_view("data"))).has_value());
    fault::fail_ops(OpCode::recv, ECONNRESET, 1);
    char buf[16];
    auto failed = co_await a.recv(buf, sizeof buf, 5s);
    CO_ASSERT_FALSE(failed.has_value());
    EXPECT_EQ(failed.error(), std::errc::connection_reset);
    // The bytes are still there. Chaos mode may deliver them over several reads.
    auto got = co_await recv_exactly(a, buf, 4);
    CO_ASSERT_TRUE(got.has_value());
    EXPECT_EQ(std::string(buf, *got), "data");
  };
  run(body(), 20s);
}

TEST_P(FaultInjectionTest, RefusedIoUringSubmissionsLoseNothing) {
  if (GetParam() != BackendKind::io_uring) GTEST_SKIP() << "only io_uring has a submission queue to refuse";
  auto body = []() -> Task<void> {
    auto pair = UnixStream::pair();
    CO_ASSERT_TRUE(pair.has_value());
    auto& [a, b] = *pair;
    // Every kind of refusal the kernel gives, several times each, while 200 messages go
    // back and forth: each op must still complete exactly once with the right bytes.
    int errors[] = {EBUSY, EAGAIN, EINTR};
    for (int round = 0; round < 200; ++round) {
      if (round % 20 == 0) fault::fail_io_uring_submits(errors[(round / 20) % 3], 5);
      const std::string msg = "message " + std::to_string(round);
      auto reader = spawn([](UnixStream* s, std::size_t n) -> Task<std::string> {
        std::string got(n, '\0');
        std::size_t have = 0;
        while (have < n) {
          auto r = co_await s->recv(got.data() + have, n - have, 5s);
          if (!r || *r == 0) co_return std::string("<error>");
          have += *r;
        }
        co_return got;
      }(&a, msg.size()));
      auto sent = co_await b.send_all(msg, 5s);
      CO_ASSERT_TRUE(sent.has_value());
      EXPECT_EQ(co_await reader, msg);
    }
    // Every armed refusal was actually hit by a submission (the hook is on the path).
    EXPECT_EQ(fault::take_submit_failure(), 0);
  };
  run(body(), 30s);
}

TEST_P(FaultInjectionTest, DisarmedAfterTheCount) {
  auto body = []() -> Task<void> {
    auto pair = UnixStream::pair();
    CO_ASSERT_TRUE(pair.has_value());
    auto& [a, b] = *pair;
    fault::fail_ops(OpCode::send, EPIPE, 2);
    EXPECT_FALSE((co_await b.send(std::string_view("x").data(), 1)).has_value());
    EXPECT_FALSE((co_await b.send(std::string_view("x").data(), 1)).has_value());
    auto third = co_await b.send(std::string_view("y").data(), 1);
    CO_ASSERT_TRUE(third.has_value());
    char c = 0;
    auto got = co_await a.recv(&c, 1, 5s);
    CO_ASSERT_TRUE(got.has_value());
    EXPECT_EQ(c, 'y');
    EXPECT_FALSE(fault::take_op_failure(OpCode::send));
  };
  run(body(), 20s);
}

GALAY_INSTANTIATE_ALL_BACKENDS(FaultInjectionTest);

}  // namespace
}  // namespace galay::test
