// Name resolution on every backend, against the loopback DNS responder in
// test/support/dns_responder.h: A/AAAA, CNAME chains, NXDOMAIN, SERVFAIL, REFUSED, truncation
// then TCP, slow and silent servers, numeric hosts (no query), the hosts file, bad names,
// timeouts and cancellation (fds back to the baseline, nothing firing later), and other
// connections being served while a lookup waits.
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "support/dns_responder.h"
#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;
using Ms = std::chrono::milliseconds;

constexpr const char* kNoCares = "built without c-ares (GALAY_KERNEL_WITH_CARES=OFF): names do not resolve";
#define SKIP_WITHOUT_CARES() \
  if (!GALAY_TEST_HAVE_CARES) GTEST_SKIP() << kNoCares

class ResolverTest : public BackendTest {};

// A resolver that asks only `dns` and nothing else on the machine: no hosts file, no search
// domains, one try of 2 s unless a test says otherwise.
ResolverOptions options_for(const DnsResponder& dns) {
  ResolverOptions o;
  o.servers = {dns.server()};
  o.use_hosts_file = false;
  o.use_search_domains = false;
  o.attempt_timeout = 2s;
  o.tries = 1;
  return o;
}

Ms since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<Ms>(std::chrono::steady_clock::now() - t0);
}

bool contains(const std::vector<SocketAddress>& v, const std::string& host, std::uint16_t port) {
  return std::find(v.begin(), v.end(), *SocketAddress::parse(host, port)) != v.end();
}

TEST_P(ResolverTest, ResolvesEveryAAndAaaaRecord) {
  SKIP_WITHOUT_CARES();
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    dns->set("host.test", records({"10.0.0.1", "10.0.0.2"}, {"fd00::1"}));
    auto resolver = Resolver::create(options_for(*dns));
    CO_ASSERT_TRUE(resolver);
    const int fds = open_fd_count();
    auto r = co_await resolver->resolve("host.test", 8080);
    CO_ASSERT_TRUE(r);
    EXPECT_EQ(r->size(), 3u);
    EXPECT_TRUE(contains(*r, "10.0.0.1", 8080));
    EXPECT_TRUE(contains(*r, "10.0.0.2", 8080));
    EXPECT_TRUE(contains(*r, "fd00::1", 8080));
    // One A and one AAAA query, over UDP; c-ares closed its sockets when they ended.
    EXPECT_EQ(dns->udp_queries(), 2);
    EXPECT_EQ(dns->tcp_queries(), 0);
    EXPECT_EQ(open_fd_count(), fds);
    co_await dns->stop();
  }());
}

TEST_P(ResolverTest, FamilyOptionAsksForOneFamily) {
  SKIP_WITHOUT_CARES();
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    dns->set("host.test", records({"10.0.0.1"}, {"fd00::1", "fd00::2"}));
    auto o = options_for(*dns);
    o.family = IpFamily::ipv4;
    auto v4 = Resolver::create(o);
    o.family = IpFamily::ipv6;
    auto v6 = Resolver::create(o);
    CO_ASSERT_TRUE(v4 && v6);
    auto r4 = co_await v4->resolve("host.test", 1);
    auto r6 = co_await v6->resolve("host.test", 1);
    CO_ASSERT_TRUE(r4 && r6);
    EXPECT_EQ(r4->size(), 1u);
    EXPECT_TRUE(contains(*r4, "10.0.0.1", 1));
    EXPECT_EQ(r6->size(), 2u);
    for (const auto& a : *r6) EXPECT_EQ(a.family(), AddressFamily::ipv6);
    CO_ASSERT_TRUE(dns->queries().size() == 2u);
    EXPECT_EQ(dns->queries()[0].type, 1);
    EXPECT_EQ(dns->queries()[1].type, 28);
    co_await dns->stop();
  }());
}

TEST_P(ResolverTest, ServiceNamesAndNumbers) {
  SKIP_WITHOUT_CARES();
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    dns->set("host.test", records({"10.0.0.1"}));
    auto resolver = Resolver::create(options_for(*dns));
    CO_ASSERT_TRUE(resolver);
    auto number = co_await resolver->resolve("host.test", "8443");
    CO_ASSERT_TRUE(number);
    EXPECT_EQ(number->front().port(), 8443);
    auto named = co_await resolver->resolve("host.test", "http");  // /etc/services
    CO_ASSERT_TRUE(named);
    EXPECT_EQ(named->front().port(), 80);
    for (const char* bad : {"no-such-service-here", "70000", "", "-1"}) {
      auto r = co_await resolver->resolve("host.test", bad);
      CO_ASSERT_FALSE(r);
      EXPECT_EQ(r.error(), ResolveError::bad_service) << bad;
      EXPECT_EQ(r.error(), std::errc::invalid_argument) << bad;
    }
    co_await dns->stop();
  }());
}

