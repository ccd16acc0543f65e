#include "galay-kernel/ipc/ipc_channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <new>
#include <utility>

#include "galay-kernel/common/detail/memory_policy.h"
#include "galay-kernel/common/error.h"
#include "galay-kernel/runtime/scheduler.h"

namespace galay {
namespace detail {
namespace {

constexpr std::uint64_t kMagic = 0x6761'6c61'7949'5043ULL;  // "galayIPC"
constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kDataOffset = 4096;  // the ring starts on its own page
constexpr std::size_t kMinCapacity = 4096;
constexpr std::size_t kMaxCapacity = std::size_t{1} << 30;
constexpr std::size_t kRecordHeader = sizeof(std::uint32_t);

enum FdIndex : std::size_t { kMemory = 0, kDataEvent = 1, kSpaceEvent = 2, kLink = 3 };

// IpcShared::memory: what the creator asked of each end's mapping (low byte), and what
// became of its huge-page request (second byte), so both ends can describe it.
enum MemoryFlags : std::uint32_t { kPopulate = 1, kLock = 2 };
enum HugeNote : std::uint32_t { kHugeNotAsked = 0, kHugeUsed, kHugeTooSmall, kHugeAbsent, kHugeNoneFree, kHugeRefused };

// The header both processes map. Each field group that one side writes often has its own
// cache line, so the sender's head updates do not evict the receiver's tail and vice versa.
struct alignas(64) IpcShared {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t memory;    // MemoryFlags and a HugeNote, set by make_ipc_channel (0 in older rings: no request)
  std::uint64_t capacity;  // bytes in the ring, a power of two
  alignas(64) std::atomic<std::uint64_t> head;               // bytes ever written (sender)
  alignas(64) std::atomic<std::uint64_t> tail;               // bytes ever consumed (receiver)
  alignas(64) std::atomic<std::uint32_t> receiver_sleeping;  // set by the receiver, cleared by whoever wakes it
  alignas(64) std::atomic<std::uint32_t> sender_sleeping;
  alignas(64) std::atomic<std::uint32_t> sender_closed;
  std::atomic<std::uint32_t> receiver_closed;
};
static_assert(sizeof(IpcShared) <= kDataOffset);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::uint32_t>::is_always_lock_free,
              "the shared header needs address-free atomics");

std::error_code last_error() noexcept { return errno_code(errno); }

void close_fd(int& fd) noexcept {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

// One end of a channel. Heap-allocated so that the senders/receivers that own it can move
// while a slow-path task holds its address.
struct IpcEndpoint {
  bool is_sender = false;
  IpcEndpointFiles files;
  IpcShared* shared = nullptr;
  std::byte* ring = nullptr;
  std::uint64_t mask = 0;
  std::size_t map_size = 0;
  std::string memory_description;    // this end's mapping, in MappedMemory's words
  int wait_fd = -1;                  // epoll set {own eventfd, link}: readable on a wakeup or a peer gone
  Scheduler* wait_sched = nullptr;   // the scheduler that registered wait_fd (closes it)
  std::uint64_t position = 0;        // sender: head; receiver: tail (only this end writes it)
  std::uint64_t seen_other = 0;      // sender: last tail read; receiver: last head read
  std::chrono::nanoseconds spin{0};  // receiver only
  bool waiting = false;              // a coroutine is in the slow path
  bool orphaned = false;             // the owner went away while waiting: the slow path deletes this

  ~IpcEndpoint() { release(); }

  int own_event() const noexcept { return files.fds_[is_sender ? kSpaceEvent : kDataEvent]; }
  int peer_event() const noexcept { return files.fds_[is_sender ? kDataEvent : kSpaceEvent]; }
  std::atomic<std::uint32_t>& own_sleeping() noexcept {
    return is_sender ? shared->sender_sleeping : shared->receiver_sleeping;
  }
  std::atomic<std::uint32_t>& peer_sleeping() noexcept {
    return is_sender ? shared->receiver_sleeping : shared->sender_sleeping;
  }
  std::size_t max_message() const noexcept { return static_cast<std::size_t>(mask + 1) / 2; }

  static Expected<std::unique_ptr<IpcEndpoint>> open(IpcEndpointFiles&& files, bool sender) noexcept {
    if (!files.valid()) return Unexpected(errno_code(EBADF));
    auto ep = std::unique_ptr<IpcEndpoint>(new (std::nothrow) IpcEndpoint);
    if (!ep) return Unexpected(errno_code(ENOMEM));
    ep->is_sender = sender;
    ep->files = std::move(files);
    struct stat st {};
    if (::fstat(ep->files.fds_[kMemory], &st) < 0) return Unexpected(last_error());
    const auto size = static_cast<std::size_t>(st.st_size);
    if (size < kDataOffset + kMinCapacity) return Unexpected(errno_code(EINVAL));
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, ep->files.fds_[kMemory], 0);
    if (p == MAP_FAILED) return Unexpected(last_error());
    const auto* header = static_cast<const IpcShared*>(p);
    const std::uint64_t cap = header->capacity;
    const std::uint32_t memory = header->memory;
    const std::uint32_t huge_note = memory >> 8 & 0xff;
    // A hugetlb memfd is whole huge pages: the ring may end before the file does.
    const std::size_t slack = huge_note == kHugeUsed ? MappedMemory::huge_page_size() : 1;
    if (header->magic != kMagic || header->version != kVersion || cap < kMinCapacity || (cap & (cap - 1)) != 0 ||
        cap > size - kDataOffset || size - kDataOffset - cap >= slack || huge_note > kHugeRefused) {
      ::munmap(p, size);  // not a channel: leave it untouched
      return Unexpected(errno_code(EINVAL));
    }
    ep->prepare_memory(p, size, cap, memory);
    ep->map_size = size;
    ep->shared = static_cast<IpcShared*>(p);
    ep->ring = static_cast<std::byte*>(p) + kDataOffset;
    ep->mask = cap - 1;
    ep->position =
        sender ? ep->shared->head.load(std::memory_order_acquire) : ep->shared->tail.load(std::memory_order_acquire);
    ep->seen_other =
        sender ? ep->shared->tail.load(std::memory_order_acquire) : ep->shared->head.load(std::memory_order_acquire);

    ep->wait_fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep->wait_fd < 0) return Unexpected(last_error());
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = ep->own_event();
    if (::epoll_ctl(ep->wait_fd, EPOLL_CTL_ADD, ep->own_event(), &ev) < 0) return Unexpected(last_error());
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.fd = ep->files.fds_[kLink];
    if (::epoll_ctl(ep->wait_fd, EPOLL_CTL_ADD, ep->files.fds_[kLink], &ev) < 0) return Unexpected(last_error());
    return ep;
  }

