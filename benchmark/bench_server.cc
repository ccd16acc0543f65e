// bench_server: the echo server that bench_client drives.
//
//   bench_server [port] [--backend epoll|io_uring|kqueue|auto] [--host 127.0.0.1]
//                [--recv pooled|plain] [-t threads] [--pin]
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
// baseline); --recv plain recv()s into a 16 KiB buffer in the coroutine frame. SIGINT/SIGTERM are blocked in every
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

#include "bench_common.h"
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
};

// Shared receive buffers for --recv pooled: as many and as large as the liburing baseline's.
constexpr unsigned kPoolBuffers = 4096;
constexpr unsigned kPoolBufferSize = 4096;
thread_local BufferPool* t_pool = nullptr;  // this loop's pool, or null for plain recv

[[noreturn]] void usage(const char* argv0, int code) {
  std::fprintf(code == 0 ? stdout : stderr,
               "usage: %s [port] [--backend epoll|io_uring|kqueue|auto] [--host 127.0.0.1] [--recv pooled|plain]\n"
               "          [-t threads] [--pin]\n"
               "  port       TCP port to listen on (default 8080)\n"
               "  --backend  I/O backend of the scheduler (default auto)\n"
               "  --host     literal IPv4/IPv6 address to bind (default 127.0.0.1)\n"
               "  --recv     pooled: StreamReceiver on a shared BufferPool (default); plain: recv()\n"
               "  -t         event loops, one per thread, each with a SO_REUSEPORT listener (default 1)\n"
               "  --pin      pin loop i to the i-th CPU allowed to the process (see taskset)\n",
               argv0);
  std::exit(code);
}

Config parse_args(int argc, char** argv) {
  Config cfg;
  bool have_port = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s: %s needs a value\n", argv[0], argv[i]);
        usage(argv[0], 2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-?") {
      usage(argv[0], 0);
    } else if (a == "--backend" || a == "-b") {
      std::string_view v = value();
      auto k = parse_backend_kind(v);
      if (!k) {
        std::fprintf(stderr, "%s: unknown backend '%.*s'\n", argv[0], int(v.size()), v.data());
        usage(argv[0], 2);
      }
      cfg.backend = *k;
    } else if (a.starts_with("--backend=")) {
      auto k = parse_backend_kind(a.substr(10));
      if (!k) usage(argv[0], 2);
      cfg.backend = *k;
    } else if (a == "--recv") {
      std::string_view v = value();
      if (v != "pooled" && v != "plain") usage(argv[0], 2);
      cfg.pooled = v == "pooled";
    } else if (a == "-t" || a == "--threads") {
      auto t = bench::parse_uint(value(), 1, 1024);
      if (!t) usage(argv[0], 2);
      cfg.threads = std::size_t(*t);
    } else if (a == "--pin") {
      cfg.pin = true;
    } else if (a == "--host" || a == "-h") {
      cfg.host = std::string(value());
    } else if (a == "--port" || a == "-p") {
      auto p = bench::parse_port(value());
      if (!p) usage(argv[0], 2);
      cfg.port = *p;
      have_port = true;
    } else if (!have_port && !a.starts_with("-")) {
      auto p = bench::parse_port(a);
      if (!p) {
        std::fprintf(stderr, "%s: bad port '%s'\n", argv[0], argv[i]);
        usage(argv[0], 2);
      }
      cfg.port = *p;
      have_port = true;
    } else {
      std::fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[i]);
      usage(argv[0], 2);
    }
  }
  return cfg;
}

/// One connection: echo until EOF or an error. The buffer is part of the coroutine frame,
/// allocated once with it; nothing is allocated per message.
Task<void> echo_connection(TcpSocket sock) {
  std::array<std::byte, 16 * 1024> buf;
  for (;;) {
    auto n = co_await sock.recv(buf);
    if (!n || *n == 0) break;  // EOF, reset, or cancelled by shutdown
    auto sent = co_await sock.send_all(std::span<const std::byte>(buf.data(), *n));
    if (!sent) break;
  }
}

/// The same with pooled receive: chunks arrive in pool buffers and go back when dropped.
Task<void> echo_connection_pooled(TcpSocket sock) {
  StreamReceiver rx(sock, *t_pool);
  for (;;) {
    auto chunk = co_await rx.recv();
    if (!chunk || chunk->empty()) break;
    auto sent = co_await sock.send_all(chunk->data());
    if (!sent) break;
  }
}

