#pragma once
/// @file file.h
/// File: an owning, move-only file descriptor whose positioned I/O is awaitable, on every
/// backend; FileBatch: several reads and writes submitted to the kernel together.
///
/// How each backend runs file I/O:
///  - io_uring: IORING_OP_READ/WRITE/READV/WRITEV/FSYNC/FALLOCATE, buffered or O_DIRECT.
///  - epoll: O_DIRECT reads and writes through libaio (one io_context per scheduler,
///    completions signalled on an eventfd in the epoll set); buffered files, fsync,
///    fdatasync and fallocate on the BlockingPool (a few threads), because libaio would run
///    them synchronously inside io_submit.
///  - kqueue: everything on the BlockingPool.
///
/// Every I/O method returns an awaitable that lives in the caller's coroutine frame and
/// yields `Expected<...>`; each takes an optional Timeout. A timeout or cancellation asks
/// the kernel to stop; a request it cannot stop (a running pool syscall, a libaio request
/// on a regular file) still finishes first, and then reports its real result (data or
/// error) rather than the timeout. Either way, the buffer is no longer in use once the
/// co_await returns.
///
/// Results: read_at yields the bytes read; fewer than requested at end of file, 0 at or
/// beyond it (a short read is a value, not an error). write_at yields the bytes written.
///
/// O_DIRECT: buffers, offsets and lengths must be multiples of logical_block_size()
/// (AlignedBuffer provides such buffers). They are checked before submission, and a bad one
/// fails at once with Error::misaligned_buffer, misaligned_offset or misaligned_length,
/// checked in that order, instead of the kernel's bare EINVAL.
///
/// A File belongs to the scheduler of the thread that opened it; use and destroy it there.
///
/// File::open is synchronous; File::open_async (and fs::open, fs/fs_ops.h) opens without
/// blocking the loop, and File::stat() is an awaitable fstat.

#include <sys/types.h>
#include <sys/uio.h>

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "galay-kernel/common/aligned_buffer.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/coro/cancel.h"
#include "galay-kernel/fs/fs_ops.h"  // the awaitables of open_async() and stat()
#include "galay-kernel/io/fd_owner.h"
#include "galay-kernel/io/op.h"
#include "galay-kernel/runtime/timer_queue.h"

namespace galay {

class Scheduler;
class FileBatch;

/// A file opened for asynchronous positioned I/O (see the file comment for how each
/// backend runs it). Move-only; belongs to the scheduler of the thread that opened it.
class File : public FdOwner {
 public:
  /// Used when the device can't be asked (and the minimum reported for O_DIRECT files).
  static constexpr std::size_t kDefaultBlockSize = 4096;

  /// An empty file (is_open() == false); every operation on it fails with EBADF.
  File() noexcept = default;

  /// open(2) `path` with `flags` (O_RDONLY/O_WRONLY/O_RDWR, O_CREAT, O_TRUNC, O_DIRECT, ...;
  /// O_CLOEXEC is always added) and `mode` for a created file. Synchronous: the open itself
  /// runs on the calling thread (a metadata operation, usually microseconds; it can block on
  /// a slow or network filesystem). Errors are the errno of open(2): ENOENT, EACCES,
  /// EISDIR (a directory opened for writing), EINVAL (O_DIRECT unsupported, e.g. tmpfs), ...
  static Expected<File> open(const std::string& path, int flags, mode_t mode = 0644);
  /// The same open(2), as an awaitable that does not block the loop: IORING_OP_OPENAT on
  /// io_uring, the blocking pool elsewhere (see fs/fs_ops.h). `co_await` → Expected<File>.
  /// The path is copied. On timeout or cancellation an open that already ran returns its
  /// File; one abandoned with its frame has its fd closed.
  static fs::OpenAwaitable open_async(std::string_view path, int flags, mode_t mode = 0644, Timeout timeout = {});
  /// Take ownership of an open fd (its O_DIRECT flag is read with fcntl(F_GETFL)).
  static Expected<File> adopt(int fd);

  /// Take over another File's fd; it becomes empty.
  File(File&& o) noexcept = default;
  /// Close this file (as the destructor does: ops still queued on it complete with
  /// operation_canceled; ones already in the kernel finish with their real result), then
  /// take over the other's fd.
  File& operator=(File&& o) noexcept = default;
  /// True if the fd has O_DIRECT set.
  bool is_direct() const noexcept { return direct_; }
  /// The alignment O_DIRECT needs for buffers, offsets and lengths: BLKSSZGET for a block
  /// device, statx(STATX_DIOALIGN) for a file where the kernel reports it, else st_blksize,
  /// else kDefaultBlockSize. Queried once, at open.
  std::size_t logical_block_size() const noexcept { return block_size_; }

