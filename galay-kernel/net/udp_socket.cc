#include "galay-kernel/net/udp_socket.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "galay-kernel/runtime/scheduler.h"

namespace galay {

void RecvFromAwaitable::prepare() noexcept {
  // Everything the kernel writes through lives in this awaitable, which stays put now.
  hdr_.bind(op_, buf_.data(), buf_.size(), storage_.data(), SocketAddress::capacity());
}

Expected<Datagram> RecvFromAwaitable::await_resume() noexcept {
  if (op_.result < 0) return Unexpected(op_.error());
  if (from_ != nullptr) {
    storage_.set_size(hdr_.msg.msg_namelen);
    *from_ = storage_;
  }
  return Datagram{static_cast<std::size_t>(op_.result), (hdr_.msg.msg_flags & MSG_TRUNC) != 0};
}

void SendToAwaitable::prepare() noexcept {
  hdr_.bind(op_, const_cast<std::byte*>(buf_.data()), buf_.size(), has_to_ ? to_.data() : nullptr,
            has_to_ ? to_.size() : 0);
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

// ---- batches (recvmmsg / sendmmsg on every backend: the syscall first, then readiness) ----

namespace {
constexpr std::size_t kMaxBatch = 64;  // datagrams per recvmmsg/sendmmsg call

#if !defined(__linux__) && !defined(__FreeBSD__)
// No recvmmsg/sendmmsg (macOS): the same contract, one recvmsg/sendmsg per datagram.
struct mmsghdr {
  msghdr msg_hdr;
  unsigned msg_len;
};
int recvmmsg(int fd, mmsghdr* h, unsigned n, int flags, void*) {
  unsigned i = 0;
  for (; i < n; ++i) {
    const ssize_t r = ::recvmsg(fd, &h[i].msg_hdr, flags);
    if (r < 0) return i > 0 ? static_cast<int>(i) : -1;
    h[i].msg_len = static_cast<unsigned>(r);
  }
  return static_cast<int>(i);
}
int sendmmsg(int fd, mmsghdr* h, unsigned n, int flags) {
  unsigned i = 0;
  for (; i < n; ++i) {
    const ssize_t r = ::sendmsg(fd, &h[i].msg_hdr, flags);
    if (r < 0) return i > 0 ? static_cast<int>(i) : -1;
    h[i].msg_len = static_cast<unsigned>(r);
  }
  return static_cast<int>(i);
}
#endif
}  // namespace

Task<Expected<std::size_t>> UdpSocket::recv_batch(std::span<DatagramSlot> slots, Timeout t) {
  if (!is_open()) co_return errno_error(EBADF);
  if (slots.empty()) co_return std::size_t{0};
  // The headers live in this frame, built once per call: nothing allocated per datagram.
  std::array<mmsghdr, kMaxBatch> hdrs{};
  std::array<iovec, kMaxBatch> iovs{};
  const std::size_t n = std::min(slots.size(), kMaxBatch);
  for (;;) {
    for (std::size_t i = 0; i < n; ++i) {
      iovs[i] = {slots[i].buffer.data(), slots[i].buffer.size()};
      hdrs[i] = mmsghdr{};
      hdrs[i].msg_hdr.msg_iov = &iovs[i];
      hdrs[i].msg_hdr.msg_iovlen = 1;
      hdrs[i].msg_hdr.msg_name = slots[i].from.data();
      hdrs[i].msg_hdr.msg_namelen = SocketAddress::capacity();
    }
    const int got = recvmmsg(fd_, hdrs.data(), static_cast<unsigned>(n), MSG_DONTWAIT, nullptr);
    if (got > 0) {
      for (int i = 0; i < got; ++i) {
        slots[i].size = hdrs[i].msg_len;
        slots[i].truncated = (hdrs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
        slots[i].from.set_size(hdrs[i].msg_hdr.msg_namelen);
      }
      co_return static_cast<std::size_t>(got);
    }
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK) co_return errno_error(errno);
    if (auto ready = co_await wait_readable(t); !ready) co_return Unexpected(ready.error());
  }
}

Task<Expected<std::size_t>> UdpSocket::send_batch(std::span<const OutgoingDatagram> msgs, Timeout t) {
  if (!is_open()) co_return errno_error(EBADF);
  std::array<mmsghdr, kMaxBatch> hdrs{};
  std::array<iovec, kMaxBatch> iovs{};
  std::size_t sent = 0;
  while (sent < msgs.size()) {
    const std::size_t n = std::min(msgs.size() - sent, kMaxBatch);
    for (std::size_t i = 0; i < n; ++i) {
      const OutgoingDatagram& m = msgs[sent + i];
      iovs[i] = {const_cast<std::byte*>(m.data.data()), m.data.size()};
      hdrs[i] = mmsghdr{};
      hdrs[i].msg_hdr.msg_iov = &iovs[i];
      hdrs[i].msg_hdr.msg_iovlen = 1;
      if (m.to != nullptr) {
        hdrs[i].msg_hdr.msg_name = const_cast<sockaddr*>(m.to->data());
        hdrs[i].msg_hdr.msg_namelen = m.to->size();
      }
    }
    const int done = sendmmsg(fd_, hdrs.data(), static_cast<unsigned>(n), MSG_DONTWAIT);
    if (done > 0) {
      sent += static_cast<std::size_t>(done);
      continue;
    }
    if (done < 0 && errno == EINTR) continue;
    if (done < 0 && errno != EAGAIN && errno != EWOULDBLOCK) co_return errno_error(errno);
    if (auto ready = co_await wait_writable(t); !ready) co_return Unexpected(ready.error());
  }
  co_return sent;
}

}  // namespace galay
