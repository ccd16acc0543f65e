#include "galay-kernel/net/address.h"

#include <arpa/inet.h>
#include <net/if.h>

#include <charconv>
#include <cstring>

namespace galay {

SocketAddress::SocketAddress() noexcept : len_(0) { std::memset(&storage_, 0, sizeof(storage_)); }

Expected<SocketAddress> SocketAddress::parse(std::string_view host, std::uint16_t port) {
  // Brackets are for IPv6 literals only (RFC 3986 IP-literal): "[127.0.0.1]" is refused below.
  const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) host = host.substr(1, host.size() - 2);
  // inet_pton would stop at an embedded NUL and accept the prefix: refuse it instead.
  if (host.find('\0') != std::string_view::npos) return make_error(Error::invalid_address);
  // An IPv6 zone ("fe80::1%1", "fe80::1%eth0", RFC 4007) names the scope id.
  std::string_view zone;
  if (auto pct = host.find('%'); pct != std::string_view::npos) {
    zone = host.substr(pct + 1);
    host = host.substr(0, pct);
    if (zone.empty() || zone.size() >= IF_NAMESIZE) return make_error(Error::invalid_address);
  }
  // inet_pton needs a NUL-terminated string; the longest literal is an IPv6 one (45 chars).
  char text[INET6_ADDRSTRLEN + 1];
  if (host.empty() || host.size() >= sizeof(text)) return make_error(Error::invalid_address);
  std::memcpy(text, host.data(), host.size());
  text[host.size()] = '\0';

  SocketAddress out;
  if (host.find(':') == std::string_view::npos) {
    if (bracketed || !zone.empty()) return make_error(Error::invalid_address);
    auto* sin = reinterpret_cast<sockaddr_in*>(&out.storage_);
    if (inet_pton(AF_INET, text, &sin->sin_addr) != 1) return make_error(Error::invalid_address);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    out.len_ = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out.storage_);
    if (inet_pton(AF_INET6, text, &sin6->sin6_addr) != 1) return make_error(Error::invalid_address);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    if (!zone.empty()) {
      std::uint32_t id = 0;
      auto [end, ec] = std::from_chars(zone.data(), zone.data() + zone.size(), id);
      if (ec != std::errc() || end != zone.data() + zone.size()) {
        // Not a number: an interface name.
        char name[IF_NAMESIZE];
        std::memcpy(name, zone.data(), zone.size());
        name[zone.size()] = '\0';
        id = if_nametoindex(name);
        if (id == 0) return make_error(Error::invalid_address);
      }
      sin6->sin6_scope_id = id;
    }
    out.len_ = sizeof(sockaddr_in6);
  }
  return out;
}

Expected<SocketAddress> SocketAddress::parse(std::string_view text) {
  std::string_view host, port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return make_error(Error::invalid_address);
    host = text.substr(0, close + 1);
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    // A bare IPv6 literal has several colons and no brackets: the port would be ambiguous.
    if (colon == std::string_view::npos || text.find(':') != colon) return make_error(Error::invalid_address);
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  if (port_text.find('\0') != std::string_view::npos) return make_error(Error::invalid_address);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535)
    return make_error(Error::invalid_address);
  return parse(host, static_cast<std::uint16_t>(port));
}

SocketAddress SocketAddress::loopback(std::uint16_t port, AddressFamily family) noexcept {
  return *parse(family == AddressFamily::ipv4 ? "127.0.0.1" : "::1", port);
}

SocketAddress SocketAddress::any(std::uint16_t port, AddressFamily family) noexcept {
  return *parse(family == AddressFamily::ipv4 ? "0.0.0.0" : "::", port);
}

Expected<SocketAddress> SocketAddress::from_sockaddr(const sockaddr* sa, socklen_t len) {
  if (sa == nullptr || len < socklen_t(sizeof(sa_family_t))) return make_error(Error::invalid_address);
  // The family fixes the size: copy exactly that much, whatever `len` claims beyond it.
  socklen_t size = 0;
  if (sa->sa_family == AF_INET) size = sizeof(sockaddr_in);
  if (sa->sa_family == AF_INET6) size = sizeof(sockaddr_in6);
  if (size == 0 || len < size) return make_error(Error::invalid_address);
  SocketAddress out;
  std::memcpy(&out.storage_, sa, size);
  out.len_ = size;
  return out;
}

AddressFamily SocketAddress::family() const noexcept {
  return storage_.ss_family == AF_INET6 ? AddressFamily::ipv6 : AddressFamily::ipv4;
}

std::uint16_t SocketAddress::port() const noexcept {
  if (storage_.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
}

std::string SocketAddress::to_string() const {
  char text[INET6_ADDRSTRLEN] = {};
  std::string out;
  out.reserve(INET6_ADDRSTRLEN + 8);
  if (storage_.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&storage_);
    inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
    out.append("[").append(text);
    // The zone as a number: it parses back to the same scope id on any machine.
    if (sin6->sin6_scope_id != 0) out.append("%").append(std::to_string(sin6->sin6_scope_id));
    out.append("]:");
  } else {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, text, sizeof(text));
    out.append(text).append(":");
  }
  return out.append(std::to_string(port()));
}

bool operator==(const SocketAddress& a, const SocketAddress& b) noexcept {
  return a.len_ == b.len_ && std::memcmp(&a.storage_, &b.storage_, a.len_) == 0;
}

}  // namespace galay