TEST_P(ResolverTest, FollowsCnameChain) {
  SKIP_WITHOUT_CARES();
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    dns->set("www.test", alias_of("edge.test"));
    dns->set("edge.test", alias_of("origin.test"));
    dns->set("origin.test", records({"10.1.1.1"}, {"fd00::9"}));
    auto resolver = Resolver::create(options_for(*dns));
    CO_ASSERT_TRUE(resolver);
    auto r = co_await resolver->resolve("www.test", 443);
    CO_ASSERT_TRUE(r);
    EXPECT_EQ(r->size(), 2u);
    EXPECT_TRUE(contains(*r, "10.1.1.1", 443));
    EXPECT_TRUE(contains(*r, "fd00::9", 443));
    co_await dns->stop();
  }());
}

TEST_P(ResolverTest, ErrorsNameTheCause) {
  SKIP_WITHOUT_CARES();
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    dns->set("gone.test", behaving(DnsBehavior::nxdomain));
    dns->set("broken.test", behaving(DnsBehavior::servfail));
    dns->set("private.test", behaving(DnsBehavior::refused));
    dns->set("v4only.test", records({"10.0.0.7"}));
    auto resolver = Resolver::create(options_for(*dns));
    auto o6 = options_for(*dns);
    o6.family = IpFamily::ipv6;
    auto v6 = Resolver::create(o6);
    CO_ASSERT_TRUE(resolver && v6);

    auto gone = co_await resolver->resolve("gone.test", 80);
    CO_ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error(), ResolveError::no_such_host);
    EXPECT_EQ(gone.error().category(), resolver_category());
    auto unknown = co_await resolver->resolve("never-configured.test", 80);
    CO_ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error(), ResolveError::no_such_host);
    auto broken = co_await resolver->resolve("broken.test", 80);
    CO_ASSERT_FALSE(broken);
    EXPECT_EQ(broken.error(), ResolveError::server_failure) << broken.error().message();
    auto refused = co_await resolver->resolve("private.test", 80);
    CO_ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), ResolveError::query_refused) << refused.error().message();
    // The name exists, but not with an IPv6 address.
    auto no_v6 = co_await v6->resolve("v4only.test", 80);
    CO_ASSERT_FALSE(no_v6);
    EXPECT_EQ(no_v6.error(), ResolveError::no_address) << no_v6.error().message();
    auto any = co_await resolver->resolve("v4only.test", 80);
    CO_ASSERT_TRUE(any);
    EXPECT_EQ(any->size(), 1u);
    co_await dns->stop();
  }());
}

TEST_P(ResolverTest, TruncatedUdpAnswerIsRetriedOverTcp) {
  SKIP_WITHOUT_CARES();
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    dns->set("big.test", records({"10.2.0.1", "10.2.0.2"}, {"fd00::2:1"}).with(DnsBehavior::truncate_udp));
    auto resolver = Resolver::create(options_for(*dns));
    CO_ASSERT_TRUE(resolver);
    const int fds = open_fd_count();
    auto r = co_await resolver->resolve("big.test", 53);
    CO_ASSERT_TRUE(r);
    EXPECT_EQ(r->size(), 3u);
    EXPECT_EQ(dns->udp_queries(), 2);  // both truncated
    EXPECT_EQ(dns->tcp_queries(), 2);  // both asked again over TCP
    co_await sleep_for(50ms);          // the responder sees c-ares's TCP close and closes its end
    EXPECT_EQ(open_fd_count(), fds);   // the UDP and TCP sockets are closed again
    co_await dns->stop();
  }());
}

TEST_P(ResolverTest, SlowServerIsWaitedFor) {
  SKIP_WITHOUT_CARES();
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    dns->set("slow.test", records({"10.3.0.1"}).delayed(200ms));
    auto resolver = Resolver::create(options_for(*dns));
    CO_ASSERT_TRUE(resolver);
    const auto t0 = std::chrono::steady_clock::now();
    auto r = co_await resolver->resolve("slow.test", 80);
    CO_ASSERT_TRUE(r || (ADD_FAILURE() << r.error().message(), false));
    EXPECT_TRUE(contains(*r, "10.3.0.1", 80));
    EXPECT_GE(since(t0), 200ms);
    co_await dns->stop();
  }());
}

