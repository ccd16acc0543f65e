#include "galay-kernel/io/signal_set.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <limits>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#define GALAY_SIGNALS_SIGNALFD 1
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__) || \
    defined(__DragonFly__)
#include <sys/event.h>
#include <sys/time.h>
#define GALAY_SIGNALS_KQUEUE 1
#else
#error "SignalSet needs signalfd (Linux) or kqueue (Apple, BSD)"
#endif

#include "galay-kernel/common/error.h"
#include "galay-kernel/runtime/scheduler.h"

namespace galay {
namespace detail {
namespace {

// Signal numbers are 1 .. kSignalLimit-1.
constexpr int kSignalLimit = NSIG;

bool valid_signal(int signo) noexcept {
  if (signo <= 0 || signo >= kSignalLimit || signo == SIGKILL || signo == SIGSTOP) return false;
  sigset_t probe;
  sigemptyset(&probe);
  return sigaddset(&probe, signo) == 0;  // the C library refuses the signals it reserves
}

bool is_realtime(int signo) noexcept {
#if defined(SIGRTMIN) && defined(SIGRTMAX)
  return signo >= SIGRTMIN && signo <= SIGRTMAX;
#else
  (void)signo;
  return false;
#endif
}

#if defined(GALAY_SIGNALS_SIGNALFD)
sigset_t only(int signo) noexcept {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, signo);
  return s;
}
#endif

std::error_code last_error() noexcept { return errno_code(errno); }

// What the sets watching one signal changed for it, process-wide, so the last of them can
// put it back.
struct SignalRecord {
  unsigned watchers = 0;  // sets watching the signal
#if defined(GALAY_SIGNALS_SIGNALFD)
  bool was_blocked = false;  // blocked in `owner` before the first set blocked it
  pthread_t owner{};         // the thread whose mask the first set changed
#else
  struct sigaction previous {};  // the disposition before the first set replaced it
#endif
};

#if defined(GALAY_SIGNALS_KQUEUE)
// The handler the sets install on Apple/BSD: EVFILT_SIGNAL records a delivery after the
// disposition ran, so the disposition only has to keep the default action from running.
void ignore_signal(int /*signo*/) {}
#endif

}  // namespace

// One set. Heap-allocated so the SignalSet that owns it can move while a waiting task
// holds its address; freed by that task if the set is closed under it (orphaned).
struct SignalSetState {
  // What the scheduler waits on for readability: on Linux an epoll set holding signal_fd
  // and wake_fd; elsewhere a kqueue with one EVFILT_SIGNAL per watched signal.
  int wait_fd = -1;
#if defined(GALAY_SIGNALS_SIGNALFD)
  int signal_fd = -1;  // signalfd(2) for `watched`
  int wake_fd = -1;    // eventfd: another set's reader handed this one a signal
#endif
  Scheduler* sched = nullptr;  // bound at the first wait(); closes wait_fd
  bool registered = false;     // in the registry (guarded by its mutex)
  bool waiting = false;        // a wait's slow path is suspended (owner thread only)
  bool orphaned = false;       // closed while waiting: the slow path frees this

  // Guarded by the registry mutex: other threads' readers read `watched` and add to `pending`.
  sigset_t watched{};
  std::array<std::uint32_t, kSignalLimit> pending{};

  SignalSetState() noexcept { sigemptyset(&watched); }
  SignalSetState(const SignalSetState&) = delete;
  SignalSetState& operator=(const SignalSetState&) = delete;
  ~SignalSetState() { close_all(); }

  bool closed() const noexcept { return wait_fd < 0; }

  static Expected<std::unique_ptr<SignalSetState>> open(std::span<const int> signals) noexcept;
  static void dispose(std::unique_ptr<SignalSetState> st) noexcept;

  Expected<void> add(int signo) noexcept;
  Expected<void> remove(int signo) noexcept;
  bool contains(int signo) const noexcept;
  // Take what the kernel holds for this set (handing other sets theirs) into `pending`.
  void collect() noexcept;
  // The lowest pending signal, taken; 0 if none.
  int take() noexcept;
  void close_all() noexcept;

