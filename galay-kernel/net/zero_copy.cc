#include "galay-kernel/net/zero_copy.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/sendfile.h>
#endif

#include <algorithm>
#include <cerrno>
#include <memory>

namespace galay {

namespace {

// One chunk per syscall: large enough to amortise it, small enough that one connection's
// big file does not hold the loop for long (sendfile copies inside the kernel).
constexpr std::size_t kChunk = 1u << 20;

// Bytes to send: `count`, or the rest of the file when `count` is 0.
Expected<std::size_t> resolve_count(int file_fd, off_t offset, std::size_t count) {
  if (offset < 0) return make_error(std::make_error_code(std::errc::invalid_argument));
  struct stat st {};
  if (::fstat(file_fd, &st) != 0) return errno_error(errno);
  if (count != 0) return count;
  if (!S_ISREG(st.st_mode))
    return make_error(std::make_error_code(std::errc::invalid_argument));  // "to EOF" needs a size
  return st.st_size > offset ? static_cast<std::size_t>(st.st_size - offset) : 0;
}

#if defined(__linux__)
// Run `call` (a sendfile or splice into a socket: neither takes MSG_NOSIGNAL) with SIGPIPE
// blocked on this thread, and consume the SIGPIPE it raised before unblocking, so a reset
// or shut-down peer is an EPIPE value, never a signal. A SIGPIPE that was already pending
// stays pending. Two extra syscalls per call, which moves up to a chunk (1 MiB).
template <class Call>
ssize_t without_sigpipe(Call call) noexcept {
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  sigset_t pending;
  sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  sigset_t old;
  pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  const ssize_t n = call();
  const int saved = errno;
  if (n < 0 && saved == EPIPE && !was_pending) {
    const timespec zero{0, 0};
    while (sigtimedwait(&pipe_only, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = saved;
  return n;
}
#endif

}  // namespace

Task<Expected<std::size_t>> send_file(StreamSocket& socket, int file_fd, off_t offset, std::size_t count,
                                      Timeout timeout) {
  auto total = resolve_count(file_fd, offset, count);
  if (!total) co_return make_error(total.error());
  if (!socket.is_open()) co_return make_error(std::make_error_code(std::errc::bad_file_descriptor));
  const int sock_fd = socket.native_handle();
  std::size_t sent = 0;
#if defined(__linux__)
  off_t pos = offset;
  while (sent < *total) {
    const ssize_t n =
        without_sigpipe([&] { return ::sendfile(sock_fd, file_fd, &pos, std::min(*total - sent, kChunk)); });
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n == 0) break;  // the file is shorter than promised
    const int e = errno;
    if (e == EINTR) continue;
    if (e != EAGAIN) co_return errno_error(e);
    if (auto ready = co_await socket.wait_writable(timeout); !ready) co_return make_error(ready.error());
  }
#else
  std::unique_ptr<std::byte[]> buf(new std::byte[64 * 1024]);
  while (sent < *total) {
    const ssize_t n =
        ::pread(file_fd, buf.get(), std::min<std::size_t>(*total - sent, 64 * 1024), offset + static_cast<off_t>(sent));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) co_return errno_error(errno);
    if (n == 0) break;
    auto w = co_await socket.send_all(buf.get(), static_cast<std::size_t>(n), timeout);
    if (!w) co_return make_error(w.error());
    sent += static_cast<std::size_t>(n);
  }
#endif
  co_return sent;
}

namespace {

// Where splice_between() moves bytes to: a socket it may have to wait for, or a file at an
// offset (which never returns EAGAIN).
struct SpliceTarget {
  StreamSocket* socket = nullptr;
  int file_fd = -1;
  off_t offset = 0;
};

#if defined(__linux__)
// Owns the two ends of the pipe the bytes go through.
struct Pipe {
  int fds[2] = {-1, -1};
  ~Pipe() {
    for (int fd : fds)
      if (fd >= 0) ::close(fd);
  }
};
#endif

Task<Expected<std::size_t>> splice_between(StreamSocket& from, SpliceTarget to, std::size_t count, Timeout timeout) {
  if (!from.is_open() || (to.socket != nullptr && !to.socket->is_open()) || (to.socket == nullptr && to.file_fd < 0))
    co_return make_error(std::make_error_code(std::errc::bad_file_descriptor));
  if (to.socket == nullptr && to.offset < 0) co_return make_error(std::make_error_code(std::errc::invalid_argument));
  const bool until_eof = count == 0;
  std::size_t moved = 0;
#if defined(__linux__)
  Pipe pipe;
  if (::pipe2(pipe.fds, O_NONBLOCK | O_CLOEXEC) != 0) co_return errno_error(errno);
  // A bigger pipe means fewer trips through the loop; the default maximum for an
  // unprivileged process is 1 MiB, and a refusal just leaves the 64 KiB default.
  ::fcntl(pipe.fds[1], F_SETPIPE_SZ, static_cast<int>(kChunk));
  const int got_size = ::fcntl(pipe.fds[1], F_GETPIPE_SZ);
  const std::size_t pipe_size = got_size > 0 ? static_cast<std::size_t>(got_size) : 65536;
  const int in_fd = from.native_handle();
  const int out_fd = to.socket != nullptr ? to.socket->native_handle() : to.file_fd;
  loff_t out_offset = to.offset;
  std::size_t in_pipe = 0;
  bool eof = false;
  for (;;) {
    const std::size_t wanted = until_eof ? pipe_size : count - moved - in_pipe;
    // Fill the pipe from the source while it has room and more is wanted.
    if (!eof && in_pipe < pipe_size && wanted > 0) {
      const ssize_t n = ::splice(in_fd, nullptr, pipe.fds[1], nullptr, std::min(pipe_size - in_pipe, wanted),
                                 SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        in_pipe += static_cast<std::size_t>(n);
      } else if (n == 0) {
        eof = true;
      } else if (errno == EAGAIN) {
        if (in_pipe == 0) {  // nothing to drain meanwhile: wait for the source
          if (auto ready = co_await from.wait_readable(timeout); !ready) co_return make_error(ready.error());
          continue;
        }
      } else if (errno != EINTR) {
        co_return errno_error(errno);
      }
    }
    // Drain the pipe into the target.
    if (in_pipe > 0) {
      const ssize_t n = without_sigpipe([&] {
        return ::splice(pipe.fds[0], nullptr, out_fd, to.socket != nullptr ? nullptr : &out_offset, in_pipe,
                        SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      });
      if (n > 0) {
        in_pipe -= static_cast<std::size_t>(n);
        moved += static_cast<std::size_t>(n);
      } else if (n < 0 && errno == EAGAIN && to.socket != nullptr) {
        if (auto ready = co_await to.socket->wait_writable(timeout); !ready) co_return make_error(ready.error());
      } else if (n < 0 && errno != EINTR) {
        co_return errno_error(errno);
      } else if (n == 0) {
        co_return make_error(std::make_error_code(std::errc::no_space_on_device));  // a file that takes nothing
      }
    }
    if (in_pipe == 0 && (eof || (!until_eof && moved == count))) break;
  }
#else
  std::unique_ptr<std::byte[]> buf(new std::byte[64 * 1024]);
  while (until_eof || moved < count) {
    const std::size_t want = until_eof ? 64 * 1024 : std::min<std::size_t>(count - moved, 64 * 1024);
    auto n = co_await from.recv(buf.get(), want, timeout);
    if (!n) co_return make_error(n.error());
    if (*n == 0) break;
    if (to.socket != nullptr) {
      auto w = co_await to.socket->send_all(buf.get(), *n, timeout);
      if (!w) co_return make_error(w.error());
    } else {
      for (std::size_t done = 0; done < *n;) {
        const ssize_t w =
            ::pwrite(to.file_fd, buf.get() + done, *n - done, to.offset + static_cast<off_t>(moved + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) co_return errno_error(w < 0 ? errno : ENOSPC);
        done += static_cast<std::size_t>(w);
      }
    }
    moved += *n;
  }
#endif
  co_return moved;
}

}  // namespace

Task<Expected<std::size_t>> splice_stream(StreamSocket& from, StreamSocket& to, std::size_t count, Timeout timeout) {
  return splice_between(from, SpliceTarget{&to, -1, 0}, count, timeout);
}

Task<Expected<std::size_t>> splice_to_file(StreamSocket& from, int file_fd, off_t offset, std::size_t count,
                                           Timeout timeout) {
  return splice_between(from, SpliceTarget{nullptr, file_fd, offset}, count, timeout);
}

}  // namespace galay
