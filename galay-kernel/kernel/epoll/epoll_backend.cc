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
#include "galay-kernel/kernel/wait_list.h"

namespace galay {
namespace {

bool is_read_side(OpCode c) noexcept {
  return c == OpCode::accept || c == OpCode::recv || c == OpCode::readv || c == OpCode::poll_read;
}

std::int64_t neg_errno() noexcept { return -static_cast<std::int64_t>(errno); }

class EpollBackend final : public Backend {
 public:
  explicit EpollBackend(Scheduler& sched) : sched_(sched) {}
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

  bool start(IoOp& op) noexcept override {
    if (op.fd < 0) {
      op.result = -EBADF;
      return false;
    }
    switch (op.code) {
      case OpCode::close:
        op.result = close_now(op.fd);
        return false;
      case OpCode::read_at:
      case OpCode::write_at:
      case OpCode::readv_at:
      case OpCode::writev_at:
      case OpCode::fsync:
      case OpCode::fdatasync:
      case OpCode::fallocate:
        op.result = -EOPNOTSUPP;  // file I/O on epoll is not implemented yet
        return false;
      case OpCode::connect: {
        if (::connect(op.fd, op.addr, op.addrlen) == 0) {
          op.result = 0;
          return false;
        }
        if (errno != EINPROGRESS) {
          op.result = neg_errno();
          return false;
        }
        FdSlot& s = slot(op.fd);
        s.writable = false;
        return park(op, s, s.writers);
      }
      default: {
        FdSlot& s = slot(op.fd);
        const bool read_side = is_read_side(op.code);
        WaitList& list = read_side ? s.readers : s.writers;
        // Earlier waiters go first; otherwise try the syscall unless we know it would block.
        if (list.empty() && (read_side ? s.readable : s.writable)) {
          std::int64_t r = perform(op, s);
          if (r != -EAGAIN) {
            op.result = r;
            return false;
          }
        }
        return park(op, s, list);
      }
    }
  }

  void cancel(IoOp& op) noexcept override {
    if (!unpark(op)) return;
    sched_.complete(op, -static_cast<std::int64_t>(op.cancel_reason));
  }

  void abandon(IoOp& op) noexcept override { unpark(op); }

  void close_fd(int fd) noexcept override { (void)close_now(fd); }

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

  void cancel_all_and_drain() noexcept override {
    for (auto& chunk : chunks_) {
      if (!chunk) continue;
      for (FdSlot& s : *chunk) {
        while (IoOp* op = s.readers.pop_front()) finish(*op, -ECANCELED);
        while (IoOp* op = s.writers.pop_front()) finish(*op, -ECANCELED);
      }
    }
  }

  std::size_t pending_ops() const noexcept override { return pending_; }

 private:
  static constexpr int kMaxEvents = 256;

  struct FdSlot {
    WaitList readers;
    WaitList writers;
    bool registered = false;
    bool readable = true;   // optimistic until a syscall says EAGAIN
    bool writable = true;
    bool read_closed = false;  // peer sent FIN/RST: reads never block again, keep trying them
  };

  // Slots live in fixed-size chunks so their addresses never move: an accept inside
  // drive() may create a slot while a reference to another one is in use.
  static constexpr std::size_t kChunk = 1024;
  using Chunk = std::array<FdSlot, kChunk>;

  FdSlot& slot(int fd) {
    const auto i = static_cast<std::size_t>(fd);
    if (i / kChunk >= chunks_.size()) chunks_.resize(i / kChunk + 1);
    auto& chunk = chunks_[i / kChunk];
    if (!chunk) chunk = std::make_unique<Chunk>();
    return (*chunk)[i % kChunk];
  }
  FdSlot* find_slot(int fd) noexcept {
    const auto i = static_cast<std::size_t>(fd);
    if (fd < 0 || i / kChunk >= chunks_.size() || !chunks_[i / kChunk]) return nullptr;
    return &(*chunks_[i / kChunk])[i % kChunk];
  }

