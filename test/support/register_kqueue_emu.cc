// Linux only: registers the kqueue backend, compiled against the kqueue emulation, so the
// backend-parametrised suite runs on it as a third backend.
#include "galay-kernel/io/kqueue/kqueue_backend.h"

namespace {
const bool registered = [] {
  galay::register_backend(galay::BackendKind::kqueue, galay::kqueue_backend_factory());
  return true;
}();
}  // namespace
