#pragma once
/// @file fault_injection.h
/// Test hooks that make operations fail on demand, for the failures the kernel cannot be
/// made to produce at will (accept hitting EMFILE at exactly the third connection, an
/// io_uring submission refused with EBUSY). Process-wide; meant for tests and for fault
/// drills in staging builds. Disarmed, the hooks cost one relaxed atomic load per
/// operation start and per io_uring submission.

#include <atomic>

#include "galay-kernel/io/op.h"

namespace galay::fault {

/// The next `times` operations of kind `code` started on any scheduler fail with `error`
/// (an errno value) without reaching the backend, as if their syscall had returned it: an
/// accept leaves the connection queued, a recv consumes nothing. times == 0 disarms.
void fail_ops(OpCode code, int error, unsigned times) noexcept;

/// The next `times` io_uring submissions (io_uring_enter) on any scheduler fail with
/// `error`, as the kernel does under memory pressure (EAGAIN), with a full completion queue
/// (EBUSY) or on a signal (EINTR). The backend must keep the queued SQEs and submit them
/// later: nothing is lost. No effect on other backends.
void fail_io_uring_submits(int error, unsigned times) noexcept;

/// Disarm everything.
void reset() noexcept;

/// @cond INTERNAL
namespace detail {
extern std::atomic<bool> g_armed;
int take_op_failure(OpCode code) noexcept;
int take_submit_failure() noexcept;
}  // namespace detail
/// @endcond

/// True while any failure is armed (the hooks' fast path).
inline bool armed() noexcept { return detail::g_armed.load(std::memory_order_relaxed); }

/// Hook for operation starts: the errno to fail this `code` with, or 0.
inline int take_op_failure(OpCode code) noexcept { return armed() ? detail::take_op_failure(code) : 0; }

/// Hook for io_uring submissions: the errno to fail this submission with, or 0.
inline int take_submit_failure() noexcept { return armed() ? detail::take_submit_failure() : 0; }

}  // namespace galay::fault
