#include "galay-kernel/kernel/epoll/epoll_backend.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <memory>
#include <vector>

#include "galay-kernel/kernel/scheduler.h"
#include "galay-kernel/kernel/readiness_core.h"

namespace galay {
namespace {

class EpollBackend final : public Backend {
 public:
  explicit EpollBackend(Scheduler& sched) : core_(sched, this, &EpollBackend::register_fd) {}
  ~EpollBackend() override {
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
  std::string describe() const override { return "epoll edge-triggered, persistent registration, eventfd wakeup"; }

  bool start(IoOp& op) noexcept override { return core_.start(op); }
  void cancel(IoOp& op) noexcept override { core_.cancel(op); }
  void abandon(IoOp& op) noexcept override { core_.abandon(op); }
  void close_fd(int fd) noexcept override { (void)core_.close_now(fd); }
  void cancel_all_and_drain() noexcept override { core_.cancel_all(); }
  std::size_t pending_ops() const noexcept override { return core_.pending(); }

  void poll(std::optional<std::chrono::nanoseconds> timeout) override {
    int n;
    if (use_pwait2_) {
      timespec ts{};
      timespec* tsp = nullptr;
      if (timeout) {
        ts.tv_sec = static_cast<time_t>(timeout->count() / 1000000000);
        ts.tv_nsec = static_cast<long>(timeout->count() % 1000000000);
        tsp = &ts;
      }
      n = ::epoll_pwait2(epfd_, events_, kMaxEvents, tsp, nullptr);
      if (n < 0 && errno == ENOSYS) {
        use_pwait2_ = false;
        return poll(timeout);
      }
    } else {
      int ms = -1;
      // Round up: waking early would spin until the deadline.
      if (timeout) ms = static_cast<int>((timeout->count() + 999999) / 1000000);
      n = ::epoll_wait(epfd_, events_, kMaxEvents, ms);
    }
    for (int i = 0; i < n; ++i) dispatch(events_[i]);
  }

  void wake() noexcept override {
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t r = ::write(wake_fd_, &one, sizeof(one));
  }

 private:
  static constexpr int kMaxEvents = 256;

  static int register_fd(void* self, int fd) {
    auto* b = static_cast<EpollBackend*>(self);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.fd = fd;
    // EEXIST: a dup of this fd number is still registered; take the registration over.
    if (::epoll_ctl(b->epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
      if (errno != EEXIST || ::epoll_ctl(b->epfd_, EPOLL_CTL_MOD, fd, &ev) < 0) return -errno;
    }
    return 0;
  }

  void dispatch(const epoll_event& ev) noexcept {
    if (ev.data.fd == wake_fd_) {
      std::uint64_t v;
      [[maybe_unused]] ssize_t r = ::read(wake_fd_, &v, sizeof(v));
      return;
    }
    const std::uint32_t e = ev.events;
    const bool closed = e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
    core_.on_ready(ev.data.fd, e & EPOLLIN, e & (EPOLLOUT | EPOLLHUP | EPOLLERR), closed);
  }

  ReadinessCore core_;
  int epfd_ = -1;
  int wake_fd_ = -1;
  bool use_pwait2_ = true;
  epoll_event events_[kMaxEvents];
};

}  // namespace

BackendFactory epoll_backend_factory() {
  BackendFactory f;
  f.probe = []() -> std::string {
    int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) return std::string("epoll_create1: ") + errno_code(errno).message();
    ::close(fd);
    return {};
  };
  f.create = [](Scheduler& sched) -> Expected<std::unique_ptr<Backend>> {
    auto b = std::make_unique<EpollBackend>(sched);
    if (auto ec = b->init()) return make_error(ec);
    return std::unique_ptr<Backend>(std::move(b));
  };
  return f;
}

}  // namespace galay
