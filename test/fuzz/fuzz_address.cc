// fuzz_address: SocketAddress::parse (both overloads) and to_string round trips.
//
// Input: byte 0 picks the mode, the rest is text.
//   mode even: parse(text) as "host:port". If it succeeds, to_string() must parse back to an
//              equal address with the same port and family, and print the same string again.
//   mode odd:  bytes 1-2 are a port, the rest a host for parse(host, port). If it succeeds,
//              port() is that port, to_string() round-trips as above, and "host:port"
//              (with [] around a bare IPv6 host) parses to the same address.
// Failures must be error values, never crashes, UB or leaks (ASan is on).
//
// Also: text with an embedded NUL is never a valid address and must be rejected (this
// target found parse() accepting "127.0.0.1\0junk"; fixed, and kept as a regression seed).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "galay-kernel/net/address.h"

namespace {

[[noreturn]] void fail(const char* what, std::string_view input, const std::string& detail) {
  std::fprintf(stderr, "fuzz_address: %s (input '%.*s', %s)\n", what, int(input.size()), input.data(), detail.c_str());
  std::abort();
}

void check_round_trip(const galay::SocketAddress& a, std::string_view input) {
  const std::string s = a.to_string();
  auto b = galay::SocketAddress::parse(std::string_view(s));
  if (!b) fail("to_string() does not parse back", input, s + ": " + b.error().message());
  if (!(*b == a)) fail("to_string() parses back to a different address", input, s + " -> " + b->to_string());
  if (b->port() != a.port()) fail("port changed in round trip", input, s);
  if (b->family() != a.family()) fail("family changed in round trip", input, s);
  if (b->to_string() != s) fail("to_string() not stable", input, s + " vs " + b->to_string());
  if (s.empty()) fail("empty to_string()", input, s);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t text_at = (data[0] & 1) != 0 ? 3 : 1;  // after the mode (and port) bytes
  const bool has_nul = size > text_at && std::memchr(data + text_at, 0, size - text_at) != nullptr;
  const bool with_port = (data[0] & 1) != 0;
  if (!with_port) {
    std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    auto a = galay::SocketAddress::parse(text);
    if (a && has_nul) fail("text with an embedded NUL accepted", text, a->to_string());
    if (a) check_round_trip(*a, text);
    return 0;
  }
  if (size < 3) return 0;
  const auto port = static_cast<std::uint16_t>(data[1] | (data[2] << 8));
  std::string_view host(reinterpret_cast<const char*>(data + 3), size - 3);
  auto a = galay::SocketAddress::parse(host, port);
  if (!a) return 0;
  if (host.find('\0') != std::string_view::npos) fail("host with an embedded NUL accepted", host, a->to_string());
  if (a->port() != port) fail("port() differs from the parsed port", host, std::to_string(a->port()));
  check_round_trip(*a, host);
  std::string joined;
  if (host.find(':') != std::string_view::npos && host.front() != '[')
    joined = "[" + std::string(host) + "]:" + std::to_string(port);
  else
    joined = std::string(host) + ":" + std::to_string(port);
  auto b = galay::SocketAddress::parse(std::string_view(joined));
  if (!b)
    fail("parse(host, port) accepts what parse(\"host:port\") rejects", host, joined + ": " + b.error().message());
  if (!(*b == *a))
    fail("the two parse overloads disagree", host, joined + " -> " + b->to_string() + " vs " + a->to_string());
  return 0;
}
