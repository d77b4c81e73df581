// Reads, checks, documents and prints the node configuration, all driven by one table of key descriptors.
#include "config/config.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include <toml++/toml.h>

extern char** environ;  // POSIX promises it but <unistd.h> declares it only under _GNU_SOURCE

namespace chorus::config {
namespace {

using field =
    std::variant<std::string node_config::*, std::uint16_t node_config::*, std::uint32_t node_config::*>;

constexpr std::uint64_t unlimited = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint64_t uint32_max = std::numeric_limits<std::uint32_t>::max();

/// One configuration key. Adding a field to node_config means adding exactly one row to `keys` below;
/// the file, environment, flags, --help, --print-config and validate() all read from that row.
struct key_def {
  std::string_view name;
  field member;
  std::string_view help;
  std::uint64_t min = 0;  ///< numbers: smallest value; strings: shortest length in bytes
  std::uint64_t max = unlimited;
  std::string_view allowed = {};               ///< overrides "min..max" in messages when `rule` says more
  bool (*rule)(const node_config&) = nullptr;  ///< a check min/max cannot express, e.g. one between two keys
  bool secret = false;                         ///< never echoed back by --print-config or error messages
  bool serving_only = false;                   ///< required to run a node, not to mint a token
};

constexpr std::array<std::string_view, 7> log_levels{"trace", "debug",    "info", "warn",
                                                     "error", "critical", "off"};

constexpr bool ascii_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool known_log_level(const node_config& c) {
  return std::ranges::find(log_levels, c.log_level) != log_levels.end();
}

// node_id goes into logs, metrics and peer addresses, so it is kept to a shell- and URL-safe alphabet.
bool plain_node_id(const node_config& c) {
  return !c.node_id.empty() && ascii_alnum(c.node_id.front()) && std::ranges::all_of(c.node_id, [](char ch) {
    return ascii_alnum(ch) || ch == '_' || ch == '.' || ch == '-';
  });
}

// A message of max_message_chars code points must still fit in one frame.
bool message_fits_frame(const node_config& c) {
  return c.max_message_chars <= c.max_frame_bytes;
}

bool cluster_needs_redis(const node_config& c) {
  return c.cluster_port == 0 || !c.redis_url.empty();
}

bool ttl_exceeds_heartbeat(const node_config& c) {
  return c.node_ttl_ms > c.node_heartbeat_ms;
}

bool redis_url_shape(const node_config& c) {
  return c.redis_url.empty() || c.redis_url.starts_with("redis://");
}

constexpr std::array keys{
    key_def{.name = "host",
            .member = &node_config::host,
            .help = "address the HTTP/WebSocket listener binds",
            .min = 1,
            .allowed = "non-empty"},
    key_def{.name = "port",
            .member = &node_config::port,
            .help = "listener port; 0 picks a free one (printed at start-up)",
            .max = 65535},
    key_def{.name = "node_id",
            .member = &node_config::node_id,
            .help = "this node's name, sent to clients in `hello`",
            .min = 1,
            .max = 64,
            .allowed = "[A-Za-z0-9][A-Za-z0-9_.-]{0,63}",
            .rule = plain_node_id},
    key_def{.name = "log_level",
            .member = &node_config::log_level,
            .help = "least severe log level written",
            .allowed = "trace|debug|info|warn|error|critical|off",
            .rule = known_log_level},
    key_def{.name = "jwt_secret",
            .member = &node_config::jwt_secret,
            .help = "HS256 key for access tokens; required",
            .min = 32,
            .allowed = "at least 32 bytes",
            .secret = true},
    key_def{.name = "io_threads",
            .member = &node_config::io_threads,
            .help = "threads running the network event loop",
            .min = 1,
            .max = 64},
    key_def{.name = "actor_threads",
            .member = &node_config::actor_threads,
            .help = "CAF scheduler threads; 0 = one per core",
            .max = 256},
    key_def{.name = "max_frame_bytes",
            .member = &node_config::max_frame_bytes,
            .help = "largest WebSocket message a client may send; larger closes with 1009",
            .min = 1024,
            .max = 16777216},
    key_def{.name = "max_message_chars",
            .member = &node_config::max_message_chars,
            .help = "longest chat message text, in Unicode code points",
            .min = 1,
            .max = 16777216,
            .allowed = "1..max_frame_bytes",
            .rule = message_fits_frame},
    key_def{.name = "send_queue_limit",
            .member = &node_config::send_queue_limit,
            .help = "frames queued for one connection past which it is closed (4008) if its write has "
                    "waited 1 s; at 4 times this, at once",
            .min = 16,
            .max = 1000000},
    // Input's counterpart of send_queue_limit: a client may send faster than the node works through its
    // frames (a flood, or a node short of CPU). Past this the node stops reading the socket, so TCP holds the
    // client back; before, frames queued in memory without bound and the node's throughput fell
    // (BENCHMARKS.md, durable sends, "evening").
    key_def{.name = "receive_queue_limit",
            .member = &node_config::receive_queue_limit,
            .help = "frames a connection may have waiting for its session; past it the node stops reading "
                    "from the connection until half are handled",
            .min = 1,
            .max = 1000000},
    key_def{.name = "idle_timeout_ms",
            .member = &node_config::idle_timeout_ms,
            .help = "ping after half of this without data; close after all of it",
            .min = 1000,
            .max = 3600000},
    key_def{.name = "auth_timeout_ms",
            .member = &node_config::auth_timeout_ms,
            .help = "time a new connection has to authenticate",
            .min = 100,
            .max = 600000},
    key_def{.name = "ops_per_second",
            .member = &node_config::ops_per_second,
            .help = "sustained client operations per connection",
            .min = 1,
            .max = uint32_max},
    key_def{.name = "ops_burst",
            .member = &node_config::ops_burst,
            .help = "operations a connection may send at once before the rate applies",
            .min = 1,
            .max = uint32_max},
    key_def{.name = "shutdown_timeout_ms",
            .member = &node_config::shutdown_timeout_ms,
            .help = "longest a graceful shutdown waits for connections to close",
            .min = 100,
            .max = 600000},
    key_def{.name = "max_connections",
            .member = &node_config::max_connections,
            .help = "connections accepted at once; more are refused with HTTP 503",
            .min = 1,
            .max = 10000000},
    key_def{.name = "request_timeout_ms",
            .member = &node_config::request_timeout_ms,
            .help = "longest a session waits for a room's answer before replying `unavailable`",
            .min = 100,
            .max = 600000},
    // Admission control: a node whose database falls behind otherwise queues every send it takes, and each
    // waits longer than the one before until the watchdog fails them all (BENCHMARKS.md, durable sends,
    // "evening"). Refused sends are safe to retry with the same client_msg_id. No rule against
    // request_timeout_ms: lowering that alone must not stop a node; at or past it, shedding never starts.
    key_def{.name = "shed_after_ms",
            .member = &node_config::shed_after_ms,
            .help =
                "a room refuses new sends (`unavailable`) while one of its writes has waited this long for "
                "PostgreSQL; 0, or request_timeout_ms or more: never",
            .min = 0,
            .max = 600000},
    key_def{.name = "database_url",
            .member = &node_config::database_url,
            .help = "PostgreSQL connection URL, e.g. postgresql://chorus@127.0.0.1:5432/chorus (required)",
            .min = 1,
            .allowed = "a PostgreSQL URL (required)",
            .secret = true,
            .serving_only = true},
    key_def{.name = "writer_count",
            .member = &node_config::writer_count,
            .help = "batch writer actors, each with its own PostgreSQL connection",
            .min = 1,
            .max = 64},
    // Binds only when a writer is behind (else its mailbox drains first); then it sets how fast the writer
    // can catch up. Batches from 1000 rows go by COPY (storage::default_copy_from_rows), and 4000 of them
    // take 37-51 ms, a third less than as one statement (bench/append.sh). With one statement per batch, one
    // writer at 50,000/s stayed behind in 8 runs of 27 at 4000, in 12 of 25 at 1000 (BENCHMARKS.md, durable
    // sends, "last" and "at night").
    key_def{.name = "batch_max_rows",
            .member = &node_config::batch_max_rows,
            .help = "a batch is written once it holds this many messages",
            .min = 1,
            .max = 100000},
    key_def{.name = "batch_max_delay_ms",
            .member = &node_config::batch_max_delay_ms,
            .help = "or once its oldest message has waited this long (0: as soon as the writer is free)",
            .min = 0,
            .max = 10000},
    key_def{
        .name = "slow_commit_ms",
        .member = &node_config::slow_commit_ms,
        .help = "a batch commit that takes this long is logged as a warning, at most every 10 s (0: never)",
        .min = 0,
        .max = 600000},
    key_def{.name = "history_limit",
            .member = &node_config::history_limit,
            .help = "most messages one history page or one resume may return",
            .min = 1,
            .max = 1000},
    key_def{.name = "tail_cache_size",
            .member = &node_config::tail_cache_size,
            .help = "recent messages each room keeps in memory for history, resume and duplicate checks",
            .min = 0,
            .max = 100000},
    key_def{.name = "member_events_limit",
            .member = &node_config::member_events_limit,
            .help = "a room with more users connected than this sends member_count events instead of joins, "
                    "leaves, presence and typing, and its join replies list only this many members",
            .min = 2,
            .max = 1000000},
    key_def{.name = "redis_url",
            .member = &node_config::redis_url,
            .help = "Redis URL for rate limits shared by every node, e.g. redis://127.0.0.1:6379 (empty: "
                    "each node counts alone)",
            .allowed = "a redis:// URL, or empty",
            .rule = redis_url_shape,
            .secret = true},
    key_def{.name = "dev_mode",
            .member = &node_config::dev_mode,
            .help = "1 = development: `chorusd token` mints tokens, users need no account, joining an "
                    "unknown room creates it as a public group; never in production",
            .min = 0,
            .max = 1},
    key_def{.name = "access_token_ttl_s",
            .member = &node_config::access_token_ttl_s,
            .help = "seconds an access token (JWT) from login or refresh stays valid",
            .min = 10,
            .max = 86400},
    key_def{.name = "refresh_token_ttl_s",
            .member = &node_config::refresh_token_ttl_s,
            .help = "seconds a refresh token stays valid; each use replaces it with a new one",
            .min = 60,
            .max = 31536000},
    key_def{.name = "max_body_bytes",
            .member = &node_config::max_body_bytes,
            .help = "largest HTTP request body accepted; a larger one gets 413",
            .min = 1024,
            .max = 16777216},
    key_def{.name = "api_workers",
            .member = &node_config::api_workers,
            .help = "actors serving the HTTP API, each with its own PostgreSQL connection",
            .min = 1,
            .max = 64},
    key_def{.name = "login_attempts_per_minute",
            .member = &node_config::login_attempts_per_minute,
            .help = "login attempts allowed per minute from one client address, and for one account",
            .min = 1,
            .max = 100000},
    key_def{.name = "login_lockout_failures",
            .member = &node_config::login_lockout_failures,
            .help = "failed logins in a row after which an account is locked",
            .min = 1,
            .max = 1000},
    key_def{.name = "login_lockout_s",
            .member = &node_config::login_lockout_s,
            .help = "seconds a locked account refuses logins",
            .min = 1,
            .max = 86400},
    key_def{.name = "registrations_per_hour",
            .member = &node_config::registrations_per_hour,
            .help = "accounts one client address may register per hour",
            .min = 1,
            .max = 1000000},
    key_def{.name = "api_requests_per_second",
            .member = &node_config::api_requests_per_second,
            .help = "sustained HTTP API requests per user (per client address before login)",
            .min = 1,
            .max = 1000000},
    key_def{.name = "api_burst",
            .member = &node_config::api_burst,
            .help = "HTTP API requests allowed at once before api_requests_per_second applies",
            .min = 1,
            .max = 1000000},
    key_def{.name = "sends_per_second",
            .member = &node_config::sends_per_second,
            .help = "sustained chat messages per user, counted across every node",
            .min = 1,
            .max = 1000000},
    key_def{.name = "sends_burst",
            .member = &node_config::sends_burst,
            .help = "chat messages a user may send at once before sends_per_second applies",
            .min = 1,
            .max = 1000000},
    key_def{
        .name = "cluster_port",
        .member = &node_config::cluster_port,
        .help = "port on which this node's CAF middleman accepts other nodes (0: a single node, no cluster)",
        .min = 0,
        .max = 65535,
        .allowed = "0..65535; a clustered node needs redis_url",
        .rule = cluster_needs_redis},
    key_def{.name = "node_ttl_ms",
            .member = &node_config::node_ttl_ms,
            .help = "a node whose Redis registration was not refreshed for this long is down",
            .min = 500,
            .max = 600000,
            .allowed = "500..600000, more than node_heartbeat_ms",
            .rule = ttl_exceeds_heartbeat},
    key_def{.name = "node_heartbeat_ms",
            .member = &node_config::node_heartbeat_ms,
            .help = "how often a node refreshes its Redis registration",
            .min = 50,
            .max = 60000},
    key_def{.name = "peer_heartbeat_ms",
            .member = &node_config::peer_heartbeat_ms,
            .help = "heartbeat interval of the middleman connections between nodes",
            .min = 50,
            .max = 60000},
    key_def{
        .name = "peer_timeout_ms",
        .member = &node_config::peer_timeout_ms,
        .help =
            "a peer connection silent this long is dropped, so a hung node is noticed, not only a dead one",
        .min = 100,
        .max = 600000},
};

// A numeric range wider than its field would let a value wrap silently when stored; only strings can be
// secret.
consteval bool ranges_fit_fields() {
  for (const key_def& k : keys) {
    if (k.min > k.max) return false;
    if (k.secret && !std::holds_alternative<std::string node_config::*>(k.member)) return false;
    if (std::holds_alternative<std::uint16_t node_config::*>(k.member) && k.max > 65535) return false;
    if (std::holds_alternative<std::uint32_t node_config::*>(k.member) && k.max > uint32_max) return false;
  }
  return true;
}
static_assert(ranges_fit_fields());

[[noreturn]] void fail(const std::string& message) {
  throw config_error(message);
}

std::string_view type_name(const key_def& k) {
  return std::visit(
      [](auto m) -> std::string_view {
        using value = std::remove_cvref_t<decltype(std::declval<node_config>().*m)>;
        if constexpr (std::is_same_v<value, std::string>) {
          return "string";
        } else if constexpr (std::is_same_v<value, std::uint16_t>) {
          return "uint16";
        } else {
          return "uint32";
        }
      },
      k.member);
}

std::string range_text(std::uint64_t min, std::uint64_t max) {
  return std::to_string(min) + ".." + std::to_string(max);
}

std::string allowed_text(const key_def& k) {
  return k.allowed.empty() ? range_text(k.min, k.max) : std::string(k.allowed);
}

std::string env_name(std::string_view key) {
  std::string name = "CHORUS_";
  for (char c : key) name += static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  return name;
}

const key_def* find_key(std::string_view name) {
  auto it = std::ranges::find(keys, name, &key_def::name);
  return it == keys.end() ? nullptr : &*it;
}

// A TOML basic string, which is also readable in error messages whatever bytes the value holds.
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          constexpr std::string_view hex = "0123456789ABCDEF";
          out += "\\u00";
          out += hex[static_cast<unsigned char>(c) >> 4];
          out += hex[static_cast<unsigned char>(c) & 0xf];
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

/// The value as TOML: a quoted string or a bare integer.
std::string toml_value(const key_def& k, const node_config& cfg) {
  return std::visit(
      [&](auto m) -> std::string {
        if constexpr (std::is_same_v<decltype(m), std::string node_config::*>) {
          return quote(cfg.*m);
        } else {
          return std::to_string(cfg.*m);
        }
      },
      k.member);
}

bool within_limits(const key_def& k, const node_config& cfg) {
  return std::visit(
      [&](auto m) {
        if constexpr (std::is_same_v<decltype(m), std::string node_config::*>) {
          return (cfg.*m).size() >= k.min && (cfg.*m).size() <= k.max;
        } else {
          return cfg.*m >= k.min && cfg.*m <= k.max;
        }
      },
      k.member);
}

std::uint64_t parse_number(std::string_view text, std::uint64_t min, std::uint64_t max,
                           const std::string& where) {
  std::uint64_t value = 0;
  // from_chars rejects signs, spaces and overflow; checking `ptr` rejects trailing garbage like "12abc".
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr != text.data() + text.size() || value < min || value > max) {
    fail(where + ": expected an integer " + range_text(min, max) + ", got '" + std::string(text) + "'");
  }
  return value;
}

/// Sets a key from an environment variable or flag; `where` names that source in errors.
void set_from_text(const key_def& k, node_config& cfg, std::string_view text, const std::string& where) {
  std::visit(
      [&](auto m) {
        using value = std::remove_cvref_t<decltype(cfg.*m)>;
        if constexpr (std::is_same_v<value, std::string>) {
          cfg.*m = std::string(text);
        } else {
          cfg.*m = static_cast<value>(parse_number(text, k.min, k.max, where));
        }
      },
      k.member);
}

std::string_view describe(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    default:
      return "nothing";
  }
}

