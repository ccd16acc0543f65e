#pragma once
/// @file socket_ops.h (internal)
/// The socket operations, one struct per OpCode, each with the facets of op_kind.h it has.
/// Their awaitables are in net/ (stream_socket.h, udp_socket.h, ...); the multishot halves
/// of accept_multishot and recv_pooled (one armed SQE feeding many awaits) are io_uring's
/// own, in io/io_uring/, with their queues in io/multishot.h.

#include "galay-kernel/io/ops/op_kind.h"

namespace galay::detail::ops {

/// accept: fd is the listener; addr/addrlen (optional) receive the peer; result: the new
/// fd, non-blocking and close-on-exec.
struct Accept : OpTraits<OpCode::accept, ReadinessRoute::read_side> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t attempt(IoOp& op, bool& drained) noexcept;
};

/// accept_multishot: buf is the listener's AcceptQueueState. io_uring keeps one multishot
/// accept armed (io/io_uring/); where the kernel lacks it, and on readiness backends, each
/// await is a plain accept without the peer's address.
struct AcceptMultishot : OpTraits<OpCode::accept_multishot, ReadinessRoute::read_side> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t attempt(IoOp& op, bool& drained) noexcept;
};

/// connect: addr/addrlen name the peer; result 0.
struct Connect : OpTraits<OpCode::connect, ReadinessRoute::connect> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t initiate(IoOp& op) noexcept;
  static std::int64_t attempt(IoOp& op, bool& drained) noexcept;
};

/// recv: len bytes into buf; result: bytes (0 = end of stream). One submission moves at
/// most kMaxTransfer bytes.
struct Recv : OpTraits<OpCode::recv, ReadinessRoute::read_side, ByteFlow::in> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t attempt(IoOp& op, bool& drained) noexcept;
};

/// recv_pooled: buf is the receiver's PooledRecvState; the bytes land in a pool buffer
/// whose id goes to aux (-1 at end of stream); result: bytes. On readiness backends one
/// await is one recv into a free buffer; io_uring arms a multishot recv instead (no prep).
struct RecvPooled : OpTraits<OpCode::recv_pooled, ReadinessRoute::read_side, ByteFlow::in> {
  static std::int64_t attempt(IoOp& op, bool& drained) noexcept;
};

/// recvmsg: msg (names, iovecs, control) with aux as the flags; result: bytes.
struct RecvMsg : OpTraits<OpCode::recvmsg, ReadinessRoute::read_side, ByteFlow::in> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t attempt(IoOp& op, bool& drained) noexcept;
};

/// readv: iov/iovcnt; result: bytes.
struct Readv : OpTraits<OpCode::readv, ReadinessRoute::read_side, ByteFlow::in> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t attempt(IoOp& op, bool& drained) noexcept;
};

/// send: len bytes from buf, never raising SIGPIPE; with op_all until all are out
/// (done_bytes counts), else one send's count. op_zero_copy: SEND_ZC on io_uring where the
/// backend kept the flag (it clears it where the kernel lacks SEND_ZC).
struct Send : OpTraits<OpCode::send, ReadinessRoute::write_side, ByteFlow::out> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t on_cqe(IoOp& op, std::int32_t res, bool& again) noexcept;
  static std::int64_t attempt(IoOp& op, bool& drained) noexcept;
};

/// sendmsg: msg, never raising SIGPIPE; result: bytes.
struct SendMsg : OpTraits<OpCode::sendmsg, ReadinessRoute::write_side, ByteFlow::out> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t attempt(IoOp& op, bool& drained) noexcept;
};

/// poll_read: wait until fd is readable; result 0 (-EBADF for a descriptor the kernel
/// reports invalid).
struct PollRead : OpTraits<OpCode::poll_read, ReadinessRoute::read_side> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t on_cqe(IoOp& op, std::int32_t res, bool& again) noexcept;
  static std::int64_t attempt(IoOp& op, bool& drained) noexcept;
};

/// poll_write: wait until fd is writable; as poll_read.
struct PollWrite : OpTraits<OpCode::poll_write, ReadinessRoute::write_side> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t on_cqe(IoOp& op, std::int32_t res, bool& again) noexcept;
  static std::int64_t attempt(IoOp& op, bool& drained) noexcept;
};

/// close: cancel everything pending on fd, then close it (the backends do the cancelling;
/// readiness backends close inline); result 0.
struct Close : OpTraits<OpCode::close, ReadinessRoute::close> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
};

}  // namespace galay::detail::ops