  // Copy `n` bytes into the ring at absolute position `pos`, wrapping at the end.
  void copy_in(std::uint64_t pos, const void* src, std::size_t n) noexcept {
    const std::size_t at = static_cast<std::size_t>(pos & mask);
    const std::size_t first = std::min(n, static_cast<std::size_t>(mask + 1) - at);
    std::memcpy(ring + at, src, first);
    if (n > first) std::memcpy(ring, static_cast<const std::byte*>(src) + first, n - first);
  }
  void copy_out(std::uint64_t pos, void* dst, std::size_t n) const noexcept {
    const std::size_t at = static_cast<std::size_t>(pos & mask);
    const std::size_t first = std::min(n, static_cast<std::size_t>(mask + 1) - at);
    std::memcpy(dst, ring + at, first);
    if (n > first) std::memcpy(static_cast<std::byte*>(dst) + first, ring, n - first);
  }

  // Dekker's pattern: the other side stored its sleeping flag and then re-checked the ring
  // after a full fence; we published the ring and fence before reading the flag. At least
  // one of the two sees the other's store, so a sleeper is never missed, and the eventfd is
  // written only when the peer announced that it may sleep.
  void wake_peer() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    std::atomic<std::uint32_t>& flag = peer_sleeping();
    if (flag.load(std::memory_order_relaxed) != 0 && flag.exchange(0, std::memory_order_acq_rel) != 0) {
      const std::uint64_t one = 1;
      [[maybe_unused]] ssize_t r = ::write(peer_event(), &one, sizeof(one));
    }
  }