  /// Current size in bytes (fstat; BLKGETSIZE64 for block devices). Synchronous.
  Expected<std::uint64_t> size() const;
  /// fstat as an awaitable: statx(fd, "", AT_EMPTY_PATH) (IORING_OP_STATX on io_uring, the
  /// blocking pool elsewhere). `co_await` → Expected<fs::FileStat>; EBADF on an empty File.
  fs::StatAwaitable stat(Timeout timeout = {}) const;

  // ---- awaitable I/O ----

  /// Read up to buf.size() bytes at `offset`; fewer at end of file, 0 beyond it.
  SizeAwaitable read_at(std::span<std::byte> buf, std::uint64_t offset, Timeout timeout = {}) noexcept;
  /// read_at() into `len` bytes at `data`.
  SizeAwaitable read_at(void* data, std::size_t len, std::uint64_t offset, Timeout timeout = {}) noexcept {
    return read_at(std::span<std::byte>(static_cast<std::byte*>(data), len), offset, timeout);
  }
  /// Write buf at `offset`; yields the bytes written (one syscall: normally all of them).
  SizeAwaitable write_at(std::span<const std::byte> buf, std::uint64_t offset, Timeout timeout = {}) noexcept;
  /// write_at() of `len` bytes at `data`.
  SizeAwaitable write_at(const void* data, std::size_t len, std::uint64_t offset, Timeout timeout = {}) noexcept {
    return write_at(std::span<const std::byte>(static_cast<const std::byte*>(data), len), offset, timeout);
  }
  /// Scatter read / gather write at `offset`. The iovec array must outlive the co_await.
  SizeAwaitable readv_at(std::span<const iovec> iov, std::uint64_t offset, Timeout timeout = {}) noexcept;
  /// Gather write of the buffers in `iov` at `offset`.
  SizeAwaitable writev_at(std::span<const iovec> iov, std::uint64_t offset, Timeout timeout = {}) noexcept;

  /// Flush data and metadata / data (and the metadata needed to read it back) to the device.
  VoidAwaitable fsync(Timeout timeout = {}) noexcept;
  /// See fsync().
  VoidAwaitable fdatasync(Timeout timeout = {}) noexcept;
  /// fallocate(2) `mode` (0: allocate and extend; FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE,
  /// ...) over [offset, offset+len). EOPNOTSUPP where the system has no equivalent.
  VoidAwaitable fallocate(int mode, std::uint64_t offset, std::uint64_t len, Timeout timeout = {}) noexcept;

  /// Close the file: pending operations are cancelled first (as in the destructor), then the
  /// fd is released. The File is empty afterwards; closing an empty File yields EBADF.
  VoidAwaitable close() noexcept;

 private:
  friend class FileBatch;
  friend class fs::OpenAwaitable;
  File(int fd, Scheduler* sched) noexcept;
  // Fill `op` for a buffer transfer; 0, or the IoOp result for the rule it breaks (an
  // offset past INT64_MAX: -EINVAL; an O_DIRECT rule: a galay::Error result).
  std::int64_t prepare(IoOp& op, const void* buf, std::size_t len, std::uint64_t offset) const noexcept;
  std::int64_t prepare(IoOp& op, std::span<const iovec> iov, std::uint64_t offset) const noexcept;

