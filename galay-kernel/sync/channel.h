#pragma once
/// @file channel.h
/// Channel<T>: a FIFO queue between tasks (on one scheduler or several) and plain threads.
///
/// - Bounded (`Channel<T> ch(n)`): send() suspends while `n` values are buffered;
///   n == 0 is a rendezvous channel (send waits for a receiver).
/// - Unbounded (`Channel<T> ch;` or Channel<T>::unbounded): send() never suspends.
/// - MpscChannel / SpscChannel are the same type: the implementation is safe for any number
///   of senders and receivers, so the single-consumer (or single-producer) variants need no
///   code of their own; the names document intent.
///
/// Closing: close() wakes every waiter. Values already buffered are still received; after
/// that recv() yields an error. Errors are values, never exceptions:
/// - send on a closed channel: Expected<void> with std::errc::broken_pipe (the value is
///   dropped); a sender waiting for room when the channel closes gets the same.
/// - recv on a closed, empty channel: Expected<T> with std::errc::broken_pipe.
/// - a cancelled wait: the scope's reason (operation_canceled, or timed_out); a cancelled
///   send drops its value.
/// - try_send / try_recv that would have to wait: std::errc::resource_unavailable_try_again.
///
/// A waiting send or recv keeps its node (and a send its value) in the awaitable, inside the
/// coroutine frame: a wait allocates nothing. The buffer is a ring that grows by doubling
/// up to the bound and is reused, so a steady stream allocates nothing either. Values move
/// under the channel's spinlock, so T must be nothrow-move-constructible.

#include <cstddef>
#include <limits>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "galay-kernel/common/expected.h"
#include "galay-kernel/sync/wait_queue.h"

namespace galay::sync {

namespace detail {

/// Power-of-two circular buffer that grows on demand.
template <class T>
class Ring {
 public:
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  void reserve(std::size_t n) {
    if (n > cap_) grow(n);
  }
  void push(T&& v) {
    if (size_ == cap_) grow(cap_ == 0 ? 8 : cap_ * 2);
    buf_[(head_ + size_) & (cap_ - 1)].emplace(std::move(v));
    ++size_;
  }
  T pop() noexcept {
    std::optional<T>& s = buf_[head_];
    T v = std::move(*s);
    s.reset();
    head_ = (head_ + 1) & (cap_ - 1);
    --size_;
    return v;
  }

 private:
  void grow(std::size_t want) {
    std::size_t cap = 8;
    while (cap < want) cap *= 2;
    auto next = std::make_unique<std::optional<T>[]>(cap);
    for (std::size_t i = 0; i < size_; ++i) next[i].emplace(std::move(*buf_[(head_ + i) & (cap_ - 1)]));
    buf_ = std::move(next);
    cap_ = cap;
    head_ = 0;
  }
  std::unique_ptr<std::optional<T>[]> buf_;
  std::size_t cap_ = 0;  // power of two (or 0)
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

inline std::error_code closed_error() noexcept { return errno_code(EPIPE); }
inline std::error_code would_block_error() noexcept { return errno_code(EAGAIN); }

}  // namespace detail

template <class T>
/// A channel of T values between tasks (on one or several schedulers): bounded (`capacity`
/// > 0), rendezvous (0) or unbounded. Values arrive in send order; send waits while the
/// channel is full, recv while it is empty. close() wakes every waiter: recv then drains
/// what is buffered and reports broken_pipe, send on a closed channel is broken_pipe.
class Channel {
  static_assert(std::is_nothrow_move_constructible_v<T>, "Channel<T> moves values under a spinlock");

 public:
  /// Capacity of an unbounded channel.
  static constexpr std::size_t unbounded = std::numeric_limits<std::size_t>::max();

  /// A channel holding at most `capacity` values (0: rendezvous; `unbounded`: no limit).
  explicit Channel(std::size_t capacity = unbounded) : capacity_(capacity) {
    // Small bounds are allocated up front so the steady state never allocates.
    if (capacity <= 4096) ring_.reserve(capacity);  // (unbounded is SIZE_MAX: never reserved)
  }
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  /// Destroying a channel with waiters is a bug (they would never resume): close() first
  /// and let them leave.
  ~Channel() = default;