 private:
  Expected<void> open_descriptors() noexcept;
  // The rest hold the registry mutex.
  void watch_locked(int signo) noexcept;
  void unwatch_locked(int signo) noexcept;
  void note_locked(int signo, std::uint32_t count) noexcept;
  void update_kernel_locked(int signo, bool add) noexcept;
#if defined(GALAY_SIGNALS_SIGNALFD)
  void deliver_locked(int signo) noexcept;
#endif
};

namespace {

// Every live set and the per-signal records, process-wide. Never destroyed: a set may be
// closed during static destruction.
struct Registry {
  std::mutex mutex;
  std::array<SignalRecord, kSignalLimit> records{};
  std::vector<SignalSetState*> sets;
};

Registry& registry() noexcept {
  static Registry* const r = new Registry;  // NOLINT: deliberately leaked (see above)
  return *r;
}

// The first set watching `signo` takes it over; the records say what to put back.
void acquire_locked(int signo) noexcept {
  SignalRecord& r = registry().records[static_cast<std::size_t>(signo)];
  if (r.watchers++ > 0) return;
#if defined(GALAY_SIGNALS_SIGNALFD)
  const sigset_t one = only(signo);
  sigset_t old;
  sigemptyset(&old);
  pthread_sigmask(SIG_BLOCK, &one, &old);
  r.was_blocked = sigismember(&old, signo) == 1;
  r.owner = pthread_self();
#else
  struct sigaction sa {};
  sa.sa_handler = ignore_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(signo, &sa, &r.previous);
#endif
}

// The last set watching `signo` puts back what the first one changed.
void release_locked(int signo) noexcept {
  SignalRecord& r = registry().records[static_cast<std::size_t>(signo)];
  if (r.watchers == 0 || --r.watchers > 0) return;
#if defined(GALAY_SIGNALS_SIGNALFD)
  // Only the thread that blocked it can unblock it; elsewhere it stays blocked (a pending
  // instance then waits harmlessly instead of running the default action).
  if (r.was_blocked || pthread_equal(r.owner, pthread_self()) == 0) return;
  // Instances that arrived for the sets and were never read are theirs: discard them, or
  // unblocking would hand them to the old disposition (for most signals: terminate).
  const sigset_t one = only(signo);
  const timespec zero{};
  while (sigtimedwait(&one, nullptr, &zero) == signo) {
  }
  pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
#else
  sigaction(signo, &r.previous, nullptr);
#endif
}

}  // namespace

Expected<std::unique_ptr<SignalSetState>> SignalSetState::open(std::span<const int> signals) noexcept {
  for (int signo : signals)
    if (!valid_signal(signo)) return Unexpected(errno_code(EINVAL));
  auto st = std::unique_ptr<SignalSetState>(new (std::nothrow) SignalSetState);
  if (!st) return Unexpected(errno_code(ENOMEM));
  if (auto opened = st->open_descriptors(); !opened) return Unexpected(opened.error());
  std::lock_guard lock(registry().mutex);
  registry().sets.push_back(st.get());
  st->registered = true;
  for (int signo : signals) st->watch_locked(signo);
  return st;
}

#if defined(GALAY_SIGNALS_SIGNALFD)

Expected<void> SignalSetState::open_descriptors() noexcept {
  sigset_t none;
  sigemptyset(&none);
  signal_fd = ::signalfd(-1, &none, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd < 0) return Unexpected(last_error());
  wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) return Unexpected(last_error());
  wait_fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (wait_fd < 0) return Unexpected(last_error());
  for (int fd : {signal_fd, wake_fd}) {
    epoll_event ev{};
    ev.events = EPOLLIN;  // level-triggered: readable while anything is left to read
    ev.data.fd = fd;
    if (::epoll_ctl(wait_fd, EPOLL_CTL_ADD, fd, &ev) < 0) return Unexpected(last_error());
  }
  return {};
}

void SignalSetState::update_kernel_locked(int /*signo*/, bool /*add*/) noexcept {
  // The signalfd's mask is replaced as a whole (signalfd(2) on an existing descriptor).
  ::signalfd(signal_fd, &watched, 0);
}

void SignalSetState::deliver_locked(int signo) noexcept {
  for (SignalSetState* s : registry().sets) {
    if (sigismember(&s->watched, signo) != 1) continue;
    s->note_locked(signo, 1);
    if (s != this) {
      const std::uint64_t one = 1;
      [[maybe_unused]] const ssize_t w = ::write(s->wake_fd, &one, sizeof one);  // EAGAIN: already awake
    }
  }
}

void SignalSetState::collect() noexcept {
  std::uint64_t woken = 0;
  [[maybe_unused]] const ssize_t r = ::read(wake_fd, &woken, sizeof woken);
  std::array<signalfd_siginfo, 16> info;
  for (;;) {
    const ssize_t n = ::read(signal_fd, info.data(), sizeof info);
    if (n < 0 && errno == EINTR) continue;
    if (n < static_cast<ssize_t>(sizeof(signalfd_siginfo))) return;  // EAGAIN: nothing left
    const auto count = static_cast<std::size_t>(n) / sizeof(signalfd_siginfo);
    std::lock_guard lock(registry().mutex);
    for (std::size_t i = 0; i < count; ++i) deliver_locked(static_cast<int>(info[i].ssi_signo));
  }
}

#else  // kqueue

