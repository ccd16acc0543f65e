#include "galay-kernel/net/tcp_socket.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "galay-kernel/runtime/scheduler.h"
#include "galay-kernel/net/happy_eyeballs.h"

namespace galay {

// ---- awaitables ----

AcceptAwaitable::AcceptAwaitable(int fd, Scheduler* sched, SocketAddress* peer, Timeout t) noexcept
    : IoAwaitable(OpCode::accept, fd, t), sched_(sched), peer_(peer) {
  op_.flags = op_result_is_fd;
}

Expected<TcpSocket> AcceptAwaitable::await_resume() noexcept {
  if (op_.result < 0) return Unexpected(op_.error());
  op_.take_result();
  if (peer_ != nullptr) {
    storage_.set_size(op_.addrlen);
    *peer_ = storage_;
  }
  Scheduler* s = sched_ ? sched_ : Scheduler::current();
  return TcpSocket(static_cast<int>(op_.result), s);
}

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

Task<Expected<TcpSocket>> TcpSocket::connect(std::string host, std::uint16_t port, Timeout timeout) {
  ConnectOptions options;
  options.timeout = timeout;
  return connect_by_name(std::move(host), port, std::move(options));
}

Expected<void> TcpSocket::set_nodelay(bool on) { return set_option(IPPROTO_TCP, TCP_NODELAY, on); }
Expected<void> TcpSocket::set_keepalive(bool on) { return set_option(SOL_SOCKET, SO_KEEPALIVE, on); }

}  // namespace galay
