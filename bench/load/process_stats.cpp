// getrusage, /proc/PID/status and setrlimit, kept out of the generator's logic.
#include "bench/load/process_stats.hpp"

#include <sys/resource.h>

#include <fstream>
#include <string>

namespace chorus::bench {

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto seconds = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6;
  };
  return seconds(ru.ru_utime) + seconds(ru.ru_stime);
}

std::optional<std::uint64_t> rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      std::uint64_t v = 0;
      for (char c : line) {
        if (c >= '0' && c <= '9') v = v * 10 + static_cast<unsigned>(c - '0');
      }
      return v;
    }
  }
  return std::nullopt;
}

std::uint64_t raise_open_files_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  return lim.rlim_cur;
}

}  // namespace chorus::bench
