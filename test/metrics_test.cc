// Scheduler and Runtime metrics (runtime/metrics.h) on every backend: each operation is
// counted once as started and once as completed or failed, with its bytes; in-flight,
// loop-turn and gauge figures follow what the loop does; another thread may read them
// while the loop runs; the Prometheus text is well formed (and promtool accepts it where
// it is installed).
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

class MetricsTest : public BackendTest {};

// After - before, per kind.
SchedulerMetrics::Ops delta(const SchedulerMetrics& after, const SchedulerMetrics& before, OpCode c) {
  SchedulerMetrics::Ops d;
  d.started = after.of(c).started - before.of(c).started;
  d.completed = after.of(c).completed - before.of(c).completed;
  d.failed = after.of(c).failed - before.of(c).failed;
  return d;
}

TEST_P(MetricsTest, AnEchoIsCountedPerKindWithItsBytes) {
  run([]() -> Task<void> {
    auto pair = co_await loopback_tcp_pair();
    Scheduler& s = *Scheduler::current();
    const SchedulerMetrics before = s.metrics();
    char msg[64] = {'m'};
    char back[64];
    for (int i = 0; i < 100; ++i) {
      CO_ASSERT_TRUE(co_await pair.first.send_all(msg, sizeof msg));
      auto got = co_await recv_exactly(pair.second, back, sizeof back);
      CO_ASSERT_TRUE(got && *got == sizeof back);
    }
    const SchedulerMetrics after = s.metrics();
    const auto send = delta(after, before, OpCode::send);
    EXPECT_EQ(send.started, 100u);
    EXPECT_EQ(send.completed, 100u);
    EXPECT_EQ(send.failed, 0u);
    const auto recv = delta(after, before, OpCode::recv);
    EXPECT_GE(recv.started, 100u);  // recv_exactly may take a message in two pieces
    EXPECT_EQ(recv.started, recv.completed);
    EXPECT_EQ(after.bytes_out - before.bytes_out, 6400u);
    EXPECT_EQ(after.bytes_in - before.bytes_in, 6400u);
    EXPECT_EQ(after.of(OpCode::send).in_flight(), 0u);
    EXPECT_EQ(after.of(OpCode::recv).in_flight(), 0u);
    EXPECT_GT(after.loop_turns, before.loop_turns);
  }());
}

TEST_P(MetricsTest, FailuresTimeoutsAndCancellationsAreCountedAsFailed) {
  run([]() -> Task<void> {
    auto pair = co_await loopback_tcp_pair();
    Scheduler& s = *Scheduler::current();
    const SchedulerMetrics before = s.metrics();
    char buf[16];
    auto timed_out = co_await pair.first.recv(buf, sizeof buf, 20ms);
    CO_ASSERT_FALSE(timed_out);
    EXPECT_EQ(timed_out.error(), std::errc::timed_out);
    auto waiting = spawn([](TcpSocket* sock) -> Task<bool> {
      char b[16];
      co_return !(co_await sock->recv(b, sizeof b));
    }(&pair.first));
    co_await sleep_for(10ms);
    EXPECT_EQ(s.metrics().of(OpCode::recv).in_flight(), 1u) << "the waiting receive is in flight";
    waiting.cancel();
    EXPECT_TRUE(co_await waiting);
    auto closed = co_await pair.second.close();
    EXPECT_TRUE(closed);
    auto bad = co_await pair.second.send(buf, sizeof buf);  // the socket is empty now: EBADF
    EXPECT_FALSE(bad);
    const SchedulerMetrics after = s.metrics();
    const auto recv = delta(after, before, OpCode::recv);
    EXPECT_EQ(recv.started, 2u);
    EXPECT_EQ(recv.failed, 2u);
    EXPECT_EQ(recv.completed, 0u);
    const auto send = delta(after, before, OpCode::send);
    EXPECT_EQ(send.started, 1u);
    EXPECT_EQ(send.failed, 1u);
    EXPECT_EQ(delta(after, before, OpCode::close).completed, 1u);
    EXPECT_EQ(after.in_flight(), before.in_flight());
  }());
}

