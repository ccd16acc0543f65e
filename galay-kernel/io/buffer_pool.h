#pragma once
/// @file buffer_pool.h
/// BufferPool: fixed-size receive buffers owned by one scheduler, handed to the caller
/// without a copy (PooledChunk) and recycled when the caller drops them.
///
/// On io_uring the pool is a registered provided-buffer ring: a StreamReceiver keeps one
/// multishot recv armed and the kernel picks a buffer per completion. On epoll/kqueue the
/// pool is a free list and each receive is a plain recv into a buffer taken from it.
/// Either way, when the pool runs dry a waiting receive waits for a buffer to come back
/// (io_uring: the multishot recv that ended with ENOBUFS is re-armed), it never hangs.
///
/// The buffers' memory comes from MappedMemory (common/mapped_memory.h): by default huge
/// pages when the pool is at least one huge page and some are reserved, else ordinary
/// pages, pre-faulted either way; memory().describe() says which. MemoryOptions changes it.
///
/// The pool must outlive every StreamReceiver and PooledChunk that uses it, and be used
/// on its scheduler's thread only.

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "galay-kernel/common/expected.h"
#include "galay-kernel/common/mapped_memory.h"
#include "galay-kernel/io/multishot.h"

namespace galay {

class Backend;
class BufferPool;
class Scheduler;
class IoOp;

/// A received chunk of a stream, in a pool buffer. Dropping it returns the buffer.
/// An empty chunk (size() == 0) means the peer closed the stream (EOF).
class PooledChunk {
 public:
  PooledChunk() noexcept = default;
  /// A chunk of `len` bytes in buffer `id` of `pool` (made by receivers, not by users).
  PooledChunk(BufferPool* pool, std::uint16_t id, std::uint32_t len) noexcept : pool_(pool), id_(id), len_(len) {}
  /// Take over another chunk's buffer; it becomes empty.
  PooledChunk(PooledChunk&& o) noexcept;
  /// Return this chunk's buffer, then take over the other's.
  PooledChunk& operator=(PooledChunk&& o) noexcept;
  PooledChunk(const PooledChunk&) = delete;
  PooledChunk& operator=(const PooledChunk&) = delete;
  ~PooledChunk() { reset(); }

  /// The received bytes (valid while the chunk lives).
  std::span<const std::byte> data() const noexcept;
  /// Number of received bytes.
  std::size_t size() const noexcept { return len_; }
  /// True at EOF (or for a moved-from chunk).
  bool empty() const noexcept { return len_ == 0; }
  /// Return the buffer to the pool now.
  void reset() noexcept;

 private:
  BufferPool* pool_ = nullptr;
  std::uint16_t id_ = 0;
  std::uint32_t len_ = 0;
};

/// How a DatagramReceiver's pool buffer holds one datagram: this header, then
/// kPooledDatagramNameSpace bytes for the sender's address, then the payload. It is the
/// layout io_uring's multishot recvmsg writes (io_uring_recvmsg_out, name, no control
/// data); readiness backends write the same.
struct PooledDatagramHeader {
  std::uint32_t namelen;     ///< the sender address's real length
  std::uint32_t controllen;  ///< always 0 (no control data is asked for)
  std::uint32_t payloadlen;  ///< the datagram's real length (more than is stored when truncated)
  std::uint32_t flags;       ///< recvmsg flags (MSG_TRUNC)
};
/// Bytes reserved for the sender's address in a datagram buffer.
inline constexpr std::size_t kPooledDatagramNameSpace = sizeof(sockaddr_storage);
/// Where the payload starts in a datagram buffer.
inline constexpr std::size_t kPooledDatagramPayloadOffset = sizeof(PooledDatagramHeader) + kPooledDatagramNameSpace;

/// How a StreamReceiver or DatagramReceiver uses its pool.
struct ReceiverOptions {
  /// The most pool buffers this receiver may hold at once: chunks queued for it plus chunks
  /// its caller has not dropped yet. At the limit it stops receiving (io_uring: its
  /// multishot recv is cancelled; elsewhere no recv is made): the data waits in the socket
  /// buffer, so TCP flow control pushes back on the peer, and one connection that never
  /// gets read can take at most this share of a shared pool. Receiving resumes once the
  /// caller has dropped half of them. A caller that keeps this many chunks and waits for
  /// another would wait for itself: copy out, or drop, what you keep. 0: min(16, the
  /// pool's size).
  unsigned max_buffers = 0;
};

/// ReceiverOptions::max_buffers for `pool`, with 0 meaning the default, and never 0.
inline unsigned resolve_max_buffers(const ReceiverOptions& o, const BufferPool& pool) noexcept;

/// Per-receiver state shared with the backend (lives in the StreamReceiver or DatagramReceiver).
struct PooledRecvState : MultishotState {
  PooledRecvState() noexcept : MultishotState(Kind::pooled_recv) {}
  /// The pool the chunks come from.
  BufferPool* pool = nullptr;
  /// Next receiver in the pool's list of those waiting for buffers.
  PooledRecvState* next_starved = nullptr;
  /// Pool buffers this receiver holds: queued for it, or handed to its caller and not dropped.
  unsigned held = 0;
  /// ReceiverOptions::max_buffers, resolved.
  unsigned max_held = 16;
  std::int32_t head = -1;  ///< oldest received buffer id (FIFO linked through the pool)
  std::int32_t tail = -1;  ///< newest received buffer id
  /// Receiving stopped at max_held; resumes when `held` falls to half of it.
  bool capped = false;
  /// io_uring: the cancel that stops the multishot recv at the limit is in flight (its
  /// ECANCELED is not the stream's end).
  bool cap_cancel = false;
  bool starved = false;  ///< waiting for the pool to refill
  /// A datagram socket: each buffer holds one datagram laid out as PooledDatagramHeader says.
  bool datagram = false;
};

/// A fixed set of equal-size receive buffers shared by StreamReceivers: on io_uring it is
/// registered as a provided-buffer ring the kernel fills directly. Single-threaded: use it
/// on its scheduler's thread only.
class BufferPool {
 public:
  /// A pool of `count` buffers of `size` bytes on the current thread's scheduler, its
  /// memory allocated under `memory`. count must be a power of two in [1, 32768].
  static Expected<std::unique_ptr<BufferPool>> create(unsigned count, unsigned size, const MemoryOptions& memory = {});
  /// The same on `scheduler` (e.g. from main before the loop runs). Destroy the pool
  /// before the scheduler, after the tasks that use it (see Scheduler::shutdown()).
  static Expected<std::unique_ptr<BufferPool>> create(Scheduler& scheduler, unsigned count, unsigned size,
                                                      const MemoryOptions& memory = {});
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  /// Number of buffers.
  unsigned count() const noexcept { return count_; }
  /// Size of each buffer in bytes.
  unsigned buffer_size() const noexcept { return size_; }
  /// Buffers the caller does not hold right now (free in the pool or in the kernel ring).
  unsigned available() const noexcept { return available_; }
  /// The buffers' memory: its describe() says whether it got huge pages, was pre-faulted
  /// and locked, and why not.
  const MappedMemory& memory() const noexcept { return memory_; }

