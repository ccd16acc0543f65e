// bench_client: closed-loop echo load generator for bench_server (or any echo server).
//
//   bench_client [-h host|name] [-p port] [-c conns] [-s size] [-d seconds]
//                [--backend epoll|io_uring|kqueue|auto] [--json] [--warmup seconds]
//                [-t threads] [--pin] [--flooders N] [--tls [--tls-ca FILE]]
//                [--messages N]
//
// The connections are split evenly over -t threads (default 1), each running its own
// Scheduler; the main thread keeps the clock and prints the per-second lines.
// Every connection is one coroutine on its thread's Scheduler: connect, then loop
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
// TLS (--tls): every connection runs a TLS client handshake right after connect (within
// the same 2 s) and then the same loop over the TlsStream, against bench_server
// --tls-cert/--tls-key. Without --tls-ca the server's certificate is not verified (a
// benchmark, not a client to copy); with it, the chain must end at that CA and the
// certificate must name the --host address (an IP SAN). Not with --flooders. A build
// without TLS (GALAY_KERNEL_WITH_TLS off) refuses --tls with exit 2.
//
// Hostile mix (--flooders N): N more connections, on the first thread, that send 64 KiB
// writes as fast as they can and never read their echo (a client that floods a server
// and never reads). They are not counted; the table shows what the others still get.
//
// Idle connections (--messages N): each connection sends N messages, then stays open
// without traffic until the end of the run (N = 0: connect and wait). For measuring what an
// open connection costs a server (benchmark/conn_memory.sh reads the server's RSS meanwhile).
//
// Errors: a failed connect, a send/recv error, EOF, a timeout or a mismatched echo. Each
// ends its connection and counts once. Exit status: 0 if there were no errors, 1 otherwise,
// 2 on bad arguments or set-up failure.
//
// Throughput counts request bytes only (bytes sent by the client per completed round trip,
// not the echoed bytes as well), in MB/s with MB = 1024*1024 bytes.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
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
#include <functional>
#include <latch>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "args.h"
#include "bench_common.h"
#include "bench_scheduler.h"
#include "galay-kernel/galay-kernel.h"

namespace {

using namespace galay;
using bench::Histogram;
using bench::json_escape;
using bench::with_commas;
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
  std::size_t threads = 1;
  bool pin = false;
  std::size_t flooders = 0;
  std::uint64_t messages = UINT64_MAX;  // --messages: per connection, then idle until the end
  bool tls = false;                     // --tls
  std::string tls_ca;                   // --tls-ca: verify the server against this CA bundle
#if GALAY_KERNEL_WITH_TLS
  TlsContext tls_ctx;  // made in main from the above
#endif
};

