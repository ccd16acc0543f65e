// bench_ipc: the asynchronous-IPC experiment of the seed notes, between two processes.
//
//   bench_ipc [--mode pingpong|oneway] [--transport all|channel|pipe|socketpair|eventfd]
//             [-n COUNT] [-s SIZE] [--backend auto|epoll|io_uring|kqueue] [--spin-us N]
//             [--pin] [--json]
//
// For each transport it forks a peer and prints the seeds' RESULTS block, then a summary
// with every transport's rate relative to the socketpair's:
//   pingpong  one message there and one back per round trip; the durations are round trips.
//   oneway    the parent sends COUNT messages as fast as the transport takes them and the
//             child receives them; the total runs from the first send to the last receive,
//             and the per-message durations are the mean of each window of 64 messages at
//             the receiver (a clock read per message would cost more than a channel message).
// Transports:
//   channel     galay's IpcSender/IpcReceiver (shared ring, eventfd only when the reader
//               sleeps), awaited on a Scheduler with --backend; --spin-us lets the receivers
//               poll the ring that long before sleeping.
//   pipe        blocking write/read of exactly SIZE bytes per message.
//   socketpair  the same on an AF_UNIX SOCK_STREAM socket pair.
//   eventfd     the seeds' pattern: a shared ring of SIZE-byte slots, an eventfd write per
//               message, and a reader that blocks in epoll_wait when the ring is empty.
// If either process dies, the other exits 1 at once: the byte transports see EOF or EPIPE,
// the channel sees its peer close, and the eventfd transport's epoll set (and the sender's
// wait for ring space) watches a socketpair end that the dead process held.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "args.h"
#include "bench_common.h"
#include "galay-kernel/galay-kernel.h"

using namespace galay;

namespace {

namespace bench = galay::bench;

enum class Mode { pingpong, oneway };
constexpr std::size_t kWindow = 64;
constexpr std::size_t kMaxSize = 1 << 16;

struct Options {
  Mode mode = Mode::pingpong;
  std::vector<std::string> transports{"channel", "pipe", "socketpair", "eventfd"};
  std::uint64_t count = 100'000;
  std::size_t size = 1;
  BackendKind backend = BackendKind::automatic;
  std::uint64_t spin_us = 0;
  bool pin = false;
  bool json = false;
};

std::uint64_t now_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

// What the two processes share besides the transport: timings written by the child.
struct SharedResults {
  std::atomic<std::uint64_t> ready;  // the child is set up
  std::uint64_t last_receive_ns;     // oneway: when the child got the last message
  std::uint64_t windows;             // oneway: per-message duration of each window (ns), below
  std::uint64_t failed;              // the child saw a wrong or missing message
  double window_ns[1];               // flexible: count / kWindow entries
};

SharedResults* map_results(std::uint64_t count) {
  const std::size_t bytes = sizeof(SharedResults) + sizeof(double) * (count / kWindow + 1);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(1);
  }
  return new (p) SharedResults{};
}

struct Stats {
  std::uint64_t count = 0;
  double total_ms = 0, avg_us = 0, min_us = 0, max_us = 0, stddev_us = 0, rate = 0;
};

Stats summarize(const std::vector<double>& durations_ns, std::uint64_t count, std::uint64_t total_ns) {
  Stats s;
  s.count = count;
  s.total_ms = static_cast<double>(total_ns) / 1e6;
  s.avg_us = static_cast<double>(total_ns) / static_cast<double>(count) / 1e3;
  s.rate = static_cast<double>(count) / (static_cast<double>(total_ns) / 1e9);
  if (!durations_ns.empty()) {
    double sum = 0, sq = 0;
    s.min_us = *std::min_element(durations_ns.begin(), durations_ns.end()) / 1e3;
    s.max_us = *std::max_element(durations_ns.begin(), durations_ns.end()) / 1e3;
    for (double d : durations_ns) sum += d;
    const double mean = sum / static_cast<double>(durations_ns.size());
    for (double d : durations_ns) sq += (d - mean) * (d - mean);
    s.stddev_us = std::sqrt(sq / static_cast<double>(durations_ns.size())) / 1e3;
  }
  return s;
}

