#include "galay-kernel/io/io_uring/io_uring_backend.h"

#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "galay-kernel/runtime/detail/blocking_pool.h"
#include "galay-kernel/runtime/detail/chaos.h"
#include "galay-kernel/runtime/detail/live_metrics.h"
#include "galay-kernel/io/fault_injection.h"
#include "galay-kernel/io/detail/wait_list.h"
#include "galay-kernel/io/ops/op_kind.h"

namespace galay {
namespace {

// user_data: an IoOp's address, or one of these tags for the backend's own SQEs (compared
// exactly, first). IoOps are at least 8-byte aligned, so small integers never collide.
constexpr std::uint64_t kTagIgnore = 1;    // cancel requests, close-on-destroy: result unused
constexpr std::uint64_t kTagWake = 2;      // the eventfd read that wakes the loop
constexpr std::uint64_t kTagRingWake = 4;  // a MSG_RING wakeup from another scheduler's ring

// The most bytes one registered buffer may span (the kernel's limit is 1 GiB); a larger
// RegisteredBuffers region is registered as several table entries of this size.
constexpr std::size_t kFixedChunk = std::size_t{1} << 30;
// Slots in the registered-file table (FdOwner::register_file): 8 bytes each in the kernel.
constexpr unsigned kFileSlots = 4096;

// A SEND_ZC op's IoOp::backend_word: notifications still due (low bits), and whether the
// send itself has finished (its result then waits in IoOp::aux for the last notification).
constexpr std::uint32_t kZcSendFinished = 1u << 31;
constexpr std::uint32_t kZcNotifsDue = kZcSendFinished - 1;
// A multishot recv or accept: its MultishotState's address with this low bit set.
constexpr std::uint64_t kMultishotBit = 1;

std::string flags_to_string(unsigned flags) {
  std::string s;
  auto add = [&](unsigned bit, const char* name) {
    if (flags & bit) s += s.empty() ? name : std::string("|") + name;
  };
  add(IORING_SETUP_SQPOLL, "SQPOLL");
  add(IORING_SETUP_SQ_AFF, "SQ_AFF");
  add(IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER");
  add(IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN");
  add(IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN");
  add(IORING_SETUP_TASKRUN_FLAG, "TASKRUN_FLAG");
  add(IORING_SETUP_SUBMIT_ALL, "SUBMIT_ALL");
  add(IORING_SETUP_CQSIZE, "CQSIZE");
  return s.empty() ? "none" : s;
}

// The opcodes the backend issues; the probe refuses kernels that lack one.
constexpr int kRequiredOps[] = {IORING_OP_ACCEPT,    IORING_OP_CONNECT, IORING_OP_RECV,   IORING_OP_SEND,
                                IORING_OP_READV,     IORING_OP_WRITEV,  IORING_OP_CLOSE,  IORING_OP_ASYNC_CANCEL,
                                IORING_OP_POLL_ADD,  IORING_OP_READ,    IORING_OP_WRITE,  IORING_OP_FSYNC,
                                IORING_OP_FALLOCATE, IORING_OP_SENDMSG, IORING_OP_RECVMSG};

const char* op_name(int op) {
  switch (op) {
    case IORING_OP_ACCEPT:
      return "ACCEPT";
    case IORING_OP_CONNECT:
      return "CONNECT";
    case IORING_OP_RECV:
      return "RECV";
    case IORING_OP_SEND:
      return "SEND";
    case IORING_OP_READV:
      return "READV";
    case IORING_OP_WRITEV:
      return "WRITEV";
    case IORING_OP_CLOSE:
      return "CLOSE";
    case IORING_OP_ASYNC_CANCEL:
      return "ASYNC_CANCEL";
    case IORING_OP_POLL_ADD:
      return "POLL_ADD";
    case IORING_OP_READ:
      return "READ";
    case IORING_OP_WRITE:
      return "WRITE";
    case IORING_OP_FSYNC:
      return "FSYNC";
    case IORING_OP_FALLOCATE:
      return "FALLOCATE";
    case IORING_OP_SENDMSG:
      return "SENDMSG";
    case IORING_OP_RECVMSG:
      return "RECVMSG";
  }
  return "?";
}

// Why io_uring can't be used here, or "" if it can.
std::string probe_io_uring() {
  if (const char* inject = std::getenv("GALAY_KERNEL_IO_URING_PROBE_ERRNO"); inject && *inject) {
    // Test hook: pretend io_uring_setup failed with this errno.
    return std::string("io_uring_setup: ") + std::strerror(std::atoi(inject)) + " (injected)";
  }
  io_uring ring;
  int r = io_uring_queue_init(8, &ring, 0);
  if (r < 0) {
    std::string why = std::string("io_uring_setup: ") + std::strerror(-r);
    if (FILE* f = std::fopen("/proc/sys/kernel/io_uring_disabled", "r")) {
      int v = 0;
      if (std::fscanf(f, "%d", &v) == 1 && v != 0) why += " (kernel.io_uring_disabled=" + std::to_string(v) + ")";
      std::fclose(f);
    }
    if (r == -EPERM) why += "; blocked by seccomp or sysctl";
    return why;
  }
  std::string missing;
  if (io_uring_probe* probe = io_uring_get_probe_ring(&ring)) {
    for (int op : kRequiredOps)
      if (!io_uring_opcode_supported(probe, op)) missing += std::string(missing.empty() ? "" : ",") + op_name(op);
    io_uring_free_probe(probe);
  } else {
    missing = "(probe failed)";
  }
  io_uring_queue_exit(&ring);
  if (!missing.empty()) return "kernel lacks io_uring opcodes: " + missing;
  return {};
}

class IoUringBackend final : public Backend {
 public:
  IoUringBackend(Scheduler& sched, const BackendSettings& settings)
      : sched_(sched), settings_(settings), pool_(BlockingPool::shared(), &IoUringBackend::wake_from_pool, this) {}

  ~IoUringBackend() override {
    if (!ring_ready_) return;
    // The wake read points into this object: take it back from the kernel before freeing.
    // Pool workers wake us through wake_fd_: they are done before it closes.
    cancel_all_and_drain();
    // An eventfd read may sit in an io-wq worker where cancellation can't reach it, so
    // complete it the ordinary way: make the counter non-zero and let the read finish.
    draining_ = true;  // don't re-arm
    while (wake_armed_) {
      wake();
      reap(true, nullptr);
    }
    io_uring_queue_exit(&ring_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  std::error_code init() {
    const unsigned sq_entries = settings_.io_uring_sq_entries ? settings_.io_uring_sq_entries : 1024;
    const unsigned cq_entries = settings_.io_uring_cq_entries ? settings_.io_uring_cq_entries : 8 * sq_entries;
    int r = settings_.io_uring_sqpoll ? init_sqpoll(sq_entries, cq_entries) : -EINVAL;
    if (r != 0) {
      // Try the best set-up first; older kernels reject unknown flags with EINVAL.
      const unsigned attempts[] = {
          IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
          IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
          IORING_SETUP_SUBMIT_ALL,
          0,
      };
      r = init_first_accepted(sq_entries, cq_entries, attempts);
    }
    if (r < 0) return errno_code(-r);
    ring_ready_ = true;
    registered_ring_fd_ = io_uring_register_ring_fd(&ring_) == 1;
    // Blocking eventfd: io_uring polls it internally; a non-blocking one would make the
    // read complete at once with EAGAIN.
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
    if (wake_fd_ < 0) return errno_code(errno);
    arm_wake();
    if (io_uring_probe* probe = io_uring_get_probe_ring(&ring_)) {
      msg_ring_ok_ = io_uring_opcode_supported(probe, IORING_OP_MSG_RING) != 0;  // 5.18+
      send_zc_ok_ = io_uring_opcode_supported(probe, IORING_OP_SEND_ZC) != 0;    // 6.0+
      // Path opcodes: OPENAT and STATX 5.6+, RENAMEAT and UNLINKAT 5.11+, MKDIRAT 5.15+.
      // A missing one runs on the blocking pool instead.
      const std::pair<OpCode, int> path_ops[] = {{OpCode::openat, IORING_OP_OPENAT},
                                                 {OpCode::statx, IORING_OP_STATX},
                                                 {OpCode::renameat, IORING_OP_RENAMEAT},
                                                 {OpCode::unlinkat, IORING_OP_UNLINKAT},
                                                 {OpCode::mkdirat, IORING_OP_MKDIRAT}};
      // Test hook: GALAY_KERNEL_IO_URING_NO_PATH_OPS=1 pretends none is supported.
      const char* no_path = std::getenv("GALAY_KERNEL_IO_URING_NO_PATH_OPS");
      for (auto [code, ring_op] : path_ops)
        if (io_uring_opcode_supported(probe, ring_op) && !(no_path && *no_path == '1'))
          ring_path_ops_ |= path_bit(code);
      io_uring_free_probe(probe);
    }
    return {};
  }

  BackendKind kind() const noexcept override { return BackendKind::io_uring; }

  // The ring with a kernel SQ poller, or why not (kept in sqpoll_note_ for describe()).
  // SQPOLL excludes the task-run flags (the poller runs the task work), so SINGLE_ISSUER
  // and SUBMIT_ALL are all it keeps. Before 5.11 the poller could only use registered
  // files (no IORING_FEAT_SQPOLL_NONFIXED): refused, as this backend uses plain fds.
  int init_sqpoll(unsigned sq_entries, unsigned cq_entries) {
    const unsigned aff = settings_.io_uring_sqpoll_cpu >= 0 ? IORING_SETUP_SQ_AFF : 0;
    const unsigned attempts[] = {
        IORING_SETUP_SQPOLL | aff | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_SQPOLL | aff | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_SQPOLL | aff,
    };
    const int r = init_first_accepted(sq_entries, cq_entries, attempts);
    if (r < 0) {
      sqpoll_note_ = std::string("SQPOLL refused: ") + std::strerror(-r);
      if (r == -EPERM) sqpoll_note_ += " (before 5.11 it needs CAP_SYS_ADMIN)";
      if (r == -EINVAL && aff != 0)
        sqpoll_note_ += " (CPU " + std::to_string(settings_.io_uring_sqpoll_cpu) + " may not exist)";
      return r;
    }
    if ((features_ & IORING_FEAT_SQPOLL_NONFIXED) == 0) {
      io_uring_queue_exit(&ring_);
      sqpoll_note_ = "SQPOLL refused: this kernel's poller needs registered files (before 5.11)";
      return -EINVAL;
    }
    sqpoll_ = true;
    return 0;
  }

  // init_ring with each set of flags in turn, best first, until the kernel accepts one
  // (older kernels refuse flags they don't know with EINVAL): 0, or the last refusal.
  int init_first_accepted(unsigned sq_entries, unsigned cq_entries, std::span<const unsigned> attempts) {
    int r = -EINVAL;
    for (unsigned flags : attempts) {
      r = init_ring(sq_entries, cq_entries, flags);
      if (r != -EINVAL) break;
    }
    return r;
  }

  int init_ring(unsigned sq_entries, unsigned cq_entries, unsigned flags) {
    io_uring_params p{};
    p.flags = flags | IORING_SETUP_CQSIZE;
    p.cq_entries = cq_entries;
    if (flags & IORING_SETUP_SQPOLL) {
      p.sq_thread_idle = settings_.io_uring_sqpoll_idle_ms;
      if (flags & IORING_SETUP_SQ_AFF) p.sq_thread_cpu = static_cast<unsigned>(settings_.io_uring_sqpoll_cpu);
    }
    const int r = io_uring_queue_init_params(sq_entries, &ring_, &p);
    if (r == 0) {
      setup_flags_ = p.flags;
      features_ = p.features;
    }
    return r;
  }

  std::string describe() const override {
    std::string s = "io_uring flags=" + flags_to_string(setup_flags_);
    s += " sq=" + std::to_string(ring_.sq.ring_entries) + " cq=" + std::to_string(ring_.cq.ring_entries);
    s += (features_ & IORING_FEAT_NODROP) ? " nodrop" : " no-nodrop";
    if (registered_ring_fd_) s += " registered-ring-fd";
    if (send_zc_ok_) s += " send-zc";
    if (sqpoll_) {
      s += " sqpoll-idle=" + std::to_string(settings_.io_uring_sqpoll_idle_ms) + "ms";
      if (settings_.io_uring_sqpoll_cpu >= 0) s += " sqpoll-cpu=" + std::to_string(settings_.io_uring_sqpoll_cpu);
    }
    if (!sqpoll_note_.empty()) s += " (" + sqpoll_note_ + ")";
    return s;
  }

  unsigned setup_flags() const noexcept { return setup_flags_; }

  bool start(IoOp& op) noexcept override {
    if (on_pool(op)) {  // sync_dir, read_dir, and path opcodes this kernel lacks
      pool_.submit(op);
      return true;
    }
    if (op.fd < 0 && !is_path_op(op.code)) {  // a path op's fd may be AT_FDCWD
      op.result = -EBADF;
      return false;
    }
    if (MultishotState* st = multishot_of(op)) {
      if (st->closed) {  // its socket was closed: the number may name another file now
        op.result = -EBADF;
        return false;
      }
      attach(*st);
      if (op.code == OpCode::recv_pooled) return start_pooled(op);
      auto& acc = static_cast<AcceptQueueState&>(*st);
      if (!acc.unsupported) return start_accept_multishot(op, acc);
      // else: a plain single-shot accept below
    }
    if (op.code == OpCode::close) {
      pool_.release_fd(op.fd);  // no pool worker may use the number once it can be reused
      fd_closing(op.fd);
      if (ops_on(op.fd) > 0) {
        // Cancel everything still pending on the fd, then close it. The hard link keeps the
        // order (the close runs after the cancel, whatever the cancel's result).
        io_uring_sqe* c = get_sqe();
        io_uring_prep_cancel_fd(c, op.fd, IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(c, kTagIgnore);
        c->flags |= IOSQE_IO_HARDLINK;
      }
    }
    if (!send_zc_ok_) op.flags &= static_cast<std::uint8_t>(~op_zero_copy);
    op.backend_word = 0;
    prepare(op, get_sqe());
    ++pending_;
    if (tracked(op)) track(op);
    return true;
  }

  void cancel(IoOp& op) noexcept override {
    if (on_pool(op)) return pool_.cancel(op);
    if (MultishotState* st = multishot_of(op); st != nullptr && st->waiting == &op) {
      // The waiting op owns no buffer or fd: detach it and let the multishot SQE run on;
      // what arrives meanwhile queues in the receiver/acceptor.
      st->waiting = nullptr;
      --pending_;
      op.complete(-static_cast<std::int64_t>(op.cancel_reason()));
      return;
    }
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, reinterpret_cast<std::uint64_t>(&op), 0);
    io_uring_sqe_set_data64(sqe, kTagIgnore);
  }

  void abandon(IoOp& op) noexcept override {
    if (on_pool(op)) return pool_.abandon(op);
    if (MultishotState* st = multishot_of(op); st != nullptr && st->waiting == &op) {
      st->waiting = nullptr;
      --pending_;
      return;
    }
    // The op's frame is going away: nothing may resume it, and we must not return while
    // the kernel can still write into it.
    op.waiter = std::noop_coroutine();
    if (op.cancel_reason() == std::errc{}) op.set_cancel_reason(std::errc::operation_canceled);
    cancel(op);
    while (op.state == OpState::pending) reap(true, nullptr);
  }

  void close_fd(int fd) noexcept override {
    // Destructors want RAII semantics: the fd (and e.g. a listening port) is released on
    // return. Ops still pending on it are cancelled first; the cancel is submitted now,
    // while the number still names this file, and completes them with ECANCELED later.
    pool_.release_fd(fd);
    fd_closing(fd);
    if (ops_on(fd) > 0) {
      io_uring_sqe* c = get_sqe();
      io_uring_prep_cancel_fd(c, fd, IORING_ASYNC_CANCEL_ALL);
      io_uring_sqe_set_data64(c, kTagIgnore);
      io_uring_submit(&ring_);
      // With SQPOLL the cancel is read by the poller later, and it looks the number up
      // then: it must be consumed before the close frees the number for reuse.
      if (sqpoll_) wait_until_consumed();
    }
    ::close(fd);
    chaos::after_close(&sched_, fd);
  }

  void poll(std::optional<std::chrono::nanoseconds> timeout) override {
    if (timeout && timeout->count() == 0) {
      reap(false, nullptr);
      pool_.deliver();
      return;
    }
    __kernel_timespec ts{};
    if (timeout) {
      ts.tv_sec = timeout->count() / 1000000000;
      ts.tv_nsec = timeout->count() % 1000000000;
    }
    reap(true, timeout ? &ts : nullptr);
    pool_.deliver();  // a worker's wake() ended the wait through the eventfd read
  }

  void wake() noexcept override {
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t r = ::write(wake_fd_, &one, sizeof(one));
  }

  bool post_wake_to(Backend& target) noexcept override {
    if (!msg_ring_ok_ || draining_ || target.kind() != BackendKind::io_uring) return false;
    auto& peer = static_cast<IoUringBackend&>(target);
    if (!peer.msg_ring_ok_) return false;
    // The target gets a CQE tagged kTagRingWake (no-op there); our own CQE for the send is
    // ignored: if the target ring is gone the send fails, and so would an eventfd write.
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_msg_ring(sqe, peer.ring_.ring_fd, 0, kTagRingWake, 0);
    io_uring_sqe_set_data64(sqe, kTagIgnore);
    return true;
  }

  bool has_unsubmitted() const noexcept override { return io_uring_sq_ready(&ring_) != 0; }

  // SQPOLL: until the poller has taken every entry submitted so far (it issues each as it
  // takes it). A sleeping poller was woken by the submit before this.
  void wait_until_consumed() noexcept {
    while (io_uring_sq_ready(&ring_) != 0) {
      io_uring_submit(&ring_);  // enters only to wake a poller that went to sleep
      std::this_thread::yield();
    }
  }

  void cancel_all_and_drain() noexcept override {
    pool_.cancel_all_and_drain();
    if (pending_ == 0) return;
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, kTagIgnore);
    // Everything completes (cancelled or not); with shutting_down() nothing is resumed.
    // The wake read is cancelled too; don't re-arm it here.
    draining_ = true;
    while (pending_ > 0) reap(true, nullptr);
    draining_ = false;
    if (!wake_armed_) arm_wake();  // the cancel-all ended it too
  }

  std::size_t pending_ops() const noexcept override { return pending_ + pool_.pending(); }

  // ---- provided-buffer ring and multishot recv ----

  std::error_code attach_pool(BufferPool& pool) override {
    // The ring of buffer descriptors must be page-aligned shared memory for the kernel.
    const std::size_t bytes = sizeof(io_uring_buf) * pool.count();
    void* mem = nullptr;
    if (posix_memalign(&mem, static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)), bytes) != 0) return errno_code(ENOMEM);
    auto* br = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_ring_init(br);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uint64_t>(br);
    reg.ring_entries = pool.count();
    reg.bgid = next_group_id_;
    if (int r = io_uring_register_buf_ring(&ring_, &reg, 0); r < 0) {
      std::free(mem);
      return errno_code(-r);  // pre-5.19 kernels: EINVAL; the caller may use plain recv
    }
    pool.group_id = next_group_id_++;
    pool.backend_handle = br;
    const int mask = io_uring_buf_ring_mask(pool.count());
    for (unsigned i = 0; i < pool.count(); ++i)
      io_uring_buf_ring_add(br, pool.buffer(static_cast<std::uint16_t>(i)), pool.buffer_size(),
                            static_cast<unsigned short>(i), mask, static_cast<int>(i));
    io_uring_buf_ring_advance(br, static_cast<int>(pool.count()));
    return {};
  }

  // ---- registered buffers (RegisteredBuffers) ----

  std::error_code register_buffers(std::span<std::byte> region, std::string& note) override {
    if (fixed_base_ != nullptr) {
      note = "this ring already has a registered region; io_uring has one buffer table per ring";
      return errno_code(EBUSY);
    }
    // One table entry per kFixedChunk (the kernel's limit for one registered buffer).
    std::vector<iovec> table;
    for (std::size_t at = 0; at < region.size(); at += kFixedChunk)
      table.push_back({region.data() + at, std::min(kFixedChunk, region.size() - at)});
    const int r = io_uring_register_buffers(&ring_, table.data(), static_cast<unsigned>(table.size()));
    if (r < 0) {
      note = "io_uring refused to register it: " + std::string(std::strerror(-r));
      if (r == -ENOMEM) {
        rlimit lim{};
        if (::getrlimit(RLIMIT_MEMLOCK, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY)
          note += " (the pinned pages count against RLIMIT_MEMLOCK, " + std::to_string(lim.rlim_cur >> 10) + " KiB)";
      }
      return errno_code(-r);
    }
    fixed_base_ = region.data();
    fixed_size_ = region.size();
    note = "io_uring, as " + std::to_string(table.size()) + (table.size() == 1 ? " buffer" : " buffers") +
           ": file reads and writes in it are READ_FIXED/WRITE_FIXED";
    return {};
  }

  void unregister_buffers(std::span<std::byte> region) noexcept override {
    if (region.data() != fixed_base_ || fixed_base_ == nullptr) return;
    io_uring_unregister_buffers(&ring_);
    fixed_base_ = nullptr;
    fixed_size_ = 0;
  }

  void detach_pool(BufferPool& pool) noexcept override {
    if (pool.backend_handle == nullptr) return;
    io_uring_unregister_buf_ring(&ring_, pool.group_id);
    std::free(pool.backend_handle);
    pool.backend_handle = nullptr;
  }

  void recycle(BufferPool& pool, std::uint16_t id, PooledRecvState* owner) noexcept override {
    auto* br = static_cast<io_uring_buf_ring*>(pool.backend_handle);
    io_uring_buf_ring_add(br, pool.buffer(id), pool.buffer_size(), id, io_uring_buf_ring_mask(pool.count()), 0);
    io_uring_buf_ring_advance(br, 1);
    // A receiver stopped at its limit resumes once its caller has dropped half of it.
    if (owner != nullptr && owner->capped && owner->held <= owner->max_held / 2) {
      owner->capped = false;
      if (!owner->armed && !owner->closed && !owner->starved && !draining_) arm_multishot(*owner);
    }
    // Receivers whose multishot recv ended with ENOBUFS get it back now, those holding
    // nothing first, no more of them than there are free buffers.
    starved_scratch_.clear();
    pool.take_starved(starved_scratch_, pool.available());
    for (PooledRecvState* st : starved_scratch_)
      if (!st->capped && !st->armed && !draining_) arm_multishot(*st);
  }

  void release_multishot(MultishotState& st) noexcept override {
    detach(st);
    // From here nothing re-arms it: releasing its queued chunks below must not (recycle()
    // would resume a receiver that had stopped at its limit).
    st.closed = true;
    if (st.kind == MultishotState::Kind::pooled_recv) {
      auto& rx = static_cast<PooledRecvState&>(st);
      rx.pool->remove_starved(rx);
    }
    if (st.armed) {
      cancel_multishot(st);
      // The final CQE (without F_MORE) is the kernel letting go of the receiver.
      while (st.armed) reap(true, nullptr);
    }
    drop_queued(st);
  }

 private:
  // Release what `st` queued for awaits that will never come: pool buffers go back to
  // the ring, accepted connections nobody claimed are closed.
  static void drop_queued(MultishotState& st) noexcept {
    if (st.kind == MultishotState::Kind::pooled_recv) {
      auto& rx = static_cast<PooledRecvState&>(st);
      std::uint16_t id;
      std::uint32_t len;
      while (rx.pool->pop_chunk(rx, id, len)) PooledChunk(rx.pool, id, len).reset();
    } else {
      auto& acc = static_cast<AcceptQueueState&>(st);
      for (std::size_t i = acc.head; i < acc.ready.size(); ++i) ::close(acc.ready[i]);
      acc.ready.clear();
      acc.head = 0;
    }
  }

  void arm_wake() {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_read(sqe, wake_fd_, &wake_value_, sizeof(wake_value_), 0);
    io_uring_sqe_set_data64(sqe, kTagWake);
    wake_armed_ = true;
  }

  // An SQE, making room by submitting if the SQ is full: an op never fails for that.
  io_uring_sqe* get_sqe() noexcept {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (sqe == nullptr) {
      if (settings_.metrics != nullptr) settings_.metrics->sq_full();
      int r = io_uring_submit(&ring_);
      if (r == -EBUSY || r == -EAGAIN) {
        // Completion side is backed up: make room there first.
        reap(false, nullptr);
      } else if (sqpoll_) {
        // The poller takes the entries on its own time: wait until it has made room.
        io_uring_sqring_wait(&ring_);
      }
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  // The SQE is the op kind's (io/ops/); recv_pooled and the pool-only path ops never get
  // here (start_pooled(), on_pool()).
  void prepare(IoOp& op, io_uring_sqe* sqe) noexcept {
    const detail::OpKind& kind = detail::op_kind(op.code);
    unsigned buf_index = 0;
    if (kind.prep_fixed != nullptr && in_fixed_region(op, buf_index))
      kind.prep_fixed(sqe, op, buf_index);
    else if (kind.prep != nullptr)
      kind.prep(sqe, op);
    else
      io_uring_prep_nop(sqe);
    if (registered_files_ != 0) use_file_slot(op, sqe);
    io_uring_sqe_set_data(sqe, &op);
  }

  // ---- registered files (FdOwner::register_file) ----

  // An op on a registered fd names its table slot instead (IOSQE_FIXED_FILE). Not close
  // (it closes the number; the slot is dropped first) and not path ops (theirs is a dirfd).
  void use_file_slot(const IoOp& op, io_uring_sqe* sqe) noexcept {
    if (op.code == OpCode::close || is_path_op(op.code) || sqe->fd != op.fd) return;
    const FdEntry* e = find_entry(op.fd);
    if (e == nullptr || e->file_slot < 0) return;
    sqe->fd = e->file_slot;
    sqe->flags |= IOSQE_FIXED_FILE;
  }

  Expected<bool> register_file(int fd) override {
    if (fd < 0) return errno_error(EBADF);
    FdEntry& e = entry(fd);
    if (e.file_slot >= 0) return true;
    if (file_table_size_ == 0) {
      // One sparse table for the ring's life, filled and emptied slot by slot.
      const int r = io_uring_register_files_sparse(&ring_, kFileSlots);
      if (r < 0) return errno_error(r == -EINVAL ? EOPNOTSUPP : -r);
      file_table_size_ = kFileSlots;
      for (unsigned slot = kFileSlots; slot > 0; --slot) free_file_slots_.push_back(static_cast<int>(slot - 1));
    }
    if (free_file_slots_.empty()) return errno_error(ENFILE);
    const int slot = free_file_slots_.back();
    const int r = io_uring_register_files_update(&ring_, static_cast<unsigned>(slot), &fd, 1);
    if (r < 0) return errno_error(-r);
    free_file_slots_.pop_back();
    e.file_slot = slot;
    ++registered_files_;
    return true;
  }

  // The fd is being closed: empty its slot, so the table no longer holds the file open
  // and a later fd with the same number is not sent to it.
  void drop_file_slot(int fd) noexcept {
    FdEntry* entry_of_fd = find_entry(fd);
    if (entry_of_fd == nullptr || entry_of_fd->file_slot < 0) return;
    FdEntry& e = *entry_of_fd;
    // SQEs already prepared with the slot reach the kernel while it still names this file
    // (they then complete as the close's cancel decides, as on an unregistered fd).
    io_uring_submit(&ring_);
    if (sqpoll_) wait_until_consumed();
    int none = -1;
    (void)io_uring_register_files_update(&ring_, static_cast<unsigned>(e.file_slot), &none, 1);
    free_file_slots_.push_back(e.file_slot);
    e.file_slot = -1;
    --registered_files_;
  }

  // True if the bytes the op's SQE moves lie inside one entry of the registered region
  // (that entry's index in `buf_index`): it can be a READ_FIXED/WRITE_FIXED.
  bool in_fixed_region(const IoOp& op, unsigned& buf_index) const noexcept {
    if (fixed_base_ == nullptr) return false;
    const auto at = reinterpret_cast<std::uintptr_t>(op.buf);
    const auto base = reinterpret_cast<std::uintptr_t>(fixed_base_);
    const std::size_t len = std::min(op.len, kMaxTransfer);
    if (at < base || at - base >= fixed_size_ || len > fixed_size_ - (at - base)) return false;
    const std::size_t first = (at - base) / kFixedChunk;
    if (len != 0 && (at - base + len - 1) / kFixedChunk != first) return false;  // spans two entries
    buf_index = static_cast<unsigned>(first);
    return true;
  }

  static constexpr std::uint32_t path_bit(OpCode c) noexcept {
    return 1u << (static_cast<unsigned>(c) - static_cast<unsigned>(OpCode::openat));
  }
  // True for the ops the blocking pool runs here (fixed once init() has probed the ring).
  bool on_pool(const IoOp& op) const noexcept {
    return is_path_op(op.code) && (ring_path_ops_ & path_bit(op.code)) == 0;
  }
  // Ops counted in the per-fd bookkeeping: not close (it ends the entry), not a path op
  // relative to AT_FDCWD (no descriptor).
  static bool tracked(const IoOp& op) noexcept { return op.code != OpCode::close && op.fd >= 0; }
  static void wake_from_pool(void* self) { static_cast<IoUringBackend*>(self)->wake(); }

  // start() clears op_zero_copy where the kernel has no SEND_ZC, so the flag is the truth.
  static bool is_zero_copy(const IoOp& op) noexcept { return op.code == OpCode::send && (op.flags & op_zero_copy); }

  // Submit what is queued, optionally wait for one completion, then harvest a batch.
  void reap(bool wait, __kernel_timespec* ts) noexcept {
    io_uring_cqe* cqe = nullptr;
    if (fault::take_submit_failure() != 0) {
      // An injected io_uring_enter failure (EAGAIN/EBUSY/EINTR): like the real ones, it
      // leaves the SQEs queued for the next turn; only what is already in the CQ is taken.
      harvest();
      return;
    }
    if (wait) {
      int r = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, ts, nullptr);
      (void)r;  // -ETIME (timeout) and -EINTR simply end this wait
    } else if (sqpoll_) {
      // The poller submits and runs the task work; entering only wakes it when it sleeps.
      io_uring_submit(&ring_);
    } else {
      // Submits and, with DEFER_TASKRUN, runs pending task work so completions show up.
      io_uring_submit_and_get_events(&ring_);
    }
    harvest();
  }

  void harvest() noexcept {
    // Copy a batch out and advance once, then handle the copies: handling may queue new
    // SQEs (partial send_all), which may need to submit, which must not see these CQEs.
    struct Done {
      std::uint64_t user_data;
      std::int32_t res;
      std::uint32_t flags;
    };
    Done batch[256];
    for (;;) {
      unsigned n = 0;
      unsigned head;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        batch[n++] = {cqe->user_data, cqe->res, cqe->flags};
        if (n == 256) break;
      }
      if (n == 0) return;
      io_uring_cq_advance(&ring_, n);
      for (unsigned i = 0; i < n; ++i) handle(batch[i].user_data, batch[i].res, batch[i].flags);
      if (n < 256 && !io_uring_cq_has_overflow(&ring_)) return;
      if (io_uring_cq_has_overflow(&ring_)) {
        if (settings_.metrics != nullptr) settings_.metrics->cq_overflow();
        io_uring_get_events(&ring_);  // flush the kernel's backlog
      }
    }
  }

  bool start_pooled(IoOp& op) noexcept {
    auto& st = static_cast<PooledRecvState&>(*op.multishot);
    if (deliver_now(st, op)) return false;
    st.waiting = &op;
    ++pending_;
    if (!st.armed && !st.starved && !st.capped) arm_multishot(st);
    return true;
  }

  // Give `op` the next queued chunk or the stream's end; false if there is neither.
  static bool deliver_now(PooledRecvState& st, IoOp& op) noexcept {
    std::uint16_t id;
    std::uint32_t len;
    if (st.pool->pop_chunk(st, id, len)) {
      op.aux = id;
      op.result = len;
      return true;
    }
    if (st.has_final) {
      op.aux = -1;
      op.result = st.final_result;
      return true;
    }
    return false;
  }

  static MultishotState* multishot_of(IoOp& op) noexcept {
    if (op.code == OpCode::recv_pooled || op.code == OpCode::accept_multishot) return op.multishot;
    return nullptr;
  }

  bool start_accept_multishot(IoOp& op, AcceptQueueState& st) noexcept {
    if (st.head < st.ready.size()) {
      op.result = st.ready[st.head++];
      if (st.head == st.ready.size()) st.ready.clear(), st.head = 0;
      return false;
    }
    if (st.has_final) {  // an accept error (EMFILE, ...) is reported once; the next call re-arms
      st.has_final = false;
      op.result = st.final_result;
      return false;
    }
    st.waiting = &op;
    ++pending_;
    if (!st.armed) {
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_multishot_accept(sqe, st.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      io_uring_sqe_set_data64(sqe, reinterpret_cast<std::uint64_t>(static_cast<MultishotState*>(&st)) | kMultishotBit);
      st.armed = true;
      ++ops_on_slot(st.fd);  // so close() cancels it
    }
    return true;
  }

  void handle_accept_multishot(AcceptQueueState& st, std::int32_t res, std::uint32_t flags) noexcept {
    if (!(flags & IORING_CQE_F_MORE)) {
      st.armed = false;
      --ops_on_slot(st.fd);
    }
    if (st.closed) {  // the listener was closed: a late connection belongs to nobody
      if (res >= 0) ::close(res);
      return;
    }
    if (res == -EINVAL && !st.unsupported) {
      // Multishot accept unknown to this kernel (< 5.19): single-shot from now on.
      st.unsupported = true;
      if (IoOp* op = std::exchange(st.waiting, nullptr)) {
        prepare(*op, get_sqe());  // the same op, now a plain accept; still pending
        track(*op);
      }
      return;
    }
    if (IoOp* op = std::exchange(st.waiting, nullptr)) {
      --pending_;
      op->complete(res);
      return;
    }
    if (res >= 0) {
      st.ready.push_back(res);
    } else if (res != -ECANCELED) {
      st.has_final = true;
      st.final_result = res;
    }
  }

  void arm_multishot(PooledRecvState& st) noexcept {
    io_uring_sqe* sqe = get_sqe();
    if (st.datagram) {
      // One datagram per buffer: io_uring_recvmsg_out, the sender's address, the payload.
      static_assert(sizeof(io_uring_recvmsg_out) == sizeof(PooledDatagramHeader));
      // The kernel reads only the name and control sizes from this header, the same for
      // every datagram receiver: one shared copy that lives for the whole program.
      static msghdr datagram_layout = [] {
        msghdr m{};
        m.msg_namelen = kPooledDatagramNameSpace;
        return m;
      }();
      io_uring_prep_recvmsg_multishot(sqe, st.fd, &datagram_layout, MSG_TRUNC);
    } else {
      io_uring_prep_recv_multishot(sqe, st.fd, nullptr, 0, 0);
      if (mshot_limit_ok_) {
        // Kernels with the multishot byte limit (6.17+; the field is optlen, which older
        // headers call file_index) end the recv by themselves after this receiver's
        // remaining share of the pool; older ones refuse the field with EINVAL (below).
        const unsigned room = st.max_held > st.held ? st.max_held - st.held : 1;
        sqe->file_index = static_cast<std::uint32_t>(std::min<std::size_t>(std::size_t{room} * st.pool->buffer_size(),
                                                                           std::numeric_limits<std::uint32_t>::max()));
      }
    }
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = st.pool->group_id;
    io_uring_sqe_set_data64(sqe, reinterpret_cast<std::uint64_t>(static_cast<MultishotState*>(&st)) | kMultishotBit);
    st.armed = true;
    ++ops_on_slot(st.fd);  // so close() cancels it
  }

  void handle_multishot(PooledRecvState& st, std::int32_t res, std::uint32_t flags) noexcept {
    if (flags & IORING_CQE_F_BUFFER) {
      auto id = static_cast<std::uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
      st.pool->take(id, st);
      if (res > 0 && !st.closed) {
        st.pool->push_chunk(st, id, static_cast<std::uint32_t>(res));
        if (st.held >= st.max_held && !st.capped) {
          // Its share of the pool is used up: stop receiving (the data waits in the socket,
          // so TCP pushes back on the peer) until the caller drops chunks (recycle()).
          st.capped = true;
          if (flags & IORING_CQE_F_MORE) {
            st.cap_cancel = true;
            cancel_multishot(st);
          }
        }
      } else {
        PooledChunk(st.pool, id, 0).reset();  // a closed socket's late bytes; never leak a buffer
      }
    }
    if (!(flags & IORING_CQE_F_MORE)) {
      st.armed = false;
      --ops_on_slot(st.fd);
      const bool stopped_at_limit = std::exchange(st.cap_cancel, false) && res == -ECANCELED;
      if (st.closed) return;  // ended by the close; nothing waits (see end_state())
      if (stopped_at_limit || (st.capped && res > 0)) {
        // Stopped at the limit: re-armed below if the caller dropped chunks meanwhile,
        // else by recycle() or the next recv.
      } else if (res == -ENOBUFS) {
        // The ring ran dry. Re-arm once a buffer comes back (or now, if one already has).
        if (settings_.metrics != nullptr) settings_.metrics->enobufs_rearm();
        if (st.pool->available() > 0 && !draining_)
          arm_multishot(st);
        else
          st.pool->add_starved(st);
      } else if (res == -EINVAL && mshot_limit_ok_ && !st.datagram) {
        // This kernel takes no byte limit on a multishot recv: the stop at the limit is
        // then the cancel alone (it may overshoot by what one wakeup receives).
        mshot_limit_ok_ = false;
        if (!draining_) arm_multishot(st);
      } else if (res <= 0) {
        st.has_final = true;
        st.final_result = res;  // 0: EOF; ECANCELED (close/shutdown) or a socket error
      } else if (st.waiting != nullptr && !draining_) {
        arm_multishot(st);  // ended for another reason (e.g. a full CQ): keep receiving
      }
    }
    if (st.waiting != nullptr) {
      IoOp& op = *st.waiting;
      if (deliver_now(st, op)) {
        st.waiting = nullptr;
        --pending_;
        op.complete(op.result);
      } else if (!st.armed && !st.starved && !st.capped && !draining_) {
        arm_multishot(st);
      }
    }
  }

  void cancel_multishot(MultishotState& st) noexcept {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, reinterpret_cast<std::uint64_t>(&st) | kMultishotBit, 0);
    io_uring_sqe_set_data64(sqe, kTagIgnore);
  }

  void handle(std::uint64_t user_data, std::int32_t res, std::uint32_t flags) noexcept {
    if (user_data == kTagIgnore || user_data == kTagRingWake) return;
    if (user_data == kTagWake) {
      // Re-armed whatever ended it, a cancel-all included: the loop must stay wakeable
      // after shutdown() (only the destructor, which sets draining_, lets it go).
      wake_armed_ = false;
      if (!draining_) arm_wake();
      return;
    }
    if (user_data & kMultishotBit) {
      auto* st = reinterpret_cast<MultishotState*>(user_data & ~kMultishotBit);
      if (st->kind == MultishotState::Kind::accept)
        handle_accept_multishot(*static_cast<AcceptQueueState*>(st), res, flags);
      else
        handle_multishot(*static_cast<PooledRecvState*>(st), res, flags);
      return;
    }
    IoOp& op = *reinterpret_cast<IoOp*>(user_data);
    const bool zero_copy = is_zero_copy(op);
    if (zero_copy) {
      // SEND_ZC posts two CQEs per submission: the send's result (with F_MORE when a
      // notification follows) and, once the kernel let go of the pages, the notification.
      // The caller's buffer is free only after the last notification of every partial send.
      if (flags & IORING_CQE_F_NOTIF) {
        --op.backend_word;
        if (op.backend_word == kZcSendFinished) finish(op, op.result);
        return;
      }
      if (flags & IORING_CQE_F_MORE) ++op.backend_word;
    }
    std::int64_t result = res;
    if (const auto on_cqe = detail::op_kind(op.code).on_cqe) {
      bool again = false;
      result = on_cqe(op, res, again);
      if (again) {
        // The rest of a send_all, unless the op was cancelled, timed out or its fd closed
        // meanwhile (the number may name another file now): then it is an error, never a
        // short success, since send_all is all-or-error.
        if (op.cancel_reason() == std::errc{} && !draining_) {
          prepare(op, get_sqe());  // the op stays pending
          return;
        }
        result = -ECANCELED;
      }
    }
    if (zero_copy && (op.backend_word & kZcNotifsDue) != 0) {
      op.result = result;  // the send is over; the buffer is still the kernel's
      op.backend_word |= kZcSendFinished;
      return;
    }
    finish(op, result);
  }

  void finish(IoOp& op, std::int64_t res) noexcept {
    --pending_;
    if (tracked(op))
      untrack(op);
    else if (res == 0)
      chaos::after_close(&sched_, op.fd);
    op.complete(res);
  }

  // ---- per-fd bookkeeping ----
  // For each fd number: how many SQEs the kernel holds on it (so closing an idle fd costs
  // no cancel), which single-shot ops are pending on it, and which multishot states are
  // attached to it. Closing the fd through this backend (close_fd, the close op) marks the
  // ops cancelled, so none is ever re-submitted on the number, and ends the states.
  struct FdEntry {
    std::uint32_t in_kernel = 0;
    int file_slot = -1;  // its index in the ring's registered-file table, or -1
    WaitList ops;
    MultishotList states;
  };

  FdEntry* find_entry(int fd) noexcept {
    return fd >= 0 && static_cast<std::size_t>(fd) < fds_.size() ? &fds_[static_cast<std::size_t>(fd)] : nullptr;
  }
  FdEntry& entry(int fd) {
    if (static_cast<std::size_t>(fd) >= fds_.size()) fds_.resize(static_cast<std::size_t>(fd) + 256);
    return fds_[static_cast<std::size_t>(fd)];
  }
  std::uint32_t ops_on(int fd) noexcept {
    FdEntry* e = find_entry(fd);
    return e ? e->in_kernel : 0;
  }
  std::uint32_t& ops_on_slot(int fd) { return entry(fd).in_kernel; }

  void track(IoOp& op) {
    FdEntry& e = entry(op.fd);
    ++e.in_kernel;
    e.ops.push_back(&op);
  }
  void untrack(IoOp& op) noexcept {
    FdEntry& e = entry(op.fd);
    --e.in_kernel;
    e.ops.remove(&op);
  }

  void attach(MultishotState& st) {
    if (st.backend != nullptr) return;
    st.backend = this;
    entry(st.fd).states.push_back(&st);
  }
  void detach(MultishotState& st) noexcept {
    if (st.backend == nullptr || st.closed) return;  // a closed state was unlinked then
    entry(st.fd).states.remove(&st);
  }

  // `fd` is being closed: nothing may be (re)submitted on the number from now on.
  void fd_closing(int fd) noexcept {
    FdEntry* e = find_entry(fd);
    if (e == nullptr) return;
    drop_file_slot(fd);
    for (IoOp* op = e->ops.front(); op != nullptr; op = WaitList::next(op))
      if (op->cancel_reason() == std::errc{}) op->set_cancel_reason(std::errc::operation_canceled);
    while (MultishotState* st = e->states.pop_front()) end_state(*st);
  }

  // A multishot state whose fd closed: later awaits are EBADF, the waiting one (which
  // holds no SQE) completes now, queued results are released. An armed SQE is ended by
  // the close's cancel; its last CQEs find the state closed.
  void end_state(MultishotState& st) noexcept {
    st.closed = true;
    if (st.kind == MultishotState::Kind::pooled_recv) {
      auto& rx = static_cast<PooledRecvState&>(st);
      rx.pool->remove_starved(rx);
    }
    drop_queued(st);
    if (IoOp* op = std::exchange(st.waiting, nullptr)) {
      --pending_;
      op->complete(-ECANCELED);
    }
  }

  Scheduler& sched_;          // only passed on to chaos mode
  BackendSettings settings_;  // settings_.metrics counts SQ-full, CQ-overflow and ENOBUFS events
  io_uring ring_{};
  bool ring_ready_ = false;
  bool registered_ring_fd_ = false;
  unsigned setup_flags_ = 0;
  bool sqpoll_ = false;      // a kernel thread polls the SQ (Options::io_uring_sqpoll, granted)
  std::string sqpoll_note_;  // why SQPOLL was refused, when it was asked for
  unsigned features_ = 0;
  int wake_fd_ = -1;
  std::uint64_t wake_value_ = 0;
  bool wake_armed_ = false;
  bool msg_ring_ok_ = false;         // IORING_OP_MSG_RING works: cross-ring wakeups need no eventfd
  bool send_zc_ok_ = false;          // IORING_OP_SEND_ZC works (op_zero_copy sends use it)
  std::uint32_t ring_path_ops_ = 0;  // path_bit() of each path opcode the ring supports
  bool mshot_limit_ok_ = true;       // multishot recv takes a byte limit (cleared on EINVAL)
  bool draining_ = false;
  std::byte* fixed_base_ = nullptr;   // the RegisteredBuffers region, if one is registered
  unsigned file_table_size_ = 0;      // slots in the registered-file table (0: none yet)
  std::size_t registered_files_ = 0;  // fds in it now
  std::vector<int> free_file_slots_;
  std::size_t fixed_size_ = 0;
  std::size_t pending_ = 0;
  std::vector<FdEntry> fds_;
  std::vector<PooledRecvState*> starved_scratch_;  // recycle()
  std::uint16_t next_group_id_ = 1;
  BlockingPool::Client pool_;  // last: destroyed first, after the destructor drained it
};

}  // namespace

BackendFactory io_uring_backend_factory() {
  BackendFactory f;
  f.probe = &probe_io_uring;
  f.create = &make_backend<IoUringBackend>;
  return f;
}

}  // namespace galay
