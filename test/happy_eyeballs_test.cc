// Happy Eyeballs (RFC 8305) on every backend, on loopback: ::1 refusing and 127.0.0.1
// accepting (IPv4 wins at once), the first address silently dropping SYNs (a listener with a
// full accept queue) so the next one wins after the attempt delay, every address failing,
// cancellation mid-race and the overall timeout (no fd left behind), and the attempt order.
#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "support/dns_responder.h"
#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;
using Ms = std::chrono::milliseconds;

class HappyEyeballsTest : public BackendTest {};

Ms since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<Ms>(std::chrono::steady_clock::now() - t0);
}

SocketAddress addr(const std::string& host, std::uint16_t port) { return *SocketAddress::parse(host, port); }

ResolverOptions options_for(const DnsResponder& dns) {
  ResolverOptions o;
  o.servers = {dns.server()};
  o.use_hosts_file = false;
  o.use_search_domains = false;
  o.attempt_timeout = 2s;
  o.tries = 1;
  return o;
}

bool ipv6_loopback_works() {
  auto s = TcpSocket::open(AddressFamily::ipv6);
  return s && s->bind(SocketAddress::loopback(0, AddressFamily::ipv6));
}

// A listener whose accept queue is full (backlog 0, one connection never accepted): the
// kernel drops further SYNs instead of refusing them, so a connect to it stays pending.
struct Blackhole {
  TcpSocket listener;
  std::vector<TcpSocket> queued;
};

// Fills the queue until a connect stays pending for 100 ms. nullopt if SYNs are refused
// here (or the address can't be bound).
Task<std::optional<Blackhole>> make_blackhole(SocketAddress at) {
  auto l = TcpSocket::listen_on(at, 0);
  if (!l) co_return std::nullopt;
  Blackhole b{std::move(*l), {}};
  const SocketAddress bound = *b.listener.local_address();
  for (int i = 0; i < 8; ++i) {
    auto c = TcpSocket::open(bound.family());
    if (!c) co_return std::nullopt;
    auto r = co_await c->connect(bound, 100ms);
    if (!r) {
      if (r.error() == std::errc::timed_out) co_return b;  // the SYN was dropped
      ADD_FAILURE() << "a connect to a full listener failed with " << r.error().message();
      co_return std::nullopt;
    }
    b.queued.push_back(std::move(*c));
  }
  co_return std::nullopt;
}

// A port P with a blackhole on [::1]:P and a normal listener on 127.0.0.1:P.
struct DualPort {
  Blackhole v6;
  TcpSocket v4;
  std::uint16_t port = 0;
};

Task<std::optional<DualPort>> blackhole_v6_listen_v4() {
  for (int tries = 0; tries < 10; ++tries) {
    auto hole = co_await make_blackhole(SocketAddress::loopback(0, AddressFamily::ipv6));
    if (!hole) co_return std::nullopt;
    const std::uint16_t port = hole->listener.local_address()->port();
    auto v4 = TcpSocket::listen_on(SocketAddress::loopback(port));
    if (!v4) continue;  // 127.0.0.1:P is taken: another port
    co_return DualPort{std::move(*hole), std::move(*v4), port};
  }
  co_return std::nullopt;
}

// A port refused on ::1 (nothing listens there) with a listener on 127.0.0.1.
std::optional<std::pair<TcpSocket, std::uint16_t>> listen_v4_only() {
  for (int tries = 0; tries < 10; ++tries) {
    auto v4 = TcpSocket::listen_on(SocketAddress::loopback(0));
    if (!v4) continue;
    const std::uint16_t port = v4->local_address()->port();
    // Make sure nothing listens on [::1]:port (bind succeeds, the socket is dropped again).
    auto probe = TcpSocket::open(AddressFamily::ipv6);
    if (probe && probe->bind(SocketAddress::loopback(port, AddressFamily::ipv6)))
      return std::pair<TcpSocket, std::uint16_t>(std::move(*v4), port);
  }
  return std::nullopt;
}

