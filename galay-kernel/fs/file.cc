#include "galay-kernel/fs/file.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/fs.h>  // BLKSSZGET, BLKGETSIZE64
#endif

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <utility>

#include "galay-kernel/runtime/scheduler.h"
#include "galay-kernel/io/detail/backend.h"
#include "galay-kernel/runtime/detail/live_metrics.h"

namespace galay {
namespace {

// Offsets are off_t to the kernel: past INT64_MAX they turn negative, and io_uring reads
// -1 as "the file position". Refused before any backend sees them.
constexpr std::uint64_t kMaxOffset = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

std::size_t query_block_size(int fd) noexcept {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return File::kDefaultBlockSize;
#if defined(__linux__)
  if (S_ISBLK(st.st_mode)) {
    int sector = 0;
    if (::ioctl(fd, BLKSSZGET, &sector) == 0 && sector > 0) return static_cast<std::size_t>(sector);
  }
#if defined(STATX_DIOALIGN)
  struct statx sx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN) &&
      sx.stx_dio_offset_align != 0)
    return std::max<std::size_t>(sx.stx_dio_offset_align, sx.stx_dio_mem_align);
#endif
#endif
  if (st.st_blksize > 0) return static_cast<std::size_t>(st.st_blksize);
  return File::kDefaultBlockSize;
}

bool fd_is_direct(int fd) noexcept {
#if defined(O_DIRECT)
  int fl = ::fcntl(fd, F_GETFL);
  return fl >= 0 && (fl & O_DIRECT) != 0;
#else
  (void)fd;
  return false;
#endif
}

bool aligned(std::uint64_t v, std::size_t block) noexcept { return v % block == 0; }

}  // namespace

// ---- File ----

File::File(int fd, Scheduler* sched) noexcept
    : FdOwner(fd, sched), direct_(fd_is_direct(fd)), block_size_(query_block_size(fd)) {}

Expected<File> File::open(const std::string& path, int flags, mode_t mode) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno_error(errno);
  return File(fd, Scheduler::current());
}

Expected<File> File::adopt(int fd) {
  if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) return errno_error(EBADF);
  return File(fd, Scheduler::current());
}

Expected<std::uint64_t> File::size() const {
  if (fd_ < 0) return errno_error(EBADF);
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return errno_error(errno);
#if defined(__linux__)
  if (S_ISBLK(st.st_mode)) {
    std::uint64_t bytes = 0;
    if (::ioctl(fd_, BLKGETSIZE64, &bytes) != 0) return errno_error(errno);
    return bytes;
  }
#endif
  return static_cast<std::uint64_t>(st.st_size);
}

std::int64_t File::prepare(IoOp& op, const void* buf, std::size_t len, std::uint64_t offset) const noexcept {
  op.buf = const_cast<void*>(buf);
  op.len = std::min(len, kMaxTransfer);
  op.offset = offset;
  if (offset > kMaxOffset) return -EINVAL;
  if (!direct_) return 0;
  op.flags |= op_direct_file;
  if (!aligned(reinterpret_cast<std::uintptr_t>(buf), block_size_)) return galay_error_result(Error::misaligned_buffer);
  if (!aligned(offset, block_size_)) return galay_error_result(Error::misaligned_offset);
  if (!aligned(len, block_size_)) return galay_error_result(Error::misaligned_length);
  return 0;
}

std::int64_t File::prepare(IoOp& op, std::span<const iovec> iov, std::uint64_t offset) const noexcept {
  op.iov = iov.data();
  op.iovcnt = static_cast<int>(iov.size());
  op.offset = offset;
  if (offset > kMaxOffset) return -EINVAL;
  if (!direct_) return 0;
  op.flags |= op_direct_file;
  for (const iovec& v : iov)
    if (!aligned(reinterpret_cast<std::uintptr_t>(v.iov_base), block_size_))
      return galay_error_result(Error::misaligned_buffer);
  if (!aligned(offset, block_size_)) return galay_error_result(Error::misaligned_offset);
  for (const iovec& v : iov)
    if (!aligned(v.iov_len, block_size_)) return galay_error_result(Error::misaligned_length);
  return 0;
}

