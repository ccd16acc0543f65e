#pragma once
/// @file address.h
/// SocketAddress: an IPv4 or IPv6 address plus port, parsed from literals only (no DNS:
/// a resolver would block the event loop). Malformed input is an error value.

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "galay-kernel/common/error.h"
#include "galay-kernel/common/expected.h"

namespace galay {

/// Address family of a socket.
enum class AddressFamily { ipv4 = AF_INET, ipv6 = AF_INET6 };

/// An IPv4/IPv6 socket address (sockaddr_storage underneath).
class SocketAddress {
 public:
  SocketAddress() noexcept;

  /// Parse a literal host ("127.0.0.1", "::1", "[::1]", "fe80::1%eth0", "[fe80::1%2]") and
  /// a port. Brackets are accepted around IPv6 literals only; a zone (%name or %index)
  /// only on IPv6, and an unknown interface name is an error.
  static Expected<SocketAddress> parse(std::string_view host, std::uint16_t port);
  /// Parse "host:port", "[v6]:port". Ports must be 0..65535 with no trailing garbage.
  static Expected<SocketAddress> parse(std::string_view host_and_port);
  /// 127.0.0.1:port or [::1]:port.
  static SocketAddress loopback(std::uint16_t port, AddressFamily family = AddressFamily::ipv4) noexcept;
  /// 0.0.0.0:port or [::]:port.
  static SocketAddress any(std::uint16_t port, AddressFamily family = AddressFamily::ipv4) noexcept;
  /// Wrap a kernel-provided address (accept, getsockname). Copies the family's size only
  /// (`len` may be larger); an error for non-IP families or a `len` too short for the family.
  static Expected<SocketAddress> from_sockaddr(const sockaddr* sa, socklen_t len);

  /// ipv4 or ipv6.
  AddressFamily family() const noexcept;
  /// The port, in host byte order.
  std::uint16_t port() const noexcept;
  /// "1.2.3.4:80", "[::1]:80", "[fe80::1%2]:80" (the scope id as a number, so it parses back).
  std::string to_string() const;

  /// The sockaddr, for bind/connect/sendto.
  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
  /// The sockaddr, for the kernel to fill in (then call set_size()).
  sockaddr* data() noexcept { return reinterpret_cast<sockaddr*>(&storage_); }
  /// Length of the address in data().
  socklen_t size() const noexcept { return len_; }
  /// Capacity for the kernel to fill in (accept, recvfrom).
  static constexpr socklen_t capacity() noexcept { return sizeof(sockaddr_storage); }
  /// Set the length after the kernel filled data() in.
  void set_size(socklen_t len) noexcept { len_ = len; }

  /// Same family, address and port (IPv6 scope id included).
  friend bool operator==(const SocketAddress& a, const SocketAddress& b) noexcept;

 private:
  sockaddr_storage storage_;
  socklen_t len_;
};

}  // namespace galay
