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
/// Ownership, closing and the common options come from Socket (socket.h).

#include <sys/uio.h>

#include <cstddef>
#include <span>
#include <string_view>

#include "galay-kernel/async/socket.h"
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

class TcpSocket : public Socket {
 public:
  /// An empty socket (is_open() == false); every operation on it fails with EBADF.
  TcpSocket() noexcept = default;
  /// Take ownership of a connected or listening fd (made non-blocking here).
  static Expected<TcpSocket> adopt(int fd);
  /// Create a new, unconnected socket of `family` on the current thread's scheduler.
  static Expected<TcpSocket> open(AddressFamily family = AddressFamily::ipv4);
  /// open + SO_REUSEADDR + bind + listen: the usual server start.
  static Expected<TcpSocket> listen_on(const SocketAddress& addr, int backlog = 4096, bool reuse_port = false);

  TcpSocket(TcpSocket&&) noexcept = default;
  TcpSocket& operator=(TcpSocket&&) noexcept = default;

  // ---- set-up (synchronous) ----
  Expected<void> listen(int backlog = 4096);
  Expected<void> set_nodelay(bool on);
  Expected<void> set_keepalive(bool on);

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


 private:
  TcpSocket(int fd, Scheduler* sched) noexcept : Socket(fd, sched) {}
  friend class AcceptAwaitable;
};

}  // namespace galay
