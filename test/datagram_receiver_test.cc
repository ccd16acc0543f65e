// DatagramReceiver on every backend (multishot recvmsg on a provided-buffer ring on
// io_uring, recvmsg into pool buffers elsewhere): payloads, senders and order over many
// datagrams, empty and truncated datagrams, a pool that runs dry, IPv6, a too-small pool.
#include <array>
#include <string>
#include <vector>

#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

class DatagramReceiverTest : public BackendTest {};

std::byte pattern(std::uint32_t i, std::size_t k) { return std::byte((i * 7 + k * 13) & 0xff); }

// Datagram i: its 4-byte index, then i % 1200 pattern bytes.
std::vector<std::byte> datagram(std::uint32_t i) {
  std::vector<std::byte> d(4 + i % 1200);
  std::memcpy(d.data(), &i, 4);
  for (std::size_t k = 4; k < d.size(); ++k) d[k] = pattern(i, k);
  return d;
}

TEST_P(DatagramReceiverTest, ManyDatagramsArriveWithPayloadAndSender) {
  auto body = []() -> Task<void> {
    auto server = UdpSocket::bind_to(SocketAddress::loopback(0));
    auto client = UdpSocket::bind_to(SocketAddress::loopback(0));
    CO_ASSERT_TRUE(server && client);
    int big = 4 << 20;
    ::setsockopt(server->native_handle(), SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    auto pool = BufferPool::create(64, 2048);
    CO_ASSERT_TRUE(pool.has_value());
    DatagramReceiver rx(*server, **pool);
    const SocketAddress to = *server->local_address();
    const SocketAddress client_addr = *client->local_address();
    constexpr std::uint32_t kCount = 3000;
    std::uint32_t next = 0;
    // Bursts of 50 (within the socket buffer), each read back before the next.
    for (std::uint32_t burst = 0; burst < kCount; burst += 50) {
      for (std::uint32_t i = burst; i < burst + 50; ++i) {
        auto d = datagram(i);
        CO_ASSERT_TRUE(co_await client->send_to(d, to));
      }
      for (std::uint32_t i = burst; i < burst + 50; ++i) {
        auto got = co_await rx.recv(5s);
        CO_ASSERT_TRUE(got.has_value());
        const auto want = datagram(i);
        EXPECT_FALSE(got->truncated());
        EXPECT_EQ(got->size(), want.size());
        CO_ASSERT_TRUE(got->payload().size() == want.size());
        EXPECT_TRUE(std::equal(want.begin(), want.end(), got->payload().begin())) << "datagram " << i;
        EXPECT_EQ(got->sender().to_string(), client_addr.to_string());
        ++next;
      }
    }
    EXPECT_EQ(next, kCount);
    EXPECT_EQ((*pool)->available(), (*pool)->count());  // every buffer went back
  };
  run(body());
}

TEST_P(DatagramReceiverTest, EmptyAndTruncatedDatagrams) {
  auto body = []() -> Task<void> {
    auto server = UdpSocket::bind_to(SocketAddress::loopback(0));
    auto client = UdpSocket::bind_to(SocketAddress::loopback(0));
    CO_ASSERT_TRUE(server && client);
    auto pool = BufferPool::create(8, 1024);  // room for 1024 - 144 = 880 payload bytes
    CO_ASSERT_TRUE(pool.has_value());
    DatagramReceiver rx(*server, **pool);
    const SocketAddress to = *server->local_address();
    CO_ASSERT_TRUE(co_await client->send_to(std::span<const std::byte>{}, to));
    std::vector<std::byte> big(3000, std::byte{0x5a});
    CO_ASSERT_TRUE(co_await client->send_to(big, to));
    CO_ASSERT_TRUE(co_await client->send_to(std::span(big.data(), 10), to));

    auto empty = co_await rx.recv(5s);
    CO_ASSERT_TRUE(empty.has_value());
    EXPECT_EQ(empty->size(), 0u);
    EXPECT_TRUE(empty->payload().empty());
    EXPECT_FALSE(empty->truncated());

    auto cut = co_await rx.recv(5s);
    CO_ASSERT_TRUE(cut.has_value());
    EXPECT_TRUE(cut->truncated());
    EXPECT_EQ(cut->size(), 3000u);  // the real size, not what fitted
    EXPECT_EQ(cut->payload().size(), 1024 - kPooledDatagramPayloadOffset);

    auto small = co_await rx.recv(5s);  // the next datagram is intact: nothing was lost
    CO_ASSERT_TRUE(small.has_value());
    EXPECT_FALSE(small->truncated());
    EXPECT_EQ(small->payload().size(), 10u);
  };
  run(body());
}

TEST_P(DatagramReceiverTest, ADryPoolWaitsThenDeliversEverythingQueued) {
  auto body = []() -> Task<void> {
    auto server = UdpSocket::bind_to(SocketAddress::loopback(0));
    auto client = UdpSocket::bind_to(SocketAddress::loopback(0));
    CO_ASSERT_TRUE(server && client);
    auto pool = BufferPool::create(4, 512);
    CO_ASSERT_TRUE(pool.has_value());
    DatagramReceiver rx(*server, **pool);
    const SocketAddress to = *server->local_address();
    for (std::uint32_t i = 0; i < 12; ++i) {
      auto d = datagram(i % 100);
      d.resize(std::min<std::size_t>(d.size(), 300));
      CO_ASSERT_TRUE(co_await client->send_to(d, to));
    }
    std::vector<PooledDatagram> held;
    for (int i = 0; i < 4; ++i) {
      auto got = co_await rx.recv(5s);
      CO_ASSERT_TRUE(got.has_value());
      held.push_back(std::move(*got));
    }
    EXPECT_EQ((*pool)->available(), 0u);
    auto dry = co_await rx.recv(30ms);  // every buffer is held: wait, then time out
    CO_ASSERT_FALSE(dry.has_value());
    EXPECT_EQ(dry.error(), std::errc::timed_out);
    held.clear();  // buffers come back: the rest arrive, in order
    for (std::uint32_t i = 4; i < 12; ++i) {
      auto got = co_await rx.recv(5s);
      CO_ASSERT_TRUE(got.has_value());
      std::uint32_t index = 0;
      std::memcpy(&index, got->payload().data(), 4);
      EXPECT_EQ(index, i % 100);
    }
  };
  run(body());
}

TEST_P(DatagramReceiverTest, Ipv6SenderAddress) {
  auto body = []() -> Task<void> {
    auto server = UdpSocket::bind_to(SocketAddress::loopback(0, AddressFamily::ipv6));
    if (!server) co_return;  // no IPv6 loopback here: nothing to check
    auto client = UdpSocket::bind_to(SocketAddress::loopback(0, AddressFamily::ipv6));
    CO_ASSERT_TRUE(client.has_value());
    auto pool = BufferPool::create(4, 512);
    CO_ASSERT_TRUE(pool.has_value());
    DatagramReceiver rx(*server, **pool);
    CO_ASSERT_TRUE(co_await client->send_to(datagram(7), *server->local_address()));
    auto got = co_await rx.recv(5s);
    CO_ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->sender().to_string(), client->local_address()->to_string());
  };
  run(body());
}

