// fuzz_scheduler: random op sequences against the scheduler (epoll backend), checked
// against a model.
//
// The input is a byte string read as ops (op byte, then argument bytes), at most kMaxOps:
//   0 spawn a short sleeper (0, 50 or 200 us)       1 spawn a long sleeper (60 s: it only
//   2 the driver sleeps (0 or 100 us)                 ever ends by cancellation)
//   3 cancel a spawned task (argument picks it)      4 when_any of two sleepers (short/long)
//   5 yield                                          6 open a socketpair, spawn a reader
//   7 close the reader's own end while its recv      8 close the peer end (EOF)
//     is pending (another task closes it)            9 write one byte on the peer end
// At the end every remaining task is cancelled and awaited, and every socket closed.
//
// Model / invariants (any violation aborts):
//  - every spawned sleeper and reader body finishes exactly once;
//  - a long sleeper finishes with operation_canceled (it is always cancelled in the end);
//  - a short sleeper finishes with success or, if it was cancelled, operation_canceled;
//  - when_any with one long branch is won by the other branch; the long branch is
//    cancelled; with two short branches the winner ran to success;
//  - a reader sees the first event on its pair: its own end closed while its recv was
//    pending -> operation_canceled (bad_file_descriptor if closed before its recv started);
//    a byte written -> 1 byte; the peer closed -> EOF; cancelled -> operation_canceled;
//  - after the scheduler is destroyed the process has the same open fds as before.
#include <dirent.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <system_error>
#include <vector>

#include "galay-kernel/galay-kernel.h"