Expected<void> SignalSetState::open_descriptors() noexcept {
  wait_fd = ::kqueue();
  if (wait_fd < 0) return Unexpected(last_error());
  return {};
}

void SignalSetState::update_kernel_locked(int signo, bool add) noexcept {
  struct kevent ev;
  EV_SET(&ev, static_cast<uintptr_t>(signo), EVFILT_SIGNAL, add ? EV_ADD : EV_DELETE, 0, 0, nullptr);
  const timespec zero{};
  ::kevent(wait_fd, &ev, 1, nullptr, 0, &zero);
}

void SignalSetState::collect() noexcept {
  std::array<struct kevent, 16> events;
  const timespec zero{};
  for (;;) {
    const int n = ::kevent(wait_fd, nullptr, 0, events.data(), static_cast<int>(events.size()), &zero);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    std::lock_guard lock(registry().mutex);
    for (int i = 0; i < n; ++i) {
      const auto& ev = events[static_cast<std::size_t>(i)];
      const auto signo = static_cast<int>(ev.ident);
      // data: deliveries since the last retrieval (EVFILT_SIGNAL is always EV_CLEAR).
      if (ev.filter == EVFILT_SIGNAL && sigismember(&watched, signo) == 1)
        note_locked(signo, static_cast<std::uint32_t>(std::clamp<std::int64_t>(ev.data, 1, UINT32_MAX)));
    }
    if (n < static_cast<int>(events.size())) return;
  }
}

#endif

void SignalSetState::watch_locked(int signo) noexcept {
  if (sigismember(&watched, signo) == 1) return;
  acquire_locked(signo);  // before the kernel object watches it: block (or install) first
  sigaddset(&watched, signo);
  update_kernel_locked(signo, true);
}

void SignalSetState::unwatch_locked(int signo) noexcept {
  if (sigismember(&watched, signo) != 1) return;
  sigdelset(&watched, signo);
  update_kernel_locked(signo, false);
  pending[static_cast<std::size_t>(signo)] = 0;
  release_locked(signo);
}

void SignalSetState::note_locked(int signo, std::uint32_t count) noexcept {
  std::uint32_t& p = pending[static_cast<std::size_t>(signo)];
  if (!is_realtime(signo)) {
    p = 1;  // a standard signal pending for the set is pending once, as in the kernel
  } else {
    p = count > std::numeric_limits<std::uint32_t>::max() - p ? std::numeric_limits<std::uint32_t>::max() : p + count;
  }
}

Expected<void> SignalSetState::add(int signo) noexcept {
  if (!valid_signal(signo)) return Unexpected(errno_code(EINVAL));
  std::lock_guard lock(registry().mutex);
  watch_locked(signo);
  return {};
}

Expected<void> SignalSetState::remove(int signo) noexcept {
  if (!valid_signal(signo)) return Unexpected(errno_code(EINVAL));
  std::lock_guard lock(registry().mutex);
  unwatch_locked(signo);
  return {};
}

bool SignalSetState::contains(int signo) const noexcept {
  if (!valid_signal(signo)) return false;
  std::lock_guard lock(registry().mutex);
  return sigismember(&watched, signo) == 1;
}

int SignalSetState::take() noexcept {
  std::lock_guard lock(registry().mutex);
  for (int signo = 1; signo < kSignalLimit; ++signo) {
    std::uint32_t& p = pending[static_cast<std::size_t>(signo)];
    if (p > 0) {
      --p;
      return signo;
    }
  }
  return 0;
}

void SignalSetState::close_all() noexcept {
  {
    std::lock_guard lock(registry().mutex);
    if (registered) {
      auto& sets = registry().sets;
      sets.erase(std::remove(sets.begin(), sets.end(), this), sets.end());
      registered = false;
    }
    for (int signo = 1; signo < kSignalLimit; ++signo) unwatch_locked(signo);
  }
  if (wait_fd >= 0) {
    // Through the scheduler that waited on it: its pending wait completes (cancelled) and
    // its backend forgets the number; a plain close would leave that state stale.
    if (sched != nullptr)
      sched->close_fd(wait_fd);
    else
      ::close(wait_fd);
    wait_fd = -1;
  }
#if defined(GALAY_SIGNALS_SIGNALFD)
  // Never registered with a backend (only with the private epoll set closed above).
  for (int* fd : {&signal_fd, &wake_fd}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
#endif
}

void SignalSetState::dispose(std::unique_ptr<SignalSetState> st) noexcept {
  if (!st) return;
  st->close_all();
  if (st->waiting) st.release()->orphaned = true;  // the waiting task frees it when it leaves
}

}  // namespace detail

// ---- block_signals ----

