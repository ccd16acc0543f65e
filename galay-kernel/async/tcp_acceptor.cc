#include "galay-kernel/async/tcp_acceptor.h"

#include "galay-kernel/kernel/scheduler.h"

namespace galay {

Expected<TcpSocket> MultishotAcceptAwaitable::await_resume() noexcept {
  if (op_.result < 0) return Unexpected(op_.error());
  return TcpSocket::from_accepted(static_cast<int>(op_.result), Scheduler::current());
}

TcpAcceptor::TcpAcceptor(TcpSocket& listener) noexcept : sched_(Scheduler::current()) {
  st_.fd = listener.native_handle();
}

TcpAcceptor::~TcpAcceptor() {
  if (sched_ != nullptr) sched_->backend().release_multishot(st_);
}

}  // namespace galay