namespace {

using namespace galay;
using namespace std::chrono_literals;

constexpr std::size_t kMaxOps = 48;

[[noreturn]] void fail(const char* what, long a = 0, long b = 0) {
  std::fprintf(stderr, "fuzz_scheduler: model violated: %s (%ld, %ld)\n", what, a, b);
  std::abort();
}

std::size_t count_open_fds() {
  std::size_t n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n;
}

enum class Outcome { none, ok, canceled, other };

struct Sleeper {
  bool long_sleep = false;
  bool cancel_requested = false;
  int finishes = 0;
  Outcome outcome = Outcome::none;
};

enum class PairEvent { none, own_closed_pending, own_closed_before_recv, peer_closed, byte_written, cancelled };

struct Pair {
  UnixStream own, peer;
  bool started = false;  // the reader reached its recv
  int finishes = 0;
  PairEvent first = PairEvent::none;
  std::error_code err;
  std::size_t got = 0;
  bool eof = false;
};

struct Model {
  std::vector<std::unique_ptr<Sleeper>> sleepers;
  std::vector<std::unique_ptr<Pair>> pairs;
  std::vector<JoinHandle<void>> handles;    // sleepers and readers, in spawn order
  std::vector<std::size_t> handle_sleeper;  // index into sleepers, or SIZE_MAX for readers
  std::vector<std::size_t> handle_pair;
};

Outcome outcome_of(const Expected<void>& r) {
  if (r) return Outcome::ok;
  return r.error() == std::errc::operation_canceled ? Outcome::canceled : Outcome::other;
}

std::chrono::microseconds short_duration(std::uint8_t b) {
  static constexpr int kUs[] = {0, 50, 200};
  return std::chrono::microseconds(kUs[b % 3]);
}

Task<void> sleeper_body(Sleeper& s, std::chrono::microseconds d) {
  auto r = co_await sleep_for(s.long_sleep ? std::chrono::microseconds(60s) : d);
  s.outcome = outcome_of(r);
  ++s.finishes;
}

Task<void> reader_body(Pair& p) {
  char b[4];
  p.started = true;
  auto r = co_await p.own.recv(b, sizeof b);
  if (!r)
    p.err = r.error();
  else if (*r == 0)
    p.eof = true;
  else
    p.got = *r;
  ++p.finishes;
}

// One event per pair: later ones could race with the reader's wake-up, which the model
// does not predict, so ops that would be a second event on a pair are skipped.
bool first_event(Pair& p, PairEvent e) {
  if (p.first != PairEvent::none) return false;
  p.first = e;
  return true;
}

Task<void> driver(const std::uint8_t* data, std::size_t size, Model& m) {
  Scheduler* sched = Scheduler::current();
  std::size_t pos = 0;
  auto next = [&]() -> std::uint8_t { return pos < size ? data[pos++] : 0; };
  for (std::size_t ops = 0; pos < size && ops < kMaxOps; ++ops) {
    const std::uint8_t op = next() % 10;
    switch (op) {
      case 0:
      case 1: {
        auto s = std::make_unique<Sleeper>();
        s->long_sleep = op == 1;
        Sleeper& ref = *s;
        m.sleepers.push_back(std::move(s));
        m.handles.push_back(sched->spawn(sleeper_body(ref, short_duration(next()))));
        m.handle_sleeper.push_back(m.sleepers.size() - 1);
        m.handle_pair.push_back(SIZE_MAX);
        break;
      }
      case 2: {
        auto r = co_await sleep_for(std::chrono::microseconds((next() & 1) ? 100 : 0));
        if (!r) fail("driver sleep failed", r.error().value());
        break;
      }
      case 3: {
        if (m.handles.empty()) break;
        const std::size_t i = next() % m.handles.size();
        if (m.handle_pair[i] != SIZE_MAX && !first_event(*m.pairs[m.handle_pair[i]], PairEvent::cancelled)) break;
        if (m.handle_sleeper[i] != SIZE_MAX) m.sleepers[m.handle_sleeper[i]]->cancel_requested = true;
        m.handles[i].cancel();
        break;
      }
      case 4: {
        const std::uint8_t a = next();
        const bool long0 = (a & 1) != 0, long1 = !long0 && (a & 2) != 0;
        Sleeper s0, s1;
        s0.long_sleep = long0;
        s1.long_sleep = long1;
        auto r = co_await when_any(sleeper_body(s0, short_duration(a >> 2)), sleeper_body(s1, short_duration(a >> 4)));
        if (s0.finishes != 1 || s1.finishes != 1)
          fail("when_any branch did not finish exactly once", s0.finishes, s1.finishes);
        const std::size_t w = r.index();
        if (long0 && w != 1) fail("when_any won by the long branch 0");
        if (long1 && w != 0) fail("when_any won by the long branch 1");
        if (long0 && s0.outcome != Outcome::canceled) fail("when_any loser 0 not cancelled", int(s0.outcome));
        if (long1 && s1.outcome != Outcome::canceled) fail("when_any loser 1 not cancelled", int(s1.outcome));
        const Sleeper& win = w == 0 ? s0 : s1;
        if (win.outcome != Outcome::ok) fail("when_any winner did not succeed", int(win.outcome));
        const Sleeper& lose = w == 0 ? s1 : s0;
        if (lose.outcome != Outcome::ok && lose.outcome != Outcome::canceled)
          fail("when_any loser odd outcome", int(lose.outcome));
        break;
      }
      case 5:
        co_await yield();
        break;
      case 6: {
        auto sp = UnixStream::pair();
        if (!sp) fail("socketpair failed", sp.error().value());
        auto p = std::make_unique<Pair>();
        p->own = std::move(sp->first);
        p->peer = std::move(sp->second);
        Pair& ref = *p;
        m.pairs.push_back(std::move(p));
        m.handles.push_back(sched->spawn(reader_body(ref)));
        m.handle_sleeper.push_back(SIZE_MAX);
        m.handle_pair.push_back(m.pairs.size() - 1);
        break;
      }
      case 7:
      case 8:
      case 9: {
        if (m.pairs.empty()) break;
        Pair& p = *m.pairs[next() % m.pairs.size()];
        if (op == 7) {
          if (!first_event(p, p.started ? PairEvent::own_closed_pending : PairEvent::own_closed_before_recv)) break;
          auto r = co_await p.own.close();
          if (!r) fail("close own end failed", r.error().value());
        } else if (op == 8) {
          if (!first_event(p, PairEvent::peer_closed)) break;
          auto r = co_await p.peer.close();
          if (!r) fail("close peer end failed", r.error().value());
        } else {
          if (!first_event(p, PairEvent::byte_written)) break;
          auto r = co_await p.peer.send("x", 1);
          if (!r || *r != 1) fail("write on peer failed");
        }
        break;
      }
      default:
        break;
    }
  }

  // Wind down: cancel everything still running (except readers whose event is already
  // on its way), await all, close every socket.
  for (std::size_t i = 0; i < m.handles.size(); ++i) {
    if (m.handles[i].done()) continue;
    if (m.handle_pair[i] != SIZE_MAX && !first_event(*m.pairs[m.handle_pair[i]], PairEvent::cancelled)) continue;
    if (m.handle_sleeper[i] != SIZE_MAX) m.sleepers[m.handle_sleeper[i]]->cancel_requested = true;
    m.handles[i].cancel();
  }
  for (auto& h : m.handles) co_await h;
  for (auto& p : m.pairs) {
    if (p->own.is_open()) (void)co_await p->own.close();
    if (p->peer.is_open()) (void)co_await p->peer.close();
  }
}

void check_model(const Model& m) {
  for (std::size_t i = 0; i < m.sleepers.size(); ++i) {
    const Sleeper& s = *m.sleepers[i];
    if (s.finishes != 1) fail("sleeper did not finish exactly once", long(i), s.finishes);
    if (s.long_sleep && s.outcome != Outcome::canceled) fail("long sleeper not cancelled", long(i), int(s.outcome));
    if (!s.long_sleep) {
      if (s.outcome == Outcome::canceled && !s.cancel_requested) fail("short sleeper cancelled by nobody", long(i));
      if (s.outcome != Outcome::ok && s.outcome != Outcome::canceled)
        fail("short sleeper odd outcome", long(i), int(s.outcome));
    }
  }
  for (std::size_t i = 0; i < m.pairs.size(); ++i) {
    const Pair& p = *m.pairs[i];
    if (p.finishes != 1) fail("reader did not finish exactly once", long(i), p.finishes);
    switch (p.first) {
      case PairEvent::own_closed_pending:
        if (p.err != std::errc::operation_canceled)
          fail("close of a pending recv's socket: not operation_canceled", long(i), p.err.value());
        break;
      case PairEvent::own_closed_before_recv:
        if (p.err != std::errc::bad_file_descriptor)
          fail("recv on a closed socket: not bad_file_descriptor", long(i), p.err.value());
        break;
      case PairEvent::peer_closed:
        if (!p.eof || p.err) fail("peer closed: reader did not see EOF", long(i), p.err.value());
        break;
      case PairEvent::byte_written:
        if (p.got != 1 || p.err) fail("byte written: reader did not get 1 byte", long(i), p.err.value());
        break;
      case PairEvent::cancelled:
        if (p.err != std::errc::operation_canceled)
          fail("cancelled reader: not operation_canceled", long(i), p.err.value());
        break;
      case PairEvent::none:
        fail("reader finished with no event", long(i));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::size_t fds_before = count_open_fds();
  {
    auto created = Scheduler::create(Scheduler::Options{BackendKind::epoll});
    if (!created) fail("cannot create an epoll scheduler");
    std::unique_ptr<Scheduler> sched = std::move(*created);
    Model m;
    sched->block_on(driver(data, size, m));
    check_model(m);
    m.handles.clear();
    m.pairs.clear();
    sched->shutdown();
  }
  const std::size_t fds_after = count_open_fds();
  if (fds_after != fds_before) fail("fd count changed", long(fds_before), long(fds_after));
  return 0;
}