void print_results(const std::string& transport, const Options& o, const Stats& s) {
  std::printf("transport: %s (%s)\n", transport.c_str(), o.mode == Mode::pingpong ? "pingpong" : "oneway");
  std::printf("============ RESULTS ================\n");
  std::printf("Message size:       %zu\n", o.size);
  std::printf("Message count:      %llu\n", static_cast<unsigned long long>(s.count));
  std::printf("Total duration:     %.3f ms\n", s.total_ms);
  std::printf("Average duration:   %.3f us\n", s.avg_us);
  std::printf("Minimum duration:   %.3f us\n", s.min_us);
  std::printf("Maximum duration:   %.3f us\n", s.max_us);
  std::printf("Standard deviation: %.3f us\n", s.stddev_us);
  std::printf("Message rate:       %.0f msg/s\n", s.rate);
  std::printf("=====================================\n\n");
  std::fflush(stdout);
}

// ---- blocking byte transports (pipe, socketpair) ----

bool write_exact(int fd, const std::byte* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}
bool read_exact(int fd, std::byte* p, std::size_t n) {
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

// ---- the eventfd baseline: SIZE-byte slots in shared memory, one eventfd write per message ----

struct SlotRing {
  static constexpr std::uint64_t kSlots = 4096;
  alignas(64) std::atomic<std::uint64_t> head;
  alignas(64) std::atomic<std::uint64_t> tail;
  alignas(64) std::byte data[1];  // kSlots * size
};
SlotRing* map_slot_ring(std::size_t size) {
  void* p = ::mmap(nullptr, sizeof(SlotRing) + SlotRing::kSlots * size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) std::exit(1);
  return new (p) SlotRing{};
}
// The other process is gone: its end of the liveness socketpair (every run has one, each
// process holding one end) has closed, so this end reads EOF. The byte transports notice a
// dead peer by themselves (EOF, EPIPE); the eventfd one and the start-up wait ask this.
bool peer_gone(int liveness) {
  pollfd p{liveness, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;  // nothing is ever written: readable means EOF (or POLLHUP)
}

struct EventfdPath {
  SlotRing* ring;
  int efd;
  int epfd;  // the reader's epoll set holding efd (and, once watch_peer ran, the liveness end)
  std::size_t size;
  int peer = -1;                                // this process's end of the liveness socketpair
  static constexpr std::uint32_t kPeerTag = 1;  // epoll data of the liveness end (efd: 0)

  /// Let waits see the other process die (called after fork, in the process that uses this path).
  void watch_peer(int liveness) {
    peer = liveness;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u32 = kPeerTag;
    ::epoll_ctl(epfd, EPOLL_CTL_ADD, liveness, &ev);
  }
  /// False if the ring stays full and the reader is gone.
  bool send(const std::byte* msg) {
    const std::uint64_t h = ring->head.load(std::memory_order_relaxed);
    for (unsigned spins = 1; h - ring->tail.load(std::memory_order_acquire) >= SlotRing::kSlots; ++spins) {
      if (spins % 64 == 0 && peer_gone(peer)) return false;
      sched_yield();
    }
    std::memcpy(ring->data + (h % SlotRing::kSlots) * size, msg, size);
    ring->head.store(h + 1, std::memory_order_release);
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t w = ::write(efd, &one, sizeof(one));
    return true;
  }
  /// False if the ring is empty and the writer is gone.
  bool recv(std::byte* out) {
    const std::uint64_t t = ring->tail.load(std::memory_order_relaxed);
    while (ring->head.load(std::memory_order_acquire) == t) {
      epoll_event evs[2]{};
      const int n = ::epoll_wait(epfd, evs, 2, -1);
      bool gone = false;
      for (int i = 0; i < n; ++i) gone = gone || evs[i].data.u32 == kPeerTag;
      std::uint64_t count = 0;
      [[maybe_unused]] ssize_t r = ::read(efd, &count, sizeof(count));
      // A writer's last message lands before its exit closes the liveness end: look again.
      if (gone && ring->head.load(std::memory_order_acquire) == t) return false;
    }
    std::memcpy(out, ring->data + (t % SlotRing::kSlots) * size, size);
    ring->tail.store(t + 1, std::memory_order_release);
    return true;
  }
};
EventfdPath make_eventfd_path(std::size_t size) {
  EventfdPath p{map_slot_ring(size), ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), ::epoll_create1(EPOLL_CLOEXEC), size};
  epoll_event ev{};
  ev.events = EPOLLIN;
  ::epoll_ctl(p.epfd, EPOLL_CTL_ADD, p.efd, &ev);
  return p;
}

// ---- one measured run ----

// The CPUs the program was started on: every run pins from this set, not from the single CPU
// an earlier run left the parent on (a child inheriting that would share its core).
cpu_set_t g_start_cpus;

void pin_process(const Options& o, std::size_t nth) {
  if (!o.pin) return;
  ::sched_setaffinity(0, sizeof g_start_cpus, &g_start_cpus);
  if (bench::pin_to_nth_allowed_cpu(nth) < 0) std::fprintf(stderr, "bench_ipc: could not pin\n");
}

std::unique_ptr<Scheduler> make_scheduler(const Options& o) {
  Scheduler::Options so;
  so.backend = o.backend;
  auto s = Scheduler::create(so);
  if (!s) {
    std::fprintf(stderr, "bench_ipc: scheduler: %s\n", s.error().message().c_str());
    std::exit(1);
  }
  return std::move(*s);
}

// The child's side of every transport; returns the process exit status.
int run_child(const Options& o, const std::string& transport, SharedResults* res, const int* fds, EventfdPath* ev,
              int liveness) {
  pin_process(o, 1);
  if (transport == "eventfd") ev[0].watch_peer(liveness);  // the child reads ev[0]
  ev[1].peer = liveness;                                   // and writes ev[1] (pingpong)
  std::vector<std::byte> buf(o.size);
  const bool pingpong = o.mode == Mode::pingpong;
  std::uint64_t window_start = 0;
  auto note_window = [&](std::uint64_t i) {  // oneway: called after message i arrived
    if (i % kWindow == 0) window_start = now_ns();
    if (i % kWindow == kWindow - 1)
      res->window_ns[res->windows++] = static_cast<double>(now_ns() - window_start) / kWindow;
  };
  if (transport == "channel") {
    auto sched = make_scheduler(o);
    auto rx_files = IpcEndpointFiles::adopt(std::span<const int>(fds, 4));
    IpcReceiverOptions ro;
    ro.spin = std::chrono::microseconds(o.spin_us);
    auto rx = IpcReceiver::open(std::move(*rx_files), ro);
    std::optional<IpcSender> tx;
    if (pingpong) {
      auto tx_files = IpcEndpointFiles::adopt(std::span<const int>(fds + 4, 4));
      tx.emplace(std::move(*IpcSender::open(std::move(*tx_files))));
    }
    if (!rx) return 1;
    res->ready.store(1);
    return sched->block_on([](const Options& opt, IpcReceiver& r, std::optional<IpcSender>& t, SharedResults* out,
                              std::vector<std::byte>& b, auto& note) -> Task<int> {
      for (std::uint64_t i = 0; i < opt.count; ++i) {
        auto got = co_await r.recv(b);
        if (!got || *got != opt.size) {
          ++out->failed;
          co_return 1;
        }
        if (t) {
          if (!co_await t->send(std::span(b.data(), *got))) co_return 1;
        } else {
          note(i);
        }
      }
      out->last_receive_ns = now_ns();
      co_return 0;
    }(o, *rx, tx, res, buf, note_window));
  }
  res->ready.store(1);
  for (std::uint64_t i = 0; i < o.count; ++i) {
    if (transport == "eventfd") {
      if (!ev[0].recv(buf.data())) {
        ++res->failed;
        return 1;
      }
      if (pingpong && !ev[1].send(buf.data())) return 1;
    } else {
      if (!read_exact(fds[0], buf.data(), o.size)) {
        ++res->failed;
        return 1;
      }
      if (pingpong && !write_exact(fds[1], buf.data(), o.size)) return 1;
    }
    if (!pingpong) note_window(i);
  }
  res->last_receive_ns = now_ns();
  return 0;
}

// The parent's side: the sender / the ping-pong client. Returns the stats or nothing on failure.
std::optional<Stats> run_transport(const Options& o, const std::string& transport) {
  SharedResults* res = map_results(o.count);
  int child_fds[8] = {-1, -1, -1, -1, -1, -1, -1, -1};  // what the child reads from / writes to
  int parent_fds[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
  EventfdPath ev[2]{};
  std::optional<IpcChannelFiles> there, back;

  if (transport == "channel") {
    auto a = make_ipc_channel(1 << 20);
    if (!a) return std::nullopt;
    there.emplace(std::move(*a));
    auto fa = there->receiver.fds();
    std::copy(fa.begin(), fa.end(), child_fds);
    if (o.mode == Mode::pingpong) {
      auto b = make_ipc_channel(1 << 20);
      if (!b) return std::nullopt;
      back.emplace(std::move(*b));
      auto fb = back->sender.fds();
      std::copy(fb.begin(), fb.end(), child_fds + 4);
    }
  } else if (transport == "pipe" || transport == "socketpair") {
    for (int dir = 0; dir < 2; ++dir) {
      int p[2];
      const int rc =
          transport == "pipe" ? ::pipe2(p, O_CLOEXEC) : ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p);
      if (rc < 0) return std::nullopt;
      // dir 0: parent writes p[1], child reads p[0]; dir 1: child writes, parent reads.
      if (dir == 0) {
        child_fds[0] = p[0];
        parent_fds[0] = p[1];
      } else {
        child_fds[1] = p[1];
        parent_fds[1] = p[0];
      }
    }
  } else if (transport == "eventfd") {
    ev[0] = make_eventfd_path(o.size);
    ev[1] = make_eventfd_path(o.size);
  } else {
    std::fprintf(stderr, "bench_ipc: unknown transport %s\n", transport.c_str());
    return std::nullopt;
  }

  int liveness[2];  // [0] stays in the parent, [1] in the child: each sees the other's exit
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, liveness) < 0) return std::nullopt;
  std::fflush(stdout);
  const pid_t pid = ::fork();
  if (pid < 0) return std::nullopt;
  if (pid == 0) {
    if (there) there->sender.close();
    if (back) back->receiver.close();
    for (int fd : parent_fds)
      if (fd >= 0) ::close(fd);
    ::close(liveness[0]);
    ::_exit(run_child(o, transport, res, child_fds, ev, liveness[1]));
  }
  ::close(liveness[1]);
  if (there) there->receiver.close();
  if (back) back->sender.close();
  for (int fd : child_fds)
    if (fd >= 0 && transport != "channel") ::close(fd);
  ev[0].peer = liveness[0];                                   // the parent writes ev[0]
  if (transport == "eventfd") ev[1].watch_peer(liveness[0]);  // and reads ev[1] (pingpong)

  pin_process(o, 0);
  for (unsigned spins = 1; res->ready.load() == 0; ++spins) {
    if (spins % 64 == 0 && peer_gone(liveness[0])) break;  // the child died setting up
    sched_yield();
  }
  bool ok = res->ready.load() != 0;
  std::vector<std::byte> msg(o.size, std::byte{'x'});
  std::vector<std::byte> reply(o.size);
  std::vector<double> durations;
  if (o.mode == Mode::pingpong) durations.reserve(o.count);
  std::uint64_t start = 0;

  if (ok && transport == "channel") {
    auto sched = make_scheduler(o);
    auto tx = IpcSender::open(std::move(there->sender));
    std::optional<IpcReceiver> rx;
    if (back) {
      IpcReceiverOptions ro;
      ro.spin = std::chrono::microseconds(o.spin_us);
      rx.emplace(std::move(*IpcReceiver::open(std::move(back->receiver), ro)));
    }
    if (!tx) return std::nullopt;
    ok = sched->block_on([](const Options& opt, IpcSender& t, std::optional<IpcReceiver>& r, std::vector<std::byte>& m,
                            std::vector<std::byte>& rep, std::vector<double>& d, std::uint64_t& t0) -> Task<bool> {
      t0 = now_ns();
      for (std::uint64_t i = 0; i < opt.count; ++i) {
        const std::uint64_t sent_at = r ? now_ns() : 0;
        if (!co_await t.send(m)) co_return false;
        if (r) {
          auto got = co_await r->recv(rep);
          if (!got || *got != opt.size) co_return false;
          d.push_back(static_cast<double>(now_ns() - sent_at));
        }
      }
      co_return true;
    }(o, *tx, rx, msg, reply, durations, start));
  } else if (ok) {  // not if the child died before it was ready
    start = now_ns();
    for (std::uint64_t i = 0; i < o.count && ok; ++i) {
      const std::uint64_t sent_at = o.mode == Mode::pingpong ? now_ns() : 0;
      if (transport == "eventfd") {
        ok = ev[0].send(msg.data()) && (o.mode == Mode::oneway || ev[1].recv(reply.data()));
      } else {
        ok = write_exact(parent_fds[0], msg.data(), o.size) &&
             (o.mode == Mode::oneway || read_exact(parent_fds[1], reply.data(), o.size));
      }
      if (o.mode == Mode::pingpong) durations.push_back(static_cast<double>(now_ns() - sent_at));
    }
  }
  const std::uint64_t parent_end = now_ns();
  int status = 0;
  ::waitpid(pid, &status, 0);
  for (int fd : parent_fds)
    if (fd >= 0) ::close(fd);
  ::close(liveness[0]);
  if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || res->failed != 0) {
    std::fprintf(stderr, "bench_ipc: %s run failed\n", transport.c_str());
    return std::nullopt;
  }
  if (o.mode == Mode::oneway) durations.assign(res->window_ns, res->window_ns + res->windows);
  const std::uint64_t end = o.mode == Mode::oneway ? res->last_receive_ns : parent_end;
  return summarize(durations, o.count, end - start);
}

