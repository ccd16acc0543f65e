#pragma once
/// @file blocking_job.h
/// Internal to Runtime::spawn_blocking (installed only because runtime.h's awaitable
/// template derives from it): one function to run on a blocking thread, described in the
/// awaiting coroutine frame so queueing it allocates nothing. The blocking pool
/// (runtime/detail/blocking_pool.h) links it on its job queue, runs `run`, then resumes
/// `handle` on `sched`. Every field but `run` is the pool's, read and written under its lock.

#include <coroutine>
#include <cstdint>

#include "galay-kernel/common/intrusive_list.h"

namespace galay {

class Scheduler;
class BlockingPool;  // runtime/detail/blocking_pool.h (not installed)

namespace detail {

/// One piece of work for a blocking pool. Lives in the awaiting frame.
struct BlockingJob {
  /// Where the job stands in the pool.
  enum class State : std::uint8_t { idle, queued, running, done, dropped };
  /// Runs the user's function and stores its outcome in the awaitable (a pool thread).
  void (*run)(BlockingJob*) noexcept = nullptr;
  /// The pool's job queue links.
  ListLinks<BlockingJob> links;
  /// Resumed on `sched` once `run` has returned.
  std::coroutine_handle<> handle;
  /// The awaiting task's scheduler.
  Scheduler* sched = nullptr;
  /// Guarded by the pool's lock.
  State state = State::idle;
};

/// Queue `job` on `pool`; false once the pool is closed. See BlockingPool::submit.
bool submit_blocking(BlockingPool& pool, BlockingJob& job);
/// Take `job` back if it has not started; true if it was taken back.
bool unqueue_blocking(BlockingPool& pool, BlockingJob& job) noexcept;
/// `job`'s frame is going away: unqueue it, or wait until it has finished running.
void forget_blocking(BlockingPool& pool, BlockingJob& job) noexcept;

}  // namespace detail
}  // namespace galay
