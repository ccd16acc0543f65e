#pragma once
/// @file unix_socket.h
/// Unix-domain stream sockets: filesystem and abstract (Linux) names, socketpair, and
/// passing file descriptors (SCM_RIGHTS) as an awaitable. A listener removes the socket
/// file it created when it is closed or destroyed.

#include <sys/socket.h>
#include <sys/un.h>

#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "galay-kernel/net/stream_socket.h"
#include "galay-kernel/net/udp_socket.h"

namespace galay {

class UnixStream;

/// A Unix-domain address: a filesystem path, or an abstract name written with a leading
/// '@' (Linux only; no file is created).
class UnixAddress {
 public:
  /// Error (std::errc::filename_too_long / invalid_argument) if the name doesn't fit.
  static Expected<UnixAddress> parse(std::string_view name);
  /// True for an abstract name ("@name").
  bool is_abstract() const noexcept { return abstract_; }
  /// The name as given ("/run/x.sock" or "@name").
  const std::string& name() const noexcept { return name_; }
  /// The sockaddr_un, for bind/connect.
  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&addr_); }
  /// Its length (significant for abstract names, which may contain NULs).
  socklen_t size() const noexcept { return len_; }

 private:
  sockaddr_un addr_{};
  socklen_t len_ = 0;
  bool abstract_ = false;
  std::string name_;
};

/// `co_await listener.accept()` → Expected<UnixStream>.
class [[nodiscard]] UnixAcceptAwaitable : public IoAwaitable {
 public:
  /// Accept on the Unix listener `fd`, with an optional time limit.
  UnixAcceptAwaitable(int fd, Timeout t) noexcept : IoAwaitable(OpCode::accept, fd, t) { op_.flags = op_result_is_fd; }
  /// Coroutine protocol: the accepted stream, or the error.
  Expected<UnixStream> await_resume() noexcept;
};

/// Bytes received together with the descriptors that came with them.
struct ReceivedFds {
  /// Data bytes received.
  std::size_t bytes = 0;
  std::size_t fd_count = 0;  ///< descriptors stored in the caller's array (close-on-exec)
  bool truncated = false;    ///< more descriptors arrived than fit (the extra ones were closed)
};

/// Most descriptors one send_fds/recv_fds call carries.
inline constexpr std::size_t kMaxPassedFds = 16;

/// `co_await s.send_fds(data, fds)` → Expected<size_t>.
class [[nodiscard]] SendFdsAwaitable : public IoAwaitable {
 public:
  /// Send `data` on `fd` with the descriptors `fds` attached (copied here).
  SendFdsAwaitable(int fd, std::span<const std::byte> data, std::span<const int> fds, Timeout t) noexcept;
  /// More than kMaxPassedFds descriptors: fails with EINVAL without a syscall.
  bool await_ready() const noexcept { return too_many_; }
  template <class P>
  /// Coroutine protocol: builds the msghdr and SCM_RIGHTS control block inside this object.
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    prepare();
    return IoAwaitable::await_suspend(h);
  }
  /// Coroutine protocol: the data bytes sent, or the error.
  Expected<std::size_t> await_resume() const noexcept {
    if (too_many_) return errno_error(EINVAL);
    return op_.size_result();
  }

 private:
  void prepare() noexcept;
  bool too_many_ = false;
  std::span<const std::byte> data_;
  int fds_[kMaxPassedFds];
  std::size_t nfds_;
  MessageHeader hdr_;
  alignas(cmsghdr) unsigned char control_[CMSG_SPACE(sizeof(int) * kMaxPassedFds)];
};

/// `co_await s.recv_fds(buf, fds_out)` → Expected<ReceivedFds>.
class [[nodiscard]] RecvFdsAwaitable : public IoAwaitable {
 public:
  /// Receive into `buf` on `fd`, storing received descriptors in `fds_out`.
  RecvFdsAwaitable(int fd, std::span<std::byte> buf, std::span<int> fds_out, Timeout t) noexcept
      : IoAwaitable(OpCode::recvmsg, fd, t), buf_(buf), out_(fds_out) {
    op_.aux = MSG_CMSG_CLOEXEC;
    op_.flags = op_result_fds_in_msg;
  }
  template <class P>
  /// Coroutine protocol: builds the msghdr inside this object and starts the op.
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    prepare();
    return IoAwaitable::await_suspend(h);
  }
  /// Coroutine protocol: bytes and descriptors received, or the error.
  Expected<ReceivedFds> await_resume() noexcept;

 private:
  void prepare() noexcept;
  std::span<std::byte> buf_;
  std::span<int> out_;
  MessageHeader hdr_;
  alignas(cmsghdr) unsigned char control_[CMSG_SPACE(sizeof(int) * kMaxPassedFds)];
};

/// @cond INTERNAL
namespace detail {
/// The socket file a Unix socket created by binding a filesystem path: removed when the
/// owner is destroyed, closed or assigned over. Move-only.
class SocketFile {
 public:
  SocketFile() noexcept = default;
  SocketFile(SocketFile&& o) noexcept : path_(std::exchange(o.path_, {})) {}
  SocketFile& operator=(SocketFile&& o) noexcept {
    if (this != &o) {
      remove();
      path_ = std::exchange(o.path_, {});
    }
    return *this;
  }
  ~SocketFile() { remove(); }
  /// Own the file at `path` from now on.
  void own(std::string path) { path_ = std::move(path); }
  /// Remove the file now (if any); idempotent.
  void remove() noexcept;

 private:
  std::string path_;
};
}  // namespace detail
/// @endcond