  void announce_sleep() noexcept {
    if (shared == nullptr) return;
    own_sleeping().store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  void cancel_sleep() noexcept {
    if (shared != nullptr) own_sleeping().store(0, std::memory_order_relaxed);
  }
  void drain_own_event() const noexcept {
    std::uint64_t count = 0;
    [[maybe_unused]] ssize_t r = ::read(own_event(), &count, sizeof(count));
  }
  // Nothing is ever sent on the link, so any readability means the other end closed.
  bool peer_gone() const noexcept {
    if (files.fds_[kLink] < 0) return true;
    pollfd p{files.fds_[kLink], POLLIN | POLLRDHUP, 0};
    return ::poll(&p, 1, 0) > 0 && p.revents != 0;
  }

  Expected<void> try_send(std::span<const std::byte> msg) noexcept {
    if (shared == nullptr) return Unexpected(errno_code(EBADF));
    if (msg.size() > max_message()) return Unexpected(errno_code(EMSGSIZE));
    if (shared->receiver_closed.load(std::memory_order_acquire) != 0) return Unexpected(errno_code(EPIPE));
    const std::uint64_t need = kRecordHeader + msg.size();
    const std::uint64_t capacity = mask + 1;
    if (capacity - (position - seen_other) < need) {
      seen_other = shared->tail.load(std::memory_order_acquire);
      // The receiver cannot have read past what was written: a ring that says so is corrupt.
      if (seen_other > position || position - seen_other > capacity) return Unexpected(errno_code(EBADMSG));
      if (capacity - (position - seen_other) < need) return Unexpected(errno_code(EAGAIN));
    }
    const auto len = static_cast<std::uint32_t>(msg.size());
    copy_in(position, &len, kRecordHeader);
    if (!msg.empty()) copy_in(position + kRecordHeader, msg.data(), msg.size());
    position += need;
    shared->head.store(position, std::memory_order_release);
    wake_peer();
    return {};
  }

  // The record at the tail, validated: its payload size, or why there is none.
  Expected<std::size_t> peek() noexcept {
    if (shared == nullptr) return Unexpected(errno_code(EBADF));
    if (position == seen_other) {
      seen_other = shared->head.load(std::memory_order_acquire);
      if (position == seen_other) {
        if (shared->sender_closed.load(std::memory_order_acquire) == 0) return Unexpected(errno_code(EAGAIN));
        // The sender publishes its last record before it sets the flag.
        seen_other = shared->head.load(std::memory_order_acquire);
        if (position == seen_other) return Unexpected(make_error_code(Error::channel_closed));
      }
    }
    const std::uint64_t available = seen_other - position;
    std::uint32_t len = 0;
    if (available < kRecordHeader || available > mask + 1) return Unexpected(errno_code(EBADMSG));
    copy_out(position, &len, kRecordHeader);
    if (len > max_message() || kRecordHeader + std::uint64_t{len} > available) return Unexpected(errno_code(EBADMSG));
    return std::size_t{len};
  }

  Expected<std::size_t> try_recv(std::span<std::byte> buf) noexcept {
    auto len = peek();
    if (!len) return len;
    if (*len > buf.size()) return Unexpected(errno_code(EMSGSIZE));
    if (*len != 0) copy_out(position + kRecordHeader, buf.data(), *len);
    position += kRecordHeader + *len;
    shared->tail.store(position, std::memory_order_release);
    wake_peer();
    return len;
  }

  // Close an end. A coroutine still sleeping on it (the owner was destroyed under it) is
  // woken with operation_canceled and frees the end when it leaves.
  static void dispose(std::unique_ptr<IpcEndpoint> ep) noexcept {
    if (!ep) return;
    if (!ep->waiting) return;  // ~unique_ptr releases it
    IpcEndpoint* raw = ep.release();
    raw->orphaned = true;
    raw->release();
  }

  void mark_closed() noexcept {
    if (shared == nullptr) return;
    (is_sender ? shared->sender_closed : shared->receiver_closed).store(1, std::memory_order_release);
    // Wake the peer whether or not it announced sleep: it may be about to.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    peer_sleeping().store(0, std::memory_order_relaxed);
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t r = ::write(peer_event(), &one, sizeof(one));
  }

  // Fault every page of this end's mapping in now. Reads only, where MADV_POPULATE_WRITE
  // (Linux 5.14) is missing: the peer may already be writing the ring.
  static void prefault(void* p, std::size_t size) noexcept {
#if defined(MADV_POPULATE_WRITE)
    if (::madvise(p, size, MADV_POPULATE_WRITE) == 0) return;
#endif
    const auto* bytes = static_cast<const volatile std::byte*>(p);
    for (std::size_t off = 0; off < size; off += 4096) (void)bytes[off];
  }

  // Pre-fault and lock this end's mapping as the creator asked, and say what it got.
  void prepare_memory(void* p, std::size_t size, std::uint64_t cap, std::uint32_t memory) {
    const std::uint32_t note = memory >> 8 & 0xff;
    const bool huge = note == kHugeUsed;
    std::string huge_text;
    if (note == kHugeTooSmall) huge_text = detail::huge_page_too_small(kDataOffset + cap);
    if (note == kHugeAbsent) huge_text = detail::huge_page_absent();
    if (note == kHugeNoneFree) huge_text = detail::huge_page_refusal(ENOMEM);
    if (note == kHugeRefused) huge_text = "huge pages: refused by memfd_create or mmap";
    const bool populate = (memory & kPopulate) != 0;
    if (populate) prefault(p, size);
    bool locked = false;
    const std::string lock_note = (memory & kLock) != 0 ? lock_pages(p, size, locked) : "not locked (not asked)";
    memory_description = describe_mapping(
        size, huge ? MappedMemory::huge_page_size() : static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)), huge,
        huge_text, populate, lock_note);
  }

  void release() noexcept {
    mark_closed();
    if (wait_fd >= 0) {
      // Through the scheduler that registered it (its pending wait completes, cancelled),
      // also when destroyed outside its loop (after block_on returned): a plain close
      // would leave that backend's state for the number stale for the next fd that gets it.
      if (wait_sched != nullptr)
        wait_sched->close_fd(wait_fd);
      else
        ::close(wait_fd);
      wait_fd = -1;
    }
    if (shared != nullptr) ::munmap(shared, map_size);
    shared = nullptr;
    files.close();
  }
};

