// kqueue/kevent emulated on Linux epoll, so the kqueue backend can be built and tested here.
//
// Design
// - A kqueue is an epoll descriptor; its knotes live in a table keyed by that number. close(2)
//   is enough: the emulation opens no other per-kqueue descriptor, and state left behind by a
//   closed kqueue is dropped when kqueue() runs again or kevent() is handed the dead number.
// - Every watched fd has one epoll registration (EPOLLIN|EPOLLOUT|EPOLLRDHUP, edge-triggered)
//   fanning out to at most two knotes (READ, WRITE). Edges only mark knotes active, on a per-kq
//   pending list; whether a knote fires, and its data/flags, are decided by re-reading the fd's
//   state (poll/ioctl) when it is delivered, as BSD's kqueue_scan re-runs f_event. So an edge
//   consumed from epoll is never lost (it waits on the list when nevents is short), and level
//   behaviour is simply "a delivered knote without EV_CLEAR stays on the list".
// - EVFILT_USER wakes a blocked kevent() through one process-wide eventfd registered in every
//   kqueue (edge-triggered, never read, so no per-kqueue descriptor can leak). A write wakes
//   every kqueue blocked at that moment; those with nothing to deliver go back to waiting.
// - EVFILT_TIMER deadlines are kept in user space and bound the epoll_wait timeout, again so
//   that close(2) of the kqueue leaves no timer descriptors behind.
// - Knotes on an fd that was closed (and maybe reused) without EV_DELETE are dropped when the
//   fd's (st_dev, st_ino) no longer match, as BSD drops knotes on close; this keeps a stale
//   udata from ever being returned for a new file with the same number.

#include <sys/event.h>

#include <fcntl.h>
#include <linux/tcp.h>  // tcp_info with tcpi_bytes_acked etc. (glibc's is older)
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint16_t kKeptFlags = EV_CLEAR | EV_ONESHOT | EV_DISPATCH;
constexpr std::uint64_t kWakeTag = UINT64_MAX;  // epoll data of the shared wake eventfd
constexpr std::uint32_t kFdEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

struct FdEntry;

struct Knote {
  std::uintptr_t ident = 0;
  std::int16_t filter = 0;
  std::uint16_t flags = 0;  // EV_CLEAR/EV_ONESHOT/EV_DISPATCH as given at creation
  std::uint32_t sfflags = 0;
  std::intptr_t sdata = 0;
  void* udata = nullptr;
  bool enabled = true;
  bool queued = false;
  std::list<Knote*>::iterator qpos;
  std::uint64_t scan = 0;    // last scan that visited it: each knote at most once per call
  FdEntry* fde = nullptr;    // READ/WRITE
  bool triggered = false;    // USER
  Clock::duration period{};  // TIMER
  Clock::time_point next{};
  std::uint64_t fired = 0;
  bool armed = false;
};

struct FdEntry {
  int fd = -1;
  dev_t dev = 0;
  ino_t ino = 0;
  bool polled = true;  // false: epoll refuses the file (regular files): always ready
  std::unique_ptr<Knote> read, write;
};

struct Kq {
  explicit Kq(int fd) : epfd(fd) {}
  int epfd;
  std::mutex mu;
  std::unordered_map<int, FdEntry> fds;  // node-based: FdEntry addresses are stable
  std::map<std::uintptr_t, std::unique_ptr<Knote>> users, timers;
  std::list<Knote*> pending;
  std::uint64_t scans = 0;
  int waiters = 0;  // threads blocked in epoll_wait; changes then must wake them
};

std::mutex g_mu;
std::unordered_map<int, std::shared_ptr<Kq>> g_kqs;
int g_wake_fd = -1;

