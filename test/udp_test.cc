// UDP on every backend: echo, truncation reported, connected vs unconnected, timeouts.
#include <array>
#include <string>
#include <vector>

#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

class UdpTest : public BackendTest {};

std::span<const std::byte> bytes(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

TEST_P(UdpTest, EchoBetweenUnconnectedSockets) {
  auto body = []() -> Task<void> {
    auto server = UdpSocket::bind_to(SocketAddress::loopback(0));
    auto client = UdpSocket::bind_to(SocketAddress::loopback(0));
    CO_ASSERT_TRUE(server && client);
    auto server_addr = *server->local_address();
    auto echo = spawn([](UdpSocket* s) -> Task<void> {
      std::array<std::byte, 1500> buf;
      for (int i = 0; i < 50; ++i) {
        SocketAddress from;
        auto d = co_await s->recv_from(buf, &from, 5s);
        if (!d) co_return;
        (void)co_await s->send_to(std::span(buf.data(), d->size), from);
      }
    }(&*server));
    for (int i = 0; i < 50; ++i) {
      std::string msg = "datagram " + std::to_string(i);
      auto sent = co_await client->send_to(bytes(msg), server_addr);
      EXPECT_TRUE(sent && *sent == msg.size());
      std::array<std::byte, 1500> buf;
      SocketAddress from;
      auto d = co_await client->recv_from(buf, &from, 5s);
      CO_ASSERT_TRUE(d);
      EXPECT_FALSE(d->truncated);
      EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), d->size), msg);
      EXPECT_EQ(from, server_addr);
    }
    co_await echo;
  };
  run(body());
}

TEST_P(UdpTest, TruncationIsReported) {
  auto body = []() -> Task<void> {
    auto a = UdpSocket::bind_to(SocketAddress::loopback(0));
    auto b = UdpSocket::bind_to(SocketAddress::loopback(0));
    CO_ASSERT_TRUE(a && b);
    std::string big(1000, 'z');
    EXPECT_TRUE(co_await a->send_to(bytes(big), *b->local_address()));
    std::array<std::byte, 100> small;
    auto d = co_await b->recv(small, 5s);
    CO_ASSERT_TRUE(d);
    EXPECT_EQ(d->size, 100u);
    EXPECT_TRUE(d->truncated);
    // The next datagram is whole again.
    EXPECT_TRUE(co_await a->send_to(bytes("ok"), *b->local_address()));
    auto d2 = co_await b->recv(small, 5s);
    CO_ASSERT_TRUE(d2);
    EXPECT_EQ(d2->size, 2u);
    EXPECT_FALSE(d2->truncated);
  };
  run(body());
}

TEST_P(UdpTest, ConnectedSocketsAndRefusal) {
  auto body = []() -> Task<void> {
    auto a = UdpSocket::bind_to(SocketAddress::loopback(0));
    auto b = UdpSocket::bind_to(SocketAddress::loopback(0));
    CO_ASSERT_TRUE(a && b);
    EXPECT_TRUE(a->connect(*b->local_address()));
    EXPECT_TRUE(b->connect(*a->local_address()));
    EXPECT_TRUE(co_await a->send(bytes("ping")));
    std::array<std::byte, 16> buf;
    auto d = co_await b->recv(buf, 5s);
    EXPECT_TRUE(d && d->size == 4);
    // A connected socket whose peer has gone gets ECONNREFUSED (from the ICMP error).
    std::uint16_t dead_port;
    {
      auto gone = UdpSocket::bind_to(SocketAddress::loopback(0));
      dead_port = gone->local_address()->port();
    }
    auto c = UdpSocket::open();
    EXPECT_TRUE(c->connect(SocketAddress::loopback(dead_port)));
    EXPECT_TRUE(co_await c->send(bytes("anyone?")));
    auto r = co_await c->recv(buf, 2s);
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), std::errc::connection_refused) << r.error().message();
  };
  run(body());
}

TEST_P(UdpTest, RecvTimeoutAndClosedSocket) {
  auto body = []() -> Task<void> {
    auto a = UdpSocket::bind_to(SocketAddress::loopback(0));
    CO_ASSERT_TRUE(a);
    std::array<std::byte, 16> buf;
    auto r = co_await a->recv(buf, 20ms);
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), std::errc::timed_out);
    EXPECT_TRUE(co_await a->close());
    auto r2 = co_await a->recv(buf, 20ms);
    EXPECT_EQ(r2.error(), std::errc::bad_file_descriptor);
  };
  run(body());
}