  /// What SendAwaitable and RecvAwaitable share: after the scope check, one try under the
  /// channel's lock (`Self::try_locked`), else the task queues on `Self::queue_of(channel)`.
  template <class Self>
  class WaitBase : public detail::Waiter {
   public:
    /// Coroutine protocol: always goes through await_suspend (under the channel's lock).
    bool await_ready() const noexcept { return false; }
    template <class P>
    /// Coroutine protocol: done at once (false: hands over, buffers or fails), else queues the task.
    bool await_suspend(std::coroutine_handle<P> h) noexcept {
      if (!check_scope(::galay::detail::scope_of(h.promise()))) return false;
      detail::WakeBatch batch;
      bool wait = false;
      {
        detail::Guard g(ch_.lock_);
        if (!static_cast<Self&>(*this).try_locked(batch)) {
          if (!enqueue_locked(ch_.lock_, Self::queue_of(ch_), h)) return false;
          wait = true;
        }
      }
      if (wait) {
        register_with_scope();
        return true;
      }
      batch.wake_all();
      return false;
    }

   protected:
    /// A wait on `ch`.
    explicit WaitBase(Channel& ch) noexcept : ch_(ch) {}
    /// Once resumed: the error the wait ended with (closed, cancelled), or none.
    std::error_code finish() noexcept {
      finish_wait();
      return failed() ? error() : result_;
    }
    /// The channel waited on.
    Channel& ch_;
    /// Failure found without waiting (the channel was closed).
    std::error_code result_;
  };

  /// `co_await ch.send(v)` → Expected<void>.
  class [[nodiscard]] SendAwaitable final : public WaitBase<SendAwaitable> {
   public:
    /// Send `value` on `ch`.
    SendAwaitable(Channel& ch, T value) noexcept : WaitBase<SendAwaitable>(ch), value_(std::move(value)) {}
    ~SendAwaitable() {
      // Here, not in the base: the value must stay until no other thread can reach it.
      if (this->destroyed_while_suspended()) this->unlink_if_waiting();
    }
    /// Coroutine protocol: success once the value is delivered or buffered, or broken_pipe / cancellation.
    Expected<void> await_resume() noexcept {
      if (std::error_code ec = this->finish()) return make_error(ec);
      return {};
    }

   private:
    friend class Channel;
    friend class WaitBase<SendAwaitable>;
    bool try_locked(detail::WakeBatch& batch) noexcept { return this->ch_.offer_locked(value_, batch, this->result_); }
    static detail::WaitQueue& queue_of(Channel& ch) noexcept { return ch.senders_; }
    std::optional<T> value_;  // emptied when a receiver (or the buffer) takes it
  };

  /// `co_await ch.recv()` → Expected<T>.
  class [[nodiscard]] RecvAwaitable final : public WaitBase<RecvAwaitable> {
   public:
    /// Receive from `ch`.
    explicit RecvAwaitable(Channel& ch) noexcept : WaitBase<RecvAwaitable>(ch) {}
    ~RecvAwaitable() {
      if (this->destroyed_while_suspended()) this->unlink_if_waiting();
    }
    /// Coroutine protocol: the value, or broken_pipe once closed and empty, or the cancellation error.
    Expected<T> await_resume() noexcept {
      if (std::error_code ec = this->finish()) return make_error(ec);
      return Expected<T>(std::move(*slot_));
    }

   private:
    friend class Channel;
    friend class WaitBase<RecvAwaitable>;
    bool try_locked(detail::WakeBatch& batch) noexcept { return this->ch_.take_locked(slot_, batch, this->result_); }
    static detail::WaitQueue& queue_of(Channel& ch) noexcept { return ch.receivers_; }
    std::optional<T> slot_;  // filled by a sender (or the buffer)
  };

  /// Send `value`, suspending while the channel is full.
  SendAwaitable send(T value) noexcept { return SendAwaitable(*this, std::move(value)); }
  /// Receive the oldest value, suspending while the channel is empty and open.
  RecvAwaitable recv() noexcept { return RecvAwaitable(*this); }