/// One loop's accept coroutine. Loop 0 reports the address; with -t > 1 every loop binds
/// its own SO_REUSEPORT listener to the same port.
Task<void> accept_loop(const Config& cfg, std::size_t loop, int* exit_code, std::uint64_t* accepted) {
  Scheduler* sched = Scheduler::current();
  auto addr = SocketAddress::parse(cfg.host, cfg.port);
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
    std::printf("bench_server listening on %s backend=%s (%s) recv=%s threads=%zu%s\n", where.c_str(),
                std::string(to_string(sched->backend_kind())).c_str(), sched->backend().describe().c_str(),
                t_pool ? "pooled" : "plain", cfg.threads, cfg.pin ? " pinned" : "");
    std::fflush(stdout);
  }

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
    if (t_pool != nullptr)
      sched->spawn(echo_connection_pooled(std::move(*conn))).detach();
    else
      sched->spawn(echo_connection(std::move(*conn))).detach();
  }
}

/// Hand-over between main and the loop threads. A scheduler is created, run and destroyed
/// on its own thread (an io_uring ring set up SINGLE_ISSUER belongs to the thread that
/// created it); main only calls the thread-safe stop().
struct LoopSlots {
  std::vector<std::atomic<Scheduler*>> schedulers;
  std::vector<int> exit_codes;          // written by loop i, read after it is joined
  std::vector<std::uint64_t> accepted;  // connections loop i accepted (the same)
  std::atomic<bool> stopping{false};    // main is about to stop every published loop
  std::atomic<bool> stops_sent{false};  // main is done touching the schedulers
  explicit LoopSlots(std::size_t n) : schedulers(n), exit_codes(n, 0), accepted(n, 0) {}
};

void run_loop(const Config& cfg, std::size_t index, LoopSlots& slots) {
  if (cfg.pin && bench::pin_to_nth_allowed_cpu(index) < 0)
    std::fprintf(stderr, "bench_server: could not pin loop %zu\n", index);
  auto created = Scheduler::create(Scheduler::Options{cfg.backend});
  if (!created) {
    std::string why = cfg.backend == BackendKind::automatic ? std::string("no backend can run here")
                                                            : backend_unavailable_reason(cfg.backend);
    std::fprintf(stderr, "bench_server: cannot create a scheduler with backend %s: %s%s%s\n",
                 std::string(to_string(cfg.backend)).c_str(), created.error().message().c_str(),
                 why.empty() ? "" : ": ", why.c_str());
    slots.exit_codes[index] = 1;
    return;
  }
  std::unique_ptr<Scheduler> sched = std::move(*created);
  std::unique_ptr<BufferPool> pool;
  if (cfg.pooled) {
    auto p = BufferPool::create(*sched, kPoolBuffers, kPoolBufferSize);
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
  // Main may still be calling stop() on this scheduler: tear down only after it is done.
  slots.stops_sent.wait(false, std::memory_order_acquire);
  sched->shutdown();  // cancels and frees every connection and the listener
  pool.reset();       // after the receivers that use it, before the scheduler
  t_pool = nullptr;
  slots.schedulers[index].store(nullptr, std::memory_order_release);
  sched.reset();
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg = parse_args(argc, argv);
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

  LoopSlots slots(cfg.threads);
  const pthread_t main_thread = pthread_self();
  std::vector<std::thread> threads;
  threads.reserve(cfg.threads);
  for (std::size_t i = 0; i < cfg.threads; ++i) {
    threads.emplace_back([&, i] {
      run_loop(cfg, i, slots);
      // A loop that ends before main asked (start-up failure) brings the server down.
      if (!slots.stopping.load(std::memory_order_acquire)) pthread_kill(main_thread, SIGUSR1);
    });
  }

  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  slots.stopping.store(true, std::memory_order_seq_cst);
  // Every published scheduler stays alive until stops_sent is set, so stop() is safe here.
  for (auto& s : slots.schedulers)
    if (Scheduler* sched = s.load(std::memory_order_seq_cst)) sched->stop();
  slots.stops_sent.store(true, std::memory_order_release);
  slots.stops_sent.notify_all();
  for (auto& t : threads) t.join();

  if (cfg.threads > 1) {  // how SO_REUSEPORT spread the connections
    std::fprintf(stderr, "bench_server: connections accepted per loop:");
    for (std::uint64_t n : slots.accepted) std::fprintf(stderr, " %" PRIu64, n);
    std::fprintf(stderr, "\n");
  }
  int exit_code = 0;
  for (int code : slots.exit_codes) exit_code = std::max(exit_code, code);
  return exit_code;
}
