#pragma once
// Test harness: every behaviour test is a TEST_P over all backends. A backend that can't
// run here (not built, io_uring disabled by sysctl or seccomp) is reported as SKIPPED with
// the reason, never as passed.

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "galay-kernel/galay-kernel.h"
#include "galay-kernel/runtime/detail/chaos.h"

namespace galay::test {

/// The backend parameter of every behaviour test: a backend kind, and for io_uring also
/// the variant with a kernel submission-queue poller (SQPOLL). It converts to its kind, so
/// tests compare and pass GetParam() as a BackendKind.
struct BackendParam {
  BackendKind kind;
  bool sqpoll = false;
  operator BackendKind() const noexcept { return kind; }  // NOLINT(google-explicit-constructor)
  std::string name() const { return std::string(to_string(kind)) + (sqpoll ? "_sqpoll" : ""); }
  /// `opts` for this variant: its backend, and SQPOLL with a short idle (5 ms: the poller
  /// goes to sleep and is woken often, so that path is exercised and it spins little).
  Scheduler::Options apply(Scheduler::Options opts) const {
    opts.backend = kind;
    if (sqpoll) {
      opts.io_uring_sqpoll = true;
      opts.io_uring_sqpoll_idle_ms = 5;
    }
    return opts;
  }
  /// "" if this variant runs here, else why not (SQPOLL refused: the scheduler's note).
  std::string unavailable_reason(const Scheduler& s) const {
    if (!sqpoll || s.describe_backend().find("SQPOLL|") != std::string::npos) return {};
    return "SQPOLL not granted: " + s.describe_backend();
  }
};
inline void PrintTo(const BackendParam& p, std::ostream* os) { *os << p.name(); }

inline std::vector<BackendParam> all_backends() {
  return {{BackendKind::epoll}, {BackendKind::io_uring}, {BackendKind::io_uring, true}, {BackendKind::kqueue}};
}

inline std::string backend_name(const ::testing::TestParamInfo<BackendParam>& info) { return info.param.name(); }

class BackendTest : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override {
    if (std::string why = backend_unavailable_reason(GetParam()); !why.empty())
      GTEST_SKIP() << to_string(GetParam()) << " backend unavailable: " << why;
    Scheduler::Options opts = GetParam().apply(scheduler_options());
    auto s = Scheduler::create(opts);
    ASSERT_TRUE(s.has_value()) << "creating " << GetParam().name() << ": " << s.error().message();
    sched_ = std::move(*s);
    ASSERT_EQ(sched_->backend_kind(), GetParam().kind);
    if (std::string why = GetParam().unavailable_reason(*sched_); !why.empty()) GTEST_SKIP() << why;
  }
  void TearDown() override { sched_.reset(); }
  /// Fixtures override this to tune the scheduler (e.g. a tiny io_uring).
  virtual Scheduler::Options scheduler_options() { return {}; }

  /// Run `task` to completion on the scheduler; a hang fails the test after `limit`.
  template <class T>
  T run(Task<T> task, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
    auto watchdog = sched_->spawn([](Scheduler* s, std::chrono::milliseconds l) -> Task<void> {
      auto r = co_await sleep_for(l);
      if (r) {
        ADD_FAILURE() << "test task did not finish within " << l.count() << " ms";
        s->stop();
      }
    }(sched_.get(), limit));
    struct CancelWatchdog {
      JoinHandle<void>& h;
      ~CancelWatchdog() { h.cancel(); }
    } cancel_on_exit{watchdog};
    return sched_->block_on(std::move(task));
  }

  Scheduler& sched() { return *sched_; }
  std::unique_ptr<Scheduler> sched_;
};

// gtest's ASSERT_* returns from the function, which a coroutine can't do: these co_return.
#define CO_ASSERT_TRUE(cond)                        \
  do {                                              \
    const bool galay_ok_ = static_cast<bool>(cond); \
    EXPECT_TRUE(galay_ok_) << #cond;                \
    if (!galay_ok_) co_return;                      \
  } while (0)
#define CO_ASSERT_FALSE(cond) CO_ASSERT_TRUE(!(cond))

