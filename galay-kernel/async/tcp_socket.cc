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
Expected<void> set_int_option(int fd, int level, int name, int value) {
  if (fd < 0) return errno_error(EBADF);
  return sys_result(::setsockopt(fd, level, name, &value, sizeof(value)));
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
  int fd = ::socket(static_cast<int>(family), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_error(errno);
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

TcpSocket::TcpSocket(TcpSocket&& o) noexcept : fd_(std::exchange(o.fd_, -1)), sched_(std::exchange(o.sched_, nullptr)) {}

TcpSocket& TcpSocket::operator=(TcpSocket&& o) noexcept {
  if (this != &o) {
    close_now();
    fd_ = std::exchange(o.fd_, -1);
    sched_ = std::exchange(o.sched_, nullptr);
  }
  return *this;
}

TcpSocket::~TcpSocket() { close_now(); }

void TcpSocket::close_now() noexcept {
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

Expected<void> TcpSocket::bind(const SocketAddress& addr) {
  if (fd_ < 0) return errno_error(EBADF);
  return sys_result(::bind(fd_, addr.data(), addr.size()));
}

Expected<void> TcpSocket::listen(int backlog) {
  if (fd_ < 0) return errno_error(EBADF);
  return sys_result(::listen(fd_, backlog));
}

Expected<void> TcpSocket::set_reuse_addr(bool on) { return set_int_option(fd_, SOL_SOCKET, SO_REUSEADDR, on); }
Expected<void> TcpSocket::set_reuse_port(bool on) { return set_int_option(fd_, SOL_SOCKET, SO_REUSEPORT, on); }
Expected<void> TcpSocket::set_nodelay(bool on) { return set_int_option(fd_, IPPROTO_TCP, TCP_NODELAY, on); }
Expected<void> TcpSocket::set_keepalive(bool on) { return set_int_option(fd_, SOL_SOCKET, SO_KEEPALIVE, on); }
Expected<void> TcpSocket::set_recv_buffer_size(int bytes) { return set_int_option(fd_, SOL_SOCKET, SO_RCVBUF, bytes); }
Expected<void> TcpSocket::set_send_buffer_size(int bytes) { return set_int_option(fd_, SOL_SOCKET, SO_SNDBUF, bytes); }

Expected<SocketAddress> TcpSocket::local_address() const {
  if (fd_ < 0) return errno_error(EBADF);
  SocketAddress a;
  socklen_t len = SocketAddress::capacity();
  if (::getsockname(fd_, a.data(), &len) < 0) return errno_error(errno);
  a.set_size(len);
  return a;
}

Expected<SocketAddress> TcpSocket::peer_address() const {
  if (fd_ < 0) return errno_error(EBADF);
  SocketAddress a;
  socklen_t len = SocketAddress::capacity();
  if (::getpeername(fd_, a.data(), &len) < 0) return errno_error(errno);
  a.set_size(len);
  return a;
}

Expected<void> TcpSocket::shutdown(ShutdownHow how) {
  if (fd_ < 0) return errno_error(EBADF);
  return sys_result(::shutdown(fd_, static_cast<int>(how)));
}

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

VoidAwaitable TcpSocket::close() noexcept {
  // The fd leaves this object now, so nothing new can start on it; the op finishes the job.
  int fd = std::exchange(fd_, -1);
  sched_ = nullptr;
  return VoidAwaitable(OpCode::close, fd);
}

}  // namespace galay
