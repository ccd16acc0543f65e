// A complete echo server: one coroutine per connection, on the best backend available.
// Usage: echo_server [port]   (listens on 127.0.0.1)
#include <array>
#include <cstdio>
#include <cstdlib>

#include "galay-kernel/galay-kernel.h"

using namespace galay;

Task<void> serve(TcpSocket conn) {
  std::array<std::byte, 16384> buf;  // lives in the coroutine frame: no allocation per message
  for (;;) {
    auto n = co_await conn.recv(buf, std::chrono::seconds(60));
    if (!n || *n == 0) co_return;  // error, idle timeout or EOF: the socket closes itself
    if (!co_await conn.send_all(std::span(buf.data(), *n))) co_return;
  }
}

Task<void> listen(std::uint16_t port) {
  auto listener = TcpSocket::listen_on(SocketAddress::loopback(port));
  if (!listener) {
    std::fprintf(stderr, "listen: %s\n", listener.error().message().c_str());
    co_return;
  }
  std::printf("echo server on %s\n", listener->local_address()->to_string().c_str());
  for (;;) {
    auto conn = co_await listener->accept();
    if (!conn) continue;  // e.g. EMFILE: the error is a value; keep serving
    conn->set_nodelay(true);
    spawn(serve(std::move(*conn))).detach();
  }
}

int main(int argc, char** argv) {
  auto sched = Scheduler::create();  // io_uring if it works here, else epoll (kqueue on BSD/macOS)
  if (!sched) return 1;
  std::printf("backend: %s\n", (*sched)->backend().describe().c_str());
  (*sched)->block_on(listen(static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : 8080)));
}
