// bench_server: the echo server that bench_client drives.
//
//   bench_server [port] [--backend epoll|io_uring|kqueue|auto] [--host 127.0.0.1]
//                [--recv pooled|plain]
//
// One Scheduler on the main thread. One coroutine accepts forever; every connection gets
// its own coroutine that echoes what it receives, so a message costs no allocation:
// --recv pooled (default) receives with a StreamReceiver into a shared BufferPool (on
// io_uring: one multishot recv per connection on a provided-buffer ring, like the liburing
// baseline); --recv plain recv()s into a 16 KiB buffer in the coroutine frame. SIGINT/SIGTERM are blocked in every thread
// and taken by a small thread in sigwait(), which calls Scheduler::stop() (thread-safe);
// the scheduler's destructor then cancels and frees every connection. Exit status 0 on a
// signal-driven stop, 1 if the server could not start, 2 on bad arguments.
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
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

#include "galay-kernel/galay-kernel.h"

namespace {

using namespace galay;
using namespace std::chrono_literals;

struct Config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  BackendKind backend = BackendKind::automatic;
  bool pooled = true;
};

// Shared receive buffers for --recv pooled: as many and as large as the liburing baseline's.
constexpr unsigned kPoolBuffers = 4096;
constexpr unsigned kPoolBufferSize = 4096;
BufferPool* g_pool = nullptr;

[[noreturn]] void usage(const char* argv0, int code) {
  std::fprintf(code == 0 ? stdout : stderr,
               "usage: %s [port] [--backend epoll|io_uring|kqueue|auto] [--host 127.0.0.1] [--recv pooled|plain]\n"
               "  port       TCP port to listen on (default 8080)\n"
               "  --backend  I/O backend of the scheduler (default auto)\n"
               "  --host     literal IPv4/IPv6 address to bind (default 127.0.0.1)\n"
               "  --recv     pooled: StreamReceiver on a shared BufferPool (default); plain: recv()\n",
               argv0);
  std::exit(code);
}

std::optional<std::uint16_t> parse_port(std::string_view s) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + unsigned(c - '0');
  }
  if (v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
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
    } else if (a == "--host" || a == "-h") {
      cfg.host = std::string(value());
    } else if (a == "--port" || a == "-p") {
      auto p = parse_port(value());
      if (!p) usage(argv[0], 2);
      cfg.port = *p;
      have_port = true;
    } else if (!have_port && !a.starts_with("-")) {
      auto p = parse_port(a);
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

void raise_nofile_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
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
  StreamReceiver rx(sock, *g_pool);
  for (;;) {
    auto chunk = co_await rx.recv();
    if (!chunk || chunk->empty()) break;
    auto sent = co_await sock.send_all(chunk->data());
    if (!sent) break;
  }
}

Task<void> accept_loop(const Config& cfg, int* exit_code) {
  Scheduler* sched = Scheduler::current();
  auto addr = SocketAddress::parse(cfg.host, cfg.port);
  if (!addr) {
    std::fprintf(stderr, "bench_server: bad host '%s': %s\n", cfg.host.c_str(), addr.error().message().c_str());
    *exit_code = 2;
    sched->stop();
    co_return;
  }
  auto listener = TcpSocket::listen_on(*addr, 4096);
  if (!listener) {
    std::fprintf(stderr, "bench_server: cannot listen on %s: %s\n", addr->to_string().c_str(),
                 listener.error().message().c_str());
    *exit_code = 1;
    sched->stop();
    co_return;
  }
  std::string where = addr->to_string();
  if (auto local = listener->local_address()) where = local->to_string();
  std::printf("bench_server listening on %s backend=%s (%s) recv=%s\n", where.c_str(),
              std::string(to_string(sched->backend_kind())).c_str(), sched->backend().describe().c_str(),
              g_pool ? "pooled" : "plain");
  std::fflush(stdout);

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
    (void)conn->set_nodelay(true);
    if (g_pool != nullptr)
      sched->spawn(echo_connection_pooled(std::move(*conn))).detach();
    else
      sched->spawn(echo_connection(std::move(*conn))).detach();
  }
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg = parse_args(argc, argv);
  raise_nofile_limit();
  std::signal(SIGPIPE, SIG_IGN);

  // Block the stop signals before any thread exists, so only sigwait() sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  if (int e = pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr); e != 0) {
    std::fprintf(stderr, "bench_server: pthread_sigmask: %s\n", std::strerror(e));
    return 1;
  }

  auto created = Scheduler::create(Scheduler::Options{cfg.backend});
  if (!created) {
    std::string why = cfg.backend == BackendKind::automatic ? std::string("no backend can run here")
                                                            : backend_unavailable_reason(cfg.backend);
    std::fprintf(stderr, "bench_server: cannot create a scheduler with backend %s: %s%s%s\n",
                 std::string(to_string(cfg.backend)).c_str(), created.error().message().c_str(),
                 why.empty() ? "" : ": ", why.c_str());
    return 1;
  }
  std::unique_ptr<Scheduler> sched = std::move(*created);

  std::atomic<bool> main_done{false};
  std::thread signal_thread([&] {
    int sig = 0;
    while (sigwait(&stop_signals, &sig) != 0) {
    }
    if (!main_done.load(std::memory_order_acquire)) sched->stop();
  });

  std::unique_ptr<BufferPool> pool;
  if (cfg.pooled) {
    auto p = BufferPool::create(*sched, kPoolBuffers, kPoolBufferSize);
    if (p) {
      pool = std::move(*p);
      g_pool = pool.get();
    } else {
      std::fprintf(stderr, "bench_server: no buffer pool (%s); using plain recv\n", p.error().message().c_str());
    }
  }

  int exit_code = 0;
  sched->spawn(accept_loop(cfg, &exit_code)).detach();
  sched->run();

  // The loop has returned (signal, or start-up failure): release the signal thread if it
  // is still waiting, then tear everything down on this thread.
  main_done.store(true, std::memory_order_release);
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  sched->shutdown();  // cancels and frees every connection and the listener
  pool.reset();       // after the receivers that use it, before the scheduler
  sched.reset();
  return exit_code;
}
