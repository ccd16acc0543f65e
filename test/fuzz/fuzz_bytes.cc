// fuzz_bytes: the buffer types against a model.
//
// AlignedBuffer: size, alignment (raised to max_align_t, powers of two only), zero fill,
// span(offset, count) clamped to the buffer, moves leaving the source empty.
//
// BufferPool + StreamReceiver + PooledChunk (epoll scheduler, a loopback TCP pair, a pool of
// 4 buffers of 64 bytes so exhaustion is the normal case). The input is a sequence of ops:
//   0 n  the peer sends n+1 bytes of the stream pattern (as many as the socket takes)
//   1    recv one chunk with a zero timeout (timed_out if nothing is ready)
//   2 i  drop held chunk i           3 i  move held chunk i into another slot
//   4    the peer closes (after which recv drains, then reports EOF, again and again)
// Invariants (any violation aborts): received bytes are exactly the sent stream, in order,
// nothing lost or repeated; a chunk is never larger than a pool buffer; the pool's
// available() never exceeds its count and equals count minus held chunks minus what the
// receiver has queued; after EOF every recv is EOF; when everything is dropped and the
// receiver destroyed, available() == count again.
#include <sys/socket.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <vector>

#include "galay-kernel/galay-kernel.h"

namespace {

using namespace galay;
using namespace std::chrono_literals;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_bytes: %s\n", what);
  std::abort();
}
#define CHECK(cond)           \
  do {                        \
    if (!(cond)) fail(#cond); \
  } while (0)

constexpr unsigned kCount = 4, kSize = 64;
constexpr std::byte stream_byte(std::uint64_t i) noexcept { return static_cast<std::byte>((i * 7 + (i >> 8)) & 0xff); }

void check_aligned_buffer(const std::uint8_t* p, std::size_t n) {
  if (n < 4) return;
  const std::size_t size = (std::size_t{p[0]} << 8 | p[1]) % 5000;
  const std::size_t alignment = std::size_t{1} << (p[2] % 14);
  AlignedBuffer buf(size, alignment);
  CHECK(buf.size() == size);
  CHECK(buf.alignment() >= alignment && buf.alignment() >= alignof(std::max_align_t));
  CHECK(size == 0 || reinterpret_cast<std::uintptr_t>(buf.data()) % buf.alignment() == 0);
  for (std::size_t i = 0; i < size; ++i) CHECK(buf[i] == std::byte{0});
  for (std::size_t k = 3; k + 1 < n; k += 2) {
    const std::size_t offset = std::size_t{p[k]} * 23, count = std::size_t{p[k + 1]} * 29;
    auto s = buf.span(offset, count);
    const std::size_t want_off = std::min(offset, size);
    CHECK(s.data() == buf.data() + want_off || (size == 0 && s.empty()));
    CHECK(s.size() == std::min(count, size - want_off));
  }
  AlignedBuffer moved(std::move(buf));
  CHECK(moved.size() == size && buf.size() == 0 && buf.data() == nullptr);  // NOLINT(bugprone-use-after-move)
}

struct Harness {
  std::unique_ptr<Scheduler> sched;
  Harness() {
    auto s = Scheduler::create(Scheduler::Options{BackendKind::epoll});
    if (!s) fail("no epoll scheduler");
    sched = std::move(*s);
  }
};

Task<void> run_pool_ops(const std::uint8_t* p, std::size_t n) {
  auto listener = TcpSocket::listen_on(SocketAddress::loopback(0));
  CHECK(listener.has_value());
  auto client = TcpSocket::open();
  CHECK(client.has_value());
  auto connected = co_await client->connect(*listener->local_address(), 1s);  // lands in the backlog
  CHECK(connected.has_value());
  auto accepted = co_await listener->accept(1s);
  CHECK(accepted.has_value());
  TcpSocket server = std::move(*accepted);
  (void)client->set_send_buffer_size(4096);

  auto pool = BufferPool::create(kCount, kSize);
  CHECK(pool.has_value());
  std::vector<std::optional<PooledChunk>> held(8);
  std::uint64_t sent = 0, received = 0;
  bool peer_closed = false, eof = false;
  {
    StreamReceiver rx(server, **pool);
    for (std::size_t i = 0; i + 1 < n && i < 400; i += 2) {
      const std::uint8_t op = p[i] % 5, arg = p[i + 1];
      if (op == 0 && !peer_closed) {
        std::uint8_t out[256];
        const std::size_t len = std::size_t{arg} + 1;
        for (std::size_t k = 0; k < len; ++k) out[k] = static_cast<std::uint8_t>(stream_byte(sent + k));
        const ssize_t w = ::send(client->native_handle(), out, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) sent += static_cast<std::uint64_t>(w);
      } else if (op == 1) {
        auto chunk = co_await rx.recv(Timeout(0ns));
        if (!chunk) {
          CHECK(chunk.error() == std::errc::timed_out);
          CHECK(!eof);
          continue;
        }
        if (chunk->empty()) {
          CHECK(peer_closed);
          CHECK(received == sent);  // EOF only after every byte
          eof = true;
          continue;
        }
        CHECK(!eof);
        CHECK(chunk->size() <= kSize);
        for (std::byte b : chunk->data()) CHECK(b == stream_byte(received++));
        CHECK(received <= sent);
        auto slot = std::find_if(held.begin(), held.end(), [](auto& h) { return !h; });
        if (slot != held.end() && (arg & 1)) *slot = std::move(*chunk);  // keep it, else drop now
      } else if (op == 2) {
        held[arg % held.size()].reset();
      } else if (op == 3) {
        auto& from = held[arg % held.size()];
        auto& to = held[(arg / 8) % held.size()];
        if (&from != &to && from) {
          to = std::move(*from);
          from.reset();
        }
      } else if (op == 4 && !peer_closed) {
        *client = TcpSocket{};
        peer_closed = true;
      }
      const auto holding =
          static_cast<unsigned>(std::count_if(held.begin(), held.end(), [](auto& h) { return bool(h); }));
      CHECK((*pool)->available() <= kCount);
      CHECK((*pool)->available() + holding <= kCount);
    }
    held.clear();
  }  // the receiver ends its kernel receive and returns queued chunks
  CHECK((*pool)->available() == kCount);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  if (data[0] % 2 == 0) {
    check_aligned_buffer(data + 1, size - 1);
  } else {
    static Harness h;
    h.sched->block_on(run_pool_ops(data + 1, size - 1));
  }
  return 0;
}
