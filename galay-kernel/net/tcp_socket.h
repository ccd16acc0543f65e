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
#include <string>
#include <string_view>

#include "galay-kernel/net/socket.h"
#include "galay-kernel/net/stream_socket.h"
#include "galay-kernel/net/address.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/io/op.h"
#include "galay-kernel/coro/task.h"

namespace galay {

class Scheduler;
class TcpSocket;

/// `co_await sock.accept()` → Expected<TcpSocket>.
class [[nodiscard]] AcceptAwaitable : public IoAwaitable {
 public:
  /// Accept on listener `fd`; the new socket belongs to `sched` (or the current scheduler).
  AcceptAwaitable(int fd, Scheduler* sched, SocketAddress* peer, Timeout t) noexcept;
  template <class P>
  /// Coroutine protocol: points the op at this object's address storage and starts it.
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    op_.addr = storage_.data();  // point into this object only once it has stopped moving
    op_.addrlen = SocketAddress::capacity();
    return IoAwaitable::await_suspend(h);
  }
  /// Coroutine protocol: the accepted socket, or the error (EMFILE, timed_out, ...).
  Expected<TcpSocket> await_resume() noexcept;

 private:
  Scheduler* sched_;
  SocketAddress* peer_;
  SocketAddress storage_;
};

/// A TCP socket (IPv4 or IPv6): a listener, or one end of a connection.
class TcpSocket : public StreamSocket {
 public:
  /// An empty socket (is_open() == false); every operation on it fails with EBADF.
  TcpSocket() noexcept = default;
  /// Take ownership of a connected or listening fd (made non-blocking here).
  static Expected<TcpSocket> adopt(int fd);
  /// Wrap an fd that accept4(SOCK_NONBLOCK) just returned on `sched` (no syscall).
  static TcpSocket from_accepted(int fd, Scheduler* sched) noexcept { return TcpSocket(fd, sched); }
  /// Create a new, unconnected socket of `family` on the current thread's scheduler.
  static Expected<TcpSocket> open(AddressFamily family = AddressFamily::ipv4);
  /// open + SO_REUSEADDR + bind + listen: the usual server start.
  static Expected<TcpSocket> listen_on(const SocketAddress& addr, int backlog = 4096, bool reuse_port = false);

  /// Take over another socket's fd; it becomes empty.
  TcpSocket(TcpSocket&&) noexcept = default;
  /// Close this socket's fd, then take over the other's.
  TcpSocket& operator=(TcpSocket&&) noexcept = default;

  // ---- set-up (synchronous) ----
  /// TCP_NODELAY: send small segments at once (no Nagle delay).
  Expected<void> set_nodelay(bool on);
  /// SO_KEEPALIVE.
  Expected<void> set_keepalive(bool on);

  // ---- awaitable I/O ----

  /// Accept one connection; fills `*peer` if given.
  AcceptAwaitable accept(SocketAddress* peer = nullptr, Timeout timeout = {}) noexcept {
    const int fd = io_fd();  // binds sched_ first
    return AcceptAwaitable(fd, sched_, peer, timeout);
  }
  /// accept() with a time limit and no peer address.
  AcceptAwaitable accept(Timeout timeout) noexcept { return accept(nullptr, timeout); }

  /// Connect to `addr` (socket must come from open()).
  ConnectAwaitable connect(const SocketAddress& addr, Timeout timeout = {}) noexcept {
    return ConnectAwaitable(io_fd(), addr.data(), addr.size(), timeout);
  }
  /// Resolve `host` and connect to `port` with Happy Eyeballs (RFC 8305): yields a new
  /// connected socket. Same as connect_by_name(host, port, {.timeout = timeout}); see
  /// net/happy_eyeballs.h.
  static Task<Expected<TcpSocket>> connect(std::string host, std::uint16_t port, Timeout timeout = {});

 private:
  TcpSocket(int fd, Scheduler* sched) noexcept : StreamSocket(fd, sched) {}
  friend class AcceptAwaitable;
};

}  // namespace galay
