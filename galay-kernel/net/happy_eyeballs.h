#pragma once
/// @file happy_eyeballs.h
/// Connect by name with Happy Eyeballs (RFC 8305): `co_await connect_by_name("example.com",
/// 443)` resolves the name (net/resolver.h), then races TCP connections to its addresses
/// and yields the first socket that connects.
///
/// Contract:
/// - Order: the resolver's (RFC 6724) order, regrouped so the families alternate, IPv6 first
///   (ConnectOptions::prefer_ipv6); within a family the order is kept.
/// - Pacing: one attempt starts; the next starts when the attempt delay (250 ms by default,
///   RFC 8305's "Connection Attempt Delay") has passed since the last start, or at once when
///   an attempt fails. Earlier attempts keep running meanwhile.
/// - The first attempt to connect wins. Every other attempt is cancelled through the
///   socket's own cancellation path and awaited, and its socket closed, before the call
///   returns: no fd is left behind and nothing completes later.
/// - If every attempt fails, the error is the last failure's (connection_refused,
///   network_unreachable, ...). A failed resolution yields the resolver's error
///   (ResolveError, see resolver.h).
/// - ConnectOptions::timeout limits the whole call, resolution included, and yields
///   std::errc::timed_out. Cancelling the calling task (CancelScope, JoinHandle::cancel, a
///   lost when_any) cancels the lookup or every attempt and yields operation_canceled.
/// - The resolution waits for both the A and the AAAA answer before the first attempt
///   (RFC 8305 section 3's start-on-the-first-answer is not done).

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "galay-kernel/net/tcp_socket.h"
#include "galay-kernel/net/address.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/io/op.h"
#include "galay-kernel/coro/task.h"
#include "galay-kernel/net/resolver.h"

namespace galay {

/// How connect_by_name() and connect_any() race their connection attempts.
struct ConnectOptions {
  /// Limit for the whole call: resolution and every connection attempt.
  Timeout timeout;
  /// RFC 8305's Connection Attempt Delay: how long the latest attempt runs alone before the
  /// next one starts (an attempt that fails starts the next at once).
  std::chrono::milliseconds attempt_delay{250};
  /// Start with an IPv6 address (RFC 8305 section 4); false: start with IPv4.
  bool prefer_ipv6 = true;
  /// Which families to connect over (addresses of the other family are skipped).
  IpFamily family = IpFamily::any;
  /// The resolver connect_by_name() uses (not owned; it must outlive the call). Null: a
  /// one-off resolver made with `resolver_options`.
  Resolver* resolver = nullptr;
  /// Options of the one-off resolver (its family is narrowed to `family`).
  ResolverOptions resolver_options;
};

/// Resolve `host` and connect to `port` on the first of its addresses that answers (Happy
/// Eyeballs, see the file comment). Yields the connected socket, or the error.
Task<Expected<TcpSocket>> connect_by_name(std::string host, std::uint16_t port, ConnectOptions options = {});

/// Race connections to `addresses` (with their ports) the same way, without resolving;
/// `options.resolver` and `options.resolver_options` are not used. An empty list (after
/// the family filter) yields ResolveError::no_address.
Task<Expected<TcpSocket>> connect_any(std::vector<SocketAddress> addresses, ConnectOptions options = {});

/// The order connect_any() tries `addresses` in: families alternating, starting with IPv6
/// (or IPv4 when `prefer_ipv6` is false, or when there is no IPv6 address), each family in
/// its given order. Duplicates are dropped.
std::vector<SocketAddress> happy_eyeballs_order(const std::vector<SocketAddress>& addresses, bool prefer_ipv6 = true);

}  // namespace galay
