#pragma once
/// @file tls_op.h
/// TlsOp<T>: what every TlsStream operation returns. It is a lazy coroutine, awaited like a
/// Task<T>: `auto n = co_await tls.recv(buf, 2s);`. A TLS operation is a sequence of socket
/// operations (receive a record, send a flight, ...), so it needs a frame of its own; that
/// frame comes from a small per-thread cache of coroutine frames instead of the heap, so a
/// steady stream of TLS operations allocates nothing. The socket awaitables it runs live in
/// that frame, as everywhere in the library.
///
/// Contract: await a TlsOp once, in the task that created it, on the scheduler thread of its
/// stream (like any awaitable). It runs in the awaiting task's CancelScope: cancelling the
/// task cancels the socket operation it is suspended on. Destroying a TlsOp that has not
/// finished destroys its frame (the stream's state stays consistent, see tls.h).
///
/// Awaiting starts the operation inside await_suspend; one that finishes without waiting
/// (the data was already decrypted, the socket took the records at once) lets the awaiter
/// go on without a resume. Only one that really waited resumes its awaiter, from the
/// scheduler's loop. So a loop of operations that all complete at once runs in constant
/// stack even where symmetric transfer is not a tail call (-O0, AddressSanitizer).

#include <cassert>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <utility>
#include <variant>

#include "galay-kernel/coro/cancel.h"

namespace galay {

namespace detail {
/// A coroutine frame of `n` bytes from this thread's frame cache (or the heap).
void* tls_frame_alloc(std::size_t n);
/// Give back a frame of `n` bytes taken with tls_frame_alloc (any thread).
void tls_frame_free(void* p, std::size_t n) noexcept;
/// Frames that had to come from the heap so far, process-wide (tests check the cache works).
std::uint64_t tls_frame_heap_allocations() noexcept;
}  // namespace detail

template <class T>
class TlsOp;

/// The coroutine protocol of TlsOp<T> (an implementation detail of the coroutine machinery).
template <class T>
class TlsOpPromise {
 public:
  /// Frames come from the per-thread frame cache.
  static void* operator new(std::size_t n) { return detail::tls_frame_alloc(n); }
  /// Frames go back to the per-thread frame cache.
  static void operator delete(void* p, std::size_t n) noexcept { detail::tls_frame_free(p, n); }

  /// Coroutine protocol: the TlsOp owning this frame.
  TlsOp<T> get_return_object() noexcept;
  /// Coroutine protocol: lazy, it starts when awaited.
  std::suspend_always initial_suspend() const noexcept { return {}; }
  /// Resumes the awaiting coroutine (by symmetric transfer), unless it is still inside its
  /// await_suspend, which then simply returns.
  struct FinalAwaiter {
    /// Coroutine protocol: always suspends.
    bool await_ready() const noexcept { return false; }
    /// Coroutine protocol: transfers to the awaiter if it is suspended.
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      if (h.promise().starting_) return std::noop_coroutine();
      return h.promise().continuation_;
    }
    /// Coroutine protocol: nothing.
    void await_resume() const noexcept {}
  };
  /// Coroutine protocol: hands control back to the awaiter.
  FinalAwaiter final_suspend() const noexcept { return {}; }
  /// Coroutine protocol: stores the result.
  void return_value(T v) noexcept { result_.template emplace<1>(std::move(v)); }
  /// Coroutine protocol: stores the exception (rethrown by the awaiter).
  void unhandled_exception() noexcept { result_.template emplace<2>(std::current_exception()); }

  /// The cancel scope of the task that awaits this operation.
  CancelScope* scope() const noexcept { return scope_; }
  /// Set by the awaiter: the awaiting task's scope.
  void set_scope(CancelScope* s) noexcept { scope_ = s; }
  /// Set by the awaiter: who to resume at the end.
  void set_continuation(std::coroutine_handle<> c) noexcept { continuation_ = c; }
  /// Set by the awaiter while it runs the operation's first stretch inside await_suspend.
  void set_starting(bool on) noexcept { starting_ = on; }
  /// The value, or the exception rethrown.
  T take_result() {
    if (result_.index() == 2) std::rethrow_exception(std::get<2>(result_));
    assert(result_.index() == 1 && "TlsOp result read before it finished");
    return std::move(std::get<1>(result_));
  }

 private:
  std::coroutine_handle<> continuation_ = std::noop_coroutine();
  CancelScope* scope_ = nullptr;
  bool starting_ = false;
  std::variant<std::monostate, T, std::exception_ptr> result_;
};

/// A TLS operation: a lazy coroutine yielding T (an Expected<...>) when awaited. Move-only;
/// owns its frame.
template <class T>
class [[nodiscard]] TlsOp {
 public:
  /// The coroutine promise (implementation detail of the coroutine machinery).
  using promise_type = TlsOpPromise<T>;
  /// The coroutine handle type.
  using handle_type = std::coroutine_handle<promise_type>;

  /// Adopt the coroutine `h` (made by the promise; not for users).
  explicit TlsOp(handle_type h) noexcept : h_(h) {}
  /// Take over another operation's coroutine; it becomes empty.
  TlsOp(TlsOp&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  TlsOp& operator=(TlsOp&&) = delete;
  TlsOp(const TlsOp&) = delete;
  TlsOp& operator=(const TlsOp&) = delete;
  /// Destroys the frame (finished or not).
  ~TlsOp() {
    if (h_) h_.destroy();
  }

  /// Awaiting runs the operation in the awaiter's cancel scope, right inside await_suspend;
  /// if it has to wait, it resumes the awaiter when it ends (see the file comment).
  struct Awaiter {
    /// The operation's coroutine.
    handle_type h;
    /// Coroutine protocol: ready only if the operation already ran.
    bool await_ready() const noexcept { return !h || h.done(); }
    /// Coroutine protocol: runs the operation in the parent's scope until it finishes
    /// (false: the parent goes on) or waits (true: it resumes the parent later).
    template <class P>
    bool await_suspend(std::coroutine_handle<P> parent) {
      promise_type& p = h.promise();
      p.set_continuation(parent);
      if (p.scope() == nullptr) p.set_scope(detail::scope_of(parent.promise()));
      p.set_starting(true);
      h.resume();
      p.set_starting(false);
      return !h.done();
    }
    /// Coroutine protocol: the result (or the exception rethrown).
    T await_resume() { return h.promise().take_result(); }
  };
  /// Run the operation and wait for its result.
  Awaiter operator co_await() const& noexcept { return Awaiter{h_}; }
  /// Same, for a temporary: `co_await tls.recv(buf)`.
  Awaiter operator co_await() const&& noexcept { return Awaiter{h_}; }

 private:
  handle_type h_;
};

template <class T>
TlsOp<T> TlsOpPromise<T>::get_return_object() noexcept {
  return TlsOp<T>(std::coroutine_handle<TlsOpPromise<T>>::from_promise(*this));
}

}  // namespace galay
