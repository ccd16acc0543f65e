#include "galay-kernel/async/stream_receiver.h"

#include "galay-kernel/kernel/scheduler.h"

namespace galay {

StreamReceiver::StreamReceiver(TcpSocket& socket, BufferPool& pool) noexcept : sched_(Scheduler::current()) {
  st_.pool = &pool;
  st_.fd = socket.native_handle();
}

StreamReceiver::~StreamReceiver() {
  if (sched_ != nullptr) sched_->backend().release_multishot(st_);
}

}  // namespace galay
