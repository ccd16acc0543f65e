#pragma once
/// @file kernel_file_engine.h
/// Internal. The interface of a kernel engine for file ops beside a readiness notifier
/// (libaio on epoll, io/aio/aio_engine.h).

#include <cstddef>
#include <span>

#include "galay-kernel/io/op.h"

namespace galay {

/// A kernel engine for some file ops (libaio on epoll): the readiness backend sends an op
/// there when file_engine_for() names it, and to the BlockingPool otherwise.
class KernelFileEngine {
 public:
  virtual ~KernelFileEngine() = default;
  /// Start `op` (it completes later through its scheduler). False: finished now.
  virtual bool start(IoOp& op) noexcept = 0;
  /// Start accepted ops together (one io_submit).
  virtual void start_batch(std::span<IoOp* const> ops) noexcept = 0;
  /// True if `op` went through this engine (for cancel/abandon routing).
  virtual bool owns(const IoOp& op) const noexcept = 0;
  /// See Backend::cancel / abandon / cancel_all_and_drain / pending_ops.
  virtual void cancel(IoOp& op) noexcept = 0;
  virtual void abandon(IoOp& op) noexcept = 0;
  virtual void cancel_all_and_drain() noexcept = 0;
  virtual std::size_t pending() const noexcept = 0;
};

}  // namespace galay