TEST(HappyEyeballsOrder, AlternatesFamiliesStartingWithIpv6) {
  const std::vector<SocketAddress> in = {addr("10.0.0.1", 1), addr("10.0.0.2", 1), addr("fd00::1", 1),
                                         addr("10.0.0.1", 1), addr("fd00::2", 1),  addr("10.0.0.3", 1)};
  const std::vector<SocketAddress> v6_first = {addr("fd00::1", 1), addr("10.0.0.1", 1), addr("fd00::2", 1),
                                               addr("10.0.0.2", 1), addr("10.0.0.3", 1)};
  EXPECT_EQ(happy_eyeballs_order(in), v6_first);
  const std::vector<SocketAddress> v4_first = {addr("10.0.0.1", 1), addr("fd00::1", 1), addr("10.0.0.2", 1),
                                               addr("fd00::2", 1), addr("10.0.0.3", 1)};
  EXPECT_EQ(happy_eyeballs_order(in, false), v4_first);
  const std::vector<SocketAddress> only_v4 = {addr("10.0.0.2", 1), addr("10.0.0.1", 1)};
  EXPECT_EQ(happy_eyeballs_order(only_v4), only_v4);
  EXPECT_TRUE(happy_eyeballs_order({}).empty());
}

// ::1 refuses, 127.0.0.1 accepts: the refusal starts the IPv4 attempt at once, well before
// the 250 ms attempt delay.
TEST_P(HappyEyeballsTest, RefusedIpv6FallsBackToIpv4AtOnce) {
  if (!GALAY_TEST_HAVE_CARES) GTEST_SKIP() << "built without c-ares: names do not resolve";
  if (!ipv6_loopback_works()) GTEST_SKIP() << "no IPv6 loopback here";
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    auto v4 = listen_v4_only();
    CO_ASSERT_TRUE(v4);
    dns->set("dual.test", records({"127.0.0.1"}, {"::1"}));
    ConnectOptions o;
    o.resolver_options = options_for(*dns);
    const auto t0 = std::chrono::steady_clock::now();
    auto sock = co_await connect_by_name("dual.test", v4->second, o);
    const Ms took = since(t0);
    CO_ASSERT_TRUE(sock);
    EXPECT_EQ(*sock->peer_address(), addr("127.0.0.1", v4->second));
    EXPECT_LT(took, 150ms);
    auto accepted = co_await v4->first.accept(1s);
    EXPECT_TRUE(accepted);
    co_await dns->stop();
  }());
}

// [::1]:P drops SYNs, 127.0.0.1:P accepts: the IPv6 attempt starts first and hangs, the
// IPv4 one starts after the attempt delay and wins; the IPv6 one is cancelled and closed.
TEST_P(HappyEyeballsTest, SilentFirstAddressLosesAfterTheDelay) {
  if (!GALAY_TEST_HAVE_CARES) GTEST_SKIP() << "built without c-ares: names do not resolve";
  if (!ipv6_loopback_works()) GTEST_SKIP() << "no IPv6 loopback here";
  bool dropped = true;
  run([](bool* dropped) -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    auto ports = co_await blackhole_v6_listen_v4();
    if (!ports) {
      *dropped = false;
      co_return;
    }
    dns->set("dual.test", records({"127.0.0.1"}, {"::1"}));
    const int fds = open_fd_count();
    ConnectOptions o;
    o.resolver_options = options_for(*dns);
    o.attempt_delay = 200ms;
    const auto t0 = std::chrono::steady_clock::now();
    auto sock = co_await connect_by_name("dual.test", ports->port, o);
    const Ms took = since(t0);
    CO_ASSERT_TRUE(sock);
    EXPECT_EQ(*sock->peer_address(), addr("127.0.0.1", ports->port));
    EXPECT_GE(took, 200ms);
    EXPECT_LT(took, 900ms);               // before the dropped SYN's 1 s retransmission
    EXPECT_EQ(open_fd_count(), fds + 1);  // the winner only
    auto accepted = co_await ports->v4.accept(1s);
    EXPECT_TRUE(accepted);
    co_await dns->stop();
  }(&dropped));
  if (!dropped) GTEST_SKIP() << "this kernel refuses SYNs to a full listener instead of dropping them";
}

