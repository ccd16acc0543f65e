// A complete echo server: one coroutine per connection, on the best backend available.
//
//   echo_server [PORT] [-p PORT] [--host 127.0.0.1] [--backend epoll|io_uring|kqueue|auto]
//
// PORT defaults to 8080; 0 picks a free one. Prints "echo_server listening on ADDR ..."
// once it accepts. Exit status 1 if it cannot listen (e.g. the port is taken), 2 on a bad
// command line (the one-line message names the option).
#include <cstdio>
#include <string>

#include "args.h"  // the programs' shared command-line parser (support/args.h)
#include "galay-kernel/galay-kernel.h"

using namespace galay;

// One connection. Received bytes land in buffers of a pool that all connections share (on
// io_uring the kernel picks one only when data arrives), so an idle connection holds no
// buffer: about 0.6 KiB of memory instead of the 16 KiB a buffer in every frame would cost
// (docs/guide.md, "What a connection costs").
Task<void> serve(TcpSocket conn, BufferPool& pool) {
  StreamReceiver rx(conn, pool);
  for (;;) {
    auto chunk = co_await rx.recv(std::chrono::seconds(60));
    if (!chunk || chunk->empty()) co_return;  // error, idle timeout or EOF: the socket closes itself
    if (!co_await conn.send_all(chunk->data())) co_return;
  }  // a chunk goes back to the pool when it is dropped
}

/// Accepts forever; returns 1 only if it cannot listen.
Task<int> listen(SocketAddress addr) {
  auto listener = TcpSocket::listen_on(addr);
  if (!listener) {
    std::fprintf(stderr, "echo_server: cannot listen on %s: %s\n", addr.to_string().c_str(),
                 listener.error().message().c_str());
    co_return 1;
  }
  // The pool outlives every connection task: this frame ends only with the process.
  auto pool = BufferPool::create(1024, 4096);
  if (!pool) {
    std::fprintf(stderr, "echo_server: buffer pool: %s\n", pool.error().message().c_str());
    co_return 1;
  }
  std::printf("echo_server listening on %s backend=%s\n", listener->local_address()->to_string().c_str(),
              Scheduler::current()->describe_backend().c_str());
  std::fflush(stdout);  // scripts wait for this line, also through a pipe
  for (;;) {
    auto conn = co_await listener->accept();
    if (!conn) continue;  // e.g. EMFILE: the error is a value; keep serving
    conn->set_nodelay(true);
    spawn_detached(serve(std::move(*conn), **pool));
  }
}

int main(int argc, char** argv) {
  std::uint16_t port = 8080;
  std::string host = "127.0.0.1";
  BackendKind backend = BackendKind::automatic;
  cli::Parser args("echo_server", "[PORT] [options]");
  args.positional_integer("PORT", "TCP port to listen on, 0 for any free one (default 8080)", port, 0, 65535, false)
      .integer("-p, --port", "PORT", "the same as PORT", port, 0, 65535)
      .host(host)
      .backend(backend);
  args.parse(argc, argv);

  auto sched = Scheduler::create({backend});  // auto: io_uring if it works here, else epoll (kqueue on BSD/macOS)
  if (!sched) {
    std::fprintf(stderr, "echo_server: backend %s: %s\n", std::string(to_string(backend)).c_str(),
                 sched.error().message().c_str());
    return 1;
  }
  return (*sched)->block_on(listen(*SocketAddress::parse(host, port)));
}
