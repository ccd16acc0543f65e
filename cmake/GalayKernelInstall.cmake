include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS galay-kernel EXPORT galay-kernel-targets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# Public headers only: internals (every detail/ folder) and the backends themselves
# (io/epoll, io/io_uring, io/kqueue, io/aio: they pull <liburing.h>, <libaio.h>) stay here.
install(DIRECTORY galay-kernel/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/galay-kernel
        FILES_MATCHING PATTERN "*.h"
        REGEX "/detail$" EXCLUDE
        REGEX "/io/(epoll|io_uring|kqueue|aio|ops)$" EXCLUDE)
install(EXPORT galay-kernel-targets NAMESPACE galay-kernel::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/galay-kernel)

configure_package_config_file(cmake/galay-kernel-config.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/galay-kernel-config.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/galay-kernel)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/galay-kernel-config-version.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/galay-kernel-config.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/galay-kernel-config-version.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/galay-kernel)

install(FILES ${PROJECT_BINARY_DIR}/generated/galay-kernel/version.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/galay-kernel)
# A relocatable .pc: the prefix is found relative to the .pc file itself.
file(RELATIVE_PATH GALAY_PC_RELATIVE_PREFIX /root/${CMAKE_INSTALL_LIBDIR}/pkgconfig /root)
set(GALAY_PC_REQUIRES_PRIVATE liburing)
if(GALAY_KERNEL_WITH_CARES)
  string(APPEND GALAY_PC_REQUIRES_PRIVATE " libcares")
endif()
if(GALAY_KERNEL_WITH_TLS)
  string(APPEND GALAY_PC_REQUIRES_PRIVATE " openssl")
endif()
configure_file(cmake/galay-kernel.pc.in ${CMAKE_CURRENT_BINARY_DIR}/galay-kernel.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/galay-kernel.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
