#pragma once
/// @file multi_listener.h
/// Accepting connections on every worker of a Runtime, two ways:
///
/// - serve_reuseport: one SO_REUSEPORT listener per scheduler, all bound to the same
///   address; the kernel spreads incoming connections over them (by a hash of the 4-tuple)
///   and each scheduler accepts and serves its own. No cross-thread hand-off at all.
/// - serve_round_robin: a single listener on one scheduler; it accepts with accept4(2) and
///   hands each new fd to the next scheduler in turn, which adopts it there (a socket
///   belongs to the scheduler of the thread that adopts it). For systems where reuseport
///   is unwanted (it rehashes connections when listeners come and go).
///
/// Both run `handler(socket)` as a task on the scheduler that owns the connection, and stop
/// accepting (closing their listeners) when Server::stop() is called or when the Runtime
/// begins shutdown(); handlers already running go on until the runtime's deadline.
///
///   auto server = rt.block_on(serve_reuseport(rt, SocketAddress::loopback(8080), echo));
///   if (!server) ...;  // Expected<Server>
///   std::printf("listening on %s\n", server->address().to_string().c_str());

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "galay-kernel/net/tcp_socket.h"
#include "galay-kernel/net/address.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/runtime/runtime.h"
#include "galay-kernel/coro/task.h"

namespace galay {

/// Serves one accepted connection; runs on the scheduler that owns it. Called once per
/// connection (copied to every scheduler, so it must be safe to call from several threads).
using ConnectionHandler = std::function<Task<void>(TcpSocket)>;

/// Listener settings.
struct ServeOptions {
  /// listen(2) backlog of each listener.
  int backlog = 4096;
  /// serve_round_robin: the worker whose scheduler runs the single acceptor.
  std::size_t acceptor = 0;
};

namespace detail {
struct ServerState;
}

/// The accept loops started by serve_reuseport / serve_round_robin. Copyable handle;
/// dropping it does not stop the server.
class Server {
 public:
  Server() = default;
  /// Wrap the state created by serve_reuseport / serve_round_robin.
  explicit Server(std::shared_ptr<detail::ServerState> state) noexcept : state_(std::move(state)) {}

  /// The bound address (with the real port when port 0 was asked for).
  const SocketAddress& address() const noexcept;
  /// Number of listeners (schedulers accepting): size() of the runtime, or 1.
  std::size_t listeners() const noexcept;
  /// Connections handed to worker `i` so far.
  std::uint64_t accepted_on(std::size_t i) const noexcept;
  /// Connections accepted so far, in total.
  std::uint64_t accepted() const noexcept;
  /// Stop accepting: the listeners close soon after. Running handlers are not affected.
  /// Idempotent; any thread.
  void stop() noexcept;

 private:
  std::shared_ptr<detail::ServerState> state_;
};

/// One SO_REUSEPORT listener per scheduler of `rt` on `addr`. Completes once every
/// listener is listening (so connections made after it reach all of them), or fails with
/// the first listener's error (none is left open then).
Task<Expected<Server>> serve_reuseport(Runtime& rt, SocketAddress addr, ConnectionHandler handler,
                                       ServeOptions options = {});

/// One listener on worker `options.acceptor`, handing connections to the schedulers of `rt`
/// round-robin. Completes once it is listening.
Task<Expected<Server>> serve_round_robin(Runtime& rt, SocketAddress addr, ConnectionHandler handler,
                                         ServeOptions options = {});

}  // namespace galay
