// The scheduler a benchmark program's thread runs, or one line on stderr saying why there
// is none (the backend asked for can't run here, and why not).
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include "galay-kernel/io/backend_kind.h"
#include "galay-kernel/runtime/scheduler.h"

namespace galay::bench {

/// Scheduler::create(options), or null after printing
/// "PROGRAM: cannot create a scheduler with backend B: ERROR[: REASON]".
inline std::unique_ptr<Scheduler> create_scheduler_or_report(const char* program, const Scheduler::Options& options) {
  auto created = Scheduler::create(options);
  if (created) return std::move(*created);
  const BackendKind kind = options.backend;
  const std::string why =
      kind == BackendKind::automatic ? std::string("no backend can run here") : backend_unavailable_reason(kind);
  std::fprintf(stderr, "%s: cannot create a scheduler with backend %s: %s%s%s\n", program,
               std::string(to_string(kind)).c_str(), created.error().message().c_str(), why.empty() ? "" : ": ",
               why.c_str());
  return nullptr;
}

}  // namespace galay::bench
