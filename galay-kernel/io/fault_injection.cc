#include "galay-kernel/io/fault_injection.h"

#include <array>
#include <cstdint>

namespace galay::fault {

namespace detail {

std::atomic<bool> g_armed{false};

namespace {

// One armed failure: how many are left and with which errno.
struct Armed {
  std::atomic<unsigned> left{0};
  std::atomic<int> error{0};
};

constexpr std::size_t kOpCodes = 256;  // OpCode is a uint8_t
std::array<Armed, kOpCodes> g_ops;
Armed g_submit;

int take(Armed& a) noexcept {
  unsigned left = a.left.load(std::memory_order_acquire);
  while (left > 0) {
    if (a.left.compare_exchange_weak(left, left - 1, std::memory_order_acq_rel))
      return a.error.load(std::memory_order_relaxed);
  }
  return 0;
}

void arm(Armed& a, int error, unsigned times) noexcept {
  a.error.store(error, std::memory_order_relaxed);
  a.left.store(times, std::memory_order_release);
  if (times > 0) g_armed.store(true, std::memory_order_release);
}

}  // namespace

int take_op_failure(OpCode code) noexcept { return take(g_ops[static_cast<std::uint8_t>(code)]); }
int take_submit_failure() noexcept { return take(g_submit); }

}  // namespace detail

void fail_ops(OpCode code, int error, unsigned times) noexcept {
  detail::arm(detail::g_ops[static_cast<std::uint8_t>(code)], error, times);
}

void fail_io_uring_submits(int error, unsigned times) noexcept { detail::arm(detail::g_submit, error, times); }

void reset() noexcept {
  for (auto& a : detail::g_ops) a.left.store(0, std::memory_order_relaxed);
  detail::g_submit.left.store(0, std::memory_order_relaxed);
  detail::g_armed.store(false, std::memory_order_release);
}

}  // namespace galay::fault
