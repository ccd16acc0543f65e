#pragma once
// A small DNS responder for the resolver tests, built on the library's own UdpSocket and
// TcpSocket: UDP and TCP on 127.0.0.1 with one kernel-chosen port, served by tasks on the
// current scheduler. Never leaves the machine.
//
// Each name is configured by the test: its A and AAAA records, a CNAME (followed by the
// responder, so chains come back in one answer), or a behaviour: NXDOMAIN, SERVFAIL,
// REFUSED, truncated over UDP (TC bit, no records; the full answer over TCP), an answer
// after a delay, or silence. Unknown names are NXDOMAIN. Every query it receives is counted.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "galay-kernel/galay-kernel.h"

namespace galay::test {

/// What the responder does with queries for one name.
enum class DnsBehavior {
  answer,        ///< the records (or CNAME chain), NOERROR; no record of the type: NOERROR, empty
  nxdomain,      ///< NXDOMAIN
  servfail,      ///< SERVFAIL
  refused,       ///< REFUSED
  truncate_udp,  ///< over UDP: TC bit and no records; over TCP: the answer
  silent,        ///< count the query, never answer
};

/// The configuration of one name.
struct DnsEntry {
  std::vector<std::string> a;     ///< IPv4 literals
  std::vector<std::string> aaaa;  ///< IPv6 literals
  std::string cname;              ///< if set: CNAME to this name (whose records follow)
  DnsBehavior behavior = DnsBehavior::answer;
  std::chrono::milliseconds delay{0};  ///< answer this much later (UDP and TCP)

  /// The same entry answered `d` later.
  DnsEntry delayed(std::chrono::milliseconds d) const {
    DnsEntry e = *this;
    e.delay = d;
    return e;
  }
  /// The same entry with behaviour `b`.
  DnsEntry with(DnsBehavior b) const {
    DnsEntry e = *this;
    e.behavior = b;
    return e;
  }
};

/// A name with these A and AAAA records.
inline DnsEntry records(std::vector<std::string> a, std::vector<std::string> aaaa = {}) {
  DnsEntry e;
  e.a = std::move(a);
  e.aaaa = std::move(aaaa);
  return e;
}
/// A name that is a CNAME for `target`.
inline DnsEntry alias_of(std::string target) {
  DnsEntry e;
  e.cname = std::move(target);
  return e;
}
/// A name with no records and behaviour `b`.
inline DnsEntry behaving(DnsBehavior b) { return DnsEntry().with(b); }

/// A query the responder received.
struct DnsQuery {
  std::string name;  ///< lower-case, without the trailing dot
  int type = 0;      ///< 1 = A, 28 = AAAA, ...
  bool tcp = false;  ///< came over TCP
};

class DnsResponder {
 public:
  /// Bind UDP and TCP on 127.0.0.1 (same port) and start serving on the current scheduler.
  static std::unique_ptr<DnsResponder> start();
  /// Stops serving (its tasks are cancelled and finish on the scheduler's next turns).
  ~DnsResponder();
  DnsResponder(const DnsResponder&) = delete;
  DnsResponder& operator=(const DnsResponder&) = delete;

  /// Configure `name` (case-insensitive, no trailing dot).
  void set(const std::string& name, DnsEntry entry);
  /// "127.0.0.1:port", for ResolverOptions::servers.
  std::string server() const;
  /// The port UDP and TCP are served on.
  std::uint16_t port() const;
  /// Every query received so far.
  const std::vector<DnsQuery>& queries() const;
  /// Queries received over UDP / TCP.
  int udp_queries() const;
  int tcp_queries() const;
  /// Answers the responder has sent (a delayed one counts once sent).
  int answers_sent() const;
  /// Cancel the serving tasks and wait until they have ended.
  Task<void> stop();

  struct State;

 private:
  explicit DnsResponder(std::shared_ptr<State> s) : state_(std::move(s)) {}
  std::shared_ptr<State> state_;
};

}  // namespace galay::test
