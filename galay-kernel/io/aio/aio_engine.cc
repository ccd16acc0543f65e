#include "galay-kernel/io/aio/aio_engine.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "galay-kernel/io/ops/op_kind.h"

namespace galay {
namespace {
constexpr std::uint32_t kBacklog = std::numeric_limits<std::uint32_t>::max();  // IoOp::backend_word
constexpr int kReapBatch = 64;
}  // namespace

AioEngine::~AioEngine() {
  if (state_ == State::ready) io_destroy(ctx_);
  if (efd_ >= 0) ::close(efd_);
}

bool AioEngine::eligible(const IoOp& op) noexcept {
  // O_DIRECT reads and writes (the op kinds with an iocb, io/ops/file_ops.h); fsync,
  // fdatasync and fallocate go to the pool (aio fsync is a kernel thread anyway).
  return (op.flags & op_direct_file) && detail::op_kind(op.code).aio_prep != nullptr;
}

bool AioEngine::accepts(const IoOp& op) noexcept {
  if (!eligible(op)) return false;
  if (state_ == State::unstarted) state_ = init() ? State::ready : State::failed;
  return state_ == State::ready;
}

bool AioEngine::init() noexcept {
  efd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd_ < 0) {
    setup_error_ = errno;
    return false;
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.fd = efd_;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, efd_, &ev) < 0 || !setup_context(kInitialSlots)) {
    if (setup_error_ == 0) setup_error_ = errno;
    ::close(efd_);
    efd_ = -1;
    return false;
  }
  submit_buf_.reserve(kMaxSlots);
  refill_buf_.reserve(kMaxSlots);
  return true;
}

bool AioEngine::setup_context(unsigned slots) noexcept {
  io_context_t ctx{};
  if (int r = io_setup(static_cast<int>(slots), &ctx); r < 0) {
    setup_error_ = -r;  // EAGAIN: fs.aio-max-nr reached; ENOSYS: no AIO in this kernel
    return false;
  }
  if (ctx_ != io_context_t{}) io_destroy(ctx_);  // only ever while idle
  ctx_ = ctx;
  capacity_ = slots;
  slots_ = std::make_unique<Slot[]>(slots);
  free_.clear();
  free_.reserve(slots);
  for (unsigned i = slots; i > 0; --i) free_.push_back(i - 1);
  return true;
}

void AioEngine::prepare(IoOp& op, unsigned index) noexcept {
  iocb& cb = slots_[index].cb;
  detail::op_kind(op.code).aio_prep(&cb, op);  // eligible(): it has one
  io_set_eventfd(&cb, efd_);
  cb.data = &op;
  slots_[index].op = &op;
  op.backend_word = index + 1;
}

void AioEngine::fail(IoOp& op, std::int64_t result, bool async) noexcept {
  op.backend_word = 0;
  if (async) {
    op.complete(result);
  } else {
    op.result = result;
    op.state = OpState::done;
  }
}

void AioEngine::submit(IoOp* const* ops, std::size_t n, bool async) noexcept {
  submit_buf_.clear();
  std::size_t i = 0;
  for (; i < n && !free_.empty(); ++i) {
    const unsigned index = free_.back();
    free_.pop_back();
    prepare(*ops[i], index);
    submit_buf_.push_back(&slots_[index].cb);
  }
  for (; i < n; ++i) {  // no slot: wait in the FIFO; grow the context once idle
    ops[i]->backend_word = kBacklog;
    backlog_.push_back(ops[i]);
    ++backlog_count_;
    wants_growth_ = true;
  }

  const std::size_t total = submit_buf_.size();
  std::size_t done = 0;
  while (done < total) {
    int r = io_submit(ctx_, static_cast<long>(total - done), submit_buf_.data() + done);
    if (r > 0) {
      inflight_ += static_cast<std::size_t>(r);
      done += static_cast<std::size_t>(r);
      continue;
    }
    if (r == -EINTR) continue;
    if (r == -EAGAIN && inflight_ > 0) {
      // The kernel is short of resources: keep the rest until completions free some.
      for (; done < total; ++done) {
        IoOp& op = *static_cast<IoOp*>(submit_buf_[done]->data);
        free_.push_back(op.backend_word - 1);
        slots_[op.backend_word - 1].op = nullptr;
        op.backend_word = kBacklog;
        backlog_.push_back(&op);
        ++backlog_count_;
      }
      break;
    }
    // The first remaining iocb was rejected (EBADF on a read-only fd, EINVAL, ...): it
    // fails alone and the rest are submitted.
    IoOp& op = *static_cast<IoOp*>(submit_buf_[done]->data);
    free_.push_back(op.backend_word - 1);
    slots_[op.backend_word - 1].op = nullptr;
    fail(op, r < 0 ? r : -EIO, async);
    ++done;
  }
}

