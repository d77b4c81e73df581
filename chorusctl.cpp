// chorusctl: the operator's view of a Chorus cluster, read from the Redis registry the nodes keep.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <string_view>

#include "cluster/node_registry.hpp"

namespace {

constexpr const char* usage =
    "usage: chorusctl [--redis_url URL] nodes\n"
    "  nodes   every live node: id, incarnation, client and cluster address, time up\n"
    "The Redis URL defaults to CHORUS_REDIS_URL, the same key the nodes use.\n";

std::string uptime(std::int64_t started_at_ms) {
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  auto s = std::max<std::int64_t>(0, (now - started_at_ms) / 1000);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lldh%02lldm%02llds", static_cast<long long>(s / 3600),
                static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  return buf;
}

int list_nodes(const std::string& url) {
  chorus::cluster::node_registry registry(url);
  auto nodes = registry.live_nodes();
  if (!nodes) {
    std::fprintf(stderr, "chorusctl: cannot read the node registry at %s\n", url.c_str());
    return 1;
  }
  std::printf("%-24s %-16s %-22s %-22s %s\n", "NODE", "INCARNATION", "CLIENTS", "CLUSTER", "UP");
  for (const auto& n : *nodes)
    std::printf("%-24s %-16s %-22s %-22s %s\n", n.id.c_str(), n.incarnation.c_str(),
                (n.host + ":" + std::to_string(n.client_port)).c_str(),
                (n.host + ":" + std::to_string(n.cluster_port)).c_str(), uptime(n.started_at_ms).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("chorusctl"));
  spdlog::set_level(spdlog::level::warn);
  const char* env_url = std::getenv("CHORUS_REDIS_URL");
  std::string url = env_url != nullptr ? env_url : "";
  std::string command;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--redis_url" && i + 1 < argc) {
      url = argv[++i];
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(usage, stdout);
      return 0;
    } else if (command.empty() && !arg.starts_with("-")) {
      command = arg;
    } else {
      std::fprintf(stderr, "chorusctl: unexpected argument '%s'\n%s", argv[i], usage);
      return 2;
    }
  }
  if (url.empty()) {
    std::fprintf(stderr, "chorusctl: no Redis URL: set CHORUS_REDIS_URL or pass --redis_url\n");
    return 2;
  }
  if (command == "nodes") return list_nodes(url);
  std::fprintf(stderr, "chorusctl: %s\n%s", command.empty() ? "no command" : "unknown command", usage);
  return 2;
}
