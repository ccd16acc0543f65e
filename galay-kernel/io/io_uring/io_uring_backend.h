#pragma once
/// @file io_uring_backend.h
/// The io_uring backend: a completion-model backend. Every IoOp becomes one SQE prepared
/// in await_suspend (its user_data is the IoOp's address); SQEs are submitted in one batch
/// per loop turn together with the wait (io_uring_submit_and_wait_timeout), and CQEs are
/// harvested in batches with one io_uring_cq_advance. Cancellation (timeouts, close,
/// when_any, shutdown) uses IORING_OP_ASYNC_CANCEL, and an operation resumes its task only
/// when the kernel posts its final CQE, so its buffer is never released while in use.
///
/// Ring set-up is probed at start: SINGLE_ISSUER|DEFER_TASKRUN (6.1+), then
/// COOP_TASKRUN|TASKRUN_FLAG (5.19+), then plain; SUBMIT_ALL where supported; a registered
/// ring fd where supported. Backend::describe() reports what was chosen.

#include "galay-kernel/io/detail/backend.h"

namespace galay {

/// Factory used by the backend registry. Its probe fails (and `automatic` falls back to
/// epoll) when io_uring_setup is refused (kernel.io_uring_disabled, seccomp EPERM, ENOSYS)
/// or the kernel lacks an opcode the backend needs.
BackendFactory io_uring_backend_factory();

}  // namespace galay