TEST_P(MetricsTest, FileReadsAndBatchesCountTheirBytes) {
  run([]() -> Task<void> {
    TempDir dir;
    CO_ASSERT_TRUE(!dir.create("galay_metrics").empty());
    auto f = File::open(dir.path() + "/f", O_RDWR | O_CREAT | O_TRUNC);
    CO_ASSERT_TRUE(f);
    Scheduler& s = *Scheduler::current();
    const SchedulerMetrics before = s.metrics();
    AlignedBuffer data(16384);
    CO_ASSERT_TRUE(co_await f->write_at(data.span(), 0));
    FileBatch batch(4);
    std::vector<AlignedBuffer> bufs;
    for (int i = 0; i < 4; ++i) bufs.emplace_back(4096);
    for (std::size_t i = 0; i < 4; ++i) batch.read_at(*f, bufs[i].span(), i * 4096);
    CO_ASSERT_TRUE(co_await batch.submit());
    const SchedulerMetrics after = s.metrics();
    EXPECT_EQ(delta(after, before, OpCode::write_at).completed, 1u);
    const auto reads = delta(after, before, OpCode::read_at);
    EXPECT_EQ(reads.started, 4u);
    EXPECT_EQ(reads.completed, 4u);
    EXPECT_EQ(after.bytes_out - before.bytes_out, 16384u);
    EXPECT_EQ(after.bytes_in - before.bytes_in, 16384u);
    EXPECT_EQ(after.of(OpCode::read_at).in_flight(), 0u);
  }());
}

TEST_P(MetricsTest, LoopTurnsFillTheHistogramAndTheGaugesFollowTheLoop) {
  run([]() -> Task<void> {
    Scheduler& s = *Scheduler::current();
    auto sleeper = spawn([]() -> Task<void> { co_await sleep_for(10s); }());
    co_await sleep_for(5ms);
    SchedulerMetrics m = s.metrics();
    EXPECT_GE(m.timers_armed, 1u) << "the sleeper's timer";
    std::uint64_t bucketed = 0;
    for (std::uint64_t b : m.loop_turn_buckets) bucketed += b;
    EXPECT_EQ(bucketed, m.loop_turns);  // read on the loop's own thread: consistent
    EXPECT_GT(m.loop_turns, 0u);
    EXPECT_GT(m.loop_turn_ns, 0u);
    sleeper.cancel();
    co_await sleeper;
    // A turn that runs 3 ms without suspending lands in the 2^21..2^22 ns bucket or above.
    const SchedulerMetrics before = s.metrics();
    co_await spawn([]() -> Task<void> {
      const auto until = Clock::now() + 3ms;
      while (Clock::now() < until) {
      }
      co_return;
    }());
    m = s.metrics();
    std::uint64_t long_turns = 0;
    for (std::size_t i = 21; i < SchedulerMetrics::kTurnBuckets; ++i)
      long_turns += m.loop_turn_buckets[i] - before.loop_turn_buckets[i];
    EXPECT_GE(long_turns, 1u);
  }());
}

TEST_P(MetricsTest, AnotherThreadReadsThemWhileTheLoopRuns) {
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> reads{0};
  std::atomic<bool> went_back{false};
  Scheduler* target = &sched();
  std::thread reader([&] {
    std::uint64_t last = 0;
    while (!stop.load()) {
      const std::uint64_t now = target->metrics().of(OpCode::send).started;
      if (now < last) went_back = true;
      last = now;
      ++reads;
    }
  });
  run([]() -> Task<void> {
    auto pair = co_await loopback_tcp_pair();
    char msg[32] = {'x'};
    char back[32];
    for (int i = 0; i < 2000; ++i) {
      CO_ASSERT_TRUE(co_await pair.first.send_all(msg, sizeof msg));
      CO_ASSERT_TRUE(co_await recv_exactly(pair.second, back, sizeof back));
    }
  }());
  stop = true;
  reader.join();
  EXPECT_FALSE(went_back) << "a counter went backwards";
  EXPECT_GT(reads.load(), 0u);
  EXPECT_GE(sched().metrics().of(OpCode::send).completed, 2000u);
}

// One line of format_prometheus(..., "galay", "worker=\"0\""): "# HELP|TYPE galay_<name> ...",
// or `galay_<name>{worker="0"[,<label>="<value>"]} <number>`.
bool well_formed(std::string_view line) {
  auto name_ok = [](std::string_view n) {
    if (!n.starts_with("galay_") || n.size() == 6) return false;
    for (char c : n)
      if (!((c >= 'a' && c <= 'z') || c == '_')) return false;
    return true;
  };
  if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
    const std::string_view rest = line.substr(7);
    const std::size_t space = rest.find(' ');
    return space != std::string_view::npos && space + 1 < rest.size() && name_ok(rest.substr(0, space));
  }
  const std::size_t brace = line.find('{');
  const std::size_t close = line.find("} ");
  if (brace == std::string_view::npos || close == std::string_view::npos || close < brace) return false;
  if (!name_ok(line.substr(0, brace))) return false;
  const std::string_view labels = line.substr(brace + 1, close - brace - 1);
  if (labels != "worker=\"0\"" && !(labels.starts_with("worker=\"0\",") && labels.ends_with('"'))) return false;
  const std::string_view value = line.substr(close + 2);
  if (value.empty()) return false;
  for (char c : value)
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == '+' || c == '-')) return false;
  return true;
}

