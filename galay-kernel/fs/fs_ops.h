#pragma once
/// @file fs_ops.h
/// Filesystem operations as awaitables, on every backend: stat, rename, unlink, mkdir,
/// rmdir, a directory's fsync, listing a directory, and opening a File without blocking
/// the loop (File::open_async / fs::open; File::open stays synchronous).
///
/// How each backend runs them:
///  - io_uring: IORING_OP_OPENAT / STATX / RENAMEAT / UNLINKAT / MKDIRAT where the ring's
///    probe reports the opcode (5.6 / 5.6 / 5.11 / 5.11 / 5.15), else the BlockingPool;
///    sync_dir and read_dir always on the BlockingPool (no io_uring opcode does them).
///  - epoll, kqueue: everything on the BlockingPool (openat, statx or fstatat, renameat,
///    unlinkat, mkdirat, open+fsync+close, opendir/readdir).
///
/// Every function returns an awaitable that lives in the caller's coroutine frame and yields
/// `Expected<...>`; each takes an optional Timeout. The path is copied into the awaitable,
/// so the caller's string may be a temporary: the kernel and the pool workers read the copy.
///
/// Errors: a path with an embedded NUL fails with invalid_argument (EINVAL), one of PATH_MAX
/// bytes or more with filename_too_long (ENAMETOOLONG), both before any backend sees it;
/// the rest are the syscall's errno as std::error_code (ENOENT, EEXIST, EACCES, ENOTDIR,
/// ENOTEMPTY, EISDIR, ...).
///
/// Timeouts and cancellation, as for File's I/O: an op still queued for the pool, or one
/// io_uring cancels in time, yields timed_out / operation_canceled; a syscall already running
/// on a pool worker (or one io_uring cannot stop) finishes first and its real result is
/// returned. An open that succeeds after its awaitable was abandoned (task destroyed,
/// scheduler shut down) has its descriptor closed: nothing leaks.
///
/// On io_uring, OPENAT tries a FIFO or device open non-blocking first: opening a FIFO for
/// reading returns at once instead of waiting for a writer, and one for writing with no
/// reader fails with ENXIO (the pool's open(2) waits in both cases).

#include <sys/types.h>

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "galay-kernel/common/expected.h"
#include "galay-kernel/coro/cancel.h"
#include "galay-kernel/io/op.h"

namespace galay {

class File;

namespace fs {

/// What a directory entry or a stat result names.
enum class FileType : std::uint8_t {
  unknown,    ///< not reported (or a kind this list lacks)
  regular,    ///< a regular file
  directory,  ///< a directory
  symlink,    ///< a symbolic link (only where links are not followed)
  block,      ///< a block device
  character,  ///< a character device
  fifo,       ///< a named pipe
  socket,     ///< a Unix-domain socket
};

/// The fields of statx(2) (stat(2) where there is no statx) most callers need.
struct FileStat {
  std::uint64_t size = 0;                                   ///< bytes
  std::uint32_t mode = 0;                                   ///< permission bits (st_mode & 07777)
  FileType type = FileType::unknown;                        ///< the kind of file (from the mode's S_IFMT bits)
  std::chrono::sys_time<std::chrono::nanoseconds> mtime{};  ///< last modification
  std::uint64_t ino = 0;                                    ///< inode number
  std::uint64_t dev = 0;                                    ///< device (makedev(major, minor))
  std::uint64_t nlink = 0;                                  ///< hard links
  std::uint32_t uid = 0;                                    ///< owner
  std::uint32_t gid = 0;                                    ///< group
};

/// One entry of read_dir(): never "." or "..".
struct DirEntry {
  std::string name;                   ///< the entry's name (not a path)
  FileType type = FileType::unknown;  ///< from d_type, or lstat when the filesystem gives none
};

namespace detail {
/// Base of the path awaitables: the IoOp plus the copied path (and a second one for
/// rename). The paths are pointed at when it starts, after the last possible move;
/// subclasses point the op at their own buffers when made and when moved.
class [[nodiscard]] PathAwaitable : public IoAwaitable {
 public:
  /// Op `code` on `path` relative to `dirfd`; a bad path makes it fail without starting.
  PathAwaitable(OpCode code, int dirfd, std::string_view path, Timeout timeout);
  template <class P>
  /// Coroutine protocol: points the op at this awaitable's copies, then starts it.
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    bind();
    return op_.begin(h, galay::detail::scope_of(h.promise()), timeout_);
  }
  /// The underlying operation (for awaitables that fill in extra fields).
  IoOp& op() noexcept { return op_; }

 protected:
  /// Also check and copy `second` (rename's new path).
  void set_second_path(std::string_view second);

