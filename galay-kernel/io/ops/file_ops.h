#pragma once
/// @file file_ops.h (internal)
/// The positioned file operations, one struct per OpCode. On io_uring each is an SQE; on
/// epoll an O_DIRECT read/write goes to libaio (`aio_prep`), everything else to the
/// BlockingPool (`blocking`); on kqueue everything goes to the pool. Their awaitables are
/// File's (fs/file.h) and FileBatch's. Offsets above the largest off_t are refused with
/// EINVAL before any backend sees them (IoOp::begin), and again by `blocking`.

#include "galay-kernel/io/ops/op_kind.h"

namespace galay::detail::ops {

/// read_at: up to len bytes into buf at offset; result: bytes (short at end of file).
struct ReadAt : OpTraits<OpCode::read_at, ReadinessRoute::off_engine, ByteFlow::in> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  /// The same as READ_FIXED from registered buffer `buf_index` (RegisteredBuffers).
  static void prep_fixed(io_uring_sqe* sqe, IoOp& op, unsigned buf_index) noexcept;
  static void aio_prep(iocb* cb, IoOp& op) noexcept;
  static std::int64_t blocking(IoOp& op) noexcept;
};

/// write_at: len bytes from buf at offset; result: bytes written.
struct WriteAt : OpTraits<OpCode::write_at, ReadinessRoute::off_engine, ByteFlow::out> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  /// The same as WRITE_FIXED from registered buffer `buf_index` (RegisteredBuffers).
  static void prep_fixed(io_uring_sqe* sqe, IoOp& op, unsigned buf_index) noexcept;
  static void aio_prep(iocb* cb, IoOp& op) noexcept;
  static std::int64_t blocking(IoOp& op) noexcept;
};

/// readv_at: iov/iovcnt at offset; result: bytes.
struct ReadvAt : OpTraits<OpCode::readv_at, ReadinessRoute::off_engine, ByteFlow::in> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static void aio_prep(iocb* cb, IoOp& op) noexcept;
  static std::int64_t blocking(IoOp& op) noexcept;
};

/// writev_at: iov/iovcnt at offset; result: bytes.
struct WritevAt : OpTraits<OpCode::writev_at, ReadinessRoute::off_engine, ByteFlow::out> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static void aio_prep(iocb* cb, IoOp& op) noexcept;
  static std::int64_t blocking(IoOp& op) noexcept;
};

/// fsync: flush data and metadata; result 0.
struct Fsync : OpTraits<OpCode::fsync, ReadinessRoute::off_engine> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t blocking(IoOp& op) noexcept;
};

/// fdatasync: flush data (fsync where the platform has no fdatasync); result 0.
struct Fdatasync : OpTraits<OpCode::fdatasync, ReadinessRoute::off_engine> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t blocking(IoOp& op) noexcept;
};

/// fallocate: aux = mode, offset, len; result 0 (EOPNOTSUPP where the platform lacks it).
struct Fallocate : OpTraits<OpCode::fallocate, ReadinessRoute::off_engine> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t blocking(IoOp& op) noexcept;
};

}  // namespace galay::detail::ops
