#include "galay-kernel/runtime/detail/blocking_pool.h"

#include <fcntl.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <limits>

#include "galay-kernel/io/ops/op_kind.h"
#include "galay-kernel/runtime/scheduler.h"  // a finished job resumes its task through schedule()

namespace galay {
namespace {

// Where an op stands inside the pool (IoOp::backend_word), read and written under the lock.
constexpr std::uint32_t kQueued = 1;
constexpr std::uint32_t kRunning = 2;
constexpr std::uint32_t kFinished = 3;

}  // namespace

// ---- BlockingPool ----

BlockingPool& BlockingPool::shared() {
  // Deliberately leaked: a scheduler destroyed during static destruction may still need it.
  static BlockingPool* pool = new BlockingPool(kDefaultThreads, kDefaultThreads);
  return *pool;
}

BlockingPool::BlockingPool(std::size_t max_threads, std::size_t started_threads)
    : max_(std::max<std::size_t>(max_threads, 1)) {
  threads_.reserve(max_);
  for (std::size_t i = 0; i < std::min(started_threads, max_); ++i) threads_.emplace_back([this] { worker(); });
}

BlockingPool::~BlockingPool() { close_and_join(); }

void BlockingPool::close_and_join() noexcept {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    assert(ready_head_ == nullptr && "BlockingPool closed with queued ops");
    closed_ = true;
    while (detail::BlockingJob* job = jobs_.pop_front()) job->state = detail::BlockingJob::State::dropped;
    queued_jobs_ = 0;
    threads.swap(threads_);
  }
  work_cv_.notify_all();
  for (auto& t : threads) t.join();
}

bool BlockingPool::grow_for(std::size_t queued) noexcept {
  if (idle_ >= queued) return true;  // an idle thread takes it
  if (threads_.size() < max_) {
    try {
      threads_.emplace_back([this] { worker(); });
    } catch (...) {
      // No thread now: the work waits for a running one (there is at least one unless the
      // pool started none and this is its first; then the next submission tries again).
    }
  }
  return idle_ > 0;
}

// ---- jobs ----

bool BlockingPool::submit(detail::BlockingJob& job) {
  std::unique_lock lock(mutex_);
  if (closed_) return false;
  job.state = detail::BlockingJob::State::queued;
  jobs_.push_back(&job);
  ++queued_jobs_;
  const bool notify = grow_for(queued_jobs_);
  lock.unlock();
  if (notify) work_cv_.notify_one();
  return true;
}

bool BlockingPool::unqueue(detail::BlockingJob& job) noexcept {
  std::lock_guard lock(mutex_);
  if (job.state != detail::BlockingJob::State::queued) return false;
  jobs_.remove(&job);
  --queued_jobs_;
  job.state = detail::BlockingJob::State::idle;
  return true;
}

void BlockingPool::forget(detail::BlockingJob& job) noexcept {
  if (unqueue(job)) return;
  std::unique_lock lock(mutex_);
  job_done_cv_.wait(lock, [&] { return job.state != detail::BlockingJob::State::running; });
}

void BlockingPool::run_job(std::unique_lock<std::mutex>& lock) noexcept {
  detail::BlockingJob* job = jobs_.pop_front();
  --queued_jobs_;
  job->state = detail::BlockingJob::State::running;
  lock.unlock();
  job->run(job);
  lock.lock();
  job->state = detail::BlockingJob::State::done;
  // Read under the lock: once `done` is visible, forget() may let the frame go.
  const std::coroutine_handle<> h = job->handle;
  Scheduler* const s = job->sched;
  job_done_cv_.notify_all();
  lock.unlock();
  // The frame stays suspended until `s` resumes it, so `h` is valid here. A stopped
  // scheduler keeps it queued and destroys the frame itself at teardown.
  s->schedule(h);
  lock.lock();
}

namespace detail {
bool submit_blocking(BlockingPool& pool, BlockingJob& job) { return pool.submit(job); }
bool unqueue_blocking(BlockingPool& pool, BlockingJob& job) noexcept { return pool.unqueue(job); }
void forget_blocking(BlockingPool& pool, BlockingJob& job) noexcept { pool.forget(job); }
}  // namespace detail

std::int64_t BlockingPool::perform(IoOp& op) noexcept {
  // The call is the op kind's (io/ops/): files and paths have one, nothing else comes here.
  const auto call = detail::op_kind(op.code).blocking;
  return call ? call(op) : -EOPNOTSUPP;
}

void BlockingPool::make_ready(Client& c) noexcept {
  if (c.in_ready_list_) return;
  c.in_ready_list_ = true;
  c.next_ready_ = nullptr;
  if (ready_tail_)
    ready_tail_->next_ready_ = &c;
  else
    ready_head_ = &c;
  ready_tail_ = &c;
}

void BlockingPool::worker() noexcept {
  std::unique_lock lock(mutex_);
  for (;;) {
    ++idle_;
    work_cv_.wait(lock, [&] { return closed_ || !jobs_.empty() || ready_head_ != nullptr; });
    --idle_;
    if (!jobs_.empty()) {
      run_job(lock);
    } else if (ready_head_ != nullptr) {
      run_op(lock);
    } else {
      return;  // closed, and nothing is left
    }
  }
}

