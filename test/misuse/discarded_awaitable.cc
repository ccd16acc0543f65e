// Compile-time check (test/CMakeLists.txt): an I/O awaitable whose co_await was forgotten
// must not compile quietly. Built twice: as is it must fail with a nodiscard diagnostic;
// with GALAY_MISUSE_CONTROL (every awaitable awaited) it must compile, which proves the
// failure comes from the discarded awaitables and not from a broken build line.
#include "galay-kernel/galay-kernel.h"

namespace {

galay::Task<void> forgets(galay::TcpSocket& sock, galay::File& file) {
#if defined(GALAY_MISUSE_CONTROL)
  (void)co_await sock.close();
  (void)co_await file.fsync();
  (void)co_await galay::sleep_for(std::chrono::milliseconds(1));
#else
  sock.close();  // the fd leaves the socket, and nothing ever closes it
  file.fsync();
  galay::sleep_for(std::chrono::milliseconds(1));
  co_return;
#endif
}

}  // namespace

int main() {
  galay::TcpSocket s;
  galay::File f;
  auto t = forgets(s, f);
  return t.valid() ? 0 : 1;
}
