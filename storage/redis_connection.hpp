// One synchronous Redis connection as every Redis client here uses it: lazy connect, timeouts, backoff, and
// state changes logged once. No CAF.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "storage/redis_endpoint.hpp"

namespace chorus::storage {

/// A Lua script run with EVALSHA. Its SHA is learnt from the first SCRIPT LOAD and kept, since it depends on
/// the text alone; a NOSCRIPT answer (Redis restarted, SCRIPT FLUSH, a failover) loads it again.
class redis_script {
 public:
  /// `text` must outlive the script (a literal, a static string); a call's first `keys` arguments are keys.
  redis_script(std::string_view text, int keys) : text_(text), keys_(keys) {}

  std::string_view text() const { return text_; }
  int keys() const { return keys_; }

 private:
  friend class redis_connection;
  std::string_view text_;
  int keys_;
  std::string sha_;  ///< empty until loaded
};

/// A synchronous hiredis connection to the Redis of a redis:// URL, opened on first use.
///
/// Every call is bounded by `connect_timeout` and `command_timeout`. Anything that goes wrong (no connection,
/// a timeout, a broken socket, an error reply, or an owner calling down() over a reply it cannot use) drops
/// the connection; the next attempt waits a backoff that doubles from `min_backoff` up to `max_backoff`, so a
/// dead Redis costs callers nothing but a failed check. Reaching Redis again resets the backoff. Each change
/// is logged once: "<label>: Redis at host:port unreachable (why)[; fallback]" (warn) and "<label>: Redis at
/// host:port is back[; resumed]" (info); the password is never logged. Results are values — a reply, or
/// nullopt when Redis could not answer — never exceptions.
///
/// Not thread-safe: its owner serialises calls (a mutex, or a single actor).
class redis_connection {
 public:
  struct options {
    std::string label = "redis";  ///< who is talking, first on each log line ("rate limits")
    std::string fallback;  ///< what the owner does while Redis is unreachable, appended to that log line
    std::string resumed;   ///< appended to the "is back" line
    std::chrono::milliseconds connect_timeout{100};
    std::chrono::milliseconds command_timeout{100};
    std::chrono::milliseconds min_backoff{250};  ///< first wait before retrying an unreachable Redis
    std::chrono::milliseconds max_backoff{5000};
    std::string client_name;  ///< CLIENT SETNAME after connecting, for CLIENT LIST; empty: none
    /// Monotonic milliseconds for the backoff; tests may inject their own. Default: steady_clock.
    std::function<std::int64_t()> now_ms;
  };

  /// `url`: redis://[[user]:password@]host[:port][/db]. An empty URL makes a connection that never connects
  /// (not logged: what "no Redis" means is the owner's to say); a malformed one is logged once, as an error.
  redis_connection(std::string_view url, options opts);
  ~redis_connection();
  redis_connection(const redis_connection&) = delete;
  redis_connection& operator=(const redis_connection&) = delete;

  /// Whether the URL named a Redis at all.
  bool configured() const { return endpoint_.has_value(); }

  /// "host:port", for log lines; empty when not configured.
  const std::string& where() const { return where_; }

  /// Opens the connection unless it is open (AUTH, SELECT and CLIENT SETNAME as the URL and options say).
  /// False when Redis cannot be reached now, including while the backoff lasts.
  bool connect();

  /// The open hiredis context (connecting as connect() does), or null. For owners that drive the socket
  /// themselves, such as a subscriber polling its fd; they report failures with down().
  redisContext* context() { return connect() ? ctx_.get() : nullptr; }

  /// One command. The reply (never null and never an error reply), or nullopt: not connected, a transport
  /// failure, or an error reply (all of which drop the connection and are logged once).
  std::optional<redis_reply_ptr> command(std::initializer_list<std::string_view> args);
  std::optional<redis_reply_ptr> command(std::span<const std::string> args);

  /// Several commands sent in one round trip; the replies in order, or nullopt as for command() when any
  /// of them failed. An empty list answers an empty vector if Redis is reachable.
  std::optional<std::vector<redis_reply_ptr>> pipeline(std::span<const std::vector<std::string>> commands);

  /// EVALSHA of `script` with `keys_then_args` (its keys() keys first). Loads the script when it is not
  /// known yet and once more after NOSCRIPT. The reply or nullopt, as for command().
  std::optional<redis_reply_ptr> eval(redis_script& script,
                                      std::initializer_list<std::string_view> keys_then_args);

  /// eval() for many calls of one script, pipelined in one round trip; the replies in call order.
  std::optional<std::vector<redis_reply_ptr>> eval_many(redis_script& script,
                                                        std::span<const std::vector<std::string>> calls);

  /// Drops the connection and starts (or extends) the backoff, logging the change if it is one. Owners call
  /// it for a reply they cannot use. By value: `why` often points into the context dropped here.
  void down(std::string why);

  /// True while a connection is open (the most recent call reached Redis).
  bool reachable() const { return ctx_ != nullptr; }

  /// How many times a connection was opened. A new value means a new connection: anything the owner keeps
  /// per connection (subscriptions) or mirrors into Redis may need setting up again.
  std::uint64_t generation() const { return generation_; }

  /// When (options::now_ms) the backoff allows the next attempt.
  std::int64_t next_attempt_ms() const { return next_attempt_ms_; }

  /// hiredis's description of the last transport failure, or "no reply".
  std::string error() const;

 private:
  struct argv_buffer;
  std::int64_t now() const;
  void up();
  // Sends the commands, reads every reply; error replies are returned, not judged. Nullopt (and down) on a
  // transport failure.
  std::optional<std::vector<redis_reply_ptr>> exchange(std::span<const argv_buffer> commands);
  std::optional<redis_reply_ptr> judged(std::optional<std::vector<redis_reply_ptr>> replies);
  bool load(redis_script& script);

  options opts_;
  std::optional<redis_endpoint> endpoint_;
  std::string where_;
  redis_context_ptr ctx_;
  enum class state { unknown, up, down } state_ = state::unknown;
  std::int64_t next_attempt_ms_ = 0;
  std::chrono::milliseconds backoff_;
  std::uint64_t generation_ = 0;
};

/// The connection options of an owner whose own options carry the same timeouts, backoff and client name
/// (the rate limiter, presence, the node registry), with its words for the log lines.
template <class OwnerOptions>
redis_connection::options connection_options(const OwnerOptions& o, std::string label, std::string fallback,
                                             std::string resumed) {
  redis_connection::options c;
  c.label = std::move(label);
  c.fallback = std::move(fallback);
  c.resumed = std::move(resumed);
  c.connect_timeout = o.connect_timeout;
  c.command_timeout = o.command_timeout;
  c.min_backoff = o.min_backoff;
  c.max_backoff = o.max_backoff;
  c.client_name = o.client_name;
  if constexpr (requires { o.now_ms; }) c.now_ms = o.now_ms;  // an injected clock drives the backoff too
  return c;
}

/// The text of a string or status reply.
inline std::string_view text_of(const redisReply* r) {
  return {r->str, r->len};
}

}  // namespace chorus::storage