  bool park(IoOp& op, FdSlot& s, WaitList& list) noexcept {
    if (!s.registered) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
      ev.data.fd = op.fd;
      // ADD reports the fd's current state, so readiness that arrived after our EAGAIN
      // is not lost. EEXIST: a dup of this fd number is still registered; take it over.
      if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, op.fd, &ev) < 0) {
        if (errno != EEXIST || ::epoll_ctl(epfd_, EPOLL_CTL_MOD, op.fd, &ev) < 0) {
          op.result = neg_errno();  // e.g. EPERM for a regular file, EBADF for a stale fd
          return false;
        }
      }
      s.registered = true;
    }
    list.push_back(&op);
    ++pending_;
    return true;
  }

  // Remove a parked op; false if it is not parked here.
  bool unpark(IoOp& op) noexcept {
    FdSlot* sp = op.state == OpState::pending ? find_slot(op.fd) : nullptr;
    if (sp == nullptr) return false;
    FdSlot& s = *sp;
    WaitList& list = (op.code == OpCode::connect || !is_read_side(op.code)) ? s.writers : s.readers;
    for (IoOp* p = list.front(); p; p = p->next) {
      if (p == &op) {
        list.remove(&op);
        --pending_;
        return true;
      }
    }
    return false;
  }

  void finish(IoOp& op, std::int64_t result) noexcept {
    --pending_;
    sched_.complete(op, result);
  }

  std::int64_t close_now(int fd) noexcept {
    if (FdSlot* sp = find_slot(fd)) {
      FdSlot& s = *sp;
      while (IoOp* op = s.readers.pop_front()) finish(*op, -ECANCELED);
      while (IoOp* op = s.writers.pop_front()) finish(*op, -ECANCELED);
      s = FdSlot{};
    }
    // No EPOLL_CTL_DEL: closing the last reference removes the registration anyway.
    return ::close(fd) == 0 ? 0 : neg_errno();
  }

  // The syscall for `op`; -EAGAIN means "wait for readiness" (progress kept in op.done_bytes).
  std::int64_t perform(IoOp& op, FdSlot& s) noexcept {
    for (;;) {
      ssize_t r;
      switch (op.code) {
        case OpCode::accept: {
          socklen_t* lenp = op.addr ? &op.addrlen : nullptr;
          r = ::accept4(op.fd, op.addr, lenp, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (r >= 0) {
            // A fresh fd number: whatever we knew about an older file with this number is void.
            slot(static_cast<int>(r)) = FdSlot{};
            return r;
          }
          break;
        }
        case OpCode::recv:
          r = ::recv(op.fd, op.buf, op.len, 0);
          if (r >= 0) {
            if ((op.flags & op_stream) && r > 0 && static_cast<std::size_t>(r) < op.len && !s.read_closed)
              s.readable = false;
            return r;
          }
          break;
        case OpCode::readv:
          r = ::readv(op.fd, op.iov, op.iovcnt);
          if (r >= 0) return r;
          break;
        case OpCode::send: {
          auto* base = static_cast<const char*>(op.buf);
          r = ::send(op.fd, base + op.done_bytes, op.len - op.done_bytes, MSG_NOSIGNAL);
          if (r >= 0) {
            op.done_bytes += static_cast<std::size_t>(r);
            if (!(op.flags & op_all) || op.done_bytes == op.len) return static_cast<std::int64_t>(op.done_bytes);
            if (op.flags & op_stream) {  // short write on a stream: send buffer full
              s.writable = false;
              return -EAGAIN;
            }
            continue;
          }
          break;
        }
        case OpCode::writev: {
          msghdr msg{};
          msg.msg_iov = const_cast<iovec*>(op.iov);
          msg.msg_iovlen = static_cast<std::size_t>(op.iovcnt);
          r = ::sendmsg(op.fd, &msg, MSG_NOSIGNAL);
          if (r >= 0) return r;
          break;
        }
        case OpCode::connect: {
          int err = 0;
          socklen_t len = sizeof(err);
          if (::getsockopt(op.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return neg_errno();
          if (err == EINPROGRESS || err == EALREADY) return -EAGAIN;
          return -static_cast<std::int64_t>(err);
        }
        case OpCode::poll_read:
        case OpCode::poll_write: {
          pollfd p{op.fd, static_cast<short>(op.code == OpCode::poll_read ? POLLIN : POLLOUT), 0};
          r = ::poll(&p, 1, 0);
          if (r > 0) return (p.revents & POLLNVAL) ? -EBADF : 0;
          if (r == 0) {
            (op.code == OpCode::poll_read ? s.readable : s.writable) = false;
            return -EAGAIN;
          }
          break;
        }
        default:
          return -EOPNOTSUPP;
      }
      // r < 0
      int e = errno;
      if (e == EINTR) continue;
      if (e == EAGAIN || e == EWOULDBLOCK) {
        (is_read_side(op.code) ? s.readable : s.writable) = false;
        return -EAGAIN;
      }
      return -static_cast<std::int64_t>(e);
    }
  }

  void drive(FdSlot& s, WaitList& list) noexcept {
    while (IoOp* op = list.front()) {
      std::int64_t r = perform(*op, s);
      if (r == -EAGAIN) break;
      list.remove(op);
      finish(*op, r);
    }
  }

  void dispatch(const epoll_event& ev) noexcept {
    const int fd = ev.data.fd;
    if (fd == wake_fd_) {
      std::uint64_t v;
      [[maybe_unused]] ssize_t r = ::read(wake_fd_, &v, sizeof(v));
      return;
    }
    FdSlot* sp = find_slot(fd);
    if (sp == nullptr || !sp->registered) return;  // stale event for a closed fd
    FdSlot& s = *sp;  // stale event for a closed fd
    const std::uint32_t e = ev.events;
    if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) s.read_closed = true;
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      s.readable = true;
      drive(s, s.readers);
    }
    if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
      s.writable = true;
      drive(s, s.writers);
    }
  }

  Scheduler& sched_;
  int epfd_ = -1;
  int wake_fd_ = -1;
  bool use_pwait2_ = true;
  std::size_t pending_ = 0;
  std::vector<std::unique_ptr<Chunk>> chunks_;
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