std::string at(const std::string& path, const toml::source_region& where) {
  return where.begin.line == 0 ? path : path + " (line " + std::to_string(where.begin.line) + ")";
}

void set_from_toml(const key_def& k, node_config& cfg, const toml::node& node, const std::string& where) {
  std::visit(
      [&](auto m) {
        using value = std::remove_cvref_t<decltype(cfg.*m)>;
        if constexpr (std::is_same_v<value, std::string>) {
          const auto* s = node.as_string();
          if (!s) fail(where + ": expected a string, got " + std::string(describe(node)));
          cfg.*m = s->get();
        } else {
          const auto* i = node.as_integer();
          if (!i) {
            fail(where + ": expected an integer " + range_text(k.min, k.max) + ", got " +
                 std::string(describe(node)));
          }
          std::int64_t v = i->get();
          if (v < 0 || static_cast<std::uint64_t>(v) < k.min || static_cast<std::uint64_t>(v) > k.max) {
            fail(where + ": expected an integer " + range_text(k.min, k.max) + ", got " + std::to_string(v));
          }
          cfg.*m = static_cast<value>(v);
        }
      },
      k.member);
}

std::string read_file(const std::string& path) {
  struct closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, closer> file(std::fopen(path.c_str(), "rb"));
  if (!file) fail("cannot open config file " + path + ": " + std::generic_category().message(errno));
  std::string text;
  std::array<char, 4096> buffer;
  while (std::size_t n = std::fread(buffer.data(), 1, buffer.size(), file.get())) {
    text.append(buffer.data(), n);
  }
  // fopen succeeds on a directory; the read is what fails (EISDIR).
  if (std::ferror(file.get())) {
    fail("cannot read config file " + path + ": " + std::generic_category().message(errno));
  }
  return text;
}

