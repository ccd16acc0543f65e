#pragma once
/// @file kqueue_backend.h
/// The kqueue backend (macOS, FreeBSD and the other BSDs): EVFILT_READ and EVFILT_WRITE
/// registered once per fd with EV_CLEAR (edge-triggered), a read and a write waiter list
/// per fd (ReadinessEngine, shared with epoll), EVFILT_USER for cross-thread wakeups, and
/// timer expiry through kevent()'s timeout. EV_EOF/EV_ERROR surface as the same errors the
/// other backends return, because the failing syscall itself is retried and reports them.
///
/// Built into the library on Apple and the BSDs. On Linux it is compiled in the test suite
/// against an emulation of <sys/event.h> (test/support/kqueue_emu) and registered there, so
/// the whole backend suite runs on it; it has not run on a real BSD kernel here.

#include "galay-kernel/io/detail/backend.h"

namespace galay {

/// Factory for the backend registry (see register_backend()).
BackendFactory kqueue_backend_factory();

}  // namespace galay
