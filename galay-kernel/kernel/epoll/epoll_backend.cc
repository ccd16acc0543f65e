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

#include "galay-kernel/kernel/blocking_pool.h"
#include "galay-kernel/kernel/epoll/aio_engine.h"
#include "galay-kernel/kernel/scheduler.h"
#include "galay-kernel/kernel/readiness_core.h"

namespace galay {
namespace {

class EpollBackend final : public Backend {
 public:
  explicit EpollBackend(Scheduler& sched)
      : core_(sched, this, &EpollBackend::register_fd),
        pool_(BlockingPool::shared(), sched, &EpollBackend::wake_from_pool, this),
        sched_(sched) {}
  ~EpollBackend() override {
    // Workers and the kernel must be done with every op before the eventfds go away.
    pool_.cancel_all_and_drain();
    if (aio_) aio_->cancel_all_and_drain();
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
           std::to_string(BlockingPool::shared().threads()) + "-thread pool";
  }

  // File ops never reach the readiness core (it can't wait for regular files): O_DIRECT
  // reads and writes go to libaio, everything else to the blocking pool.
  bool start(IoOp& op) noexcept override {
    if (is_file_op(op.code)) {
      if (op.fd < 0) {
        op.result = -EBADF;
        return false;
      }
      if (AioEngine::eligible(op) && aio().accepts(op)) return aio_->start(op);
      pool_.submit(op);
      return true;
    }
    if (op.code == OpCode::close) pool_.release_fd(op.fd);
    return core_.start(op);
  }

  void start_batch(std::span<IoOp* const> ops) noexcept override {
    // The libaio ops go to the kernel in one io_submit; the rest start one by one.
    batch_buf_.clear();
    for (IoOp* op : ops) {
      if (op->fd >= 0 && AioEngine::eligible(*op) && aio().accepts(*op))
        batch_buf_.push_back(op);
      else if (!start(*op))
        op->state = OpState::done;
    }
    if (!batch_buf_.empty()) aio_->start_batch(batch_buf_);
  }

  void cancel(IoOp& op) noexcept override {
    if (!is_file_op(op.code)) return core_.cancel(op);
    if (aio_ && aio_->owns(op)) return aio_->cancel(op);
    pool_.cancel(op);
  }
  void abandon(IoOp& op) noexcept override {
    if (!is_file_op(op.code)) return core_.abandon(op);
    if (aio_ && aio_->owns(op)) return aio_->abandon(op);
    pool_.abandon(op);
  }
  void close_fd(int fd) noexcept override {
    // A pool worker must not run a syscall on the number once it is closed (and reused).
    // libaio needs nothing: the kernel holds its own reference to the file.
    pool_.release_fd(fd);
    (void)core_.close_now(fd);
  }
  void cancel_all_and_drain() noexcept override {
    core_.cancel_all();
    if (aio_) aio_->cancel_all_and_drain();
    pool_.cancel_all_and_drain();
  }
  std::size_t pending_ops() const noexcept override {
    return core_.pending() + pool_.pending() + (aio_ ? aio_->pending() : 0);
  }
  std::error_code attach_pool(BufferPool& pool) override { return core_.attach_pool(pool); }
  void detach_pool(BufferPool&) noexcept override {}
  void recycle(BufferPool& pool, std::uint16_t id) noexcept override { core_.recycle(pool, id); }
  void release_multishot(MultishotState& st) noexcept override { core_.release_multishot(st); }

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
    pool_.deliver();
  }

  void wake() noexcept override {
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t r = ::write(wake_fd_, &one, sizeof(one));
  }

 private:
  static constexpr int kMaxEvents = 256;

  static void wake_from_pool(void* self) { static_cast<EpollBackend*>(self)->wake(); }

  AioEngine& aio() {
    if (!aio_) aio_ = std::make_unique<AioEngine>(sched_, epfd_);
    return *aio_;
  }

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
    if (aio_ && ev.data.fd == aio_->event_fd()) {
      aio_->on_event();
      return;
    }
    const std::uint32_t e = ev.events;
    const bool closed = e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
    core_.on_ready(ev.data.fd, e & EPOLLIN, e & (EPOLLOUT | EPOLLHUP | EPOLLERR), closed);
  }

  ReadinessCore core_;
  BlockingPool::Client pool_;
  std::unique_ptr<AioEngine> aio_;  // created by the first O_DIRECT op
  std::vector<IoOp*> batch_buf_;
  Scheduler& sched_;
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
  f.create = &make_backend<EpollBackend>;
  return f;
}

}  // namespace galay
