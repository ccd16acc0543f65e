#include "galay-kernel/io/fd_owner.h"

#include <unistd.h>

#include <cerrno>

#include "galay-kernel/io/detail/backend.h"
#include "galay-kernel/runtime/scheduler.h"

namespace galay {

void FdOwner::close_now() noexcept {
  if (fd_ < 0) return;
  Scheduler* s = sched_ ? sched_ : Scheduler::current();
  if (s != nullptr)
    s->close_fd(fd_);
  else
    ::close(fd_);
  fd_ = -1;
}

Expected<bool> FdOwner::register_file() {
  if (fd_ < 0) return errno_error(EBADF);
  // Bound by io_fd() as every operation is: the registration lives in this scheduler's
  // backend, the one that will close the fd and drop it.
  const int fd = io_fd();
  if (sched_ == nullptr) return make_error(make_error_code(Error::not_bound_to_scheduler));
  return sched_->backend().register_file(fd);
}

}  // namespace galay