  // ---- for backends ----
  /// Buffer `id`'s memory.
  std::byte* buffer(std::uint16_t id) noexcept { return memory_.data() + std::size_t(id) * size_; }
  /// Buffer `id` now belongs to `owner` (io_uring: the kernel filled it for that receiver;
  /// others: taken for its recv) until its chunk is dropped.
  void take(std::uint16_t id, PooledRecvState& owner) noexcept {
    --available_;
    owner_[id] = &owner;
    ++owner.held;
  }
  /// `st` is going away: buffers it still holds stay valid, but count for nobody.
  void disown(PooledRecvState& st) noexcept;
  /// Receivers that may receive again now that a buffer came back, best first: those that
  /// hold nothing, then the others, at most `limit` of them (the free buffers); the rest
  /// stay waiting. Appends to `out`.
  void take_starved(std::vector<PooledRecvState*>& out, std::size_t limit);
  /// Free list used by readiness backends.
  bool pop_free(std::uint16_t& id) noexcept;
  /// Put buffer `id` back on the free list.
  void push_free(std::uint16_t id) { free_.push_back(id); }
  /// Queue links for received-but-unclaimed buffers.
  std::int32_t& next(std::uint16_t id) noexcept { return next_[id]; }
  /// Append buffer `id` holding `len` bytes to `st`'s queue of received chunks.
  void push_chunk(PooledRecvState& st, std::uint16_t id, std::uint32_t len) noexcept;
  /// Take the oldest queued chunk of `st`; false if none.
  bool pop_chunk(PooledRecvState& st, std::uint16_t& id, std::uint32_t& len) noexcept;
  /// Receivers waiting for buffers.
  void add_starved(PooledRecvState& st) noexcept;
  /// Take `st` off the waiting list (it was destroyed or re-armed).
  void remove_starved(PooledRecvState& st) noexcept;
  void* backend_handle = nullptr;  ///< io_uring: the registered buf ring
  std::uint16_t group_id = 0;      ///< io_uring: buffer group id

 private:
  friend class PooledChunk;
  BufferPool(Backend& backend, unsigned count, unsigned size, MappedMemory memory);
  void release(std::uint16_t id) noexcept;

  Backend& backend_;
  unsigned count_;
  unsigned size_;
  unsigned available_;
  MappedMemory memory_;
  std::vector<std::int32_t> next_;
  std::vector<std::uint32_t> len_;
  std::vector<PooledRecvState*> owner_;  // per buffer: the receiver holding it, or null
  std::vector<std::uint16_t> free_;
  PooledRecvState* starved_ = nullptr;
};

inline unsigned resolve_max_buffers(const ReceiverOptions& o, const BufferPool& pool) noexcept {
  const unsigned n = o.max_buffers != 0 ? o.max_buffers : 16;
  return n < pool.count() ? n : pool.count();
}

}  // namespace galay
