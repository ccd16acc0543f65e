// send_file on every backend: a 100 MiB file compared byte for byte, offset and count,
// a peer that closes mid-transfer, bad arguments. send_zero_copy (SEND_ZC on io_uring):
// large buffers intact, many partial sends, a reset peer, a timeout. splice_stream and
// splice_to_file: a 64 MiB proxy, exact counts, socket to file, errors.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

class ZeroCopyTest : public BackendTest {};

// Byte i of the test file: position-dependent, so a lost, repeated or reordered chunk shows.
constexpr std::byte file_byte(std::uint64_t i) noexcept {
  return static_cast<std::byte>((i * 131u + (i >> 12)) & 0xffu);
}

// A temporary file of `size` pattern bytes, unlinked when destroyed.
struct TempFile {
  explicit TempFile(std::uint64_t size) {
    char name[] = "/tmp/galay-sendfile-XXXXXX";
    fd = ::mkstemp(name);
    path = name;
    std::vector<std::byte> chunk(1 << 20);
    for (std::uint64_t done = 0; done < size;) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), size - done));
      for (std::size_t i = 0; i < n; ++i) chunk[i] = file_byte(done + i);
      if (::write(fd, chunk.data(), n) != static_cast<ssize_t>(n)) break;
      done += n;
    }
  }
  ~TempFile() {
    ::close(fd);
    ::unlink(path.c_str());
  }
  int fd = -1;
  std::string path;
};

// Receive until EOF, checking every byte against the file pattern from `first`; returns
// the byte count, or -1 at the first mismatch or error.
Task<std::int64_t> receive_and_check(TcpSocket sock, std::uint64_t first) {
  std::vector<std::byte> buf(256 * 1024);
  std::uint64_t got = 0;
  for (;;) {
    auto n = co_await sock.recv(buf, 10s);
    if (!n) co_return -1;
    if (*n == 0) co_return static_cast<std::int64_t>(got);
    for (std::size_t i = 0; i < *n; ++i)
      if (buf[i] != file_byte(first + got + i)) co_return -1;
    got += *n;
  }
}

constexpr std::uint64_t kSize = 100ull << 20;

TEST_P(ZeroCopyTest, SendsA100MiBFileByteForByte) {
  TempFile file(kSize);
  ASSERT_GE(file.fd, 0);
  auto body = [](int fd) -> Task<void> {
    auto [client, server] = co_await loopback_tcp_pair();
    auto reader = spawn(receive_and_check(std::move(server), 0));
    auto sent = co_await send_file(client, fd, 0, 0);  // 0: to the end of the file
    CO_ASSERT_TRUE(sent.has_value());
    EXPECT_EQ(*sent, kSize);
    client = TcpSocket{};  // close: the reader sees EOF
    const std::int64_t received = co_await reader;
    EXPECT_EQ(received, static_cast<std::int64_t>(kSize));
  };
  run(body(file.fd), 60s);
}

TEST_P(ZeroCopyTest, RespectsOffsetAndCount) {
  TempFile file(1 << 20);
  auto body = [](int fd) -> Task<void> {
    auto [client, server] = co_await loopback_tcp_pair();
    auto reader = spawn(receive_and_check(std::move(server), 12345));
    auto sent = co_await send_file(client, fd, 12345, 100000);
    CO_ASSERT_TRUE(sent.has_value());
    EXPECT_EQ(*sent, 100000u);
    client = TcpSocket{};
    EXPECT_EQ(co_await reader, 100000);
    // The fd's own offset is untouched (sendfile with an explicit offset).
    EXPECT_EQ(::lseek(fd, 0, SEEK_CUR), static_cast<off_t>(1 << 20));
  };
  run(body(file.fd), 10s);
}

TEST_P(ZeroCopyTest, CountPastTheEndStopsAtEndOfFile) {
  TempFile file(5000);
  auto body = [](int fd) -> Task<void> {
    auto [client, server] = co_await loopback_tcp_pair();
    auto reader = spawn(receive_and_check(std::move(server), 1000));
    auto sent = co_await send_file(client, fd, 1000, 1 << 20);
    CO_ASSERT_TRUE(sent.has_value());
    EXPECT_EQ(*sent, 4000u);  // short: the file ended
    client = TcpSocket{};
    EXPECT_EQ(co_await reader, 4000);
  };
  run(body(file.fd), 10s);
}

