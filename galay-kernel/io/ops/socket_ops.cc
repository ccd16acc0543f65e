#include "galay-kernel/io/ops/socket_ops.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#if defined(GALAY_HAVE_IO_URING)
#include <liburing.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "galay-kernel/io/buffer_pool.h"
#include "galay-kernel/runtime/detail/chaos.h"

namespace galay::detail::ops {
namespace {

#if defined(MSG_NOSIGNAL)
constexpr int kNoSignal = MSG_NOSIGNAL;
#else
constexpr int kNoSignal = 0;  // Apple: sockets get SO_NOSIGPIPE when accepted or created
#endif

// One non-blocking syscall, EINTR retried: its value, -EAGAIN (and `drained`) when it would
// block, or -errno.
template <class Call>
std::int64_t nonblocking(bool& drained, Call call) noexcept {
  for (;;) {
    const auto r = call();
    if (r >= 0) return r;
    const int e = errno;
    if (e == EINTR) continue;
    if (e == EAGAIN || e == EWOULDBLOCK) {
      drained = true;
      return -EAGAIN;
    }
    return -static_cast<std::int64_t>(e);
  }
}

int accept_nonblocking(int fd, sockaddr* addr, socklen_t* len) noexcept {
#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__) || defined(__DragonFly__)
  return ::accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
  int s = ::accept(fd, addr, len);
  if (s >= 0) {
    ::fcntl(s, F_SETFL, ::fcntl(s, F_GETFL) | O_NONBLOCK);
    ::fcntl(s, F_SETFD, FD_CLOEXEC);
#if defined(SO_NOSIGPIPE)
    int one = 1;
    ::setsockopt(s, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
  }
  return s;
#endif
}

// One datagram into a pool buffer, in the layout io_uring's multishot recvmsg uses
// (PooledDatagramHeader, the sender's address, the payload). Returns the bytes used, or -1.
ssize_t receive_datagram(int fd, std::byte* buf, std::size_t size) noexcept {
  iovec iov{buf + kPooledDatagramPayloadOffset, size - kPooledDatagramPayloadOffset};
  msghdr msg{};
  msg.msg_name = buf + sizeof(PooledDatagramHeader);
  msg.msg_namelen = kPooledDatagramNameSpace;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // MSG_TRUNC: the return value is the datagram's real length even when it did not fit.
  const ssize_t r = ::recvmsg(fd, &msg, MSG_TRUNC);
  if (r < 0) return -1;
  PooledDatagramHeader h{static_cast<std::uint32_t>(msg.msg_namelen), 0, static_cast<std::uint32_t>(r),
                         static_cast<std::uint32_t>(msg.msg_flags)};
  std::memcpy(buf, &h, sizeof(h));
  return static_cast<ssize_t>(kPooledDatagramPayloadOffset + std::min(static_cast<std::size_t>(r), iov.iov_len));
}

std::int64_t poll_now(IoOp& op, short events, bool& drained) noexcept {
  pollfd p{op.fd, events, 0};
  const std::int64_t r = nonblocking(drained, [&] { return ::poll(&p, 1, 0); });
  if (r > 0) return (p.revents & POLLNVAL) ? -EBADF : 0;
  if (r == 0) {
    drained = true;
    return -EAGAIN;
  }
  return r;
}

#if defined(GALAY_HAVE_IO_URING)
// A poll CQE's res is the event mask.
std::int64_t poll_result(std::int32_t res) noexcept { return res > 0 ? ((res & POLLNVAL) ? -EBADF : 0) : res; }
#endif

}  // namespace

// ---- accept ----
#if defined(GALAY_HAVE_IO_URING)
void Accept::prep(io_uring_sqe* sqe, IoOp& op) noexcept {
  io_uring_prep_accept(sqe, op.fd, op.addr, op.addr ? &op.addrlen : nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
void AcceptMultishot::prep(io_uring_sqe* sqe, IoOp& op) noexcept {
  io_uring_prep_accept(sqe, op.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
#endif
std::int64_t Accept::attempt(IoOp& op, bool& drained) noexcept {
  socklen_t* lenp = op.addr ? &op.addrlen : nullptr;
  return nonblocking(drained, [&] { return accept_nonblocking(op.fd, op.addr, lenp); });
}
std::int64_t AcceptMultishot::attempt(IoOp& op, bool& drained) noexcept {
  return nonblocking(drained, [&] { return accept_nonblocking(op.fd, nullptr, nullptr); });
}

// ---- connect ----
#if defined(GALAY_HAVE_IO_URING)
void Connect::prep(io_uring_sqe* sqe, IoOp& op) noexcept { io_uring_prep_connect(sqe, op.fd, op.addr, op.addrlen); }
#endif
std::int64_t Connect::initiate(IoOp& op) noexcept {
  if (::connect(op.fd, op.addr, op.addrlen) == 0) return 0;
  return errno == EINPROGRESS ? -EAGAIN : -static_cast<std::int64_t>(errno);
}
std::int64_t Connect::attempt(IoOp& op, bool& /*drained*/) noexcept {
  int err = 0;
  socklen_t len = sizeof(err);
  if (::getsockopt(op.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -static_cast<std::int64_t>(errno);
  if (err == EINPROGRESS || err == EALREADY) return -EAGAIN;
  return -static_cast<std::int64_t>(err);
}

// ---- recv ----
#if defined(GALAY_HAVE_IO_URING)
void Recv::prep(io_uring_sqe* sqe, IoOp& op) noexcept {
  // The SQE's length is 32 bits: clamp (a recv may return less anyway).
  io_uring_prep_recv(sqe, op.fd, op.buf, chaos::clamp(std::min(op.len, kMaxTransfer)), 0);
}
#endif
std::int64_t Recv::attempt(IoOp& op, bool& drained) noexcept {
  const std::size_t want = chaos::clamp(op.len);
  const std::int64_t r = nonblocking(drained, [&] { return ::recv(op.fd, op.buf, want, 0); });
  // Fewer bytes than asked for: the socket buffer is drained (for a stream).
  if ((op.flags & op_stream) && r > 0 && static_cast<std::size_t>(r) < want) drained = true;
  return r;
}

// ---- recv into a pool buffer ----
std::int64_t RecvPooled::attempt(IoOp& op, bool& drained) noexcept {
  auto& st = static_cast<PooledRecvState&>(*op.multishot);
  if (st.held >= st.max_held) {
    // Its share of the pool is used up: wait (parked) until its caller drops chunks; the
    // data stays in the socket, so TCP pushes back on the peer.
    st.capped = true;
    return -EAGAIN;
  }
  std::uint16_t id;
  if (!st.pool->pop_free(id)) {
    // Pool dry: wait (still parked as a reader) until recycle() hands a buffer back.
    st.pool->add_starved(st);
    return -EAGAIN;
  }
  const std::size_t want = st.datagram ? st.pool->buffer_size() : chaos::clamp(st.pool->buffer_size());
  const std::int64_t r = nonblocking(drained, [&] {
    return st.datagram ? receive_datagram(op.fd, st.pool->buffer(id), want)
                       : ::recv(op.fd, st.pool->buffer(id), want, 0);
  });
  if (r > 0) {  // a datagram is never empty here: its header is counted
    if (!st.datagram && static_cast<std::size_t>(r) < want) drained = true;
    st.pool->take(id, st);
    op.aux = id;
    return r;
  }
  st.pool->push_free(id);
  if (r == 0) op.aux = -1;  // end of stream
  return r;
}

// ---- recvmsg, readv ----
#if defined(GALAY_HAVE_IO_URING)
void RecvMsg::prep(io_uring_sqe* sqe, IoOp& op) noexcept {
  io_uring_prep_recvmsg(sqe, op.fd, op.msg, static_cast<unsigned>(op.aux));
}
void Readv::prep(io_uring_sqe* sqe, IoOp& op) noexcept {
  io_uring_prep_readv(sqe, op.fd, op.iov, static_cast<unsigned>(op.iovcnt), ~0ull);
}
#endif
std::int64_t RecvMsg::attempt(IoOp& op, bool& drained) noexcept {
  return nonblocking(drained, [&] { return ::recvmsg(op.fd, op.msg, op.aux); });
}
std::int64_t Readv::attempt(IoOp& op, bool& drained) noexcept {
  return nonblocking(drained, [&] { return ::readv(op.fd, op.iov, op.iovcnt); });
}

// ---- send ----
#if defined(GALAY_HAVE_IO_URING)
void Send::prep(io_uring_sqe* sqe, IoOp& op) noexcept {
  // send_all comes back here (on_cqe's `again`) for the rest.
  const std::size_t rest = chaos::clamp(std::min(op.len - op.done_bytes, kMaxTransfer));
  char* const from = static_cast<char*>(op.buf) + op.done_bytes;
  if (op.flags & op_zero_copy)
    io_uring_prep_send_zc(sqe, op.fd, from, rest, MSG_NOSIGNAL, 0);
  else
    io_uring_prep_send(sqe, op.fd, from, rest, MSG_NOSIGNAL);
}
std::int64_t Send::on_cqe(IoOp& op, std::int32_t res, bool& again) noexcept {
  if (!(op.flags & op_all) || res <= 0) return res;
  op.done_bytes += static_cast<std::size_t>(res);
  again = op.done_bytes < op.len;
  return static_cast<std::int64_t>(op.done_bytes);
}
#endif
std::int64_t Send::attempt(IoOp& op, bool& drained) noexcept {
  auto* const base = static_cast<const char*>(op.buf);
  for (;;) {
    const std::size_t want = chaos::clamp(op.len - op.done_bytes);
    const std::int64_t r = nonblocking(drained, [&] { return ::send(op.fd, base + op.done_bytes, want, kNoSignal); });
    if (r < 0) return r;
    op.done_bytes += static_cast<std::size_t>(r);
    if (!(op.flags & op_all) || op.done_bytes == op.len) return static_cast<std::int64_t>(op.done_bytes);
    if ((op.flags & op_stream) && static_cast<std::size_t>(r) < want) {  // short write: send buffer full
      drained = true;
      return -EAGAIN;
    }
  }
}

#if defined(GALAY_HAVE_IO_URING)
void SendMsg::prep(io_uring_sqe* sqe, IoOp& op) noexcept { io_uring_prep_sendmsg(sqe, op.fd, op.msg, MSG_NOSIGNAL); }
#endif
std::int64_t SendMsg::attempt(IoOp& op, bool& drained) noexcept {
  return nonblocking(drained, [&] { return ::sendmsg(op.fd, op.msg, kNoSignal); });
}

// ---- poll ----
#if defined(GALAY_HAVE_IO_URING)
void PollRead::prep(io_uring_sqe* sqe, IoOp& op) noexcept { io_uring_prep_poll_add(sqe, op.fd, POLLIN); }
void PollWrite::prep(io_uring_sqe* sqe, IoOp& op) noexcept { io_uring_prep_poll_add(sqe, op.fd, POLLOUT); }
std::int64_t PollRead::on_cqe(IoOp& /*op*/, std::int32_t res, bool& /*again*/) noexcept { return poll_result(res); }
std::int64_t PollWrite::on_cqe(IoOp& /*op*/, std::int32_t res, bool& /*again*/) noexcept { return poll_result(res); }
#endif
std::int64_t PollRead::attempt(IoOp& op, bool& drained) noexcept { return poll_now(op, POLLIN, drained); }
std::int64_t PollWrite::attempt(IoOp& op, bool& drained) noexcept { return poll_now(op, POLLOUT, drained); }

// ---- close ----
#if defined(GALAY_HAVE_IO_URING)
void Close::prep(io_uring_sqe* sqe, IoOp& op) noexcept { io_uring_prep_close(sqe, op.fd); }
#endif

}  // namespace galay::detail::ops