// c-ares's own retries: per-try timeout, doubled on the second round, then timed_out.
TEST_P(ResolverTest, SilentServerTimesOutAfterTheTries) {
  SKIP_WITHOUT_CARES();
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    dns->set("silent.test", behaving(DnsBehavior::silent));
    auto o = options_for(*dns);
    o.attempt_timeout = 150ms;
    o.tries = 2;
    auto resolver = Resolver::create(o);
    CO_ASSERT_TRUE(resolver);
    const int fds = open_fd_count();
    const auto t0 = std::chrono::steady_clock::now();
    auto r = co_await resolver->resolve("silent.test", 80);
    const Ms took = since(t0);
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), ResolveError::timed_out) << r.error().message();
    EXPECT_EQ(r.error(), std::errc::timed_out);
    EXPECT_GE(took, 150ms + 300ms);
    EXPECT_LT(took, 3s);
    EXPECT_EQ(dns->udp_queries(), 4);  // A and AAAA, two tries each
    EXPECT_EQ(open_fd_count(), fds);
    co_await dns->stop();
  }());
}

// The call's own Timeout: timed_out at that time, the query cancelled and its socket closed.
TEST_P(ResolverTest, CallTimeoutCancelsTheQuery) {
  SKIP_WITHOUT_CARES();
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    dns->set("silent.test", behaving(DnsBehavior::silent));
    auto o = options_for(*dns);
    o.attempt_timeout = 5s;
    auto resolver = Resolver::create(o);
    CO_ASSERT_TRUE(resolver);
    const int fds = open_fd_count();
    const auto t0 = std::chrono::steady_clock::now();
    auto r = co_await resolver->resolve("silent.test", 80, 300ms);
    const Ms took = since(t0);
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), std::errc::timed_out) << r.error().message();
    EXPECT_GE(took, 300ms);
    EXPECT_LT(took, 2s);
    EXPECT_EQ(open_fd_count(), fds);
    // The free function: same limit, its one-off resolver gone with it.
    auto once = co_await resolve("silent.test", 80, o, 200ms);
    CO_ASSERT_FALSE(once);
    EXPECT_EQ(once.error(), std::errc::timed_out);
    EXPECT_EQ(open_fd_count(), fds);
    co_await dns->stop();
  }());
}

// Cancelled mid-query: operation_canceled at once, the socket closed, and the answer that
// arrives later reaches nothing (ASan would see a callback into freed memory). The
// resolver is still usable afterwards.
TEST_P(ResolverTest, CancelMidQueryLeavesNothingBehind) {
  SKIP_WITHOUT_CARES();
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    dns->set("slow.test", records({"10.4.0.1"}).delayed(300ms));
    dns->set("quick.test", records({"10.4.0.2"}));
    auto resolver = Resolver::create(options_for(*dns));
    CO_ASSERT_TRUE(resolver);
    const int fds = open_fd_count();
    auto lookup = spawn(resolver->resolve("slow.test", 80));
    co_await sleep_for(100ms);
    EXPECT_EQ(dns->udp_queries(), 2);
    EXPECT_GT(open_fd_count(), fds);  // c-ares's UDP socket
    const auto t0 = std::chrono::steady_clock::now();
    lookup.cancel();
    auto r = co_await lookup;
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), std::errc::operation_canceled);
    EXPECT_LT(since(t0), 100ms);
    EXPECT_EQ(open_fd_count(), fds);
    // Let the late answers go out to the closed port.
    co_await sleep_for(400ms);
    EXPECT_EQ(dns->answers_sent(), 2);
    auto again = co_await resolver->resolve("quick.test", 80);
    CO_ASSERT_TRUE(again);
    EXPECT_TRUE(contains(*again, "10.4.0.2", 80));
    EXPECT_EQ(open_fd_count(), fds);
    co_await dns->stop();
  }());
}

