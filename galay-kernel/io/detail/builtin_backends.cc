#include "galay-kernel/io/detail/builtin_backends.h"

#if defined(__linux__)
#include "galay-kernel/io/epoll/epoll_backend.h"
#endif
#if defined(GALAY_HAVE_IO_URING)
#include "galay-kernel/io/io_uring/io_uring_backend.h"
#endif
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__) || defined(__DragonFly__)
#include "galay-kernel/io/kqueue/kqueue_backend.h"
#endif

namespace galay {

void register_builtin_backends(const std::function<void(BackendKind, BackendFactory)>& add) {
#if defined(__linux__)
  add(BackendKind::epoll, epoll_backend_factory());
#endif
#if defined(GALAY_HAVE_IO_URING)
  add(BackendKind::io_uring, io_uring_backend_factory());
#endif
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__) || defined(__DragonFly__)
  add(BackendKind::kqueue, kqueue_backend_factory());
#endif
  (void)add;
}

}  // namespace galay
