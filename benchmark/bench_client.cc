// bench_client: closed-loop echo load generator for bench_server (or any echo server).
//
//   bench_client [-h host] [-p port] [-c conns] [-s size] [-d seconds]
//                [--backend epoll|io_uring|kqueue|auto] [--json] [--warmup seconds]
//
// Every connection is one coroutine on a single Scheduler thread: connect, then loop
// { send_all(message); recv until `size` bytes are back; check every byte; record the
// round-trip time }, one message in flight per connection. Message k of connection c has
// byte i = (c*31 + k + i) & 0xff, so stale, short, crossed or corrupted echoes are caught.
// Buffers are allocated once per connection; a message allocates nothing.
//
// Timeline: all connections are opened first (connect timeout 2 s); then an optional
// warm-up, which is not counted; then the measured window of -d seconds, with one line per
// second from a reporter coroutine that sleeps on a steady schedule. At the end of the
// window counting stops, workers get a short grace period to finish their message, and the
// rest are cancelled (their pending kernel operations are cancelled and their sockets
// closed), so a run ends on its own even against a dead or stalled server. Cancelling
// replaces per-operation timeouts (which would cost two timer-heap updates per message):
// a message still unanswered after 2 s when the window closes counts as a timeout error.
//
// Errors: a failed connect, a send/recv error, EOF, a timeout or a mismatched echo. Each
// ends its connection and counts once. Exit status: 0 if there were no errors, 1 otherwise,
// 2 on bad arguments or set-up failure.
//
// Throughput counts request bytes only (bytes sent by the client per completed round trip,
// not the echoed bytes as well), in MB/s with MB = 1024*1024 bytes.
#include <sys/resource.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "galay-kernel/galay-kernel.h"

namespace {

using namespace galay;
using namespace std::chrono_literals;

constexpr auto kConnectTimeout = 2s;
constexpr auto kStallLimit = 2s;    // an unanswered message older than this is a timeout
constexpr auto kStopGrace = 200ms;  // time for in-flight messages to finish at the end

// ---------------------------------------------------------------------------------------
// Arguments

struct Config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  std::size_t connections = 100;
  std::size_t size = 256;
  std::uint64_t duration_s = 10;
  double warmup_s = 0;
  BackendKind backend = BackendKind::automatic;
  bool json = false;
};

[[noreturn]] void usage(const char* argv0, int code) {
  std::fprintf(code == 0 ? stdout : stderr,
               "usage: %s [options]\n"
               "  -h <host>          server address, a literal IPv4/IPv6 address (default 127.0.0.1)\n"
               "  -p <port>          server port (default 8080)\n"
               "  -c <connections>   concurrent connections (default 100)\n"
               "  -s <size>          message size in bytes (default 256)\n"
               "  -d <seconds>       measured duration (default 10)\n"
               "  --warmup <seconds> uncounted warm-up before the measured window (default 0)\n"
               "  --backend <name>   epoll|io_uring|kqueue|auto (default auto)\n"
               "  --json             print one JSON object instead of the text report\n",
               argv0);
  std::exit(code);
}

template <class T>
T parse_uint(const char* argv0, const char* opt, std::string_view s, std::uint64_t lo, std::uint64_t hi) {
  std::uint64_t v = 0;
  bool ok = !s.empty() && s.size() <= 19;
  for (char c : s) {
    if (c < '0' || c > '9') {
      ok = false;
      break;
    }
    v = v * 10 + std::uint64_t(c - '0');
  }
  if (!ok || v < lo || v > hi) {
    std::fprintf(stderr, "%s: %s wants an integer in [%" PRIu64 ", %" PRIu64 "], got '%.*s'\n", argv0, opt, lo, hi,
                 int(s.size()), s.data());
    usage(argv0, 2);
  }
  return static_cast<T>(v);
}

