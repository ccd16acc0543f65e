#include "galay-kernel/io/ops/file_ops.h"

#include <fcntl.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>
#if defined(GALAY_HAVE_IO_URING)
#include <liburing.h>
#endif
#if defined(__linux__)
#include <libaio.h>
#endif

#include <algorithm>
#include <cerrno>
#include <limits>

namespace galay::detail::ops {
namespace {

// The offset as an off_t, or false if it has none (io_uring would read -1 as "the file
// position"; pread refuses it).
bool file_offset(const IoOp& op, off_t& off) noexcept {
  if (op.offset > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max())) return false;
  off = static_cast<off_t>(op.offset);
  return true;
}

// A blocking syscall at the op's offset, EINTR retried.
template <class Call>
std::int64_t at_offset(const IoOp& op, Call call) noexcept {
  off_t off;
  if (!file_offset(op, off)) return -EINVAL;
  return retry_eintr([&] { return call(off); });
}

#if defined(GALAY_HAVE_IO_URING)
// One SQE moves at most kMaxTransfer bytes (its length field is 32 bits).
unsigned sqe_length(const IoOp& op) noexcept { return static_cast<unsigned>(std::min(op.len, kMaxTransfer)); }
#endif

}  // namespace

// ---- read_at / write_at ----
#if defined(GALAY_HAVE_IO_URING)
void ReadAt::prep(io_uring_sqe* sqe, IoOp& op) noexcept {
  io_uring_prep_read(sqe, op.fd, op.buf, sqe_length(op), op.offset);
}
void WriteAt::prep(io_uring_sqe* sqe, IoOp& op) noexcept {
  io_uring_prep_write(sqe, op.fd, op.buf, sqe_length(op), op.offset);
}
void ReadAt::prep_fixed(io_uring_sqe* sqe, IoOp& op, unsigned buf_index) noexcept {
  io_uring_prep_read_fixed(sqe, op.fd, op.buf, sqe_length(op), op.offset, static_cast<int>(buf_index));
}
void WriteAt::prep_fixed(io_uring_sqe* sqe, IoOp& op, unsigned buf_index) noexcept {
  io_uring_prep_write_fixed(sqe, op.fd, op.buf, sqe_length(op), op.offset, static_cast<int>(buf_index));
}
#endif
#if defined(__linux__)
void ReadAt::aio_prep(iocb* cb, IoOp& op) noexcept {
  io_prep_pread(cb, op.fd, op.buf, op.len, static_cast<long long>(op.offset));
}
void WriteAt::aio_prep(iocb* cb, IoOp& op) noexcept {
  io_prep_pwrite(cb, op.fd, op.buf, op.len, static_cast<long long>(op.offset));
}
#endif
std::int64_t ReadAt::blocking(IoOp& op) noexcept {
  return at_offset(op, [&](off_t off) { return ::pread(op.fd, op.buf, op.len, off); });
}
std::int64_t WriteAt::blocking(IoOp& op) noexcept {
  return at_offset(op, [&](off_t off) { return ::pwrite(op.fd, op.buf, op.len, off); });
}

// ---- readv_at / writev_at ----
#if defined(GALAY_HAVE_IO_URING)
void ReadvAt::prep(io_uring_sqe* sqe, IoOp& op) noexcept {
  io_uring_prep_readv(sqe, op.fd, op.iov, static_cast<unsigned>(op.iovcnt), op.offset);
}
void WritevAt::prep(io_uring_sqe* sqe, IoOp& op) noexcept {
  io_uring_prep_writev(sqe, op.fd, op.iov, static_cast<unsigned>(op.iovcnt), op.offset);
}
#endif
#if defined(__linux__)
void ReadvAt::aio_prep(iocb* cb, IoOp& op) noexcept {
  io_prep_preadv(cb, op.fd, op.iov, op.iovcnt, static_cast<long long>(op.offset));
}
void WritevAt::aio_prep(iocb* cb, IoOp& op) noexcept {
  io_prep_pwritev(cb, op.fd, op.iov, op.iovcnt, static_cast<long long>(op.offset));
}
#endif
std::int64_t ReadvAt::blocking(IoOp& op) noexcept {
  return at_offset(op, [&](off_t off) { return ::preadv(op.fd, op.iov, op.iovcnt, off); });
}
std::int64_t WritevAt::blocking(IoOp& op) noexcept {
  return at_offset(op, [&](off_t off) { return ::pwritev(op.fd, op.iov, op.iovcnt, off); });
}

// ---- fsync / fdatasync / fallocate ----
#if defined(GALAY_HAVE_IO_URING)
void Fsync::prep(io_uring_sqe* sqe, IoOp& op) noexcept { io_uring_prep_fsync(sqe, op.fd, 0); }
void Fdatasync::prep(io_uring_sqe* sqe, IoOp& op) noexcept { io_uring_prep_fsync(sqe, op.fd, IORING_FSYNC_DATASYNC); }
void Fallocate::prep(io_uring_sqe* sqe, IoOp& op) noexcept {
  io_uring_prep_fallocate(sqe, op.fd, op.aux, op.offset, static_cast<off_t>(op.len));
}
#endif
std::int64_t Fsync::blocking(IoOp& op) noexcept {
  return retry_eintr([&] { return ::fsync(op.fd); });
}
std::int64_t Fdatasync::blocking(IoOp& op) noexcept {
#if defined(__APPLE__)
  return retry_eintr([&] { return ::fsync(op.fd); });  // no fdatasync in Apple's libc
#else
  return retry_eintr([&] { return ::fdatasync(op.fd); });
#endif
}
std::int64_t Fallocate::blocking(IoOp& op) noexcept {
#if defined(__linux__)
  return at_offset(op, [&](off_t off) { return ::fallocate(op.fd, op.aux, off, static_cast<off_t>(op.len)); });
#elif defined(__FreeBSD__)
  if (op.aux != 0) return -EOPNOTSUPP;
  off_t off;
  if (!file_offset(op, off)) return -EINVAL;
  // posix_fallocate returns the error instead of setting errno.
  return -static_cast<std::int64_t>(::posix_fallocate(op.fd, off, static_cast<off_t>(op.len)));
#else
  (void)op;
  return -EOPNOTSUPP;
#endif
}

}  // namespace galay::detail::ops
