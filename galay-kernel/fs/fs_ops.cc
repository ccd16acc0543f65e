#include "galay-kernel/fs/fs_ops.h"

#include <dirent.h>
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
#include "galay-kernel/runtime/detail/blocking_pool.h"
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

std::int64_t sys(long r) noexcept { return r < 0 ? -static_cast<std::int64_t>(errno) : r; }

FileType type_of_mode(unsigned mode) noexcept {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return FileType::regular;
    case S_IFDIR:
      return FileType::directory;
    case S_IFLNK:
      return FileType::symlink;
    case S_IFBLK:
      return FileType::block;
    case S_IFCHR:
      return FileType::character;
    case S_IFIFO:
      return FileType::fifo;
    case S_IFSOCK:
      return FileType::socket;
    default:
      return FileType::unknown;
  }
}

FileType type_of_dirent(unsigned char d_type) noexcept {
  switch (d_type) {
    case DT_REG:
      return FileType::regular;
    case DT_DIR:
      return FileType::directory;
    case DT_LNK:
      return FileType::symlink;
    case DT_BLK:
      return FileType::block;
    case DT_CHR:
      return FileType::character;
    case DT_FIFO:
      return FileType::fifo;
    case DT_SOCK:
      return FileType::socket;
    default:
      return FileType::unknown;
  }
}

const char* path_of(const IoOp& op) noexcept { return op.path; }

// open(O_DIRECTORY), retrying EINTR: the fd or -errno.
int open_dir(const char* path) noexcept {
  int fd;
  do {
    fd = ::open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  return fd < 0 ? -errno : fd;
}

std::int64_t list_dir(const char* path, std::vector<DirEntry>& out) noexcept {
  const int fd = open_dir(path);
  if (fd < 0) return fd;
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    const int err = errno;
    ::close(fd);
    return -err;
  }
  std::int64_t result = 0;
  try {
    for (;;) {
      errno = 0;
      const dirent* e = ::readdir(d);
      if (e == nullptr) {
        if (errno != 0) result = -errno;
        break;
      }
      const std::string_view name(e->d_name);
      if (name == "." || name == "..") continue;
      FileType type = type_of_dirent(e->d_type);
      if (type == FileType::unknown) {  // the filesystem doesn't say: ask (the link itself)
        struct stat st {};
        if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) type = type_of_mode(st.st_mode);
      }
      out.push_back(DirEntry{std::string(name), type});
    }
  } catch (const std::bad_alloc&) {
    result = -ENOMEM;
  }
  ::closedir(d);
  if (result < 0) return result;
  return static_cast<std::int64_t>(out.size());
}

}  // namespace

// ---- the pool's half of each path op (BlockingPool::perform) ----

}  // namespace fs

namespace detail {

std::int64_t perform_path_op(const IoOp& op) noexcept {
  const char* path = fs::path_of(op);
  for (;;) {
    std::int64_t r;
    switch (op.code) {
      case OpCode::openat:
        r = fs::sys(::openat(op.fd, path, op.aux, static_cast<mode_t>(op.len)));
        break;
      case OpCode::statx:
#if defined(__linux__)
        r = fs::sys(::statx(op.fd, path, op.aux, STATX_BASIC_STATS, static_cast<struct statx*>(op.path_arg)));
#else
        r = fs::sys(::fstatat(op.fd, path, static_cast<struct stat*>(op.path_arg), op.aux));
#endif
        break;
      case OpCode::renameat:
        r = fs::sys(::renameat(op.fd, path, op.aux, static_cast<const char*>(op.path_arg)));
        break;
      case OpCode::unlinkat:
        r = fs::sys(::unlinkat(op.fd, path, op.aux));
        break;
      case OpCode::mkdirat:
        r = fs::sys(::mkdirat(op.fd, path, static_cast<mode_t>(op.aux)));
        break;
      case OpCode::sync_dir: {
        const int fd = fs::open_dir(path);
        if (fd < 0) return fd;
        do {
          r = fs::sys(::fsync(fd));
        } while (r == -EINTR);
        ::close(fd);
        return r;
      }
      case OpCode::read_dir: {
        auto& out = *static_cast<std::vector<fs::DirEntry>*>(op.path_arg);
        out.clear();
        return fs::list_dir(path, out);
      }
      default:
        return -EOPNOTSUPP;
    }
    if (r != -EINTR) return r;
  }
}

}  // namespace detail

namespace fs {
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
  op_.path_arg = out_ != nullptr ? out_ : static_cast<void*>(const_cast<char*>(path2_.c_str()));
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
  out_ = raw_;
}

Expected<FileStat> StatAwaitable::await_resume() const noexcept {
  if (op_.result < 0) return Unexpected(op_.error());
  RawStat raw;
  std::memcpy(&raw, raw_, sizeof(raw));
  FileStat st;
#if defined(__linux__)
  st.size = raw.stx_size;
  st.mode = raw.stx_mode & 07777;
  st.type = type_of_mode(raw.stx_mode);
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
  st.type = type_of_mode(raw.st_mode);
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
  out_ = &entries_;
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