void apply_file(node_config& cfg, const std::string& path) {
  std::string text = read_file(path);
  toml::table table;
  try {
    table = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    fail("cannot parse config file " + at(path, e.source()) + ": " + std::string(e.description()));
  }
  for (const auto& [name, node] : table) {
    const key_def* k = find_key(name.str());
    if (!k) fail("unknown key '" + std::string(name.str()) + "' in " + at(path, name.source()));
    set_from_toml(*k, cfg, node, "key '" + std::string(k->name) + "' in " + at(path, node.source()));
  }
}

constexpr std::string_view config_variable = "CHORUS_CONFIG";

void apply_env(node_config& cfg, const environment& env) {
  for (const auto& [name, value] : env) {
    if (!name.starts_with("CHORUS_") || name == config_variable) continue;
    auto it = std::ranges::find_if(keys, [&](const key_def& k) { return env_name(k.name) == name; });
    // A misspelt variable would otherwise be ignored and the node would run with a value nobody chose.
    if (it == keys.end()) fail(name + ": unknown setting; `chorusd --help` lists the keys");
    set_from_text(*it, cfg, value, name);
  }
}

/// One `--key VALUE` seen on the command line, applied after the file and the environment.
struct flag_value {
  const key_def* key;
  std::string value;
};

std::string pad(std::string s, std::size_t width) {
  s.resize(std::max(s.size(), width), ' ');
  return s;
}

}  // namespace

