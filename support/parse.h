// Value parsers of the command-line programs: integers, byte sizes with K/M/G suffixes and
// real numbers, each accepted only when the whole text is a value inside the given bounds.
// support/args.h builds its options on them; benchmark/bench_common.h re-exports
// parse_uint and parse_port for test/fuzz/fuzz_framing.cc, which checks them against a
// model. Standard C++ only (the fuzzer does not link the library).
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string_view>
#include <system_error>

namespace galay::cli {

/// Decimal digits only (no sign, no spaces, any length) whose value fits in 64 bits and lies
/// in [lo, hi], or nullopt.
inline std::optional<std::uint64_t> parse_u64(std::string_view s, std::uint64_t lo, std::uint64_t hi) noexcept {
  if (s.empty()) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - digit) / 10) return std::nullopt;  // would overflow
    v = v * 10 + digit;
  }
  if (v < lo || v > hi) return std::nullopt;
  return v;
}

/// A decimal integer in [lo, hi] of at most 19 digits (so it cannot overflow), or nullopt.
inline std::optional<std::uint64_t> parse_uint(std::string_view s, std::uint64_t lo, std::uint64_t hi) noexcept {
  if (s.size() > 19) return std::nullopt;
  return parse_u64(s, lo, hi);
}

/// A TCP port 1..65535 (0 is refused: a client needs a real port).
inline std::optional<std::uint16_t> parse_port(std::string_view s) noexcept {
  auto v = parse_uint(s, 1, 65535);
  if (!v) return std::nullopt;
  return static_cast<std::uint16_t>(*v);
}

/// A byte count: digits, optionally followed by K, M or G (any case, powers of 1024) and
/// then optionally by 'i' or 'B' ("64K", "4KiB", "1GB"), within [lo, hi]; or nullopt.
inline std::optional<std::uint64_t> parse_size(std::string_view s, std::uint64_t lo, std::uint64_t hi) noexcept {
  std::size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  auto v = parse_u64(s.substr(0, digits), 0, UINT64_MAX);
  if (!v) return std::nullopt;
  std::string_view suffix = s.substr(digits);
  if (!suffix.empty()) {
    unsigned shift = 0;
    switch (suffix.front()) {
      case 'k':
      case 'K':
        shift = 10;
        break;
      case 'm':
      case 'M':
        shift = 20;
        break;
      case 'g':
      case 'G':
        shift = 30;
        break;
      default:
        return std::nullopt;
    }
    suffix.remove_prefix(1);
    if (!(suffix.empty() || suffix == "i" || suffix == "B" || suffix == "iB")) return std::nullopt;
    if (*v > (UINT64_MAX >> shift)) return std::nullopt;
    *v <<= shift;
  }
  if (*v < lo || *v > hi) return std::nullopt;
  return v;
}

/// A decimal real number ("0.5", "2", "1e-3"; no hex, no sign other than a leading '-') in
/// [lo, hi], or (0, hi] when `open_low`; NaN and infinities are refused.
inline std::optional<double> parse_real(std::string_view s, double lo, double hi, bool open_low = false) noexcept {
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::general);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  if (!(open_low ? v > lo : v >= lo) || !(v <= hi)) return std::nullopt;  // NaN fails both
  return v;
}

}  // namespace galay::cli
