#pragma once
/// @file resolver.h
/// Name resolution on the event loop: `co_await resolver.resolve("example.com", 443)` yields
/// every address of the name (A and AAAA) as SocketAddress values, or an error value.
///
/// Contract:
/// - Lookups are done by c-ares (one channel per Resolver, reused by all its lookups). Its
///   sockets are the library's own UdpSocket/TcpSocket on the resolver's scheduler, waited on
///   with wait_readable()/wait_writable(), and its retry timer is a sleep on the same loop:
///   no thread per query and no blocking network call on the loop's thread. What c-ares does
///   synchronously is local: reading /etc/hosts, /etc/resolv.conf and /etc/services.
/// - Numeric hosts ("127.0.0.1", "::1", "[::1]") are answered at once, without a query.
///   /etc/hosts is consulted before DNS unless ResolverOptions::use_hosts_file is false.
/// - Errors are values. Causes reported by the resolver are ResolveError codes
///   (resolver_category()): no_such_host, no_address, server_failure, timed_out,
///   connection_refused, bad_name, ... Those with a std::errc counterpart compare equal to
///   it (`ec == std::errc::timed_out`). The call's own Timeout yields std::errc::timed_out;
///   cancellation (CancelScope, JoinHandle::cancel, a lost when_any) yields
///   std::errc::operation_canceled.
/// - Cancelling a lookup (or its timeout) detaches it from the resolver at once. When no
///   other lookup of the same resolver is still wanted, the c-ares queries are cancelled
///   (ares_cancel) and their sockets closed before the cancelled call returns; otherwise the
///   detached query ends with the others (bounded by the per-try timeout and tries). A
///   detached query never calls back into freed memory.
/// - A Resolver belongs to the scheduler of the thread that created it: use it there, and
///   destroy it (and finish its lookups) before that scheduler. Moving it is always safe.
/// - Built without c-ares (GALAY_KERNEL_WITH_CARES=OFF), only numeric hosts resolve; names
///   yield ResolveError::not_supported.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "galay-kernel/net/address.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/io/op.h"
#include "galay-kernel/coro/task.h"

