// fuzz_framing: the echo benchmark's framing and verification (benchmark/bench_common.h),
// against simple models. Byte 0 picks the check; the rest is its input.
//   0: parse_uint / parse_port: accepted iff the text is 1-19 decimal digits whose value is
//      within the bounds (model: arbitrary-precision check on the digits).
//   1: EchoAssembler: message k of connection c, delivered in the chunk sizes the input
//      dictates, with at most one byte flipped: done() once `size` bytes are in, ok() iff
//      nothing was flipped, mismatch() at the flipped position; fill_message and
//      first_mismatch agree with message_byte.
//   2: Histogram: every recorded value lies inside its bucket's bounds, buckets are
//      contiguous, count/min/max/mean match the model, percentiles are monotone and within
//      [min, max], and merging two halves equals recording everything in one.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "bench_common.h"

namespace {

using galay::bench::EchoAssembler;
using galay::bench::Histogram;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_framing: %s\n", what);
  std::abort();
}
#define CHECK(cond)           \
  do {                        \
    if (!(cond)) fail(#cond); \
  } while (0)

std::uint64_t take_u64(const std::uint8_t*& p, std::size_t& n) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8 && n > 0; ++i, ++p, --n) v = (v << 8) | *p;
  return v;
}

void check_parse(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return;
  const std::uint64_t lo = data[0] % 8, hi = lo + (std::uint64_t{data[1]} << 40);
  std::string_view text(reinterpret_cast<const char*>(data + 2), size - 2);
  auto got = galay::bench::parse_uint(text, lo, hi);
  bool digits = !text.empty() && text.size() <= 19 &&
                std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) {
    CHECK(!got);
    return;
  }
  // 19 digits fit in 64 bits, so the model can compute the value directly.
  std::uint64_t v = 0;
  for (char c : text) v = v * 10 + std::uint64_t(c - '0');
  CHECK(bool(got) == (v >= lo && v <= hi));
  if (got) CHECK(*got == v);
  auto port = galay::bench::parse_port(text);
  CHECK(bool(port) == (v >= 1 && v <= 65535));
  if (port) CHECK(*port == v);
}

void check_assembler(const std::uint8_t* p, std::size_t n) {
  if (n < 8) return;
  const std::size_t size = 1 + (std::size_t{p[0]} << 8 | p[1]) % 4096;
  const std::size_t conn = p[2];
  const std::uint32_t k = std::uint32_t{p[3]} << 8 | p[4];
  const bool flip = p[5] & 1;
  const std::size_t flip_at = (std::size_t{p[6]} << 8 | p[7]) % size;
  p += 8;
  n -= 8;
  const std::uint32_t base = galay::bench::message_base(conn);
  std::vector<std::byte> msg(size);
  galay::bench::fill_message(msg.data(), size, base, k);
  for (std::size_t i = 0; i < size; ++i) CHECK(msg[i] == galay::bench::message_byte(base, k, i));
  CHECK(galay::bench::first_mismatch(msg.data(), size, base, k) == size);
  if (flip) msg[flip_at] ^= std::byte{0x5a};
  CHECK(galay::bench::first_mismatch(msg.data(), size, base, k) == (flip ? flip_at : size));

  // The stream: messages k-1 is already consumed; feed message k in input-sized chunks,
  // then a few bytes of message k+1 after it (they must not be taken).
  EchoAssembler as(size, base);
  for (std::uint32_t i = 0; i < k; ++i) as.next();
  CHECK(as.message_index() == k);
  std::size_t pos = 0;
  while (pos < size) {
    std::size_t chunk = n > 0 ? 1 + (*p % 64) * (1 + (*p >> 6)) : size;
    if (n > 0) {
      ++p;
      --n;
    }
    chunk = std::min(chunk, size - pos + 3);  // may run past the end: the rest is not taken
    std::vector<std::byte> piece(msg.begin() + pos, msg.begin() + std::min(size, pos + chunk));
    while (piece.size() < chunk) piece.push_back(galay::bench::message_byte(base, k + 1, piece.size() + pos - size));
    const std::size_t took = as.feed(piece.data(), piece.size());
    CHECK(took == std::min(chunk, size - pos));
    pos += took;
    CHECK(as.done() == (pos == size));
  }
  CHECK(as.ok() == !flip);
  CHECK(as.mismatch() == (flip ? flip_at : EchoAssembler::npos));
  as.next();
  CHECK(!as.done() && as.ok() && as.message_index() == k + 1);
}

void check_histogram(const std::uint8_t* p, std::size_t n) {
  std::vector<std::uint64_t> values;
  while (n > 0) {
    const unsigned shift = *p % 40;
    ++p;
    --n;
    values.push_back(take_u64(p, n) >> (64 - std::max(1u, shift + 1)));
  }
  if (values.empty()) return;
  Histogram all, first, second;
  std::uint64_t lo = ~std::uint64_t{0}, hi = 0;
  long double sum = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::uint64_t v = values[i];
    const std::size_t b = Histogram::index_of(v);
    CHECK(b < Histogram::kBuckets);
    if (b < Histogram::kBuckets - 1) CHECK(Histogram::lower_bound(b) <= v && v <= Histogram::upper_bound(b));
    if (b > 0) CHECK(Histogram::upper_bound(b - 1) + 1 == Histogram::lower_bound(b));
    all.record(v);
    (i % 2 ? second : first).record(v);
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    sum += static_cast<long double>(v);
  }
  CHECK(all.count() == values.size());
  CHECK(all.min_ns() == lo && all.max_ns() == hi);
  first.merge(second);
  CHECK(first.count() == all.count() && first.min_ns() == lo && first.max_ns() == hi);
  double prev = 0;
  for (double q : {0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0}) {
    const double v = all.percentile_ns(q);
    CHECK(v >= double(lo) && v <= double(hi));
    CHECK(v >= prev);
    CHECK(first.percentile_ns(q) == v);
    prev = v;
  }
  (void)sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  switch (data[0] % 3) {
    case 0:
      check_parse(data + 1, size - 1);
      break;
    case 1:
      check_assembler(data + 1, size - 1);
      break;
    default:
      check_histogram(data + 1, size - 1);
      break;
  }
  return 0;
}
