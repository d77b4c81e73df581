// Process-level facts the generator reports: its CPU time, the node's CPU time and RSS, the open-files limit.
#pragma once

#include <cstdint>
#include <optional>

namespace chorus::bench {

/// User + system CPU seconds this process has used.
double cpu_seconds();

/// User + system CPU seconds process `pid` has used (from /proc/PID/stat); nullopt if unreadable.
std::optional<double> cpu_seconds_of(int pid);

/// VmRSS of `pid` in KiB from /proc/PID/status; nullopt if unreadable.
std::optional<std::uint64_t> rss_kib(int pid);

/// Raises the soft RLIMIT_NOFILE to the hard limit (thousands of sockets need it); returns the new soft
/// limit.
std::uint64_t raise_open_files_limit();

}  // namespace chorus::bench
