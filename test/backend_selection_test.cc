// Backend selection at run time: the probe, the fallback to epoll when io_uring is refused
// (seccomp EPERM / ENOSYS, for real, in a forked child), forcing a backend, and errors.
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>

#include "support/harness.h"

namespace galay::test {
namespace {

// Make io_uring_setup fail with `err` in this process (and its children) from now on.
bool block_io_uring_setup(int err) {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<unsigned>(err) & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  return ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

// Run `child` in a forked process; returns its exit code (or 100+signal).
template <class Fn>
int in_child(Fn child) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int code = child();
    std::_Exit(code);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 100 + WTERMSIG(status);
}

// The child's checks: automatic selection falls back to epoll, says why, and an explicit
// io_uring request is a clean error. Exit codes name the first check that failed.
int fallback_checks(const char* expected_reason_fragment) {
  if (backend_unavailable_reason(BackendKind::io_uring).empty()) return 10;
  auto s = Scheduler::create();
  if (!s) return 11;
  if ((*s)->backend_kind() != BackendKind::epoll) return 12;
  if ((*s)->backend_reason().find(expected_reason_fragment) == std::string::npos) return 13;
  // The fallback scheduler really works.
  int v = (*s)->block_on([]() -> Task<int> {
    co_await sleep_for(std::chrono::milliseconds(1));
    co_return 5;
  }());
  if (v != 5) return 14;
  auto forced = Scheduler::create({BackendKind::io_uring});
  if (forced) return 15;
  if (forced.error() != Error::backend_unavailable) return 16;
  return 0;
}

TEST(BackendSelection, SeccompEpermFallsBackToEpoll) {
  if (!backend_unavailable_reason(BackendKind::io_uring).empty())
    GTEST_SKIP() << "io_uring already unavailable here: " << backend_unavailable_reason(BackendKind::io_uring);
  int code = in_child([] {
    if (!block_io_uring_setup(EPERM)) return 2;
    return fallback_checks("Operation not permitted");
  });
  EXPECT_EQ(code, 0) << "see fallback_checks() for the meaning of the exit code";
}

TEST(BackendSelection, EnosysFallsBackToEpoll) {
  if (!backend_unavailable_reason(BackendKind::io_uring).empty())
    GTEST_SKIP() << "io_uring already unavailable here: " << backend_unavailable_reason(BackendKind::io_uring);
  int code = in_child([] {
    if (!block_io_uring_setup(ENOSYS)) return 2;
    return fallback_checks("io_uring unavailable");
  });
  EXPECT_EQ(code, 0) << "see fallback_checks() for the meaning of the exit code";
}

TEST(BackendSelection, InjectedProbeFailureFallsBack) {
  int code = in_child([] {
    ::setenv("GALAY_KERNEL_IO_URING_PROBE_ERRNO", "1", 1);
    return fallback_checks("(injected)");
  });
  EXPECT_EQ(code, 0);
}

TEST(BackendSelection, AutomaticPrefersIoUringWhenItWorks) {
  if (!backend_unavailable_reason(BackendKind::io_uring).empty())
    GTEST_SKIP() << "io_uring unavailable here: " << backend_unavailable_reason(BackendKind::io_uring);
  ::unsetenv("GALAY_KERNEL_BACKEND");
  auto s = Scheduler::create();
  ASSERT_TRUE(s);
  EXPECT_EQ((*s)->backend_kind(), BackendKind::io_uring);
  EXPECT_NE((*s)->describe_backend().find("flags="), std::string::npos);
}

TEST(BackendSelection, ParsesNames) {
  EXPECT_EQ(parse_backend_kind("epoll"), BackendKind::epoll);
  EXPECT_EQ(parse_backend_kind("io_uring"), BackendKind::io_uring);
  EXPECT_EQ(parse_backend_kind("kqueue"), BackendKind::kqueue);
  EXPECT_EQ(parse_backend_kind("auto"), BackendKind::automatic);
  EXPECT_FALSE(parse_backend_kind("select"));
}

}  // namespace
}  // namespace galay::test
