#pragma once
// The numbered messages the IPC channel tests send between processes: message i is its
// 8-byte sequence number followed by i % 25 pattern bytes, so loss, reordering, duplication,
// a wrong size or a torn copy all show up in check_ipc_message().

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace galay::test {

inline constexpr std::size_t kMaxIpcTestMessage = 64;

inline std::byte ipc_pattern_byte(std::uint64_t i, std::size_t k) { return std::byte((i * 31 + k * 7) & 0xff); }

/// Write message `i` into `out` (at least kMaxIpcTestMessage bytes); returns its size.
inline std::size_t fill_ipc_message(std::uint64_t i, std::span<std::byte> out) {
  std::memcpy(out.data(), &i, sizeof(i));
  const std::size_t extra = i % 25;
  for (std::size_t k = 0; k < extra; ++k) out[sizeof(i) + k] = ipc_pattern_byte(i, k);
  return sizeof(i) + extra;
}

/// True if `msg` is exactly message `i`.
inline bool check_ipc_message(std::uint64_t i, std::span<const std::byte> msg) {
  if (msg.size() != sizeof(i) + i % 25) return false;
  std::uint64_t seq = 0;
  std::memcpy(&seq, msg.data(), sizeof(seq));
  if (seq != i) return false;
  for (std::size_t k = 0; k < i % 25; ++k)
    if (msg[sizeof(i) + k] != ipc_pattern_byte(i, k)) return false;
  return true;
}

}  // namespace galay::test
