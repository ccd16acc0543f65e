// Bursts against deliberately tiny queues: with io_uring's SQ at 4 entries and its CQ at 8,
// hundreds of operations are started in one loop turn (the SQ fills and must be submitted
// and retried) and complete at once (the CQ overflows and must be flushed). Nothing may be
// lost. The same test runs on every backend; only io_uring has rings to shrink.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

class TinyRingTest : public BackendTest {
 protected:
  Scheduler::Options scheduler_options() override {
    Scheduler::Options o;
    o.io_uring_sq_entries = 4;
    o.io_uring_cq_entries = 8;
    return o;
  }
};

constexpr int kPairs = 300;

TEST_P(TinyRingTest, BurstOfCompletionsLosesNothing) {
  if (GetParam() == BackendKind::io_uring) {
    EXPECT_NE(sched().describe_backend().find("sq=4 cq=8"), std::string::npos) << sched().describe_backend();
  }
  auto body = []() -> Task<int> {
    std::vector<int> raw(kPairs * 2);
    std::vector<TcpSocket> readers, writers;
    for (int i = 0; i < kPairs; ++i) {
      int fds[2];
      EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
      readers.push_back(std::move(*TcpSocket::adopt(fds[0])));
      writers.push_back(std::move(*TcpSocket::adopt(fds[1])));
    }
    int completed = 0;
    std::vector<JoinHandle<void>> handles;
    // All recvs are started in the same turn: far more SQEs than the SQ holds.
    for (int i = 0; i < kPairs; ++i) {
      handles.push_back(spawn([](TcpSocket* s, int id, int* done) -> Task<void> {
        char buf[16];
        auto n = co_await recv_exactly(*s, buf, sizeof(int), 10s);
        EXPECT_TRUE(n && *n == sizeof(int)) << (n ? "short" : n.error().message());
        int got = -1;
        if (n && *n == sizeof(int)) std::memcpy(&got, buf, sizeof(int));
        EXPECT_EQ(got, id);
        ++*done;
      }(&readers[i], i, &completed)));
    }
    co_await sleep_for(20ms);  // every recv is now pending in the kernel
    // Make all of them complete at once: the CQ (8) overflows many times over.
    for (int i = 0; i < kPairs; ++i) EXPECT_EQ(::write(writers[i].native_handle(), &i, sizeof(i)), ssize_t(sizeof(i)));
    for (auto& h : handles) co_await h;
    // And the other direction: a burst of sends started in one turn.
    std::vector<Task<std::size_t>> sends;
    for (int i = 0; i < kPairs; ++i)
      sends.push_back([](TcpSocket* s) -> Task<std::size_t> {
        auto r = co_await s->send_all("0123456789abcdef");
        co_return r ? *r : 0;
      }(&writers[i]));
    auto sent = co_await when_all(std::move(sends));
    for (auto n : sent) EXPECT_EQ(n, 16u);
    co_return completed;
  };
  EXPECT_EQ(run(body(), 30s), kPairs);
}

TEST_P(TinyRingTest, TimeoutsAndCancelsUnderBurst) {
  // Every recv times out; each timeout issues a cancel SQE while the SQ is tiny.
  auto body = []() -> Task<int> {
    std::vector<TcpSocket> keep;
    std::vector<Task<int>> waits;
    for (int i = 0; i < 100; ++i) {
      int fds[2];
      EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
      keep.push_back(std::move(*TcpSocket::adopt(fds[0])));
      keep.push_back(std::move(*TcpSocket::adopt(fds[1])));
    }
    for (int i = 0; i < 100; ++i)
      waits.push_back([](TcpSocket* s) -> Task<int> {
        char b[4];
        auto r = co_await s->recv(b, 4, 30ms);
        co_return !r && r.error() == std::errc::timed_out ? 1 : 0;
      }(&keep[2 * i]));
    auto r = co_await when_all(std::move(waits));
    int timed_out = 0;
    for (int v : r) timed_out += v;
    co_return timed_out;
  };
  EXPECT_EQ(run(body(), 30s), 100);
}

// The metrics count io_uring's pressure points (runtime/metrics.h): a full SQ and an
// overflowed CQ, with every result still right.
TEST_P(TinyRingTest, AFullSubmissionQueueAndAnOverflowedCompletionQueueAreCountedAndLoseNothing) {
  run([]() -> Task<void> {
    TempDir dir;
    CO_ASSERT_TRUE(!dir.create("galay_metrics_ring").empty());
    auto f = File::open(dir.path() + "/f", O_RDWR | O_CREAT | O_TRUNC);
    CO_ASSERT_TRUE(f);
    constexpr std::size_t kReads = 64, kBlock = 512;
    AlignedBuffer data(kReads * kBlock);
    for (std::size_t i = 0; i < data.size(); ++i) data.data()[i] = static_cast<std::byte>(i / kBlock);
    CO_ASSERT_TRUE(co_await f->write_at(data.span(), 0));
    Scheduler& s = *Scheduler::current();
    const SchedulerMetrics before = s.metrics();
    // 64 reads in one batch through a 4-entry SQ and an 8-entry CQ: page-cache reads finish
    // at once, so the CQ fills while the SQ is still being submitted.
    FileBatch batch(kReads);
    std::vector<AlignedBuffer> bufs;
    for (std::size_t i = 0; i < kReads; ++i) bufs.emplace_back(kBlock);
    for (std::size_t i = 0; i < kReads; ++i) batch.read_at(*f, bufs[i].span(), i * kBlock);
    CO_ASSERT_TRUE(co_await batch.submit());
    for (std::size_t i = 0; i < kReads; ++i) {
      auto r = batch.result(i);
      CO_ASSERT_TRUE(r && *r == kBlock);
      EXPECT_EQ(bufs[i].data()[0], static_cast<std::byte>(i)) << "read " << i << " has another block's bytes";
    }
    const SchedulerMetrics after = s.metrics();
    EXPECT_EQ(after.of(OpCode::read_at).completed - before.of(OpCode::read_at).completed, kReads);
    if (s.backend_kind() == BackendKind::io_uring) {
      EXPECT_GE(after.sq_full_waits - before.sq_full_waits, 1u) << s.describe_backend();
      EXPECT_GE(after.cq_overflows - before.cq_overflows, 1u) << s.describe_backend();
    } else {
      EXPECT_EQ(after.sq_full_waits, 0u);
      EXPECT_EQ(after.cq_overflows, 0u);
    }
  }());
}

GALAY_INSTANTIATE_ALL_BACKENDS(TinyRingTest);

}  // namespace
}  // namespace galay::test