environment process_env() {
  environment env;
  for (char** entry = environ; entry && *entry; ++entry) {
    std::string_view text(*entry);
    auto eq = text.find('=');
    if (eq != std::string_view::npos) {
      env.emplace(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
    }
  }
  return env;
}

namespace {
/// validate(), except that a token needs no database: `serving` false skips keys only a node needs.
void check(const node_config& cfg, bool serving);
}  // namespace

invocation parse_invocation(int argc, const char* const* argv, const environment& env) {
  std::vector<std::string_view> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);

  invocation inv;
  // Help must work on a machine with no secret and a broken config, so nothing else is looked at.
  if (std::ranges::any_of(args, [](std::string_view a) { return a == "--help" || a == "-h"; })) {
    inv.what = command::help;
    return inv;
  }

  std::size_t i = 0;
  if (!args.empty() && args[0] == "token") {
    inv.what = command::token;
    i = 1;
  }
  bool print = false;
  std::optional<std::string> config_path;
  std::optional<std::string> user;
  std::optional<std::string> ttl;
  std::vector<flag_value> flags;
  for (; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (!arg.starts_with("--")) {
      if (arg.starts_with("-")) fail(std::string(arg) + ": unknown flag; see `chorusd --help`");
      fail("unexpected argument '" + std::string(arg) +
           "'; the only command is `token`, see `chorusd --help`");
    }
    auto eq = arg.find('=');
    std::string name(arg.substr(2, eq == std::string_view::npos ? std::string_view::npos : eq - 2));
    std::string flag = "--" + name;
    if (name == "print-config") {
      if (eq != std::string_view::npos) fail(flag + ": takes no value");
      print = true;
      continue;
    }
    const key_def* key = find_key(name);
    bool token_flag = name == "user" || name == "ttl";
    if (!key && !token_flag && name != "config") fail(flag + ": unknown flag; see `chorusd --help`");
    if (token_flag && inv.what != command::token) fail(flag + ": only `chorusd token` takes this flag");

    std::string value;
    if (eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
    } else if (i + 1 < args.size() && !args[i + 1].starts_with("--")) {
      value = args[++i];
    } else {
      fail(flag + ": missing value");
    }

    if (key) {
      flags.push_back({key, std::move(value)});
    } else if (name == "user") {
      user = std::move(value);
    } else if (name == "ttl") {
      ttl = std::move(value);
    } else if (value.empty()) {
      fail(flag + ": missing value");
    } else {
      config_path = std::move(value);
    }
  }

  if (print) {
    if (inv.what == command::token) fail("--print-config: cannot be combined with `token`");
    inv.what = command::print_config;
  }
  if (inv.what == command::token) {
    if (!user || user->empty()) fail("--user: `chorusd token --user NAME` needs the user the token is for");
    inv.token_user = *user;
    if (ttl) inv.token_ttl_seconds = static_cast<std::uint32_t>(parse_number(*ttl, 1, uint32_max, "--ttl"));
  }

  if (!config_path) {
    // An empty CHORUS_CONFIG means "no file", as shells make unsetting awkward in some contexts.
    if (auto it = env.find(std::string(config_variable)); it != env.end() && !it->second.empty()) {
      config_path = it->second;
    }
  }
  if (config_path) apply_file(inv.cfg, *config_path);
  apply_env(inv.cfg, env);
  for (const flag_value& f : flags) set_from_text(*f.key, inv.cfg, f.value, "--" + std::string(f.key->name));

  check(inv.cfg, inv.what != command::token);
  return inv;
}

