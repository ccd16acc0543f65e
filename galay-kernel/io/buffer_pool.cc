#include "galay-kernel/io/buffer_pool.h"

#include <cerrno>
#include <utility>

#include "galay-kernel/runtime/scheduler.h"
#include "galay-kernel/io/detail/backend.h"

namespace galay {

PooledChunk::PooledChunk(PooledChunk&& o) noexcept
    : pool_(std::exchange(o.pool_, nullptr)), id_(o.id_), len_(std::exchange(o.len_, 0)) {}

PooledChunk& PooledChunk::operator=(PooledChunk&& o) noexcept {
  if (this != &o) {
    reset();
    pool_ = std::exchange(o.pool_, nullptr);
    id_ = o.id_;
    len_ = std::exchange(o.len_, 0);
  }
  return *this;
}

std::span<const std::byte> PooledChunk::data() const noexcept {
  if (pool_ == nullptr) return {};
  return {pool_->buffer(id_), len_};
}

void PooledChunk::reset() noexcept {
  if (pool_ != nullptr) std::exchange(pool_, nullptr)->release(id_);
  len_ = 0;
}

Expected<std::unique_ptr<BufferPool>> BufferPool::create(unsigned count, unsigned size, const MemoryOptions& memory) {
  Scheduler* s = Scheduler::current();
  if (s == nullptr) return make_error(make_error_code(Error::not_bound_to_scheduler));
  return create(*s, count, size, memory);
}

Expected<std::unique_ptr<BufferPool>> BufferPool::create(Scheduler& sched, unsigned count, unsigned size,
                                                         const MemoryOptions& memory) {
  Scheduler* s = &sched;
  if (count == 0 || count > 32768 || (count & (count - 1)) != 0 || size == 0) return errno_error(EINVAL);
  auto mem = MappedMemory::map(std::size_t(count) * size, memory);
  if (!mem) return make_error(mem.error());
  std::unique_ptr<BufferPool> pool(new BufferPool(s->backend(), count, size, std::move(*mem)));
  if (auto ec = s->backend().attach_pool(*pool)) return make_error(ec);
  return pool;
}

BufferPool::BufferPool(Backend& backend, unsigned count, unsigned size, MappedMemory memory)
    : backend_(backend),
      count_(count),
      size_(size),
      available_(count),
      memory_(std::move(memory)),
      next_(count, -1),
      len_(count, 0),
      owner_(count, nullptr) {}

BufferPool::~BufferPool() { backend_.detach_pool(*this); }

void BufferPool::release(std::uint16_t id) noexcept {
  ++available_;
  PooledRecvState* owner = std::exchange(owner_[id], nullptr);
  if (owner != nullptr) --owner->held;
  backend_.recycle(*this, id, owner);
}

void BufferPool::disown(PooledRecvState& st) noexcept {
  if (st.held == 0) return;
  for (PooledRecvState*& o : owner_)
    if (o == &st) o = nullptr;
  st.held = 0;
}

void BufferPool::take_starved(std::vector<PooledRecvState*>& out, std::size_t limit) {
  // Two passes over the waiting list: receivers holding nothing first (a connection that
  // hoards buffers must not be served before one that has none).
  for (int pass = 0; pass < 2 && limit > 0; ++pass) {
    for (PooledRecvState** p = &starved_; *p != nullptr && limit > 0;) {
      PooledRecvState* st = *p;
      if ((pass == 0) != (st->held == 0)) {
        p = &st->next_starved;
        continue;
      }
      *p = st->next_starved;
      st->starved = false;
      st->next_starved = nullptr;
      out.push_back(st);
      --limit;
    }
  }
}

bool BufferPool::pop_free(std::uint16_t& id) noexcept {
  if (free_.empty()) return false;
  id = free_.back();
  free_.pop_back();
  return true;
}

void BufferPool::push_chunk(PooledRecvState& st, std::uint16_t id, std::uint32_t len) noexcept {
  len_[id] = len;
  next_[id] = -1;
  if (st.tail >= 0)
    next_[static_cast<std::size_t>(st.tail)] = id;
  else
    st.head = id;
  st.tail = id;
}

bool BufferPool::pop_chunk(PooledRecvState& st, std::uint16_t& id, std::uint32_t& len) noexcept {
  if (st.head < 0) return false;
  id = static_cast<std::uint16_t>(st.head);
  len = len_[id];
  st.head = next_[id];
  if (st.head < 0) st.tail = -1;
  return true;
}

void BufferPool::add_starved(PooledRecvState& st) noexcept {
  if (st.starved) return;
  st.starved = true;
  st.next_starved = starved_;
  starved_ = &st;
}

void BufferPool::remove_starved(PooledRecvState& st) noexcept {
  if (!st.starved) return;
  for (PooledRecvState** p = &starved_; *p; p = &(*p)->next_starved) {
    if (*p == &st) {
      *p = st.next_starved;
      break;
    }
  }
  st.starved = false;
  st.next_starved = nullptr;
}

}  // namespace galay
