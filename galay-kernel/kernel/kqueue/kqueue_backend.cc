// Only POSIX and <sys/event.h> here: this file must compile unchanged on the BSDs.
#include "galay-kernel/kernel/kqueue/kqueue_backend.h"

#include <sys/event.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "galay-kernel/kernel/blocking_pool.h"
#include "galay-kernel/kernel/readiness_core.h"
#include "galay-kernel/kernel/scheduler.h"

namespace galay {
namespace {

constexpr std::uintptr_t kWakeIdent = 0x6a6b;  // EVFILT_USER ident for cross-thread wakeups

class KqueueBackend final : public Backend {
 public:
  explicit KqueueBackend(Scheduler& sched)
      : core_(sched, this, &KqueueBackend::register_fd),
        pool_(BlockingPool::shared(), sched, &KqueueBackend::wake_from_pool, this) {}
  ~KqueueBackend() override {
    pool_.cancel_all_and_drain();  // workers wake us through kq_: they must be done first
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
           std::to_string(BlockingPool::shared().threads()) + "-thread pool";
  }

  // kqueue can't wait for regular files: every file op runs on the blocking pool, which
  // reports back through EVFILT_USER (wake()) and is delivered at the end of poll().
  bool start(IoOp& op) noexcept override {
    if (is_file_op(op.code)) {
      if (op.fd < 0) {
        op.result = -EBADF;
        return false;
      }
      pool_.submit(op);
      return true;
    }
    if (op.code == OpCode::close) pool_.release_fd(op.fd);
    return core_.start(op);
  }
  void cancel(IoOp& op) noexcept override {
    if (is_file_op(op.code)) return pool_.cancel(op);
    core_.cancel(op);
  }
  void abandon(IoOp& op) noexcept override {
    if (is_file_op(op.code)) return pool_.abandon(op);
    core_.abandon(op);
  }
  void close_fd(int fd) noexcept override {
    pool_.release_fd(fd);  // no worker may touch the number once it can be reused
    (void)core_.close_now(fd);
  }
  void cancel_all_and_drain() noexcept override {
    core_.cancel_all();
    pool_.cancel_all_and_drain();
  }
  std::size_t pending_ops() const noexcept override { return core_.pending() + pool_.pending(); }
  std::error_code attach_pool(BufferPool& pool) override { return core_.attach_pool(pool); }
  void detach_pool(BufferPool&) noexcept override {}
  void recycle(BufferPool& pool, std::uint16_t id) noexcept override { core_.recycle(pool, id); }
  void release_multishot(MultishotState& st) noexcept override { core_.release_multishot(st); }

  void poll(std::optional<std::chrono::nanoseconds> timeout) override {
    timespec ts{};
    timespec* tsp = nullptr;
    if (timeout) {
      ts.tv_sec = static_cast<time_t>(timeout->count() / 1000000000);
      ts.tv_nsec = static_cast<long>(timeout->count() % 1000000000);
      tsp = &ts;
    }
    int n = ::kevent(kq_, nullptr, 0, events_, kMaxEvents, tsp);
    for (int i = 0; i < n; ++i) {
      const struct kevent& ev = events_[i];
      if (ev.filter == EVFILT_USER) continue;  // a wakeup: returning from kevent() was the point
      const int fd = static_cast<int>(ev.ident);
      if (ev.flags & EV_ERROR) {
        core_.on_ready(fd, true, true, false);  // let the syscalls report the error
      } else if (ev.filter == EVFILT_READ) {
        core_.on_ready(fd, true, false, (ev.flags & EV_EOF) != 0);
      } else if (ev.filter == EVFILT_WRITE) {
        core_.on_ready(fd, false, true, false);
      }
    }
    pool_.deliver();
  }

  void wake() noexcept override {
    struct kevent ev;
    EV_SET(&ev, kWakeIdent, EVFILT_USER, 0, NOTE_TRIGGER, 0, nullptr);
    ::kevent(kq_, &ev, 1, nullptr, 0, nullptr);
  }

 private:
  static constexpr int kMaxEvents = 256;

  static void wake_from_pool(void* self) { static_cast<KqueueBackend*>(self)->wake(); }

  static int register_fd(void* self, int fd) {
    auto* b = static_cast<KqueueBackend*>(self);
    struct kevent changes[2];
    EV_SET(&changes[0], static_cast<std::uintptr_t>(fd), EVFILT_READ, EV_ADD | EV_CLEAR | EV_RECEIPT, 0, 0, nullptr);
    EV_SET(&changes[1], static_cast<std::uintptr_t>(fd), EVFILT_WRITE, EV_ADD | EV_CLEAR | EV_RECEIPT, 0, 0, nullptr);
    struct kevent results[2];
    int n = ::kevent(b->kq_, changes, 2, results, 2, nullptr);
    if (n < 0) return -errno;
    for (int i = 0; i < n; ++i)
      if ((results[i].flags & EV_ERROR) && results[i].data != 0) return -static_cast<int>(results[i].data);
    return 0;
  }

  ReadinessCore core_;
  BlockingPool::Client pool_;
  int kq_ = -1;
  struct kevent events_[kMaxEvents];
};

}  // namespace

BackendFactory kqueue_backend_factory() {
  BackendFactory f;
  f.probe = []() -> std::string {
    int kq = ::kqueue();
    if (kq < 0) return std::string("kqueue: ") + errno_code(errno).message();
    ::close(kq);
    return {};
  };
  f.create = &make_backend<KqueueBackend>;
  return f;
}

}  // namespace galay