void validate(const node_config& cfg) {
  check(cfg, true);
}

namespace {

void check(const node_config& cfg, bool serving) {
  for (const key_def& k : keys) {
    if (!serving && k.serving_only) continue;
    if (within_limits(k, cfg) && (!k.rule || k.rule(cfg))) continue;
    std::string got = toml_value(k, cfg);
    if (k.secret) {
      const std::string& secret = cfg.*std::get<std::string node_config::*>(k.member);
      got = secret.empty() ? "none" : std::to_string(secret.size()) + " bytes";
    }
    std::string name(k.name);
    fail(name + ": expected " + allowed_text(k) + ", got " + got + "; set it as `" + name +
         " = ...` in the config file, " + env_name(name) + " or --" + name);
  }
}

}  // namespace

std::string help_text() {
  std::string out =
      "Usage:\n"
      "  chorusd [--config FILE] [--KEY VALUE]...\n"
      "      run a node\n"
      "  chorusd token --user NAME [--ttl SECONDS] [--KEY VALUE]...\n"
      "      print an access token for NAME signed with jwt_secret, valid for SECONDS (default " +
      std::to_string(invocation{}.token_ttl_seconds) +
      ")\n"
      "  chorusd --print-config [--config FILE] [--KEY VALUE]...\n"
      "      print the effective configuration as TOML, secrets redacted\n"
      "  chorusd --help\n"
      "      print this text\n"
      "\n"
      "Each key is set by, later ones winning: its default; `KEY = VALUE` in the flat TOML file named by\n"
      "--config FILE or CHORUS_CONFIG; the environment variable CHORUS_<KEY> (the key upper-cased);\n"
      "the flag --KEY VALUE or --KEY=VALUE. Unknown keys and bad values stop the node.\n"
      "\n"
      "Keys:\n";

  const node_config defaults;
  std::vector<std::array<std::string, 6>> rows{
      {"KEY", "TYPE", "DEFAULT", "ALLOWED", "ENVIRONMENT", "MEANING"}};
  for (const key_def& k : keys) {
    std::string def = k.secret && !within_limits(k, defaults) ? "(none)" : toml_value(k, defaults);
    rows.push_back({std::string(k.name), std::string(type_name(k)), def, allowed_text(k), env_name(k.name),
                    std::string(k.help)});
  }
  std::array<std::size_t, 6> width{};
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  for (const auto& row : rows) {
    out += "  ";
    for (std::size_t c = 0; c + 1 < row.size(); ++c) out += pad(row[c], width[c]) + "  ";
    out += row.back() + "\n";
  }
  return out;
}

std::string render_toml(const node_config& cfg) {
  std::string out;
  for (const key_def& k : keys) {
    bool hide = k.secret && !(cfg.*std::get<std::string node_config::*>(k.member)).empty();
    out += std::string(k.name) + " = " + (hide ? quote("<redacted>") : toml_value(k, cfg)) + "\n";
  }
  return out;
}

}  // namespace chorus::config