// Why an end cannot start an operation now: closed (EBADF), or another coroutine of this
// process is already waiting on it (EBUSY: one sender and one receiver at a time).
std::error_code unusable(const IpcEndpoint* ep) noexcept {
  if (ep == nullptr || ep->shared == nullptr) return errno_code(EBADF);
  if (ep->waiting) return errno_code(EBUSY);
  return {};
}

// The slow path of send and recv: announce sleep, retry `attempt`, sleep on the eventfd
// (or the link), until `attempt` stops saying "try again", the peer is gone or the time is
// up. The end is freed here if its owner was destroyed meanwhile (IpcEndpoint::dispose()).
template <class T, class Attempt>
Task<Expected<T>> wait_until_done(IpcEndpoint* ep, Timeout timeout, Attempt attempt) {
  ep->waiting = true;
  struct ClearWaiting {
    IpcEndpoint* ep;
    ~ClearWaiting() {
      ep->waiting = false;
      if (ep->orphaned) delete ep;
    }
  } clear{ep};
  const bool timed = timeout.enabled();
  const auto deadline = timed ? deadline_after(Clock::now(), timeout.value) : Clock::time_point{};
  bool woken = false;
  for (;;) {
    ep->announce_sleep();
    Expected<T> done = attempt();
    if (done || done.error() != std::errc::resource_unavailable_try_again) {
      ep->cancel_sleep();
      co_return done;
    }
    if (woken && ep->peer_gone()) {  // a wakeup with nothing to do: maybe the link closed
      ep->cancel_sleep();
      co_return Unexpected(errno_code(ECONNRESET));
    }
    // Sleep until the own eventfd or the link is readable, or the time runs out.
    Timeout limit;
    if (timed) {
      const auto left = deadline - Clock::now();
      if (left <= std::chrono::nanoseconds::zero()) {
        ep->cancel_sleep();
        co_return Unexpected(errno_code(ETIMEDOUT));
      }
      limit = Timeout(left);
    }
    if (ep->wait_sched == nullptr) ep->wait_sched = Scheduler::current();
    auto slept = co_await VoidAwaitable(OpCode::poll_read, ep->wait_fd, limit);
    ep->drain_own_event();
    if (!slept) {
      ep->cancel_sleep();
      co_return Unexpected(slept.error());
    }
    woken = true;
  }
}

}  // namespace detail

// ---- IpcEndpointFiles ----

IpcEndpointFiles::IpcEndpointFiles(IpcEndpointFiles&& o) noexcept : fds_(std::exchange(o.fds_, {-1, -1, -1, -1})) {}