Config parse_args(int argc, char** argv) {
  Config cfg;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s: %s needs a value\n", argv[0], argv[i]);
        usage(argv[0], 2);
      }
      return argv[++i];
    };
    if (a == "--help") {
      usage(argv[0], 0);
    } else if (a == "-h" || a == "--host") {
      cfg.host = std::string(value());
    } else if (a == "-p" || a == "--port") {
      cfg.port = parse_uint<std::uint16_t>(argv[0], "-p", value(), 1, 65535);
    } else if (a == "-c" || a == "--connections") {
      cfg.connections = parse_uint<std::size_t>(argv[0], "-c", value(), 1, 1'000'000);
    } else if (a == "-s" || a == "--size") {
      cfg.size = parse_uint<std::size_t>(argv[0], "-s", value(), 1, 64u << 20);
    } else if (a == "-d" || a == "--duration") {
      cfg.duration_s = parse_uint<std::uint64_t>(argv[0], "-d", value(), 1, 86400);
    } else if (a == "--warmup" || a == "-w") {
      std::string v(value());
      char* end = nullptr;
      errno = 0;
      double w = std::strtod(v.c_str(), &end);
      if (errno != 0 || end == v.c_str() || *end != '\0' || !(w >= 0) || w > 3600) {
        std::fprintf(stderr, "%s: bad --warmup '%s'\n", argv[0], v.c_str());
        usage(argv[0], 2);
      }
      cfg.warmup_s = w;
    } else if (a == "--backend" || a == "-b") {
      std::string_view v = value();
      auto k = parse_backend_kind(v);
      if (!k) {
        std::fprintf(stderr, "%s: unknown backend '%.*s'\n", argv[0], int(v.size()), v.data());
        usage(argv[0], 2);
      }
      cfg.backend = *k;
    } else if (a == "--json") {
      cfg.json = true;
    } else {
      std::fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[i]);
      usage(argv[0], 2);
    }
  }
  return cfg;
}

// ---------------------------------------------------------------------------------------
// Latency histogram: log-linear buckets over nanoseconds, HDR style. Values below 128 ns
// get one bucket each; above, every power of two is split into 64 equal buckets, so a
// bucket is at most 1/64 (~1.6%) of its value wide. 29 octaves reach 2^35 ns (~34 s);
// larger values land in the last bucket. Fixed arrays: recording never allocates.

class Histogram {
 public:
  static constexpr unsigned kSubBits = 6;
  static constexpr std::uint64_t kSub = 1u << kSubBits;  // 64
  static constexpr unsigned kOctaves = 29;
  static constexpr std::size_t kBuckets = (kOctaves + 1) * kSub;  // 1920

  void record(std::uint64_t ns) noexcept {
    ++counts_[index_of(ns)];
    ++total_;
    sum_ += ns;
    if (ns > max_) max_ = ns;
    if (ns < min_) min_ = ns;
  }
  std::uint64_t count() const noexcept { return total_; }
  double mean_ns() const noexcept { return total_ ? double(sum_) / double(total_) : 0.0; }
  std::uint64_t max_ns() const noexcept { return total_ ? max_ : 0; }
  std::uint64_t min_ns() const noexcept { return total_ ? min_ : 0; }

  /// The value at percentile p (0..100): the midpoint of the bucket holding that rank,
  /// clamped to the observed min/max.
  double percentile_ns(double p) const noexcept {
    if (total_ == 0) return 0.0;
    auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * double(total_)));
    rank = std::clamp<std::uint64_t>(rank, 1, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        double lo = double(lower_bound(i)), hi = double(upper_bound(i));
        double v = (lo + hi) / 2.0;
        return std::clamp(v, double(min_), double(max_));
      }
    }
    return double(max_);
  }

 private:
  static std::size_t index_of(std::uint64_t v) noexcept {
    if (v < 2 * kSub) return static_cast<std::size_t>(v);
    unsigned msb = 63u - static_cast<unsigned>(std::countl_zero(v));
    unsigned shift = msb - kSubBits;  // keep the top kSubBits+1 bits
    std::size_t idx = std::size_t(shift + 1) * kSub + static_cast<std::size_t>((v >> shift) - kSub);
    return std::min(idx, kBuckets - 1);
  }
  static std::uint64_t lower_bound(std::size_t i) noexcept {
    if (i < 2 * kSub) return i;
    std::uint64_t shift = i / kSub - 1;
    return (kSub + i % kSub) << shift;
  }
  static std::uint64_t upper_bound(std::size_t i) noexcept {
    if (i < 2 * kSub) return i;
    std::uint64_t shift = i / kSub - 1;
    return ((kSub + i % kSub + 1) << shift) - 1;
  }

  std::uint64_t counts_[kBuckets] = {};
  std::uint64_t total_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t max_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
};

