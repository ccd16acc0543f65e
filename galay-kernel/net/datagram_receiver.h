#pragma once
/// @file datagram_receiver.h
/// DatagramReceiver: receive a UDP socket's datagrams into a BufferPool without a copy.
/// On io_uring one multishot recvmsg stays armed on the pool's provided-buffer ring: the
/// kernel writes each datagram, its sender and its real length into a buffer of its choice,
/// and a steady flow costs no submission per datagram. On epoll/kqueue each receive is a
/// recvmsg into a pool buffer. Same behaviour on every backend:
///
///   auto pool = BufferPool::create(256, 2048);
///   DatagramReceiver rx(sock, **pool);
///   auto d = co_await rx.recv(1s);         // Expected<PooledDatagram>
///   use(d->payload(), d->sender());         // the buffer returns to the pool when d dies
///
/// Each pool buffer holds kPooledDatagramPayloadOffset bytes of header and address, then
/// the payload: a datagram longer than the rest is cut and reported `truncated()`. When the
/// pool is empty a receive waits until the application drops a datagram (the datagrams
/// meanwhile wait in the socket's receive buffer, as they would for recvmsg).

#include "galay-kernel/net/udp_socket.h"
#include "galay-kernel/net/address.h"
#include "galay-kernel/io/buffer_pool.h"
#include "galay-kernel/io/op.h"

namespace galay {

/// One received datagram in a pool buffer. Dropping it returns the buffer.
class PooledDatagram {
 public:
  PooledDatagram() noexcept = default;
  /// The datagram that the backend stored in `chunk` (made by receivers, not by users).
  explicit PooledDatagram(PooledChunk chunk) noexcept;
  /// The payload bytes that were stored (valid while this object lives).
  std::span<const std::byte> payload() const noexcept { return payload_; }
  /// The sender's address.
  const SocketAddress& sender() const noexcept { return sender_; }
  /// The datagram's real size (larger than payload().size() when truncated).
  std::size_t size() const noexcept { return size_; }
  /// True if the datagram did not fit in the buffer and was cut.
  bool truncated() const noexcept { return truncated_; }

 private:
  PooledChunk chunk_;
  std::span<const std::byte> payload_;
  SocketAddress sender_;
  std::size_t size_ = 0;
  bool truncated_ = false;
};

/// `co_await rx.recv()` → Expected<PooledDatagram>.
class [[nodiscard]] PooledDatagramAwaitable : public IoAwaitable {
 public:
  /// Take the next datagram received for `st`, waiting if none is queued.
  PooledDatagramAwaitable(PooledRecvState& st, Timeout t) noexcept;
  /// Coroutine protocol: the datagram, or the error.
  Expected<PooledDatagram> await_resume() noexcept;

 private:
  PooledRecvState& st_;
};

/// Receives a UDP socket's datagrams into a shared BufferPool (see the file comment). The
/// socket and the pool must outlive it; it stays put (not movable). One recv() at a time.
class DatagramReceiver {
 public:
  /// Receive `socket`'s datagrams into `pool`, whose buffers must be larger than
  /// kPooledDatagramPayloadOffset (receives fail with `invalid_argument` otherwise).
  DatagramReceiver(UdpSocket& socket, BufferPool& pool, ReceiverOptions options = {}) noexcept;
  DatagramReceiver(const DatagramReceiver&) = delete;
  DatagramReceiver& operator=(const DatagramReceiver&) = delete;
  /// Ends the kernel receive and waits until the kernel has let go; queued datagrams
  /// return to the pool.
  ~DatagramReceiver();
  /// The next datagram.
  PooledDatagramAwaitable recv(Timeout timeout = {}) noexcept { return PooledDatagramAwaitable(st_, timeout); }

 private:
  PooledRecvState st_;
};

}  // namespace galay
