// Chaos mode: see chaos.h. Only compiled with GALAY_KERNEL_CHAOS.
#include "galay-kernel/runtime/detail/chaos.h"

#if defined(GALAY_KERNEL_CHAOS)

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>

namespace galay::chaos {
namespace {

struct Config {
  bool on = false;
  std::uint64_t seed = 0;
};

const Config& config() {
  static const Config c = [] {
    Config r;
    const char* s = std::getenv("GALAY_CHAOS_SEED");
    if (s == nullptr || *s == '\0') return r;
    r.on = true;
    r.seed = std::strtoull(s, nullptr, 10);
    std::fprintf(stderr, "galay chaos: on, GALAY_CHAOS_SEED=%llu\n", static_cast<unsigned long long>(r.seed));
    return r;
  }();
  return c;
}

// One generator per thread (each loop runs on one thread), seeded from the seed and the
// order in which threads first asked.
std::mt19937_64& rng() {
  static std::atomic<std::uint64_t> next_thread{0};
  thread_local std::mt19937_64 g(config().seed * 0x9e3779b97f4a7c15ull + next_thread.fetch_add(1));
  return g;
}

unsigned below(unsigned n) { return static_cast<unsigned>(rng()() % n); }

struct Deferred {
  Scheduler* sched;
  std::coroutine_handle<> h;
  unsigned turns;
};

struct Decoy {
  Scheduler* sched;
  int fd;    // the closed number, now this socket
  int peer;  // the other end: bytes here were sent to the closed number
  unsigned turns;
};

thread_local std::vector<Deferred> deferred;
thread_local std::vector<std::coroutine_handle<>> due;

// Decoys are process-wide (a close on one loop, a stale use on another), under a lock.
std::mutex decoy_mutex;
std::vector<Decoy>& decoys() {
  static std::vector<Decoy> d;
  return d;
}

void retire(const Decoy& d) noexcept {
  char buf[256];
  const ssize_t sent = ::recv(d.peer, buf, sizeof buf, MSG_DONTWAIT);
  const ssize_t canary = ::recv(d.fd, buf, sizeof buf, MSG_DONTWAIT);
  if (sent > 0 || canary != 1) {
    std::fprintf(stderr, "galay chaos: fd %d was used after it was closed (%s), GALAY_CHAOS_SEED=%llu\n", d.fd,
                 sent > 0 ? "something sent to it" : "something read from it",
                 static_cast<unsigned long long>(config().seed));
    std::abort();
  }
  ::close(d.fd);
  ::close(d.peer);
}

}  // namespace

bool enabled() noexcept { return config().on; }

std::size_t clamp(std::size_t len) noexcept {
  if (!config().on || len <= 1 || below(4) != 0) return len;
  return 1 + static_cast<std::size_t>(rng()() % len);
}

bool race_cancel() noexcept { return config().on && below(2) == 0; }

bool defer(Scheduler* sched, std::coroutine_handle<> h) {
  if (!config().on || below(3) == 0) return false;
  deferred.push_back({sched, h, below(3)});
  return true;
}

void turn(Scheduler* sched, std::vector<std::coroutine_handle<>>& ready) {
  if (!config().on) return;
  due.clear();
  for (std::size_t i = 0; i < deferred.size();) {
    Deferred& d = deferred[i];
    if (d.sched == sched && d.turns-- == 0) {
      due.push_back(d.h);
      d = deferred.back();
      deferred.pop_back();
    } else {
      ++i;
    }
  }
  std::shuffle(due.begin(), due.end(), rng());
  ready.insert(ready.end(), due.begin(), due.end());
  std::lock_guard lock(decoy_mutex);
  auto& all = decoys();
  for (std::size_t i = 0; i < all.size();) {
    if (all[i].sched == sched && all[i].turns-- == 0) {
      retire(all[i]);
      all[i] = all.back();
      all.pop_back();
    } else {
      ++i;
    }
  }
}

bool busy(Scheduler* sched) noexcept {
  if (!config().on) return false;
  for (const Deferred& d : deferred)
    if (d.sched == sched) return true;
  std::lock_guard lock(decoy_mutex);
  for (const Decoy& d : decoys())
    if (d.sched == sched) return true;
  return false;
}

void forget(Scheduler* sched) noexcept {
  if (!config().on) return;
  std::erase_if(deferred, [&](const Deferred& d) { return d.sched == sched; });
  std::lock_guard lock(decoy_mutex);
  auto& all = decoys();
  for (std::size_t i = 0; i < all.size();) {
    if (all[i].sched == sched) {
      retire(all[i]);
      all[i] = all.back();
      all.pop_back();
    } else {
      ++i;
    }
  }
}

void retire_all() noexcept {
  if (!config().on) return;
  std::lock_guard lock(decoy_mutex);
  for (const Decoy& d : decoys()) retire(d);
  decoys().clear();
}

void after_close(Scheduler* sched, int fd) noexcept {
  if (!config().on || below(2) != 0) return;
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) return;
  // The lowest free number is usually the one just closed; never take a number by force
  // (dup2 could close a descriptor another thread just opened).
  int mine = pair[0] == fd ? 0 : pair[1] == fd ? 1 : -1;
  if (mine < 0) {
    ::close(pair[0]);
    ::close(pair[1]);
    return;
  }
  // A canary byte for a stale receive to steal.
  const char canary = 'c';
  (void)::send(pair[1 - mine], &canary, 1, MSG_NOSIGNAL);
  std::lock_guard lock(decoy_mutex);
  decoys().push_back({sched, pair[mine], pair[1 - mine], 1 + below(3)});
}

}  // namespace galay::chaos

#endif  // GALAY_KERNEL_CHAOS