 private:
  void bind() noexcept;
  std::string path_;
  std::string path2_;
};

/// The IoOp result for a bad path, or 0.
std::int64_t check_path(std::string_view path) noexcept;
}  // namespace detail

/// `co_await` → Expected<void> (rename, unlink, mkdir, rmdir, sync_dir).
class [[nodiscard]] PathVoidAwaitable : public detail::PathAwaitable {
 public:
  /// Op `code` on `path` relative to `dirfd` (see detail::PathAwaitable).
  using detail::PathAwaitable::PathAwaitable;
  /// rename(from, to): renameat(AT_FDCWD, from, AT_FDCWD, to).
  PathVoidAwaitable(std::string_view from, std::string_view to, Timeout timeout);
  /// Coroutine protocol: success, or the error.
  Expected<void> await_resume() const noexcept { return op_.void_result(); }
};

/// `co_await` → Expected<FileStat>.
class [[nodiscard]] StatAwaitable : public detail::PathAwaitable {
 public:
  /// statx(dirfd, path, flags); see fs::stat_at.
  StatAwaitable(int dirfd, std::string_view path, int flags, Timeout timeout);
  /// Move (only before it starts, like every awaitable); the buffer is this object's own.
  StatAwaitable(StatAwaitable&& o) noexcept : detail::PathAwaitable(std::move(o)) { op_.stat_buf = raw_; }
  /// Coroutine protocol: the attributes, or the error.
  Expected<FileStat> await_resume() const noexcept;

 private:
  alignas(8) unsigned char raw_[256];  // struct statx on Linux, struct stat elsewhere
};

/// `co_await` → Expected<File> (see File::open_async).
class [[nodiscard]] OpenAwaitable : public detail::PathAwaitable {
 public:
  /// openat(dirfd, path, flags | O_CLOEXEC, mode).
  OpenAwaitable(int dirfd, std::string_view path, int flags, mode_t mode, Timeout timeout);
  /// Coroutine protocol: the opened File (owned by the caller from here), or the error.
  Expected<File> await_resume() noexcept;
};

/// `co_await` → Expected<std::vector<DirEntry>>.
class [[nodiscard]] ReadDirAwaitable : public detail::PathAwaitable {
 public:
  /// List `path` (see fs::read_dir).
  ReadDirAwaitable(std::string_view path, Timeout timeout);
  /// Move (only before it starts, like every awaitable).
  ReadDirAwaitable(ReadDirAwaitable&& o) noexcept
      : detail::PathAwaitable(std::move(o)), entries_(std::move(o.entries_)) {
    op_.dir_entries = &entries_;
  }
  /// Coroutine protocol: the entries sorted by name, or the error.
  Expected<std::vector<DirEntry>> await_resume() noexcept;

 private:
  std::vector<DirEntry> entries_;
};

/// Attributes of `path`, following symlinks (stat(2)).
StatAwaitable stat(std::string_view path, Timeout timeout = {});
/// statx(2) of `path` relative to directory fd `dirfd` (AT_FDCWD: the working directory)
/// with AT_* `flags` (AT_SYMLINK_NOFOLLOW: the link itself; AT_EMPTY_PATH with "": dirfd).
StatAwaitable stat_at(int dirfd, std::string_view path, int flags, Timeout timeout = {});
/// rename(2): atomically replaces an existing `to` (a file, or an empty directory).
PathVoidAwaitable rename(std::string_view from, std::string_view to, Timeout timeout = {});
/// unlink(2) a file (EISDIR for a directory: use rmdir).
PathVoidAwaitable unlink(std::string_view path, Timeout timeout = {});
/// mkdir(2) with `mode` (less the umask). EEXIST if anything exists there.
PathVoidAwaitable mkdir(std::string_view path, mode_t mode = 0755, Timeout timeout = {});
/// rmdir(2) an empty directory (ENOTEMPTY otherwise, ENOTDIR for a file).
PathVoidAwaitable rmdir(std::string_view path, Timeout timeout = {});
/// Make a directory's entries durable (open it O_DIRECTORY, fsync, close): after creating,
/// renaming or unlinking in it, so the change survives a crash. Blocking pool everywhere.
PathVoidAwaitable sync_dir(std::string_view path, Timeout timeout = {});
/// The entries of directory `path` (not "." and ".."), sorted by name. Blocking pool everywhere.
ReadDirAwaitable read_dir(std::string_view path, Timeout timeout = {});
/// Open `path` without blocking the loop: File::open_async.
OpenAwaitable open(std::string_view path, int flags, mode_t mode = 0644, Timeout timeout = {});

}  // namespace fs
}  // namespace galay

// File (the result of open) completes this header; file.h includes this one.
#include "galay-kernel/fs/file.h"  // IWYU pragma: export
