#pragma once
/// @file stream_receiver.h
/// StreamReceiver: receive a TCP (or any stream) socket's bytes into a BufferPool without
/// a copy. On io_uring one multishot recv stays armed on a provided-buffer ring, so a
/// steady stream costs no submission per receive; on epoll/kqueue each receive is a plain
/// recv into a pool buffer. Same behaviour on every backend:
///
///   auto pool = BufferPool::create(1024, 4096);
///   StreamReceiver rx(sock, **pool);
///   for (;;) {
///     auto chunk = co_await rx.recv();          // Expected<PooledChunk>
///     if (!chunk || chunk->empty()) break;      // error or EOF
///     use(chunk->data());                       // the buffer returns to the pool when dropped
///   }
///
/// When the pool is empty a receive waits until the application drops a chunk (with the
/// timeout, if given); it never hangs once buffers return. The socket and the pool must
/// outlive the receiver; the receiver stays put (not movable) while it exists.

#include "galay-kernel/net/tcp_socket.h"
#include "galay-kernel/io/buffer_pool.h"
#include "galay-kernel/io/op.h"

namespace galay {

/// `co_await rx.recv()` → Expected<PooledChunk>.
class [[nodiscard]] PooledRecvAwaitable : public IoAwaitable {
 public:
  /// Take the next received chunk of stream `st`, waiting if none is queued.
  PooledRecvAwaitable(PooledRecvState& st, Timeout t) noexcept : IoAwaitable(OpCode::recv_pooled, st.fd, t) {
    op_.multishot = &st;  // the op holds the receiver's state: nothing else to keep
  }
  /// Coroutine protocol: a chunk (empty at EOF), or the error.
  Expected<PooledChunk> await_resume() noexcept {
    if (op_.result < 0) return Unexpected(op_.error());
    if (op_.result == 0) return PooledChunk();
    return PooledChunk(static_cast<PooledRecvState&>(*op_.multishot).pool, static_cast<std::uint16_t>(op_.aux),
                       static_cast<std::uint32_t>(op_.result));
  }
};

/// Receives a TCP stream into a shared BufferPool: on io_uring one multishot recv on the
/// pool's provided-buffer ring (no copy, no per-message syscall); elsewhere a readiness
/// loop that receives into pool buffers. Chunks are handed out in order and go back to the
/// pool when dropped. One recv() at a time.
class StreamReceiver {
 public:
  /// Receive `socket`'s data into `pool`; both must outlive the receiver. `options` bound
  /// its share of the pool (ReceiverOptions::max_buffers).
  StreamReceiver(TcpSocket& socket, BufferPool& pool, ReceiverOptions options = {}) noexcept;
  StreamReceiver(const StreamReceiver&) = delete;
  StreamReceiver& operator=(const StreamReceiver&) = delete;
  /// Ends the kernel receive and waits until the kernel has let go; queued chunks return
  /// to the pool.
  ~StreamReceiver();

  /// The next chunk of the stream (empty chunk: EOF). One recv at a time per receiver.
  PooledRecvAwaitable recv(Timeout timeout = {}) noexcept { return PooledRecvAwaitable(st_, timeout); }

 private:
  PooledRecvState st_;
};

}  // namespace galay
