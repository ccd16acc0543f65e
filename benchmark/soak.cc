// soak: one process, one Scheduler, a loopback echo server and N client connections,
// random message sizes, random disconnect/reconnect, for a fixed time. Not a timed test:
// it checks that nothing is lost, corrupted or leaked under sustained load.
//
//   soak [-c conns] [-d seconds] [--max-size bytes] [--churn p] [--backend epoll|io_uring|kqueue|auto]
//        [--seed n] [--raise-hard-limit]
//
// Every client loops { pick a size in [1, max-size]; send_all(message); read back exactly
// that many bytes and check every byte; with probability p close and reconnect }.
//
// Memory per connection is kept small and independent of --max-size:
//  - Messages are never materialised per connection. Message bytes are byte i =
//    (start + i) & 0xff with a per-message random start, so every message is a slice of one
//    shared, read-only pattern buffer of max-size + 256 bytes; send_all sends straight from
//    that slice (safe to share: nobody writes to it).
//  - The client reads the echo into its own 4 KiB buffer, chunk by chunk, and checks each
//    chunk against the pattern as it arrives.
//  - The server echoes through its own 4 KiB buffer per connection (recv, send_all).
// So user-space buffers are 8 KiB per connection pair whatever the message size; the
// kernel's socket buffers hold the rest (not counted in RSS).
//
// Report: errors, messages, bytes, reconnects, RSS at start (all connections up), middle
// and end, RSS growth per connection, and the open fd count before the scheduler exists
// and after every socket is closed and the scheduler destroyed.
// Exit status: 0 if errors == 0 and the fd counts match, 1 otherwise, 2 on bad arguments
// or set-up failure (including too few file descriptors for -c).
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "args.h"
#include "bench_scheduler.h"
#include "galay-kernel/galay-kernel.h"

