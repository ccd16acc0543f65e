#include "galay-kernel/net/stream_socket.h"

#include <cerrno>
#include <cstring>

namespace galay {

ConnectAwaitable::ConnectAwaitable(int fd, const sockaddr* addr, socklen_t len, Timeout t) noexcept
    : VoidAwaitable(OpCode::connect, fd, t), len_(len <= sizeof(addr_) ? len : 0) {
  if (addr != nullptr) std::memcpy(&addr_, addr, len_);
}

Expected<void> StreamSocket::listen(int backlog) {
  if (fd_ < 0) return errno_error(EBADF);
  if (::listen(fd_, backlog) < 0) return errno_error(errno);
  return {};
}

SizeAwaitable StreamSocket::recv(std::span<std::byte> buf, Timeout timeout) noexcept {
  SizeAwaitable a(OpCode::recv, io_fd(), timeout);
  a.op().buf = buf.data();
  a.op().len = buf.size();
  a.op().flags = op_stream;
  return a;
}

SizeAwaitable StreamSocket::send(std::span<const std::byte> buf, Timeout timeout) noexcept {
  SizeAwaitable a(OpCode::send, io_fd(), timeout);
  a.op().buf = const_cast<std::byte*>(buf.data());
  a.op().len = buf.size();
  a.op().flags = op_stream;
  return a;
}

SizeAwaitable StreamSocket::send_all(std::span<const std::byte> buf, Timeout timeout) noexcept {
  SizeAwaitable a = send(buf, timeout);
  a.op().flags |= op_all;
  return a;
}

SizeAwaitable StreamSocket::readv(std::span<const iovec> iov, Timeout timeout) noexcept {
  SizeAwaitable a(OpCode::readv, io_fd(), timeout);
  a.op().iov = iov.data();
  a.op().iovcnt = static_cast<int>(iov.size());
  return a;
}

}  // namespace galay
