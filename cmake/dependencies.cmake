# Finds every external library Chorus uses and gives each one an imported target.
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)

find_package(Boost 1.81 REQUIRED CONFIG COMPONENTS json)
# Asio and Beast are compiled once, in net/asio_build.cpp, instead of in every file that includes them.
add_library(chorus_asio INTERFACE)
target_link_libraries(chorus_asio INTERFACE Boost::headers Boost::json Threads::Threads)
target_compile_definitions(chorus_asio INTERFACE BOOST_ASIO_SEPARATE_COMPILATION BOOST_BEAST_SEPARATE_COMPILATION
                                                 BOOST_ASIO_NO_DEPRECATED)

# CAF 0.17 ships neither a CMake config nor a pkg-config file.
find_path(CAF_INCLUDE_DIR caf/all.hpp REQUIRED)
find_library(CAF_CORE_LIBRARY caf_core REQUIRED)
find_library(CAF_IO_LIBRARY caf_io REQUIRED)
add_library(CAF::core UNKNOWN IMPORTED)
set_target_properties(CAF::core PROPERTIES IMPORTED_LOCATION "${CAF_CORE_LIBRARY}"
                                           INTERFACE_INCLUDE_DIRECTORIES "${CAF_INCLUDE_DIR}"
                                           INTERFACE_LINK_LIBRARIES Threads::Threads)
add_library(CAF::io UNKNOWN IMPORTED)
set_target_properties(CAF::io PROPERTIES IMPORTED_LOCATION "${CAF_IO_LIBRARY}"
                                         INTERFACE_LINK_LIBRARIES CAF::core)

find_package(spdlog CONFIG REQUIRED)
find_package(OpenSSL REQUIRED)
pkg_check_modules(TOMLPP REQUIRED IMPORTED_TARGET tomlplusplus)
pkg_check_modules(PQXX REQUIRED IMPORTED_TARGET libpqxx)
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)
# chorusd allocates and frees a few small strings per message on one thread and frees many on another (frames
# leave through the io thread); glibc's malloc spent about a sixth of the node's CPU on that (BENCHMARKS.md,
# durable sends). Not under the sanitizers, which bring their own allocator.
option(CHORUS_JEMALLOC "Link chorusd with jemalloc" ON)
if(CHORUS_JEMALLOC AND NOT CHORUS_SANITIZERS)
  pkg_check_modules(JEMALLOC REQUIRED IMPORTED_TARGET jemalloc)
endif()

if(CHORUS_BUILD_TESTS)
  find_package(GTest CONFIG REQUIRED)
  include(GoogleTest)
endif()
if(CHORUS_BUILD_BENCH)
  find_package(benchmark CONFIG REQUIRED)
endif()
