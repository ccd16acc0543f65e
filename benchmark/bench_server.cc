// bench_server: the echo server that bench_client drives.
//
//   bench_server [port] [--backend epoll|io_uring|kqueue|auto] [--host 127.0.0.1]
//                [--recv pooled|plain] [-t threads] [--pin] [--tls-cert FILE --tls-key FILE]
//                [--timeout SECONDS] [--huge-pages on|off] [--mlock] [--sqpoll[=CPU]]
//                [--stats] [--json] [--stall-ms MS]
//
// -t N runs N independent event loops, one Scheduler per thread, each with its own
// SO_REUSEPORT listener on the same port (the kernel spreads connections over them) and
// its own buffer pool: nothing is shared between threads on the message path, which is
// what lets throughput scale with cores. --pin pins thread i to the i-th CPU of the
// process's affinity mask (combine with taskset). -t 1 (the default) is one loop.
//
// In each loop one coroutine accepts forever; every connection gets
// its own coroutine that echoes what it receives, so a message costs no allocation:
// --recv pooled (default) receives with a StreamReceiver into a shared BufferPool (on
// io_uring: one multishot recv per connection on a provided-buffer ring, like the liburing
// baseline); --recv plain recv()s into a 16 KiB buffer in the coroutine frame.
// --timeout S gives every receive and send of the plain and pooled echo a time limit of S
// seconds, as a real server would (an idle or stalled peer is dropped); the default is
// none. benchmark/compare_echo.sh --timeouts compares the two.
// --tls-cert/--tls-key (PEM chain and key) make it a TLS echo server: each connection runs
// a TlsStream server handshake (10 s limit), then echoes the plaintext (received through
// the pool with --recv pooled, TlsServerOptions::receive_pool), so bench_client --tls puts
// the per-message cost of TLS beside the plain echo.
// --stats prints the loops' live metrics (runtime/metrics.h, summed) to stderr once a
// second; --json prints their totals as one JSON object on stdout when the server stops;
// --stall-ms MS reports any task that runs MS milliseconds without suspending (stderr). A build without TLS
// (GALAY_KERNEL_WITH_TLS off) refuses the flags with exit 2. SIGINT/SIGTERM are blocked in every
// thread and taken by the main thread in sigwait(), which calls Scheduler::stop() (thread-safe) on every loop; each
// loop's thread then cancels and frees its connections. Exit status 0 on a signal-driven stop, 1 if the server could
// not start, 2 on bad arguments.
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include <vector>

#include "args.h"
#include "bench_common.h"
#include "bench_metrics.h"
#include "bench_scheduler.h"
#include "galay-kernel/galay-kernel.h"

namespace {

using namespace galay;
using namespace std::chrono_literals;

struct Config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  BackendKind backend = BackendKind::automatic;
  bool pooled = true;
  std::size_t threads = 1;
  bool pin = false;
  std::uint64_t timeout_s = 0;    // --timeout: per receive and send; 0 = none
  std::string tls_cert, tls_key;  // --tls-cert, --tls-key: a TLS echo
  MemoryOptions pool_memory;      // --huge-pages, --mlock: the pool's memory (MappedMemory)
  bool sqpoll = false;            // --sqpoll[=CPU]
  int sqpoll_cpu = -1;
  bool stats = false;          // --stats: the metrics once a second
  bool json = false;           // --json: their totals at the end
  std::uint64_t stall_ms = 0;  // --stall-ms: the stall detector's threshold; 0 = off
#if GALAY_KERNEL_WITH_TLS
  TlsContext tls;  // made from them in main; valid() means TLS
#endif
};

// Shared receive buffers for --recv pooled: as many and as large as the liburing baseline's.
constexpr unsigned kPoolBuffers = 4096;
constexpr unsigned kPoolBufferSize = 4096;
thread_local BufferPool* t_pool = nullptr;  // this loop's pool, or null for plain recv

