// The node's configuration: one validated struct, read from a TOML file, CHORUS_* variables and flags.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>

namespace chorus::config {

/// Everything a node can be told. Each field is one key with the same name everywhere:
/// `port = 8080` in the file, `CHORUS_PORT=8080` in the environment, `--port 8080` on the command line.
struct node_config {
  std::string host = "127.0.0.1";   ///< address the HTTP/WebSocket listener binds
  std::uint16_t port = 8080;        ///< its port; 0 picks a free one (printed at start-up)
  std::string node_id = "node-1";   ///< this node's name, sent to clients in `hello`
  std::string log_level = "info";   ///< trace|debug|info|warn|error|critical|off
  std::string jwt_secret;           ///< HS256 key for access tokens; required, at least 32 bytes
  std::uint32_t io_threads = 1;     ///< threads running the network event loop
  std::uint32_t actor_threads = 0;  ///< CAF scheduler threads; 0 = one per core
  std::uint32_t max_frame_bytes =
      65536;  ///< largest WebSocket message a client may send; larger closes with 1009
  std::uint32_t max_message_chars = 4000;  ///< longest chat message text, in Unicode code points
  std::uint32_t send_queue_limit = 1024;   ///< queued frames past which a connection not reading is closed
  std::uint32_t receive_queue_limit =
      64;  ///< frames waiting for a session past which its connection is not read
  std::uint32_t idle_timeout_ms = 30000;  ///< ping after half of this without data; close after all of it
  std::uint32_t auth_timeout_ms = 10000;  ///< time a new connection has to authenticate
  std::uint32_t ops_per_second = 20;      ///< sustained client operations per connection
  std::uint32_t ops_burst = 50;  ///< operations a connection may send at once before the rate applies
  std::uint32_t shutdown_timeout_ms = 5000;  ///< longest a graceful shutdown waits for connections to close
  std::uint32_t max_connections = 20000;     ///< connections accepted at once; more are refused with HTTP 503
  std::uint32_t request_timeout_ms =
      5000;  ///< longest a session waits for a room's answer before `unavailable`
  std::uint32_t shed_after_ms =
      2000;                  ///< a room refuses new sends while a write of its has waited this long; 0: never
  std::string database_url;  ///< PostgreSQL URL; required; a secret (may hold a password)
  std::uint32_t writer_count = 2;        ///< batch writer actors, each with its own PostgreSQL connection
  std::uint32_t batch_max_rows = 4000;   ///< a batch is written once it holds this many messages
  std::uint32_t batch_max_delay_ms = 2;  ///< or once its oldest message has waited this long
  std::uint32_t slow_commit_ms = 250;    ///< a batch commit this slow is logged as a warning (0: never)
  std::uint32_t history_limit = 100;     ///< most messages one history page or resume may return
  std::uint32_t tail_cache_size = 256;   ///< recent messages each room keeps in memory for history and resume
  std::uint32_t member_events_limit = 1000;  ///< more users in a room: counts, not per-user events
  std::string redis_url;  ///< Redis for shared rate limits; empty: local buckets only; a secret
  std::uint32_t dev_mode =
      0;  ///< 1: `chorusd token`, tokens of users without accounts, rooms created on join
  std::uint32_t access_token_ttl_s = 900;       ///< lifetime of an access token (JWT)
  std::uint32_t refresh_token_ttl_s = 2592000;  ///< lifetime of a refresh token; each use rotates it
  std::uint32_t max_body_bytes = 65536;         ///< largest HTTP request body; larger gets 413
  std::uint32_t api_workers = 2;  ///< actors serving the HTTP API, each with a database connection
  std::uint32_t login_attempts_per_minute = 10;  ///< login attempts per client address and per account
  std::uint32_t login_lockout_failures = 5;      ///< failed logins in a row that lock an account
  std::uint32_t login_lockout_s = 300;           ///< how long such a lockout lasts
  std::uint32_t registrations_per_hour = 20;     ///< accounts one client address may register
  std::uint32_t api_requests_per_second = 20;    ///< sustained HTTP API requests per user (or address)
  std::uint32_t api_burst = 40;         ///< HTTP API requests allowed at once before the rate applies
  std::uint32_t sends_per_second = 10;  ///< sustained messages per user, across every node
  std::uint32_t sends_burst = 30;       ///< messages a user may send at once before the rate applies
  std::uint16_t cluster_port = 0;    ///< port of this node's CAF middleman for other nodes; 0: not clustered
  std::uint32_t node_ttl_ms = 3000;  ///< a node whose Redis entry is older than this is down
  std::uint32_t node_heartbeat_ms = 1000;  ///< how often a node refreshes its Redis entry
  std::uint32_t peer_heartbeat_ms = 500;   ///< middleman heartbeat between nodes
  std::uint32_t peer_timeout_ms = 2000;    ///< a peer silent this long counts as gone (hung, not only dead)
};

/// Thrown for anything wrong with the configuration; the message names the offending key.
class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What the command line asked for.
enum class command { serve, token, help, print_config };

struct invocation {
  command what = command::serve;
  node_config cfg;
  std::string token_user;                  ///< `chorusd token --user NAME`
  std::uint32_t token_ttl_seconds = 3600;  ///< `chorusd token --ttl SECONDS`
};

/// Environment variables by name. A snapshot rather than a lookup function, so that a misspelt CHORUS_*
/// variable can be found and rejected; tests build one by hand instead of touching the real environment.
using environment = std::map<std::string, std::string>;

/// The process environment.
environment process_env();

/// Builds the effective configuration: defaults, then the TOML file named by `--config FILE` (or
/// CHORUS_CONFIG), then CHORUS_* variables, then flags. Validates the result.
/// Throws config_error naming the key for an unknown key (including an unknown CHORUS_* variable), a value of
/// the wrong type or out of range, or a missing required key (nothing is checked for `help`).
invocation parse_invocation(int argc, const char* const* argv, const environment& env);

/// Checks cross-field rules and ranges; throws config_error naming the key.
void validate(const node_config& cfg);

/// `chorusd --help`: usage, commands, and every key with its type, default and meaning.
std::string help_text();

/// The effective configuration as TOML that parse_invocation would accept; secrets shown as "<redacted>".
std::string render_toml(const node_config& cfg);

}  // namespace chorus::config