TEST_P(ZeroCopyTest, PeerClosingMidTransferIsAnErrorNotAHang) {
  TempFile file(64ull << 20);
  auto body = [](int fd) -> Task<void> {
    auto [client, server] = co_await loopback_tcp_pair();
    auto closer = spawn([](TcpSocket s) -> Task<void> {
      std::vector<std::byte> buf(64 * 1024);
      std::size_t got = 0;
      while (got < (1u << 20)) {
        auto n = co_await s.recv(buf);
        if (!n || *n == 0) break;
        got += *n;
      }
      // Leaving with unread data makes the kernel reset the connection.
    }(std::move(server)));
    auto sent = co_await send_file(client, fd, 0, 0, 10s);
    co_await closer;
    CO_ASSERT_FALSE(sent.has_value());
    const std::error_code ec = sent.error();
    EXPECT_TRUE(ec == std::errc::connection_reset || ec == std::errc::broken_pipe) << ec.message();
  };
  run(body(file.fd), 30s);
}

TEST_P(ZeroCopyTest, BadArgumentsAreErrors) {
  TempFile file(100);
  auto body = [](int fd) -> Task<void> {
    auto [client, server] = co_await loopback_tcp_pair();
    auto bad_file = co_await send_file(client, -1, 0, 10);
    CO_ASSERT_FALSE(bad_file.has_value());
    EXPECT_EQ(bad_file.error(), std::errc::bad_file_descriptor);
    auto bad_offset = co_await send_file(client, fd, -5, 10);
    CO_ASSERT_FALSE(bad_offset.has_value());
    EXPECT_EQ(bad_offset.error(), std::errc::invalid_argument);
    TcpSocket closed;
    auto bad_socket = co_await send_file(closed, fd, 0, 10);
    CO_ASSERT_FALSE(bad_socket.has_value());
    EXPECT_EQ(bad_socket.error(), std::errc::bad_file_descriptor);
  };
  run(body(file.fd), 10s);
}

// ---- send_zero_copy ----

// The io_uring backend says whether it uses SEND_ZC, so the tests below are known to cover it.
TEST_P(ZeroCopyTest, IoUringReportsSendZcWhereTheKernelHasIt) {
  if (GetParam() != BackendKind::io_uring) GTEST_SKIP() << "io_uring only";
  EXPECT_NE(sched().describe_backend().find("send-zc"), std::string::npos)
      << "kernel 6.0+ has IORING_OP_SEND_ZC: " << sched().describe_backend();
}

TEST_P(ZeroCopyTest, SendZeroCopyDeliversLargeBuffersIntact) {
  auto body = []() -> Task<void> {
    auto [client, server] = co_await loopback_tcp_pair();
    auto reader = spawn(receive_and_check(std::move(server), 0));
    std::vector<std::byte> chunk(1 << 20);
    constexpr std::uint64_t kChunks = 64;
    for (std::uint64_t c = 0; c < kChunks; ++c) {
      // The buffer is refilled right after each send: that is safe only because the send
      // completes after the kernel released the pages.
      for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = file_byte(c * chunk.size() + i);
      auto sent = co_await client.send_zero_copy(chunk, 10s);
      CO_ASSERT_TRUE(sent.has_value());
      EXPECT_EQ(*sent, chunk.size());
    }
    client = TcpSocket{};
    EXPECT_EQ(co_await reader, static_cast<std::int64_t>(kChunks << 20));
  };
  run(body(), 60s);
}