Config parse_args(int argc, char** argv) {
  Config cfg;
  cli::Parser args("bench_server", "[PORT] [options]");
  args.positional_integer("PORT", "TCP port to listen on (default 8080)", cfg.port, 1, 65535, false)
      .integer("-p, --port", "PORT", "the same as PORT", cfg.port, 1, 65535)
      .backend(cfg.backend, "-b, --backend")
      .host(cfg.host, "-h, --host")
      .choice("--recv", "MODE", "pooled: StreamReceiver on a shared BufferPool (default); plain: recv()", cfg.pooled,
              {{"pooled", true}, {"plain", false}})
      .integer("-t, --threads", "N", "event loops, one per thread, each with a SO_REUSEPORT listener (default 1)",
               cfg.threads, 1, 1024)
      .flag("--pin", "pin loop i to the i-th CPU allowed to the process (see taskset)", cfg.pin)
      .choice("--huge-pages", "on|off", "the pool's buffers on huge pages when some are reserved (default on)",
              cfg.pool_memory.huge_pages, {{"on", true}, {"off", false}})
      .flag("--mlock", "lock the pool's buffers in memory (mlock)", cfg.pool_memory.lock)
      .sqpoll(cfg.sqpoll, cfg.sqpoll_cpu)
      .integer("--timeout", "SECONDS", "time limit on every receive and send of a connection (default: none)",
               cfg.timeout_s, 1, 86400)
      .text("--tls-cert", "FILE", "echo over TLS with this PEM certificate chain (needs --tls-key)", cfg.tls_cert)
      .text("--tls-key", "FILE", "the PEM private key of --tls-cert", cfg.tls_key)
      .flag("--stats", "print the loops' live metrics to stderr once a second", cfg.stats)
      .flag("--json", "at the end, print the loops' metric totals as one JSON object", cfg.json)
      .integer("--stall-ms", "MS", "report tasks that run MS ms without suspending (default: off)", cfg.stall_ms, 1,
               60000);
  args.parse(argc, argv);
  if (cfg.tls_cert.empty() != cfg.tls_key.empty())
    args.fail(cfg.tls_cert.empty() ? "--tls-key: needs --tls-cert" : "--tls-cert: needs --tls-key");
  if (!GALAY_KERNEL_WITH_TLS && !cfg.tls_cert.empty())
    args.fail("--tls-cert: this build has no TLS (configured with GALAY_KERNEL_WITH_TLS=OFF or without OpenSSL 3)");
  return cfg;
}

/// One connection: echo until EOF or an error. The buffer is part of the coroutine frame,
/// allocated once with it; nothing is allocated per message.
Task<void> echo_connection(TcpSocket sock, Timeout limit) {
  std::array<std::byte, 16 * 1024> buf;
  for (;;) {
    auto n = co_await sock.recv(buf, limit);
    if (!n || *n == 0) break;  // EOF, reset, timed out, or cancelled by shutdown
    auto sent = co_await sock.send_all(std::span<const std::byte>(buf.data(), *n), limit);
    if (!sent) break;
  }
}

/// The same with pooled receive: chunks arrive in pool buffers and go back when dropped.
Task<void> echo_connection_pooled(TcpSocket sock, Timeout limit) {
  StreamReceiver rx(sock, *t_pool);
  for (;;) {
    auto chunk = co_await rx.recv(limit);
    if (!chunk || chunk->empty()) break;
    auto sent = co_await sock.send_all(chunk->data(), limit);
    if (!sent) break;
  }
}

#if GALAY_KERNEL_WITH_TLS
constexpr auto kHandshakeTimeout = 10s;

/// A TLS connection: the handshake, then echo plaintext until the peer closes (cleanly or
/// not) or an error. Received through this loop's pool when there is one.
Task<void> echo_connection_tls(TcpSocket sock, TlsContext ctx) {
  auto tls = TlsStream::server(ctx, std::move(sock), {.receive_pool = t_pool});
  if (!tls || !co_await tls->handshake(kHandshakeTimeout)) co_return;
  std::array<std::byte, 16 * 1024> buf;
  for (;;) {
    auto n = co_await tls->recv(buf);
    if (!n || *n == 0) break;  // close_notify, EOF, reset, or cancelled by shutdown
    auto sent = co_await tls->send_all(std::span<const std::byte>(buf.data(), *n));
    if (!sent) break;
  }
}

/// The server context from --tls-cert/--tls-key; prints why not.
bool make_tls_context(Config& cfg) {
  auto ctx = TlsContext::create(TlsRole::server);
  Expected<void> r = ctx ? ctx->use_certificate_chain_file(cfg.tls_cert) : Expected<void>(Unexpected(ctx.error()));
  if (r) r = ctx->use_private_key_file(cfg.tls_key);
  if (!r) {
    std::fprintf(stderr, "bench_server: --tls-cert %s / --tls-key %s: %s\n", cfg.tls_cert.c_str(), cfg.tls_key.c_str(),
                 r.error().message().c_str());
    return false;
  }
  cfg.tls = std::move(*ctx);
  return true;
}
#endif

