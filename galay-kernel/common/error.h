#pragma once
/// @file error.h
/// Errors that have no errno of their own. Everything the kernel reports stays a
/// std::error_code in std::system_category() so callers can compare against std::errc
/// (e.g. `ec == std::errc::timed_out`, `ec == std::errc::operation_canceled`).

#include <string>
#include <system_error>

namespace galay {

/// Library-level error conditions (galay_category()).
enum class Error {
  invalid_address = 1,     ///< an address string that is not a literal IPv4/IPv6 address and port
  misaligned_buffer,       ///< O_DIRECT: buffer address not aligned to the device's logical block size
  misaligned_offset,       ///< O_DIRECT: file offset not aligned
  misaligned_length,       ///< O_DIRECT: length not a multiple of the logical block size
  backend_unavailable,     ///< the requested backend cannot run here (see Scheduler::backend_reason())
  task_abandoned,          ///< a joined task was destroyed before it finished (its scheduler stopped)
  not_bound_to_scheduler,  ///< an I/O object was used without a scheduler on this thread
  channel_closed,          ///< the sender closed the IPC channel and every message was read
};

/// The category of galay::Error.
const std::error_category& galay_category() noexcept;

/// Make std::error_code from galay::Error (found by ADL so `ec == Error::x` works).
inline std::error_code make_error_code(Error e) noexcept { return {static_cast<int>(e), galay_category()}; }

/// A std::error_code for an errno value.
inline std::error_code errno_code(int err) noexcept { return {err, std::system_category()}; }

}  // namespace galay

template <>
struct std::is_error_code_enum<galay::Error> : std::true_type {};
