#pragma once
/// @file chaos.h
/// Chaos mode (internal; docs/reliability.md): a test build's way of making the rare
/// interleavings routine. Compiled in with the CMake option GALAY_KERNEL_CHAOS (the test
/// build has it; Release builds do not) and switched on per process by GALAY_CHAOS_SEED=N.
/// When on, on every backend:
///  - sends and receives move a random shorter length (partial completions);
///  - a completed operation's coroutine is resumed zero to three loop turns later, in a
///    shuffled order (completions delayed and reordered within and across turns, so a
///    cancel or close often lands after the kernel finished but before the task ran);
///  - a readiness backend asked to cancel first retries the syscall, completing the op
///    with its real result as io_uring may (completion and cancel in the same turn);
///  - a number freed by a close through a backend is taken at once by a decoy socket for a
///    few turns; anything later sent to it, or read from it, aborts the process naming the
///    fd and the seed (an fd number used after its close).
/// Compiled out, every hook is a constant and costs nothing. The schedule depends on the
/// seed and on timing, so a failure is replayed by rerunning with its printed seed.

#include <coroutine>
#include <cstddef>
#include <vector>

namespace galay {
class Scheduler;
}  // namespace galay

namespace galay::chaos {

#if defined(GALAY_KERNEL_CHAOS)
/// True when compiled in and GALAY_CHAOS_SEED is set.
bool enabled() noexcept;
/// A length to move now for a request of `len` bytes: `len`, or sometimes less (>= 1).
std::size_t clamp(std::size_t len) noexcept;
/// True to make a readiness backend retry the syscall before honouring a cancel.
bool race_cancel() noexcept;
/// Maybe keep the resumption of `h` (whose op just completed on `sched`) for later turns.
bool defer(Scheduler* sched, std::coroutine_handle<> h);
/// Start of a loop turn on `sched`: append the deferred resumptions that are due, shuffled,
/// and check and retire expired decoys.
void turn(Scheduler* sched, std::vector<std::coroutine_handle<>>& ready);
/// True while `sched` has deferred resumptions or decoys: its loop must not sleep.
bool busy(Scheduler* sched) noexcept;
/// `sched` shuts down: forget its deferred resumptions (their frames are destroyed) and
/// close its decoys.
void forget(Scheduler* sched) noexcept;
/// `fd` was just closed by a backend of `sched`: maybe park a decoy on the number.
void after_close(Scheduler* sched, int fd) noexcept;
/// Check and close every decoy now (tests call it before counting open descriptors).
void retire_all() noexcept;
#else
constexpr bool enabled() noexcept { return false; }
constexpr std::size_t clamp(std::size_t len) noexcept { return len; }
constexpr bool race_cancel() noexcept { return false; }
inline bool defer(Scheduler*, std::coroutine_handle<>) { return false; }
inline void turn(Scheduler*, std::vector<std::coroutine_handle<>>&) {}
constexpr bool busy(Scheduler*) noexcept { return false; }
inline void forget(Scheduler*) noexcept {}
inline void after_close(Scheduler*, int) noexcept {}
inline void retire_all() noexcept {}
#endif

}  // namespace galay::chaos