SizeAwaitable File::read_at(std::span<std::byte> buf, std::uint64_t offset, Timeout timeout) noexcept {
  SizeAwaitable a(OpCode::read_at, fd_, timeout);
  if (std::int64_t r = prepare(a.op(), buf.data(), buf.size(), offset); r != 0) a.fail_before_submit(r);
  return a;
}

SizeAwaitable File::write_at(std::span<const std::byte> buf, std::uint64_t offset, Timeout timeout) noexcept {
  SizeAwaitable a(OpCode::write_at, fd_, timeout);
  if (std::int64_t r = prepare(a.op(), buf.data(), buf.size(), offset); r != 0) a.fail_before_submit(r);
  return a;
}

SizeAwaitable File::readv_at(std::span<const iovec> iov, std::uint64_t offset, Timeout timeout) noexcept {
  SizeAwaitable a(OpCode::readv_at, fd_, timeout);
  if (std::int64_t r = prepare(a.op(), iov, offset); r != 0) a.fail_before_submit(r);
  return a;
}

SizeAwaitable File::writev_at(std::span<const iovec> iov, std::uint64_t offset, Timeout timeout) noexcept {
  SizeAwaitable a(OpCode::writev_at, fd_, timeout);
  if (std::int64_t r = prepare(a.op(), iov, offset); r != 0) a.fail_before_submit(r);
  return a;
}

VoidAwaitable File::fsync(Timeout timeout) noexcept { return VoidAwaitable(OpCode::fsync, fd_, timeout); }

VoidAwaitable File::fdatasync(Timeout timeout) noexcept { return VoidAwaitable(OpCode::fdatasync, fd_, timeout); }

VoidAwaitable File::fallocate(int mode, std::uint64_t offset, std::uint64_t len, Timeout timeout) noexcept {
  VoidAwaitable a(OpCode::fallocate, fd_, timeout);
  a.op().aux = mode;
  a.op().offset = offset;
  a.op().len = static_cast<std::size_t>(len);
  if (offset > kMaxOffset || len > kMaxOffset - offset) a.fail_before_submit(-EINVAL);  // off_t range
  return a;
}

VoidAwaitable File::close() noexcept {
  // The fd leaves this object now, so nothing new can start on it; the op finishes the job.
  direct_ = false;
  return VoidAwaitable(OpCode::close, release());
}

// ---- FileBatch ----

namespace detail {
namespace {
// One resume per finished request; the last one hands control to the awaiting task.
struct CountDown {
  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<BatchJoin::promise_type> h) noexcept {
    BatchJoin::promise_type& p = h.promise();
    return --p.remaining == 0 ? p.parent : std::noop_coroutine();
  }
  void await_resume() const noexcept {}
};
}  // namespace

BatchJoin make_batch_join() {
  for (;;) co_await CountDown{};
}
}  // namespace detail

FileBatch::FileBatch(std::size_t capacity) : capacity_(capacity), join_(detail::make_batch_join()) {
  ops_.reserve(capacity);
  starting_.reserve(capacity);
}

FileBatch::~FileBatch() {
  if (TimerNode::armed() && sched_ != nullptr) sched_->timers().cancel(*this);
  if (scope_ != nullptr) scope_->clear_pending(this);
  // Requests still pending (scheduler shutdown) are abandoned by their IoOp destructors;
  // completions that arrive meanwhile must not resume a join coroutine about to be freed.
  for (IoOp& op : ops_)
    if (op.state == OpState::pending) op.waiter = std::noop_coroutine();
  ops_.clear();
}

namespace {
// A request just added as ops_[index]: one that `prepared` refused (non-zero: -errno) is
// done at once with that result and is never submitted.
std::size_t settle(IoOp& op, std::int64_t prepared, std::size_t index) noexcept {
  if (prepared != 0) {
    op.result = prepared;
    op.state = OpState::done;
  }
  return index;
}
}  // namespace

IoOp& FileBatch::add(const File& file, OpCode code) {
  if (in_flight_) throw std::logic_error("FileBatch: cannot add requests while a submit is in flight");
  if (ops_.size() == capacity_) throw std::length_error("FileBatch: capacity exceeded");
  return ops_.emplace_back(code, file.fd_);  // within the reserved capacity: never reallocates
}