// ---------------------------------------------------------------------------------------
// Shared state: everything runs on the one scheduler thread, so plain fields suffice.

struct PerSecond {
  double seconds;  // actual length of the interval
  std::uint64_t requests;
};

struct State {
  explicit State(const Config& c) : cfg(c) {}
  const Config& cfg;
  bool measuring = false;  // inside the measured window: count completions
  bool stopping = false;   // window over: finish and leave; errors no longer count
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;
  std::size_t active = 0;  // workers still running
  Histogram latency;
  unsigned errors_reported = 0;

  void error(std::size_t conn, const char* what, std::error_code ec = {}) {
    ++errors;
    if (errors_reported < 5) {
      ++errors_reported;
      std::fprintf(stderr, "bench_client: connection %zu: %s%s%s\n", conn, what, ec ? ": " : "",
                   ec ? ec.message().c_str() : "");
    } else if (errors_reported == 5) {
      ++errors_reported;
      std::fprintf(stderr, "bench_client: (further errors not shown)\n");
    }
  }
};

// ---------------------------------------------------------------------------------------
// Connections

Task<TcpSocket> connect_one(State& st, const SocketAddress& addr, std::size_t id) {
  auto sock = TcpSocket::open(addr.family());
  if (!sock) {
    st.error(id, "socket", sock.error());
    co_return TcpSocket{};
  }
  auto r = co_await sock->connect(addr, kConnectTimeout);
  if (!r) {
    st.error(id, "connect", r.error());
    co_return TcpSocket{};
  }
  (void)sock->set_nodelay(true);
  co_return std::move(*sock);
}

inline void fill_message(std::byte* p, std::size_t size, std::uint32_t base, std::uint32_t k) noexcept {
  const std::uint32_t start = base + k;
  for (std::size_t i = 0; i < size; ++i) p[i] = static_cast<std::byte>((start + i) & 0xffu);
}

Task<void> worker(State& st, TcpSocket sock, std::size_t id) {
  const std::size_t size = st.cfg.size;
  // Allocated once per connection: [0, size) the message sent, [size, 2*size) the echo.
  std::unique_ptr<std::byte[]> buffers(new std::byte[2 * size]);
  std::byte* const tx = buffers.get();
  std::byte* const rx = buffers.get() + size;
  const auto base = static_cast<std::uint32_t>(id * 31u);

  for (std::uint32_t k = 0; !st.stopping; ++k) {
    fill_message(tx, size, base, k);
    const auto t0 = Clock::now();
    auto sent = co_await sock.send_all(tx, size);
    if (!sent) {
      if (!st.stopping) st.error(id, "send", sent.error());
      else if (Clock::now() - t0 > kStallLimit) st.error(id, "send timed out");
      break;
    }
    std::size_t got = 0;
    bool ok = true;
    while (got < size) {
      auto n = co_await sock.recv(rx + got, size - got);
      if (!n || *n == 0) {
        if (!st.stopping) {
          if (!n) st.error(id, "recv", n.error());
          else st.error(id, "recv: unexpected EOF");
        } else if (Clock::now() - t0 > kStallLimit) {
          st.error(id, "recv timed out");
        }
        ok = false;
        break;
      }
      got += *n;
    }
    if (!ok) break;
    if (std::memcmp(tx, rx, size) != 0) {
      if (!st.stopping) st.error(id, "echo mismatch (stale, crossed or corrupted data)");
      break;
    }
    const auto t1 = Clock::now();
    if (st.measuring) {
      ++st.requests;
      st.latency.record(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
    }
  }
  --st.active;
  // Closing the socket (destructor) happens here, on the scheduler thread.
}

// ---------------------------------------------------------------------------------------
// Output helpers

std::string with_commas(std::uint64_t v) {
  std::string s = std::to_string(v);
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(std::size_t(i), 1, ',');
  return s;
}

double mbps(double requests_per_s, std::size_t size) { return requests_per_s * double(size) / (1024.0 * 1024.0); }

std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else {
      out += c;
    }
  }
  return out;
}

struct Result {
  std::string target;
  std::string backend;
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;
  double wall_s = 0;
  std::vector<PerSecond> per_second;
};

