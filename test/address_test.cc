#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <net/if.h>

#include "galay-kernel/net/address.h"

namespace galay {
namespace {

TEST(Address, ParsesIpv4AndIpv6) {
  auto a = SocketAddress::parse("127.0.0.1:8080");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->family(), AddressFamily::ipv4);
  EXPECT_EQ(a->port(), 8080);
  EXPECT_EQ(a->to_string(), "127.0.0.1:8080");

  auto b = SocketAddress::parse("[::1]:443");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->family(), AddressFamily::ipv6);
  EXPECT_EQ(b->port(), 443);
  EXPECT_EQ(b->to_string(), "[::1]:443");

  auto c = SocketAddress::parse("::1", 9);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->to_string(), "[::1]:9");
  EXPECT_EQ(*SocketAddress::parse("[fe80::1]", 1), *SocketAddress::parse("[fe80::1]:1"));
  EXPECT_EQ(SocketAddress::parse("0.0.0.0:0")->port(), 0);
  EXPECT_EQ(SocketAddress::parse("1.2.3.4:65535")->port(), 65535);
}

TEST(Address, MalformedInputIsAnError) {
  const char* bad[] = {"",
                       ":80",
                       "127.0.0.1",
                       "127.0.0.1:",
                       "127.0.0.1:65536",
                       "127.0.0.1:-1",
                       "127.0.0.1:80x",
                       "256.0.0.1:80",
                       "localhost:80",
                       "::1:80",
                       "[::1]",
                       "[::1]80",
                       "[::1:80",
                       "[]:80",
                       "1.2.3:80",
                       "[127.0.0.1]:80x",
                       "1.2.3.4:99999999999999999999"};
  for (const char* s : bad) {
    auto r = SocketAddress::parse(s);
    EXPECT_FALSE(r) << "accepted '" << s << "'";
    if (!r) {
      EXPECT_EQ(r.error(), Error::invalid_address) << s;
    }
  }
  EXPECT_FALSE(SocketAddress::parse("example.com", 80));
  EXPECT_FALSE(SocketAddress::parse(std::string(100, '1'), 80));
  EXPECT_FALSE(SocketAddress::from_sockaddr(nullptr, 0));
  // Regression (found by fuzz_address): an embedded NUL must not truncate the parse.
  using namespace std::string_view_literals;
  EXPECT_FALSE(SocketAddress::parse("127.0.0.1\0evil"sv, 80));
  EXPECT_FALSE(SocketAddress::parse("[::1\0junk]:80"sv));
  EXPECT_FALSE(SocketAddress::parse("10.0.0.1\0x:80"sv));
  EXPECT_FALSE(SocketAddress::parse("10.0.0.1:8\0"sv));
}

// Race-table rows 8, 15, 16 (docs/reliability.md).
TEST(Address, FromSockaddrBoundsTheLengthByFamily) {
  alignas(sockaddr_in6) unsigned char big[1024] = {};
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(big);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(80);
  sin6->sin6_addr = in6addr_loopback;
  auto a = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(big), sizeof big);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->size(), sizeof(sockaddr_in6));
  EXPECT_EQ(a->to_string(), "[::1]:80");
  auto* sin = reinterpret_cast<sockaddr_in*>(big);
  sin->sin_family = AF_INET;
  auto b = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(big), sizeof big);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->size(), sizeof(sockaddr_in));
  EXPECT_FALSE(SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(big), 3));
}

TEST(Address, BracketsAreForIpv6Only) {
  EXPECT_FALSE(SocketAddress::parse("[127.0.0.1]:80"));
  EXPECT_FALSE(SocketAddress::parse("[127.0.0.1]", 80));
  EXPECT_TRUE(SocketAddress::parse("[::ffff:127.0.0.1]:80"));
}

TEST(Address, Ipv6ScopeIdRoundTrips) {
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(80);
  ASSERT_EQ(inet_pton(AF_INET6, "fe80::1", &sin6.sin6_addr), 1);
  sin6.sin6_scope_id = 1;
  auto a = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&sin6), sizeof sin6);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->to_string(), "[fe80::1%1]:80");
  auto back = SocketAddress::parse(a->to_string());
  ASSERT_TRUE(back) << a->to_string();
  EXPECT_EQ(*back, *a);
  auto numeric = SocketAddress::parse("fe80::1%1", 80);
  ASSERT_TRUE(numeric);
  EXPECT_EQ(*numeric, *a);
  // An interface name is looked up ("lo" is index 1 on Linux); an unknown one is an error.
  if (unsigned lo = if_nametoindex("lo"); lo != 0) {
    auto named = SocketAddress::parse("[fe80::1%lo]:80");
    ASSERT_TRUE(named);
    EXPECT_EQ(reinterpret_cast<const sockaddr_in6*>(named->data())->sin6_scope_id, lo);
  }
  EXPECT_FALSE(SocketAddress::parse("[fe80::1%no-such-interface0]:80"));
  EXPECT_FALSE(SocketAddress::parse("[fe80::1%]:80"));
  EXPECT_FALSE(SocketAddress::parse("127.0.0.1%1", 80));  // zones are IPv6 only
}

TEST(Address, ErrorMessagesAreReadable) {
  auto r = SocketAddress::parse("nope");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("invalid address"), std::string::npos);
}

}  // namespace
}  // namespace galay
