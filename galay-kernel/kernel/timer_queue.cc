#include "galay-kernel/kernel/timer_queue.h"

#include <cassert>

namespace galay {

void TimerQueue::arm(TimerNode& node, Clock::time_point deadline) {
  assert(!node.armed());
  node.deadline = deadline;
  node.seq = next_seq_++;
  heap_.push_back(&node);
  node.heap_index = heap_.size() - 1;
  sift_up(node.heap_index);
}

void TimerQueue::cancel(TimerNode& node) noexcept {
  if (!node.armed()) return;
  std::size_t i = node.heap_index;
  TimerNode* last = heap_.back();
  heap_.pop_back();
  node.heap_index = TimerNode::npos;
  if (last == &node) return;
  place(i, last);
  // The moved node may belong above or below its new slot.
  if (i > 0 && earlier(last, heap_[(i - 1) / 2]))
    sift_up(i);
  else
    sift_down(i);
}

std::size_t TimerQueue::fire_expired(Clock::time_point now) {
  std::size_t fired = 0;
  while (!heap_.empty() && heap_.front()->deadline <= now) {
    TimerNode* n = heap_.front();
    cancel(*n);
    ++fired;
    n->fire(n->owner);  // may arm or cancel other timers
  }
  return fired;
}

void TimerQueue::sift_up(std::size_t i) noexcept {
  TimerNode* n = heap_[i];
  while (i > 0) {
    std::size_t parent = (i - 1) / 2;
    if (!earlier(n, heap_[parent])) break;
    place(i, heap_[parent]);
    i = parent;
  }
  place(i, n);
}

void TimerQueue::sift_down(std::size_t i) noexcept {
  TimerNode* n = heap_[i];
  const std::size_t size = heap_.size();
  for (;;) {
    std::size_t child = 2 * i + 1;
    if (child >= size) break;
    if (child + 1 < size && earlier(heap_[child + 1], heap_[child])) ++child;
    if (!earlier(heap_[child], n)) break;
    place(i, heap_[child]);
    i = child;
  }
  place(i, n);
}

}  // namespace galay
