#include "galay-kernel/async/tcp_socket.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "galay-kernel/kernel/scheduler.h"

namespace galay {

namespace {
Expected<void> sys_result(int r) {
  if (r < 0) return errno_error(errno);
  return {};
}
}  // namespace

// ---- awaitables ----

AcceptAwaitable::AcceptAwaitable(int fd, Scheduler* sched, SocketAddress* peer, Timeout t) noexcept
    : IoAwaitable(OpCode::accept, fd, t), sched_(sched), peer_(peer) {}

Expected<TcpSocket> AcceptAwaitable::await_resume() noexcept {
  if (op_.result < 0) return Unexpected(op_.error());
  if (peer_ != nullptr) {
    storage_.set_size(op_.addrlen);
    *peer_ = storage_;
  }
  Scheduler* s = sched_ ? sched_ : Scheduler::current();
  return TcpSocket(static_cast<int>(op_.result), s);
}

ConnectAwaitable::ConnectAwaitable(int fd, const SocketAddress& addr, Timeout t) noexcept
    : VoidAwaitable(OpCode::connect, fd, t), addr_(addr) {}

// ---- TcpSocket ----

Expected<TcpSocket> TcpSocket::adopt(int fd) {
  if (fd < 0) return errno_error(EBADF);
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return errno_error(errno);
  return TcpSocket(fd, Scheduler::current());
}

Expected<TcpSocket> TcpSocket::open(AddressFamily family) {
  int fd = open_fd(static_cast<int>(family), SOCK_STREAM);
  if (fd < 0) return errno_error(-fd);
  return TcpSocket(fd, Scheduler::current());
}

Expected<TcpSocket> TcpSocket::listen_on(const SocketAddress& addr, int backlog, bool reuse_port) {
  auto sock = open(addr.family());
  if (!sock) return sock;
  if (auto r = sock->set_reuse_addr(true); !r) return Unexpected(r.error());
  if (reuse_port) {
    if (auto r = sock->set_reuse_port(true); !r) return Unexpected(r.error());
  }
  if (auto r = sock->bind(addr); !r) return Unexpected(r.error());
  if (auto r = sock->listen(backlog); !r) return Unexpected(r.error());
  return sock;
}

Expected<void> TcpSocket::listen(int backlog) {
  if (fd_ < 0) return errno_error(EBADF);
  return sys_result(::listen(fd_, backlog));
}

Expected<void> TcpSocket::set_nodelay(bool on) { return set_option(IPPROTO_TCP, TCP_NODELAY, on); }
Expected<void> TcpSocket::set_keepalive(bool on) { return set_option(SOL_SOCKET, SO_KEEPALIVE, on); }

SizeAwaitable TcpSocket::recv(std::span<std::byte> buf, Timeout timeout) noexcept {
  SizeAwaitable a(OpCode::recv, fd_, timeout);
  a.op().buf = buf.data();
  a.op().len = buf.size();
  a.op().flags = op_stream;
  return a;
}

SizeAwaitable TcpSocket::send(std::span<const std::byte> buf, Timeout timeout) noexcept {
  SizeAwaitable a(OpCode::send, fd_, timeout);
  a.op().buf = const_cast<std::byte*>(buf.data());
  a.op().len = buf.size();
  a.op().flags = op_stream;
  return a;
}

SizeAwaitable TcpSocket::send_all(std::span<const std::byte> buf, Timeout timeout) noexcept {
  SizeAwaitable a = send(buf, timeout);
  a.op().flags |= op_all;
  return a;
}

SizeAwaitable TcpSocket::readv(std::span<const iovec> iov, Timeout timeout) noexcept {
  SizeAwaitable a(OpCode::readv, fd_, timeout);
  a.op().iov = iov.data();
  a.op().iovcnt = static_cast<int>(iov.size());
  return a;
}

SizeAwaitable TcpSocket::writev(std::span<const iovec> iov, Timeout timeout) noexcept {
  SizeAwaitable a(OpCode::writev, fd_, timeout);
  a.op().iov = iov.data();
  a.op().iovcnt = static_cast<int>(iov.size());
  return a;
}

}  // namespace galay
