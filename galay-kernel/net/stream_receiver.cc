#include "galay-kernel/net/stream_receiver.h"

#include "galay-kernel/runtime/scheduler.h"
#include "galay-kernel/io/detail/backend.h"

namespace galay {

StreamReceiver::StreamReceiver(TcpSocket& socket, BufferPool& pool, ReceiverOptions options) noexcept {
  st_.pool = &pool;
  st_.fd = socket.native_handle();
  st_.max_held = resolve_max_buffers(options, pool);
}

StreamReceiver::~StreamReceiver() {
  if (st_.backend != nullptr) st_.backend->release_multishot(st_);
  st_.pool->disown(st_);  // chunks the caller still holds count for nobody now
}

}  // namespace galay