// True if `fd` is an epoll instance created by kqueue(): only those hold the wake eventfd.
// Needs g_mu. ADD on ours fails with EEXIST and changes nothing.
bool is_ours(int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = kWakeTag;
  if (epoll_ctl(fd, EPOLL_CTL_ADD, g_wake_fd, &ev) == 0) {
    epoll_ctl(fd, EPOLL_CTL_DEL, g_wake_fd, nullptr);  // someone else's epoll: undo
    return false;
  }
  return errno == EEXIST;
}

void wake_all() {
  std::uint64_t one = 1;
  // Never fails in practice: the counter would need 2^64 writes to saturate.
  [[maybe_unused]] ssize_t r = write(g_wake_fd, &one, sizeof one);
}

void enqueue(Kq& kq, Knote* kn) {
  if (!kn->queued && kn->enabled) {
    kn->qpos = kq.pending.insert(kq.pending.end(), kn);
    kn->queued = true;
  }
}

void dequeue(Kq& kq, Knote* kn) {
  if (kn->queued) {
    kq.pending.erase(kn->qpos);
    kn->queued = false;
  }
}

// Forget an fd's knotes; `deregister` is false when the number no longer names the file we
// registered (epoll already dropped that registration when the file was closed).
void drop_fd(Kq& kq, std::unordered_map<int, FdEntry>::iterator it, bool deregister) {
  FdEntry& e = it->second;
  if (e.read) dequeue(kq, e.read.get());
  if (e.write) dequeue(kq, e.write.get());
  if (deregister && e.polled) epoll_ctl(kq.epfd, EPOLL_CTL_DEL, e.fd, nullptr);
  kq.fds.erase(it);
}

void delete_knote(Kq& kq, Knote* kn) {
  dequeue(kq, kn);
  switch (kn->filter) {
    case EVFILT_READ:
    case EVFILT_WRITE: {
      FdEntry* e = kn->fde;
      (kn->filter == EVFILT_READ ? e->read : e->write).reset();
      if (!e->read && !e->write) drop_fd(kq, kq.fds.find(e->fd), true);
      break;
    }
    case EVFILT_USER:
      kq.users.erase(kn->ident);
      break;
    case EVFILT_TIMER:
      kq.timers.erase(kn->ident);
      break;
  }
}

// Timer period from data and the NOTE_* unit; BSD treats 0 as "1 unit" for periodic timers.
std::optional<Clock::duration> timer_period(const struct kevent& ch) {
  if (ch.data < 0) return std::nullopt;
  std::int64_t n = ch.data;
  if (n == 0 && !(ch.flags & EV_ONESHOT)) n = 1;
  std::int64_t unit_ns = 1'000'000;
  if (ch.fflags & NOTE_SECONDS)
    unit_ns = 1'000'000'000;
  else if (ch.fflags & NOTE_USECONDS)
    unit_ns = 1'000;
  else if (ch.fflags & NOTE_NSECONDS)
    unit_ns = 1;
  constexpr std::int64_t kMaxNs = INT64_MAX / 4;  // far enough to never fire, no overflow
  std::int64_t ns = n > kMaxNs / unit_ns ? kMaxNs : n * unit_ns;
  return std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns));
}