TEST_P(UdpTest, Ipv6) {
  {
    auto probe = UdpSocket::open(AddressFamily::ipv6);
    if (!probe || !probe->bind(SocketAddress::loopback(0, AddressFamily::ipv6)))
      GTEST_SKIP() << "no IPv6 loopback here";
  }
  auto body = []() -> Task<void> {
    auto a = UdpSocket::bind_to(SocketAddress::loopback(0, AddressFamily::ipv6));
    auto b = UdpSocket::bind_to(SocketAddress::loopback(0, AddressFamily::ipv6));
    CO_ASSERT_TRUE(a && b);
    EXPECT_TRUE(co_await a->send_to(bytes("v6"), *b->local_address()));
    std::array<std::byte, 16> buf;
    SocketAddress from;
    auto d = co_await b->recv_from(buf, &from, 5s);
    EXPECT_TRUE(d && d->size == 2);
    EXPECT_EQ(from.family(), AddressFamily::ipv6);
  };
  run(body());
}

TEST_P(UdpTest, BatchOf64DatagramsRoundTrips) {
  auto body = []() -> Task<void> {
    auto a = UdpSocket::bind_to(SocketAddress::loopback(0));
    auto b = UdpSocket::bind_to(SocketAddress::loopback(0));
    CO_ASSERT_TRUE(a && b);
    const SocketAddress to = *b->local_address();
    std::vector<std::string> payloads;
    for (int i = 0; i < 64; ++i) payloads.push_back("batch datagram #" + std::to_string(i) + std::string(i, 'x'));
    std::vector<OutgoingDatagram> out;
    for (const auto& p : payloads) out.push_back({bytes(p), &to});
    auto sending = a->send_batch(out, 5s);
    auto sent = co_await sending;
    CO_ASSERT_TRUE(sent.has_value());
    EXPECT_EQ(*sent, 64u);
    // Receive them in batches of at most 16 (so several recvmmsg calls); order is kept.
    std::vector<std::array<std::byte, 256>> storage(16);
    std::vector<DatagramSlot> slots(16);
    for (std::size_t i = 0; i < slots.size(); ++i) slots[i].buffer = storage[i];
    std::size_t got = 0;
    while (got < payloads.size()) {
      auto receiving = b->recv_batch(slots, 5s);
      auto n = co_await receiving;
      CO_ASSERT_TRUE(n.has_value());
      CO_ASSERT_TRUE(*n >= 1 && *n <= slots.size());
      for (std::size_t i = 0; i < *n; ++i, ++got) {
        EXPECT_FALSE(slots[i].truncated);
        EXPECT_EQ(std::string(reinterpret_cast<const char*>(slots[i].buffer.data()), slots[i].size), payloads[got]);
        EXPECT_EQ(slots[i].from, *a->local_address());
      }
    }
    EXPECT_EQ(got, 64u);
  };
  run(body());
}

TEST_P(UdpTest, BatchReportsTruncationPerDatagramAndTimesOut) {
  auto body = []() -> Task<void> {
    auto a = UdpSocket::bind_to(SocketAddress::loopback(0));
    auto b = UdpSocket::bind_to(SocketAddress::loopback(0));
    CO_ASSERT_TRUE(a && b);
    const SocketAddress to = *b->local_address();
    const std::string small = "short", big(300, 'B');
    std::vector<OutgoingDatagram> out{{bytes(small), &to}, {bytes(big), &to}, {bytes(small), &to}};
    auto sending = a->send_batch(out);
    CO_ASSERT_TRUE((co_await sending).has_value());
    std::array<std::array<std::byte, 64>, 3> storage;
    std::array<DatagramSlot, 3> slots;
    for (std::size_t i = 0; i < slots.size(); ++i) slots[i].buffer = storage[i];
    std::size_t got = 0;
    while (got < 3) {
      auto receiving = b->recv_batch(std::span(slots).subspan(got), 5s);
      auto n = co_await receiving;
      CO_ASSERT_TRUE(n.has_value());
      got += *n;
    }
    EXPECT_FALSE(slots[0].truncated);
    EXPECT_EQ(slots[0].size, small.size());
    EXPECT_TRUE(slots[1].truncated);  // 300 bytes into 64: cut, and said so
    EXPECT_EQ(slots[1].size, 64u);
    EXPECT_FALSE(slots[2].truncated);
    // Nothing more queued: the batch times out rather than hanging.
    auto waiting = b->recv_batch(slots, 20ms);
    auto none = co_await waiting;
    CO_ASSERT_FALSE(none.has_value());
    EXPECT_EQ(none.error(), std::errc::timed_out);
    // A closed socket is an error value.
    UdpSocket closed;
    auto on_closed = closed.recv_batch(slots);
    auto bad = co_await on_closed;
    CO_ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error(), std::errc::bad_file_descriptor);
  };
  run(body());
}

GALAY_INSTANTIATE_ALL_BACKENDS(UdpTest);

}  // namespace
}  // namespace galay::test
