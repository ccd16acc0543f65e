#include "galay-kernel/fs/fs_ops.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/sysmacros.h>  // makedev
#endif

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <new>
#include <utility>

#include "galay-kernel/fs/file.h"
#include "galay-kernel/io/ops/path_ops.h"
#include "galay-kernel/runtime/scheduler.h"

namespace galay {
namespace fs {
namespace {

#if defined(__linux__)
using RawStat = struct statx;
#else
using RawStat = struct stat;
#endif
static_assert(sizeof(RawStat) <= 256, "StatAwaitable::raw_ is too small");

}  // namespace

namespace detail {

std::int64_t check_path(std::string_view path) noexcept {
  if (path.find('\0') != std::string_view::npos) return -EINVAL;
  if (path.size() >= PATH_MAX) return -ENAMETOOLONG;  // no room for the terminating NUL
  return 0;
}

PathAwaitable::PathAwaitable(OpCode code, int dirfd, std::string_view path, Timeout timeout)
    : IoAwaitable(code, dirfd, timeout) {
  if (std::int64_t r = check_path(path); r != 0) {
    fail_before_submit(r);
    return;
  }
  path_.assign(path);
}

void PathAwaitable::set_second_path(std::string_view second) {
  if (failed_before_submit()) return;
  if (std::int64_t r = check_path(second); r != 0) {
    fail_before_submit(r);
    return;
  }
  path2_.assign(second);
}

void PathAwaitable::bind() noexcept {
  op_.path = path_.c_str();
  if (op_.code == OpCode::renameat) op_.new_path = path2_.c_str();
}

}  // namespace detail

// ---- awaitables: how each op is described, and what its result means ----

PathVoidAwaitable::PathVoidAwaitable(std::string_view from, std::string_view to, Timeout timeout)
    : detail::PathAwaitable(OpCode::renameat, AT_FDCWD, from, timeout) {
  op_.aux = AT_FDCWD;  // the new path's directory
  set_second_path(to);
}

StatAwaitable::StatAwaitable(int dirfd, std::string_view path, int flags, Timeout timeout)
    : detail::PathAwaitable(OpCode::statx, dirfd, path, timeout) {
  op_.aux = flags;
  op_.stat_buf = raw_;
}

Expected<FileStat> StatAwaitable::await_resume() const noexcept {
  if (op_.result < 0) return Unexpected(op_.error());
  RawStat raw;
  std::memcpy(&raw, raw_, sizeof(raw));
  FileStat st;
#if defined(__linux__)
  st.size = raw.stx_size;
  st.mode = raw.stx_mode & 07777;
  st.type = galay::detail::ops::file_type_of_mode(raw.stx_mode);
  st.mtime = std::chrono::sys_time<std::chrono::nanoseconds>(std::chrono::seconds(raw.stx_mtime.tv_sec) +
                                                             std::chrono::nanoseconds(raw.stx_mtime.tv_nsec));
  st.ino = raw.stx_ino;
  st.dev = makedev(raw.stx_dev_major, raw.stx_dev_minor);
  st.nlink = raw.stx_nlink;
  st.uid = raw.stx_uid;
  st.gid = raw.stx_gid;
#else
  st.size = static_cast<std::uint64_t>(raw.st_size);
  st.mode = static_cast<std::uint32_t>(raw.st_mode) & 07777;
  st.type = galay::detail::ops::file_type_of_mode(raw.st_mode);
#if defined(__APPLE__)
  const timespec& m = raw.st_mtimespec;
#else
  const timespec& m = raw.st_mtim;
#endif
  st.mtime = std::chrono::sys_time<std::chrono::nanoseconds>(std::chrono::seconds(m.tv_sec) +
                                                             std::chrono::nanoseconds(m.tv_nsec));
  st.ino = static_cast<std::uint64_t>(raw.st_ino);
  st.dev = static_cast<std::uint64_t>(raw.st_dev);
  st.nlink = static_cast<std::uint64_t>(raw.st_nlink);
  st.uid = raw.st_uid;
  st.gid = raw.st_gid;
#endif
  return st;
}

OpenAwaitable::OpenAwaitable(int dirfd, std::string_view path, int flags, mode_t mode, Timeout timeout)
    : detail::PathAwaitable(OpCode::openat, dirfd, path, timeout) {
  op_.aux = flags | O_CLOEXEC;
  op_.len = mode;
  op_.flags = op_result_is_fd;  // closed by the IoOp if nobody takes it
}

Expected<File> OpenAwaitable::await_resume() noexcept {
  if (op_.result < 0) return Unexpected(op_.error());
  op_.take_result();
  return File(static_cast<int>(op_.result), op_.sched);
}

ReadDirAwaitable::ReadDirAwaitable(std::string_view path, Timeout timeout)
    : detail::PathAwaitable(OpCode::read_dir, AT_FDCWD, path, timeout) {
  op_.dir_entries = &entries_;
}

Expected<std::vector<DirEntry>> ReadDirAwaitable::await_resume() noexcept {
  if (op_.result < 0) return Unexpected(op_.error());
  std::sort(entries_.begin(), entries_.end(), [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });
  return std::move(entries_);
}

// ---- the public functions ----

StatAwaitable stat(std::string_view path, Timeout timeout) { return StatAwaitable(AT_FDCWD, path, 0, timeout); }

StatAwaitable stat_at(int dirfd, std::string_view path, int flags, Timeout timeout) {
  return StatAwaitable(dirfd, path, flags, timeout);
}

PathVoidAwaitable rename(std::string_view from, std::string_view to, Timeout timeout) {
  return PathVoidAwaitable(from, to, timeout);
}

PathVoidAwaitable unlink(std::string_view path, Timeout timeout) {
  return PathVoidAwaitable(OpCode::unlinkat, AT_FDCWD, path, timeout);
}

PathVoidAwaitable mkdir(std::string_view path, mode_t mode, Timeout timeout) {
  PathVoidAwaitable a(OpCode::mkdirat, AT_FDCWD, path, timeout);
  a.op().aux = static_cast<int>(mode);
  return a;
}

PathVoidAwaitable rmdir(std::string_view path, Timeout timeout) {
  PathVoidAwaitable a(OpCode::unlinkat, AT_FDCWD, path, timeout);
  a.op().aux = AT_REMOVEDIR;
  return a;
}

PathVoidAwaitable sync_dir(std::string_view path, Timeout timeout) {
  return PathVoidAwaitable(OpCode::sync_dir, AT_FDCWD, path, timeout);
}

ReadDirAwaitable read_dir(std::string_view path, Timeout timeout) { return ReadDirAwaitable(path, timeout); }

OpenAwaitable open(std::string_view path, int flags, mode_t mode, Timeout timeout) {
  return OpenAwaitable(AT_FDCWD, path, flags, mode, timeout);
}

}  // namespace fs

// ---- File's awaitable open and stat ----

fs::OpenAwaitable File::open_async(std::string_view path, int flags, mode_t mode, Timeout timeout) {
  return fs::OpenAwaitable(AT_FDCWD, path, flags, mode, timeout);
}

fs::StatAwaitable File::stat(Timeout timeout) const {
  fs::StatAwaitable a(fd_, "", AT_EMPTY_PATH, timeout);
  if (fd_ < 0) a.fail_before_submit(-EBADF);
  return a;
}

}  // namespace galay
