#pragma once
/// @file tcp_socket.h
/// TcpSocket: an owning, move-only TCP socket whose I/O operations are awaitables.
///
/// Every I/O method returns an awaitable that lives in the caller's coroutine frame (no
/// allocation) and yields `Expected<...>`: a value, or a std::error_code the caller can act
/// on (compare with std::errc: connection_reset, broken_pipe, connection_refused,
/// timed_out, operation_canceled, bad_file_descriptor, ...). Every I/O method takes an
/// optional Timeout; a timed-out operation is cancelled in the kernel, yields
/// std::errc::timed_out, and leaves the socket usable.
///
/// Buffers: the caller owns them and must keep them alive until the co_await returns; the
/// library guarantees the kernel no longer touches them once it has returned, including
/// after a timeout or cancellation.
///
/// A socket belongs to the scheduler of the thread that created (or accepted) it; use it
/// and destroy it on that thread. The scheduler holds fd numbers only, never pointers to
/// the socket, so moving a socket is always safe.

#include <sys/uio.h>

#include <cstddef>
#include <span>
#include <string_view>

#include "galay-kernel/common/address.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/kernel/io_op.h"

namespace galay {

class Scheduler;
class TcpSocket;

/// `co_await sock.accept()` → Expected<TcpSocket>.
class AcceptAwaitable : public IoAwaitable {
 public:
  AcceptAwaitable(int fd, Scheduler* sched, SocketAddress* peer, Timeout t) noexcept;
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    op_.addr = storage_.data();  // point into this object only once it has stopped moving
    op_.addrlen = SocketAddress::capacity();
    return IoAwaitable::await_suspend(h);
  }
  Expected<TcpSocket> await_resume() noexcept;

 private:
  Scheduler* sched_;
  SocketAddress* peer_;
  SocketAddress storage_;
};

/// `co_await sock.connect(addr)` → Expected<void>.
class ConnectAwaitable : public VoidAwaitable {
 public:
  ConnectAwaitable(int fd, const SocketAddress& addr, Timeout t) noexcept;
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    op_.addr = addr_.data();
    op_.addrlen = addr_.size();
    return IoAwaitable::await_suspend(h);
  }

 private:
  SocketAddress addr_;
};

/// Ways to shut a connection down.
enum class ShutdownHow { read = SHUT_RD, write = SHUT_WR, both = SHUT_RDWR };

class TcpSocket {
 public:
  /// An empty socket (is_open() == false); every operation on it fails with EBADF.
  TcpSocket() noexcept = default;
  /// Take ownership of a connected or listening fd (made non-blocking here).
  static Expected<TcpSocket> adopt(int fd);
  /// Create a new, unconnected socket of `family` on the current thread's scheduler.
  static Expected<TcpSocket> open(AddressFamily family = AddressFamily::ipv4);
  /// open + SO_REUSEADDR + bind + listen: the usual server start.
  static Expected<TcpSocket> listen_on(const SocketAddress& addr, int backlog = 4096, bool reuse_port = false);

  TcpSocket(TcpSocket&& o) noexcept;
  TcpSocket& operator=(TcpSocket&& o) noexcept;
  TcpSocket(const TcpSocket&) = delete;
  TcpSocket& operator=(const TcpSocket&) = delete;
  /// Closes the fd; pending operations on it complete with operation_canceled.
  ~TcpSocket();

  bool is_open() const noexcept { return fd_ >= 0; }
  int native_handle() const noexcept { return fd_; }

  // ---- set-up (synchronous) ----
  Expected<void> bind(const SocketAddress& addr);
  Expected<void> listen(int backlog = 4096);
  Expected<void> set_reuse_addr(bool on);
  Expected<void> set_reuse_port(bool on);
  Expected<void> set_nodelay(bool on);
  Expected<void> set_keepalive(bool on);
  Expected<void> set_recv_buffer_size(int bytes);
  Expected<void> set_send_buffer_size(int bytes);
  Expected<SocketAddress> local_address() const;
  Expected<SocketAddress> peer_address() const;
  /// Shut down one or both directions (half-close with ShutdownHow::write).
  Expected<void> shutdown(ShutdownHow how);

  // ---- awaitable I/O ----

  /// Accept one connection; fills `*peer` if given.
  AcceptAwaitable accept(SocketAddress* peer = nullptr, Timeout timeout = {}) noexcept {
    return AcceptAwaitable(fd_, sched_, peer, timeout);
  }
  AcceptAwaitable accept(Timeout timeout) noexcept { return accept(nullptr, timeout); }

  /// Connect to `addr` (socket must come from open()).
  ConnectAwaitable connect(const SocketAddress& addr, Timeout timeout = {}) noexcept {
    return ConnectAwaitable(fd_, addr, timeout);
  }

  /// Receive up to buf.size() bytes; 0 means the peer closed its side (EOF).
  SizeAwaitable recv(std::span<std::byte> buf, Timeout timeout = {}) noexcept;
  SizeAwaitable recv(void* data, std::size_t len, Timeout timeout = {}) noexcept {
    return recv(std::span<std::byte>(static_cast<std::byte*>(data), len), timeout);
  }

  /// Send some of `buf`; yields how many bytes went out (possibly fewer).
  SizeAwaitable send(std::span<const std::byte> buf, Timeout timeout = {}) noexcept;
  SizeAwaitable send(const void* data, std::size_t len, Timeout timeout = {}) noexcept {
    return send(std::span<const std::byte>(static_cast<const std::byte*>(data), len), timeout);
  }
  SizeAwaitable send(std::string_view s, Timeout timeout = {}) noexcept { return send(s.data(), s.size(), timeout); }

  /// Send all of `buf`, looping over partial sends inside the backend; yields buf.size().
  /// On error the bytes already sent are not reported: the connection is unusable then.
  SizeAwaitable send_all(std::span<const std::byte> buf, Timeout timeout = {}) noexcept;
  SizeAwaitable send_all(const void* data, std::size_t len, Timeout timeout = {}) noexcept {
    return send_all(std::span<const std::byte>(static_cast<const std::byte*>(data), len), timeout);
  }
  SizeAwaitable send_all(std::string_view s, Timeout timeout = {}) noexcept {
    return send_all(s.data(), s.size(), timeout);
  }

  /// Scatter receive / gather send. The iovec array must outlive the co_await.
  SizeAwaitable readv(std::span<const iovec> iov, Timeout timeout = {}) noexcept;
  SizeAwaitable writev(std::span<const iovec> iov, Timeout timeout = {}) noexcept;

  /// Wait until readable / writable (for callers that need readiness, e.g. to use a
  /// third-party non-blocking API on the fd).
  VoidAwaitable wait_readable(Timeout timeout = {}) noexcept { return VoidAwaitable(OpCode::poll_read, fd_, timeout); }
  VoidAwaitable wait_writable(Timeout timeout = {}) noexcept { return VoidAwaitable(OpCode::poll_write, fd_, timeout); }

  /// Close the socket: pending operations complete with operation_canceled first, then the
  /// fd is released. The socket is empty afterwards; closing an empty socket yields EBADF.
  VoidAwaitable close() noexcept;

 private:
  TcpSocket(int fd, Scheduler* sched) noexcept : fd_(fd), sched_(sched) {}
  friend class AcceptAwaitable;
  void close_now() noexcept;

  int fd_ = -1;
  Scheduler* sched_ = nullptr;
};

}  // namespace galay
