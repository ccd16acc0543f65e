# Dependencies, all from Debian packages (see README). Nothing is downloaded.
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)

# tl::expected (libexpected-dev); header-only, used when <expected> is not available.
find_package(tl-expected CONFIG QUIET)
if(NOT TARGET tl::expected)
  find_path(GALAY_TL_EXPECTED_DIR tl/expected.hpp REQUIRED)
  add_library(tl::expected INTERFACE IMPORTED)
  target_include_directories(tl::expected INTERFACE ${GALAY_TL_EXPECTED_DIR})
endif()

# OpenSSL 3 (libssl-dev) for TLS (galay-kernel/net/tls.h): on by default when it is found.
find_package(OpenSSL 3.0 QUIET COMPONENTS SSL Crypto)
option(GALAY_KERNEL_WITH_TLS "Build TlsStream/TlsContext (galay-kernel/net/tls.h) with OpenSSL 3" ${OPENSSL_FOUND})
if(GALAY_KERNEL_WITH_TLS)
  find_package(OpenSSL 3.0 REQUIRED COMPONENTS SSL Crypto)
endif()

# moodycamel::ConcurrentQueue (libconcurrentqueue-dev); header-only.
find_path(GALAY_CONCURRENTQUEUE_DIR concurrentqueue/concurrentqueue.h REQUIRED)

if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  # io_uring (liburing-dev) and kernel AIO (libaio-dev).
  pkg_check_modules(URING REQUIRED IMPORTED_TARGET liburing>=2.3)
  find_library(GALAY_AIO_LIBRARY aio REQUIRED)
  find_path(GALAY_AIO_INCLUDE_DIR libaio.h REQUIRED)
endif()

# c-ares (libc-ares-dev) for name resolution (net/resolver.h). On by default when found;
# asking for it without it is an error. Off: only numeric hosts resolve.
pkg_check_modules(CARES QUIET IMPORTED_TARGET libcares)
if(CARES_FOUND)
  option(GALAY_KERNEL_WITH_CARES "Resolve names with c-ares (net/resolver.h)" ON)
else()
  option(GALAY_KERNEL_WITH_CARES "Resolve names with c-ares (net/resolver.h)" OFF)
endif()
if(GALAY_KERNEL_WITH_CARES AND NOT CARES_FOUND)
  message(FATAL_ERROR "GALAY_KERNEL_WITH_CARES is ON but pkg-config finds no libcares (install libc-ares-dev)")
endif()