/// One loop's accept coroutine. Loop 0 reports the address; with -t > 1 every loop binds
/// its own SO_REUSEPORT listener to the same port.
Task<void> accept_loop(const Config& cfg, std::size_t loop, int* exit_code, std::uint64_t* accepted) {
  Scheduler* sched = Scheduler::current();
  auto addr = SocketAddress::parse(cfg.host, cfg.port);  // checked by parse_args
  if (!addr) {
    std::fprintf(stderr, "bench_server: bad host '%s': %s\n", cfg.host.c_str(), addr.error().message().c_str());
    *exit_code = 2;
    sched->stop();
    co_return;
  }
  auto listener = TcpSocket::listen_on(*addr, 4096, /*reuse_port=*/cfg.threads > 1);
  if (!listener) {
    std::fprintf(stderr, "bench_server: cannot listen on %s: %s\n", addr->to_string().c_str(),
                 listener.error().message().c_str());
    *exit_code = 1;
    sched->stop();
    co_return;
  }
  if (loop == 0) {
    std::string where = addr->to_string();
    if (auto local = listener->local_address()) where = local->to_string();
    std::printf("bench_server listening on %s backend=%s (%s) recv=%s threads=%zu%s%s\n", where.c_str(),
                std::string(to_string(sched->backend_kind())).c_str(), sched->describe_backend().c_str(),
                t_pool ? "pooled" : "plain", cfg.threads, cfg.pin ? " pinned" : "", cfg.tls_cert.empty() ? "" : " tls");
    if (t_pool != nullptr) std::printf("bench_server pool memory: %s\n", t_pool->memory().describe().c_str());
    std::fflush(stdout);
  }

  const Timeout limit = cfg.timeout_s > 0 ? Timeout(std::chrono::seconds(cfg.timeout_s)) : Timeout();
  unsigned reported = 0;
  for (;;) {
    auto conn = co_await listener->accept();
    if (!conn) {
      const std::error_code ec = conn.error();
      if (ec == std::errc::operation_canceled) co_return;  // scheduler shutting down
      if (reported < 10) {
        ++reported;
        std::fprintf(stderr, "bench_server: accept: %s\n", ec.message().c_str());
      }
      // Out of descriptors (or similar): back off briefly instead of spinning.
      if (ec == std::errc::too_many_files_open || ec == std::errc::too_many_files_open_in_system ||
          ec == std::errc::not_enough_memory || ec == std::errc::no_buffer_space)
        co_await sleep_for(10ms);
      continue;
    }
    ++*accepted;
    (void)conn->set_nodelay(true);
#if GALAY_KERNEL_WITH_TLS
    if (cfg.tls.valid()) {
      sched->spawn_detached(echo_connection_tls(std::move(*conn), cfg.tls));
      continue;
    }
#endif
    if (t_pool != nullptr)
      sched->spawn_detached(echo_connection_pooled(std::move(*conn), limit));
    else
      sched->spawn_detached(echo_connection(std::move(*conn), limit));
  }
}

/// Hand-over between main and the loop threads. A scheduler is created, run and destroyed
/// on its own thread (an io_uring ring set up SINGLE_ISSUER belongs to the thread that
/// created it); main only calls the thread-safe stop().
struct LoopSlots {
  std::vector<std::atomic<Scheduler*>> schedulers;
  std::vector<int> exit_codes;                  // written by loop i, read after it is joined
  std::vector<std::uint64_t> accepted;          // connections loop i accepted (the same)
  std::vector<SchedulerMetrics> final_metrics;  // loop i's metrics as it ended (the same)
  std::atomic<bool> stopping{false};            // main is about to stop every published loop
  std::atomic<bool> stops_sent{false};          // main is done touching the schedulers
  pthread_t main_thread;                        // waits in sigwait(); SIGUSR1 from a loop wakes it
  LoopSlots(std::size_t n, pthread_t main)
      : schedulers(n), exit_codes(n, 0), accepted(n, 0), final_metrics(n), main_thread(main) {}

  /// A loop that ends before main asked (it could not start or listen) brings the server down.
  void ended_early() noexcept {
    if (!stopping.load(std::memory_order_seq_cst)) pthread_kill(main_thread, SIGUSR1);
  }
};

