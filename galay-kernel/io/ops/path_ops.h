#pragma once
/// @file path_ops.h (internal)
/// The path operations of fs/fs_ops.h, one struct per OpCode. fd is the directory a
/// relative path starts from (AT_FDCWD, or a directory fd), path the NUL-terminated path
/// the awaitable owns; a second pointer, where an op has one, has its own IoOp member
/// (new_path, stat_buf, dir_entries). io_uring runs the first five as
/// SQEs where its kernel has them (the backend probes which) and the rest on the
/// BlockingPool; epoll and kqueue run them all on the pool.

#include <vector>

#include "galay-kernel/fs/fs_ops.h"
#include "galay-kernel/io/ops/op_kind.h"

namespace galay::detail::ops {

/// openat: aux = open flags (O_CLOEXEC included), len = mode; result: the new fd.
struct OpenAt : OpTraits<OpCode::openat, ReadinessRoute::off_engine> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t blocking(IoOp& op) noexcept;
};

/// statx: aux = AT_* flags, stat_buf = the awaitable's buffer (struct statx on Linux,
/// struct stat from fstatat elsewhere); result 0.
struct Statx : OpTraits<OpCode::statx, ReadinessRoute::off_engine> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t blocking(IoOp& op) noexcept;
};

/// renameat: aux = the new path's directory fd, new_path = the new path; result 0.
struct RenameAt : OpTraits<OpCode::renameat, ReadinessRoute::off_engine> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t blocking(IoOp& op) noexcept;
};

/// unlinkat: aux = 0 (unlink) or AT_REMOVEDIR (rmdir); result 0.
struct UnlinkAt : OpTraits<OpCode::unlinkat, ReadinessRoute::off_engine> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t blocking(IoOp& op) noexcept;
};

/// mkdirat: aux = mode; result 0.
struct MkdirAt : OpTraits<OpCode::mkdirat, ReadinessRoute::off_engine> {
  static void prep(io_uring_sqe* sqe, IoOp& op) noexcept;
  static std::int64_t blocking(IoOp& op) noexcept;
};

/// sync_dir: open the directory O_DIRECTORY, fsync it, close it (the pool everywhere: three
/// dependent calls); result 0.
struct SyncDir : OpTraits<OpCode::sync_dir, ReadinessRoute::off_engine> {
  static std::int64_t blocking(IoOp& op) noexcept;
};

/// read_dir: dir_entries = the awaitable's vector, filled in ("." and ".." left out; the
/// pool everywhere); result: the number of entries.
struct ReadDir : OpTraits<OpCode::read_dir, ReadinessRoute::off_engine> {
  static std::int64_t blocking(IoOp& op) noexcept;
};

/// The FileType of a st_mode / stx_mode value (also StatAwaitable's).
fs::FileType file_type_of_mode(unsigned mode) noexcept;

}  // namespace galay::detail::ops
