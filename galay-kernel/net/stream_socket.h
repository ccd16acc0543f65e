#pragma once
/// @file stream_socket.h
/// StreamSocket: byte-stream I/O shared by TcpSocket and UnixStream. Every method returns
/// an awaitable that lives in the caller's coroutine frame and yields Expected<...>; every
/// one takes an optional Timeout (on expiry the kernel operation is cancelled and the
/// result is std::errc::timed_out, with the socket still usable). The caller's buffers
/// must stay alive until the co_await returns; after that the kernel no longer uses them.

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <span>
#include <string_view>

#include "galay-kernel/net/socket.h"

namespace galay {

/// `co_await sock.connect(addr)` → Expected<void>. Holds a copy of the address.
class [[nodiscard]] ConnectAwaitable : public VoidAwaitable {
 public:
  /// Connect `fd` to the `len`-byte address at `addr` (copied), with an optional time limit.
  ConnectAwaitable(int fd, const sockaddr* addr, socklen_t len, Timeout t) noexcept;
  template <class P>
  /// Coroutine protocol: points the op at the copied address and starts it.
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    op_.addr = reinterpret_cast<sockaddr*>(&addr_);  // into this object, now that it stays put
    op_.addrlen = len_;
    return IoAwaitable::await_suspend(h);
  }

 private:
  sockaddr_storage addr_{};
  socklen_t len_ = 0;
};

/// `co_await sock.writev(iov)` → Expected<size_t>: a gather send, as sendmsg (so it never
/// raises SIGPIPE), with the msghdr in this object.
class [[nodiscard]] WritevAwaitable : public SizeAwaitable {
 public:
  /// Send the buffers in `iov` (the array must outlive the co_await) on `fd`.
  WritevAwaitable(int fd, std::span<const iovec> iov, Timeout t) noexcept
      : SizeAwaitable(OpCode::sendmsg, fd, t), iov_(iov) {}
  template <class P>
  /// Coroutine protocol: points the op at the header, in this object now that it stays put.
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    hdr_.bind_vector(op_, iov_.data(), iov_.size());
    return IoAwaitable::await_suspend(h);
  }

 private:
  std::span<const iovec> iov_;
  MessageHeader hdr_;
};

/// A connected byte stream (TCP or Unix): receive, send (some or all), scatter/gather, listen.
/// Every I/O call is an awaitable living in the caller's frame; see the file comment for
/// timeouts and buffer lifetime.
class StreamSocket : public Socket {
 public:
  /// Take over the fd of another stream socket; it becomes empty.
  StreamSocket(StreamSocket&&) noexcept = default;
  /// Close this socket's fd, then take over the other's.
  StreamSocket& operator=(StreamSocket&&) noexcept = default;

  /// Start listening (after bind()).
  Expected<void> listen(int backlog = 4096);

  /// Receive up to buf.size() bytes; 0 means the peer closed its side (EOF).
  SizeAwaitable recv(std::span<std::byte> buf, Timeout timeout = {}) noexcept;
  /// recv() into `len` bytes at `data`.
  SizeAwaitable recv(void* data, std::size_t len, Timeout timeout = {}) noexcept {
    return recv(std::span<std::byte>(static_cast<std::byte*>(data), len), timeout);
  }

  /// Send some of `buf`; yields how many bytes went out (possibly fewer).
  SizeAwaitable send(std::span<const std::byte> buf, Timeout timeout = {}) noexcept;
  /// send() of `len` bytes at `data`.
  SizeAwaitable send(const void* data, std::size_t len, Timeout timeout = {}) noexcept {
    return send(std::span<const std::byte>(static_cast<const std::byte*>(data), len), timeout);
  }
  /// send() of the bytes of `s`.
  SizeAwaitable send(std::string_view s, Timeout timeout = {}) noexcept { return send(s.data(), s.size(), timeout); }

  /// Send all of `buf`, looping over partial sends inside the backend; yields buf.size().
  /// On error the bytes already sent are not reported: the connection is unusable then.
  SizeAwaitable send_all(std::span<const std::byte> buf, Timeout timeout = {}) noexcept;
  /// send_all() of `len` bytes at `data`.
  SizeAwaitable send_all(const void* data, std::size_t len, Timeout timeout = {}) noexcept {
    return send_all(std::span<const std::byte>(static_cast<const std::byte*>(data), len), timeout);
  }
  /// send_all() of the bytes of `s`.
  SizeAwaitable send_all(std::string_view s, Timeout timeout = {}) noexcept {
    return send_all(s.data(), s.size(), timeout);
  }
  /// send_all() without copying `buf` into the kernel where the backend can: on io_uring
  /// (6.0+) with SEND_ZC, the network card reads the caller's pages. It completes only once
  /// the kernel has released them, which for TCP means the data was acknowledged by the peer:
  /// later than send_all(). Worth it only for large buffers on a real NIC (threshold and
  /// loopback figures in docs/benchmark.md); other backends and older kernels send normally.
  SizeAwaitable send_zero_copy(std::span<const std::byte> buf, Timeout timeout = {}) noexcept {
    SizeAwaitable a = send_all(buf, timeout);
    a.op().flags |= op_zero_copy;
    return a;
  }

  /// Scatter receive / gather send. The iovec array must outlive the co_await.
  SizeAwaitable readv(std::span<const iovec> iov, Timeout timeout = {}) noexcept;
  /// Gather send of the buffers in `iov` (as sendmsg, never raising SIGPIPE).
  WritevAwaitable writev(std::span<const iovec> iov, Timeout timeout = {}) noexcept {
    return WritevAwaitable(io_fd(), iov, timeout);
  }

 protected:
  StreamSocket() noexcept = default;
  /// Adopt `fd` (non-blocking) for `sched`.
  StreamSocket(int fd, Scheduler* sched) noexcept : Socket(fd, sched) {}
};

}  // namespace galay
