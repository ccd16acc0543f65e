#pragma once
/// @file socket.h
/// Socket: what every socket type shares. It owns the fd, is move-only, closes through its
/// scheduler (pending operations complete with operation_canceled first), and offers the
/// synchronous set-up calls. TcpSocket and UdpSocket add their awaitable I/O.
///
/// A socket belongs to the scheduler of the thread that created (or accepted) it; use it
/// and destroy it on that thread, before the scheduler. The scheduler holds fd numbers
/// only, never pointers to the socket, so moving a socket is always safe.

#include <sys/socket.h>

#include "galay-kernel/net/address.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/io/fd_owner.h"
#include "galay-kernel/io/op.h"

namespace galay {

class Scheduler;

/// Ways to shut a connection down.
enum class ShutdownHow { read = SHUT_RD, write = SHUT_WR, both = SHUT_RDWR };

/// Base of every socket type: owns one non-blocking fd bound to the scheduler of the thread
/// that created it, with the options and operations common to all sockets. Move-only; use
/// and destroy it on that scheduler's thread. Synchronous set-up calls return Expected<void>
/// with the errno of the failed syscall.
class Socket : public FdOwner {
 public:
  /// bind(2) to `addr`.
  Expected<void> bind(const SocketAddress& addr);
  /// SO_REUSEADDR.
  Expected<void> set_reuse_addr(bool on);
  /// SO_REUSEPORT (one listener per thread on the same port).
  Expected<void> set_reuse_port(bool on);
  /// SO_RCVBUF, in bytes (the kernel doubles it for bookkeeping).
  Expected<void> set_recv_buffer_size(int bytes);
  /// SO_SNDBUF, in bytes (the kernel doubles it for bookkeeping).
  Expected<void> set_send_buffer_size(int bytes);
  /// The address the socket is bound to (getsockname).
  Expected<SocketAddress> local_address() const;
  /// The connected peer's address (getpeername).
  Expected<SocketAddress> peer_address() const;
  /// Shut down one or both directions (half-close with ShutdownHow::write).
  Expected<void> shutdown(ShutdownHow how);

  /// Wait until readable / writable (for callers that need readiness, e.g. to drive a
  /// third-party non-blocking API on the fd).
  VoidAwaitable wait_readable(Timeout timeout = {}) noexcept {
    return VoidAwaitable(OpCode::poll_read, io_fd(), timeout);
  }
  /// See wait_readable().
  VoidAwaitable wait_writable(Timeout timeout = {}) noexcept {
    return VoidAwaitable(OpCode::poll_write, io_fd(), timeout);
  }

  /// Close the socket: pending operations complete with operation_canceled first, then the
  /// fd is released. The socket is empty afterwards; closing an empty socket yields EBADF.
  VoidAwaitable close() noexcept;

 protected:
  Socket() noexcept = default;
  /// Adopt `fd` (already non-blocking) for `sched`.
  Socket(int fd, Scheduler* sched) noexcept : FdOwner(fd, sched) {}
  /// socket(2) with SOCK_NONBLOCK|SOCK_CLOEXEC; fd or -errno.
  static int open_fd(int family, int type) noexcept;
  /// setsockopt(2) with an int value.
  Expected<void> set_option(int level, int name, int value);
};

}  // namespace galay
