// chorus-bench: parses the command line, raises the open-files limit, runs the scenario, prints the report.
#include <cstdio>
#include <variant>

#include "bench/load/load_run.hpp"
#include "bench/load/process_stats.hpp"
#include "bench/load/report.hpp"
#include "bench/load/scenario.hpp"

namespace {

// Descriptors the generator keeps for itself (epoll, eventfd, timerfd, stdio) besides its sockets.
constexpr std::uint64_t kReservedFiles = 64;

}  // namespace

int main(int argc, char** argv) {
  using namespace chorus::bench;
  auto parsed = parse_command_line(argc, argv);
  if (auto* help = std::get_if<help_requested>(&parsed)) {
    std::fputs(help->text.c_str(), stdout);
    return 0;
  }
  if (auto* error = std::get_if<parse_error>(&parsed)) {
    std::fprintf(stderr, "chorus-bench: %s (see --help)\n", error->message.c_str());
    return 2;
  }
  auto s = std::get<scenario>(parsed);
  const auto limit = raise_open_files_limit();
  const std::uint64_t usable = limit > kReservedFiles ? limit - kReservedFiles : 0;
  const std::uint64_t churn_files = s.churn_rate > 0 ? s.churn_concurrency : 0;
  if (s.connections == 0) {
    s.connections = static_cast<std::uint32_t>(usable > churn_files ? usable - churn_files : 0);
    if (!s.json)
      std::fprintf(stderr, "chorus-bench: %u connections (open-files limit %llu)\n", s.connections,
                   static_cast<unsigned long long>(limit));
  }
  if (s.connections + churn_files > usable) {
    std::fprintf(stderr, "chorus-bench: --connections %u needs more than the open-files limit %llu allows\n",
                 s.connections, static_cast<unsigned long long>(limit));
    return 2;
  }
  if (s.connections == 0) {
    std::fprintf(stderr, "chorus-bench: no connections to open\n");
    return 2;
  }

  auto report = run_load(s);
  report.open_files_limit = limit;
  if (!s.json) print_summary(stdout, report);
  std::printf("%s\n", json_line(report).c_str());
  return report.aborted.empty() ? 0 : 1;
}
