#pragma once
/// @file op_kind.h (internal: io/ops/ is not installed)
/// One home per operation. Every OpCode has one struct in io/ops/ (socket_ops.h,
/// file_ops.h, path_ops.h) that holds everything any backend needs to run it:
///  - `prep`: the io_uring SQE it becomes (`prep_fixed` for a registered buffer), and `on_cqe` where a completion needs
///  more than
///    "res is the result" (send_all's rest, poll's event mask);
///  - `route`, `initiate`, `attempt`: how a readiness backend (epoll, kqueue) runs it, i.e.
///    which readiness it waits for and the non-blocking syscall it tries;
///  - `aio_prep`: the libaio iocb (O_DIRECT file I/O on epoll);
///  - `blocking`: the call a BlockingPool thread makes for it.
/// This file gathers them into one table indexed by OpCode; the backends look an op up
/// here and never switch on OpCode. An op kind only describes: the backends own the queues,
/// the fd bookkeeping and the completion (IoOp::complete).
///
/// Adding an operation: an OpCode, a struct in the family's header with the facets it
/// has, its definitions in the family's .cc, one line in op_kind.cc, and its awaitable.

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>

#include "galay-kernel/io/op.h"

struct io_uring_sqe;  // liburing (io_uring backend only)
struct iocb;          // libaio (epoll's O_DIRECT file engine only)

namespace galay::detail {

/// How a readiness backend runs an op kind.
enum class ReadinessRoute : std::uint8_t {
  read_side,   ///< `attempt` while the fd is readable; otherwise the op waits among its readers
  write_side,  ///< the same on writability, among its writers
  connect,     ///< `initiate` once at start, then `attempt` each time the fd turns writable
  close,       ///< the readiness engine fails the fd's waiters and closes it
  off_engine,  ///< never waits for readiness: `blocking` on the pool (or `aio_prep` on libaio)
};

/// What an op kind's non-negative result counts, for the bytes-in/bytes-out metrics.
enum class ByteFlow : std::uint8_t {
  none,  ///< not bytes (a descriptor, 0, a count of entries)
  in,    ///< bytes received or read
  out,   ///< bytes sent or written
};

/// Everything the backends know about one OpCode. A null facet means the kind has none:
/// `prep` null: io_uring runs it another way (a multishot SQE, or the pool); `attempt`
/// null: not a readiness op; `blocking` null: no pool path.
struct OpKind {
  /// The opcode's name, for diagnostics.
  const char* name = nullptr;
  /// How epoll and kqueue run it.
  ReadinessRoute route = ReadinessRoute::off_engine;
  /// What its result counts (LiveMetrics' bytes in and out).
  ByteFlow flow = ByteFlow::none;
  /// io_uring: fill in `sqe` (user_data is set by the backend).
  void (*prep)(io_uring_sqe* sqe, IoOp& op) noexcept = nullptr;
  /// io_uring: turn a CQE's `res` into the op's result; sets `again` when the op must be
  /// prepared and submitted once more (the rest of a send_all).
  std::int64_t (*on_cqe)(IoOp& op, std::int32_t res, bool& again) noexcept = nullptr;
  /// io_uring: fill in `sqe` for a buffer inside the ring's registered buffer `buf_index`
  /// (RegisteredBuffers): READ_FIXED/WRITE_FIXED. Null: the kind has no fixed form.
  void (*prep_fixed)(io_uring_sqe* sqe, IoOp& op, unsigned buf_index) noexcept = nullptr;
  /// Readiness: the first syscall, made once at start (connect(2)): >= 0 or -errno done,
  /// -EAGAIN in progress (wait for `route`'s readiness, then `attempt`).
  std::int64_t (*initiate)(IoOp& op) noexcept = nullptr;
  /// Readiness: the non-blocking syscall. >= 0 or -errno: finished; -EAGAIN: wait. Sets
  /// `drained` when the kernel buffer is known to be empty (reads) or full (writes).
  std::int64_t (*attempt)(IoOp& op, bool& drained) noexcept = nullptr;
  /// libaio: fill in `cb` (the engine sets the eventfd and data).
  void (*aio_prep)(iocb* cb, IoOp& op) noexcept = nullptr;
  /// Pool thread: the blocking call, EINTR retried; >= 0 or -errno.
  std::int64_t (*blocking)(IoOp& op) noexcept = nullptr;
};

using galay::kOpCodeCount;

/// The table, one entry per OpCode (io/ops/op_kind.cc).
extern const std::array<OpKind, kOpCodeCount> kOpKinds;

/// The description of `code`.
inline const OpKind& op_kind(OpCode code) noexcept { return kOpKinds[static_cast<std::size_t>(code)]; }

/// A syscall's return value as an op result: the value, or -errno.
inline std::int64_t syscall_result(long r) noexcept { return r < 0 ? -static_cast<std::int64_t>(errno) : r; }

/// A blocking syscall, retried while it fails with EINTR: its value, or -errno.
template <class Call>
std::int64_t retry_eintr(Call call) noexcept {
  for (;;) {
    const std::int64_t r = syscall_result(call());
    if (r != -EINTR) return r;
  }
}

namespace ops {
/// The base of each op struct in io/ops/: which OpCode it describes, how readiness
/// backends route it and what its result counts. The struct adds the facets it has
/// (OpKind's members, as statics).
template <OpCode C, ReadinessRoute R, ByteFlow F = ByteFlow::none>
struct OpTraits {
  static constexpr OpCode code = C;
  static constexpr ReadinessRoute route = R;
  static constexpr ByteFlow flow = F;
};
}  // namespace ops

}  // namespace galay::detail
