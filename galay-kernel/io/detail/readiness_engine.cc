#include "galay-kernel/io/detail/readiness_engine.h"
#include "galay-kernel/io/detail/readiness_backend.h"

#include <unistd.h>

#include <cerrno>

#include "galay-kernel/io/ops/op_kind.h"
#include "galay-kernel/runtime/detail/chaos.h"

namespace galay {
namespace {

// The list an op of this kind waits in: readers for read_side, writers otherwise.
bool waits_on_readers(const detail::OpKind& k) noexcept { return k.route == detail::ReadinessRoute::read_side; }

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
    auto& st = *op.multishot;
    if (st.closed) {  // its socket was closed: the number may name another file now
      op.result = -EBADF;
      return false;
    }
    if (st.backend == nullptr) {
      st.backend = static_cast<Backend*>(&owner_);
      slot(op.fd).attached.push_back(&st);
    }
  }
  const detail::OpKind& kind = detail::op_kind(op.code);
  switch (kind.route) {
    case detail::ReadinessRoute::close:
      op.result = close_now(op.fd);
      return false;
    case detail::ReadinessRoute::connect: {
      // The first syscall runs whatever we know about readiness; then wait for writability.
      const std::int64_t r = kind.initiate(op);
      if (r != -EAGAIN) {
        op.result = r;
        return false;
      }
      FdSlot& s = slot(op.fd);
      s.writable = false;
      return park(op, s, s.writers);
    }
    case detail::ReadinessRoute::read_side:
    case detail::ReadinessRoute::write_side: {
      FdSlot& s = slot(op.fd);
      const bool read_side = waits_on_readers(kind);
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
    case detail::ReadinessRoute::off_engine:
      break;
  }
  op.result = -EOPNOTSUPP;  // files and paths never reach the engine (ReadinessBackend)
  return false;
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
  WaitList& list = waits_on_readers(detail::op_kind(op.code)) ? s->readers : s->writers;
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
  const std::int64_t r = detail::syscall_result(::close(fd));
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
  const detail::OpKind& kind = detail::op_kind(op.code);
  bool drained = false;
  const std::int64_t r = kind.attempt(op, drained);
  if (drained) {
    // The kernel said (EAGAIN, a short read or write) there is no more for now: the next op
    // waits for the event instead of trying. After the peer's FIN a read never blocks.
    if (!waits_on_readers(kind))
      s.writable = false;
    else if (!s.read_closed)
      s.readable = false;
  }
  // A fresh fd number: whatever we knew about an older file with this number is void.
  if (r >= 0 && is_accept_op(op.code)) reset_slot(slot(static_cast<int>(r)));
  return r;
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