void print_text(const Config& cfg, const State& st, const Result& r) {
  const double qps = r.wall_s > 0 ? double(r.requests) / r.wall_s : 0.0;
  const std::uint64_t attempts = r.requests + r.errors;
  const double success = attempts ? 100.0 * double(r.requests) / double(attempts) : 0.0;
  std::printf("\n=== Final Results ===\n");
  std::printf("Total Requests: %s\n", with_commas(r.requests).c_str());
  std::printf("Average QPS: %s\n", with_commas(static_cast<std::uint64_t>(qps + 0.5)).c_str());
  std::printf("Average Throughput: %.1f MB/s\n", mbps(qps, cfg.size));
  std::printf("Errors: %s\n", with_commas(r.errors).c_str());
  std::printf("Success Rate: %.2f%%\n", success);
  std::printf("Latency p50: %.2f ms | p99: %.2f ms | p99.9: %.2f ms\n", st.latency.percentile_ns(50) / 1e6,
              st.latency.percentile_ns(99) / 1e6, st.latency.percentile_ns(99.9) / 1e6);
  std::fflush(stdout);
}

void print_json(const Config& cfg, const State& st, const Result& r) {
  const double qps = r.wall_s > 0 ? double(r.requests) / r.wall_s : 0.0;
  const std::uint64_t attempts = r.requests + r.errors;
  const double success = attempts ? 100.0 * double(r.requests) / double(attempts) : 0.0;
  std::string per;
  for (std::size_t i = 0; i < r.per_second.size(); ++i) {
    const auto& p = r.per_second[i];
    const double q = p.seconds > 0 ? double(p.requests) / p.seconds : 0.0;
    char b[160];
    std::snprintf(b, sizeof b, "%s{\"t\":%zu,\"requests\":%" PRIu64 ",\"qps\":%.1f,\"throughput_mbps\":%.2f}",
                  i ? "," : "", i + 1, p.requests, q, mbps(q, cfg.size));
    per += b;
  }
  std::printf(
      "{\"target\":\"%s\",\"connections\":%zu,\"size\":%zu,\"duration_s\":%" PRIu64
      ",\"warmup_s\":%g,\"backend\":\"%s\",\"total_requests\":%" PRIu64
      ",\"wall_s\":%.6f,\"qps\":%.1f,\"throughput_mbps\":%.2f,\"throughput_unit\":\"MiB/s of request bytes\","
      "\"errors\":%" PRIu64
      ",\"success_rate\":%.4f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"mean_us\":%.1f,\"max_us\":%.1f,"
      "\"per_second\":[%s]}\n",
      json_escape(r.target).c_str(), cfg.connections, cfg.size, cfg.duration_s, cfg.warmup_s,
      json_escape(r.backend).c_str(), r.requests, r.wall_s, qps, mbps(qps, cfg.size), r.errors, success,
      st.latency.percentile_ns(50) / 1e3, st.latency.percentile_ns(99) / 1e3, st.latency.percentile_ns(99.9) / 1e3,
      st.latency.mean_ns() / 1e3, double(st.latency.max_ns()) / 1e3, per.c_str());
  std::fflush(stdout);
}

// ---------------------------------------------------------------------------------------
// The run

