#pragma once
/// @file wait_list.h
/// Intrusive FIFO of IoOps through IoOp::prev/next, for readiness backends (epoll, kqueue)
/// that park operations per fd and direction until the fd becomes ready.

#include "galay-kernel/kernel/io_op.h"

namespace galay {

class WaitList {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  IoOp* front() const noexcept { return head_; }

  void push_back(IoOp* op) noexcept {
    op->next = nullptr;
    op->prev = tail_;
    if (tail_)
      tail_->next = op;
    else
      head_ = op;
    tail_ = op;
  }

  void remove(IoOp* op) noexcept {
    if (op->prev)
      op->prev->next = op->next;
    else
      head_ = op->next;
    if (op->next)
      op->next->prev = op->prev;
    else
      tail_ = op->prev;
    op->prev = op->next = nullptr;
  }

  IoOp* pop_front() noexcept {
    IoOp* op = head_;
    if (op) remove(op);
    return op;
  }

 private:
  IoOp* head_ = nullptr;
  IoOp* tail_ = nullptr;
};

}  // namespace galay