IpcEndpointFiles& IpcEndpointFiles::operator=(IpcEndpointFiles&& o) noexcept {
  if (this != &o) {
    close();
    fds_ = std::exchange(o.fds_, {-1, -1, -1, -1});
  }
  return *this;
}

void IpcEndpointFiles::close() noexcept {
  for (int& fd : fds_) detail::close_fd(fd);
}

Expected<IpcEndpointFiles> IpcEndpointFiles::adopt(std::span<const int> fds) noexcept {
  IpcEndpointFiles f;
  const bool complete = fds.size() == kCount;
  for (std::size_t i = 0; i < fds.size(); ++i) {
    if (complete && fds[i] >= 0) {
      f.fds_[i] = fds[i];
    } else if (fds[i] >= 0) {
      ::close(fds[i]);
    }
  }
  if (!complete || std::find(f.fds_.begin(), f.fds_.end(), -1) != f.fds_.end()) return Unexpected(errno_code(EINVAL));
  return f;
}

Expected<IpcChannelFiles> make_ipc_channel(std::size_t capacity, const MemoryOptions& memory) noexcept {
  using namespace detail;
  if (capacity > kMaxCapacity) return Unexpected(errno_code(EINVAL));
  std::size_t cap = kMinCapacity;
  while (cap < capacity) cap <<= 1;

  IpcChannelFiles out;
  auto& s = out.sender.fds_;
  auto& r = out.receiver.fds_;
  // Huge pages first when asked and the ring fills at least one; the file is then whole
  // huge pages. The mapping below reserves them: no free ones is ENOMEM there.
  std::uint32_t huge_note = kHugeNotAsked;
  std::size_t size = kDataOffset + cap;
  void* p = MAP_FAILED;
  if (memory.huge_pages) {
    const std::size_t huge = MappedMemory::huge_page_size();
    huge_note = huge == 0 ? kHugeAbsent : size < huge ? kHugeTooSmall : kHugeUsed;
#if defined(MFD_HUGETLB)
    if (huge_note == kHugeUsed) {
      const std::size_t huge_size = (size + huge - 1) / huge * huge;
      s[kMemory] = ::memfd_create("galay-ipc", MFD_CLOEXEC | MFD_HUGETLB);
      if (s[kMemory] >= 0 && ::ftruncate(s[kMemory], static_cast<off_t>(huge_size)) == 0)
        p = ::mmap(nullptr, huge_size, PROT_READ | PROT_WRITE, MAP_SHARED, s[kMemory], 0);
      if (p != MAP_FAILED) {
        size = huge_size;
      } else {
        huge_note = errno == ENOMEM ? kHugeNoneFree : kHugeRefused;
        close_fd(s[kMemory]);
      }
    }
#else
    if (huge_note == kHugeUsed) huge_note = kHugeRefused;
#endif
  }
  if (p == MAP_FAILED) {
    s[kMemory] = ::memfd_create("galay-ipc", MFD_CLOEXEC);
    if (s[kMemory] < 0) return Unexpected(last_error());
    if (::ftruncate(s[kMemory], static_cast<off_t>(size)) < 0) return Unexpected(last_error());
    p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, s[kMemory], 0);
    if (p == MAP_FAILED) return Unexpected(last_error());
  }
  auto* shared = new (p) IpcShared{};
  shared->magic = kMagic;
  shared->version = kVersion;
  shared->capacity = cap;
  shared->memory = (memory.populate ? kPopulate : 0u) | (memory.lock ? kLock : 0u) | huge_note << 8;
  ::munmap(p, size);

  s[kDataEvent] = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  s[kSpaceEvent] = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s[kDataEvent] < 0 || s[kSpaceEvent] < 0) return Unexpected(last_error());
  int link[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, link) < 0) return Unexpected(last_error());
  s[kLink] = link[0];
  r[kLink] = link[1];
  for (std::size_t i : {std::size_t{kMemory}, std::size_t{kDataEvent}, std::size_t{kSpaceEvent}}) {
    r[i] = ::fcntl(s[i], F_DUPFD_CLOEXEC, 0);
    if (r[i] < 0) return Unexpected(last_error());
  }
  return out;
}

// ---- awaitables ----

bool IpcSendAwaitable::await_ready() noexcept {
  if (const std::error_code ec = detail::unusable(ep_)) {
    done_ = Unexpected(ec);
    return true;
  }
  done_ = ep_->try_send(msg_);
  return done_ || done_.error() != std::errc::resource_unavailable_try_again;
}