// Apply one change; returns 0 or an errno value.
int apply_change(Kq& kq, const struct kevent& ch) {
  Knote* kn = nullptr;
  bool created = false;
  switch (ch.filter) {
    case EVFILT_READ:
    case EVFILT_WRITE: {
      if (ch.ident > static_cast<std::uintptr_t>(INT_MAX)) return EBADF;
      int fd = static_cast<int>(ch.ident);
      struct stat st {};
      bool valid = fstat(fd, &st) == 0;
      auto it = kq.fds.find(fd);
      if (it != kq.fds.end() && (!valid || st.st_dev != it->second.dev || st.st_ino != it->second.ino)) {
        drop_fd(kq, it, false);  // closed since registered: BSD already dropped its knotes
        it = kq.fds.end();
      }
      if (!valid) return EBADF;
      if (it != kq.fds.end()) kn = (ch.filter == EVFILT_READ ? it->second.read : it->second.write).get();
      if (ch.flags & EV_DELETE) {
        if (!kn) return ENOENT;
        delete_knote(kq, kn);
        return 0;
      }
      if (!kn) {
        if (!(ch.flags & EV_ADD)) return ENOENT;
        if (it == kq.fds.end()) {
          FdEntry e;
          e.fd = fd;
          e.dev = st.st_dev;
          e.ino = st.st_ino;
          epoll_event ev{};
          ev.events = kFdEvents;
          ev.data.u64 = static_cast<std::uint64_t>(fd);
          if (epoll_ctl(kq.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            if (errno != EPERM) return errno;
            e.polled = false;  // regular file and the like: never blocks, like BSD vnodes
          }
          it = kq.fds.emplace(fd, std::move(e)).first;
        }
        auto& slot = ch.filter == EVFILT_READ ? it->second.read : it->second.write;
        slot = std::make_unique<Knote>();
        kn = slot.get();
        kn->fde = &it->second;
        created = true;
      }
      kn->sfflags = ch.fflags;  // stored, not interpreted (no NOTE_LOWAT)
      kn->sdata = ch.data;
      break;
    }
    case EVFILT_USER: {
      auto it = kq.users.find(ch.ident);
      if (it != kq.users.end()) kn = it->second.get();
      if (ch.flags & EV_DELETE) {
        if (!kn) return ENOENT;
        delete_knote(kq, kn);
        return 0;
      }
      if (!kn) {
        if (!(ch.flags & EV_ADD)) return ENOENT;
        kn = kq.users.emplace(ch.ident, std::make_unique<Knote>()).first->second.get();
        created = true;
      }
      std::uint32_t ff = ch.fflags & NOTE_FFLAGSMASK;
      switch (ch.fflags & NOTE_FFCTRLMASK) {
        case NOTE_FFAND:
          kn->sfflags &= ff;
          break;
        case NOTE_FFOR:
          kn->sfflags |= ff;
          break;
        case NOTE_FFCOPY:
          kn->sfflags = ff;
          break;
        default:
          break;  // NOTE_FFNOP
      }
      kn->sdata = ch.data;
      if (ch.fflags & NOTE_TRIGGER) kn->triggered = true;
      break;
    }
    case EVFILT_TIMER: {
      auto it = kq.timers.find(ch.ident);
      if (it != kq.timers.end()) kn = it->second.get();
      if (ch.flags & EV_DELETE) {
        if (!kn) return ENOENT;
        delete_knote(kq, kn);
        return 0;
      }
      if (!kn && !(ch.flags & EV_ADD)) return ENOENT;
      if (ch.flags & EV_ADD) {  // (re)start; EV_ENABLE/EV_DISABLE alone keep it running
        auto period = timer_period(ch);
        if (!period) return EINVAL;
        if (!kn) {
          kn = kq.timers.emplace(ch.ident, std::make_unique<Knote>()).first->second.get();
          created = true;
        }
        kn->period = *period;
        kn->next = Clock::now() + *period;
        kn->fired = 0;
        kn->armed = true;
        kn->sfflags = ch.fflags;
        kn->sdata = ch.data;
      }
      break;
    }
    default:
      return EINVAL;
  }
  if (created) {
    kn->ident = ch.ident;
    kn->filter = ch.filter;
    kn->flags = ch.flags & kKeptFlags;
    if (ch.filter == EVFILT_TIMER) kn->flags |= EV_CLEAR;  // timers always reset, as on BSD
  }
  kn->udata = ch.udata;  // BSD updates udata on every change to an existing knote
  if (ch.flags & EV_DISABLE) {
    kn->enabled = false;
    dequeue(kq, kn);
  } else if (ch.flags & (EV_ENABLE | EV_ADD)) {
    kn->enabled = true;
  }
  // Like BSD, every registration re-checks the knote; delivery decides if it really fires.
  enqueue(kq, kn);
  return 0;
}

// ECONNREFUSED or ECONNRESET for a TCP socket with a pending error, read from TCP_INFO rather
// than SO_ERROR: getsockopt(SO_ERROR) would clear the error the backend itself wants to read
// (BSD's filter reads so_error without clearing it). A connection that never synchronized
// (no RTT sample, nothing acked or received, only the RST came in) was refused.
std::uint32_t tcp_error_hint(int fd) {
  tcp_info ti{};
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return 0;  // not TCP
  bool never_synced = ti.tcpi_rtt == 0;
  if (len >= offsetof(tcp_info, tcpi_segs_out))  // kernels >= 4.1/4.2 report these
    never_synced = never_synced && ti.tcpi_bytes_acked == 0 && ti.tcpi_bytes_received == 0;
  if (len >= offsetof(tcp_info, tcpi_notsent_bytes)) never_synced = never_synced && ti.tcpi_segs_in <= 1;
  return never_synced ? ECONNREFUSED : ECONNRESET;
}

std::intptr_t read_avail(int fd) {
  int n = 0;
  if (ioctl(fd, FIONREAD, &n) == 0) return n;
  int listening = 0;
  socklen_t len = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening) {
    tcp_info ti{};  // on a listener tcpi_unacked is the accept-queue length
    len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_unacked > 0) return ti.tcpi_unacked;
  }
  return 1;  // readable, size unknown
}

