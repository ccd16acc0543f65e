include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS galay-kernel EXPORT galay-kernel-targets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY galay-kernel/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/galay-kernel
        FILES_MATCHING PATTERN "*.h"
        PATTERN "builtin_backends.h" EXCLUDE)
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
