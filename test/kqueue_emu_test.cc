// Tests of the Linux kqueue emulation (test/support/kqueue_emu) on its own, against the
// FreeBSD/macOS kevent(2) semantics the kqueue backend relies on.

#include <sys/event.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>
#include <utility>

#include <gtest/gtest.h>

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    reset();
    fd = std::exchange(o.fd, -1);
    return *this;
  }
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) close(fd);
    fd = -1;
  }
  int release() { return std::exchange(fd, -1); }
  operator int() const { return fd; }
};

struct kevent make(std::uintptr_t ident, int16_t filter, uint16_t flags, uint32_t fflags = 0, intptr_t data = 0,
                   void* udata = nullptr) {
  struct kevent k;
  EV_SET(&k, ident, filter, flags, fflags, data, udata);
  return k;
}

// Apply changes only (no event collection).
int change(int kq, struct kevent k) { return kevent(kq, &k, 1, nullptr, 0, nullptr); }

timespec ts_ms(long ms) { return timespec{ms / 1000, (ms % 1000) * 1000000L}; }

// Collect up to n events waiting at most `ms` milliseconds (0: poll).
int wait_events(int kq, struct kevent* out, int n, long ms) {
  timespec ts = ts_ms(ms);
  return kevent(kq, nullptr, 0, out, n, &ts);
}