Options parse(int argc, char** argv) {
  Options o;
  std::string_view transport = "all";
  cli::Parser args("bench_ipc", "[options]");
  args.choice("--mode", "MODE", "pingpong: round trips (default); oneway: a stream from parent to child", o.mode,
              {{"pingpong", Mode::pingpong}, {"oneway", Mode::oneway}})
      .choice("--transport", "NAME", "all (default), channel, pipe, socketpair or eventfd", transport,
              {{"all", "all"},
               {"channel", "channel"},
               {"pipe", "pipe"},
               {"socketpair", "socketpair"},
               {"eventfd", "eventfd"}})
      .integer("-n", "COUNT", "messages per transport (default 100000)", o.count, kWindow, 1'000'000'000)
      .integer("-s", "SIZE", "message size in bytes (default 1)", o.size, 1, kMaxSize)
      .backend(o.backend)
      .integer("--spin-us", "N", "channel receivers poll the ring this long before sleeping (default 0)", o.spin_us, 0,
               1'000'000)
      .flag("--pin", "pin the parent and the child to the first two CPUs allowed", o.pin)
      .flag("--json", "print one JSON object instead of the tables", o.json);
  args.parse(argc, argv);
  if (transport != "all") o.transports = {std::string(transport)};
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  ::sched_getaffinity(0, sizeof g_start_cpus, &g_start_cpus);
  ::signal(SIGPIPE, SIG_IGN);
  std::vector<std::pair<std::string, Stats>> all;
  for (const std::string& t : o.transports) {
    auto s = run_transport(o, t);
    if (!s) return 1;
    if (!o.json) print_results(t, o, *s);
    all.emplace_back(t, *s);
  }
  const Stats* sp = nullptr;
  for (auto& [t, s] : all)
    if (t == "socketpair") sp = &s;
  if (o.json) {
    std::printf("{\"mode\":\"%s\",\"size\":%zu,\"count\":%llu,\"spin_us\":%llu,\"results\":[",
                o.mode == Mode::pingpong ? "pingpong" : "oneway", o.size, static_cast<unsigned long long>(o.count),
                static_cast<unsigned long long>(o.spin_us));
    for (std::size_t i = 0; i < all.size(); ++i) {
      const Stats& s = all[i].second;
      std::printf(
          "%s{\"transport\":\"%s\",\"rate\":%.1f,\"avg_us\":%.3f,\"min_us\":%.3f,\"max_us\":%.3f,"
          "\"stddev_us\":%.3f}",
          i ? "," : "", bench::json_escape(all[i].first).c_str(), s.rate, s.avg_us, s.min_us, s.max_us, s.stddev_us);
    }
    std::printf("]}\n");
    return 0;
  }
  std::printf("%-11s %14s %12s %16s\n", "transport", "msg/s", "avg us", "rate vs socketpair");
  for (auto& [t, s] : all) {
    if (sp != nullptr)
      std::printf("%-11s %14.0f %12.3f %15.2fx\n", t.c_str(), s.rate, s.avg_us, s.rate / sp->rate);
    else
      std::printf("%-11s %14.0f %12.3f %16s\n", t.c_str(), s.rate, s.avg_us, "-");
  }
  return 0;
}
