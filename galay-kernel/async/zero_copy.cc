#include "galay-kernel/async/zero_copy.h"

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
    const ssize_t n = ::sendfile(sock_fd, file_fd, &pos, std::min(*total - sent, kChunk));
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

}  // namespace galay
