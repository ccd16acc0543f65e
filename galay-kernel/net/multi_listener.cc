#include "galay-kernel/net/multi_listener.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <utility>

#include "galay-kernel/runtime/sleep.h"
#include "galay-kernel/sync/channel.h"
#include "galay-kernel/sync/event.h"

namespace galay {

namespace detail {

struct ServerState {
  ServerState(Runtime& r, std::size_t workers, ConnectionHandler h)
      : rt(r), handler(std::move(h)), accepted(std::make_unique<std::atomic<std::uint64_t>[]>(workers)), n(workers) {}

  Runtime& rt;
  ConnectionHandler handler;
  std::unique_ptr<std::atomic<std::uint64_t>[]> accepted;  // per worker
  std::size_t n;
  std::size_t listeners = 0;
  SocketAddress address;                  // written before `opened` reports success
  sync::Channel<std::error_code> opened;  // each listener reports its listen() result
  sync::Event stop;                       // stop accepting
};

}  // namespace detail

namespace {

using State = std::shared_ptr<detail::ServerState>;

/// Owns an fd until a TcpSocket adopts it, so a hand-off task destroyed before it runs
/// (runtime shutdown) still closes the connection.
class OwnedFd {
 public:
  explicit OwnedFd(int fd) noexcept : fd_(fd) {}
  OwnedFd(OwnedFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  OwnedFd& operator=(OwnedFd&&) = delete;
  ~OwnedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const noexcept { return fd_; }
  void release() noexcept { fd_ = -1; }

 private:
  int fd_;
};

bool canceled(const std::error_code& ec) {
  return ec == std::errc::operation_canceled || ec == std::errc::timed_out || ec == std::errc::bad_file_descriptor;
}

// Out of fds or memory: accepting again at once would spin. Back off briefly.
bool transient_shortage(int err) { return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM; }

Task<void> serve_connection(State st, TcpSocket conn) {
  // `st` keeps the handler (and whatever it captured) alive while its coroutine runs.
  co_await st->handler(std::move(conn));
}

Task<void> adopt_and_serve(State st, OwnedFd fd, std::size_t worker) {
  // Runs on the target worker: adopting here makes the socket belong to its scheduler.
  auto sock = TcpSocket::adopt(fd.get());
  if (!sock) co_return;  // OwnedFd closes it
  fd.release();
  st->accepted[worker].fetch_add(1, std::memory_order_relaxed);
  co_await st->handler(std::move(*sock));
}

/// Cancels `loop` (same scheduler) once the server is told to stop.
Task<void> stop_watcher(State st, JoinHandle<void> loop) {
  co_await st->stop.wait();
  loop.cancel();
}

/// Turns the runtime's shutdown into a server stop.
Task<void> shutdown_bridge(State st) {
  co_await st->rt.stop_event().wait();
  st->stop.set();
}

Task<void> reuseport_loop(State st, std::size_t worker, SocketAddress addr, int backlog) {
  auto listener = TcpSocket::listen_on(addr, backlog, /*reuse_port=*/true);
  if (!listener) {
    (void)st->opened.try_send(listener.error());
    co_return;
  }
  if (worker == 0) {
    if (auto a = listener->local_address()) st->address = *a;
  }
  (void)st->opened.try_send(std::error_code{});
  for (;;) {
    auto conn = co_await listener->accept();
    if (!conn) {
      if (canceled(conn.error())) co_return;
      if (transient_shortage(conn.error().value())) {
        if (!co_await sleep_for(std::chrono::milliseconds(10))) co_return;
      }
      continue;
    }
    st->accepted[worker].fetch_add(1, std::memory_order_relaxed);
    st->rt.spawn_on(worker, serve_connection(st, std::move(*conn))).detach();
  }
}

Task<void> round_robin_loop(State st, SocketAddress addr, int backlog) {
  auto listener = TcpSocket::listen_on(addr, backlog, /*reuse_port=*/false);
  if (!listener) {
    (void)st->opened.try_send(listener.error());
    co_return;
  }
  if (auto a = listener->local_address()) st->address = *a;
  (void)st->opened.try_send(std::error_code{});
  std::size_t next = 0;
  for (;;) {
    if (auto ready = co_await listener->wait_readable(); !ready) {
      if (canceled(ready.error())) co_return;
      continue;
    }
    // Drain the backlog: raw accept4 keeps the fd out of this scheduler, so the target
    // scheduler can adopt it.
    for (unsigned burst = 1;; ++burst) {
      int fd = ::accept4(listener->native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (transient_shortage(errno)) {
          if (!co_await sleep_for(std::chrono::milliseconds(10))) co_return;
        }
        break;  // EAGAIN (drained) or an error on this connection only
      }
      const std::size_t target = next++ % st->n;
      st->rt.spawn_on(target, adopt_and_serve(st, OwnedFd(fd), target)).detach();
      if (burst % 64 == 0) co_await yield();  // let other tasks on this scheduler run
    }
  }
}

Task<Expected<Server>> start_server(State st, std::size_t first, std::size_t count,
                                    std::function<Task<void>(std::size_t, SocketAddress)> make_loop,
                                    SocketAddress addr) {
  Runtime& rt = st->rt;
  st->listeners = count;
  // The first listener goes alone, so that port 0 becomes a real port the others can share.
  std::error_code first_error;
  for (std::size_t k = 0; k < count; ++k) {
    const std::size_t worker = (first + k) % st->n;
    JoinHandle<void> loop = rt.spawn_on(worker, make_loop(worker, k == 0 ? addr : st->address));
    rt.spawn_on(worker, stop_watcher(st, std::move(loop))).detach();
    if (k == 0 || k + 1 == count) {
      // Wait for the listeners started so far.
      const std::size_t expect = k == 0 ? 1 : count - 1;
      for (std::size_t j = 0; j < expect; ++j) {
        auto r = co_await st->opened.recv();
        std::error_code ec = r ? *r : r.error();
        if (ec && !first_error) first_error = ec;
      }
      if (first_error) break;
    }
  }
  if (first_error) {
    st->stop.set();
    co_return make_error(first_error);
  }
  rt.spawn_on(first, shutdown_bridge(st)).detach();
  if (rt.stopping()) st->stop.set();
  co_return Server(std::move(st));
}

}  // namespace

// ---- Server ----

const SocketAddress& Server::address() const noexcept { return state_->address; }
std::size_t Server::listeners() const noexcept { return state_->listeners; }
std::uint64_t Server::accepted_on(std::size_t i) const noexcept {
  return state_->accepted[i].load(std::memory_order_relaxed);
}
std::uint64_t Server::accepted() const noexcept {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < state_->n; ++i) total += accepted_on(i);
  return total;
}
void Server::stop() noexcept {
  if (state_) state_->stop.set();
}

// Plain functions, not coroutines: they build the state and hand over the coroutine.
// (Temporaries inside a `co_return co_await ...` are destroyed twice by GCC 12.)
Task<Expected<Server>> serve_reuseport(Runtime& rt, SocketAddress addr, ConnectionHandler handler,
                                       ServeOptions options) {
  auto st = std::make_shared<detail::ServerState>(rt, rt.size(), std::move(handler));
  const int backlog = options.backlog;
  std::function<Task<void>(std::size_t, SocketAddress)> make_loop = [st, backlog](std::size_t worker, SocketAddress a) {
    return reuseport_loop(st, worker, a, backlog);
  };
  return start_server(std::move(st), 0, rt.size(), std::move(make_loop), addr);
}

Task<Expected<Server>> serve_round_robin(Runtime& rt, SocketAddress addr, ConnectionHandler handler,
                                         ServeOptions options) {
  auto st = std::make_shared<detail::ServerState>(rt, rt.size(), std::move(handler));
  const int backlog = options.backlog;
  std::function<Task<void>(std::size_t, SocketAddress)> make_loop = [st, backlog](std::size_t, SocketAddress a) {
    return round_robin_loop(st, a, backlog);
  };
  return start_server(std::move(st), options.acceptor % rt.size(), 1, std::move(make_loop), addr);
}

}  // namespace galay
