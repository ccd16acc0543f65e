#include "galay-kernel/io/epoll/epoll_backend.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <limits>
#include <cerrno>
#include <memory>
#include <vector>

#include "galay-kernel/io/aio/aio_engine.h"
#include "galay-kernel/io/detail/readiness_backend.h"

namespace galay {
namespace {

/// epoll as the notifier of a ReadinessBackend: edge-triggered registration of both
/// directions per fd, an eventfd for wakeups, and libaio (AioEngine, started by the first
/// O_DIRECT op) as the kernel file engine; other file ops run on the blocking pool.
class EpollBackend final : public ReadinessBackend {
 public:
  explicit EpollBackend(Scheduler& sched) : ReadinessBackend(sched) {}
  ~EpollBackend() override {
    drain_before_destruction();  // workers and the kernel must be done before the eventfds go
    aio_.reset();
    if (wake_fd_ >= 0) ::close(wake_fd_);
    if (epfd_ >= 0) ::close(epfd_);
  }

  std::error_code init() {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) return errno_code(errno);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) return errno_code(errno);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;
    ev.data.fd = wake_fd_;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, wake_fd_, &ev) < 0) return errno_code(errno);
    return {};
  }

  BackendKind kind() const noexcept override { return BackendKind::epoll; }

  std::string describe() const override {
    return "epoll edge-triggered, persistent registration, eventfd wakeup; files: " +
           (aio_ ? aio_->describe() : std::string("libaio for O_DIRECT: not started")) + ", buffered via a " +
           std::to_string(BlockingPool::shared().max_threads()) + "-thread pool";
  }

  void wake() noexcept override {
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t r = ::write(wake_fd_, &one, sizeof(one));
  }

  int register_fd(int fd) noexcept override {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.fd = fd;
    // EEXIST: a dup of this fd number is still registered; take the registration over.
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
      if (errno != EEXIST || ::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) < 0) return -errno;
    }
    return 0;
  }

 private:
  static constexpr int kMaxEvents = 256;

  // O_DIRECT reads and writes go to libaio while the kernel accepts them; the rest of the
  // file ops to the blocking pool.
  KernelFileEngine* file_engine_for(IoOp& op) noexcept override {
    if (!AioEngine::eligible(op)) return nullptr;
    if (!aio_) aio_ = std::make_unique<AioEngine>(epfd_);
    return aio_->accepts(op) ? aio_.get() : nullptr;
  }
  KernelFileEngine* started_file_engine() const noexcept override { return aio_.get(); }

  void wait_for_readiness(std::optional<std::chrono::nanoseconds> timeout) override {
    int n;
    if (use_pwait2_) {
      timespec ts{};
      timespec* tsp = wait_timespec(timeout, ts);
      n = ::epoll_pwait2(epfd_, events_, kMaxEvents, tsp, nullptr);
      if (n < 0 && errno == ENOSYS) {
        use_pwait2_ = false;
        return wait_for_readiness(timeout);
      }
    } else {
      int ms = -1;
      // Round up: waking early would spin until the deadline. Saturate: a far deadline
      // ("forever") must not wrap into a negative or tiny wait.
      if (timeout) {
        const std::int64_t ns = timeout->count();
        const std::int64_t rounded = ns / 1000000 + (ns % 1000000 != 0 ? 1 : 0);
        ms = static_cast<int>(std::min<std::int64_t>(rounded, std::numeric_limits<int>::max()));
      }
      n = ::epoll_wait(epfd_, events_, kMaxEvents, ms);
    }
    for (int i = 0; i < n; ++i) dispatch(events_[i]);
  }

  void dispatch(const epoll_event& ev) noexcept {
    if (ev.data.fd == wake_fd_) {
      std::uint64_t v;
      [[maybe_unused]] ssize_t r = ::read(wake_fd_, &v, sizeof(v));
      return;
    }
    if (aio_ && ev.data.fd == aio_->event_fd()) {
      aio_->on_event();
      return;
    }
    const std::uint32_t e = ev.events;
    const bool closed = e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
    engine().on_ready(ev.data.fd, e & EPOLLIN, e & (EPOLLOUT | EPOLLHUP | EPOLLERR), closed);
  }

  std::unique_ptr<AioEngine> aio_;  // created by the first O_DIRECT op
  int epfd_ = -1;
  int wake_fd_ = -1;
  bool use_pwait2_ = true;
  epoll_event events_[kMaxEvents];
};

}  // namespace

BackendFactory epoll_backend_factory() {
  return BackendFactory{[]() { return notifier_probe("epoll_create1", ::epoll_create1(EPOLL_CLOEXEC)); },
                        &make_backend<EpollBackend>};
}

}  // namespace galay
