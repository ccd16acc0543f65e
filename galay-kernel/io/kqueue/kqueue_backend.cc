// Only POSIX and <sys/event.h> here: this file must compile unchanged on the BSDs.
#include "galay-kernel/io/kqueue/kqueue_backend.h"

#include <sys/event.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "galay-kernel/io/detail/readiness_backend.h"

namespace galay {
namespace {

constexpr std::uintptr_t kWakeIdent = 0x6a6b;  // EVFILT_USER ident for cross-thread wakeups

/// kqueue as the notifier of a ReadinessBackend: EV_CLEAR registration of both filters
/// per fd, EVFILT_USER for wakeups; every file op runs on the blocking pool.
class KqueueBackend final : public ReadinessBackend {
 public:
  explicit KqueueBackend(Scheduler& sched) : ReadinessBackend(sched) {}
  ~KqueueBackend() override {
    drain_before_destruction();  // pool workers wake us through kq_: they must be done first
    if (kq_ >= 0) ::close(kq_);
  }

  std::error_code init() {
    kq_ = ::kqueue();
    if (kq_ < 0) return errno_code(errno);
    struct kevent ev;
    EV_SET(&ev, kWakeIdent, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, nullptr);
    if (::kevent(kq_, &ev, 1, nullptr, 0, nullptr) < 0) return errno_code(errno);
    return {};
  }

  BackendKind kind() const noexcept override { return BackendKind::kqueue; }
  std::string describe() const override {
    return "kqueue EV_CLEAR, persistent registration, EVFILT_USER wakeup; files via a " +
           std::to_string(BlockingPool::shared().max_threads()) + "-thread pool";
  }

  void wake() noexcept override {
    struct kevent ev;
    EV_SET(&ev, kWakeIdent, EVFILT_USER, 0, NOTE_TRIGGER, 0, nullptr);
    ::kevent(kq_, &ev, 1, nullptr, 0, nullptr);
  }

  int register_fd(int fd) noexcept override {
    struct kevent changes[2];
    EV_SET(&changes[0], static_cast<std::uintptr_t>(fd), EVFILT_READ, EV_ADD | EV_CLEAR | EV_RECEIPT, 0, 0, nullptr);
    EV_SET(&changes[1], static_cast<std::uintptr_t>(fd), EVFILT_WRITE, EV_ADD | EV_CLEAR | EV_RECEIPT, 0, 0, nullptr);
    struct kevent results[2];
    int n = ::kevent(kq_, changes, 2, results, 2, nullptr);
    if (n < 0) return -errno;
    for (int i = 0; i < n; ++i)
      if ((results[i].flags & EV_ERROR) && results[i].data != 0) return -static_cast<int>(results[i].data);
    return 0;
  }

 private:
  static constexpr int kMaxEvents = 256;

  void wait_for_readiness(std::optional<std::chrono::nanoseconds> timeout) override {
    timespec ts{};
    timespec* tsp = wait_timespec(timeout, ts);
    int n = ::kevent(kq_, nullptr, 0, events_, kMaxEvents, tsp);
    for (int i = 0; i < n; ++i) {
      const struct kevent& ev = events_[i];
      if (ev.filter == EVFILT_USER) continue;  // a wakeup: returning from kevent() was the point
      const int fd = static_cast<int>(ev.ident);
      if (ev.flags & EV_ERROR) {
        engine().on_ready(fd, true, true, false);  // let the syscalls report the error
      } else if (ev.filter == EVFILT_READ) {
        engine().on_ready(fd, true, false, (ev.flags & EV_EOF) != 0);
      } else if (ev.filter == EVFILT_WRITE) {
        engine().on_ready(fd, false, true, false);
      }
    }
  }

  int kq_ = -1;
  struct kevent events_[kMaxEvents];
};

}  // namespace

BackendFactory kqueue_backend_factory() {
  return BackendFactory{[]() { return notifier_probe("kqueue", ::kqueue()); }, &make_backend<KqueueBackend>};
}

}  // namespace galay