// Cancelling one of two lookups on one resolver leaves the other running to its answer.
TEST_P(ResolverTest, CancellingOneLookupKeepsTheOther) {
  SKIP_WITHOUT_CARES();
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    dns->set("one.test", records({"10.5.0.1"}).delayed(300ms));
    dns->set("two.test", records({"10.5.0.2"}).delayed(300ms));
    auto resolver = Resolver::create(options_for(*dns));
    CO_ASSERT_TRUE(resolver);
    const int fds = open_fd_count();
    auto one = spawn(resolver->resolve("one.test", 80));
    auto two = spawn(resolver->resolve("two.test", 80));
    co_await sleep_for(100ms);
    one.cancel();
    auto r1 = co_await one;
    CO_ASSERT_FALSE(r1);
    EXPECT_EQ(r1.error(), std::errc::operation_canceled);
    auto r2 = co_await two;
    CO_ASSERT_TRUE(r2);
    EXPECT_TRUE(contains(*r2, "10.5.0.2", 80));
    co_await sleep_for(50ms);
    EXPECT_EQ(open_fd_count(), fds);
    co_await dns->stop();
  }());
}

TEST_P(ResolverTest, ManyConcurrentLookupsShareOneChannel) {
  SKIP_WITHOUT_CARES();
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    for (int i = 0; i < 20; ++i)
      dns->set("n" + std::to_string(i) + ".test", records({"10.6.0." + std::to_string(i + 1)}).delayed(20ms));
    auto resolver = Resolver::create(options_for(*dns));
    CO_ASSERT_TRUE(resolver);
    const int fds = open_fd_count();
    std::vector<JoinHandle<Expected<std::vector<SocketAddress>>>> lookups;
    for (int i = 0; i < 20; ++i) lookups.push_back(spawn(resolver->resolve("n" + std::to_string(i) + ".test", 80)));
    for (int i = 0; i < 20; ++i) {
      auto r = co_await lookups[static_cast<std::size_t>(i)];
      CO_ASSERT_TRUE(r);
      EXPECT_TRUE(contains(*r, "10.6.0." + std::to_string(i + 1), 80));
    }
    EXPECT_EQ(dns->udp_queries(), 40);
    EXPECT_EQ(open_fd_count(), fds);
    co_await dns->stop();
  }());
}

TEST_P(ResolverTest, NumericHostsSendNoQuery) {
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    auto resolver = Resolver::create(options_for(*dns));
    auto o4 = options_for(*dns);
    o4.family = IpFamily::ipv4;
    auto v4 = Resolver::create(o4);
    CO_ASSERT_TRUE(resolver && v4);
    auto a = co_await resolver->resolve("127.0.0.1", 80);
    CO_ASSERT_TRUE(a);
    EXPECT_EQ(*a, std::vector<SocketAddress>{*SocketAddress::parse("127.0.0.1", 80)});
    auto b = co_await resolver->resolve("::1", "443");
    CO_ASSERT_TRUE(b);
    EXPECT_EQ(*b, std::vector<SocketAddress>{*SocketAddress::parse("::1", 443)});
    auto c = co_await resolver->resolve("[fd00::5]", 7);
    CO_ASSERT_TRUE(c);
    EXPECT_EQ(*c, std::vector<SocketAddress>{*SocketAddress::parse("fd00::5", 7)});
    auto wrong_family = co_await v4->resolve("::1", 80);
    CO_ASSERT_FALSE(wrong_family);
    EXPECT_EQ(wrong_family.error(), ResolveError::no_address);
    auto once = co_await resolve("10.0.0.1", 9, options_for(*dns));
    CO_ASSERT_TRUE(once);
    EXPECT_EQ(once->front(), *SocketAddress::parse("10.0.0.1", 9));
    EXPECT_TRUE(dns->queries().empty());
    co_await dns->stop();
  }());
}

TEST_P(ResolverTest, BadNamesAreRefusedWithoutQuery) {
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    auto resolver = Resolver::create(options_for(*dns));
    CO_ASSERT_TRUE(resolver);
    const std::vector<std::string> bad = {
        "",      std::string("evil\0.test", 10), std::string(254, 'a'), std::string(64, 'a') + ".test", "a..test", ".",
        ".test",
    };
    for (const std::string& name : bad) {
      auto r = co_await resolver->resolve(name, 80);
      CO_ASSERT_FALSE(r);
      EXPECT_EQ(r.error(), ResolveError::bad_name) << name.size();
      EXPECT_EQ(r.error(), std::errc::invalid_argument);
    }
    // The longest valid name (253 characters in labels of 63) is asked for.
    std::string longest =
        std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." + std::string(61, 'd');
    EXPECT_EQ(longest.size(), 253u);
    if (GALAY_TEST_HAVE_CARES) {
      auto r = co_await resolver->resolve(longest, 80);
      CO_ASSERT_FALSE(r);
      EXPECT_EQ(r.error(), ResolveError::no_such_host);
      EXPECT_EQ(dns->udp_queries(), 2);
    } else {
      EXPECT_TRUE(dns->queries().empty());
    }
    co_await dns->stop();
  }());
}

