#pragma once
// Internal (not installed): the backends compiled into this build register themselves here.

#include <functional>

#include "galay-kernel/io/detail/backend.h"

namespace galay {
void register_builtin_backends(const std::function<void(BackendKind, BackendFactory)>& add);
}  // namespace galay
