#include "galay-kernel/async/udp_socket.h"

#include <cerrno>

#include "galay-kernel/kernel/scheduler.h"

namespace galay {

void RecvFromAwaitable::prepare() noexcept {
  // Everything the kernel writes through lives in this awaitable, which stays put now.
  iov_ = {buf_.data(), buf_.size()};
  op_.msg = msghdr{};
  op_.msg.msg_name = storage_.data();
  op_.msg.msg_namelen = SocketAddress::capacity();
  op_.msg.msg_iov = &iov_;
  op_.msg.msg_iovlen = 1;
}

Expected<Datagram> RecvFromAwaitable::await_resume() noexcept {
  if (op_.result < 0) return Unexpected(op_.error());
  if (from_ != nullptr) {
    storage_.set_size(op_.msg.msg_namelen);
    *from_ = storage_;
  }
  return Datagram{static_cast<std::size_t>(op_.result), (op_.msg.msg_flags & MSG_TRUNC) != 0};
}

void SendToAwaitable::prepare() noexcept {
  iov_ = {const_cast<std::byte*>(buf_.data()), buf_.size()};
  op_.msg = msghdr{};
  if (has_to_) {
    op_.msg.msg_name = to_.data();
    op_.msg.msg_namelen = to_.size();
  }
  op_.msg.msg_iov = &iov_;
  op_.msg.msg_iovlen = 1;
}

Expected<UdpSocket> UdpSocket::open(AddressFamily family) {
  int fd = open_fd(static_cast<int>(family), SOCK_DGRAM);
  if (fd < 0) return errno_error(-fd);
  return UdpSocket(fd, Scheduler::current());
}

Expected<UdpSocket> UdpSocket::bind_to(const SocketAddress& addr) {
  auto s = open(addr.family());
  if (!s) return s;
  if (auto r = s->bind(addr); !r) return Unexpected(r.error());
  return s;
}

Expected<void> UdpSocket::connect(const SocketAddress& peer) {
  if (fd_ < 0) return errno_error(EBADF);
  if (::connect(fd_, peer.data(), peer.size()) < 0) return errno_error(errno);
  return {};
}

}  // namespace galay