/// A Unix-domain stream socket: filesystem or abstract names, socketpair, and descriptor
/// passing (SCM_RIGHTS). A listener created by listen_on() removes its socket file when
/// closed.
class UnixStream : public StreamSocket {
 public:
  UnixStream() noexcept = default;
  /// Take over another stream's fd (and its socket file, if it is a listener).
  UnixStream(UnixStream&&) noexcept = default;
  /// Close this socket (removing its socket file if it made one), then take over the other's.
  UnixStream& operator=(UnixStream&&) noexcept = default;
  /// Closes the fd; a listener also removes the socket file it created.
  ~UnixStream() = default;

  /// A new unconnected socket on the current thread's scheduler.
  static Expected<UnixStream> open();
  /// Bind + listen on `addr`. A stale socket file at the path is NOT removed (that could
  /// hijack another server's name); remove it yourself if you know it is stale.
  static Expected<UnixStream> listen_on(const UnixAddress& addr, int backlog = 4096);
  /// A connected pair.
  static Expected<std::pair<UnixStream, UnixStream>> pair();
  /// Take ownership of a Unix stream fd (made non-blocking here).
  static Expected<UnixStream> adopt(int fd);

  /// Accept one connection.
  UnixAcceptAwaitable accept(Timeout timeout = {}) noexcept { return UnixAcceptAwaitable(io_fd(), timeout); }
  /// Connect to `addr`.
  ConnectAwaitable connect(const UnixAddress& addr, Timeout timeout = {}) noexcept {
    return ConnectAwaitable(io_fd(), addr.data(), addr.size(), timeout);
  }

  /// Send `data` (at least one byte) with up to kMaxPassedFds descriptors attached. The
  /// descriptors stay open here; the receiver gets duplicates.
  SendFdsAwaitable send_fds(std::span<const std::byte> data, std::span<const int> fds, Timeout t = {}) noexcept {
    return SendFdsAwaitable(io_fd(), data, fds, t);
  }
  /// Receive bytes and any descriptors sent with them into `fds_out`; the caller owns them.
  RecvFdsAwaitable recv_fds(std::span<std::byte> buf, std::span<int> fds_out, Timeout t = {}) noexcept {
    return RecvFdsAwaitable(io_fd(), buf, fds_out, t);
  }

  /// Close now, removing the socket file if this listener created it.
  VoidAwaitable close() noexcept;

 private:
  friend class UnixAcceptAwaitable;
  UnixStream(int fd, Scheduler* sched) noexcept : StreamSocket(fd, sched) {}
  detail::SocketFile file_;  // set on a listener bound to a filesystem path
};

/// `co_await dgram.send_to(buf, addr)` → Expected<size_t>. Holds a copy of the address.
class [[nodiscard]] UnixSendToAwaitable : public IoAwaitable {
 public:
  /// Send `buf` as one datagram on `fd` to `to` (copied).
  UnixSendToAwaitable(int fd, std::span<const std::byte> buf, const UnixAddress& to, Timeout t) noexcept;
  /// Coroutine protocol: builds the msghdr inside this object and starts the op.
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    prepare();
    return IoAwaitable::await_suspend(h);
  }
  /// Coroutine protocol: the bytes sent, or the error (ECONNREFUSED: nobody bound there).
  Expected<std::size_t> await_resume() const noexcept { return op_.size_result(); }

 private:
  void prepare() noexcept;
  std::span<const std::byte> buf_;
  sockaddr_un to_{};
  socklen_t to_len_ = 0;
  MessageHeader hdr_;
};

/// A Unix-domain datagram socket: filesystem or abstract names, socketpair, connected or
/// not. Datagrams keep their boundaries and are never reordered; one longer than the
/// receive buffer is reported as truncated. A socket bound to a filesystem path removes
/// that file when closed.
class UnixDatagram : public Socket {
 public:
  /// An empty socket; every operation on it fails with EBADF.
  UnixDatagram() noexcept = default;
  /// Take over another socket's fd (and its socket file).
  UnixDatagram(UnixDatagram&&) noexcept = default;
  /// Close this socket (removing its socket file), then take over the other's.
  UnixDatagram& operator=(UnixDatagram&&) noexcept = default;
  /// Closes the fd and removes the socket file this socket created.
  ~UnixDatagram() = default;

  /// A new unbound socket on the current thread's scheduler (it can still send_to).
  static Expected<UnixDatagram> open();
  /// open + bind to `addr` (a stale file at the path is not removed: EADDRINUSE).
  static Expected<UnixDatagram> bind_to(const UnixAddress& addr);
  /// A connected pair (socketpair(SOCK_DGRAM)).
  static Expected<std::pair<UnixDatagram, UnixDatagram>> pair();

  /// Fix the peer for send()/recv(). Synchronous.
  Expected<void> connect(const UnixAddress& peer);

  /// Receive one datagram (size and truncation).
  RecvFromAwaitable recv(std::span<std::byte> buf, Timeout t = {}) noexcept {
    return RecvFromAwaitable(io_fd(), buf, nullptr, t);
  }
  /// Send one datagram to the connected peer.
  SendToAwaitable send(std::span<const std::byte> buf, Timeout t = {}) noexcept {
    return SendToAwaitable(io_fd(), buf, nullptr, t);
  }
  /// Send one datagram to `to`.
  UnixSendToAwaitable send_to(std::span<const std::byte> buf, const UnixAddress& to, Timeout t = {}) noexcept {
    return UnixSendToAwaitable(io_fd(), buf, to, t);
  }

  /// Close now, removing the socket file if this socket created it.
  VoidAwaitable close() noexcept;

 private:
  UnixDatagram(int fd, Scheduler* sched) noexcept : Socket(fd, sched) {}
  detail::SocketFile file_;  // set when bound to a filesystem path
};

}  // namespace galay