// The same race over a given list (no resolution), IPv4 only: the first address drops
// SYNs, the second accepts.
TEST_P(HappyEyeballsTest, ConnectAnyMovesOnAfterTheDelay) {
  bool dropped = true;
  run([](bool* dropped) -> Task<void> {
    auto hole = co_await make_blackhole(SocketAddress::loopback(0));
    if (!hole) {
      *dropped = false;
      co_return;
    }
    TcpSocket good = loopback_listener();
    const int fds = open_fd_count();
    ConnectOptions o;
    o.attempt_delay = 150ms;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<SocketAddress> addrs = {*hole->listener.local_address(), *good.local_address()};
    auto sock = co_await connect_any(std::move(addrs), o);
    CO_ASSERT_TRUE(sock);
    EXPECT_GE(since(t0), 150ms);
    EXPECT_EQ(*sock->peer_address(), *good.local_address());
    EXPECT_EQ(open_fd_count(), fds + 1);
    auto accepted = co_await good.accept(1s);
    EXPECT_TRUE(accepted);
  }(&dropped));
  if (!dropped) GTEST_SKIP() << "this kernel refuses SYNs to a full listener instead of dropping them";
}

// Every address refuses: the error of the last failure, quickly, nothing left open.
TEST_P(HappyEyeballsTest, AllAttemptsFailingGivesTheError) {
  run([]() -> Task<void> {
    std::uint16_t closed = 0;
    {
      TcpSocket l = loopback_listener();
      closed = port_of(l);
    }
    const int fds = open_fd_count();
    std::vector<SocketAddress> addrs = {addr("127.0.0.1", closed), addr("127.0.0.2", closed),
                                        addr("127.0.0.3", closed)};
    if (ipv6_loopback_works()) addrs.push_back(addr("::1", closed));
    const auto t0 = std::chrono::steady_clock::now();
    auto sock = co_await connect_any(addrs);
    CO_ASSERT_FALSE(sock);
    EXPECT_EQ(sock.error(), std::errc::connection_refused) << sock.error().message();
    EXPECT_LT(since(t0), 200ms);  // each refusal starts the next attempt at once
    EXPECT_EQ(open_fd_count(), fds);
    auto none = co_await connect_any({});
    CO_ASSERT_FALSE(none);
    EXPECT_EQ(none.error(), ResolveError::no_address);
  }());
}

// Cancelling the task mid-race cancels every attempt; no fd is left.
TEST_P(HappyEyeballsTest, CancelMidRaceLeavesNoFds) {
  bool dropped = true;
  run([](bool* dropped) -> Task<void> {
    auto a = co_await make_blackhole(SocketAddress::loopback(0));
    auto b = co_await make_blackhole(SocketAddress::loopback(0));
    if (!a || !b) {
      *dropped = false;
      co_return;
    }
    const int fds = open_fd_count();
    ConnectOptions o;
    o.attempt_delay = 50ms;
    auto race = spawn(connect_any({*a->listener.local_address(), *b->listener.local_address()}, o));
    co_await sleep_for(200ms);  // both attempts are pending by now
    EXPECT_EQ(open_fd_count(), fds + 2);
    race.cancel();
    auto r = co_await race;
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), std::errc::operation_canceled);
    EXPECT_EQ(open_fd_count(), fds);
  }(&dropped));
  if (!dropped) GTEST_SKIP() << "this kernel refuses SYNs to a full listener instead of dropping them";
}

