#pragma once
/// @file epoll_backend.h
/// The epoll backend: edge-triggered, one registration per fd for its whole life
/// (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, added the first time an op must wait), a read and
/// a write waiter list per fd, and an eventfd for cross-thread wakeups. Every op tries its
/// syscall first and waits only on EAGAIN; a short read or write on a stream socket marks
/// the direction not-ready (the kernel buffer is drained/full), so the next op waits for
/// the edge instead of paying for a syscall that would return EAGAIN.

#include <memory>

#include "galay-kernel/io/detail/backend.h"

namespace galay {

class Scheduler;

/// Factory used by the backend registry.
BackendFactory epoll_backend_factory();

}  // namespace galay
