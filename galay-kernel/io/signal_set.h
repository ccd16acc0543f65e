#pragma once
/// @file signal_set.h
/// Awaitable POSIX signals: `co_await signals.wait(timeout)` yields the number of a signal
/// that was sent to the process, on every backend, with the usual timeout and
/// cancellation (timed_out, operation_canceled).
///
/// @code
///   auto signals = SignalSet::create({SIGINT, SIGTERM});   // Expected<SignalSet>
///   auto sig = co_await signals->wait();                   // Expected<int>
/// @endcode
///
/// Contract:
/// - **Mechanism.** Linux (all three backends, the kqueue one included, since it runs on
///   the epoll emulation there): each set reads its own `signalfd(2)`. Apple and the BSDs:
///   each set has a private kqueue with one `EVFILT_SIGNAL` per signal. Either way the set
///   waits through the scheduler like a socket waits for readability.
/// - **Every set gets every delivery.** Any number of sets, on any schedulers and threads,
///   may watch the same signal; each delivery reaches each of them once. On Linux a
///   `signalfd` read takes the signal for the reader only, so the reader hands what it
///   took to every other set watching that signal (a process-wide registry, an eventfd per
///   set); kqueue records each signal in every kqueue that watches it.
/// - **Nothing is lost, and signals coalesce as the OS does.** A signal that arrives while
///   nobody waits stays pending (in the kernel, or in the set) for the next wait(). While a
///   standard signal is pending for a set, more of the same are one delivery (as the
///   kernel's pending set); real-time signals are counted, one wait() each. When several
///   different signals are pending the lowest number comes first, as signalfd(2) does.
/// - **Blocking (Linux).** signalfd only sees signals that every thread blocks: one that
///   some thread leaves unblocked goes to that thread's disposition instead (for SIGTERM,
///   SIGINT, SIGUSR1: the process dies). The first set that watches a signal blocks it with
///   pthread_sigmask() in the thread that creates it; threads started afterwards inherit
///   the mask, threads started before must block it themselves. Simplest: call
///   block_signals() in main() before any thread (a Runtime, std::thread) starts. When the
///   last set watching a signal goes away, the signal is unblocked again, in that thread, if
///   that set's thread is the one that blocked it and it was not blocked before; instances
///   still pending are discarded first, so restoring never runs the old disposition for a
///   signal the sets were watching. Dispositions are not touched. Children made by fork()
///   and exec inherit the blocked mask (unblock it there, e.g. posix_spawnattr_setsigmask).
/// - **Dispositions (Apple/BSD).** Nothing is blocked: the first set that watches a signal
///   installs a handler that does nothing (so the default action, often "terminate", does
///   not run) and the last one restores the previous sigaction.
/// - **Who receives.** Process-directed signals (kill(2), a terminal's ^C) reach every set.
///   A thread-directed one (pthread_kill, tgkill) can be read on Linux only on its target
///   thread: it reaches the sets when that thread runs a scheduler with a set watching it
///   (which hands it to the others), otherwise it stays pending on that thread.
/// - **Threads and schedulers.** A set belongs to the scheduler of the first wait(); its
///   wait()s run there (elsewhere: operation_not_permitted), and it should be destroyed on
///   that thread, before that scheduler. One coroutine waits on a set at a time (a second
///   gets device_or_resource_busy). Creating, add() and remove() may happen on any thread.
/// - **Errors.** Signal numbers outside 1..NSIG-1, SIGKILL, SIGSTOP and the C library's
///   reserved signals are `invalid_argument` when the set is created or a signal added.
///   A closed or moved-from set is `bad_file_descriptor`; closing a set while a wait is
///   pending completes that wait with operation_canceled.

#include <coroutine>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>

#include "galay-kernel/common/expected.h"
#include "galay-kernel/coro/cancel.h"
#include "galay-kernel/io/op.h"
#include "galay-kernel/coro/task.h"

