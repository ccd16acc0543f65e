#include "galay-kernel/runtime/detail/accept_gate.h"

#include <cerrno>

#include "galay-kernel/runtime/scheduler.h"

namespace galay::detail {

void AcceptGate::note_result(std::int64_t result) noexcept {
  if (result >= 0) {
    backoff_ = kFirstBackoff;
    return;
  }
  if (result != -EMFILE && result != -ENFILE && result != -ENOBUFS && result != -ENOMEM) return;
  if (closed_) return;  // several parked accepts failing in one release count once
  closed_ = true;
  fire = &AcceptGate::on_timer;
  sched_.timers().arm(*this, deadline_after(Clock::now(), backoff_));
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
}

void AcceptGate::on_timer(TimerNode* self) { static_cast<AcceptGate*>(self)->open(); }

void AcceptGate::open() noexcept {
  closed_ = false;
  sched_.timers().cancel(*this);
  // Each released op tries its accept now; one that fails on exhaustion again closes the
  // gate, and the ones after it go back to waiting.
  WaitList batch;
  while (IoOp* op = parked_.pop_front()) batch.push_back(op);
  while (IoOp* op = batch.pop_front()) {
    if (closed_) {
      parked_.push_back(op);
      continue;
    }
    if (!op->start_now()) op->complete(op->result);
  }
}

void AcceptGate::fd_closed(int fd) noexcept {
  for (IoOp* op = parked_.front(); op != nullptr;) {
    IoOp* next = WaitList::next(op);
    if (op->fd == fd) {
      parked_.remove(op);
      op->complete(-ECANCELED);
    }
    op = next;
  }
  if (closed_) open();
}

void AcceptGate::cancel_all() noexcept {
  while (IoOp* op = parked_.pop_front()) op->complete(-ECANCELED);
  closed_ = false;
  sched_.timers().cancel(*this);
}

}  // namespace galay::detail
