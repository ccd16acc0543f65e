#pragma once
/// @file registered_buffers.h
/// RegisteredBuffers: a region of buffer memory registered with one scheduler's backend,
/// so that file reads and writes into it skip the kernel's per-request page pinning.
///
/// On io_uring the region is registered with the ring (io_uring_register_buffers), and a
/// File::read_at/write_at (or FileBatch's) whose buffer lies wholly inside it is
/// submitted as IORING_OP_READ_FIXED/WRITE_FIXED: the kernel reuses the pages it pinned at
/// registration instead of looking up and pinning the caller's pages on every request.
/// Nothing else changes: the same calls, the same results, the same O_DIRECT alignment
/// rules. A buffer only partly inside the region, vectored I/O and every other operation
/// go the ordinary way. On epoll+libaio and kqueue there is nothing to register: the region
/// is ordinary memory and every operation runs as before.
///
/// Registration is a request, like MemoryOptions: when the backend has no registered
/// buffers or the kernel refuses (RLIMIT_MEMLOCK counts pinned pages for a process without
/// CAP_IPC_LOCK; another region is already registered), the region still works and
/// describe() says why it is not registered. The memory comes from MappedMemory (huge
/// pages, pre-faulting and locking as MemoryOptions ask), page-aligned, zero-filled.
///
/// Use: one region per scheduler at a time (io_uring has one buffer table per ring; a
/// second region is refused registration and still works unregistered). Create and destroy
/// it on the scheduler's thread; it must outlive every operation that uses its memory, like
/// any caller buffer, and be destroyed before the scheduler.
///
///     auto region = RegisteredBuffers::create(sched, 32 * 65536);
///     auto buf = (*region)->bytes().subspan(i * 65536, 65536);
///     auto n = co_await file.read_at(buf, offset);  // READ_FIXED on io_uring

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "galay-kernel/common/expected.h"
#include "galay-kernel/common/mapped_memory.h"

namespace galay {

class Backend;
class Scheduler;

/// A region of memory registered with a scheduler's backend for fixed-buffer file I/O.
/// Not movable: the backend knows its address.
class RegisteredBuffers {
 public:
  /// Map `size` bytes under `memory` and register them with `sched`'s backend. Fails only
  /// with EINVAL (size 0) or ENOMEM (no memory could be mapped); a refused registration
  /// leaves registered() false with the reason in describe().
  static Expected<std::unique_ptr<RegisteredBuffers>> create(Scheduler& sched, std::size_t size,
                                                             const MemoryOptions& memory = {});
  /// The same on the current thread's scheduler (not_bound_to_scheduler without one).
  static Expected<std::unique_ptr<RegisteredBuffers>> create(std::size_t size, const MemoryOptions& memory = {});

  RegisteredBuffers(const RegisteredBuffers&) = delete;
  RegisteredBuffers& operator=(const RegisteredBuffers&) = delete;
  /// Unregisters the region (scheduler thread; no operation may still use it).
  ~RegisteredBuffers();

  /// The whole region: `size` bytes, page-aligned.
  std::span<std::byte> bytes() const noexcept { return memory_.span(); }
  /// True if reads and writes into the region use the registered pages (io_uring).
  bool registered() const noexcept { return registered_; }
  /// Its memory (huge pages, locking) and whether it is registered, e.g.
  /// "registered with io_uring as 1 buffer; 2 MiB in 2 MiB huge pages, populated, ..." or
  /// "not registered (epoll has no registered buffers: ordinary reads and writes); ...".
  std::string describe() const;

 private:
  RegisteredBuffers(Backend& backend, MappedMemory memory) noexcept;

  Backend& backend_;
  MappedMemory memory_;
  bool registered_ = false;
  std::string reason_;  // why not registered, or how it is
};

}  // namespace galay