Config parse_args(int argc, char** argv) {
  Config cfg;
  cli::Parser args("bench_client", "[options]");
  args.text("-h, --host", "HOST",
            "server: an IPv4/IPv6 literal or a host name, resolved once at start (default 127.0.0.1)", cfg.host)
      .integer("-p, --port", "PORT", "server port (default 8080)", cfg.port, 1, 65535)
      .integer("-c, --connections", "N", "concurrent connections (default 100)", cfg.connections, 1, 1'000'000)
      .integer("-s, --size", "BYTES", "message size (default 256)", cfg.size, 1, 64u << 20)
      .integer("-d, --duration", "SECONDS", "measured duration (default 10)", cfg.duration_s, 1, 86400)
      .real("-w, --warmup", "SECONDS", "uncounted warm-up before the measured window (default 0)", cfg.warmup_s, 0,
            3600)
      .backend(cfg.backend, "-b, --backend")
      .flag("--json", "print one JSON object instead of the text report", cfg.json)
      .integer("-t, --threads", "N",
               "client threads, each with its own scheduler and share of the connections (default 1)", cfg.threads, 1,
               1024)
      .flag("--pin", "pin thread i to the i-th CPU allowed to the process (see taskset)", cfg.pin)
      .integer("--flooders", "N", "extra connections that send as fast as they can and never read (default 0)",
               cfg.flooders, 0, 100'000)
      .integer("--messages", "N",
               "messages per connection, after which it stays open and idle until the end (default: no limit)",
               cfg.messages, 0, UINT64_MAX)
      .flag("--tls", "echo over TLS (bench_server --tls-cert/--tls-key); no verification without --tls-ca", cfg.tls)
      .text("--tls-ca", "FILE", "with --tls: verify the server's certificate against this PEM CA bundle", cfg.tls_ca);
  args.parse(argc, argv);
  if (!cfg.tls_ca.empty() && !cfg.tls) args.fail("--tls-ca: needs --tls");
  if (!GALAY_KERNEL_WITH_TLS && cfg.tls)
    args.fail("--tls: this build has no TLS (configured with GALAY_KERNEL_WITH_TLS=OFF or without OpenSSL 3)");
  if (cfg.tls && cfg.flooders > 0) args.fail("--flooders: not with --tls");
  return cfg;
}

// ---------------------------------------------------------------------------------------
// State. With -t N the connections are split over N threads, each with its own Scheduler
// and its own Shard: the message path touches only its shard's plain fields, plus two
// flags main flips (relaxed loads, no contention). `requests` and `active` are atomics
// written only by the shard's thread, so main can read them for the per-second lines.

struct PerSecond {
  double seconds;  // actual length of the interval
  std::uint64_t requests;
};

struct Flags {
  std::atomic<bool> measuring{false};  // inside the measured window: count completions
  std::atomic<bool> stopping{false};   // window over: finish and leave; errors no longer count
};

/// Increment a counter that only the calling thread writes (a load and a store: no locked
/// instruction on the message path); other threads read it.
inline void bump(std::atomic<std::uint64_t>& c, std::uint64_t by = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

struct Shard {
  Shard(const Config& c, const Flags& f) : cfg(c), flags(f) {}
  const Config& cfg;
  const Flags& flags;
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> active{0};  // workers still running
  std::uint64_t errors = 0;
  Histogram latency;
  unsigned errors_reported = 0;

  bool measuring() const noexcept { return flags.measuring.load(std::memory_order_relaxed); }
  bool stopping() const noexcept { return flags.stopping.load(std::memory_order_relaxed); }

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

Task<TcpSocket> connect_one(Shard& st, const SocketAddress& addr, std::size_t id) {
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

#if GALAY_KERNEL_WITH_TLS
/// connect_one, then the TLS handshake, both within kConnectTimeout.
Task<TlsStream> connect_tls(Shard& st, const SocketAddress& addr, std::size_t id) {
  const auto start = Clock::now();
  TcpSocket sock = co_await connect_one(st, addr, id);
  if (!sock.is_open()) co_return TlsStream{};
  auto tls = TlsStream::client(st.cfg.tls_ctx, std::move(sock),
                               {.server_name = st.cfg.host, .verify_host = !st.cfg.tls_ca.empty()});
  if (!tls) {
    st.error(id, "TLS client", tls.error());
    co_return TlsStream{};
  }
  const auto left = std::max<Clock::duration>(kConnectTimeout - (Clock::now() - start), 1ms);
  if (auto h = co_await tls->handshake(left); !h) {
    st.error(id, "TLS handshake", h.error());
    co_return TlsStream{};
  }
  co_return std::move(*tls);
}
#endif

/// One connection's closed loop, over a TcpSocket or a TlsStream.
template <class Stream>
Task<void> worker(Shard& st, Stream sock, std::size_t id) {
  const std::size_t size = st.cfg.size;
  // Allocated once per connection: [0, size) the message sent, [size, 2*size) the echo.
  std::unique_ptr<std::byte[]> buffers(new std::byte[2 * size]);
  std::byte* const tx = buffers.get();
  std::byte* const rx = buffers.get() + size;
  const std::uint32_t base = bench::message_base(id);

  std::uint64_t sent_messages = 0;
  for (std::uint32_t k = 0; !st.stopping() && sent_messages < st.cfg.messages; ++k, ++sent_messages) {
    bench::fill_message(tx, size, base, k);
    const auto t0 = Clock::now();
    auto sent = co_await sock.send_all(tx, size);
    if (!sent) {
      if (!st.stopping())
        st.error(id, "send", sent.error());
      else if (Clock::now() - t0 > kStallLimit)
        st.error(id, "send timed out");
      break;
    }
    std::size_t got = 0;
    bool ok = true;
    while (got < size) {
      auto n = co_await sock.recv(rx + got, size - got);
      if (!n || *n == 0) {
        if (!st.stopping()) {
          if (!n)
            st.error(id, "recv", n.error());
          else
            st.error(id, "recv: unexpected EOF");
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
      if (!st.stopping()) st.error(id, "echo mismatch (stale, crossed or corrupted data)");
      break;
    }
    const auto t1 = Clock::now();
    if (st.measuring()) {
      bump(st.requests);
      st.latency.record(
          static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
    }
  }
  // --messages reached: hold the connection open, idle, until the run ends (or a cancel).
  if (sent_messages == st.cfg.messages)
    while (!st.stopping())
      if (!co_await sleep_for(100ms)) break;
  st.active.store(st.active.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  // Closing the socket (destructor) happens here, on the scheduler thread.
}

/// A hostile client: sends 64 KiB writes as fast as the server takes them and never reads.
Task<void> flooder(Shard& st, TcpSocket sock) {
  std::unique_ptr<std::byte[]> junk(new std::byte[64 * 1024]());
  while (!st.stopping()) {
    auto r = co_await sock.send(junk.get(), 64 * 1024, 50ms);  // short: notice the end of the run
    if (!r && r.error() != std::errc::timed_out) co_return;    // the server gave up on it
  }
}

// ---------------------------------------------------------------------------------------
// Output helpers

double mbps(double requests_per_s, std::size_t size) { return requests_per_s * double(size) / (1024.0 * 1024.0); }

struct Result {
  std::string target;
  std::string backend;
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;
  double wall_s = 0;
  std::vector<PerSecond> per_second;
};

void print_text(const Config& cfg, const Histogram& latency, const Result& r) {
  const double qps = r.wall_s > 0 ? double(r.requests) / r.wall_s : 0.0;
  const std::uint64_t attempts = r.requests + r.errors;
  const double success = attempts ? 100.0 * double(r.requests) / double(attempts) : 0.0;
  std::printf("\n=== Final Results ===\n");
  std::printf("Total Requests: %s\n", with_commas(r.requests).c_str());
  std::printf("Average QPS: %s\n", with_commas(static_cast<std::uint64_t>(qps + 0.5)).c_str());
  std::printf("Average Throughput: %.1f MB/s\n", mbps(qps, cfg.size));
  std::printf("Errors: %s\n", with_commas(r.errors).c_str());
  std::printf("Success Rate: %.2f%%\n", success);
  std::printf("Latency p50: %.2f ms | p99: %.2f ms | p99.9: %.2f ms\n", latency.percentile_ns(50) / 1e6,
              latency.percentile_ns(99) / 1e6, latency.percentile_ns(99.9) / 1e6);
  std::fflush(stdout);
}

void print_json(const Config& cfg, const Histogram& latency, const Result& r) {
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
      "{\"target\":\"%s\",\"tls\":%s,\"threads\":%zu,\"connections\":%zu,\"flooders\":%zu,\"size\":%zu,\"duration_s\":"
      "%" PRIu64 ",\"warmup_s\":%g,\"backend\":\"%s\",\"total_requests\":%" PRIu64
      ",\"wall_s\":%.6f,\"qps\":%.1f,\"throughput_mbps\":%.2f,\"throughput_unit\":\"MiB/s of request bytes\","
      "\"errors\":%" PRIu64
      ",\"success_rate\":%.4f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"mean_us\":%.1f,\"max_us\":%.1f,"
      "\"per_second\":[%s]}\n",
      json_escape(r.target).c_str(), cfg.tls ? "true" : "false", cfg.threads, cfg.connections, cfg.flooders, cfg.size,
      cfg.duration_s, cfg.warmup_s, json_escape(r.backend).c_str(), r.requests, r.wall_s, qps, mbps(qps, cfg.size),
      r.errors, success, latency.percentile_ns(50) / 1e3, latency.percentile_ns(99) / 1e3,
      latency.percentile_ns(99.9) / 1e3, latency.mean_ns() / 1e3, double(latency.max_ns()) / 1e3, per.c_str());
  std::fflush(stdout);
}

// ---------------------------------------------------------------------------------------
// The run

/// One thread's share: connections [first, first + count). Connects them all, reports
/// ready, runs the workers until main sets `stopping`, then lets in-flight messages finish
/// briefly and cancels the rest.
/// Open connections [first, first + count) with `connect` (connect_one or connect_tls) and
/// spawn a worker on each that opened.
template <class Stream>
Task<void> start_workers(Shard& st, SocketAddress addr, std::size_t first, std::size_t count,
                         Task<Stream> (*connect)(Shard&, const SocketAddress&, std::size_t),
                         std::vector<JoinHandle<void>>& workers) {
  Scheduler* sched = Scheduler::current();
  std::vector<Stream> sockets;
  {
    std::vector<Task<Stream>> connects;
    connects.reserve(count);
    for (std::size_t i = 0; i < count; ++i) connects.push_back(connect(st, addr, first + i));
    sockets = co_await when_all(std::move(connects));
  }
  workers.reserve(sockets.size());
  for (std::size_t i = 0; i < sockets.size(); ++i) {
    if (!sockets[i].is_open()) continue;
    st.active.store(st.active.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    workers.push_back(sched->spawn(worker(st, std::move(sockets[i]), first + i)));
  }
}

Task<void> run_shard(Shard& st, SocketAddress addr, std::size_t first, std::size_t count, std::latch& ready) {
  Scheduler* sched = Scheduler::current();
  std::vector<JoinHandle<void>> workers;
#if GALAY_KERNEL_WITH_TLS
  if (st.cfg.tls)
    co_await start_workers<TlsStream>(st, addr, first, count, connect_tls, workers);
  else
#endif
    co_await start_workers<TcpSocket>(st, addr, first, count, connect_one, workers);
  std::vector<JoinHandle<void>> flooders;
  if (first == 0) {
    for (std::size_t i = 0; i < st.cfg.flooders; ++i) {
      TcpSocket s = co_await connect_one(st, addr, st.cfg.connections + i);
      if (s.is_open()) flooders.push_back(sched->spawn(flooder(st, std::move(s))));
    }
  }
  ready.count_down();

  // Main owns the clock; this loop only notices the end of the window (a 5 ms poll keeps
  // the shard independent of any cross-thread wakeup mechanism).
  while (!st.stopping()) co_await sleep_for(5ms);

  const auto grace_end = Clock::now() + kStopGrace;
  while (st.active.load(std::memory_order_relaxed) > 0 && Clock::now() < grace_end) co_await sleep_for(2ms);
  for (auto& f : flooders) {
    f.cancel();
    co_await f;
  }
  for (auto& w : workers) w.cancel();
  for (auto& w : workers) {
    try {
      co_await w;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_client: worker failed: %s\n", e.what());
    }
  }
}

/// Thread body for shard `index`: its own scheduler (created here: an io_uring ring set up
/// SINGLE_ISSUER belongs to the thread that created it), optionally pinned.
void shard_thread(const Config& cfg, std::size_t index, Shard& st, const SocketAddress& addr, std::size_t first,
                  std::size_t count, std::latch& ready, std::atomic<bool>& failed, std::string& backend_name) {
  if (cfg.pin && bench::pin_to_nth_allowed_cpu(index) < 0)
    std::fprintf(stderr, "bench_client: could not pin thread %zu\n", index);
  std::unique_ptr<Scheduler> sched = bench::create_scheduler_or_report("bench_client", Scheduler::Options{cfg.backend});
  if (!sched) {
    failed.store(true);
    ready.count_down();
    return;
  }
  if (index == 0) backend_name = std::string(to_string(sched->backend_kind()));
  try {
    sched->block_on(run_shard(st, addr, first, count, ready));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_client: %s\n", e.what());
    failed.store(true);
  }
}

/// The server's address: the literal, or, for a name, the address that answers first when
/// connecting by name (resolve, then Happy Eyeballs over every address; one probe
/// connection, closed at once, on a scheduler of its own; 5 s limit). All benchmark
/// connections then go to that one address.
Expected<SocketAddress> target_address(const Config& cfg) {
  if (auto literal = SocketAddress::parse(cfg.host, cfg.port)) return literal;
  auto sched = Scheduler::create();
  if (!sched) return make_error(sched.error());
  return (*sched)->block_on([](const Config& c) -> Task<Expected<SocketAddress>> {
    auto probe = co_await TcpSocket::connect(c.host, c.port, std::chrono::seconds(5));
    if (!probe) co_return make_error(probe.error());
    auto peer = probe->peer_address();
    (void)co_await probe->close();
    co_return peer;
  }(cfg));
}

int run_benchmark(const Config& cfg) {
  auto addr = target_address(cfg);
  if (!addr) {
    std::fprintf(stderr, "bench_client: bad host '%s': %s\n", cfg.host.c_str(), addr.error().message().c_str());
    return 2;
  }
  const std::size_t nthreads = std::min(cfg.threads, cfg.connections);
  Result result;
  result.target = addr->to_string();

  // 1. Every thread opens its share of the connections; wait until all are connected.
  Flags flags;
  std::vector<std::unique_ptr<Shard>> shards;
  for (std::size_t i = 0; i < nthreads; ++i) shards.push_back(std::make_unique<Shard>(cfg, flags));
  std::latch ready(static_cast<std::ptrdiff_t>(nthreads));
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (std::size_t i = 0, first = 0; i < nthreads; ++i) {
    const std::size_t count = cfg.connections / nthreads + (i < cfg.connections % nthreads ? 1 : 0);
    threads.emplace_back(shard_thread, std::cref(cfg), i, std::ref(*shards[i]), std::cref(*addr), first, count,
                         std::ref(ready), std::ref(failed), std::ref(result.backend));
    first += count;
  }
  ready.wait();
  auto total = [&](auto field) {
    std::uint64_t n = 0;
    for (auto& s : shards) n += ((*s).*field).load(std::memory_order_relaxed);
    return n;
  };

  if (!cfg.json && !failed.load()) {
    std::printf("=== Benchmark Client ===\n");
    std::printf("Target: %s\n", result.target.c_str());
    std::printf("Connections: %zu\n", cfg.connections);
    if (cfg.flooders > 0) std::printf("Flooders: %zu (never read, not counted)\n", cfg.flooders);
    if (cfg.tls) std::printf("TLS: on, %s\n", cfg.tls_ca.empty() ? "certificate not verified" : "verified (--tls-ca)");
    std::printf("Message Size: %zu bytes\n", cfg.size);
    std::printf("Duration: %" PRIu64 " seconds\n", cfg.duration_s);
    if (cfg.warmup_s > 0) std::printf("Warmup: %g seconds\n", cfg.warmup_s);
    if (nthreads > 1) std::printf("Threads: %zu%s\n", nthreads, cfg.pin ? " (pinned)" : "");
    std::printf("Backend: %s\n\n", result.backend.c_str());
    std::fflush(stdout);
  }

  // 2. Warm-up, then the measured window, one report per second on a fixed schedule.
  if (!failed.load() && total(&Shard::active) > 0) {
    const auto warm_start = Clock::now();
    if (cfg.warmup_s > 0)
      std::this_thread::sleep_until(
          warm_start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg.warmup_s)));
    const auto begin = Clock::now();
    flags.measuring.store(true, std::memory_order_relaxed);
    auto last_t = begin;
    std::uint64_t last_n = 0;
    result.per_second.reserve(cfg.duration_s);
    for (std::uint64_t s = 1; s <= cfg.duration_s; ++s) {
      std::this_thread::sleep_until(begin + std::chrono::seconds(s));
      const auto now = Clock::now();
      const bool all_gone = total(&Shard::active) == 0;  // every connection failed
      if (s == cfg.duration_s || all_gone) {             // window closes: stop counting first
        flags.measuring.store(false, std::memory_order_relaxed);
        flags.stopping.store(true, std::memory_order_relaxed);
        result.wall_s = std::chrono::duration<double>(now - begin).count();
      }
      const std::uint64_t n = total(&Shard::requests);
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
      if (all_gone) break;
    }
  }
  flags.measuring.store(false, std::memory_order_relaxed);
  flags.stopping.store(true, std::memory_order_relaxed);

  // 3. Each shard finishes (grace period, then cancellation); merge their figures.
  for (auto& t : threads) t.join();
  if (failed.load()) return 2;
  Histogram latency;
  std::uint64_t errors = 0;
  for (auto& s : shards) {
    latency.merge(s->latency);
    errors += s->errors;
  }
  // Requests counted after the window closed (a shard may see `measuring` late by a few
  // messages) are dropped: the figure is what the per-second lines added up to.
  result.requests = 0;
  for (const PerSecond& p : result.per_second) result.requests += p.requests;
  result.errors = errors;
  if (cfg.json)
    print_json(cfg, latency, result);
  else
    print_text(cfg, latency, result);
  return result.errors == 0 ? 0 : 1;
}

}  // namespace

#if GALAY_KERNEL_WITH_TLS
/// The client context for --tls: verification against --tls-ca, or none. Prints why not.
bool make_tls_context(Config& cfg) {
  auto ctx = TlsContext::create(TlsRole::client);
  if (!ctx) {
    std::fprintf(stderr, "bench_client: cannot create a TLS context: %s\n", ctx.error().message().c_str());
    return false;
  }
  if (cfg.tls_ca.empty()) {
    ctx->set_verify_peer(false);
  } else if (auto r = ctx->add_ca_file(cfg.tls_ca); !r) {
    std::fprintf(stderr, "bench_client: --tls-ca %s: %s\n", cfg.tls_ca.c_str(), r.error().message().c_str());
    return false;
  }
  cfg.tls_ctx = std::move(*ctx);
  return true;
}
#endif

int main(int argc, char** argv) {
  Config cfg = parse_args(argc, argv);
#if GALAY_KERNEL_WITH_TLS
  if (cfg.tls && !make_tls_context(cfg)) return 2;
#endif
  const std::uint64_t limit = bench::raise_nofile_limit();
  if (limit < cfg.connections + 32)
    std::fprintf(stderr, "bench_client: warning: RLIMIT_NOFILE is %" PRIu64 ", %zu connections may fail\n", limit,
                 cfg.connections);
  std::signal(SIGPIPE, SIG_IGN);
  return run_benchmark(cfg);
}
