#include "galay-kernel/net/tcp_acceptor.h"

#include "galay-kernel/runtime/scheduler.h"
#include "galay-kernel/io/detail/backend.h"

namespace galay {

Expected<TcpSocket> MultishotAcceptAwaitable::await_resume() noexcept {
  if (op_.result < 0) return Unexpected(op_.error());
  op_.take_result();
  return TcpSocket::from_accepted(static_cast<int>(op_.result), Scheduler::current());
}

TcpAcceptor::TcpAcceptor(TcpSocket& listener) noexcept { st_.fd = listener.native_handle(); }

TcpAcceptor::~TcpAcceptor() {
  if (st_.backend != nullptr) st_.backend->release_multishot(st_);
}

}  // namespace galay