TEST_P(MetricsTest, PrometheusTextIsWellFormed) {
  run([]() -> Task<void> {
    auto pair = co_await loopback_tcp_pair();
    char msg[8] = {'p'};
    CO_ASSERT_TRUE(co_await pair.first.send_all(msg, sizeof msg));
    CO_ASSERT_TRUE(co_await recv_exactly(pair.second, msg, sizeof msg));
    const std::string text = format_prometheus(Scheduler::current()->metrics(), "galay", "worker=\"0\"");
    std::istringstream in(text);
    std::string line;
    int samples = 0;
    while (std::getline(in, line)) {
      EXPECT_TRUE(well_formed(line)) << "malformed line: " << line;
      samples += !line.empty() && line[0] != '#';
    }
    EXPECT_GT(samples, 40);
    EXPECT_NE(text.find("# TYPE galay_ops_started_total counter\n"), std::string::npos);
    EXPECT_NE(text.find("galay_ops_completed_total{worker=\"0\",op=\"send\"} 1\n"), std::string::npos) << text;
    EXPECT_NE(text.find("galay_bytes_out_total{worker=\"0\"} 8\n"), std::string::npos);
    EXPECT_NE(text.find("# TYPE galay_loop_turn_seconds histogram\n"), std::string::npos);
    EXPECT_NE(text.find("galay_loop_turn_seconds_bucket{worker=\"0\",le=\"+Inf\"}"), std::string::npos);
    EXPECT_EQ(text.find("op=\"statx\""), std::string::npos) << "kinds never used are left out";
  }());
}

GALAY_INSTANTIATE_ALL_BACKENDS(MetricsTest);

// ---- the stall detector ----

struct Stalls {
  std::vector<StallReport> reports;
};

class StallDetectorTest : public BackendTest {
 protected:
  Scheduler::Options scheduler_options() override {
    Scheduler::Options o;
    o.stall_threshold = 25ms;
    o.on_stall = [s = stalls_](const StallReport& r) { s->reports.push_back(r); };
    return o;
  }
  // The reports whose spawn site is `line` of this file.
  std::vector<StallReport> reported_at(unsigned line) const {
    std::vector<StallReport> out;
    for (const StallReport& r : stalls_->reports)
      if (r.spawned_at.line() == line && std::string_view(r.spawned_at.file_name()) == __FILE__) out.push_back(r);
    return out;
  }
  std::shared_ptr<Stalls> stalls_ = std::make_shared<Stalls>();
};

void spin(std::chrono::milliseconds d) {
  const auto until = Clock::now() + d;
  while (Clock::now() < until) {
  }
}

// Spins after a suspension, inside a child task: the report names the root's spawn site.
Task<void> child_that_spins_after_a_sleep() {
  co_await sleep_for(1ms);
  spin(80ms);
}
Task<void> root_awaiting_a_spinning_child() {
  co_await sleep_for(1ms);
  co_await child_that_spins_after_a_sleep();
}
// Spins as soon as it starts, before it ever suspends.
Task<void> spins_at_once() {
  spin(80ms);
  co_return;
}
// Suspends often; never long.
Task<void> never_stalls() {
  for (int i = 0; i < 20; ++i) co_await sleep_for(1ms);
}

TEST_P(StallDetectorTest, ATaskThatRunsTooLongIsReportedWithItsSpawnSite) {
  unsigned nested_line = 0, at_once_line = 0;
  run([](unsigned* nested, unsigned* at_once) -> Task<void> {
    // clang-format off
    *nested = __LINE__; auto a = spawn(root_awaiting_a_spinning_child());
    *at_once = __LINE__; auto b = spawn(spins_at_once());
    // clang-format on
    auto c = spawn(never_stalls());
    co_await a;
    co_await b;
    co_await c;
  }(&nested_line, &at_once_line));
  const auto nested = reported_at(nested_line);
  ASSERT_EQ(nested.size(), 1u) << "the child's spin, under its root's spawn site";
  EXPECT_GE(nested[0].duration, 80ms);
  const auto at_once = reported_at(at_once_line);
  ASSERT_EQ(at_once.size(), 1u) << "a spin before the first suspension";
  EXPECT_GE(at_once[0].duration, 80ms);
  EXPECT_GE(sched().metrics().stalls, 2u);
  EXPECT_EQ(sched().metrics().stalls, stalls_->reports.size());
}

TEST_P(MetricsTest, TheStallDetectorIsOffByDefault) {
  run([]() -> Task<void> {
    co_await spawn(spins_at_once());
    EXPECT_EQ(Scheduler::current()->metrics().stalls, 0u);
  }());
}

GALAY_INSTANTIATE_ALL_BACKENDS(StallDetectorTest);