// The overall timeout covers the whole race.
TEST_P(HappyEyeballsTest, OverallTimeoutEndsTheRace) {
  bool dropped = true;
  run([](bool* dropped) -> Task<void> {
    auto a = co_await make_blackhole(SocketAddress::loopback(0));
    auto b = co_await make_blackhole(SocketAddress::loopback(0));
    if (!a || !b) {
      *dropped = false;
      co_return;
    }
    const int fds = open_fd_count();
    ConnectOptions o;
    o.attempt_delay = 50ms;
    o.timeout = 300ms;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<SocketAddress> addrs = {*a->listener.local_address(), *b->listener.local_address()};
    auto r = co_await connect_any(std::move(addrs), o);
    const Ms took = since(t0);
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), std::errc::timed_out);
    EXPECT_GE(took, 300ms);
    EXPECT_LT(took, 900ms);
    EXPECT_EQ(open_fd_count(), fds);
  }(&dropped));
  if (!dropped) GTEST_SKIP() << "this kernel refuses SYNs to a full listener instead of dropping them";
}

// The timeout also covers the resolution, and a failed resolution is the resolver's error.
TEST_P(HappyEyeballsTest, ResolutionErrorsAndTimeout) {
  if (!GALAY_TEST_HAVE_CARES) GTEST_SKIP() << "built without c-ares: names do not resolve";
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    dns->set("silent.test", behaving(DnsBehavior::silent));
    dns->set("gone.test", behaving(DnsBehavior::nxdomain));
    auto resolver = Resolver::create(options_for(*dns));
    CO_ASSERT_TRUE(resolver);
    const int fds = open_fd_count();
    ConnectOptions o;
    o.resolver = &*resolver;
    o.timeout = 250ms;
    const auto t0 = std::chrono::steady_clock::now();
    auto slow = co_await connect_by_name("silent.test", 80, o);
    CO_ASSERT_FALSE(slow);
    EXPECT_EQ(slow.error(), std::errc::timed_out);
    EXPECT_GE(since(t0), 250ms);
    auto gone = co_await connect_by_name("gone.test", 80, o);
    CO_ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error(), ResolveError::no_such_host);
    EXPECT_EQ(open_fd_count(), fds);
    co_await dns->stop();
  }());
}

// The family option: only IPv4 addresses are tried.
TEST_P(HappyEyeballsTest, FamilyOptionFiltersAddresses) {
  if (!GALAY_TEST_HAVE_CARES) GTEST_SKIP() << "built without c-ares: names do not resolve";
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    TcpSocket l = loopback_listener();
    dns->set("dual.test", records({"127.0.0.1"}, {"::1"}));
    ConnectOptions o;
    o.resolver_options = options_for(*dns);
    o.family = IpFamily::ipv4;
    auto sock = co_await connect_by_name("dual.test", port_of(l), o);
    CO_ASSERT_TRUE(sock);
    EXPECT_EQ(sock->peer_address()->family(), AddressFamily::ipv4);
    // The one-off resolver asked for A only.
    CO_ASSERT_TRUE(dns->queries().size() == 1u);
    EXPECT_EQ(dns->queries()[0].type, 1);
    co_await dns->stop();
  }());
}

// TcpSocket::connect(host, port): numeric hosts, and "localhost" (answered without DNS).
TEST_P(HappyEyeballsTest, TcpSocketConnectByName) {
  run([]() -> Task<void> {
    TcpSocket l = loopback_listener();
    auto numeric = co_await TcpSocket::connect("127.0.0.1", port_of(l), 2s);
    CO_ASSERT_TRUE(numeric);
    EXPECT_EQ(*numeric->peer_address(), *l.local_address());
    if (GALAY_TEST_HAVE_CARES) {
      // localhost may be ::1 first: listen there too on the same port if we can.
      auto l6 = TcpSocket::listen_on(SocketAddress::loopback(port_of(l), AddressFamily::ipv6));
      auto named = co_await TcpSocket::connect("localhost", port_of(l), 2s);
      CO_ASSERT_TRUE(named);
      EXPECT_EQ(named->peer_address()->port(), port_of(l));
    }
  }());
}

GALAY_INSTANTIATE_ALL_BACKENDS(HappyEyeballsTest);

}  // namespace
}  // namespace galay::test
