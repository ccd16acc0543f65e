#pragma once
/// @file mapped_memory.h
/// MappedMemory: the library's one allocation policy for large, long-lived buffer memory
/// (a BufferPool's buffers, an AlignedBuffer made with MemoryOptions, the IPC channel's
/// ring). It asks the kernel for pages directly and says what it got:
///
/// 1. Huge pages (MAP_HUGETLB, the system's default huge page size, 2 MiB on x86-64) when
///    asked for and the region is at least one huge page: fewer TLB misses and page-table
///    walks for buffers the kernel and the program touch all the time. They come from the
///    reserve in /proc/sys/vm/nr_hugepages; when it is empty (the usual default) or the
///    platform has none, ordinary pages are used instead.
/// 2. Pre-faulting (MAP_POPULATE): every page is backed at allocation, so the first
///    receive into a buffer does not take a page fault on the hot path.
/// 3. Locking (mlock), only when asked: the pages are never swapped out. Refused above
///    RLIMIT_MEMLOCK for a process without CAP_IPC_LOCK; then the memory stays unlocked.
///
/// A refused step is never an error and never silent: the allocation goes on with the
/// next best thing and describe() says what was refused and why. Only a failure to map
/// any memory at all (ENOMEM) is an error. The memory is zero-filled, page-aligned, and
/// unmapped by the destructor.

#include <cstddef>
#include <span>
#include <string>

#include "galay-kernel/common/expected.h"

namespace galay {

/// What MappedMemory should try; each is a request, and describe() reports the outcome.
struct MemoryOptions {
  /// Try huge pages for a region of at least one huge page (rounded up to whole huge pages).
  bool huge_pages = true;
  /// Fault every page in at allocation (MAP_POPULATE) instead of on first touch.
  bool populate = true;
  /// mlock the pages (kept in RAM). Off by default: it counts against RLIMIT_MEMLOCK.
  bool lock = false;
};

/// An anonymous private mapping allocated under MemoryOptions. Move-only.
class MappedMemory {
 public:
  /// Map at least `size` bytes (size > 0) at an address aligned to `alignment` (a power of
  /// two; 0 or anything up to the page size means page-aligned). Fails with EINVAL for a
  /// zero size or a bad alignment, ENOMEM when no memory can be mapped; every refused
  /// option falls back as the file comment says.
  static Expected<MappedMemory> map(std::size_t size, const MemoryOptions& options = {}, std::size_t alignment = 0);

  /// An empty mapping (data() == nullptr).
  MappedMemory() noexcept = default;
  /// Take over another mapping; it becomes empty.
  MappedMemory(MappedMemory&& o) noexcept;
  /// Unmap this memory, then take over the other's.
  MappedMemory& operator=(MappedMemory&& o) noexcept;
  MappedMemory(const MappedMemory&) = delete;
  MappedMemory& operator=(const MappedMemory&) = delete;
  ~MappedMemory();

  /// The first byte (nullptr when empty).
  std::byte* data() const noexcept { return data_; }
  /// The size that was asked for.
  std::size_t size() const noexcept { return size_; }
  /// The size mapped (size() rounded up to whole pages of page_size()).
  std::size_t mapped_size() const noexcept { return mapped_; }
  /// The requested bytes.
  std::span<std::byte> span() const noexcept { return {data_, size_}; }
  /// True for an empty (default or moved-from) mapping.
  bool empty() const noexcept { return data_ == nullptr; }
  /// The page size backing it: the huge page size, or the ordinary page size.
  std::size_t page_size() const noexcept { return page_size_; }
  /// Backed by huge pages.
  bool huge_pages() const noexcept { return huge_; }
  /// Pre-faulted at allocation.
  bool populated() const noexcept { return populated_; }
  /// mlock succeeded.
  bool locked() const noexcept { return locked_; }
  /// What was asked, what was got, and why any step was refused, e.g.
  /// "4 MiB in 2 MiB huge pages, populated, not locked (not asked)" or
  /// "64 KiB in 4 KiB pages (huge pages: smaller than one 2 MiB huge page), populated, ...".
  const std::string& describe() const noexcept { return description_; }

  /// The system's default huge page size in bytes (from /proc/meminfo), 0 if it has none.
  static std::size_t huge_page_size() noexcept;

 private:
  void unmap() noexcept;

  std::byte* data_ = nullptr;
  std::byte* base_ = nullptr;  // the mapping itself (data_ rounded down for large alignments)
  std::size_t size_ = 0;
  std::size_t mapped_ = 0;       // bytes from data_ that belong to the caller
  std::size_t base_length_ = 0;  // bytes mapped from base_
  std::size_t page_size_ = 0;
  bool huge_ = false;
  bool populated_ = false;
  bool locked_ = false;
  std::string description_;
};

}  // namespace galay
