#pragma once
/// @file expected.h
/// One alias for the library's result type: std::expected where the standard library
/// provides it, tl::expected (Debian's libexpected-dev) otherwise. Public APIs return
/// `galay::Expected<T>`, whose error is always a std::error_code.

#include <system_error>

#if defined(__cpp_lib_expected) || (__has_include(<expected>) && __cplusplus > 202002L)
#include <expected>
#endif

#if defined(__cpp_lib_expected) && __cpp_lib_expected >= 202202L
namespace galay {
template <class T>
using Expected = std::expected<T, std::error_code>;
/// The error arm of an Expected (std::unexpected / tl::unexpected of an error_code).
using Unexpected = std::unexpected<std::error_code>;
}  // namespace galay
#else
#include <tl/expected.hpp>
namespace galay {
/// The result of a fallible operation: a value, or the error_code that explains why not.
template <class T>
using Expected = tl::expected<T, std::error_code>;
/// The error arm of an Expected (std::unexpected / tl::unexpected of an error_code).
using Unexpected = tl::unexpected<std::error_code>;
}  // namespace galay
#endif

namespace galay {
/// Build the error arm of an Expected from an errno value.
inline Unexpected errno_error(int err) { return Unexpected(std::error_code(err, std::system_category())); }
/// Build the error arm of an Expected from an error_code.
inline Unexpected make_error(std::error_code ec) { return Unexpected(ec); }
}  // namespace galay