bool AioEngine::start(IoOp& op) noexcept {
  IoOp* one = &op;
  submit(&one, 1, false);
  return op.state != OpState::done;
}

void AioEngine::start_batch(std::span<IoOp* const> ops) noexcept { submit(ops.data(), ops.size(), false); }

void AioEngine::on_event() noexcept {
  // The counter is not read back (one syscall saved per wakeup): the eventfd is
  // edge-triggered, and every completion signals it, which makes a new edge once epoll has
  // reported the last one. So a completion that lands during this reap is never missed.
  reap();
}

void AioEngine::reap() noexcept {
  if (state_ != State::ready) return;
  io_event events[kReapBatch];
  timespec zero{};
  for (;;) {
    // Zero timeout: libaio answers from the user-space ring without a syscall when empty.
    int n = io_getevents(ctx_, 0, kReapBatch, events, &zero);
    if (n <= 0) break;
    for (int i = 0; i < n; ++i) {
      IoOp& op = *static_cast<IoOp*>(events[i].data);
      const unsigned index = op.backend_word - 1;
      slots_[index].op = nullptr;
      free_.push_back(index);
      op.backend_word = 0;
      --inflight_;
      op.complete(static_cast<long>(events[i].res));
    }
    if (n < kReapBatch) break;
  }
  refill();
}

void AioEngine::refill() noexcept {
  if (inflight_ == 0 && wants_growth_ && capacity_ < kMaxSlots) {
    // The FIFO was used: a bigger context, made while the kernel holds none of our iocbs.
    // If the kernel refuses it, the old one stays.
    wants_growth_ = false;
    setup_context(capacity_ * 2);
  }
  if (backlog_.empty() || free_.empty()) return;
  refill_buf_.clear();
  while (!backlog_.empty() && refill_buf_.size() < free_.size()) {
    refill_buf_.push_back(backlog_.pop_front());
    --backlog_count_;
  }
  submit(refill_buf_.data(), refill_buf_.size(), true);
}

void AioEngine::cancel(IoOp& op) noexcept {
  if (op.backend_word == kBacklog) {
    backlog_.remove(&op);
    --backlog_count_;
    op.backend_word = 0;
    op.complete(-ECANCELED);
    return;
  }
  if (op.backend_word == 0) return;
  const unsigned index = op.backend_word - 1;
  io_event ev{};
  // Regular files don't implement AIO cancellation (EINVAL), and kernels since 4.19 post a
  // cancelled iocb's completion to the ring (EINPROGRESS): both wait for the reap. Only old
  // kernels return 0 and hand the completion back here.
  if (io_cancel(ctx_, &slots_[index].cb, &ev) == 0) {
    slots_[index].op = nullptr;
    free_.push_back(index);
    op.backend_word = 0;
    --inflight_;
    op.complete(static_cast<long>(ev.res));
  }
}

void AioEngine::wait_for_events() noexcept {
  // poll() is level-triggered on the counter, so reset it before waiting on it (a
  // completion after the read sets it again). Bounded wait, then reap regardless.
  std::uint64_t count;
  [[maybe_unused]] ssize_t r = ::read(efd_, &count, sizeof(count));
  reap();
  if (inflight_ == 0) return;
  pollfd p{efd_, POLLIN, 0};
  ::poll(&p, 1, 100);
  reap();
}

void AioEngine::abandon(IoOp& op) noexcept {
  op.waiter = std::noop_coroutine();  // its frame is going away: resume nothing
  if (op.cancel_reason() == std::errc{}) op.set_cancel_reason(std::errc::operation_canceled);
  cancel(op);
  while (op.state == OpState::pending) wait_for_events();
}

void AioEngine::cancel_all_and_drain() noexcept {
  while (IoOp* op = backlog_.pop_front()) {
    --backlog_count_;
    op->backend_word = 0;
    op->complete(-ECANCELED);
  }
  for (unsigned i = 0; i < capacity_ && inflight_ > 0; ++i)
    if (slots_[i].op != nullptr) cancel(*slots_[i].op);
  while (inflight_ > 0) wait_for_events();
}

std::string AioEngine::describe() const {
  switch (state_) {
    case State::unstarted:
      return "libaio for O_DIRECT: not started";
    case State::ready:
      return "libaio for O_DIRECT: " + std::to_string(capacity_) + " slots";
    case State::failed:
      return std::string("libaio unavailable (") + std::strerror(setup_error_) + "), O_DIRECT via pool";
  }
  return {};
}

}  // namespace galay
