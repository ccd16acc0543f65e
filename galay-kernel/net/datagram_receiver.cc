#include "galay-kernel/net/datagram_receiver.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "galay-kernel/runtime/scheduler.h"
#include "galay-kernel/io/detail/backend.h"

namespace galay {

PooledDatagram::PooledDatagram(PooledChunk chunk) noexcept : chunk_(std::move(chunk)) {
  const std::span<const std::byte> raw = chunk_.data();
  if (raw.size() < kPooledDatagramPayloadOffset) return;  // not a datagram buffer: leave it empty
  PooledDatagramHeader h{};
  std::memcpy(&h, raw.data(), sizeof(h));
  const std::size_t name_len = std::min<std::size_t>(h.namelen, kPooledDatagramNameSpace);
  std::memcpy(sender_.data(), raw.data() + sizeof(h), name_len);
  sender_.set_size(static_cast<socklen_t>(name_len));
  payload_ = raw.subspan(kPooledDatagramPayloadOffset);
  size_ = h.payloadlen;
  truncated_ = (h.flags & MSG_TRUNC) != 0 || h.payloadlen > payload_.size();
}

PooledDatagramAwaitable::PooledDatagramAwaitable(PooledRecvState& st, Timeout t) noexcept
    : IoAwaitable(OpCode::recv_pooled, st.fd, t), st_(st) {
  op_.multishot = &st_;
  // No room for a payload after the header and the address: refuse before any backend sees it.
  if (st_.pool != nullptr && st_.pool->buffer_size() <= kPooledDatagramPayloadOffset)
    fail_before_submit(std::int64_t{-EINVAL});
}

Expected<PooledDatagram> PooledDatagramAwaitable::await_resume() noexcept {
  if (op_.result < 0) return Unexpected(op_.error());
  return PooledDatagram(
      PooledChunk(st_.pool, static_cast<std::uint16_t>(op_.aux), static_cast<std::uint32_t>(op_.result)));
}

DatagramReceiver::DatagramReceiver(UdpSocket& socket, BufferPool& pool, ReceiverOptions options) noexcept {
  st_.pool = &pool;
  st_.fd = socket.native_handle();
  st_.datagram = true;
  st_.max_held = resolve_max_buffers(options, pool);
}

DatagramReceiver::~DatagramReceiver() {
  if (st_.backend != nullptr) st_.backend->release_multishot(st_);
  st_.pool->disown(st_);
}

}  // namespace galay
