#include "galay-kernel/io/detail/readiness_backend.h"

#include <unistd.h>

#include <cerrno>
#include <string>

#include "galay-kernel/common/error.h"
#include "galay-kernel/io/ops/op_kind.h"

namespace galay {

ReadinessBackend::ReadinessBackend(Scheduler& sched) noexcept
    : sched_(sched),
      engine_(sched, *this),
      pool_(
          BlockingPool::shared(), [](void* self) { static_cast<ReadinessBackend*>(self)->wake(); }, this) {}

ReadinessBackend::~ReadinessBackend() = default;

void ReadinessBackend::drain_before_destruction() noexcept {
  // Workers and the kernel must be done with every op before the notifier goes away.
  pool_.cancel_all_and_drain();
  if (KernelFileEngine* files = started_file_engine()) files->cancel_all_and_drain();
}

namespace {
// Regular files are always "ready": file ops, and path ops (fs/fs_ops.h), never reach the
// readiness engine (their op kinds say so, io/ops/).
bool off_engine(OpCode c) noexcept { return detail::op_kind(c).route == detail::ReadinessRoute::off_engine; }
}  // namespace

bool ReadinessBackend::start(IoOp& op) noexcept {
  if (off_engine(op.code)) {
    if (op.fd < 0 && !is_path_op(op.code)) {  // a path op's fd may be AT_FDCWD
      op.result = -EBADF;
      return false;
    }
    if (KernelFileEngine* files = file_engine_for(op)) return files->start(op);
    pool_.submit(op);
    return true;
  }
  // A pool worker must not run a syscall on the number once it is closed (and reused).
  if (op.code == OpCode::close) pool_.release_fd(op.fd);
  return engine_.start(op);
}

void ReadinessBackend::start_batch(std::span<IoOp* const> ops) noexcept {
  // The ops a kernel file engine takes go to it together (one io_submit); the rest start
  // one by one.
  batch_buf_.clear();
  KernelFileEngine* batch_engine = nullptr;
  for (IoOp* op : ops) {
    KernelFileEngine* files = (op->fd >= 0 && is_file_op(op->code)) ? file_engine_for(*op) : nullptr;
    if (files != nullptr) {
      batch_engine = files;  // one backend has at most one kernel file engine
      batch_buf_.push_back(op);
    } else if (!start(*op)) {
      op->state = OpState::done;
    }
  }
  if (batch_engine != nullptr) batch_engine->start_batch(batch_buf_);
}

void ReadinessBackend::cancel(IoOp& op) noexcept {
  if (!off_engine(op.code)) return engine_.cancel(op);
  if (KernelFileEngine* files = started_file_engine(); files && files->owns(op)) return files->cancel(op);
  pool_.cancel(op);
}

void ReadinessBackend::abandon(IoOp& op) noexcept {
  if (!off_engine(op.code)) return engine_.abandon(op);
  if (KernelFileEngine* files = started_file_engine(); files && files->owns(op)) return files->abandon(op);
  pool_.abandon(op);
}

void ReadinessBackend::close_fd(int fd) noexcept {
  // No pool worker may touch the number once it can be reused. A kernel file engine needs
  // nothing: the kernel holds its own reference to the file.
  pool_.release_fd(fd);
  (void)engine_.close_now(fd);
}

void ReadinessBackend::cancel_all_and_drain() noexcept {
  engine_.cancel_all();
  if (KernelFileEngine* files = started_file_engine()) files->cancel_all_and_drain();
  pool_.cancel_all_and_drain();
}

std::size_t ReadinessBackend::pending_ops() const noexcept {
  const KernelFileEngine* files = started_file_engine();
  return engine_.pending() + pool_.pending() + (files ? files->pending() : 0);
}

void ReadinessBackend::poll(std::optional<std::chrono::nanoseconds> timeout) {
  wait_for_readiness(timeout);
  pool_.deliver();
}

timespec* wait_timespec(std::optional<std::chrono::nanoseconds> timeout, timespec& storage) noexcept {
  if (!timeout) return nullptr;
  storage.tv_sec = static_cast<time_t>(timeout->count() / 1000000000);
  storage.tv_nsec = static_cast<long>(timeout->count() % 1000000000);
  return &storage;
}

std::string notifier_probe(const char* call, int fd) {
  if (fd < 0) return std::string(call) + ": " + errno_code(errno).message();
  ::close(fd);
  return {};
}

}  // namespace galay
