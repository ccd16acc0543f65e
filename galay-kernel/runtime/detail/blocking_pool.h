#pragma once
/// @file blocking_pool.h
/// BlockingPool: the library's one pool of blocking threads. It runs two kinds of work:
///  - jobs: any function, for Runtime::spawn_blocking (detail::BlockingJob, in the awaiting
///    frame); the awaiting task is resumed on its own scheduler when the job has run;
///  - ops: positioned file syscalls (pread, pwrite, preadv,
/// pwritev, fsync, fdatasync, fallocate) and path syscalls (openat, statx, renameat,
/// unlinkat, mkdirat, a directory's fsync, reading a directory) for the backends that have
/// no asynchronous path for them:
///  - epoll, for buffered (non-O_DIRECT) files and for fsync/fdatasync/fallocate: libaio
///    would run those synchronously inside io_submit, stalling the loop; and every path op;
///  - kqueue, for every file and path operation (kqueue cannot wait for regular files);
///  - io_uring, for sync_dir and read_dir (no io_uring opcode does them) and for the path
///    opcodes its kernel lacks.
///
/// A backend talks to the pool through its own BlockingPool::Client. Workers never resume
/// anything: they put (op, result) into the client's mailbox and wake the backend (its
/// Backend::wake(), i.e. the eventfd on epoll, EVFILT_USER on kqueue); the backend then
/// calls Client::deliver() from poll(), which completes the ops through
/// IoOp::complete() on the scheduler's own thread.
///
/// Threads: `started_threads` start with the pool, the rest (up to `max_threads`) when work
/// arrives and no thread is idle; they live until close_and_join(). The shared pool starts
/// all four at once, so they inherit the signal mask of the thread that first needed them
/// (see SignalSet); a Runtime's pool for spawn_blocking starts its threads on demand.
///
/// Cancellation: an op still queued is taken back and completes at once with the cancel
/// reason; an op whose syscall is running cannot be interrupted, so it completes when the
/// syscall returns, with the syscall's result. Nothing is ever completed while a worker may
/// still touch its buffer.

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "galay-kernel/io/op.h"
#include "galay-kernel/io/detail/wait_list.h"
#include "galay-kernel/runtime/blocking_job.h"

namespace galay {

class BlockingPool {
 public:
  class Client;

  /// Threads in the shared pool: enough to overlap a few blocking syscalls (an fsync, a
  /// page-cache miss) without competing with the event loops for the CPU.
  static constexpr std::size_t kDefaultThreads = 4;

  /// The process-wide pool, started on first use. It is never torn down (its threads idle
  /// at exit), so schedulers destroyed during static destruction can still drain it.
  static BlockingPool& shared();

  /// Up to `max_threads` threads (at least one), `started_threads` of them started now.
  BlockingPool(std::size_t max_threads, std::size_t started_threads);
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;
  /// close_and_join(). Every client must be gone.
  ~BlockingPool();

  /// The most threads this pool runs.
  std::size_t max_threads() const noexcept { return max_; }

  /// Run `op`'s file or path syscall (its op kind's `blocking`, io/ops/) on the calling
  /// thread, retrying EINTR: bytes or 0, or -errno.
  static std::int64_t perform(IoOp& op) noexcept;

  // ---- jobs (Runtime::spawn_blocking) ----

  /// Queue `job` (its run, handle and sched set); false once closed. When it has run, a
  /// worker resumes `job.handle` through `job.sched->schedule()`.
  bool submit(detail::BlockingJob& job);
  /// Take `job` back if no worker has started it; true if it was taken back.
  bool unqueue(detail::BlockingJob& job) noexcept;
  /// The job's frame is going away: unqueue it, or wait until it has finished running.
  void forget(detail::BlockingJob& job) noexcept;
  /// Refuse new jobs, drop queued ones (their waiters are never resumed: their schedulers
  /// have stopped), let running work finish and join the threads.
  void close_and_join() noexcept;