namespace galay {

namespace detail {
struct SignalSetState;
}  // namespace detail

/// Block `signals` in the calling thread (pthread_sigmask), for signalfd's sake. Call it in
/// main() before any thread starts: every thread created afterwards inherits the mask, so
/// the signals are blocked process-wide and a SignalSet created later, on any thread, gets
/// every one of them. Fails with invalid_argument (nothing blocked) on a number a SignalSet
/// would refuse. Apple/BSD: also blocks them, which a SignalSet there does not need.
Expected<void> block_signals(std::initializer_list<int> signals) noexcept;

/// `co_await set.wait(timeout)` → Expected<int>: the signal number, or timed_out,
/// operation_canceled, bad_file_descriptor, device_or_resource_busy,
/// operation_not_permitted, not_bound_to_scheduler.
class [[nodiscard]] SignalWaitAwaitable {
 public:
  /// Wait on the set behind `state` for at most `timeout`.
  SignalWaitAwaitable(detail::SignalSetState* state, Timeout timeout) noexcept : state_(state), timeout_(timeout) {}
  /// Coroutine protocol: never ready here; await_suspend looks at the caller's cancel scope first.
  bool await_ready() const noexcept { return false; }
  template <class P>
  /// Coroutine protocol: takes a pending signal at once (resuming the caller), or sleeps in
  /// a child task that runs in the caller's cancel scope.
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    if (finish_now(detail::scope_of(h.promise()))) return yield_for_budget(h);
    slow_.emplace(wait_slow());
    return slow_->operator co_await().await_suspend(h);
  }
  /// Coroutine protocol: the signal number, or why there is none.
  Expected<int> await_resume() noexcept;

 private:
  bool finish_now(CancelScope* scope) noexcept;
  // True (stay suspended) if the coop budget made `h` yield; false: it goes on at once.
  static bool yield_for_budget(std::coroutine_handle<> h) noexcept;
  Task<Expected<int>> wait_slow();
  detail::SignalSetState* state_;
  Timeout timeout_;
  Expected<int> done_{0};
  std::optional<Task<Expected<int>>> slow_;
};

/// A set of signals to await (see the file comment for the contract). Move-only.
class SignalSet {
 public:
  /// Watch `signals` (duplicates are ignored; an empty list is allowed, see add()).
  /// Fails with invalid_argument on a number that cannot be waited for, watching nothing
  /// then, or with the errno of signalfd/eventfd/epoll_create1 (kqueue elsewhere).
  static Expected<SignalSet> create(std::initializer_list<int> signals) noexcept;
  /// The same from a span.
  static Expected<SignalSet> create(std::span<const int> signals) noexcept;

  /// An empty set: wait() yields bad_file_descriptor.
  SignalSet() noexcept;
  /// Take over the other's set; it becomes empty.
  SignalSet(SignalSet&&) noexcept;
  /// close() this set, then take over the other's.
  SignalSet& operator=(SignalSet&&) noexcept;
  /// close().
  ~SignalSet();

  /// Watch one more signal (a no-op if already watched); blocks it in the calling thread
  /// if no other set watches it. invalid_argument for a bad number, bad_file_descriptor on
  /// an empty set.
  Expected<void> add(int signo) noexcept;
  /// Stop watching `signo` and forget its pending deliveries; the last set to stop
  /// restores the mask (see the file comment). A signal not watched is a no-op;
  /// invalid_argument for a bad number, bad_file_descriptor on an empty set.
  Expected<void> remove(int signo) noexcept;
  /// True if the set watches `signo`.
  bool contains(int signo) const noexcept;

  /// Wait for the next signal of the set, at most `timeout`: a pending one is taken at once.
  SignalWaitAwaitable wait(Timeout timeout = {}) noexcept { return {state_.get(), timeout}; }

  /// Stop watching everything and release the descriptors (through the scheduler that
  /// waited on them). A pending wait completes with operation_canceled. Idempotent.
  void close() noexcept;

 private:
  explicit SignalSet(std::unique_ptr<detail::SignalSetState> state) noexcept;
  std::unique_ptr<detail::SignalSetState> state_;
};

}  // namespace galay