void BlockingPool::run_op(std::unique_lock<std::mutex>& lock) noexcept {
  // Take one op from the first client, and send that client to the back of the line so
  // one busy scheduler cannot starve the others.
  Client& c = *ready_head_;
  ready_head_ = c.next_ready_;
  if (ready_head_ == nullptr) ready_tail_ = nullptr;
  c.in_ready_list_ = false;
  IoOp* op = c.queue_.pop_front();
  if (!c.queue_.empty()) make_ready(c);
  op->backend_word = kRunning;
  c.running_.push_back(op);

  lock.unlock();
  const std::int64_t result = perform(*op);
  lock.lock();

  c.running_.erase(std::find(c.running_.begin(), c.running_.end(), op));
  op->backend_word = kFinished;
  c.done_.push_back({op, result});
  if (c.done_.size() == 1) {
    c.has_done_.store(true, std::memory_order_release);
    // Under the lock: the client (and the backend it wakes) cannot be destroyed before
    // it has taken this result, which needs the lock.
    c.wake_(c.wake_arg_);
  }
  c.done_cv_.notify_all();
}

// ---- BlockingPool::Client ----

BlockingPool::Client::~Client() {
  std::lock_guard lock(pool_.mutex_);
  assert(queue_.empty() && running_.empty() && done_.empty() && pending_ == 0 &&
         "BlockingPool::Client destroyed with ops in flight");
}

void BlockingPool::Client::submit(IoOp& op) noexcept {
  ++pending_;
  bool notify = false;
  {
    std::lock_guard lock(pool_.mutex_);
    if (running_.capacity() == 0) {
      // Allocate outside the workers' critical path, once per client.
      running_.reserve(pool_.max_threads());
      done_.reserve(64);
    }
    op.backend_word = kQueued;
    queue_.push_back(&op);
    pool_.make_ready(*this);
    notify = pool_.grow_for(1);
  }
  if (notify) pool_.work_cv_.notify_one();
}

void BlockingPool::Client::take_queued(int fd, bool all, WaitList& out) noexcept {
  for (IoOp* op = queue_.front(); op != nullptr;) {
    IoOp* next = WaitList::next(op);
    if (all || op->fd == fd) {
      queue_.remove(op);
      op->backend_word = 0;
      out.push_back(op);
    }
    op = next;
  }
  unlink_if_idle();
}

void BlockingPool::Client::unlink_if_idle() noexcept {
  // Workers expect every client in the ready list to have a queued op.
  if (!queue_.empty() || !in_ready_list_) return;
  Client* prev = nullptr;
  Client** link = &pool_.ready_head_;
  while (*link != this) {
    prev = *link;
    link = &(*link)->next_ready_;
  }
  *link = next_ready_;
  if (pool_.ready_tail_ == this) pool_.ready_tail_ = prev;
  in_ready_list_ = false;
  next_ready_ = nullptr;
}

void BlockingPool::Client::cancel(IoOp& op) noexcept {
  {
    std::lock_guard lock(pool_.mutex_);
    if (op.backend_word != kQueued) return;  // running or finished: its result is coming
    queue_.remove(&op);
    op.backend_word = 0;
    unlink_if_idle();
  }
  --pending_;
  op.complete(-ECANCELED);
}

void BlockingPool::Client::abandon(IoOp& op) noexcept {
  op.waiter = std::noop_coroutine();  // its frame is going away: resume nothing
  if (op.cancel_reason() == std::errc{}) op.set_cancel_reason(std::errc::operation_canceled);
  cancel(op);
  while (op.state == OpState::pending) {
    std::unique_lock lock(pool_.mutex_);
    wait_and_deliver(lock);
  }
}

void BlockingPool::Client::release_fd(int fd) noexcept {
  if (pending_ == 0) return;
  WaitList cancelled;
  {
    std::unique_lock lock(pool_.mutex_);
    take_queued(fd, false, cancelled);
    auto busy = [&] { return std::any_of(running_.begin(), running_.end(), [fd](IoOp* op) { return op->fd == fd; }); };
    done_cv_.wait(lock, [&] { return !busy(); });
  }
  while (IoOp* op = cancelled.pop_front()) {
    --pending_;
    op->complete(-ECANCELED);
  }
  deliver();
}

void BlockingPool::Client::wait_and_deliver(std::unique_lock<std::mutex>& lock) noexcept {
  done_cv_.wait(lock, [&] { return !done_.empty(); });
  taken_.swap(done_);
  has_done_.store(false, std::memory_order_relaxed);
  lock.unlock();
  complete_taken(taken_);
}

void BlockingPool::Client::complete_taken(std::vector<Done>& taken) noexcept {
  for (const Done& d : taken) {
    --pending_;
    d.op->complete(d.result);
  }
  taken.clear();
}

void BlockingPool::Client::deliver() noexcept {
  if (!has_done_.load(std::memory_order_acquire)) return;
  {
    std::lock_guard lock(pool_.mutex_);
    taken_.swap(done_);
    has_done_.store(false, std::memory_order_relaxed);
  }
  complete_taken(taken_);
}

void BlockingPool::Client::cancel_all_and_drain() noexcept {
  if (pending_ == 0) return;
  WaitList cancelled;
  {
    std::lock_guard lock(pool_.mutex_);
    take_queued(-1, true, cancelled);
  }
  while (IoOp* op = cancelled.pop_front()) {
    --pending_;
    op->complete(-ECANCELED);
  }
  deliver();
  while (pending_ > 0) {
    std::unique_lock lock(pool_.mutex_);
    wait_and_deliver(lock);
  }
}

}  // namespace galay