TEST_P(ZeroCopyTest, SendZeroCopyLoopsOverPartialSendsWithATinySendBuffer) {
  auto body = []() -> Task<void> {
    auto [client, server] = co_await loopback_tcp_pair();
    int small = 64 * 1024;  // (a tiny receive window would add delayed-ACK stalls instead)
    ::setsockopt(client.native_handle(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    auto reader = spawn(receive_and_check(std::move(server), 0));
    std::vector<std::byte> big(8 << 20);
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = file_byte(i);
    auto sent = co_await client.send_zero_copy(big, 20s);  // one call, many partial sends
    CO_ASSERT_TRUE(sent.has_value());
    EXPECT_EQ(*sent, big.size());
    client = TcpSocket{};
    EXPECT_EQ(co_await reader, static_cast<std::int64_t>(big.size()));
  };
  run(body(), 60s);
}

TEST_P(ZeroCopyTest, SendZeroCopyToAResetPeerIsAnError) {
  auto body = []() -> Task<void> {
    auto [client, server] = co_await loopback_tcp_pair();
    linger abort_on_close{1, 0};
    ::setsockopt(server.native_handle(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof(abort_on_close));
    server = TcpSocket{};  // RST
    std::vector<std::byte> big(4 << 20, std::byte{1});
    std::error_code failure;
    for (int i = 0; i < 10 && !failure; ++i) {
      auto sent = co_await client.send_zero_copy(big, 10s);
      if (!sent) failure = sent.error();
    }
    EXPECT_TRUE(failure == std::errc::connection_reset || failure == std::errc::broken_pipe) << failure.message();
  };
  run(body(), 30s);
}

// A timed-out zero-copy send returns only once the kernel let go of the caller's pages.
// Over loopback the pages handed to the kernel sit in the peer's receive queue until the
// peer reads them, so with SEND_ZC the timeout cannot return before the (late) reader has
// drained them; with a copying send it returns at the timeout. Either way, every byte the
// peer reads is what the buffer held before the send returned.
TEST_P(ZeroCopyTest, ATimedOutZeroCopySendReturnsOnlyAfterTheKernelReleasedTheBuffer) {
  auto body = [](bool zero_copy_expected) -> Task<void> {
    auto [client, server] = co_await loopback_tcp_pair();
    struct ReaderState {
      bool started = false;
      std::uint64_t got = 0;
      bool changed = false;
    } state;
    auto reader = spawn([](TcpSocket s, ReaderState& st) -> Task<void> {
      co_await sleep_for(300ms);  // the send's 50 ms timeout fires while nobody reads
      st.started = true;
      std::vector<std::byte> buf(1 << 20);
      for (;;) {
        auto n = co_await s.recv(buf, 10s);
        if (!n || *n == 0) break;
        for (std::size_t i = 0; i < *n; ++i) st.changed |= buf[i] != std::byte{2};
        st.got += *n;
      }
    }(std::move(server), state));
    std::vector<std::byte> big(64 << 20, std::byte{2});
    auto sent = co_await client.send_zero_copy(big, 50ms);
    CO_ASSERT_FALSE(sent.has_value());
    EXPECT_EQ(sent.error(), std::errc::timed_out);
    if (zero_copy_expected) {
      EXPECT_TRUE(state.started) << "returned while the kernel still referenced the buffer";
    } else {
      EXPECT_FALSE(state.started) << "a copying send should return at its timeout";
    }
    big.assign(big.size(), std::byte{3});  // ours again
    client = TcpSocket{};
    co_await reader;
    EXPECT_GT(state.got, 0u);
    EXPECT_LT(state.got, big.size());
    EXPECT_FALSE(state.changed) << "the peer read bytes written after the send returned";
  };
  const bool zc = sched().describe_backend().find("send-zc") != std::string::npos;
  run(body(zc), 30s);
}

// ---- splice_stream / splice_to_file ----

// Send `size` pattern bytes from `first` on `s` in 256 KiB pieces, then close it.
Task<bool> send_pattern(TcpSocket s, std::uint64_t size) {
  std::vector<std::byte> chunk(256 * 1024);
  for (std::uint64_t done = 0; done < size;) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), size - done));
    for (std::size_t i = 0; i < n; ++i) chunk[i] = file_byte(done + i);
    auto w = co_await s.send_all(std::span(chunk.data(), n), 10s);
    if (!w) co_return false;
    done += n;
  }
  co_return true;
}

TEST_P(ZeroCopyTest, SpliceStreamProxiesA64MiBStreamIntact) {
  auto body = []() -> Task<void> {
    auto [source, proxy_in] = co_await loopback_tcp_pair();
    auto [proxy_out, sink] = co_await loopback_tcp_pair();
    constexpr std::uint64_t kBytes = 64ull << 20;
    auto writer = spawn(send_pattern(std::move(source), kBytes));
    auto reader = spawn(receive_and_check(std::move(sink), 0));
    auto moved = co_await splice_stream(proxy_in, proxy_out, 0, 10s);  // until the source closes
    CO_ASSERT_TRUE(moved.has_value());
    EXPECT_EQ(*moved, kBytes);
    EXPECT_TRUE(co_await writer);
    proxy_out = TcpSocket{};
    EXPECT_EQ(co_await reader, static_cast<std::int64_t>(kBytes));
  };
  run(body(), 60s);
}

