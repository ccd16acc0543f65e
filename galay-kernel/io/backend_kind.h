#pragma once
/// @file backend_kind.h
/// Names of the I/O backends a Scheduler can run on, and whether each can run here. The
/// backends themselves (io/epoll, io/io_uring, io/kqueue) are internal and not installed.

#include <optional>
#include <string>
#include <string_view>

namespace galay {

/// Which backend a scheduler runs on.
enum class BackendKind { automatic, epoll, io_uring, kqueue };

/// "epoll", "io_uring", "kqueue", "auto".
std::string_view to_string(BackendKind kind) noexcept;
/// Parse the names above; nullopt for anything else.
std::optional<BackendKind> parse_backend_kind(std::string_view name) noexcept;

/// Why `kind` can't run here: "" if it can, "not built" if this build lacks it, else the
/// kernel's refusal (io_uring blocked by seccomp or kernel.io_uring_disabled, say).
std::string backend_unavailable_reason(BackendKind kind);

}  // namespace galay
