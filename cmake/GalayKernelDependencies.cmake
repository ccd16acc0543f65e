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

# moodycamel::ConcurrentQueue (libconcurrentqueue-dev); header-only.
find_path(GALAY_CONCURRENTQUEUE_DIR concurrentqueue/concurrentqueue.h REQUIRED)

if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  # io_uring (liburing-dev) and kernel AIO (libaio-dev).
  pkg_check_modules(URING REQUIRED IMPORTED_TARGET liburing>=2.3)
  find_library(GALAY_AIO_LIBRARY aio REQUIRED)
  find_path(GALAY_AIO_INCLUDE_DIR libaio.h REQUIRED)
endif()