TEST_P(DatagramReceiverTest, BuffersTooSmallForAnyPayloadAreRefused) {
  auto body = []() -> Task<void> {
    auto server = UdpSocket::bind_to(SocketAddress::loopback(0));
    CO_ASSERT_TRUE(server.has_value());
    auto pool = BufferPool::create(4, 128);  // not even room for the header and the address
    CO_ASSERT_TRUE(pool.has_value());
    DatagramReceiver rx(*server, **pool);
    auto got = co_await rx.recv(1s);
    CO_ASSERT_FALSE(got.has_value());
    EXPECT_EQ(got.error(), std::errc::invalid_argument);
  };
  run(body());
}

TEST_P(DatagramReceiverTest, DestroyedWhileWaitingLetsGoOfEverything) {
  auto body = []() -> Task<void> {
    auto server = UdpSocket::bind_to(SocketAddress::loopback(0));
    CO_ASSERT_TRUE(server.has_value());
    auto pool = BufferPool::create(4, 512);
    CO_ASSERT_TRUE(pool.has_value());
    {
      DatagramReceiver rx(*server, **pool);
      auto none = co_await rx.recv(10ms);  // arms the kernel receive, then times out
      EXPECT_FALSE(none.has_value());
    }
    EXPECT_EQ((*pool)->available(), (*pool)->count());
  };
  run(body());
}

GALAY_INSTANTIATE_ALL_BACKENDS(DatagramReceiverTest);

}  // namespace
}  // namespace galay::test
