#pragma once
/// @file aligned_buffer.h
/// AlignedBuffer: an owning heap buffer whose address is aligned to a power of two, for
/// O_DIRECT I/O (see File::logical_block_size()). Move-only, zero-filled on creation.

#include <cstddef>
#include <cstring>
#include <new>
#include <span>
#include <stdexcept>
#include <utility>

namespace galay {

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
  AlignedBuffer(AlignedBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), alignment_(o.alignment_) {}
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      alignment_ = o.alignment_;
    }
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { release(); }

  std::byte* data() noexcept { return data_; }
  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::size_t alignment() const noexcept { return alignment_; }
  std::byte& operator[](std::size_t i) noexcept { return data_[i]; }
  const std::byte& operator[](std::size_t i) const noexcept { return data_[i]; }

  /// The whole buffer, or `count` bytes from `offset` (clamped to the buffer).
  std::span<std::byte> span() noexcept { return {data_, size_}; }
  std::span<const std::byte> span() const noexcept { return {data_, size_}; }
  std::span<std::byte> span(std::size_t offset, std::size_t count) noexcept { return span().subspan(offset, count); }
  std::span<const std::byte> span(std::size_t offset, std::size_t count) const noexcept {
    return span().subspan(offset, count);
  }

 private:
  void release() noexcept {
    if (data_ != nullptr) ::operator delete(data_, std::align_val_t(alignment_));
    data_ = nullptr;
  }

  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t alignment_ = kDefaultAlignment;
};

}  // namespace galay
