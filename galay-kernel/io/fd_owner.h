#pragma once
/// @file fd_owner.h
/// FdOwner: the one owner of a file descriptor that every I/O object (Socket and its
/// subclasses, File) derives from. It holds the number and the scheduler whose backend
/// knows it, and closes it through that scheduler, so the backend forgets the number
/// (waiters woken with operation_canceled, pool workers kept off it, registrations dropped)
/// before the kernel can hand it to someone else. Move-only; use and destroy it on the
/// scheduler's thread.

#include <utility>

#include "galay-kernel/common/expected.h"

namespace galay {

class Scheduler;
namespace detail {
Scheduler* current_scheduler() noexcept;  // the calling thread's loop (io/op.h)
}

/// An owned descriptor and the scheduler it belongs to (see the file comment).
class FdOwner {
 public:
  /// Take over `o`'s fd; `o` becomes empty. Pending operations stay with the fd.
  FdOwner(FdOwner&& o) noexcept : fd_(std::exchange(o.fd_, -1)), sched_(std::exchange(o.sched_, nullptr)) {}
  /// Close this fd (as the destructor does), then take over `o`'s.
  FdOwner& operator=(FdOwner&& o) noexcept {
    if (this != &o) {
      close_now();
      fd_ = std::exchange(o.fd_, -1);
      sched_ = std::exchange(o.sched_, nullptr);
    }
    return *this;
  }
  FdOwner(const FdOwner&) = delete;
  FdOwner& operator=(const FdOwner&) = delete;
  /// Closes the fd; pending operations on it complete with operation_canceled.
  ~FdOwner() { close_now(); }

  /// True while an fd is owned.
  bool is_open() const noexcept { return fd_ >= 0; }
  /// The fd, or -1 when empty (for syscalls the owning class does not wrap).
  int native_handle() const noexcept { return fd_; }

  /// io_uring: put the fd in its scheduler's table of registered files, so every operation
  /// on it is submitted by table index (IOSQE_FIXED_FILE) and skips the kernel's
  /// per-request file lookup and reference count. Worth it for descriptors that live long
  /// and are busy (a database file, a long-lived connection). True if registered; false
  /// where the backend has no such table (epoll, kqueue: nothing changes). Closing the fd
  /// (close() or the destructor, on its scheduler's thread) drops the registration first.
  /// Errors: bad_file_descriptor (empty), not_bound_to_scheduler (no loop on this thread
  /// and none bound), too_many_files_open_in_system (the table's slots are taken), or the
  /// kernel's refusal (operation_not_supported before Linux 5.19's sparse tables).
  Expected<bool> register_file();

 protected:
  FdOwner() noexcept = default;
  /// Adopt `fd` for `sched` (null: bound to the first loop that uses it, see io_fd()).
  FdOwner(int fd, Scheduler* sched) noexcept : fd_(fd), sched_(sched) {}

  /// Close the fd through the scheduler at once (pending ops complete with
  /// operation_canceled); a plain close(2) where no scheduler is known.
  void close_now() noexcept;
  /// The fd, for an operation about to start. An object made where no loop ran (in main,
  /// before block_on) is bound here to the loop that first uses it, so that closing it
  /// later, from anywhere, goes through the backend that registered the fd (otherwise that
  /// backend would keep stale state for the number and ignore its next owner).
  int io_fd() noexcept {
    if (sched_ == nullptr) sched_ = detail::current_scheduler();
    return fd_;
  }
  /// Give the fd up without closing it (it leaves this object, e.g. for a close op).
  int release() noexcept {
    sched_ = nullptr;
    return std::exchange(fd_, -1);
  }

  /// The owned fd, or -1.
  int fd_ = -1;
  /// The scheduler the fd belongs to, or null while not yet bound.
  Scheduler* sched_ = nullptr;
};

}  // namespace galay