// Two workers on one page: each family's HELP and TYPE once, each worker's samples under it.
std::string two_worker_page() {
  SchedulerMetrics a, b;
  a.ops[static_cast<std::size_t>(OpCode::recv)] = {10, 8, 1};
  a.bytes_in = 5;
  a.loop_turns = 2;
  a.loop_turn_buckets[3] = 2;
  b.ops[static_cast<std::size_t>(OpCode::send)] = {4, 4, 0};
  b.bytes_in = 7;
  b.stalls = 1;
  const LabeledMetrics sets[] = {{"worker=\"0\"", a}, {"worker=\"1\"", b}};
  return format_prometheus(sets, "galay");
}

std::size_t occurrences(const std::string& text, std::string_view what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(MetricsFormat, SeveralWorkersShareEachFamilysHeader) {
  const std::string text = two_worker_page();
  EXPECT_EQ(occurrences(text, "# HELP galay_bytes_in_total "), 1u);
  EXPECT_EQ(occurrences(text, "# TYPE galay_loop_turn_seconds histogram\n"), 1u);
  EXPECT_EQ(occurrences(text, "# TYPE galay_ops_started_total counter\n"), 1u);
  EXPECT_NE(text.find("galay_bytes_in_total{worker=\"0\"} 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("galay_bytes_in_total{worker=\"1\"} 7\n"), std::string::npos);
  EXPECT_NE(text.find("galay_ops_started_total{worker=\"0\",op=\"recv\"} 10\n"), std::string::npos);
  EXPECT_NE(text.find("galay_ops_started_total{worker=\"1\",op=\"send\"} 4\n"), std::string::npos);
  EXPECT_EQ(text.find("galay_ops_started_total{worker=\"1\",op=\"recv\"}"), std::string::npos)
      << "worker 1 never received";
  EXPECT_NE(text.find("galay_stalls_total{worker=\"1\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("galay_loop_turn_seconds_count{worker=\"0\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("galay_loop_turn_seconds_count{worker=\"1\"} 0\n"), std::string::npos);
  // The one-snapshot form is the same page with one set.
  SchedulerMetrics m;
  m.bytes_in = 5;
  const LabeledMetrics one[] = {{"worker=\"0\"", m}};
  EXPECT_EQ(format_prometheus(m, "galay", "worker=\"0\""), format_prometheus(one, "galay"));
}

TEST(MetricsFormat, PromtoolAcceptsIt) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "promtool is not installed (Debian package prometheus; scripts/check-examples.sh installs it)";
  SchedulerMetrics m;
  m.ops[static_cast<std::size_t>(OpCode::recv)] = {10, 8, 1};
  m.bytes_in = 1234;
  m.loop_turns = 3;
  m.loop_turn_ns = 5000;
  m.loop_turn_buckets[10] = 3;
  const std::string path = std::filesystem::temp_directory_path() / "galay_metrics_test.prom";
  // One snapshot, and two workers on one page.
  for (const std::string& text : {format_prometheus(m), two_worker_page()}) {
    FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
    const std::string cmd = "promtool check metrics < " + path + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[256];
    while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
    const int rc = ::pclose(p);
    EXPECT_EQ(rc, 0) << out << "\nfor the page:\n" << text;
  }
  std::filesystem::remove(path);
}

TEST(MetricsThreadRuntime, SumsItsWorkersAndIsReadableFromOutside) {
  auto rt = Runtime::builder().threads(2).build();
  ASSERT_TRUE(rt) << rt.error().message();
  for (std::size_t i = 0; i < 2; ++i) {
    auto h = (*rt)->spawn_on(i, []() -> Task<void> {
      auto pair = co_await loopback_tcp_pair();
      char msg[16] = {'r'};
      for (int k = 0; k < 10; ++k) {
        CO_ASSERT_TRUE(co_await pair.first.send_all(msg, sizeof msg));
        CO_ASSERT_TRUE(co_await recv_exactly(pair.second, msg, sizeof msg));
      }
    }());
    (*rt)->block_on([](JoinHandle<void>* j) -> Task<void> { co_await *j; }(&h));
  }
  const SchedulerMetrics sum = (*rt)->metrics();
  const SchedulerMetrics a = (*rt)->scheduler(0).metrics();
  const SchedulerMetrics b = (*rt)->scheduler(1).metrics();
  EXPECT_GE(a.of(OpCode::send).completed, 10u);
  EXPECT_GE(b.of(OpCode::send).completed, 10u);
  EXPECT_EQ(sum.of(OpCode::send).completed, a.of(OpCode::send).completed + b.of(OpCode::send).completed);
  EXPECT_EQ(sum.bytes_out, a.bytes_out + b.bytes_out);
  EXPECT_GE(sum.bytes_out, 320u);
}

}  // namespace
}  // namespace galay::test