namespace {

using namespace galay;
using namespace std::chrono_literals;

constexpr std::size_t kChunk = 4096;  // per-connection receive buffer (client and server)
constexpr auto kConnectTimeout = 5s;
constexpr auto kIoTimeout = 15s;  // a send or recv stuck this long is an error
constexpr auto kStopGrace = 20s;  // time for in-flight messages to finish at the end

struct Config {
  std::size_t connections = 10000;
  std::uint64_t duration_s = 60;
  std::size_t max_size = 64 * 1024;
  double churn = 0.001;
  std::uint64_t seed = 1;
  bool raise_hard = false;
  BackendKind backend = BackendKind::automatic;
};

Config parse_args(int argc, char** argv) {
  Config cfg;
  cli::Parser args("soak", "[options]");
  args.integer("-c, --connections", "N", "client connections (default 10000)", cfg.connections, 1, 1'000'000)
      .integer("-d, --duration", "SECONDS", "how long to run (default 60)", cfg.duration_s, 1, 86400)
      .integer("--max-size", "BYTES", "largest message (default 65536)", cfg.max_size, 1, 64u << 20)
      .real("--churn", "P", "probability of a reconnect after each message (default 0.001)", cfg.churn, 0, 1)
      .integer("--seed", "N", "random seed (default 1)", cfg.seed, 0, UINT64_MAX)
      .backend(cfg.backend, "-b, --backend")
      .flag("--raise-hard-limit",
            "if -c needs more fds than the hard RLIMIT_NOFILE, try to raise\n"
            "the hard limit too (needs CAP_SYS_RESOURCE)",
            cfg.raise_hard);
  args.parse(argc, argv);
  return cfg;
}

std::size_t count_open_fds() {
  std::size_t n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // the directory's own fd
}

std::uint64_t rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0;
  int got = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (got != 2) return 0;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

double mib(std::uint64_t b) { return double(b) / (1024.0 * 1024.0); }

// ---------------------------------------------------------------------------------------
// Shared state: everything runs on the one scheduler thread.

struct State {
  explicit State(const Config& c) : cfg(c), rng(c.seed) {
    pattern.resize(c.max_size + 256);
    for (std::size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<std::byte>(i & 0xffu);
  }
  const Config& cfg;
  std::vector<std::byte> pattern;  // shared, read-only once built
  std::mt19937_64 rng;
  SocketAddress addr;
  bool stopping = false;
  std::uint64_t messages = 0;
  std::uint64_t bytes = 0;
  std::uint64_t reconnects = 0;
  std::uint64_t errors = 0;
  std::uint64_t server_conns = 0;  // live server-side connections
  std::uint64_t accepted = 0;
  std::size_t clients_live = 0;
  unsigned errors_reported = 0;

  void error(const char* who, std::size_t id, const char* what, std::error_code ec = {}) {
    ++errors;
    if (errors_reported < 10) {
      ++errors_reported;
      std::fprintf(stderr, "soak: %s %zu: %s%s%s\n", who, id, what, ec ? ": " : "", ec ? ec.message().c_str() : "");
    } else if (errors_reported == 10) {
      ++errors_reported;
      std::fprintf(stderr, "soak: (further errors not shown)\n");
    }
  }
};

// ---------------------------------------------------------------------------------------
// Server

Task<void> echo_connection(State& st, TcpSocket sock, std::size_t id) {
  std::unique_ptr<std::byte[]> buf(new std::byte[kChunk]());  // zeroed: resident from the start
  ++st.server_conns;
  for (;;) {
    auto n = co_await sock.recv(buf.get(), kChunk);
    if (!n) {
      if (n.error() != std::errc::operation_canceled) st.error("server conn", id, "recv", n.error());
      break;
    }
    if (*n == 0) break;  // client closed: normal at churn and at the end
    auto s = co_await sock.send_all(buf.get(), *n, kIoTimeout);
    if (!s) {
      if (s.error() != std::errc::operation_canceled) st.error("server conn", id, "send", s.error());
      break;
    }
  }
  --st.server_conns;
}

Task<void> accept_loop(State& st, TcpSocket& listener) {
  Scheduler* sched = Scheduler::current();
  for (;;) {
    auto conn = co_await listener.accept();
    if (!conn) {
      if (conn.error() == std::errc::operation_canceled) co_return;
      st.error("acceptor", 0, "accept", conn.error());
      co_await sleep_for(10ms);
      continue;
    }
    (void)conn->set_nodelay(true);
    sched->spawn_detached(echo_connection(st, std::move(*conn), st.accepted++));
  }
}

// ---------------------------------------------------------------------------------------
// Clients

Task<TcpSocket> connect_one(State& st, std::size_t id) {
  auto sock = TcpSocket::open(st.addr.family());
  if (!sock) {
    st.error("client", id, "socket", sock.error());
    co_return TcpSocket{};
  }
  auto r = co_await sock->connect(st.addr, kConnectTimeout);
  if (!r) {
    st.error("client", id, "connect", r.error());
    co_return TcpSocket{};
  }
  (void)sock->set_nodelay(true);
  co_return std::move(*sock);
}

Task<void> client(State& st, TcpSocket sock, std::size_t id) {
  std::unique_ptr<std::byte[]> rx(new std::byte[kChunk]());  // zeroed: resident from the start
  std::uniform_int_distribution<std::size_t> size_dist(1, st.cfg.max_size);
  std::uniform_int_distribution<unsigned> start_dist(0, 255);
  std::bernoulli_distribution churn(st.cfg.churn);
  while (!st.stopping) {
    const std::size_t size = size_dist(st.rng);
    const unsigned start = start_dist(st.rng);
    const std::byte* msg = st.pattern.data() + start;
    auto sent = co_await sock.send_all(msg, size, kIoTimeout);
    if (!sent || *sent != size) {
      st.error("client", id, "send_all", sent ? std::error_code{} : sent.error());
      break;
    }
    std::size_t got = 0;
    bool ok = true;
    while (got < size) {
      const std::size_t want = std::min(kChunk, size - got);
      auto n = co_await sock.recv(rx.get(), want, kIoTimeout);
      if (!n || *n == 0) {
        st.error("client", id, n ? "recv: unexpected EOF" : "recv", n ? std::error_code{} : n.error());
        ok = false;
        break;
      }
      if (*n > want || std::memcmp(rx.get(), msg + got, *n) != 0) {
        st.error("client", id, "echo mismatch (stale, crossed or corrupted data)");
        ok = false;
        break;
      }
      got += *n;
    }
    if (!ok) break;
    ++st.messages;
    st.bytes += size;
    if (!st.stopping && churn(st.rng)) {
      auto closed = co_await sock.close();
      if (!closed) st.error("client", id, "close", closed.error());
      sock = co_await connect_one(st, id);
      if (!sock.is_open()) break;
      ++st.reconnects;
    }
  }
  --st.clients_live;
}

// ---------------------------------------------------------------------------------------
// The run

struct Report {
  int status = 0;
  std::uint64_t rss_start = 0, rss_mid = 0, rss_end = 0;
  std::size_t connected = 0;
  double wall_s = 0;
};

Task<Report> run_soak(State& st) {
  Scheduler* sched = Scheduler::current();
  Report rep;
  auto listener = TcpSocket::listen_on(SocketAddress::loopback(0), 4096);
  if (!listener) {
    std::fprintf(stderr, "soak: cannot listen: %s\n", listener.error().message().c_str());
    rep.status = 2;
    co_return rep;
  }
  auto local = listener->local_address();
  if (!local) {
    std::fprintf(stderr, "soak: getsockname: %s\n", local.error().message().c_str());
    rep.status = 2;
    co_return rep;
  }
  st.addr = *local;
  JoinHandle<void> acceptor = sched->spawn(accept_loop(st, *listener));

  // Connect in batches of 1000 so the listen backlog never overflows.
  std::vector<TcpSocket> sockets;
  sockets.reserve(st.cfg.connections);
  for (std::size_t base = 0; base < st.cfg.connections; base += 1000) {
    std::vector<Task<TcpSocket>> connects;
    const std::size_t end = std::min(st.cfg.connections, base + 1000);
    for (std::size_t i = base; i < end; ++i) connects.push_back(connect_one(st, i));
    auto batch = co_await when_all(std::move(connects));
    for (auto& s : batch) sockets.push_back(std::move(s));
  }
  std::vector<JoinHandle<void>> clients;
  clients.reserve(sockets.size());
  for (std::size_t i = 0; i < sockets.size(); ++i) {
    if (!sockets[i].is_open()) continue;
    ++rep.connected;
    ++st.clients_live;
    clients.push_back(sched->spawn(client(st, std::move(sockets[i]), i)));
  }
  sockets.clear();
  sockets.shrink_to_fit();
  while (st.server_conns < rep.connected && st.errors == 0) co_await sleep_for(1ms);
  rep.rss_start = rss_bytes();
  std::printf("connected: %zu/%zu  server connections: %" PRIu64 "  RSS start: %.1f MiB\n", rep.connected,
              st.cfg.connections, st.server_conns, mib(rep.rss_start));
  std::fflush(stdout);

  const auto begin = Clock::now();
  std::uint64_t last = 0;
  for (std::uint64_t s = 1; s <= st.cfg.duration_s; ++s) {
    co_await sleep_until(begin + std::chrono::seconds(s));
    if (s == (st.cfg.duration_s + 1) / 2) rep.rss_mid = rss_bytes();
    if (s % 5 == 0 || s == st.cfg.duration_s) {
      std::printf("t=%3" PRIu64 "s messages=%" PRIu64 " (+%" PRIu64 ") reconnects=%" PRIu64 " errors=%" PRIu64
                  " RSS=%.1f MiB clients=%zu\n",
                  s, st.messages, st.messages - last, st.reconnects, st.errors, mib(rss_bytes()), st.clients_live);
      std::fflush(stdout);
      last = st.messages;
    }
  }
  rep.rss_end = rss_bytes();
  rep.wall_s = std::chrono::duration<double>(Clock::now() - begin).count();

  // Stop: every client finishes its message and closes; servers then see EOF.
  st.stopping = true;
  const auto grace_end = Clock::now() + kStopGrace;
  while ((st.clients_live > 0 || st.server_conns > 0) && Clock::now() < grace_end) co_await sleep_for(5ms);
  if (st.clients_live > 0 || st.server_conns > 0) {
    st.error("soak", 0, "connections still open after the grace period (cancelled)");
    for (auto& c : clients) c.cancel();
  }
  for (auto& c : clients) co_await c;
  acceptor.cancel();
  co_await acceptor;
  co_return rep;
}

void raise_nofile_limit(std::size_t needed, bool raise_hard, bool* ok) {
  rlimit rl{};
  *ok = false;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    std::fprintf(stderr, "soak: getrlimit: %s\n", std::strerror(errno));
    return;
  }
  const rlim_t old_soft = rl.rlim_cur;
  if (rl.rlim_cur != rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      std::fprintf(stderr, "soak: setrlimit: %s\n", std::strerror(errno));
      return;
    }
  }
  std::printf("RLIMIT_NOFILE: soft limit raised from %llu to the hard limit %llu\n",
              static_cast<unsigned long long>(old_soft), static_cast<unsigned long long>(rl.rlim_max));
  if (raise_hard && rl.rlim_cur != RLIM_INFINITY && needed > rl.rlim_cur) {
    const rlim_t old_hard = rl.rlim_max;
    rlimit want{static_cast<rlim_t>(needed), static_cast<rlim_t>(needed)};
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
      rl = want;
      std::printf("RLIMIT_NOFILE: --raise-hard-limit: hard and soft limit raised from %llu to %zu\n",
                  static_cast<unsigned long long>(old_hard), needed);
    } else {
      std::fprintf(stderr, "soak: --raise-hard-limit: setrlimit(%zu): %s\n", needed, std::strerror(errno));
    }
  }
  if (rl.rlim_cur != RLIM_INFINITY && needed > rl.rlim_cur) {
    std::fprintf(stderr,
                 "soak: error: %zu file descriptors needed (2 per connection: client and server side, plus "
                 "reconnect overlap and the process's own), but RLIMIT_NOFILE allows only %llu; "
                 "use fewer connections (-c), or raise the hard limit (ulimit -Hn, or --raise-hard-limit as root)\n",
                 needed, static_cast<unsigned long long>(rl.rlim_cur));
    return;
  }
  *ok = true;
}

}  // namespace