TEST_P(ZeroCopyTest, SpliceStreamMovesExactlyCountAndLeavesTheRest) {
  auto body = []() -> Task<void> {
    auto [source, proxy_in] = co_await loopback_tcp_pair();
    auto [proxy_out, sink] = co_await loopback_tcp_pair();
    auto writer = spawn(send_pattern(std::move(source), 300'000));
    auto moved = co_await splice_stream(proxy_in, proxy_out, 123'457, 10s);
    CO_ASSERT_TRUE(moved.has_value());
    EXPECT_EQ(*moved, 123'457u);
    proxy_out = TcpSocket{};
    EXPECT_EQ(co_await receive_and_check(std::move(sink), 0), 123'457);
    EXPECT_TRUE(co_await writer);
    // Everything after the count is still in the source socket, in order.
    EXPECT_EQ(co_await receive_and_check(std::move(proxy_in), 123'457), 300'000 - 123'457);
  };
  run(body(), 30s);
}

TEST_P(ZeroCopyTest, SpliceToFileWritesTheStreamAtTheOffset) {
  TempFile file(0);
  auto body = [](int fd) -> Task<void> {
    auto [source, receiver] = co_await loopback_tcp_pair();
    constexpr std::uint64_t kBytes = 5ull << 20;
    auto writer = spawn(send_pattern(std::move(source), kBytes));
    auto written = co_await splice_to_file(receiver, fd, 4096, 0, 10s);
    CO_ASSERT_TRUE(written.has_value());
    EXPECT_EQ(*written, kBytes);
    EXPECT_TRUE(co_await writer);
    std::vector<std::byte> back(kBytes);
    CO_ASSERT_TRUE(::pread(fd, back.data(), back.size(), 4096) == static_cast<ssize_t>(kBytes));
    std::size_t bad = 0;
    for (std::size_t i = 0; i < back.size(); ++i) bad += back[i] != file_byte(i);
    EXPECT_EQ(bad, 0u);
    EXPECT_EQ(::lseek(fd, 0, SEEK_CUR), 0);  // the fd's own offset is not used
  };
  run(body(file.fd), 30s);
}

TEST_P(ZeroCopyTest, SpliceErrorsAreValues) {
  TempFile file(0);
  auto body = [](int fd) -> Task<void> {
    auto [a, b] = co_await loopback_tcp_pair();
    TcpSocket closed;
    auto bad_source = co_await splice_stream(closed, a, 10);
    CO_ASSERT_FALSE(bad_source.has_value());
    EXPECT_EQ(bad_source.error(), std::errc::bad_file_descriptor);
    auto bad_file = co_await splice_to_file(a, -1, 0, 10);
    CO_ASSERT_FALSE(bad_file.has_value());
    EXPECT_EQ(bad_file.error(), std::errc::bad_file_descriptor);
    auto bad_offset = co_await splice_to_file(a, fd, -1, 10);
    CO_ASSERT_FALSE(bad_offset.has_value());
    EXPECT_EQ(bad_offset.error(), std::errc::invalid_argument);
    // Nothing arrives: each wait is bounded by the timeout.
    auto idle = co_await splice_stream(a, b, 10, 30ms);
    CO_ASSERT_FALSE(idle.has_value());
    EXPECT_EQ(idle.error(), std::errc::timed_out);
    // The target was reset by its peer: an error, not a hang.
    auto [source, proxy_in] = co_await loopback_tcp_pair();
    auto [proxy_out, sink] = co_await loopback_tcp_pair();
    linger abort_on_close{1, 0};
    ::setsockopt(sink.native_handle(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof(abort_on_close));
    sink = TcpSocket{};
    auto writer = spawn(send_pattern(std::move(source), 16ull << 20));
    auto moved = co_await splice_stream(proxy_in, proxy_out, 0, 10s);
    CO_ASSERT_FALSE(moved.has_value());
    EXPECT_TRUE(moved.error() == std::errc::connection_reset || moved.error() == std::errc::broken_pipe)
        << moved.error().message();
    proxy_in = TcpSocket{};  // the writer then fails instead of waiting for a reader
    co_await writer;
  };
  run(body(file.fd), 30s);
}

GALAY_INSTANTIATE_ALL_BACKENDS(ZeroCopyTest);

}  // namespace
}  // namespace galay::test