std::size_t FileBatch::read_at(const File& file, std::span<std::byte> buf, std::uint64_t offset) {
  IoOp& op = add(file, OpCode::read_at);
  return settle(op, file.prepare(op, buf.data(), buf.size(), offset), ops_.size() - 1);
}

std::size_t FileBatch::write_at(const File& file, std::span<const std::byte> buf, std::uint64_t offset) {
  IoOp& op = add(file, OpCode::write_at);
  return settle(op, file.prepare(op, buf.data(), buf.size(), offset), ops_.size() - 1);
}

std::size_t FileBatch::readv_at(const File& file, std::span<const iovec> iov, std::uint64_t offset) {
  IoOp& op = add(file, OpCode::readv_at);
  return settle(op, file.prepare(op, iov, offset), ops_.size() - 1);
}

std::size_t FileBatch::writev_at(const File& file, std::span<const iovec> iov, std::uint64_t offset) {
  IoOp& op = add(file, OpCode::writev_at);
  return settle(op, file.prepare(op, iov, offset), ops_.size() - 1);
}

Expected<std::size_t> FileBatch::result(std::size_t i) const noexcept {
  if (i >= ops_.size() || ops_[i].state != OpState::done) return errno_error(EINPROGRESS);
  return ops_[i].size_result();
}

void FileBatch::clear() {
  if (in_flight_) throw std::logic_error("FileBatch: cannot clear while a submit is in flight");
  ops_.clear();
  submitted_ = range_begin_ = range_end_ = 0;
}

bool FileBatch::begin(std::coroutine_handle<> h, CancelScope* scope, Timeout timeout) noexcept {
  range_begin_ = submitted_;
  range_end_ = submitted_ = ops_.size();
  Scheduler* s = Scheduler::current();
  starting_.clear();
  for (std::size_t i = range_begin_; i < range_end_; ++i) {
    IoOp& op = ops_[i];
    if (op.state != OpState::idle) continue;  // failed its O_DIRECT check when queued
    if (s == nullptr) {
      op.result = kNoSchedulerResult;
      op.state = OpState::done;
    } else if (scope != nullptr && scope->cancelled()) {
      op.result = -static_cast<std::int64_t>(scope->reason());
      op.state = OpState::done;
    } else {
      op.sched = s;
      op.waiter = join_.handle();
      op.state = OpState::pending;
      starting_.push_back(&op);
    }
  }
  if (starting_.empty()) return false;
  detail::LiveMetrics& metrics = s->live_metrics();
  for (IoOp* op : starting_) metrics.op_started(op->code);
  s->backend().start_batch(starting_);
  for (IoOp* op : starting_)
    if (op->state == OpState::done) metrics.op_finished(op->code, op->result);  // finished at once
  const auto pending = static_cast<std::size_t>(
      std::count_if(starting_.begin(), starting_.end(), [](IoOp* op) { return op->state == OpState::pending; }));
  if (pending == 0) return false;
  join_.handle().promise().remaining = pending;
  join_.handle().promise().parent = h;
  in_flight_ = true;
  sched_ = s;
  if (timeout.enabled()) {
    fire = &FileBatch::on_deadline;
    s->timers().arm(*this, deadline_after(Clock::now(), timeout.value));
  }
  if (scope != nullptr) {
    scope_ = scope;
    scope->set_pending(this);
  }
  return true;
}

Expected<void> FileBatch::finish() noexcept {
  in_flight_ = false;
  if (TimerNode::armed()) sched_->timers().cancel(*this);
  if (scope_ != nullptr) {
    scope_->clear_pending(this);
    scope_ = nullptr;
  }
  for (std::size_t i = range_begin_; i < range_end_; ++i)
    if (ops_[i].result < 0) return Unexpected(ops_[i].error());
  return {};
}

void FileBatch::cancel(std::errc reason) noexcept {
  // Each pending request is cancelled through its backend; the batch still resumes only
  // once all of them have completed.
  for (std::size_t i = range_begin_; i < range_end_; ++i)
    if (ops_[i].state == OpState::pending) ops_[i].cancel(reason);
}

void FileBatch::on_deadline(TimerNode* self) { static_cast<FileBatch*>(self)->cancel(std::errc::timed_out); }

}  // namespace galay