// A server address where nothing listens: ICMP port unreachable, reported as such.
TEST_P(ResolverTest, ServerPortClosedIsConnectionRefused) {
  SKIP_WITHOUT_CARES();
  run([]() -> Task<void> {
    std::uint16_t closed = 0;
    {
      auto probe = UdpSocket::bind_to(SocketAddress::loopback(0));
      CO_ASSERT_TRUE(probe);
      closed = probe->local_address()->port();
    }
    ResolverOptions o;
    o.servers = {"127.0.0.1:" + std::to_string(closed)};
    o.use_hosts_file = false;
    o.use_search_domains = false;
    o.attempt_timeout = 2s;
    o.tries = 1;
    auto resolver = Resolver::create(o);
    CO_ASSERT_TRUE(resolver);
    const int fds = open_fd_count();
    const auto t0 = std::chrono::steady_clock::now();
    auto r = co_await resolver->resolve("host.test", 80);
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), ResolveError::connection_refused) << r.error().message();
    EXPECT_EQ(r.error(), std::errc::connection_refused);
    EXPECT_LT(since(t0), 1s);  // not the 2 s timeout
    EXPECT_EQ(open_fd_count(), fds);
  }());
}

// The hosts file answers before DNS (c-ares reads the file named by CARES_HOSTS here).
TEST_P(ResolverTest, HostsFileAnswersWithoutQuery) {
  SKIP_WITHOUT_CARES();
  char path[] = "/tmp/galay-hosts-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string text = "# test hosts\n10.9.8.7 filehost.test alias.filehost.test\nfd00::77 filehost.test\n";
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  ::setenv("CARES_HOSTS", path, 1);
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    dns->set("dnsonly.test", records({"10.9.9.9"}));
    auto o = options_for(*dns);
    o.use_hosts_file = true;
    o.hosts_file_from_env = true;
    auto resolver = Resolver::create(o);
    CO_ASSERT_TRUE(resolver);
    auto r = co_await resolver->resolve("filehost.test", 22);
    CO_ASSERT_TRUE(r);
    EXPECT_EQ(r->size(), 2u);
    EXPECT_TRUE(contains(*r, "10.9.8.7", 22));
    EXPECT_TRUE(contains(*r, "fd00::77", 22));
    auto alias = co_await resolver->resolve("ALIAS.filehost.test", 22);
    CO_ASSERT_TRUE(alias);
    EXPECT_TRUE(contains(*alias, "10.9.8.7", 22));
    EXPECT_TRUE(dns->queries().empty());
    // Not in the file: DNS is asked.
    auto fallback = co_await resolver->resolve("dnsonly.test", 22);
    CO_ASSERT_TRUE(fallback);
    EXPECT_TRUE(contains(*fallback, "10.9.9.9", 22));
    EXPECT_EQ(dns->udp_queries(), 2);
    // With the hosts file off, the file's name goes to DNS (which does not know it).
    o.use_hosts_file = false;
    auto dns_only = Resolver::create(o);
    CO_ASSERT_TRUE(dns_only);
    auto miss = co_await dns_only->resolve("filehost.test", 22);
    CO_ASSERT_FALSE(miss);
    EXPECT_EQ(miss.error(), ResolveError::no_such_host);
    co_await dns->stop();
  }());
  ::unsetenv("CARES_HOSTS");
  ::unlink(path);
}

