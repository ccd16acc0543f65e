// Unix-domain datagram sockets on every backend: pair, filesystem and abstract names,
// connected and unconnected sends, truncation, the socket file removed on close, errors.
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <string>

#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

class UnixDatagramTest : public BackendTest {};

std::span<const std::byte> bytes(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }
std::string text(std::span<const std::byte> b, std::size_t n) {
  return std::string(reinterpret_cast<const char*>(b.data()), n);
}
std::string temp_socket_path() {
  return "/tmp/galay-dgram-test-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()) + ".sock";
}
bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

TEST_P(UnixDatagramTest, PairKeepsDatagramBoundariesAndOrder) {
  auto body = []() -> Task<void> {
    auto pair = UnixDatagram::pair();
    CO_ASSERT_TRUE(pair.has_value());
    auto& [a, b] = *pair;
    for (int i = 0; i < 20; ++i) {
      const std::string msg = "datagram " + std::to_string(i);
      auto sent = co_await a.send(bytes(msg));
      CO_ASSERT_TRUE(sent.has_value());
      EXPECT_EQ(*sent, msg.size());
    }
    std::array<std::byte, 256> buf;
    for (int i = 0; i < 20; ++i) {
      auto d = co_await b.recv(buf, 5s);
      CO_ASSERT_TRUE(d.has_value());
      EXPECT_FALSE(d->truncated);
      EXPECT_EQ(text(buf, d->size), "datagram " + std::to_string(i));  // one datagram per recv
    }
    // A receive with nothing queued waits, then times out.
    auto none = co_await b.recv(buf, 20ms);
    CO_ASSERT_FALSE(none.has_value());
    EXPECT_EQ(none.error(), std::errc::timed_out);
  };
  run(body());
}

TEST_P(UnixDatagramTest, BoundPathSendToConnectTruncationAndUnlinkOnClose) {
  auto body = []() -> Task<void> {
    const std::string path = temp_socket_path();
    auto addr = UnixAddress::parse(path);
    CO_ASSERT_TRUE(addr.has_value());
    {
      auto server = UnixDatagram::bind_to(*addr);
      CO_ASSERT_TRUE(server.has_value());
      EXPECT_TRUE(exists(path));
      auto client = UnixDatagram::open();
      CO_ASSERT_TRUE(client.has_value());
      // Unconnected: send_to the path. The receive waits for it (spawned first).
      auto receiver = spawn([](UnixDatagram* s) -> Task<std::string> {
        std::array<std::byte, 8> small;  // smaller than the datagram
        auto d = co_await s->recv(small, 5s);
        if (!d || !d->truncated || d->size != small.size()) co_return std::string("<wrong>");
        co_return text(small, d->size);
      }(&*server));
      auto sent = co_await client->send_to(bytes("0123456789abcdef"), *addr);
      CO_ASSERT_TRUE(sent.has_value());
      EXPECT_EQ(co_await receiver, "01234567");  // cut at 8 bytes, and reported truncated
      // Connected: send() then reaches the same socket.
      CO_ASSERT_TRUE(client->connect(*addr).has_value());
      CO_ASSERT_TRUE((co_await client->send(bytes("connected"))).has_value());
      std::array<std::byte, 64> buf;
      auto d = co_await server->recv(buf, 5s);
      CO_ASSERT_TRUE(d.has_value());
      EXPECT_EQ(text(buf, d->size), "connected");
      // Binding the same path again is an error, not a takeover.
      auto second = UnixDatagram::bind_to(*addr);
      CO_ASSERT_FALSE(second.has_value());
      EXPECT_EQ(second.error(), std::errc::address_in_use);
    }
    EXPECT_FALSE(exists(path));  // the bound socket removed its file when destroyed
  };
  run(body());
}

TEST_P(UnixDatagramTest, AbstractNamesAndErrors) {
  auto body = []() -> Task<void> {
    auto addr = UnixAddress::parse("@galay-dgram-" + std::to_string(::getpid()));
    CO_ASSERT_TRUE(addr.has_value());
    auto server = UnixDatagram::bind_to(*addr);
    CO_ASSERT_TRUE(server.has_value());
    auto client = UnixDatagram::open();
    CO_ASSERT_TRUE(client.has_value());
    CO_ASSERT_TRUE((co_await client->send_to(bytes("abstract"), *addr)).has_value());
    std::array<std::byte, 64> buf;
    auto d = co_await server->recv(buf, 5s);
    CO_ASSERT_TRUE(d.has_value());
    EXPECT_EQ(text(buf, d->size), "abstract");
    // Nobody bound at this name: the send fails with an error value.
    auto nowhere = UnixAddress::parse("@galay-dgram-nobody-" + std::to_string(::getpid()));
    CO_ASSERT_TRUE(nowhere.has_value());
    auto refused = co_await client->send_to(bytes("x"), *nowhere);
    CO_ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error(), std::errc::connection_refused);
    // Operations on an empty socket are EBADF.
    UnixDatagram empty;
    auto bad = co_await empty.recv(buf, 1s);
    CO_ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error(), std::errc::bad_file_descriptor);
    EXPECT_FALSE(empty.connect(*addr).has_value());
  };
  run(body());
}

GALAY_INSTANTIATE_ALL_BACKENDS(UnixDatagramTest);

}  // namespace
}  // namespace galay::test
