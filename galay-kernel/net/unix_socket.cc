#include "galay-kernel/net/unix_socket.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "galay-kernel/runtime/scheduler.h"

namespace galay {

Expected<UnixAddress> UnixAddress::parse(std::string_view name) {
  UnixAddress a;
  a.addr_.sun_family = AF_UNIX;
  if (name.empty()) return errno_error(EINVAL);
  const bool abstract = name.front() == '@';
  // Filesystem names need room for the terminating NUL; abstract ones start with a NUL.
  if (name.size() + (abstract ? 0 : 1) > sizeof(a.addr_.sun_path)) return errno_error(ENAMETOOLONG);
#if !defined(__linux__)
  if (abstract) return errno_error(EAFNOSUPPORT);
#endif
  std::memcpy(a.addr_.sun_path, name.data(), name.size());
  if (abstract) a.addr_.sun_path[0] = '\0';
  a.len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + (abstract ? 0 : 1));
  a.abstract_ = abstract;
  a.name_ = std::string(name);
  return a;
}

Expected<UnixStream> UnixAcceptAwaitable::await_resume() noexcept {
  if (op_.result < 0) return Unexpected(op_.error());
  op_.take_result();
  return UnixStream(static_cast<int>(op_.result), Scheduler::current());
}

SendFdsAwaitable::SendFdsAwaitable(int fd, std::span<const std::byte> data, std::span<const int> fds,
                                   Timeout t) noexcept
    : IoAwaitable(OpCode::sendmsg, fd, t), data_(data), nfds_(std::min(fds.size(), kMaxPassedFds)) {
  std::copy_n(fds.begin(), nfds_, fds_);
  too_many_ = fds.size() > kMaxPassedFds;
}

void SendFdsAwaitable::prepare() noexcept {
  if (nfds_ == 0) {
    hdr_.bind(op_, const_cast<std::byte*>(data_.data()), data_.size());
    return;
  }
  std::memset(control_, 0, sizeof(control_));
  hdr_.bind(op_, const_cast<std::byte*>(data_.data()), data_.size(), nullptr, 0, control_,
            CMSG_SPACE(sizeof(int) * nfds_));
  cmsghdr* c = CMSG_FIRSTHDR(&hdr_.msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * nfds_);
  std::memcpy(CMSG_DATA(c), fds_, sizeof(int) * nfds_);
}

void RecvFdsAwaitable::prepare() noexcept {
  hdr_.bind(op_, buf_.data(), buf_.size(), nullptr, 0, control_, sizeof(control_));
}

Expected<ReceivedFds> RecvFdsAwaitable::await_resume() noexcept {
  if (op_.result < 0) return Unexpected(op_.error());
  op_.take_result();
  ReceivedFds r;
  r.bytes = static_cast<std::size_t>(op_.result);
  r.truncated = (hdr_.msg.msg_flags & MSG_CTRUNC) != 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&hdr_.msg); c != nullptr; c = CMSG_NXTHDR(&hdr_.msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int got[kMaxPassedFds];
    std::memcpy(got, CMSG_DATA(c), sizeof(int) * std::min(n, kMaxPassedFds));
    for (std::size_t i = 0; i < std::min(n, kMaxPassedFds); ++i) {
      if (r.fd_count < out_.size()) {
        out_[r.fd_count++] = got[i];
      } else {
        ::close(got[i]);  // no room for it in the caller's array: never leak it
        r.truncated = true;
      }
    }
  }
  return r;
}

void detail::SocketFile::remove() noexcept {
  if (!path_.empty()) ::unlink(path_.c_str());
  path_.clear();
}

Expected<UnixStream> UnixStream::open() {
  int fd = open_fd(AF_UNIX, SOCK_STREAM);
  if (fd < 0) return errno_error(-fd);
  return UnixStream(fd, Scheduler::current());
}

Expected<UnixStream> UnixStream::listen_on(const UnixAddress& addr, int backlog) {
  auto s = open();
  if (!s) return s;
  if (::bind(s->fd_, addr.data(), addr.size()) < 0) return errno_error(errno);
  if (!addr.is_abstract()) s->file_.own(addr.name());  // we created the file
  if (auto r = s->listen(backlog); !r) return Unexpected(r.error());
  return s;
}

Expected<std::pair<UnixStream, UnixStream>> UnixStream::pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) return errno_error(errno);
  Scheduler* s = Scheduler::current();
  return std::pair<UnixStream, UnixStream>(UnixStream(fds[0], s), UnixStream(fds[1], s));
}

Expected<UnixStream> UnixStream::adopt(int fd) {
  if (fd < 0) return errno_error(EBADF);
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return errno_error(errno);
  return UnixStream(fd, Scheduler::current());
}

VoidAwaitable UnixStream::close() noexcept {
  file_.remove();
  return Socket::close();
}

// ---- UnixDatagram ----

UnixSendToAwaitable::UnixSendToAwaitable(int fd, std::span<const std::byte> buf, const UnixAddress& to,
                                         Timeout t) noexcept
    : IoAwaitable(OpCode::sendmsg, fd, t), buf_(buf), to_len_(to.size()) {
  std::memcpy(&to_, to.data(), static_cast<std::size_t>(to.size()));
}

void UnixSendToAwaitable::prepare() noexcept {
  hdr_.bind(op_, const_cast<std::byte*>(buf_.data()), buf_.size(), &to_, to_len_);
}

Expected<UnixDatagram> UnixDatagram::open() {
  int fd = open_fd(AF_UNIX, SOCK_DGRAM);
  if (fd < 0) return errno_error(-fd);
  return UnixDatagram(fd, Scheduler::current());
}

Expected<UnixDatagram> UnixDatagram::bind_to(const UnixAddress& addr) {
  auto s = open();
  if (!s) return s;
  if (::bind(s->fd_, addr.data(), addr.size()) < 0) return errno_error(errno);
  if (!addr.is_abstract()) s->file_.own(addr.name());  // we created the file
  return s;
}

Expected<std::pair<UnixDatagram, UnixDatagram>> UnixDatagram::pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) return errno_error(errno);
  Scheduler* s = Scheduler::current();
  return std::pair<UnixDatagram, UnixDatagram>(UnixDatagram(fds[0], s), UnixDatagram(fds[1], s));
}

Expected<void> UnixDatagram::connect(const UnixAddress& peer) {
  if (!is_open()) return errno_error(EBADF);
  if (::connect(fd_, peer.data(), peer.size()) < 0) return errno_error(errno);
  return {};
}

VoidAwaitable UnixDatagram::close() noexcept {
  file_.remove();
  return Socket::close();
}

}  // namespace galay