  bool direct_ = false;
  std::size_t block_size_ = kDefaultBlockSize;
};

namespace detail {
/// The waiter of every request in a FileBatch: resumed once per completed request, it
/// resumes the task awaiting submit() when the last one is in, so that task wakes once.
class BatchJoin {
 public:
  struct promise_type {
    std::size_t remaining = 0;
    std::coroutine_handle<> parent;
    BatchJoin get_return_object() noexcept {
      return BatchJoin(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    std::suspend_always final_suspend() const noexcept { return {}; }
    void return_void() noexcept {}
    [[noreturn]] void unhandled_exception() noexcept { std::terminate(); }
  };
  explicit BatchJoin(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  BatchJoin(const BatchJoin&) = delete;
  BatchJoin& operator=(const BatchJoin&) = delete;
  BatchJoin(BatchJoin&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  ~BatchJoin() {
    if (h_) h_.destroy();
  }
  std::coroutine_handle<promise_type> handle() const noexcept { return h_; }

 private:
  std::coroutine_handle<promise_type> h_;
};
/// A new, suspended BatchJoin.
BatchJoin make_batch_join();
}  // namespace detail

/// Reads and writes, on one or more Files, handed to the kernel together and awaited as one:
///
///     FileBatch batch(4);
///     batch.read_at(file, buf_a, 0);
///     batch.write_at(file, buf_b, 8192);
///     auto all_ok = co_await batch.submit();     // one io_submit / one io_uring submit
///     auto n = batch.result(0);                  // each request's own Expected<size_t>
///
/// On epoll the O_DIRECT requests go to the kernel in one io_submit, at once (others, e.g.
/// buffered files, go to the blocking pool); on io_uring all of them go in one submission,
/// the loop's next io_uring_enter (with any other SQEs queued meanwhile); on kqueue they go
/// to the blocking pool. The awaiting task is resumed once, when every request has finished.
///
/// A batch is a barrier: the next one starts only when the slowest request of this one is
/// done. To keep a device busy, prefer several lanes (coroutines) over one big batch;
/// batching pays where submission syscalls are the cost (libaio: one io_submit for N).
///
/// The batch holds each request's IoOp (the libaio iocbs live in the backend's slot array)
/// in storage reserved at construction, so nothing moves while the kernel holds it: a
/// FileBatch can be neither copied nor moved, and adding beyond capacity() throws. The
/// request's buffers belong to the caller and must stay alive until submit() returns.
class FileBatch final : private Cancellable, private TimerNode {
 public:
  class SubmitAwaitable;

  /// Room for `capacity` requests (allocated now; nothing is allocated per submit).
  explicit FileBatch(std::size_t capacity);
  FileBatch(const FileBatch&) = delete;
  FileBatch& operator=(const FileBatch&) = delete;
  FileBatch(FileBatch&&) = delete;
  FileBatch& operator=(FileBatch&&) = delete;
  /// Destroy only when no submit() is in flight (or while its scheduler shuts down, which
  /// drains it first).
  ~FileBatch();

  /// Queue a read / write / readv / writev on `file`; returns the request's index. Throws
  /// std::length_error when full() and std::logic_error while a submit() is in flight. An
  /// O_DIRECT alignment error is recorded as that request's result now, and the request is
  /// not submitted.
  std::size_t read_at(const File& file, std::span<std::byte> buf, std::uint64_t offset);
  /// Queue a write of `buf` at `offset` (see read_at()).
  std::size_t write_at(const File& file, std::span<const std::byte> buf, std::uint64_t offset);
  /// Queue a scatter read at `offset`; the iovec array must outlive the submit.
  std::size_t readv_at(const File& file, std::span<const iovec> iov, std::uint64_t offset);
  /// Queue a gather write at `offset`; the iovec array must outlive the submit.
  std::size_t writev_at(const File& file, std::span<const iovec> iov, std::uint64_t offset);

  /// Requests queued (submitted or not).
  std::size_t size() const noexcept { return ops_.size(); }
  /// Most requests the batch can hold.
  std::size_t capacity() const noexcept { return capacity_; }
  /// True when no request is queued.
  bool empty() const noexcept { return ops_.empty(); }
  /// True when size() == capacity().
  bool full() const noexcept { return ops_.size() == capacity_; }

  /// Submit every request queued since the last submit() and wait until all have finished.
  /// Yields success if each of them succeeded, else the first one's error (see result()).
  /// A timeout or cancellation is passed to every request still running.
  SubmitAwaitable submit(Timeout timeout = {}) noexcept;

  /// Request `i`'s result: bytes transferred, or its error; operation_in_progress if it has
  /// not finished (not submitted yet).
  Expected<std::size_t> result(std::size_t i) const noexcept;

  /// Drop every request (keeps the capacity). Throws std::logic_error while in flight.
  void clear();

 private:
  friend class SubmitAwaitable;
  IoOp& add(const File& file, OpCode code);
  bool begin(std::coroutine_handle<> h, CancelScope* scope, Timeout timeout) noexcept;
  Expected<void> finish() noexcept;
  void cancel(std::errc reason) noexcept override;  // the scope's or the deadline's
  static void on_deadline(TimerNode* self);

  std::size_t capacity_;
  detail::BatchJoin join_;       // declared before ops_: outlives them
  std::vector<IoOp> ops_;        // reserved to capacity_, never reallocated
  std::vector<IoOp*> starting_;  // scratch for Backend::start_batch
  std::size_t submitted_ = 0;    // ops_[0, submitted_) have been submitted
  std::size_t range_begin_ = 0;  // the submit in progress covers [range_begin_, range_end_)
  std::size_t range_end_ = 0;
  bool in_flight_ = false;
  Scheduler* sched_ = nullptr;
  CancelScope* scope_ = nullptr;
};

/// `co_await batch.submit()` → Expected<void>.
class [[nodiscard]] FileBatch::SubmitAwaitable {
 public:
  /// Submit `batch`'s pending requests when awaited, with an optional time limit.
  SubmitAwaitable(FileBatch& batch, Timeout timeout) noexcept : batch_(batch), timeout_(timeout) {}
  /// Coroutine protocol: always suspends (the submission happens in await_suspend).
  bool await_ready() const noexcept { return false; }
  template <class P>
  /// Coroutine protocol: submits the batch; false if nothing had to wait.
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    return batch_.begin(h, detail::scope_of(h.promise()), timeout_);
  }
  /// Coroutine protocol: success if every request succeeded, else the first error.
  Expected<void> await_resume() noexcept { return batch_.finish(); }

 private:
  FileBatch& batch_;
  Timeout timeout_;
};

inline FileBatch::SubmitAwaitable FileBatch::submit(Timeout timeout) noexcept {
  return SubmitAwaitable(*this, timeout);
}

}  // namespace galay