void run_loop(const Config& cfg, std::size_t index, LoopSlots& slots) {
  if (cfg.pin && bench::pin_to_nth_allowed_cpu(index) < 0)
    std::fprintf(stderr, "bench_server: could not pin loop %zu\n", index);
  Scheduler::Options options{cfg.backend};
  options.io_uring_sqpoll = cfg.sqpoll;
  options.io_uring_sqpoll_cpu = cfg.sqpoll_cpu;
  options.stall_threshold = std::chrono::milliseconds(cfg.stall_ms);
  std::unique_ptr<Scheduler> sched = bench::create_scheduler_or_report("bench_server", options);
  if (!sched) {
    slots.exit_codes[index] = 1;
    slots.ended_early();
    return;
  }
  std::unique_ptr<BufferPool> pool;
  if (cfg.pooled) {
    auto p = BufferPool::create(*sched, kPoolBuffers, kPoolBufferSize, cfg.pool_memory);
    if (p) {
      pool = std::move(*p);
    } else if (index == 0) {
      std::fprintf(stderr, "bench_server: no buffer pool (%s); using plain recv\n", p.error().message().c_str());
    }
  }
  t_pool = pool.get();
  sched->spawn(accept_loop(cfg, index, &slots.exit_codes[index], &slots.accepted[index])).detach();
  // Publish, then check `stopping` (both seq_cst, as main does the reverse): either main
  // sees this scheduler and stops it (a stop before run() makes run() return at once), or
  // this thread sees `stopping` and does not run.
  slots.schedulers[index].store(sched.get(), std::memory_order_seq_cst);
  if (!slots.stopping.load(std::memory_order_seq_cst)) sched->run();
  // run() returned without main asking when the accept loop failed: wake main first, or it
  // would sit in sigwait() while this thread waits for it below.
  slots.ended_early();
  // Main may still be calling stop() on this scheduler: tear down only after it is done.
  slots.stops_sent.wait(false, std::memory_order_acquire);
  sched->shutdown();  // cancels and frees every connection and the listener
  slots.final_metrics[index] = sched->metrics();
  pool.reset();  // after the receivers that use it, before the scheduler
  t_pool = nullptr;
  slots.schedulers[index].store(nullptr, std::memory_order_release);
  sched.reset();
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg = parse_args(argc, argv);
#if GALAY_KERNEL_WITH_TLS
  if (!cfg.tls_cert.empty() && !make_tls_context(cfg)) return 1;
#endif
  bench::raise_nofile_limit();
  std::signal(SIGPIPE, SIG_IGN);

  // Block the stop signals before any thread exists, so only sigwait() sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGUSR1);  // a loop that failed to start wakes main with this
  if (int e = pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr); e != 0) {
    std::fprintf(stderr, "bench_server: pthread_sigmask: %s\n", std::strerror(e));
    return 1;
  }

  LoopSlots slots(cfg.threads, pthread_self());
  std::vector<std::thread> threads;
  threads.reserve(cfg.threads);
  for (std::size_t i = 0; i < cfg.threads; ++i) threads.emplace_back([&, i] { run_loop(cfg, i, slots); });

  if (cfg.stats) {
    // Once a second until a signal: the published loops' metrics, summed.
    auto sum = [&slots] {
      SchedulerMetrics m;
      for (auto& s : slots.schedulers)
        if (Scheduler* sched = s.load(std::memory_order_seq_cst)) m += sched->metrics();
      return m;
    };
    SchedulerMetrics prev = sum();
    const timespec second{1, 0};
    for (int t = 1; sigtimedwait(&stop_signals, nullptr, &second) < 0; ++t) {
      if (errno != EAGAIN) continue;  // EINTR
      const SchedulerMetrics now = sum();
      std::fprintf(stderr, "[%4ds] %s\n", t, bench::metrics_line(now, prev, 1.0).c_str());
      prev = now;
    }
  } else {
    int sig = 0;
    while (sigwait(&stop_signals, &sig) != 0) {
    }
  }
  slots.stopping.store(true, std::memory_order_seq_cst);
  // Every published scheduler stays alive until stops_sent is set, so stop() is safe here.
  for (auto& s : slots.schedulers)
    if (Scheduler* sched = s.load(std::memory_order_seq_cst)) sched->stop();
  slots.stops_sent.store(true, std::memory_order_release);
  slots.stops_sent.notify_all();
  for (auto& t : threads) t.join();

  if (cfg.json) {
    SchedulerMetrics total;
    for (const SchedulerMetrics& m : slots.final_metrics) total += m;
    std::printf("{\"threads\":%zu,\"metrics\":%s}\n", cfg.threads, bench::metrics_json(total).c_str());
    std::fflush(stdout);
  }
  if (cfg.threads > 1) {  // how SO_REUSEPORT spread the connections
    std::fprintf(stderr, "bench_server: connections accepted per loop:");
    for (std::uint64_t n : slots.accepted) std::fprintf(stderr, " %" PRIu64, n);
    std::fprintf(stderr, "\n");
  }
  int exit_code = 0;
  for (int code : slots.exit_codes) exit_code = std::max(exit_code, code);
  return exit_code;
}
