#include "galay-kernel/io/fd_owner.h"

#include <unistd.h>

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

}  // namespace galay
