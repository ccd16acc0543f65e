// Pieces shared by the benchmark programs (bench_server, bench_client, soak): argument
// values, the echo message pattern and its check, the latency histogram, CPU pinning and
// the fd limit. Header-only and free of galay-kernel types, so test/fuzz/fuzz_framing.cc
// can drive the same code with arbitrary input.
#pragma once

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

// By its path from here: test/fuzz/fuzz_framing.cc includes this header with only
// benchmark/ on its include path.
#include "../support/parse.h"

namespace galay::bench {

// ---------------------------------------------------------------------------------------
// Argument values: the programs' shared parsers (support/parse.h), under the names the
// fuzzer checks.

/// A decimal integer in [lo, hi], digits only (no sign, no spaces, at most 19 digits so it
/// cannot overflow), or nullopt.
using cli::parse_uint;
/// A TCP port 1..65535 (0 is refused: the client needs a real port, and the server prints
/// the one it got only for an explicit bind).
using cli::parse_port;

// ---------------------------------------------------------------------------------------
// Echo framing. Message k of connection c is `size` bytes with byte i equal to
// (c*31 + k + i) mod 256, so a stale (old k), crossed (other c), shifted, short or
// corrupted echo differs from the expected message somewhere.

/// The pattern's start value for connection `conn`.
constexpr std::uint32_t message_base(std::size_t conn) noexcept { return static_cast<std::uint32_t>(conn * 31u); }

/// Byte `i` of message `k` for a connection with pattern base `base`.
constexpr std::byte message_byte(std::uint32_t base, std::uint32_t k, std::size_t i) noexcept {
  return static_cast<std::byte>((base + k + static_cast<std::uint32_t>(i)) & 0xffu);
}

/// Write message `k` into p[0, size).
inline void fill_message(std::byte* p, std::size_t size, std::uint32_t base, std::uint32_t k) noexcept {
  const std::uint32_t start = base + k;
  for (std::size_t i = 0; i < size; ++i) p[i] = static_cast<std::byte>((start + static_cast<std::uint32_t>(i)) & 0xffu);
}

/// Index of the first byte of p[0, size) that is not message `k`'s, or `size` if it is
/// message `k` exactly.
inline std::size_t first_mismatch(const std::byte* p, std::size_t size, std::uint32_t base, std::uint32_t k) noexcept {
  for (std::size_t i = 0; i < size; ++i)
    if (p[i] != message_byte(base, k, i)) return i;
  return size;
}

/// Reassembles one echoed message from the pieces a stream hands back (any split), and
/// checks it. The client receives into its own buffer; this is the same bookkeeping for
/// callers that get the bytes in chunks (the fuzzer, pooled receivers).
class EchoAssembler {
 public:
  EchoAssembler(std::size_t size, std::uint32_t base) noexcept : size_(size), base_(base) {}

  /// Feed `n` received bytes. Returns how many were taken: at most what completes the
  /// current message; the caller feeds the rest again after checking done()/ok().
  std::size_t feed(const std::byte* p, std::size_t n) noexcept {
    const std::size_t take = std::min(n, size_ - got_);
    for (std::size_t i = 0; i < take; ++i) {
      if (mismatch_ == npos && p[i] != message_byte(base_, k_, got_ + i)) mismatch_ = got_ + i;
    }
    got_ += take;
    return take;
  }
  /// The whole current message has arrived.
  bool done() const noexcept { return got_ == size_; }
  /// Every byte so far matched message k.
  bool ok() const noexcept { return mismatch_ == npos; }
  /// Position of the first wrong byte of the current message, or npos.
  std::size_t mismatch() const noexcept { return mismatch_; }
  /// Start expecting message k+1.
  void next() noexcept {
    ++k_;
    got_ = 0;
    mismatch_ = npos;
  }
  std::uint32_t message_index() const noexcept { return k_; }

  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

