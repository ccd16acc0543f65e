#include "galay-kernel/io/op.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstring>

#include "galay-kernel/io/detail/backend.h"
#include "galay-kernel/io/fault_injection.h"
#include "galay-kernel/runtime/detail/accept_gate.h"
#include "galay-kernel/runtime/detail/chaos.h"
#include "galay-kernel/runtime/detail/live_metrics.h"
#include "galay-kernel/runtime/scheduler.h"

// An op's whole life on the scheduler's thread: begin (start, or park in the accept gate),
// cancel, complete, and the destructor that lets go of the kernel. Backends only ever call
// complete(); this is the one file that reaches into the scheduler for them.

namespace galay {

IoOp::IoOp(IoOp&& o) noexcept
    : Cancellable(o),
      TimerNode(),
      code(o.code),
      flags(o.flags),
      fd(o.fd),
      aux(o.aux),
      buf(o.buf),  // each union copied through its widest member: all of its bytes
      len(o.len),
      offset(o.offset),
      result(o.result) {  // an idle op's result is fail_before_submit()'s
  // The widest member of each union is the one copied (every pointer is as wide as buf).
  static_assert(sizeof(std::size_t) >= sizeof(socklen_t) && sizeof(std::uint64_t) >= sizeof(void*));
  assert(o.state == OpState::idle && "an IoOp cannot move once started");
}

namespace {
// Descriptors that arrived in a recvmsg's control data (SCM_RIGHTS).
void close_passed_fds(const msghdr& msg) noexcept {
  if (msg.msg_control == nullptr) return;
  for (const cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
       c = CMSG_NXTHDR(const_cast<msghdr*>(&msg), const_cast<cmsghdr*>(c))) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < n; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      ::close(fd);
    }
  }
}
}  // namespace

IoOp::~IoOp() {
  if (state == OpState::queued && sched != nullptr) sched->accept_gate_->unpark(*this);
  if (state == OpState::pending && sched != nullptr) sched->backend().abandon(*this);
  if (timer().armed() && sched != nullptr) sched->timers().cancel(timer());
  if (scope != nullptr) scope->clear_pending(this);
  // A result nobody took (the frame died first: scheduler shutdown, an abandoned task)
  // must not leak what it holds.
  if (state == OpState::done && result >= 0 && !(flags & op_result_taken)) {
    if (flags & op_result_is_fd) ::close(static_cast<int>(result));
    if ((flags & op_result_fds_in_msg) && msg != nullptr) close_passed_fds(*msg);
  }
}

void IoOp::on_deadline(TimerNode* node) noexcept { static_cast<IoOp*>(node)->cancel(std::errc::timed_out); }

bool IoOp::begin(std::coroutine_handle<> h, CancelScope* s, Timeout timeout) noexcept {
  sched = Scheduler::current();
  waiter = h;
  if (code == OpCode::close) return begin_close();
  if (sched == nullptr) {
    result = kNoSchedulerResult;
    state = OpState::done;
    return false;
  }
  detail::LiveMetrics& metrics = sched->live_metrics();
  metrics.op_started(code);
  if (s != nullptr && s->cancelled()) {
    result = -static_cast<std::int64_t>(s->reason());
    state = OpState::done;
    metrics.op_finished(code, result);
    return sched->coop_yield(h);  // a loop of refused ops must not starve the others either
  }
  if (is_accept_op(code) && sched->accept_gate_->closed()) [[unlikely]] {
    // Descriptors (or memory) ran out a moment ago: wait in the gate rather than fail at
    // once again, which would spin an accept loop.
    state = OpState::queued;
    sched->accept_gate_->park(*this);
  } else if (!start_now()) {
    metrics.op_finished(code, result);
    if (is_accept_op(code)) sched->accept_gate_->note_result(result);
    // Finished at once: go on, unless this task has finished too many ops in a row
    // without suspending; then it yields, so others (and the backend, and the timers) run.
    return sched->coop_yield(h);
  }
  // complete() may already have run inside start() for backends that finish inline but
  // still report "pending"; they must not. From here the op is genuinely in flight.
  if (timeout.enabled()) {
    fire = &IoOp::on_deadline;
    sched->timers().arm(timer(), deadline_after(Clock::now(), timeout.value));
  }
  if (s != nullptr) {
    scope = s;
    s->set_pending(this);
  }
  return true;
}

bool IoOp::start_now() noexcept {
  if (const int injected = fault::take_op_failure(code)) [[unlikely]] {
    result = -injected;  // as if the syscall had failed: the backend never sees the op
    state = OpState::done;
    return false;
  }
  state = OpState::pending;
  if (!sched->backend().start(*this)) {
    state = OpState::done;
    return false;
  }
  return true;
}

bool IoOp::begin_close() noexcept {
  // The owner gave up the descriptor when it made this op, so the close must happen
  // whatever else is true: in a cancelled task (cleanup code), with no scheduler, or with
  // failures injected. It is not cancellable either: a cancelled close would leak.
  if (sched == nullptr) {
    result = fd < 0 ? -EBADF : (::close(fd) == 0 ? 0 : -static_cast<std::int64_t>(errno));
    state = OpState::done;
    return false;
  }
  sched->accept_gate_->fd_closed(fd);  // parked accepts on it end; the others may retry
  sched->live_metrics().op_started(code);
  state = OpState::pending;
  if (!sched->backend().start(*this)) {
    state = OpState::done;
    sched->live_metrics().op_finished(code, result);
    return false;
  }
  return true;
}

void IoOp::cancel(std::errc reason) noexcept {
  if (cancel_reason() != std::errc{}) return;
  if (state == OpState::queued) {  // waiting in the accept gate: no backend knows it
    set_cancel_reason(reason);
    sched->accept_gate_->unpark(*this);
    complete(-ECANCELED);
    return;
  }
  if (state != OpState::pending) return;
  set_cancel_reason(reason);
  sched->backend().cancel(*this);
}

void IoOp::complete(std::int64_t res) noexcept {
  if (timer().armed()) sched->timers_.cancel(timer());
  if (scope != nullptr) {
    scope->clear_pending(this);
    scope = nullptr;
  }
  // A cancelled op reports why it was cancelled (timed_out for deadlines).
  if (res == -ECANCELED && cancel_reason() != std::errc{}) res = -static_cast<std::int64_t>(cancel_reason());
  result = res;
  state = OpState::done;
  sched->live_metrics().op_finished(code, res);
  if (is_accept_op(code)) sched->accept_gate_->note_result(res);
  if (!sched->shutting_down_ && !chaos::defer(sched, waiter)) sched->ready_.push_back(waiter);
}

}  // namespace galay
