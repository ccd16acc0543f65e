#include "galay-kernel/net/socket.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "galay-kernel/runtime/scheduler.h"

namespace galay {

int Socket::open_fd(int family, int type) noexcept {
  int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
#if defined(SO_NOSIGPIPE)
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
  return fd;
}

VoidAwaitable Socket::close() noexcept {
  // The fd leaves this object now, so nothing new can start on it; the op finishes the job.
  return VoidAwaitable(OpCode::close, release());
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
