// bench_send_zc: where does a zero-copy send (StreamSocket::send_zero_copy, SEND_ZC on
// io_uring) beat a copying one (send_all)? One TCP connection over loopback, a sender thread
// and a receiver thread, each with its own Scheduler; for every buffer size the two modes
// alternate, `--rounds` times each, and the table gives throughput and the sender thread's
// CPU time per MiB.
//
//   bench_send_zc [--backend io_uring] [--bytes MiB-per-run] [--rounds N] [--sizes 4096,65536,...]
//
// Exit status 0, 1 if a scheduler cannot be created, 2 on a bad command line.
#include <time.h>

#include <algorithm>
#include <atomic>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "args.h"
#include "bench_common.h"
#include "galay-kernel/galay-kernel.h"

using namespace galay;

namespace {

std::uint64_t now_ns(clockid_t clock) {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

struct Options {
  BackendKind backend = BackendKind::io_uring;
  std::uint64_t bytes = 1024ull << 20;
  int rounds = 3;
  std::vector<std::size_t> sizes{4096, 16384, 65536, 262144, 1 << 20};
};

struct Sample {
  double mib_per_s;
  double cpu_us_per_mib;
};

std::unique_ptr<Scheduler> make_scheduler(BackendKind b) {
  Scheduler::Options so;
  so.backend = b;
  auto s = Scheduler::create(so);
  if (!s) {
    std::fprintf(stderr, "bench_send_zc: %s\n", s.error().message().c_str());
    std::exit(1);
  }
  return std::move(*s);
}

// One run: `total` bytes in `size`-byte sends over a fresh loopback connection.
Sample run_once(const Options& o, std::size_t size, bool zero_copy) {
  std::uint16_t port = 0;
  std::atomic<bool> listening{false};
  std::uint64_t received = 0;
  std::thread receiver([&] {
    auto sched = make_scheduler(o.backend);
    sched->block_on([](std::uint16_t& p, std::atomic<bool>& ready, std::uint64_t& got) -> Task<void> {
      auto l = TcpSocket::listen_on(SocketAddress::loopback(0));
      if (!l) std::exit(1);
      p = l->local_address()->port();
      ready.store(true);
      auto conn = co_await l->accept();
      if (!conn) std::exit(1);
      std::vector<std::byte> buf(1 << 20);
      for (;;) {
        auto n = co_await conn->recv(buf);
        if (!n || *n == 0) break;
        got += *n;
      }
    }(port, listening, received));
  });
  while (!listening.load()) std::this_thread::yield();

  auto sched = make_scheduler(o.backend);
  std::uint64_t wall = 0, cpu = 0;
  sched->block_on([](const Options& opt, std::uint16_t p, std::size_t sz, bool zc, std::uint64_t& w,
                     std::uint64_t& c) -> Task<void> {
    auto s = TcpSocket::open();
    if (!s || !co_await s->connect(SocketAddress::loopback(p))) std::exit(1);
    std::vector<std::byte> buf(sz, std::byte{7});
    const std::uint64_t w0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    for (std::uint64_t sent = 0; sent < opt.bytes; sent += sz) {
      auto r = zc ? co_await s->send_zero_copy(buf) : co_await s->send_all(buf);
      if (!r) {
        std::fprintf(stderr, "bench_send_zc: send: %s\n", r.error().message().c_str());
        std::exit(1);
      }
    }
    w = now_ns(CLOCK_MONOTONIC) - w0;
    c = now_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
  }(o, port, size, zero_copy, wall, cpu));
  receiver.join();
  const double mib = static_cast<double>(o.bytes) / (1 << 20);
  return {mib / (static_cast<double>(wall) / 1e9), static_cast<double>(cpu) / 1e3 / mib};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::uint64_t mib = o.bytes >> 20;
  cli::Parser args("bench_send_zc", "[options]");
  args.backend(o.backend)
      .integer("--bytes", "MIB", "MiB sent per run (default 1024)", mib, 1, 1 << 20)
      .integer("--rounds", "N", "runs of each mode per size (default 3)", o.rounds, 1, 100)
      .option("--sizes", "A,B,...", "send sizes in bytes (default 4096,16384,65536,262144,1048576)",
              [&o](std::string_view list) {
                o.sizes.clear();
                for (std::size_t pos = 0; pos <= list.size();) {
                  const std::size_t comma = std::min(list.find(',', pos), list.size());
                  auto n = bench::parse_uint(list.substr(pos, comma - pos), 1, 64 << 20);
                  if (!n) return std::string("a comma-separated list of sizes in [1, 67108864]");
                  o.sizes.push_back(*n);
                  pos = comma + 1;
                }
                return std::string();
              });
  args.parse(argc, argv);
  o.bytes = mib << 20;
  std::printf("backend %s, %llu MiB per run, %d rounds, medians\n", std::string(to_string(o.backend)).c_str(),
              static_cast<unsigned long long>(o.bytes >> 20), o.rounds);
  std::printf("%10s %14s %14s %10s %16s %16s %10s\n", "size", "copy MiB/s", "zc MiB/s", "zc/copy", "copy cpu us/MiB",
              "zc cpu us/MiB", "zc/copy");
  for (std::size_t size : o.sizes) {
    std::vector<double> copy_rate, zc_rate, copy_cpu, zc_cpu;
    for (int r = 0; r < o.rounds; ++r) {  // interleaved so drift hits both modes alike
      const Sample c = run_once(o, size, false);
      const Sample z = run_once(o, size, true);
      copy_rate.push_back(c.mib_per_s);
      copy_cpu.push_back(c.cpu_us_per_mib);
      zc_rate.push_back(z.mib_per_s);
      zc_cpu.push_back(z.cpu_us_per_mib);
    }
    const double cr = median(copy_rate), zr = median(zc_rate), cc = median(copy_cpu), zcpu = median(zc_cpu);
    std::printf("%10zu %14.0f %14.0f %9.2fx %16.1f %16.1f %9.2fx\n", size, cr, zr, zr / cr, cc, zcpu, zcpu / cc);
    std::fflush(stdout);
  }
  return 0;
}
