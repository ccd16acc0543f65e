#include "galay-kernel/io/detail/readiness_engine.h"
#include "galay-kernel/io/detail/readiness_backend.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cstring>

#include "galay-kernel/runtime/detail/chaos.h"

namespace galay {
namespace {

bool is_read_side(OpCode c) noexcept {
  return c == OpCode::accept || c == OpCode::accept_multishot || c == OpCode::recv || c == OpCode::readv ||
         c == OpCode::poll_read || c == OpCode::recv_pooled || c == OpCode::recvmsg;
}
bool waits_for_write(OpCode c) noexcept { return c == OpCode::connect || !is_read_side(c); }

std::int64_t neg_errno() noexcept { return -static_cast<std::int64_t>(errno); }

// One datagram into a pool buffer, in the layout io_uring's multishot recvmsg uses
// (PooledDatagramHeader, the sender's address, the payload). Returns the bytes used, or -1.
ssize_t receive_datagram(int fd, std::byte* buf, std::size_t size) noexcept {
  iovec iov{buf + kPooledDatagramPayloadOffset, size - kPooledDatagramPayloadOffset};
  msghdr msg{};
  msg.msg_name = buf + sizeof(PooledDatagramHeader);
  msg.msg_namelen = kPooledDatagramNameSpace;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // MSG_TRUNC: the return value is the datagram's real length even when it did not fit.
  const ssize_t r = ::recvmsg(fd, &msg, MSG_TRUNC);
  if (r < 0) return -1;
  PooledDatagramHeader h{static_cast<std::uint32_t>(msg.msg_namelen), 0, static_cast<std::uint32_t>(r),
                         static_cast<std::uint32_t>(msg.msg_flags)};
  std::memcpy(buf, &h, sizeof(h));
  return static_cast<ssize_t>(kPooledDatagramPayloadOffset + std::min(static_cast<std::size_t>(r), iov.iov_len));
}

#if defined(MSG_NOSIGNAL)
constexpr int kNoSignal = MSG_NOSIGNAL;
#else
constexpr int kNoSignal = 0;  // Apple: sockets get SO_NOSIGPIPE when accepted or created
#endif

int accept_nonblocking(int fd, sockaddr* addr, socklen_t* len) noexcept {
#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__) || defined(__DragonFly__)
  return ::accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
  int s = ::accept(fd, addr, len);
  if (s >= 0) {
    ::fcntl(s, F_SETFL, ::fcntl(s, F_GETFL) | O_NONBLOCK);
    ::fcntl(s, F_SETFD, FD_CLOEXEC);
#if defined(SO_NOSIGPIPE)
    int one = 1;
    ::setsockopt(s, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
  }
  return s;
#endif
}

}  // namespace

ReadinessEngine::FdSlot& ReadinessEngine::slot(int fd) {
  const auto i = static_cast<std::size_t>(fd);
  if (i / kChunk >= chunks_.size()) chunks_.resize(i / kChunk + 1);
  auto& chunk = chunks_[i / kChunk];
  if (!chunk) chunk = std::make_unique<Chunk>();
  return (*chunk)[i % kChunk];
}

ReadinessEngine::FdSlot* ReadinessEngine::find_slot(int fd) noexcept {
  const auto i = static_cast<std::size_t>(fd);
  if (fd < 0 || i / kChunk >= chunks_.size() || !chunks_[i / kChunk]) return nullptr;
  return &(*chunks_[i / kChunk])[i % kChunk];
}

void ReadinessEngine::reset_slot(FdSlot& s) noexcept {
  while (MultishotState* st = s.attached.pop_front()) {
    st->closed = true;  // later awaits: EBADF, even once the number names another file
    if (st->kind == MultishotState::Kind::pooled_recv) {
      auto& rx = static_cast<PooledRecvState&>(*st);
      rx.pool->remove_starved(rx);
    }
  }
  s.registered = false;
  s.readable = s.writable = true;
  s.read_closed = false;
}

bool ReadinessEngine::start(IoOp& op) noexcept {
  if (op.fd < 0) {
    op.result = -EBADF;
    return false;
  }
  if (op.code == OpCode::recv_pooled || op.code == OpCode::accept_multishot) {
    auto& st = *static_cast<MultishotState*>(op.buf);
    if (st.closed) {  // its socket was closed: the number may name another file now
      op.result = -EBADF;
      return false;
    }
    if (st.backend == nullptr) {
      st.backend = static_cast<Backend*>(&owner_);
      slot(op.fd).attached.push_back(&st);
    }
  }
  switch (op.code) {
    case OpCode::close:
      op.result = close_now(op.fd);
      return false;
    case OpCode::connect: {
      if (::connect(op.fd, op.addr, op.addrlen) == 0) {
        op.result = 0;
        return false;
      }
      if (errno != EINPROGRESS) {
        op.result = neg_errno();
        return false;
      }
      FdSlot& s = slot(op.fd);
      s.writable = false;
      return park(op, s, s.writers);
    }
    case OpCode::accept:
    case OpCode::accept_multishot:
    case OpCode::recv:
    case OpCode::recv_pooled:
    case OpCode::recvmsg:
    case OpCode::sendmsg:
    case OpCode::send:
    case OpCode::readv:
    case OpCode::poll_read:
    case OpCode::poll_write: {
      FdSlot& s = slot(op.fd);
      const bool read_side = is_read_side(op.code);
      WaitList& list = read_side ? s.readers : s.writers;
      // Earlier waiters go first; otherwise try the syscall unless we know it would block.
      if (list.empty() && (read_side ? s.readable : s.writable)) {
        std::int64_t r = perform(op, s);
        if (r != -EAGAIN) {
          op.result = r;
          return false;
        }
      }
      return park(op, s, list);
    }
    default:
      op.result = -EOPNOTSUPP;
      return false;
  }
}

bool ReadinessEngine::park(IoOp& op, FdSlot& s, WaitList& list) noexcept {
  if (!s.registered) {
    // Registering reports the fd's current state, so readiness that arrived after our
    // EAGAIN is not lost.
    if (int r = owner_.register_fd(op.fd); r < 0) {
      op.result = r;  // e.g. EPERM for a regular file, EBADF for a stale fd
      return false;
    }
    s.registered = true;
  }
  list.push_back(&op);
  ++pending_;
  return true;
}

bool ReadinessEngine::unpark(IoOp& op) noexcept {
  FdSlot* s = op.state == OpState::pending ? find_slot(op.fd) : nullptr;
  if (s == nullptr) return false;
  WaitList& list = waits_for_write(op.code) ? s->writers : s->readers;
  for (IoOp* p = list.front(); p; p = WaitList::next(p)) {
    if (p == &op) {
      list.remove(&op);
      --pending_;
      return true;
    }
  }
  return false;
}

void ReadinessEngine::cancel(IoOp& op) noexcept {
  if (chaos::race_cancel() && op.state == OpState::pending) {
    // Chaos: the operation gets one more try first, as if its readiness had arrived in
    // the same turn as the cancel; if that finishes it, the real result wins (io_uring's
    // behaviour when the kernel completes an op before its cancel).
    if (FdSlot* s = find_slot(op.fd)) {
      const std::int64_t r = perform(op, *s);
      if (r != -EAGAIN && unpark(op)) {
        op.complete(r);
        return;
      }
    }
  }
  if (unpark(op)) op.complete(-static_cast<std::int64_t>(op.cancel_reason()));
}

void ReadinessEngine::finish(IoOp& op, std::int64_t result) noexcept {
  --pending_;
  op.complete(result);
}

std::int64_t ReadinessEngine::close_now(int fd) noexcept {
  if (FdSlot* s = find_slot(fd)) {
    while (IoOp* op = s->readers.pop_front()) finish(*op, -ECANCELED);
    while (IoOp* op = s->writers.pop_front()) finish(*op, -ECANCELED);
    reset_slot(*s);
  }
  // No explicit deregistration: closing the last reference removes it in both epoll and
  // kqueue.
  const std::int64_t r = ::close(fd) == 0 ? 0 : neg_errno();
  chaos::after_close(&sched_, fd);
  return r;
}

void ReadinessEngine::cancel_all() noexcept {
  for (auto& chunk : chunks_) {
    if (!chunk) continue;
    for (FdSlot& s : *chunk) {
      while (IoOp* op = s.readers.pop_front()) finish(*op, -ECANCELED);
      while (IoOp* op = s.writers.pop_front()) finish(*op, -ECANCELED);
    }
  }
}

std::int64_t ReadinessEngine::perform(IoOp& op, FdSlot& s) noexcept {
  for (;;) {
    ssize_t r;
    switch (op.code) {
      case OpCode::accept:
      case OpCode::accept_multishot: {  // one accept per await here; the kernel queue is the backlog
        socklen_t* lenp = op.addr ? &op.addrlen : nullptr;
        r = accept_nonblocking(op.fd, op.addr, lenp);
        if (r >= 0) {
          // A fresh fd number: whatever we knew about an older file with this number is void.
          reset_slot(slot(static_cast<int>(r)));
          return r;
        }
        break;
      }
      case OpCode::recv: {
        const std::size_t want = chaos::clamp(op.len);
        r = ::recv(op.fd, op.buf, want, 0);
        if (r >= 0) {
          // Fewer bytes than asked for: the socket buffer is drained (for a stream).
          if ((op.flags & op_stream) && r > 0 && static_cast<std::size_t>(r) < want && !s.read_closed)
            s.readable = false;
          return r;
        }
        break;
      }
      case OpCode::readv:
        r = ::readv(op.fd, op.iov, op.iovcnt);
        if (r >= 0) return r;
        break;
      case OpCode::recvmsg:
        r = ::recvmsg(op.fd, op.msg, op.aux);
        if (r >= 0) return r;
        break;
      case OpCode::sendmsg:
        r = ::sendmsg(op.fd, op.msg, kNoSignal);
        if (r >= 0) return r;
        break;
      case OpCode::recv_pooled: {
        auto& st = *static_cast<PooledRecvState*>(op.buf);
        if (st.held >= st.max_held) {
          // Its share of the pool is used up: wait (parked) until its caller drops chunks;
          // the data stays in the socket, so TCP pushes back on the peer.
          st.capped = true;
          return -EAGAIN;
        }
        std::uint16_t id;
        if (!st.pool->pop_free(id)) {
          // Pool dry: wait (still parked as a reader) until recycle() hands a buffer back.
          st.pool->add_starved(st);
          return -EAGAIN;
        }
        if (st.datagram) {
          r = receive_datagram(op.fd, st.pool->buffer(id), st.pool->buffer_size());
          if (r >= 0) {
            st.pool->take(id, st);
            op.aux = id;
            return r;
          }
          st.pool->push_free(id);
          break;
        }
        const std::size_t want = chaos::clamp(st.pool->buffer_size());
        r = ::recv(op.fd, st.pool->buffer(id), want, 0);
        if (r > 0) {
          if (static_cast<std::size_t>(r) < want && !s.read_closed) s.readable = false;
          st.pool->take(id, st);
          op.aux = id;
          return r;
        }
        st.pool->push_free(id);
        if (r == 0) {
          op.aux = -1;
          return 0;
        }
        break;
      }
      case OpCode::send: {
        auto* base = static_cast<const char*>(op.buf);
        const std::size_t want = chaos::clamp(op.len - op.done_bytes);
        r = ::send(op.fd, base + op.done_bytes, want, kNoSignal);
        if (r >= 0) {
          op.done_bytes += static_cast<std::size_t>(r);
          if (!(op.flags & op_all) || op.done_bytes == op.len) return static_cast<std::int64_t>(op.done_bytes);
          if ((op.flags & op_stream) && static_cast<std::size_t>(r) < want) {  // short write: send buffer full
            s.writable = false;
            return -EAGAIN;
          }
          continue;
        }
        break;
      }
      case OpCode::connect: {
        int err = 0;
        socklen_t len = sizeof(err);
        if (::getsockopt(op.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return neg_errno();
        if (err == EINPROGRESS || err == EALREADY) return -EAGAIN;
        return -static_cast<std::int64_t>(err);
      }
      case OpCode::poll_read:
      case OpCode::poll_write: {
        pollfd p{op.fd, static_cast<short>(op.code == OpCode::poll_read ? POLLIN : POLLOUT), 0};
        r = ::poll(&p, 1, 0);
        if (r > 0) return (p.revents & POLLNVAL) ? -EBADF : 0;
        if (r == 0) {
          (op.code == OpCode::poll_read ? s.readable : s.writable) = false;
          return -EAGAIN;
        }
        break;
      }
      default:
        return -EOPNOTSUPP;
    }
    // r < 0
    int e = errno;
    if (e == EINTR) continue;
    if (e == EAGAIN || e == EWOULDBLOCK) {
      (is_read_side(op.code) ? s.readable : s.writable) = false;
      return -EAGAIN;
    }
    return -static_cast<std::int64_t>(e);
  }
}

void ReadinessEngine::drive(FdSlot& s, WaitList& list) noexcept {
  while (IoOp* op = list.front()) {
    std::int64_t r = perform(*op, s);
    if (r == -EAGAIN) break;
    list.remove(op);
    finish(*op, r);
  }
}

std::error_code ReadinessEngine::attach_pool(BufferPool& pool) {
  for (unsigned i = pool.count(); i-- > 0;) pool.push_free(static_cast<std::uint16_t>(i));
  return {};
}

void ReadinessEngine::recycle(BufferPool& pool, std::uint16_t id, PooledRecvState* owner) noexcept {
  pool.push_free(id);
  kick_scratch_.clear();
  // A receiver stopped at its limit may receive again once its caller dropped half of it.
  if (owner != nullptr && owner->capped && owner->held <= owner->max_held / 2 && !owner->closed) {
    owner->capped = false;
    kick_scratch_.push_back(owner->fd);
  }
  // Starved receivers retry, those holding nothing first, no more than there are free
  // buffers: one that finds no data gives its buffer back, one that finds the pool dry
  // again re-joins the starved list.
  starved_scratch_.clear();
  pool.take_starved(starved_scratch_, pool.available());
  for (PooledRecvState* st : starved_scratch_) kick_scratch_.push_back(st->fd);
  for (int fd : kick_scratch_) on_ready(fd, true, false, false);
}

void ReadinessEngine::release_multishot(MultishotState& st) noexcept {
  if (st.backend != nullptr && !st.closed) {
    if (FdSlot* s = find_slot(st.fd)) s->attached.remove(&st);
  }
  st.closed = true;  // nothing may kick it from here on
  // Nothing is armed in the kernel here; a receiver may only sit on its pool's starved list.
  if (st.kind == MultishotState::Kind::pooled_recv) {
    auto& rx = static_cast<PooledRecvState&>(st);
    rx.pool->remove_starved(rx);
  }
}

void ReadinessEngine::on_ready(int fd, bool readable, bool writable, bool peer_closed) noexcept {
  FdSlot* sp = find_slot(fd);
  if (sp == nullptr || !sp->registered) return;  // stale event for a closed fd
  FdSlot& s = *sp;
  if (peer_closed) s.read_closed = true;
  if (readable || peer_closed) {
    s.readable = true;
    drive(s, s.readers);
  }
  if (writable) {
    s.writable = true;
    drive(s, s.writers);
  }
}

}  // namespace galay
