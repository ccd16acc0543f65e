#include "galay-kernel/async/socket.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "galay-kernel/kernel/scheduler.h"

namespace galay {

Socket::Socket(Socket&& o) noexcept : fd_(std::exchange(o.fd_, -1)), sched_(std::exchange(o.sched_, nullptr)) {}

Socket& Socket::operator=(Socket&& o) noexcept {
  if (this != &o) {
    close_now();
    fd_ = std::exchange(o.fd_, -1);
    sched_ = std::exchange(o.sched_, nullptr);
  }
  return *this;
}

Socket::~Socket() { close_now(); }

int Socket::open_fd(int family, int type) noexcept {
  int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
#if defined(SO_NOSIGPIPE)
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
  return fd;
}

void Socket::close_now() noexcept {
  if (fd_ < 0) return;
  // Go through the scheduler that knows this fd, so its waiters are woken and its
  // bookkeeping is reset before the number can be reused.
  Scheduler* s = sched_ ? sched_ : Scheduler::current();
  if (s != nullptr)
    s->backend().close_fd(fd_);
  else
    ::close(fd_);
  fd_ = -1;
}

VoidAwaitable Socket::close() noexcept {
  // The fd leaves this object now, so nothing new can start on it; the op finishes the job.
  int fd = std::exchange(fd_, -1);
  sched_ = nullptr;
  return VoidAwaitable(OpCode::close, fd);
}

Expected<void> Socket::set_option(int level, int name, int value) {
  if (fd_ < 0) return errno_error(EBADF);
  if (::setsockopt(fd_, level, name, &value, sizeof(value)) < 0) return errno_error(errno);
  return {};
}

Expected<void> Socket::bind(const SocketAddress& addr) {
  if (fd_ < 0) return errno_error(EBADF);
  if (::bind(fd_, addr.data(), addr.size()) < 0) return errno_error(errno);
  return {};
}

Expected<void> Socket::set_reuse_addr(bool on) { return set_option(SOL_SOCKET, SO_REUSEADDR, on); }
Expected<void> Socket::set_reuse_port(bool on) { return set_option(SOL_SOCKET, SO_REUSEPORT, on); }
Expected<void> Socket::set_recv_buffer_size(int bytes) { return set_option(SOL_SOCKET, SO_RCVBUF, bytes); }
Expected<void> Socket::set_send_buffer_size(int bytes) { return set_option(SOL_SOCKET, SO_SNDBUF, bytes); }

Expected<SocketAddress> Socket::local_address() const {
  if (fd_ < 0) return errno_error(EBADF);
  SocketAddress a;
  socklen_t len = SocketAddress::capacity();
  if (::getsockname(fd_, a.data(), &len) < 0) return errno_error(errno);
  a.set_size(len);
  return a;
}

Expected<SocketAddress> Socket::peer_address() const {
  if (fd_ < 0) return errno_error(EBADF);
  SocketAddress a;
  socklen_t len = SocketAddress::capacity();
  if (::getpeername(fd_, a.data(), &len) < 0) return errno_error(errno);
  a.set_size(len);
  return a;
}

Expected<void> Socket::shutdown(ShutdownHow how) {
  if (fd_ < 0) return errno_error(EBADF);
  if (::shutdown(fd_, static_cast<int>(how)) < 0) return errno_error(errno);
  return {};
}

}  // namespace galay
