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

#include "galay-kernel/common/address.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/kernel/io_op.h"

namespace galay {

class Scheduler;

/// Ways to shut a connection down.
enum class ShutdownHow { read = SHUT_RD, write = SHUT_WR, both = SHUT_RDWR };

class Socket {
 public:
  Socket(Socket&& o) noexcept;
  Socket& operator=(Socket&& o) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  /// Closes the fd; pending operations on it complete with operation_canceled.
  ~Socket();

  bool is_open() const noexcept { return fd_ >= 0; }
  int native_handle() const noexcept { return fd_; }

  Expected<void> bind(const SocketAddress& addr);
  Expected<void> set_reuse_addr(bool on);
  Expected<void> set_reuse_port(bool on);
  Expected<void> set_recv_buffer_size(int bytes);
  Expected<void> set_send_buffer_size(int bytes);
  Expected<SocketAddress> local_address() const;
  Expected<SocketAddress> peer_address() const;
  /// Shut down one or both directions (half-close with ShutdownHow::write).
  Expected<void> shutdown(ShutdownHow how);

  /// Wait until readable / writable (for callers that need readiness, e.g. to drive a
  /// third-party non-blocking API on the fd).
  VoidAwaitable wait_readable(Timeout timeout = {}) noexcept { return VoidAwaitable(OpCode::poll_read, fd_, timeout); }
  VoidAwaitable wait_writable(Timeout timeout = {}) noexcept { return VoidAwaitable(OpCode::poll_write, fd_, timeout); }

  /// Close the socket: pending operations complete with operation_canceled first, then the
  /// fd is released. The socket is empty afterwards; closing an empty socket yields EBADF.
  VoidAwaitable close() noexcept;

 protected:
  Socket() noexcept = default;
  Socket(int fd, Scheduler* sched) noexcept : fd_(fd), sched_(sched) {}
  /// socket(2) with SOCK_NONBLOCK|SOCK_CLOEXEC; fd or -errno.
  static int open_fd(int family, int type) noexcept;
  Expected<void> set_option(int level, int name, int value);
  void close_now() noexcept;

  int fd_ = -1;
  Scheduler* sched_ = nullptr;
};

}  // namespace galay