Expected<void> IpcSendAwaitable::await_resume() noexcept {
  if (slow_) return slow_->operator co_await().await_resume();
  return done_;
}

Task<Expected<void>> IpcSendAwaitable::wait_and_send() {
  return detail::wait_until_done<void>(ep_, timeout_, [this] { return ep_->try_send(msg_); });
}

bool IpcRecvAwaitable::await_ready() noexcept {
  if (const std::error_code ec = detail::unusable(ep_)) {
    done_ = Unexpected(ec);
    return true;
  }
  done_ = ep_->try_recv(buf_);
  if (!done_ && done_.error() == std::errc::resource_unavailable_try_again && ep_->spin.count() > 0) {
    const auto until = deadline_after(Clock::now(), ep_->spin);
    for (unsigned i = 1;; ++i) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      if (ep_->shared->head.load(std::memory_order_relaxed) != ep_->position ||
          ep_->shared->sender_closed.load(std::memory_order_relaxed) != 0) {
        done_ = ep_->try_recv(buf_);
        break;
      }
      if (i % 64 == 0 && Clock::now() >= until) break;
    }
  }
  return done_ || done_.error() != std::errc::resource_unavailable_try_again;
}

Expected<std::size_t> IpcRecvAwaitable::await_resume() noexcept {
  if (slow_) return slow_->operator co_await().await_resume();
  return done_;
}

Task<Expected<std::size_t>> IpcRecvAwaitable::wait_and_recv() {
  return detail::wait_until_done<std::size_t>(ep_, timeout_, [this] { return ep_->try_recv(buf_); });
}

// ---- IpcSender / IpcReceiver ----

IpcSender::IpcSender(std::unique_ptr<detail::IpcEndpoint> ep) noexcept : ep_(std::move(ep)) {}
IpcSender::IpcSender(IpcSender&&) noexcept = default;
IpcSender& IpcSender::operator=(IpcSender&& o) noexcept {
  if (this != &o) {
    close();
    ep_ = std::move(o.ep_);
  }
  return *this;
}
IpcSender::~IpcSender() { close(); }

Expected<IpcSender> IpcSender::open(IpcEndpointFiles&& files) noexcept {
  auto ep = detail::IpcEndpoint::open(std::move(files), true);
  if (!ep) return Unexpected(ep.error());
  return IpcSender(std::move(*ep));
}
Expected<void> IpcSender::try_send(std::span<const std::byte> msg) noexcept {
  if (!ep_) return Unexpected(errno_code(EBADF));
  return ep_->try_send(msg);
}
std::size_t IpcSender::max_message_size() const noexcept { return ep_ ? ep_->max_message() : 0; }

std::string IpcSender::memory_description() const { return ep_ ? ep_->memory_description : std::string(); }
void IpcSender::close() noexcept { detail::IpcEndpoint::dispose(std::move(ep_)); }

IpcReceiver::IpcReceiver(std::unique_ptr<detail::IpcEndpoint> ep) noexcept : ep_(std::move(ep)) {}
IpcReceiver::IpcReceiver(IpcReceiver&&) noexcept = default;
IpcReceiver& IpcReceiver::operator=(IpcReceiver&& o) noexcept {
  if (this != &o) {
    close();
    ep_ = std::move(o.ep_);
  }
  return *this;
}
IpcReceiver::~IpcReceiver() { close(); }

Expected<IpcReceiver> IpcReceiver::open(IpcEndpointFiles&& files, IpcReceiverOptions options) noexcept {
  auto ep = detail::IpcEndpoint::open(std::move(files), false);
  if (!ep) return Unexpected(ep.error());
  (*ep)->spin = options.spin;
  return IpcReceiver(std::move(*ep));
}
Expected<std::size_t> IpcReceiver::try_recv(std::span<std::byte> buf) noexcept {
  if (!ep_) return Unexpected(errno_code(EBADF));
  return ep_->try_recv(buf);
}
std::string IpcReceiver::memory_description() const { return ep_ ? ep_->memory_description : std::string(); }

std::optional<std::size_t> IpcReceiver::next_message_size() noexcept {
  if (!ep_) return std::nullopt;
  auto len = ep_->peek();
  if (!len) return std::nullopt;
  return *len;
}
void IpcReceiver::close() noexcept { detail::IpcEndpoint::dispose(std::move(ep_)); }

}  // namespace galay