  /// Send without waiting; `value` is moved from only on success. Any thread.
  Expected<void> try_send(T&& value) noexcept {
    detail::WakeBatch batch;
    {
      detail::Guard g(lock_);
      if (closed_) return make_error(detail::closed_error());
      if (Waiter* r = receivers_.pop_front()) {
        static_cast<RecvAwaitable*>(r)->slot_.emplace(std::move(value));
        r->grant_locked();
        batch.add(r);
      } else if (ring_.size() < capacity_) {
        ring_.push(std::move(value));
      } else {
        return make_error(detail::would_block_error());
      }
    }
    batch.wake_all();
    return {};
  }
  /// try_send() of a copy of `value`.
  Expected<void> try_send(const T& value) noexcept(std::is_nothrow_copy_constructible_v<T>) {
    T copy(value);
    return try_send(std::move(copy));
  }

  /// Receive without waiting. Any thread.
  Expected<T> try_recv() noexcept {
    detail::WakeBatch batch;
    std::optional<T> slot;
    std::error_code ec;
    {
      detail::Guard g(lock_);
      if (!take_locked(slot, batch, ec)) return make_error(detail::would_block_error());
    }
    batch.wake_all();
    if (ec) return make_error(ec);
    return Expected<T>(std::move(*slot));
  }

  /// Close the channel: waiting receivers (the buffer is empty then) and waiting senders
  /// resume with broken_pipe; buffered values stay receivable. Idempotent; any thread.
  void close() noexcept {
    detail::WakeBatch batch;
    {
      detail::Guard g(lock_);
      if (closed_) return;
      closed_ = true;
      for (detail::WaitQueue* list : {&receivers_, &senders_}) {
        while (Waiter* w = list->pop_front()) {
          w->fail_locked(detail::closed_error());
          batch.add(w);
        }
      }
    }
    batch.wake_all();
  }

  /// Snapshot: closed() has been called.
  bool is_closed() const noexcept {
    detail::Guard g(lock_);
    return closed_;
  }
  /// Snapshot: buffered values.
  std::size_t size() const noexcept {
    detail::Guard g(lock_);
    return ring_.size();
  }
  /// The capacity given at construction (`unbounded` for none).
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  using Waiter = detail::Waiter;

  /// Try to deliver `value` without waiting (lock held). True if done, with `ec` set on
  /// failure (closed); false if the sender must wait.
  bool offer_locked(std::optional<T>& value, detail::WakeBatch& batch, std::error_code& ec) noexcept {
    if (closed_) {
      ec = detail::closed_error();
      return true;
    }
    if (Waiter* r = receivers_.pop_front()) {
      static_cast<RecvAwaitable*>(r)->slot_.emplace(std::move(*value));
      r->grant_locked();
      batch.add(r);
      return true;
    }
    if (ring_.size() < capacity_) {
      ring_.push(std::move(*value));
      return true;
    }
    return false;
  }

  /// Try to take a value without waiting (lock held). True if done (`slot` filled, or `ec`
  /// set when closed and drained); false if the receiver must wait.
  bool take_locked(std::optional<T>& slot, detail::WakeBatch& batch, std::error_code& ec) noexcept {
    if (!ring_.empty()) {
      slot.emplace(ring_.pop());
      // Room was made: the first waiting sender's value moves into the buffer.
      if (Waiter* s = senders_.pop_front()) {
        ring_.push(std::move(*static_cast<SendAwaitable*>(s)->value_));
        s->grant_locked();
        batch.add(s);
      }
      return true;
    }
    if (Waiter* s = senders_.pop_front()) {  // rendezvous: take straight from the sender
      slot.emplace(std::move(*static_cast<SendAwaitable*>(s)->value_));
      s->grant_locked();
      batch.add(s);
      return true;
    }
    if (closed_) {
      ec = detail::closed_error();
      return true;
    }
    return false;
  }

  mutable detail::SpinLock lock_;
  const std::size_t capacity_;
  bool closed_ = false;
  detail::Ring<T> ring_;
  detail::WaitQueue senders_;    // SendAwaitables waiting for room
  detail::WaitQueue receivers_;  // RecvAwaitables waiting for a value
};

/// Many senders, one receiver. Same implementation as Channel<T>.
template <class T>
using MpscChannel = Channel<T>;
/// One sender, one receiver. Same implementation as Channel<T>.
template <class T>
using SpscChannel = Channel<T>;

}  // namespace galay::sync