Task<int> run_benchmark(const Config& cfg) {
  Scheduler* sched = Scheduler::current();
  Result result;
  result.backend = std::string(to_string(sched->backend_kind()));

  auto addr = SocketAddress::parse(cfg.host, cfg.port);
  if (!addr) {
    std::fprintf(stderr, "bench_client: bad host '%s': %s\n", cfg.host.c_str(), addr.error().message().c_str());
    co_return 2;
  }
  result.target = addr->to_string();

  if (!cfg.json) {
    std::printf("=== Benchmark Client ===\n");
    std::printf("Target: %s\n", result.target.c_str());
    std::printf("Connections: %zu\n", cfg.connections);
    std::printf("Message Size: %zu bytes\n", cfg.size);
    std::printf("Duration: %" PRIu64 " seconds\n", cfg.duration_s);
    if (cfg.warmup_s > 0) std::printf("Warmup: %g seconds\n", cfg.warmup_s);
    std::printf("Backend: %s\n\n", result.backend.c_str());
    std::fflush(stdout);
  }

  State st(cfg);

  // 1. Open every connection concurrently.
  std::vector<TcpSocket> sockets;
  {
    std::vector<Task<TcpSocket>> connects;
    connects.reserve(cfg.connections);
    for (std::size_t i = 0; i < cfg.connections; ++i) connects.push_back(connect_one(st, *addr, i));
    sockets = co_await when_all(std::move(connects));
  }

  // 2. Start a worker per live connection.
  std::vector<JoinHandle<void>> workers;
  workers.reserve(sockets.size());
  for (std::size_t i = 0; i < sockets.size(); ++i) {
    if (!sockets[i].is_open()) continue;
    ++st.active;
    workers.push_back(sched->spawn(worker(st, std::move(sockets[i]), i)));
  }
  sockets.clear();

  // 3. Warm-up, then the measured window, one report per second on a fixed schedule.
  if (st.active > 0) {
    const auto warm_start = Clock::now();
    if (cfg.warmup_s > 0)
      co_await sleep_until(warm_start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg.warmup_s)));
    const auto begin = Clock::now();
    st.measuring = true;
    auto last_t = begin;
    std::uint64_t last_n = 0;
    result.per_second.reserve(cfg.duration_s);
    for (std::uint64_t s = 1; s <= cfg.duration_s; ++s) {
      co_await sleep_until(begin + std::chrono::seconds(s));
      const auto now = Clock::now();
      const std::uint64_t n = st.requests;
      if (s == cfg.duration_s) {  // window closes: stop counting before anything else runs
        st.measuring = false;
        st.stopping = true;
        result.wall_s = std::chrono::duration<double>(now - begin).count();
      }
      const double dt = std::chrono::duration<double>(now - last_t).count();
      result.per_second.push_back({dt, n - last_n});
      if (!cfg.json) {
        const double q = dt > 0 ? double(n - last_n) / dt : 0.0;
        std::printf("[%" PRIu64 "s] QPS: %s | Throughput: %.1f MB/s\n", s,
                    with_commas(static_cast<std::uint64_t>(q + 0.5)).c_str(), mbps(q, cfg.size));
        std::fflush(stdout);
      }
      last_t = now;
      last_n = n;
      if (st.active == 0) {  // every connection failed: nothing more to measure
        st.measuring = false;
        st.stopping = true;
        result.wall_s = std::chrono::duration<double>(now - begin).count();
        break;
      }
    }
  }
  st.stopping = true;
  st.measuring = false;

  // 4. Let in-flight messages finish briefly, then cancel whatever is still waiting.
  const auto grace_end = Clock::now() + kStopGrace;
  while (st.active > 0 && Clock::now() < grace_end) co_await sleep_for(2ms);
  for (auto& w : workers) w.cancel();
  for (auto& w : workers) {
    try {
      co_await w;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_client: worker failed: %s\n", e.what());
    }
  }

  result.requests = st.requests;
  result.errors = st.errors;
  if (cfg.json)
    print_json(cfg, st, result);
  else
    print_text(cfg, st, result);
  co_return result.errors == 0 ? 0 : 1;
}

void raise_nofile_limit(std::size_t want) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want + 32)
    std::fprintf(stderr, "bench_client: warning: RLIMIT_NOFILE is %llu, %zu connections may fail\n",
                 static_cast<unsigned long long>(rl.rlim_cur), want);
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg = parse_args(argc, argv);
  raise_nofile_limit(cfg.connections);
  std::signal(SIGPIPE, SIG_IGN);

  auto created = Scheduler::create(Scheduler::Options{cfg.backend});
  if (!created) {
    std::string why = cfg.backend == BackendKind::automatic ? std::string("no backend can run here")
                                                            : backend_unavailable_reason(cfg.backend);
    std::fprintf(stderr, "bench_client: cannot create a scheduler with backend %s: %s%s%s\n",
                 std::string(to_string(cfg.backend)).c_str(), created.error().message().c_str(),
                 why.empty() ? "" : ": ", why.c_str());
    return 2;
  }
  std::unique_ptr<Scheduler> sched = std::move(*created);
  try {
    return sched->block_on(run_benchmark(cfg));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_client: %s\n", e.what());
    return 2;
  }
}
