#pragma once
/// @file tcp_acceptor.h
/// TcpAcceptor: accept connections from a listening TcpSocket in a loop. On io_uring one
/// multishot accept (5.19+) stays armed, so a burst of connections costs one SQE, and
/// connections that arrive while nobody awaits queue here; on kernels without multishot
/// accept it falls back to one accept per call. On epoll/kqueue each accept() is a plain
/// accept4. Errors (EMFILE, ...) come back as values and the acceptor keeps working.
///
///   TcpAcceptor acceptor(listener);
///   for (;;) {
///     auto conn = co_await acceptor.accept();   // Expected<TcpSocket>
///     if (conn) spawn(serve(std::move(*conn))).detach();
///   }
///
/// The listener must outlive the acceptor; the acceptor stays put while it exists.

#include "galay-kernel/net/tcp_socket.h"
#include "galay-kernel/io/multishot.h"

namespace galay {

class TcpAcceptor;

/// `co_await acceptor.accept()` → Expected<TcpSocket>.
class [[nodiscard]] MultishotAcceptAwaitable : public IoAwaitable {
 public:
  /// Take the next connection from the acceptor's queue `st`, waiting if it is empty.
  MultishotAcceptAwaitable(AcceptQueueState& st, Timeout t) noexcept : IoAwaitable(OpCode::accept_multishot, st.fd, t) {
    op_.multishot = &st;
    op_.flags = op_result_is_fd;
  }
  /// Coroutine protocol: the accepted socket, or the error (EMFILE and friends are values).
  Expected<TcpSocket> await_resume() noexcept;
};

/// Accepts connections on a listening TcpSocket with one long-lived kernel operation
/// (io_uring multishot accept; a readiness loop elsewhere, or where multishot is refused),
/// queueing them until accept() is called. Use on the listener's scheduler thread.
class TcpAcceptor {
 public:
  /// Start accepting on `listener`, which must outlive the acceptor.
  explicit TcpAcceptor(TcpSocket& listener) noexcept;
  TcpAcceptor(const TcpAcceptor&) = delete;
  TcpAcceptor& operator=(const TcpAcceptor&) = delete;
  /// Ends the kernel's multishot accept and closes connections nobody claimed.
  ~TcpAcceptor();

  /// The next connection. One accept() at a time per acceptor.
  MultishotAcceptAwaitable accept(Timeout timeout = {}) noexcept { return MultishotAcceptAwaitable(st_, timeout); }

 private:
  AcceptQueueState st_;
};

}  // namespace galay