#define GALAY_INSTANTIATE_ALL_BACKENDS(Suite)                                                      \
  INSTANTIATE_TEST_SUITE_P(AllBackends, Suite, ::testing::ValuesIn(::galay::test::all_backends()), \
                           ::galay::test::backend_name)

/// A listener on 127.0.0.1 with a kernel-chosen port.
inline TcpSocket loopback_listener(int backlog = 4096) {
  auto l = TcpSocket::listen_on(SocketAddress::loopback(0), backlog);
  EXPECT_TRUE(l.has_value()) << (l ? "" : l.error().message());
  return std::move(*l);
}

inline std::uint16_t port_of(const TcpSocket& s) { return s.local_address()->port(); }

/// A connected loopback TCP pair: {client, accepted server side}.
inline Task<std::pair<TcpSocket, TcpSocket>> loopback_tcp_pair() {
  TcpSocket listener = loopback_listener();
  auto c = TcpSocket::open();
  EXPECT_TRUE(c);
  auto [accepted, connected] =
      co_await when_all([](TcpSocket* l) -> Task<TcpSocket> { co_return std::move(*co_await l->accept()); }(&listener),
                        [](TcpSocket* c, SocketAddress a) -> Task<bool> { co_return bool(co_await c->connect(a)); }(
                                                              &*c, *listener.local_address()));
  EXPECT_TRUE(connected);
  co_return std::pair<TcpSocket, TcpSocket>(std::move(*c), std::move(accepted));
}

/// Receive exactly `len` bytes into `buf`: a stream may deliver them in several pieces
/// (chaos mode makes that routine). Yields the bytes received, fewer only at EOF; or the
/// first error.
template <class Stream>
Task<Expected<std::size_t>> recv_exactly(Stream& s, void* buf, std::size_t len,
                                         Timeout timeout = std::chrono::seconds(5)) {
  std::size_t have = 0;
  while (have < len) {
    auto n = co_await s.recv(static_cast<char*>(buf) + have, len - have, timeout);
    if (!n) co_return n;
    if (*n == 0) break;
    have += *n;
  }
  co_return have;
}

/// Number of open fds of this process (for leak checks). Chaos mode's decoys (descriptors
/// parked on freshly closed numbers) are checked and closed first: they are not leaks.
inline int open_fd_count() {
  chaos::retire_all();
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n;
}

/// Counts live instances; tests assert frames holding one were destroyed.
struct LiveCounter {
  static inline int live = 0;
  LiveCounter() { ++live; }
  LiveCounter(const LiveCounter&) { ++live; }
  ~LiveCounter() { --live; }
};

/// A field of /proc/meminfo (its number), or -1.
inline long meminfo(const char* field) {
  std::ifstream in("/proc/meminfo");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::stol(line.substr(key.size()));
  return -1;
}

/// Empty when at least `pages` huge pages are free, else why the test can't run.
inline std::string no_free_huge_pages(long pages) {
  if (MappedMemory::huge_page_size() == 0) return "this system has no huge pages";
  const long free = meminfo("HugePages_Free");
  if (free >= pages) return {};
  return "needs " + std::to_string(pages) + " free huge pages, HugePages_Free is " + std::to_string(free) +
         " (reserve some: echo 16 > /proc/sys/vm/nr_hugepages; .ci/run does)";
}

/// A fresh directory for one test (mkdtemp), removed with its contents when destroyed.
class TempDir {
 public:
  TempDir() = default;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  /// Make `base`/`prefix`.XXXXXX; on failure "" and error() says why.
  const std::string& create(const std::string& prefix, const std::string& base = "/tmp") {
    std::string templ = base + "/" + prefix + ".XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr)
      error_ = "mkdtemp(" + templ + "): " + std::strerror(errno);
    else
      path_ = templ;
    return path_;
  }
  /// The directory, or "" before a successful create().
  const std::string& path() const { return path_; }
  /// Why create() failed.
  const std::string& error() const { return error_; }

 private:
  std::string path_;
  std::string error_;
};

}  // namespace galay::test