std::intptr_t write_space(int fd) {
  int sndbuf = 0;
  socklen_t len = sizeof sndbuf;
  int used = 0;
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) == 0) {
    if (ioctl(fd, TIOCOUTQ, &used) != 0) used = 0;  // TIOCOUTQ == SIOCOUTQ
    return sndbuf > used ? sndbuf - used : 0;
  }
  int pipe_size = fcntl(fd, F_GETPIPE_SZ);
  if (pipe_size > 0) {
    if (ioctl(fd, FIONREAD, &used) != 0) used = 0;
    return pipe_size > used ? pipe_size - used : 0;
  }
  return 0;
}

bool is_socket(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
}

enum class Eval { deliver, drop, gone };

// Decide whether an active knote fires now and fill `out`. `gone`: the knote was deleted
// (its fd was closed), do not touch it again.
Eval evaluate(Kq& kq, Knote* kn, struct kevent& out) {
  out.ident = kn->ident;
  out.filter = kn->filter;
  out.flags = kn->flags;
  out.fflags = 0;
  out.data = 0;
  out.udata = kn->udata;
  switch (kn->filter) {
    case EVFILT_USER:
      if (!kn->triggered) return Eval::drop;
      out.fflags = kn->sfflags;
      out.data = kn->sdata;
      return Eval::deliver;
    case EVFILT_TIMER:
      if (kn->fired == 0) return Eval::drop;
      out.data = static_cast<std::intptr_t>(kn->fired);
      return Eval::deliver;
    default:
      break;
  }
  FdEntry* e = kn->fde;
  struct stat st {};
  if (fstat(e->fd, &st) != 0 || st.st_dev != e->dev || st.st_ino != e->ino) {
    drop_fd(kq, kq.fds.find(e->fd), false);
    return Eval::gone;
  }
  bool read = kn->filter == EVFILT_READ;
  if (!e->polled) {  // regular file: READ while unread bytes remain, WRITE always
    out.data = read ? read_avail(e->fd) : 0;
    return !read || out.data > 0 ? Eval::deliver : Eval::drop;
  }
  pollfd p{e->fd, POLLIN | POLLOUT | POLLRDHUP, 0};
  if (poll(&p, 1, 0) < 0) return Eval::drop;
  short r = p.revents;
  bool eof;
  if (read) {
    if (!(r & (POLLIN | POLLRDHUP | POLLHUP | POLLERR))) return Eval::drop;
    eof = r & (POLLRDHUP | POLLHUP);
    out.data = read_avail(e->fd);
  } else {
    if (!(r & (POLLOUT | POLLHUP | POLLERR))) return Eval::drop;
    // A socket error alone (e.g. ICMP on UDP) is not EOF; a pipe reports a gone reader as ERR.
    eof = (r & POLLHUP) || ((r & POLLERR) && !is_socket(e->fd));
    out.data = write_space(e->fd);
  }
  if (eof) {
    out.flags |= EV_EOF;
    if (r & POLLERR) out.fflags = tcp_error_hint(e->fd);
  }
  return Eval::deliver;
}

