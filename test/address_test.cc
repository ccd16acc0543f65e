#include <gtest/gtest.h>

#include "galay-kernel/common/address.h"

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

TEST(Address, ErrorMessagesAreReadable) {
  auto r = SocketAddress::parse("nope");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("invalid address"), std::string::npos);
}

}  // namespace
}  // namespace galay
