#include "galay-kernel/runtime/timer_queue.h"

#include <cassert>
#include <stdexcept>

namespace galay {

void TimerQueue::arm(TimerNode& node, Clock::time_point deadline) {
  assert(!node.armed());
  if (heap_.size() >= TimerNode::npos) throw std::length_error("galay: more than 2^32 - 1 armed timers");
  heap_.push_back(Entry{deadline, next_seq_++, &node});
  node.heap_index = static_cast<std::uint32_t>(heap_.size() - 1);
  sift_up(node.heap_index);
}

void TimerQueue::cancel(TimerNode& node) noexcept {
  if (!node.armed()) return;
  const std::size_t i = node.heap_index;
  const Entry last = heap_.back();
  heap_.pop_back();
  node.heap_index = TimerNode::npos;
  if (last.node == &node) return;
  place(i, last);
  // The moved entry may belong above or below its new slot.
  if (i > 0 && earlier(last, heap_[(i - 1) / 2]))
    sift_up(i);
  else
    sift_down(i);
}

std::size_t TimerQueue::fire_expired(Clock::time_point now) {
  std::size_t fired = 0;
  while (!heap_.empty() && heap_.front().deadline <= now) {
    TimerNode* n = heap_.front().node;
    cancel(*n);
    ++fired;
    n->fire(n);  // may arm or cancel other timers
  }
  return fired;
}

void TimerQueue::sift_up(std::size_t i) noexcept {
  const Entry e = heap_[i];
  while (i > 0) {
    const std::size_t parent = (i - 1) / 2;
    if (!earlier(e, heap_[parent])) break;
    place(i, heap_[parent]);
    i = parent;
  }
  place(i, e);
}

void TimerQueue::sift_down(std::size_t i) noexcept {
  const Entry e = heap_[i];
  const std::size_t size = heap_.size();
  for (;;) {
    std::size_t child = 2 * i + 1;
    if (child >= size) break;
    if (child + 1 < size && earlier(heap_[child + 1], heap_[child])) ++child;
    if (!earlier(heap_[child], e)) break;
    place(i, heap_[child]);
    i = child;
  }
  place(i, e);
}

}  // namespace galay