// Move up to `max` firing knotes into `out`.
int collect(Kq& kq, struct kevent* out, int max) {
  int n = 0;
  std::uint64_t scan = ++kq.scans;
  while (n < max && !kq.pending.empty()) {
    Knote* kn = kq.pending.front();
    if (kn->scan == scan) break;  // everything left was already visited in this call
    kn->scan = scan;
    dequeue(kq, kn);
    Eval ev = evaluate(kq, kn, out[n]);
    if (ev != Eval::deliver) continue;  // not firing: the next edge or change re-queues it
    ++n;
    if (kn->flags & EV_ONESHOT) {
      delete_knote(kq, kn);
      continue;
    }
    if (kn->filter == EVFILT_TIMER) kn->fired = 0;
    if (kn->flags & EV_DISPATCH) kn->enabled = false;
    if (kn->flags & EV_CLEAR) {
      if (kn->filter == EVFILT_USER) kn->triggered = false;
    } else {
      enqueue(kq, kn);  // level: re-checked on the next call
    }
  }
  return n;
}

// Count expirations of due timers and queue them; returns the earliest pending deadline.
std::optional<Clock::time_point> run_timers(Kq& kq, Clock::time_point now) {
  std::optional<Clock::time_point> earliest;
  for (auto& [id, kn] : kq.timers) {
    if (kn->armed && now >= kn->next) {
      if (kn->flags & EV_ONESHOT) {
        kn->fired = 1;
        kn->armed = false;
      } else {
        auto k = (now - kn->next) / kn->period + 1;
        kn->fired += static_cast<std::uint64_t>(k);
        kn->next += k * kn->period;
      }
      enqueue(kq, kn.get());
    }
    if (kn->armed && (!earliest || kn->next < *earliest)) earliest = kn->next;
  }
  return earliest;
}

void on_epoll_events(Kq& kq, const epoll_event* evs, int n) {
  for (int i = 0; i < n; ++i) {
    if (evs[i].data.u64 == kWakeTag) continue;  // only a wakeup; the pending list says why
    auto it = kq.fds.find(static_cast<int>(evs[i].data.u64));
    if (it == kq.fds.end()) continue;
    std::uint32_t r = evs[i].events;
    if (it->second.read && (r & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) enqueue(kq, it->second.read.get());
    if (it->second.write && (r & (EPOLLOUT | EPOLLHUP | EPOLLERR))) enqueue(kq, it->second.write.get());
  }
}

int fail(int err) {
  errno = err;
  return -1;
}

}  // namespace

extern "C" int kqueue(void) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return -1;
  std::lock_guard<std::mutex> g(g_mu);
  if (g_wake_fd < 0) {
    g_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (g_wake_fd < 0) {
      int err = errno;
      close(ep);
      return fail(err);
    }
  }
  g_kqs.erase(ep);  // the number was free, so any state under it is from a closed kqueue
  for (auto it = g_kqs.begin(); it != g_kqs.end();)  // drop state of other closed kqueues
    it = is_ours(it->first) ? std::next(it) : g_kqs.erase(it);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = kWakeTag;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, g_wake_fd, &ev) != 0) {
    int err = errno;
    close(ep);
    return fail(err);
  }
  g_kqs.emplace(ep, std::make_shared<Kq>(ep));
  return ep;
}