namespace galay {

/// Which address families a lookup asks for.
enum class IpFamily {
  any,   ///< IPv4 and IPv6 (A and AAAA queries)
  ipv4,  ///< IPv4 only (A)
  ipv6,  ///< IPv6 only (AAAA)
};

/// Why a name could not be resolved (resolver_category()). Values that have a std::errc
/// counterpart compare equal to it: timed_out, connection_refused, cancelled
/// (operation_canceled), bad_name and bad_service (invalid_argument), not_supported.
enum class ResolveError {
  no_such_host = 1,    ///< the name does not exist (NXDOMAIN, and not in the hosts file)
  no_address,          ///< the name exists but has no address of the requested family
  server_failure,      ///< the DNS server answered SERVFAIL
  query_refused,       ///< the DNS server answered REFUSED
  connection_refused,  ///< nothing listens at the DNS server's address (ICMP port unreachable, TCP RST)
  timed_out,           ///< the DNS server did not answer within the tries (ResolverOptions)
  bad_name,            ///< not a valid host name: empty, embedded NUL, too long, empty label
  bad_service,         ///< a service name that /etc/services does not know, or a bad port
  bad_response,        ///< the server's answer was malformed (FORMERR, unparsable)
  not_implemented,     ///< the DNS server answered NOTIMP
  cancelled,           ///< the lookup was cancelled inside the resolver (it was destroyed)
  not_supported,       ///< names need c-ares, and this build has none (numeric hosts only)
  resolver_failure,    ///< anything else: out of memory, an unreadable configuration file
};

/// The category of ResolveError ("resolver").
const std::error_category& resolver_category() noexcept;

/// Make a std::error_code from a ResolveError (found by ADL so `ec == ResolveError::x` works).
inline std::error_code make_error_code(ResolveError e) noexcept { return {static_cast<int>(e), resolver_category()}; }

/// How a Resolver looks names up. The defaults behave like the system resolver: servers,
/// per-try timeout, tries and search domains from /etc/resolv.conf, /etc/hosts first.
struct ResolverOptions {
  /// Which families resolve() asks for.
  IpFamily family = IpFamily::any;
  /// DNS servers to ask instead of /etc/resolv.conf's, in order: "10.0.0.1", "127.0.0.1:5353",
  /// "[::1]:5353" (the same port is used for UDP and TCP). Empty: /etc/resolv.conf.
  std::vector<std::string> servers;
  /// Time to wait for an answer to one try (c-ares doubles it on each round through the
  /// servers). Zero: /etc/resolv.conf's "timeout", else 5 s.
  std::chrono::milliseconds attempt_timeout{0};
  /// Tries per server. Zero: /etc/resolv.conf's "attempts", else 4.
  int tries = 0;
  /// Look in the hosts file before asking DNS (c-ares lookup order "fb"; false: "b", DNS only).
  bool use_hosts_file = true;
  /// Read the hosts file named by the CARES_HOSTS environment variable instead of /etc/hosts
  /// (c-ares's ARES_AI_ENVHOSTS; c-ares 1.18 has no per-channel hosts path). For tests.
  bool hosts_file_from_env = false;
  /// Apply /etc/resolv.conf's search domains to names with fewer dots than "ndots".
  bool use_search_domains = true;
};

/// A name resolver: one c-ares channel on the current scheduler, reused by every lookup.
/// Move-only. Many lookups may run at once on one Resolver.
class Resolver {
 public:
  /// A resolver on the current thread's scheduler. Fails with Error::not_bound_to_scheduler
  /// outside a scheduler's loop, Error::invalid_address for a malformed server, or
  /// ResolveError::resolver_failure if c-ares cannot be set up.
  static Expected<Resolver> create(ResolverOptions options = {});

  /// Take over another resolver's channel; it becomes empty.
  Resolver(Resolver&&) noexcept;
  /// Drop this resolver's channel, then take over the other's.
  Resolver& operator=(Resolver&&) noexcept;
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;
  /// Drops the channel. Lookups still running keep it alive until they end.
  ~Resolver();

  /// Every address of `host` (IPv6 and IPv4 as ResolverOptions::family says, in RFC 6724
  /// order, without duplicates) with `service`'s port: a number ("443") or a name from
  /// /etc/services ("https", looked up for TCP). The whole lookup is limited by `timeout`.
  Task<Expected<std::vector<SocketAddress>>> resolve(std::string host, std::string_view service, Timeout timeout = {});
  /// resolve() with a port number.
  Task<Expected<std::vector<SocketAddress>>> resolve(std::string host, std::uint16_t port, Timeout timeout = {});

  /// The options the resolver was created with.
  const ResolverOptions& options() const noexcept;

 private:
  struct State;
  explicit Resolver(std::shared_ptr<State> state) noexcept;
  static Task<Expected<std::vector<SocketAddress>>> lookup(std::shared_ptr<State> state, std::string host,
                                                           std::uint16_t port, Timeout timeout);
  std::shared_ptr<State> state_;
};

/// One lookup on a resolver made for it (see Resolver::resolve()); `timeout` limits the
/// whole call. Prefer a long-lived Resolver for many lookups: this one re-reads the system
/// configuration each time.
Task<Expected<std::vector<SocketAddress>>> resolve(std::string host, std::string_view service,
                                                   ResolverOptions options = {}, Timeout timeout = {});
/// resolve() with a port number.
Task<Expected<std::vector<SocketAddress>>> resolve(std::string host, std::uint16_t port, ResolverOptions options = {},
                                                   Timeout timeout = {});

}  // namespace galay

template <>
struct std::is_error_code_enum<galay::ResolveError> : std::true_type {};
