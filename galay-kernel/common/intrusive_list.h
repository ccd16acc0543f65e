#pragma once
/// @file intrusive_list.h
/// IntrusiveList: a doubly linked FIFO threaded through a ListLinks member of its elements,
/// so linking and unlinking allocate nothing and an element removes itself in O(1). An
/// element is on at most one list per ListLinks member; the list never owns its elements.

namespace galay {

/// The links an element embeds to be on an IntrusiveList.
template <class T>
struct ListLinks {
  T* prev = nullptr;  ///< previous element, or null at the front
  T* next = nullptr;  ///< next element, or null at the back
};

/// A FIFO of `T`s linked through their `Links` member.
template <class T, ListLinks<T> T::*Links>
class IntrusiveList {
 public:
  /// True when no element is linked.
  bool empty() const noexcept { return head_ == nullptr; }
  /// The oldest element, or null.
  T* front() const noexcept { return head_; }
  /// The element after `t`, or null.
  static T* next(const T* t) noexcept { return (t->*Links).next; }

  /// Link `t` (not on this list) at the back.
  void push_back(T* t) noexcept {
    (t->*Links).next = nullptr;
    (t->*Links).prev = tail_;
    if (tail_)
      (tail_->*Links).next = t;
    else
      head_ = t;
    tail_ = t;
  }

  /// Unlink `t`, which must be on this list.
  void remove(T* t) noexcept {
    ListLinks<T>& l = t->*Links;
    if (l.prev)
      (l.prev->*Links).next = l.next;
    else
      head_ = l.next;
    if (l.next)
      (l.next->*Links).prev = l.prev;
    else
      tail_ = l.prev;
    l.prev = l.next = nullptr;
  }

  /// Unlink and return the oldest element, or null.
  T* pop_front() noexcept {
    T* t = head_;
    if (t) remove(t);
    return t;
  }

 private:
  T* head_ = nullptr;
  T* tail_ = nullptr;
};

}  // namespace galay
