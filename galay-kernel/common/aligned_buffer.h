#pragma once
/// @file aligned_buffer.h
/// AlignedBuffer: an owning buffer whose address is aligned to a power of two, for
/// O_DIRECT I/O (see File::logical_block_size()). Move-only, zero-filled on creation.
/// Made without MemoryOptions it is a heap block (cheap, for small or short-lived
/// buffers); made with them it is a MappedMemory region (huge pages, pre-faulting, mlock:
/// common/mapped_memory.h), for large long-lived ones.

#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

#include "galay-kernel/common/mapped_memory.h"

namespace galay {

/// A heap buffer with a chosen alignment (O_DIRECT needs buffers aligned to the device's
/// logical block size). Zero-filled at construction; move-only.
class AlignedBuffer {
 public:
  /// Default alignment: the largest logical block size in common use (4 KiB sectors).
  static constexpr std::size_t kDefaultAlignment = 4096;

  /// An empty buffer (data() == nullptr).
  AlignedBuffer() noexcept = default;
  /// `size` zeroed bytes at an address aligned to `alignment` (a power of two; values below
  /// alignof(std::max_align_t) are raised to it). Throws std::bad_alloc, or
  /// std::invalid_argument for an alignment that is not a power of two.
  explicit AlignedBuffer(std::size_t size, std::size_t alignment = kDefaultAlignment)
      : size_(size), alignment_(alignment < alignof(std::max_align_t) ? alignof(std::max_align_t) : alignment) {
    if ((alignment_ & (alignment_ - 1)) != 0)
      throw std::invalid_argument("AlignedBuffer: alignment must be a power of two");
    if (size_ == 0) return;
    data_ = static_cast<std::byte*>(::operator new(size_, std::align_val_t(alignment_)));
    std::memset(data_, 0, size_);
  }
  /// `size` zeroed bytes aligned to `alignment`, mapped under `memory` (MappedMemory: its
  /// alignment is at least the page size). Throws std::bad_alloc when no memory can be
  /// mapped, std::invalid_argument for an alignment that is not a power of two; a refused
  /// huge page or mlock falls back, and memory_description() says so.
  AlignedBuffer(std::size_t size, std::size_t alignment, const MemoryOptions& memory)
      : size_(size), alignment_(alignment < alignof(std::max_align_t) ? alignof(std::max_align_t) : alignment) {
    if ((alignment_ & (alignment_ - 1)) != 0)
      throw std::invalid_argument("AlignedBuffer: alignment must be a power of two");
    if (size_ == 0) return;
    auto m = MappedMemory::map(size_, memory, alignment_);
    if (!m) throw std::bad_alloc();
    mapped_ = std::make_unique<MappedMemory>(std::move(*m));
    data_ = mapped_->data();
  }
  /// Take over another buffer's memory; it becomes empty.
  AlignedBuffer(AlignedBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        alignment_(o.alignment_),
        mapped_(std::move(o.mapped_)) {}
  /// Free this buffer's memory, then take over the other's.
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      alignment_ = o.alignment_;
      mapped_ = std::move(o.mapped_);
    }
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { release(); }

  /// The first byte (nullptr when empty).
  std::byte* data() noexcept { return data_; }
  /// The first byte (nullptr when empty).
  const std::byte* data() const noexcept { return data_; }
  /// Size in bytes.
  std::size_t size() const noexcept { return size_; }
  /// True for a zero-size (or moved-from) buffer.
  bool empty() const noexcept { return size_ == 0; }
  /// The alignment of data().
  std::size_t alignment() const noexcept { return alignment_; }
  /// Where the memory came from: "heap", or MappedMemory::describe() for a buffer made
  /// with MemoryOptions (huge pages or not, populated, locked, and why not).
  std::string memory_description() const { return mapped_ ? mapped_->describe() : std::string("heap"); }
  /// The mapping behind a buffer made with MemoryOptions (nullptr for a heap buffer).
  const MappedMemory* mapping() const noexcept { return mapped_.get(); }
  /// Byte `i` (unchecked).
  std::byte& operator[](std::size_t i) noexcept { return data_[i]; }
  /// Byte `i` (unchecked).
  const std::byte& operator[](std::size_t i) const noexcept { return data_[i]; }

  /// The whole buffer, or `count` bytes from `offset` (clamped to the buffer).
  std::span<std::byte> span() noexcept { return {data_, size_}; }
  /// The whole buffer, read-only.
  std::span<const std::byte> span() const noexcept { return {data_, size_}; }
  /// `count` bytes from `offset`, clamped to the buffer.
  std::span<std::byte> span(std::size_t offset, std::size_t count) noexcept {
    offset = offset < size_ ? offset : size_;
    return span().subspan(offset, count < size_ - offset ? count : size_ - offset);
  }
  /// `count` bytes from `offset`, clamped to the buffer, read-only.
  std::span<const std::byte> span(std::size_t offset, std::size_t count) const noexcept {
    offset = offset < size_ ? offset : size_;
    return span().subspan(offset, count < size_ - offset ? count : size_ - offset);
  }

 private:
  void release() noexcept {
    if (!mapped_ && data_ != nullptr) ::operator delete(data_, std::align_val_t(alignment_));
    mapped_.reset();
    data_ = nullptr;
  }

  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t alignment_ = kDefaultAlignment;
  std::unique_ptr<MappedMemory> mapped_;  // owns data_ when set (kept out of line: most buffers are heap ones)
};

}  // namespace galay