extern "C" size_t kqueue_emu_instances(void) {
  std::lock_guard<std::mutex> g(g_mu);
  for (auto it = g_kqs.begin(); it != g_kqs.end();) it = is_ours(it->first) ? std::next(it) : g_kqs.erase(it);
  return g_kqs.size();
}

extern "C" int kevent(int kqfd, const struct kevent* changelist, int nchanges, struct kevent* eventlist, int nevents,
                      const struct timespec* timeout) {
  if (nchanges < 0 || nevents < 0) return fail(EINVAL);
  if ((nchanges > 0 && !changelist) || (nevents > 0 && !eventlist)) return fail(EFAULT);
  if (timeout && (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000L)) return fail(EINVAL);

  std::shared_ptr<Kq> kqp;
  {
    std::lock_guard<std::mutex> g(g_mu);
    auto it = g_kqs.find(kqfd);
    if (it == g_kqs.end()) return fail(EBADF);
    if (!is_ours(kqfd)) {  // closed, maybe reused by another file: state is stale
      g_kqs.erase(it);
      return fail(EBADF);
    }
    kqp = it->second;
  }
  Kq& kq = *kqp;
  std::unique_lock<std::mutex> lk(kq.mu);

  // Changes first. Errors (and EV_RECEIPT) become EV_ERROR entries while there is room; with
  // no room the call fails with that errno. Either way, as on FreeBSD, a call that reported
  // such entries returns them without collecting events.
  int nout = 0;
  for (int i = 0; i < nchanges; ++i) {
    struct kevent ch = changelist[i];  // copy first: eventlist may alias changelist
    ch.flags &= static_cast<std::uint16_t>(~EV_SYSFLAGS);
    int err = apply_change(kq, ch);
    if (err || (ch.flags & EV_RECEIPT)) {
      if (nout >= nevents) {
        if (kq.waiters > 0) wake_all();
        if (err) return fail(err);
        return nout;
      }
      ch.flags = EV_ERROR;
      ch.data = err;
      eventlist[nout++] = ch;
    }
  }
  if (nchanges > 0 && kq.waiters > 0) wake_all();  // another thread waits: let it re-check
  if (nout > 0 || nevents == 0) return nout;

  std::optional<Clock::time_point> deadline;
  if (timeout)
    deadline = Clock::now() + std::chrono::seconds(timeout->tv_sec) + std::chrono::nanoseconds(timeout->tv_nsec);
  epoll_event evs[64];
  int wait_ms = 0;  // the first pass only drains epoll: merges edges with queued knotes
  for (;;) {
    int n;
    if (wait_ms == 0) {
      n = epoll_wait(kq.epfd, evs, 64, 0);
    } else {
      ++kq.waiters;  // under the lock, so a change made after our check will wake us
      lk.unlock();
      n = epoll_wait(kq.epfd, evs, 64, wait_ms);
      int err = errno;
      lk.lock();
      --kq.waiters;
      errno = err;
    }
    if (n < 0 && errno != EINTR) return fail(EBADF);  // the kqueue was closed under us
    bool interrupted = n < 0;
    if (n > 0) on_epoll_events(kq, evs, n);
    Clock::time_point now = Clock::now();
    std::optional<Clock::time_point> until = run_timers(kq, now);
    int got = collect(kq, eventlist, nevents);
    if (got > 0) return got;
    if (interrupted) return fail(EINTR);
    if (deadline && now >= *deadline) return 0;
    // Sleep until the earlier of the caller's deadline and the next timer, in whole ms
    // rounded up so that a timer is never found not yet due.
    if (deadline && (!until || *deadline < *until)) until = deadline;
    wait_ms = -1;
    if (until) {
      auto ms = std::chrono::ceil<std::chrono::milliseconds>(*until - now).count();
      wait_ms = ms <= 0 ? 0 : ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
    }
  }
}
