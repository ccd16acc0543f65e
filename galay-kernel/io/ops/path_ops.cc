#include "galay-kernel/io/ops/path_ops.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(GALAY_HAVE_IO_URING)
#include <liburing.h>
#endif

#include <cerrno>
#include <new>
#include <string>
#include <string_view>

namespace galay::detail::ops {

fs::FileType file_type_of_mode(unsigned mode) noexcept {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return fs::FileType::regular;
    case S_IFDIR:
      return fs::FileType::directory;
    case S_IFLNK:
      return fs::FileType::symlink;
    case S_IFBLK:
      return fs::FileType::block;
    case S_IFCHR:
      return fs::FileType::character;
    case S_IFIFO:
      return fs::FileType::fifo;
    case S_IFSOCK:
      return fs::FileType::socket;
    default:
      return fs::FileType::unknown;
  }
}

namespace {

fs::FileType type_of_dirent(unsigned char d_type) noexcept {
  switch (d_type) {
    case DT_REG:
      return fs::FileType::regular;
    case DT_DIR:
      return fs::FileType::directory;
    case DT_LNK:
      return fs::FileType::symlink;
    case DT_BLK:
      return fs::FileType::block;
    case DT_CHR:
      return fs::FileType::character;
    case DT_FIFO:
      return fs::FileType::fifo;
    case DT_SOCK:
      return fs::FileType::socket;
    default:
      return fs::FileType::unknown;
  }
}

// open(O_DIRECTORY), retrying EINTR: the fd or -errno.
int open_dir(const char* path) noexcept {
  int fd;
  do {
    fd = ::open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  return fd < 0 ? -errno : fd;
}

std::int64_t list_dir(const char* path, std::vector<fs::DirEntry>& out) noexcept {
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
      fs::FileType type = type_of_dirent(e->d_type);
      if (type == fs::FileType::unknown) {  // the filesystem doesn't say: ask (the link itself)
        struct stat st {};
        if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) type = file_type_of_mode(st.st_mode);
      }
      out.push_back(fs::DirEntry{std::string(name), type});
    }
  } catch (const std::bad_alloc&) {
    result = -ENOMEM;
  }
  ::closedir(d);
  if (result < 0) return result;
  return static_cast<std::int64_t>(out.size());
}

}  // namespace

// ---- openat ----
#if defined(GALAY_HAVE_IO_URING)
void OpenAt::prep(io_uring_sqe* sqe, IoOp& op) noexcept {
  io_uring_prep_openat(sqe, op.fd, op.path, op.aux, static_cast<mode_t>(op.len));
}
#endif
std::int64_t OpenAt::blocking(IoOp& op) noexcept {
  return retry_eintr([&] { return ::openat(op.fd, op.path, op.aux, static_cast<mode_t>(op.len)); });
}

// ---- statx ----
#if defined(GALAY_HAVE_IO_URING)
void Statx::prep(io_uring_sqe* sqe, IoOp& op) noexcept {
  io_uring_prep_statx(sqe, op.fd, op.path, op.aux, STATX_BASIC_STATS, static_cast<struct statx*>(op.stat_buf));
}
#endif
std::int64_t Statx::blocking(IoOp& op) noexcept {
#if defined(__linux__)
  return retry_eintr(
      [&] { return ::statx(op.fd, op.path, op.aux, STATX_BASIC_STATS, static_cast<struct statx*>(op.stat_buf)); });
#else
  return retry_eintr([&] { return ::fstatat(op.fd, op.path, static_cast<struct stat*>(op.stat_buf), op.aux); });
#endif
}

// ---- renameat ----
#if defined(GALAY_HAVE_IO_URING)
void RenameAt::prep(io_uring_sqe* sqe, IoOp& op) noexcept {
  io_uring_prep_renameat(sqe, op.fd, op.path, op.aux, op.new_path, 0);
}
#endif
std::int64_t RenameAt::blocking(IoOp& op) noexcept {
  return retry_eintr([&] { return ::renameat(op.fd, op.path, op.aux, op.new_path); });
}

// ---- unlinkat ----
#if defined(GALAY_HAVE_IO_URING)
void UnlinkAt::prep(io_uring_sqe* sqe, IoOp& op) noexcept { io_uring_prep_unlinkat(sqe, op.fd, op.path, op.aux); }
#endif
std::int64_t UnlinkAt::blocking(IoOp& op) noexcept {
  return retry_eintr([&] { return ::unlinkat(op.fd, op.path, op.aux); });
}

// ---- mkdirat ----
#if defined(GALAY_HAVE_IO_URING)
void MkdirAt::prep(io_uring_sqe* sqe, IoOp& op) noexcept {
  io_uring_prep_mkdirat(sqe, op.fd, op.path, static_cast<mode_t>(op.aux));
}
#endif
std::int64_t MkdirAt::blocking(IoOp& op) noexcept {
  return retry_eintr([&] { return ::mkdirat(op.fd, op.path, static_cast<mode_t>(op.aux)); });
}

// ---- sync_dir, read_dir ----
std::int64_t SyncDir::blocking(IoOp& op) noexcept {
  const int fd = open_dir(op.path);
  if (fd < 0) return fd;
  const std::int64_t r = retry_eintr([&] { return ::fsync(fd); });
  ::close(fd);
  return r;
}

std::int64_t ReadDir::blocking(IoOp& op) noexcept {
  auto& out = *op.dir_entries;
  out.clear();
  return list_dir(op.path, out);
}

}  // namespace galay::detail::ops