// A lookup stuck on a silent server does not hold up the loop: an echo over loopback TCP on
// the same scheduler runs its round trips meanwhile.
TEST_P(ResolverTest, OtherConnectionsAreServedWhileALookupWaits) {
  SKIP_WITHOUT_CARES();
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    dns->set("silent.test", behaving(DnsBehavior::silent));
    auto o = options_for(*dns);
    // Chaos mode delays every completion by up to a few loop turns: allow for it.
    const int slack = chaos::enabled() ? 5 : 1;
    o.attempt_timeout = 800ms * slack;
    auto resolver = Resolver::create(o);
    CO_ASSERT_TRUE(resolver);
    const auto t0 = std::chrono::steady_clock::now();
    auto lookup = spawn(resolver->resolve("silent.test", 80));

    auto [client, server] = co_await loopback_tcp_pair();
    auto echo = spawn([](TcpSocket s) -> Task<void> {
      std::array<std::byte, 64> buf;
      for (;;) {
        auto n = co_await s.recv(buf);
        if (!n || *n == 0) co_return;
        auto sent = co_await s.send_all(std::span(buf.data(), *n));
        if (!sent) co_return;
      }
    }(std::move(server)));
    Ms slowest{0};
    for (int i = 0; i < 100; ++i) {
      const auto r0 = std::chrono::steady_clock::now();
      std::array<std::byte, 8> msg{};
      msg[0] = static_cast<std::byte>(i);
      CO_ASSERT_TRUE(co_await client.send_all(msg));
      std::array<std::byte, 8> got{};
      auto n = co_await recv_exactly(client, got.data(), got.size(), 2s);  // may come in pieces
      CO_ASSERT_TRUE(n && *n == msg.size());
      EXPECT_EQ(got[0], msg[0]);
      slowest = std::max(slowest, since(r0));
    }
    const Ms echo_done = since(t0);
    EXPECT_FALSE(lookup.done());  // still waiting for the silent server
    EXPECT_LT(echo_done, 700ms * slack);
    EXPECT_LT(slowest, 200ms * slack);
    auto r = co_await lookup;
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), ResolveError::timed_out);
    EXPECT_GE(since(t0), 800ms);
    client = TcpSocket();
    co_await echo;
    co_await dns->stop();
  }());
}

// The scheduler is destroyed while a lookup waits on a silent server: its frame, the
// watcher and timer tasks and the c-ares channel go with it, and nothing fires later or
// leaks (LeakSanitizer checks the query record and the c-ares state).
TEST_P(ResolverTest, SchedulerShutdownWithLookupInFlight) {
  SKIP_WITHOUT_CARES();
  const int fds = open_fd_count();
  run([]() -> Task<void> {
    auto dns = DnsResponder::start();
    CO_ASSERT_TRUE(dns);
    dns->set("silent.test", behaving(DnsBehavior::silent));
    auto resolver = Resolver::create(options_for(*dns));
    CO_ASSERT_TRUE(resolver);
    spawn(resolver->resolve("silent.test", 80)).detach();
    co_await sleep_for(50ms);
    EXPECT_EQ(dns->udp_queries(), 2);
  }());
  sched_->shutdown();
  sched_.reset();
  EXPECT_LE(open_fd_count(), fds);
}

TEST_P(ResolverTest, MovedFromResolverFailsCleanly) {
  run([]() -> Task<void> {
    auto resolver = Resolver::create();
    CO_ASSERT_TRUE(resolver);
    Resolver moved = std::move(*resolver);
    auto r = co_await resolver->resolve("127.0.0.1", 80);  // NOLINT(bugprone-use-after-move): on purpose
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), std::errc::bad_file_descriptor);
    auto ok = co_await moved.resolve("127.0.0.1", 80);
    EXPECT_TRUE(ok);
  }());
}

GALAY_INSTANTIATE_ALL_BACKENDS(ResolverTest);

TEST(ResolverErrors, CategoryMessagesAndConditions) {
  EXPECT_STREQ(resolver_category().name(), "resolver");
  for (int e = static_cast<int>(ResolveError::no_such_host); e <= static_cast<int>(ResolveError::resolver_failure);
       ++e) {
    const std::error_code ec = make_error_code(static_cast<ResolveError>(e));
    EXPECT_FALSE(ec.message().empty());
    EXPECT_NE(ec.message(), "unknown resolver error");
  }
  EXPECT_EQ(make_error_code(ResolveError::timed_out), std::errc::timed_out);
  EXPECT_EQ(make_error_code(ResolveError::connection_refused), std::errc::connection_refused);
  EXPECT_EQ(make_error_code(ResolveError::cancelled), std::errc::operation_canceled);
  EXPECT_EQ(make_error_code(ResolveError::bad_name), std::errc::invalid_argument);
  EXPECT_NE(make_error_code(ResolveError::no_such_host), std::errc::timed_out);
  EXPECT_NE(make_error_code(ResolveError::no_such_host), make_error_code(ResolveError::no_address));
}

TEST(ResolverErrors, NeedsAScheduler) {
  auto r = Resolver::create();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Error::not_bound_to_scheduler);
}

}  // namespace
}  // namespace galay::test
