#pragma once
/// @file udp_socket.h
/// UdpSocket: datagrams over IPv4/IPv6 with awaitable send/receive on every backend
/// (recvmsg/sendmsg underneath: io_uring RECVMSG/SENDMSG, readiness retry on epoll/kqueue).
/// A datagram larger than the buffer is reported as truncated (MSG_TRUNC), never silently
/// cut. Ownership, closing and options come from Socket.

#include <sys/uio.h>

#include <cstddef>
#include <span>

#include "galay-kernel/net/socket.h"
#include "galay-kernel/coro/task.h"

namespace galay {

/// One received datagram: how many bytes landed in the buffer, and whether the datagram
/// was longer than the buffer (the rest was discarded by the kernel).
struct Datagram {
  /// Bytes copied into the buffer.
  std::size_t size = 0;
  /// True if the datagram was longer than the buffer (MSG_TRUNC): the rest is lost.
  bool truncated = false;
};

/// One slot of a batched receive (UdpSocket::recv_batch): the caller's buffer, and what
/// arrived in it.
struct DatagramSlot {
  std::span<std::byte> buffer;  ///< where the datagram is received (the caller's memory)
  std::size_t size = 0;         ///< bytes received into `buffer`
  bool truncated = false;       ///< the datagram was longer than `buffer` (MSG_TRUNC)
  SocketAddress from;           ///< the sender
};

/// One datagram of a batched send (UdpSocket::send_batch).
struct OutgoingDatagram {
  std::span<const std::byte> data;    ///< the payload (the caller's memory)
  const SocketAddress* to = nullptr;  ///< destination, or null for the connected peer
};

/// `co_await sock.recv_from(buf, &from)` → Expected<Datagram>.
class [[nodiscard]] RecvFromAwaitable : public IoAwaitable {
 public:
  /// Receive one datagram on `fd` into `buf`; the sender goes to `*from` if given.
  RecvFromAwaitable(int fd, std::span<std::byte> buf, SocketAddress* from, Timeout t) noexcept
      : IoAwaitable(OpCode::recvmsg, fd, t), buf_(buf), from_(from) {}
  template <class P>
  /// Coroutine protocol: builds the msghdr inside this object and starts the op.
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    prepare();
    return IoAwaitable::await_suspend(h);
  }
  /// Coroutine protocol: the datagram's size and truncation, or the error.
  Expected<Datagram> await_resume() noexcept;

 private:
  void prepare() noexcept;
  std::span<std::byte> buf_;
  SocketAddress* from_;
  SocketAddress storage_;
  MessageHeader hdr_;
};

/// `co_await sock.send_to(buf, addr)` → Expected<size_t>.
class [[nodiscard]] SendToAwaitable : public IoAwaitable {
 public:
  /// Send `buf` as one datagram on `fd`, to `*to` if given (else to the connected peer).
  SendToAwaitable(int fd, std::span<const std::byte> buf, const SocketAddress* to, Timeout t) noexcept
      : IoAwaitable(OpCode::sendmsg, fd, t), buf_(buf) {
    if (to) to_ = *to, has_to_ = true;
  }
  template <class P>
  /// Coroutine protocol: builds the msghdr inside this object and starts the op.
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    prepare();
    return IoAwaitable::await_suspend(h);
  }
  /// Coroutine protocol: the bytes sent, or the error.
  Expected<std::size_t> await_resume() const noexcept { return op_.size_result(); }

 private:
  void prepare() noexcept;
  std::span<const std::byte> buf_;
  SocketAddress to_;
  bool has_to_ = false;
  MessageHeader hdr_;
};

/// A UDP socket (IPv4 or IPv6): unconnected (recv_from/send_to) or connected (recv/send).
/// Datagrams are never split or merged; truncation on receive is reported in Datagram.
class UdpSocket : public Socket {
 public:
  /// An empty socket; every operation on it fails with EBADF.
  UdpSocket() noexcept = default;
  /// Take over another socket's fd; it becomes empty.
  UdpSocket(UdpSocket&&) noexcept = default;
  /// Close this socket's fd, then take over the other's.
  UdpSocket& operator=(UdpSocket&&) noexcept = default;

  /// A new unbound socket of `family` on the current thread's scheduler.
  static Expected<UdpSocket> open(AddressFamily family = AddressFamily::ipv4);
  /// open + bind (port 0 picks a free port).
  static Expected<UdpSocket> bind_to(const SocketAddress& addr);

  /// Fix the peer: send()/recv() then talk to it only (datagrams from others are dropped
  /// by the kernel). Synchronous: UDP connect does not block.
  Expected<void> connect(const SocketAddress& peer);

  /// Receive one datagram; fills `*from` with the sender if given.
  RecvFromAwaitable recv_from(std::span<std::byte> buf, SocketAddress* from = nullptr, Timeout t = {}) noexcept {
    return RecvFromAwaitable(io_fd(), buf, from, t);
  }
  /// recv_from() without the sender's address (for connected sockets).
  RecvFromAwaitable recv(std::span<std::byte> buf, Timeout t = {}) noexcept { return recv_from(buf, nullptr, t); }

  /// Send one datagram to `to` (or, with send(), to the connected peer).
  SendToAwaitable send_to(std::span<const std::byte> buf, const SocketAddress& to, Timeout t = {}) noexcept {
    return SendToAwaitable(io_fd(), buf, &to, t);
  }
  /// Receive up to slots.size() datagrams with as few syscalls as possible (recvmmsg, up
  /// to 64 per call): waits until at least one is there, then takes everything already
  /// queued that fits. Yields how many slots were filled (their size, truncation and
  /// sender set), or the error (timed_out if nothing arrived within `t`). The buffers must
  /// stay alive until the co_await returns.
  Task<Expected<std::size_t>> recv_batch(std::span<DatagramSlot> slots, Timeout t = {});
  /// Send every datagram of `msgs` (sendmmsg, up to 64 per call), waiting for socket
  /// buffer space as needed. Yields msgs.size(), or the error with the datagrams before
  /// the failing one sent (each datagram is sent whole or not at all).
  Task<Expected<std::size_t>> send_batch(std::span<const OutgoingDatagram> msgs, Timeout t = {});

  /// Send one datagram to the connected peer.
  SendToAwaitable send(std::span<const std::byte> buf, Timeout t = {}) noexcept {
    return SendToAwaitable(io_fd(), buf, nullptr, t);
  }

 private:
  UdpSocket(int fd, Scheduler* sched) noexcept : Socket(fd, sched) {}
};

}  // namespace galay