std::pair<Fd, Fd> unix_pair() {
  int sv[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  return {Fd(sv[0]), Fd(sv[1])};
}

sockaddr_in loopback_any() {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

Fd tcp_listener(sockaddr_in& addr) {
  Fd l(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  addr = loopback_any();
  EXPECT_EQ(bind(l, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  EXPECT_EQ(getsockname(l, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  EXPECT_EQ(listen(l, 16), 0);
  return l;
}

// A connected loopback TCP pair {client, server}, both non-blocking.
std::pair<Fd, Fd> tcp_pair() {
  sockaddr_in addr;
  Fd l = tcp_listener(addr);
  Fd c(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  Fd s(accept4(l, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  EXPECT_GE(s.fd, 0);
  fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
  return {std::move(c), std::move(s)};
}

void write_all(int fd, const char* s) { ASSERT_EQ(write(fd, s, strlen(s)), static_cast<ssize_t>(strlen(s))); }

int so_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  return err;
}

int open_fd_count() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n - 1;  // the DIR's own descriptor
}

class KqueueEmu : public ::testing::Test {
 protected:
  void SetUp() override {
    kq_ = Fd(kqueue());
    ASSERT_GE(kq_.fd, 0);
  }
  Fd kq_;
};

TEST_F(KqueueEmu, ClearReportsOnceUntilNewData) {
  auto [a, b] = unix_pair();
  int tag = 0;
  ASSERT_EQ(change(kq_, make(a, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, &tag)), 0);
  struct kevent ev[4];
  EXPECT_EQ(wait_events(kq_, ev, 4, 0), 0);

  write_all(b, "abc");
  ASSERT_EQ(wait_events(kq_, ev, 4, 500), 1);
  EXPECT_EQ(ev[0].ident, static_cast<uintptr_t>(a.fd));
  EXPECT_EQ(ev[0].filter, EVFILT_READ);
  EXPECT_EQ(ev[0].data, 3);
  EXPECT_EQ(ev[0].udata, &tag);
  EXPECT_EQ(ev[0].flags & EV_EOF, 0);
  // Still readable, but no new data: not reported again.
  EXPECT_EQ(wait_events(kq_, ev, 4, 0), 0);
  EXPECT_EQ(wait_events(kq_, ev, 4, 20), 0);

  write_all(b, "de");
  ASSERT_EQ(wait_events(kq_, ev, 4, 500), 1);
  EXPECT_EQ(ev[0].data, 5);  // unread bytes accumulate
  EXPECT_EQ(wait_events(kq_, ev, 4, 0), 0);
}

TEST_F(KqueueEmu, LevelReportsWhileReadable) {
  auto [a, b] = unix_pair();
  ASSERT_EQ(change(kq_, make(a, EVFILT_READ, EV_ADD)), 0);
  struct kevent ev[4];
  EXPECT_EQ(wait_events(kq_, ev, 4, 0), 0);
  write_all(b, "wxyz");
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(wait_events(kq_, ev, 4, 500), 1) << i;
    EXPECT_EQ(ev[0].data, 4);
  }
  char buf[8];
  ASSERT_EQ(read(a, buf, sizeof buf), 4);
  EXPECT_EQ(wait_events(kq_, ev, 4, 0), 0);
  write_all(b, "q");
  ASSERT_EQ(wait_events(kq_, ev, 4, 500), 1);
  EXPECT_EQ(ev[0].data, 1);
}

TEST_F(KqueueEmu, ReadDataIsBytesAvailableOnTcp) {
  auto [c, s] = tcp_pair();
  ASSERT_EQ(change(kq_, make(s, EVFILT_READ, EV_ADD | EV_CLEAR)), 0);
  char buf[1000];
  memset(buf, 'x', sizeof buf);
  ASSERT_EQ(write(c, buf, sizeof buf), 1000);
  struct kevent ev[2];
  ASSERT_EQ(wait_events(kq_, ev, 2, 500), 1);
  EXPECT_EQ(ev[0].data, 1000);
}

TEST_F(KqueueEmu, EofOnPeerShutdownKeepsData) {
  auto [c, s] = tcp_pair();
  ASSERT_EQ(change(kq_, make(s, EVFILT_READ, EV_ADD | EV_CLEAR)), 0);
  write_all(c, "xy");
  ASSERT_EQ(shutdown(c, SHUT_WR), 0);
  struct kevent ev[2];
  auto deadline = Clock::now() + 500ms;
  // The data and the FIN may come as two edges; wait for the one with EV_EOF.
  do {
    ASSERT_EQ(wait_events(kq_, ev, 2, 500), 1);
  } while (!(ev[0].flags & EV_EOF) && Clock::now() < deadline);
  EXPECT_TRUE(ev[0].flags & EV_EOF);
  EXPECT_EQ(ev[0].data, 2);
  EXPECT_EQ(ev[0].fflags, 0u);
}

TEST_F(KqueueEmu, EofOnPeerClose) {
  auto [c, s] = tcp_pair();
  ASSERT_EQ(change(kq_, make(s, EVFILT_READ, EV_ADD | EV_CLEAR)), 0);
  c.reset();
  struct kevent ev[2];
  ASSERT_EQ(wait_events(kq_, ev, 2, 500), 1);
  EXPECT_TRUE(ev[0].flags & EV_EOF);
  EXPECT_EQ(ev[0].data, 0);
  EXPECT_EQ(ev[0].fflags, 0u);
}

TEST_F(KqueueEmu, ResetReportsEconnresetWithoutConsumingSoError) {
  auto [c, s] = tcp_pair();
  ASSERT_EQ(change(kq_, make(s, EVFILT_READ, EV_ADD | EV_CLEAR)), 0);
  linger lg{1, 0};
  ASSERT_EQ(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
  c.reset();  // RST
  struct kevent ev[2];
  ASSERT_EQ(wait_events(kq_, ev, 2, 500), 1);
  EXPECT_TRUE(ev[0].flags & EV_EOF);
  EXPECT_EQ(ev[0].fflags, static_cast<uint32_t>(ECONNRESET));
  // As on BSD, reporting the error leaves it for the application to read.
  EXPECT_EQ(so_error(s), ECONNRESET);
}

TEST_F(KqueueEmu, ConnectRefusedShowsEofOnWrite) {
  sockaddr_in addr = loopback_any();
  Fd closed_port(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));  // bound, not listening
  ASSERT_EQ(bind(closed_port, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(closed_port, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  Fd c(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int r = connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (r != 0 && errno == ECONNREFUSED) GTEST_SKIP() << "refused synchronously";
  ASSERT_EQ(r, -1);
  ASSERT_EQ(errno, EINPROGRESS);
  ASSERT_EQ(change(kq_, make(c, EVFILT_WRITE, EV_ADD | EV_CLEAR)), 0);
  struct kevent ev[2];
  ASSERT_EQ(wait_events(kq_, ev, 2, 1000), 1);
  EXPECT_EQ(ev[0].filter, EVFILT_WRITE);
  EXPECT_TRUE(ev[0].flags & EV_EOF);
  EXPECT_EQ(ev[0].fflags, static_cast<uint32_t>(ECONNREFUSED));
  EXPECT_EQ(so_error(c), ECONNREFUSED);  // still there for getsockopt
}

TEST_F(KqueueEmu, WriteReadyOnFreshSocket) {
  auto [c, s] = tcp_pair();
  ASSERT_EQ(change(kq_, make(c, EVFILT_WRITE, EV_ADD | EV_CLEAR)), 0);
  struct kevent ev[2];
  ASSERT_EQ(wait_events(kq_, ev, 2, 500), 1);
  EXPECT_EQ(ev[0].filter, EVFILT_WRITE);
  EXPECT_GT(ev[0].data, 0);
  EXPECT_EQ(ev[0].flags & EV_EOF, 0);
  EXPECT_EQ(wait_events(kq_, ev, 2, 0), 0);  // EV_CLEAR: once
}

TEST_F(KqueueEmu, ReadableAndWritableAreTwoEvents) {
  auto [c, s] = tcp_pair();
  write_all(c, "hi");
  int rtag = 0, wtag = 0;
  struct kevent ch[2] = {make(s, EVFILT_READ, EV_ADD, 0, 0, &rtag), make(s, EVFILT_WRITE, EV_ADD, 0, 0, &wtag)};
  ASSERT_EQ(kevent(kq_, ch, 2, nullptr, 0, nullptr), 0);
  struct kevent ev[4];
  ASSERT_EQ(wait_events(kq_, ev, 4, 500), 2);
  std::set<int16_t> filters{ev[0].filter, ev[1].filter};
  EXPECT_EQ(filters, (std::set<int16_t>{EVFILT_READ, EVFILT_WRITE}));
  for (int i = 0; i < 2; ++i) {
    bool read = ev[i].filter == EVFILT_READ;
    EXPECT_EQ(ev[i].udata, read ? static_cast<void*>(&rtag) : &wtag);
    EXPECT_EQ(ev[i].data > 0, true);
    if (read) {
      EXPECT_EQ(ev[i].data, 2);
    }
  }
}

TEST_F(KqueueEmu, DeleteStopsEvents) {
  auto [a, b] = unix_pair();
  ASSERT_EQ(change(kq_, make(a, EVFILT_READ, EV_ADD)), 0);
  ASSERT_EQ(change(kq_, make(a, EVFILT_READ, EV_DELETE)), 0);
  write_all(b, "x");
  struct kevent ev[2];
  EXPECT_EQ(wait_events(kq_, ev, 2, 20), 0);
}

TEST_F(KqueueEmu, DeleteUnknownIsEnoent) {
  auto [a, b] = unix_pair();
  int tag = 0;
  struct kevent ch = make(a, EVFILT_READ, EV_DELETE, 0, 0, &tag);
  struct kevent ev[2];
  // With room: an EV_ERROR entry, and the call returns it without collecting events.
  ASSERT_EQ(kevent(kq_, &ch, 1, ev, 2, nullptr), 1);
  EXPECT_TRUE(ev[0].flags & EV_ERROR);
  EXPECT_EQ(ev[0].data, ENOENT);
  EXPECT_EQ(ev[0].ident, static_cast<uintptr_t>(a.fd));
  EXPECT_EQ(ev[0].udata, &tag);
  // Without room: the call fails.
  errno = 0;
  EXPECT_EQ(kevent(kq_, &ch, 1, nullptr, 0, nullptr), -1);
  EXPECT_EQ(errno, ENOENT);
  // Same for an unknown user event.
  errno = 0;
  EXPECT_EQ(change(kq_, make(7, EVFILT_USER, 0, NOTE_TRIGGER)), -1);
  EXPECT_EQ(errno, ENOENT);
  // EV_RECEIPT reports success as EV_ERROR with data 0, even when events are ready.
  write_all(b, "x");
  ASSERT_EQ(change(kq_, make(a, EVFILT_READ, EV_ADD)), 0);
  ch = make(a, EVFILT_WRITE, EV_ADD | EV_RECEIPT);
  ASSERT_EQ(kevent(kq_, &ch, 1, ev, 2, nullptr), 1);
  EXPECT_TRUE(ev[0].flags & EV_ERROR);
  EXPECT_EQ(ev[0].data, 0);
}

TEST_F(KqueueEmu, OneshotFiresOnceAndIsDeleted) {
  auto [a, b] = unix_pair();
  ASSERT_EQ(change(kq_, make(a, EVFILT_READ, EV_ADD | EV_ONESHOT)), 0);
  write_all(b, "x");
  struct kevent ev[2];
  ASSERT_EQ(wait_events(kq_, ev, 2, 500), 1);
  EXPECT_TRUE(ev[0].flags & EV_ONESHOT);
  write_all(b, "y");
  EXPECT_EQ(wait_events(kq_, ev, 2, 20), 0);
  errno = 0;
  EXPECT_EQ(change(kq_, make(a, EVFILT_READ, EV_DELETE)), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(KqueueEmu, DisableThenEnable) {
  auto [a, b] = unix_pair();
  ASSERT_EQ(change(kq_, make(a, EVFILT_READ, EV_ADD | EV_CLEAR)), 0);
  ASSERT_EQ(change(kq_, make(a, EVFILT_READ, EV_DISABLE)), 0);
  write_all(b, "x");
  struct kevent ev[2];
  EXPECT_EQ(wait_events(kq_, ev, 2, 20), 0);
  ASSERT_EQ(change(kq_, make(a, EVFILT_READ, EV_ENABLE)), 0);
  ASSERT_EQ(wait_events(kq_, ev, 2, 500), 1);
  EXPECT_EQ(ev[0].data, 1);
}

TEST_F(KqueueEmu, DispatchDisablesAfterDelivery) {
  auto [a, b] = unix_pair();
  ASSERT_EQ(change(kq_, make(a, EVFILT_READ, EV_ADD | EV_DISPATCH)), 0);
  write_all(b, "x");
  struct kevent ev[2];
  ASSERT_EQ(wait_events(kq_, ev, 2, 500), 1);
  EXPECT_EQ(wait_events(kq_, ev, 2, 0), 0);
  ASSERT_EQ(change(kq_, make(a, EVFILT_READ, EV_ENABLE)), 0);
  EXPECT_EQ(wait_events(kq_, ev, 2, 0), 1);
}

TEST_F(KqueueEmu, UserTriggerFromAnotherThreadWakesBlockedKevent) {
  int tag = 0;
  ASSERT_EQ(change(kq_, make(42, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, &tag)), 0);
  struct kevent ev[2];
  EXPECT_EQ(wait_events(kq_, ev, 2, 0), 0);
  auto start = Clock::now();
  std::thread t([kq = kq_.fd, &tag] {
    std::this_thread::sleep_for(30ms);
    struct kevent k = make(42, EVFILT_USER, 0, NOTE_TRIGGER | NOTE_FFOR | 0x5, 0, &tag);
    EXPECT_EQ(kevent(kq, &k, 1, nullptr, 0, nullptr), 0);
  });
  int n = kevent(kq_, nullptr, 0, ev, 2, nullptr);  // blocks: no timeout
  auto waited = Clock::now() - start;
  t.join();
  ASSERT_EQ(n, 1);
  EXPECT_GE(waited, 20ms);
  EXPECT_EQ(ev[0].ident, 42u);
  EXPECT_EQ(ev[0].filter, EVFILT_USER);
  EXPECT_EQ(ev[0].fflags & NOTE_FFLAGSMASK, 0x5u);
  EXPECT_EQ(ev[0].udata, &tag);
  EXPECT_EQ(wait_events(kq_, ev, 2, 0), 0);  // EV_CLEAR reset the trigger
}

TEST_F(KqueueEmu, UserTriggerWithoutClearStaysTriggered) {
  ASSERT_EQ(change(kq_, make(1, EVFILT_USER, EV_ADD)), 0);
  ASSERT_EQ(change(kq_, make(1, EVFILT_USER, 0, NOTE_TRIGGER)), 0);
  struct kevent ev[2];
  EXPECT_EQ(wait_events(kq_, ev, 2, 0), 1);
  EXPECT_EQ(wait_events(kq_, ev, 2, 0), 1);
  ASSERT_EQ(change(kq_, make(1, EVFILT_USER, EV_DELETE)), 0);
  EXPECT_EQ(wait_events(kq_, ev, 2, 0), 0);
}

// Many wakeups racing with the waiter; none may be lost (the last one ends the loop).
TEST_F(KqueueEmu, ManyCrossThreadTriggersAreNotLost) {
  ASSERT_EQ(change(kq_, make(1, EVFILT_USER, EV_ADD | EV_CLEAR)), 0);
  ASSERT_EQ(change(kq_, make(2, EVFILT_USER, EV_ADD | EV_CLEAR)), 0);
  std::thread t([kq = kq_.fd] {
    for (int i = 0; i < 500; ++i) {
      EXPECT_EQ(change(kq, make(1, EVFILT_USER, 0, NOTE_TRIGGER)), 0);
      if (i % 50 == 0) std::this_thread::yield();
    }
    EXPECT_EQ(change(kq, make(2, EVFILT_USER, 0, NOTE_TRIGGER)), 0);
  });
  bool done = false;
  int wakeups = 0;
  while (!done) {
    struct kevent ev[4];
    int n = kevent(kq_, nullptr, 0, ev, 4, nullptr);
    ASSERT_GT(n, 0);
    ++wakeups;
    for (int i = 0; i < n; ++i) done |= ev[i].ident == 2;
  }
  t.join();
  EXPECT_GE(wakeups, 1);
}

TEST_F(KqueueEmu, TimerOneshot) {
  int tag = 0;
  auto start = Clock::now();
  ASSERT_EQ(change(kq_, make(9, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 20, &tag)), 0);
  struct kevent ev[2];
  ASSERT_EQ(wait_events(kq_, ev, 2, 1000), 1);
  auto elapsed = Clock::now() - start;
  EXPECT_GE(elapsed, 19ms);
  EXPECT_LT(elapsed, 500ms);
  EXPECT_EQ(ev[0].ident, 9u);
  EXPECT_EQ(ev[0].filter, EVFILT_TIMER);
  EXPECT_EQ(ev[0].data, 1);
  EXPECT_EQ(ev[0].udata, &tag);
  EXPECT_EQ(wait_events(kq_, ev, 2, 40), 0);
  errno = 0;
  EXPECT_EQ(change(kq_, make(9, EVFILT_TIMER, EV_DELETE)), -1);  // gone after firing
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(KqueueEmu, TimerPeriodic) {
  auto start = Clock::now();
  ASSERT_EQ(change(kq_, make(3, EVFILT_TIMER, EV_ADD, 0, 10)), 0);
  struct kevent ev[2];
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(wait_events(kq_, ev, 2, 1000), 1) << i;
    EXPECT_EQ(ev[0].ident, 3u);
    EXPECT_GE(ev[0].data, 1);
  }
  EXPECT_GE(Clock::now() - start, 29ms);
  // Missed expirations are counted in data.
  std::this_thread::sleep_for(35ms);
  ASSERT_EQ(wait_events(kq_, ev, 2, 0), 1);
  EXPECT_GE(ev[0].data, 3);
  ASSERT_EQ(change(kq_, make(3, EVFILT_TIMER, EV_DELETE)), 0);
  EXPECT_EQ(wait_events(kq_, ev, 2, 25), 0);
}

TEST_F(KqueueEmu, TimerUnits) {
  auto start = Clock::now();
  ASSERT_EQ(change(kq_, make(1, EVFILT_TIMER, EV_ADD | EV_ONESHOT, NOTE_USECONDS, 5000)), 0);
  ASSERT_EQ(change(kq_, make(2, EVFILT_TIMER, EV_ADD | EV_ONESHOT, NOTE_NSECONDS, 8000000)), 0);
  struct kevent ev[2];
  int got = 0;
  while (got < 2) {
    int n = wait_events(kq_, ev, 2, 1000);
    ASSERT_GT(n, 0);
    got += n;
  }
  EXPECT_GE(Clock::now() - start, 7ms);
  EXPECT_LT(Clock::now() - start, 500ms);
  errno = 0;
  EXPECT_EQ(change(kq_, make(4, EVFILT_TIMER, EV_ADD, 0, -1)), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST_F(KqueueEmu, ZeroTimeoutReturnsImmediately) {
  struct kevent ev[2];
  auto start = Clock::now();
  EXPECT_EQ(wait_events(kq_, ev, 2, 0), 0);
  EXPECT_LT(Clock::now() - start, 20ms);
  start = Clock::now();
  EXPECT_EQ(wait_events(kq_, ev, 2, 30), 0);  // a real timeout expires
  EXPECT_GE(Clock::now() - start, 29ms);
}

TEST_F(KqueueEmu, SmallEventListKeepsTheRestForNextCall) {
  std::pair<Fd, Fd> pairs[3] = {unix_pair(), unix_pair(), unix_pair()};
  for (auto& p : pairs) ASSERT_EQ(change(kq_, make(p.first, EVFILT_READ, EV_ADD | EV_CLEAR)), 0);
  struct kevent ev[1];
  EXPECT_EQ(wait_events(kq_, ev, 1, 0), 0);
  for (auto& p : pairs) write_all(p.second, "z");
  std::set<uintptr_t> seen;
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(wait_events(kq_, ev, 1, 500), 1) << i;
    seen.insert(ev[0].ident);
  }
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ(wait_events(kq_, ev, 1, 0), 0);
}

TEST_F(KqueueEmu, UdataRoundTrips) {
  auto [a, b] = unix_pair();
  int x = 0, y = 0;
  void* big = reinterpret_cast<void*>(~static_cast<uintptr_t>(0) - 15);
  struct kevent ch[3] = {make(a, EVFILT_READ, EV_ADD, 0, 0, &x), make(5, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, &y),
                         make(6, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, big)};
  ASSERT_EQ(kevent(kq_, ch, 3, nullptr, 0, nullptr), 0);
  write_all(b, "x");
  struct kevent ev[4];
  ASSERT_EQ(wait_events(kq_, ev, 4, 500), 3);
  for (int i = 0; i < 3; ++i) {
    void* want = ev[i].filter == EVFILT_READ ? static_cast<void*>(&x) : ev[i].ident == 5 ? static_cast<void*>(&y) : big;
    EXPECT_EQ(ev[i].udata, want);
  }
}

TEST_F(KqueueEmu, ClosedFdIsForgottenEvenIfTheNumberIsReused) {
  auto [a, b] = unix_pair();
  int stale = 0;
  ASSERT_EQ(change(kq_, make(a, EVFILT_READ, EV_ADD, 0, 0, &stale)), 0);
  write_all(b, "x");
  int old = a.fd;
  a.reset();  // no EV_DELETE: BSD drops the knote on close
  auto [c, d] = unix_pair();
  if (c.fd != old && d.fd != old) GTEST_SKIP() << "descriptor number not reused";
  write_all(c.fd == old ? d : c, "y");
  struct kevent ev[2];
  EXPECT_EQ(wait_events(kq_, ev, 2, 20), 0);
  // A new registration on the reused number works.
  int fresh = 0;
  ASSERT_EQ(change(kq_, make(old, EVFILT_READ, EV_ADD, 0, 0, &fresh)), 0);
  ASSERT_EQ(wait_events(kq_, ev, 2, 500), 1);
  EXPECT_EQ(ev[0].udata, &fresh);
}

TEST_F(KqueueEmu, ListeningSocketReportsPendingConnections) {
  sockaddr_in addr;
  Fd l = tcp_listener(addr);
  ASSERT_EQ(change(kq_, make(l, EVFILT_READ, EV_ADD)), 0);
  struct kevent ev[2];
  EXPECT_EQ(wait_events(kq_, ev, 2, 0), 0);
  Fd c1(socket(AF_INET, SOCK_STREAM, 0)), c2(socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_EQ(connect(c1, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(connect(c2, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(wait_events(kq_, ev, 2, 500), 1);
  EXPECT_GE(ev[0].data, 1);
  EXPECT_EQ(ev[0].flags & EV_EOF, 0);
}

TEST_F(KqueueEmu, PipeEofBothWays) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  Fd r(p[0]), w(p[1]);
  ASSERT_EQ(change(kq_, make(r, EVFILT_READ, EV_ADD | EV_CLEAR)), 0);
  write_all(w, "abc");
  struct kevent ev[2];
  ASSERT_EQ(wait_events(kq_, ev, 2, 500), 1);
  EXPECT_EQ(ev[0].data, 3);
  w.reset();
  ASSERT_EQ(wait_events(kq_, ev, 2, 500), 1);
  EXPECT_TRUE(ev[0].flags & EV_EOF);

  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  Fd r2(p[0]), w2(p[1]);
  ASSERT_EQ(change(kq_, make(w2, EVFILT_WRITE, EV_ADD | EV_CLEAR)), 0);
  ASSERT_EQ(wait_events(kq_, ev, 2, 500), 1);
  EXPECT_GT(ev[0].data, 0);
  EXPECT_EQ(ev[0].flags & EV_EOF, 0);
  r2.reset();
  ASSERT_EQ(wait_events(kq_, ev, 2, 500), 1);
  EXPECT_TRUE(ev[0].flags & EV_EOF);
}

TEST_F(KqueueEmu, RegularFileIsAlwaysReady) {
  FILE* f = tmpfile();
  ASSERT_NE(f, nullptr);
  int fd = fileno(f);
  ASSERT_EQ(write(fd, "0123456789", 10), 10);
  ASSERT_EQ(lseek(fd, 4, SEEK_SET), 4);
  struct kevent ch[2] = {make(fd, EVFILT_READ, EV_ADD), make(fd, EVFILT_WRITE, EV_ADD)};
  ASSERT_EQ(kevent(kq_, ch, 2, nullptr, 0, nullptr), 0);
  struct kevent ev[4];
  ASSERT_EQ(wait_events(kq_, ev, 4, 0), 2);
  for (int i = 0; i < 2; ++i) {
    if (ev[i].filter == EVFILT_READ) {
      EXPECT_EQ(ev[i].data, 6);  // bytes between the offset and the end
    }
  }
  ASSERT_EQ(lseek(fd, 0, SEEK_END), 10);
  ASSERT_EQ(wait_events(kq_, ev, 4, 0), 1);  // at the end only WRITE is ready
  EXPECT_EQ(ev[0].filter, EVFILT_WRITE);
  fclose(f);
}

TEST_F(KqueueEmu, BadArguments) {
  struct kevent ev[2];
  errno = 0;
  EXPECT_EQ(kevent(-1, nullptr, 0, ev, 2, nullptr), -1);
  EXPECT_EQ(errno, EBADF);
  auto [a, b] = unix_pair();
  errno = 0;
  EXPECT_EQ(wait_events(a, ev, 2, 0), -1);  // not a kqueue
  EXPECT_EQ(errno, EBADF);
  // Unknown filter: EINVAL, as an EV_ERROR entry or as the call's error.
  struct kevent bad = make(a, -99, EV_ADD);
  ASSERT_EQ(kevent(kq_, &bad, 1, ev, 2, nullptr), 1);
  EXPECT_TRUE(ev[0].flags & EV_ERROR);
  EXPECT_EQ(ev[0].data, EINVAL);
  errno = 0;
  EXPECT_EQ(kevent(kq_, &bad, 1, nullptr, 0, nullptr), -1);
  EXPECT_EQ(errno, EINVAL);
  // A closed descriptor: EBADF.
  int dead = b.release();
  close(dead);
  errno = 0;
  EXPECT_EQ(change(kq_, make(dead, EVFILT_READ, EV_ADD)), -1);
  EXPECT_EQ(errno, EBADF);
}

TEST(KqueueEmuLifetime, CloseReleasesEverythingAndANewKqueueWorks) {
  close(kqueue());  // the emulation's one process-wide descriptor exists from here on
  int fds_before = open_fd_count();
  size_t kqs_before = kqueue_emu_instances();
  for (int round = 0; round < 3; ++round) {
    int kq = kqueue();
    ASSERT_GE(kq, 0);
    auto [a, b] = unix_pair();
    struct kevent ch[3] = {make(a, EVFILT_READ, EV_ADD), make(1, EVFILT_USER, EV_ADD),
                           make(2, EVFILT_TIMER, EV_ADD, 0, 1000)};
    ASSERT_EQ(kevent(kq, ch, 3, nullptr, 0, nullptr), 0);
    ASSERT_EQ(close(kq), 0);  // plain close(2), no emulation call
    struct kevent ev[2];
    errno = 0;
    EXPECT_EQ(kevent(kq, nullptr, 0, ev, 2, nullptr), -1);
    EXPECT_EQ(errno, EBADF);
  }
  EXPECT_EQ(open_fd_count(), fds_before);
  EXPECT_EQ(kqueue_emu_instances(), kqs_before);

  Fd kq(kqueue());
  ASSERT_GE(kq.fd, 0);
  ASSERT_EQ(change(kq, make(1, EVFILT_USER, EV_ADD, NOTE_TRIGGER)), 0);
  struct kevent ev[2];
  ASSERT_EQ(wait_events(kq, ev, 2, 0), 1);
  EXPECT_EQ(ev[0].ident, 1u);
}

}  // namespace