Expected<void> block_signals(std::initializer_list<int> signals) noexcept {
  sigset_t set;
  sigemptyset(&set);
  for (int signo : signals) {
    if (!detail::valid_signal(signo)) return Unexpected(errno_code(EINVAL));
    sigaddset(&set, signo);
  }
  std::lock_guard lock(detail::registry().mutex);
  if (const int e = pthread_sigmask(SIG_BLOCK, &set, nullptr); e != 0) return Unexpected(errno_code(e));
#if defined(GALAY_SIGNALS_SIGNALFD)
  // A set that blocked one of them in this thread must not unblock it when it goes.
  for (int signo : signals) {
    detail::SignalRecord& r = detail::registry().records[static_cast<std::size_t>(signo)];
    if (r.watchers > 0 && pthread_equal(r.owner, pthread_self()) != 0) r.was_blocked = true;
  }
#endif
  return {};
}

// ---- SignalWaitAwaitable ----

bool SignalWaitAwaitable::finish_now(CancelScope* scope) noexcept {
  detail::SignalSetState* st = state_;
  if (scope != nullptr && scope->cancelled()) {
    done_ = Unexpected(errno_code(static_cast<int>(scope->reason())));
    return true;
  }
  if (st == nullptr || st->closed()) {
    done_ = Unexpected(errno_code(EBADF));
    return true;
  }
  if (st->waiting) {
    done_ = Unexpected(errno_code(EBUSY));
    return true;
  }
  Scheduler* here = Scheduler::current();
  if (here == nullptr) {
    done_ = Unexpected(make_error_code(Error::not_bound_to_scheduler));
    return true;
  }
  if (st->sched == nullptr) st->sched = here;
  if (st->sched != here) {
    done_ = Unexpected(errno_code(EPERM));
    return true;
  }
  st->collect();
  if (const int signo = st->take(); signo != 0) {
    done_ = signo;
    return true;
  }
  if (timeout_.enabled() && timeout_.value <= std::chrono::nanoseconds::zero()) {
    done_ = Unexpected(errno_code(ETIMEDOUT));
    return true;
  }
  return false;
}

bool SignalWaitAwaitable::yield_for_budget(std::coroutine_handle<> h) noexcept {
  Scheduler* s = Scheduler::current();
  return s != nullptr && s->coop_yield(h);
}

Expected<int> SignalWaitAwaitable::await_resume() noexcept {
  if (slow_) return slow_->operator co_await().await_resume();
  return done_;
}

Task<Expected<int>> SignalWaitAwaitable::wait_slow() {
  detail::SignalSetState* st = state_;
  st->waiting = true;
  struct Leave {
    detail::SignalSetState* st;
    ~Leave() {
      st->waiting = false;
      if (st->orphaned) delete st;
    }
  } leave{st};
  const bool timed = timeout_.enabled();
  const auto deadline = timed ? deadline_after(Clock::now(), timeout_.value) : Clock::time_point{};
  for (;;) {
    Timeout limit;
    if (timed) {
      const auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero()) co_return Unexpected(errno_code(ETIMEDOUT));
      limit = Timeout(left);
    }
    auto woken = co_await VoidAwaitable(OpCode::poll_read, st->wait_fd, limit);
    if (!woken) co_return Unexpected(woken.error());
    if (st->closed()) co_return Unexpected(errno_code(ECANCELED));  // closed after the wakeup
    st->collect();
    if (const int signo = st->take(); signo != 0) co_return signo;
  }
}

// ---- SignalSet ----

SignalSet::SignalSet() noexcept = default;
SignalSet::SignalSet(std::unique_ptr<detail::SignalSetState> state) noexcept : state_(std::move(state)) {}
SignalSet::SignalSet(SignalSet&&) noexcept = default;
SignalSet& SignalSet::operator=(SignalSet&& o) noexcept {
  if (this != &o) {
    close();
    state_ = std::move(o.state_);
  }
  return *this;
}
SignalSet::~SignalSet() { close(); }

Expected<SignalSet> SignalSet::create(std::initializer_list<int> signals) noexcept {
  return create(std::span<const int>(signals.begin(), signals.size()));
}

Expected<SignalSet> SignalSet::create(std::span<const int> signals) noexcept {
  auto st = detail::SignalSetState::open(signals);
  if (!st) return Unexpected(st.error());
  return SignalSet(std::move(*st));
}

Expected<void> SignalSet::add(int signo) noexcept {
  if (!state_) return Unexpected(errno_code(EBADF));
  return state_->add(signo);
}

Expected<void> SignalSet::remove(int signo) noexcept {
  if (!state_) return Unexpected(errno_code(EBADF));
  return state_->remove(signo);
}

bool SignalSet::contains(int signo) const noexcept { return state_ && state_->contains(signo); }

void SignalSet::close() noexcept { detail::SignalSetState::dispose(std::move(state_)); }

}  // namespace galay
