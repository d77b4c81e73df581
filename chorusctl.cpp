// chorusctl: the operator's command line: nodes, load and drains via Redis, room owners via PostgreSQL.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cluster/node_registry.hpp"

namespace {

using namespace std::chrono_literals;
using chorus::cluster::node_registry;
using chorus::cluster::node_stats;
using chorus::cluster::outcome;

constexpr const char* usage =
    "usage: chorusctl [--redis_url URL] [--database_url URL] COMMAND\n"
    "  nodes                 every live node: id, incarnation, client and cluster address, time up,\n"
    "                        cluster wire version (nodes of different versions do not peer)\n"
    "  stats [--once]        every live node's rooms, connections, messages stored (since it\n"
    "                        started) and stored per second over two readings at least a second\n"
    "                        apart (--once: one reading, no rate), and whether it is draining\n"
    "  drain NODE [--wait]   ask live node NODE to stop accepting connections, hand its rooms over\n"
    "                        and exit; --wait: until it has left the cluster (at most 60 s)\n"
    "  rooms [--node NODE] [--limit N]\n"
    "                        rooms with their owner node, owner epoch and last seq (the first N by\n"
    "                        owner and id, default 100), then how many rooms each node owns; read\n"
    "                        from PostgreSQL\n"
    "The Redis URL defaults to CHORUS_REDIS_URL and the database URL to CHORUS_DATABASE_URL, the keys\n"
    "the nodes use. Exit status: 0 done, 1 failed (a server unreachable, NODE not live, a drain not\n"
    "finished in time), 2 usage.\n";

/// How long a drain request stays valid: a node sees it on its next heartbeat, so this only has to outlast
/// a node that cannot reach Redis for a while. Afterwards the request is gone and chorusctl drain must be
/// run again.
constexpr auto drain_valid_for = 10min;
/// How long `drain --wait` waits for the node to leave.
constexpr auto drain_wait_limit = 60s;
/// `stats`: the least time between the two readings, and the most spent waiting for every node to publish a
/// newer reading than the first (nodes publish every node_heartbeat_ms, 1 s by default).
constexpr auto stats_interval = 1s;
constexpr auto stats_wait_limit = 5s;
/// How often `drain --wait` and `stats` look again.
constexpr auto poll_interval = 250ms;
/// Bounds `rooms` so that a dead PostgreSQL or a huge table cannot hang the command.
constexpr const char* pg_connect_timeout_s = "5";
constexpr int pg_statement_timeout_ms = 5000;

/// What the command line asked for.
struct request {
  std::string command;
  std::vector<std::string> args;  ///< positional arguments after the command
  std::string redis_url;
  std::string database_url;
  std::optional<std::string> node;   ///< rooms --node
  std::optional<std::size_t> limit;  ///< rooms --limit
  bool wait = false;                 ///< drain --wait
  bool once = false;                 ///< stats --once
};

/// The URL without its password, for messages.
std::string redacted(const std::string& url) {
  const auto scheme = url.find("://");
  const auto at = url.rfind('@');
  if (scheme == std::string::npos || at == std::string::npos || at < scheme) return url;
  return url.substr(0, scheme + 3) + "…" + url.substr(at);
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string uptime(std::int64_t started_at_ms) {
  auto s = std::max<std::int64_t>(0, (now_ms() - started_at_ms) / 1000);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lldh%02lldm%02llds", static_cast<long long>(s / 3600),
                static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  return buf;
}

/// The registry's settings for a command: the nodes' timeouts (200 ms) are for heartbeats that must not stall
/// a node, while an operator would rather wait two seconds than see a command fail on a busy host.
node_registry::options command_options() {
  node_registry::options opts;
  opts.connect_timeout = 2s;
  opts.command_timeout = 2s;
  opts.client_name = "chorusctl";
  return opts;
}

int registry_unreadable(const std::string& url) {
  std::fprintf(stderr, "chorusctl: cannot read the node registry at %s\n", redacted(url).c_str());
  return 1;
}

// --- nodes --------------------------------------------------------------------------------------------

int list_nodes(const std::string& url) {
  node_registry registry(url, command_options());
  auto nodes = registry.live_nodes();
  if (!nodes) return registry_unreadable(url);
  // WIRE: the build's cluster wire version; nodes whose versions differ do not peer (0: a build before it).
  std::printf("%-24s %-16s %-22s %-22s %-12s %s\n", "NODE", "INCARNATION", "CLIENTS", "CLUSTER", "UP",
              "WIRE");
  for (const auto& n : *nodes)
    std::printf("%-24s %-16s %-22s %-22s %-12s %u\n", n.id.c_str(), n.incarnation.c_str(),
                (n.host + ":" + std::to_string(n.client_port)).c_str(),
                (n.host + ":" + std::to_string(n.cluster_port)).c_str(), uptime(n.started_at_ms).c_str(),
                static_cast<unsigned>(n.wire_version));
  return 0;
}

// --- stats --------------------------------------------------------------------------------------------

using stats_by_node = std::map<std::string, node_stats>;

std::optional<stats_by_node> read_stats(node_registry& registry) {
  auto all = registry.stats();
  if (!all) return std::nullopt;
  return stats_by_node(all->begin(), all->end());
}

// Messages stored per second between two readings of one node, by the node's own clock (at_ms), so the
// time between chorusctl's reads does not matter. Unknown when the node published nothing newer, or its
// running total went back (it restarted in between).
std::optional<double> rate(const node_stats& before, const node_stats& after) {
  if (after.at_ms <= before.at_ms || after.messages_stored < before.messages_stored) return std::nullopt;
  return double(after.messages_stored - before.messages_stored) * 1000.0 / double(after.at_ms - before.at_ms);
}

int show_stats(const std::string& url, bool once) {
  node_registry registry(url, command_options());
  auto first = read_stats(registry);
  if (!first) return registry_unreadable(url);
  std::optional<stats_by_node> second;
  if (!once && !first->empty()) {
    // Wait until every node has published a reading newer than the first one, or the limit.
    const auto start = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(stats_interval);
    for (;;) {
      second = read_stats(registry);
      if (!second) return registry_unreadable(url);
      const bool all_newer = std::all_of(first->begin(), first->end(), [&](const auto& entry) {
        auto it = second->find(entry.first);
        return it == second->end() || it->second.at_ms > entry.second.at_ms;
      });
      if (all_newer || std::chrono::steady_clock::now() - start >= stats_wait_limit) break;
      std::this_thread::sleep_for(poll_interval);
    }
  }
  // Listed last, so that a node that left while we waited is not shown.
  auto nodes = registry.live_nodes();
  if (!nodes) return registry_unreadable(url);
  const stats_by_node& latest = second ? *second : *first;

  std::printf("%-24s %8s %12s %16s %10s %s\n", "NODE", "ROOMS", "CONNECTIONS", "MESSAGES_STORED", "MSG/S",
              "DRAINING");
  for (const auto& n : *nodes) {
    auto it = latest.find(n.id);
    if (it == latest.end()) {  // registered, but has not published figures yet (or is an older version)
      std::printf("%-24s %8s %12s %16s %10s %s\n", n.id.c_str(), "-", "-", "-", "-", "-");
      continue;
    }
    const node_stats& s = it->second;
    std::string per_second = "-";
    if (second)
      if (auto before = first->find(n.id); before != first->end())
        if (auto r = rate(before->second, s)) {
          char buf[32];
          std::snprintf(buf, sizeof buf, "%.1f", *r);
          per_second = buf;
        }
    std::printf("%-24s %8llu %12llu %16llu %10s %s\n", n.id.c_str(), static_cast<unsigned long long>(s.rooms),
                static_cast<unsigned long long>(s.connections),
                static_cast<unsigned long long>(s.messages_stored), per_second.c_str(),
                s.draining ? "yes" : "no");
  }
  return 0;
}

// --- drain --------------------------------------------------------------------------------------------

int drain(const std::string& url, const std::string& id, bool wait) {
  node_registry registry(url, command_options());
  auto nodes = registry.live_nodes();
  if (!nodes) return registry_unreadable(url);
  auto node = std::find_if(nodes->begin(), nodes->end(), [&](const auto& n) { return n.id == id; });
  const auto not_live = [&] {
    std::fprintf(stderr, "chorusctl: %s is not a live node; nothing to drain (chorusctl nodes lists them)\n",
                 id.c_str());
    return 1;
  };
  if (node == nodes->end()) return not_live();
  const std::string incarnation = node->incarnation;
  switch (registry.request_drain(id, drain_valid_for)) {
    case outcome::ok:
      break;
    case outcome::not_registered:  // it left between the listing and the request
      return not_live();
    default:
      return registry_unreadable(url);
  }
  std::printf("%s will stop accepting connections, hand its rooms over and exit\n", id.c_str());
  if (!wait) return 0;
  std::fflush(stdout);

  // Done when this incarnation's entry is gone; a supervisor may already have started a new one.
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < drain_wait_limit) {
    std::this_thread::sleep_for(poll_interval);
    auto now = registry.live_nodes();
    if (!now) continue;  // Redis unreachable for a moment (logged): keep trying until the limit
    auto again = std::find_if(now->begin(), now->end(), [&](const auto& n) { return n.id == id; });
    if (again != now->end() && again->incarnation == incarnation) continue;
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (again == now->end())
      std::printf("%s has left the cluster (%.1f s)\n", id.c_str(), took);
    else
      std::printf("%s has left the cluster (%.1f s) and is back as a new incarnation, %s\n", id.c_str(), took,
                  again->incarnation.c_str());
    return 0;
  }
  std::fprintf(
      stderr,
      "chorusctl: %s is still live after %lld s; it may still be handing rooms over (chorusctl stats "
      "shows whether it is draining)\n",
      id.c_str(), static_cast<long long>(drain_wait_limit.count()));
  return 1;
}

// --- rooms --------------------------------------------------------------------------------------------

// libpq's messages end in a newline, some span lines.
std::string one_line(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

const char* text_or(const pqxx::field& f, const char* null_text) {
  return f.is_null() ? null_text : f.c_str();
}

int list_rooms(const std::string& url, const std::optional<std::string>& node, std::size_t limit) {
  // libpq waits forever for a server that does not answer unless told otherwise; an operator's setting wins.
  ::setenv("PGCONNECT_TIMEOUT", pg_connect_timeout_s, 0);
  try {
    pqxx::connection conn(url);
    // One snapshot (repeatable read), so that the listing and the counts agree.
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(conn);
    tx.exec0("SET LOCAL statement_timeout = " + std::to_string(pg_statement_timeout_ms));
    const std::string where = node ? " WHERE owner_node = $1" : "";
    const std::string rooms_sql = "SELECT id, last_seq, owner_epoch, owner_node FROM rooms" + where +
                                  " ORDER BY owner_node NULLS LAST, id LIMIT " + std::to_string(limit);
    const std::string counts_sql = "SELECT owner_node, count(*) FROM rooms" + where +
                                   " GROUP BY owner_node ORDER BY owner_node NULLS LAST";
    const pqxx::result rooms = node ? tx.exec_params(rooms_sql, *node) : tx.exec(rooms_sql);
    const pqxx::result counts = node ? tx.exec_params(counts_sql, *node) : tx.exec(counts_sql);

    std::printf("%-40s %10s %12s %s\n", "ROOM", "LAST_SEQ", "OWNER_EPOCH", "OWNER_NODE");
    for (const auto& row : rooms)
      std::printf("%-40s %10s %12s %s\n", row[0].c_str(), row[1].c_str(), text_or(row[2], "-"),
                  text_or(row[3], "-"));
    std::uint64_t total = 0;
    for (const auto& row : counts) total += row[1].as<std::uint64_t>();
    if (total > rooms.size())
      std::printf("(%zu of %llu rooms; --limit N shows more)\n", rooms.size(),
                  static_cast<unsigned long long>(total));
    std::printf("\n%-24s %s\n", "OWNER_NODE", "ROOMS");
    for (const auto& row : counts) std::printf("%-24s %s\n", text_or(row[0], "(none)"), row[1].c_str());
    return 0;
  } catch (const pqxx::sql_error& e) {
    // undefined_column / undefined_table: a database that no chorusd of this version has migrated yet.
    if (e.sqlstate() == "42703" || e.sqlstate() == "42P01") {
      std::fprintf(stderr,
                   "chorusctl: the database has no room owners (rooms.owner_node, rooms.owner_epoch): its "
                   "schema is older than this chorusctl; start a chorusd of this version on it first\n");
    } else {
      std::fprintf(stderr, "chorusctl: cannot list rooms: %s\n", one_line(e.what()).c_str());
    }
    return 1;
  } catch (const std::exception& e) {  // pqxx::broken_connection and the like
    std::fprintf(stderr, "chorusctl: cannot read the rooms from PostgreSQL at %s: %s\n",
                 redacted(url).c_str(), one_line(e.what()).c_str());
    return 1;
  }
}

// --- the command line ---------------------------------------------------------------------------------

int usage_error(const std::string& what) {
  std::fprintf(stderr, "chorusctl: %s\n%s", what.c_str(), usage);
  return 2;
}

// A server URL is missing: usage too, but the usage text would bury the one thing to fix.
int missing(const char* what) {
  std::fprintf(stderr, "chorusctl: %s\n", what);
  return 2;
}

std::optional<std::size_t> positive(std::string_view text) {
  std::size_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n == 0) return std::nullopt;
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("chorusctl"));
  spdlog::set_level(spdlog::level::warn);
  request req;
  const char* env_redis = std::getenv("CHORUS_REDIS_URL");
  const char* env_database = std::getenv("CHORUS_DATABASE_URL");
  req.redis_url = env_redis != nullptr ? env_redis : "";
  req.database_url = env_database != nullptr ? env_database : "";
  // Options may come before or after the command; which command they belong to is checked below.
  std::set<std::string_view> given;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage, stdout);
      return 0;
    } else if (arg == "--redis_url" && has_value) {
      req.redis_url = argv[++i];
    } else if (arg == "--database_url" && has_value) {
      req.database_url = argv[++i];
    } else if (arg == "--node" && has_value) {
      req.node = argv[++i];
    } else if (arg == "--limit" && has_value) {
      if (!(req.limit = positive(argv[++i]))) return usage_error("--limit takes a positive number");
    } else if (arg == "--wait") {
      req.wait = true;
    } else if (arg == "--once") {
      req.once = true;
    } else if (!arg.starts_with("-")) {
      if (req.command.empty())
        req.command = arg;
      else
        req.args.emplace_back(arg);
      continue;
    } else {
      return usage_error("unexpected argument '" + std::string(arg) + "'");
    }
    given.insert(arg);
  }

  // Each command's own options and number of arguments.
  const std::map<std::string, std::pair<std::set<std::string_view>, std::size_t>> commands{
      {"nodes", {{}, 0}},
      {"stats", {{"--once"}, 0}},
      {"drain", {{"--wait"}, 1}},
      {"rooms", {{"--node", "--limit"}, 0}}};
  auto command = commands.find(req.command);
  if (command == commands.end()) return usage_error(req.command.empty() ? "no command" : "unknown command");
  const auto& [own_options, arity] = command->second;
  for (auto option : given)
    if (option != "--redis_url" && option != "--database_url" && !own_options.contains(option))
      return usage_error(std::string(option) + " is not an option of " + req.command);
  if (req.args.size() != arity)
    return usage_error(arity == 0 ? "unexpected argument '" + req.args.front() + "'"
                                  : req.command + " takes a node id");

  if (req.command == "rooms") {
    if (req.database_url.empty())
      return missing("no database URL: set CHORUS_DATABASE_URL or pass --database_url");
    return list_rooms(req.database_url, req.node, req.limit.value_or(100));
  }
  if (req.redis_url.empty()) return missing("no Redis URL: set CHORUS_REDIS_URL or pass --redis_url");
  if (req.command == "nodes") return list_nodes(req.redis_url);
  if (req.command == "stats") return show_stats(req.redis_url, req.once);
  return drain(req.redis_url, req.args.front(), req.wait);
}