int main(int argc, char** argv) {
  const Config cfg = parse_args(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);

  // Baseline after one scheduler has been created and destroyed: one-time, process-wide
  // descriptors (the kqueue emulation's shared wake eventfd on Linux) are not leaks.
  { auto warm = Scheduler::create(Scheduler::Options{cfg.backend}); }
  const std::size_t fds_before = count_open_fds();
  bool fd_ok = false;
  raise_nofile_limit(2 * cfg.connections + fds_before + 32, cfg.raise_hard, &fd_ok);
  if (!fd_ok) return 2;

  std::printf("soak: connections=%zu duration=%" PRIu64 "s sizes=1..%zu churn=%g seed=%" PRIu64 "\n", cfg.connections,
              cfg.duration_s, cfg.max_size, cfg.churn, cfg.seed);
  std::printf(
      "buffers: one shared read-only %zu-byte pattern for all sends; %zu-byte receive buffer per client "
      "and per server connection\n",
      cfg.max_size + 256, kChunk);

  Report rep;
  std::uint64_t errors = 0, messages = 0, bytes = 0, reconnects = 0;
  std::string backend;
  {
    std::unique_ptr<Scheduler> sched = bench::create_scheduler_or_report("soak", Scheduler::Options{cfg.backend});
    if (!sched) return 2;
    backend = std::string(to_string(sched->backend_kind()));
    std::printf("backend: %s (%s)\n", backend.c_str(), sched->describe_backend().c_str());
    std::fflush(stdout);
    State st(cfg);
    rep = sched->block_on(run_soak(st));
    errors = st.errors;
    messages = st.messages;
    bytes = st.bytes;
    reconnects = st.reconnects;
    sched->shutdown();
    sched.reset();
  }
  const std::size_t fds_after = count_open_fds();
  if (rep.status != 0) return rep.status;

  const double per_conn = rep.connected ? double(rep.rss_start) / double(rep.connected) : 0.0;
  const double growth = double(rep.rss_end) - double(rep.rss_start);
  std::printf("\n=== soak results (%s) ===\n", backend.c_str());
  std::printf("connections: %zu  duration: %.1f s\n", rep.connected, rep.wall_s);
  std::printf("messages: %" PRIu64 "  bytes: %" PRIu64 " (%.1f MiB, %.1f MiB/s)  reconnects: %" PRIu64 "\n", messages,
              bytes, mib(bytes), rep.wall_s > 0 ? mib(bytes) / rep.wall_s : 0.0, reconnects);
  std::printf("errors: %" PRIu64 "\n", errors);
  std::printf("RSS: start %.1f MiB, middle %.1f MiB, end %.1f MiB (end - start: %+.1f MiB)\n", mib(rep.rss_start),
              mib(rep.rss_mid), mib(rep.rss_end), growth / (1024.0 * 1024.0));
  std::printf(
      "RSS per connection at start: %.0f bytes (whole process / connections; each connection is a "
      "client and a server side)\n",
      per_conn);
  std::printf("RSS growth per connection start->end: %.1f bytes\n",
              rep.connected ? growth / double(rep.connected) : 0.0);
  std::printf("open fds: before %zu, after %zu (%s)\n", fds_before, fds_after,
              fds_before == fds_after ? "equal" : "LEAK");
  const bool pass = errors == 0 && fds_before == fds_after && rep.connected == cfg.connections;
  std::printf("result: %s\n", pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}