 private:
  std::size_t size_;
  std::uint32_t base_;
  std::uint32_t k_ = 0;
  std::size_t got_ = 0;
  std::size_t mismatch_ = npos;
};

// ---------------------------------------------------------------------------------------
// Latency histogram: log-linear buckets over nanoseconds, HDR style. Values below 128 ns
// get one bucket each; above, every power of two is split into 64 equal buckets, so a
// bucket is at most 1/64 (~1.6%) of its value wide. 29 octaves reach 2^35 ns (~34 s);
// larger values land in the last bucket. Fixed arrays: recording never allocates.
class Histogram {
 public:
  static constexpr unsigned kSubBits = 6;
  static constexpr std::uint64_t kSub = 1u << kSubBits;  // 64
  static constexpr unsigned kOctaves = 29;
  static constexpr std::size_t kBuckets = (kOctaves + 1) * kSub;  // 1920

  void record(std::uint64_t ns) noexcept {
    ++counts_[index_of(ns)];
    ++total_;
    sum_ += ns;
    if (ns > max_) max_ = ns;
    if (ns < min_) min_ = ns;
  }
  /// Add another histogram's samples (per-thread histograms merged at the end of a run).
  void merge(const Histogram& o) noexcept {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    sum_ += o.sum_;
    if (o.total_) {
      max_ = std::max(max_, o.max_);
      min_ = std::min(min_, o.min_);
    }
  }
  std::uint64_t count() const noexcept { return total_; }
  double mean_ns() const noexcept { return total_ ? double(sum_) / double(total_) : 0.0; }
  std::uint64_t max_ns() const noexcept { return total_ ? max_ : 0; }
  std::uint64_t min_ns() const noexcept { return total_ ? min_ : 0; }

  /// The value at percentile p (0..100): the midpoint of the bucket holding that rank,
  /// clamped to the observed min/max.
  double percentile_ns(double p) const noexcept {
    if (total_ == 0) return 0.0;
    auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * double(total_)));
    rank = std::clamp<std::uint64_t>(rank, 1, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        double lo = double(lower_bound(i)), hi = double(upper_bound(i));
        double v = (lo + hi) / 2.0;
        return std::clamp(v, double(min_), double(max_));
      }
    }
    return double(max_);
  }

  /// Bucket of value v, and the bucket's inclusive bounds (public for the fuzzer's checks).
  static std::size_t index_of(std::uint64_t v) noexcept {
    if (v < 2 * kSub) return static_cast<std::size_t>(v);
    unsigned msb = 63u - static_cast<unsigned>(std::countl_zero(v));
    unsigned shift = msb - kSubBits;  // keep the top kSubBits+1 bits
    std::size_t idx = std::size_t(shift + 1) * kSub + static_cast<std::size_t>((v >> shift) - kSub);
    return std::min(idx, kBuckets - 1);
  }
  static std::uint64_t lower_bound(std::size_t i) noexcept {
    if (i < 2 * kSub) return i;
    std::uint64_t shift = i / kSub - 1;
    return (kSub + i % kSub) << shift;
  }
  static std::uint64_t upper_bound(std::size_t i) noexcept {
    if (i < 2 * kSub) return i;
    std::uint64_t shift = i / kSub - 1;
    return ((kSub + i % kSub + 1) << shift) - 1;
  }

 private:
  std::uint64_t counts_[kBuckets] = {};
  std::uint64_t total_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t max_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
};

// ---------------------------------------------------------------------------------------
// Output

/// 1234567 -> "1,234,567" (the seed report's number format).
inline std::string with_commas(std::uint64_t v) {
  std::string s = std::to_string(v);
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(std::size_t(i), 1, ',');
  return s;
}

/// The body of a JSON string literal for s.
inline std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else {
      out += c;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Process set-up

/// Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force
/// (RLIM_INFINITY as the maximum value), or 0 if it can't be read.
inline std::uint64_t raise_nofile_limit() noexcept {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) ::getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : std::uint64_t(rl.rlim_cur);
}

/// Pin the calling thread to the n-th CPU (mod their count) of the process's affinity
/// mask, so `taskset -c 2,3 prog --pin` puts thread 0 on CPU 2 and thread 1 on CPU 3.
/// Returns the CPU chosen, or -1 on failure.
inline int pin_to_nth_allowed_cpu(std::size_t n) noexcept {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) return -1;
  const int count = CPU_COUNT(&allowed);
  if (count <= 0) return -1;
  std::size_t want = n % std::size_t(count);
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    if (want-- == 0) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      return ::pthread_setaffinity_np(::pthread_self(), sizeof one, &one) == 0 ? cpu : -1;
    }
  }
  return -1;
}

}  // namespace galay::bench