 private:
  using JobList = IntrusiveList<detail::BlockingJob, &detail::BlockingJob::links>;
  void worker() noexcept;
  void run_job(std::unique_lock<std::mutex>& lock) noexcept;  // the oldest job (lock held)
  void run_op(std::unique_lock<std::mutex>& lock) noexcept;   // one op of the first ready client
  void make_ready(Client& c) noexcept;                        // queue `c` for the workers (pool lock held)
  // New work was queued (lock held): wake an idle thread, or start one if every thread is
  // busy and the pool may grow. Returns true if a waiting thread should be notified.
  bool grow_for(std::size_t queued) noexcept;

  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable job_done_cv_;  // a job stopped running (forget() waits on it)
  Client* ready_head_ = nullptr;         // clients with queued ops, served round-robin
  Client* ready_tail_ = nullptr;
  JobList jobs_;  // queued jobs, oldest first
  std::size_t queued_jobs_ = 0;
  std::size_t idle_ = 0;  // threads waiting for work
  std::size_t max_;
  bool closed_ = false;
  std::vector<std::thread> threads_;
};

/// One backend's connection to a BlockingPool. Every method runs on the backend's thread;
/// the workers reach the client only under the pool's lock.
class BlockingPool::Client {
 public:
  /// `wake(wake_arg)` interrupts the backend's poll() (called by a worker, under the pool's
  /// lock, when the first result lands in an empty mailbox).
  Client(BlockingPool& pool, void (*wake)(void*), void* wake_arg) noexcept
      : pool_(pool), wake_(wake), wake_arg_(wake_arg) {}
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  /// Requires pending() == 0 (cancel_all_and_drain() first).
  ~Client();

  /// Queue `op` (already marked pending); it completes later through IoOp::complete().
  void submit(IoOp& op) noexcept;
  /// Backend::cancel: a queued op completes now with its cancel reason; a running one
  /// completes when its syscall returns.
  void cancel(IoOp& op) noexcept;
  /// Backend::abandon: cancel, then wait until no worker touches `op` any more.
  void abandon(IoOp& op) noexcept;
  /// Call before closing `fd`: queued ops on it complete with operation_canceled, and this
  /// waits for running ones, so no worker ever runs a syscall on a reused fd number.
  void release_fd(int fd) noexcept;
  /// Complete the ops whose results came back. Cheap (one atomic load) when there are none.
  void deliver() noexcept;
  /// Cancel every queued op, wait for the running ones, deliver everything.
  void cancel_all_and_drain() noexcept;
  /// Ops submitted and not yet completed.
  std::size_t pending() const noexcept { return pending_; }

 private:
  friend class BlockingPool;
  struct Done {
    IoOp* op;
    std::int64_t result;
  };
  // Wait (pool lock held) until a result arrives, then complete everything that has.
  void wait_and_deliver(std::unique_lock<std::mutex>& lock) noexcept;
  void complete_taken(std::vector<Done>& taken) noexcept;
  void take_queued(int fd, bool all, WaitList& out) noexcept;  // pool lock held
  void unlink_if_idle() noexcept;                              // pool lock held

  BlockingPool& pool_;
  void (*wake_)(void*);
  void* wake_arg_;
  std::size_t pending_ = 0;  // backend thread only

  // ---- guarded by pool_.mutex_ ----
  WaitList queue_;              // submitted, not yet picked by a worker
  std::vector<IoOp*> running_;  // picked by a worker, syscall in progress
  std::vector<Done> done_;      // finished, not yet delivered
  std::condition_variable done_cv_;
  Client* next_ready_ = nullptr;
  bool in_ready_list_ = false;

  std::atomic<bool> has_done_{false};  // done_ is non-empty (lets deliver() skip the lock)
  std::vector<Done> taken_;            // backend thread only: reused delivery buffer
};

}  // namespace galay
