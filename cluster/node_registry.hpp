// Cluster membership in Redis: each node's entry with a TTL kept alive by heartbeats, joined/left
// announcements over pub/sub, each node's published load figures, and operators' drain requests. Synchronous
// hiredis, no CAF: the cluster actor drives it from a timer, chorusctl calls it directly.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chorus::cluster {

/// One node as registered: who it is, which life of it this is, and where to reach it.
struct node_info {
  std::string id;  ///< the configured node_id; the Redis key is `<key_prefix><id>`. Never contains ':'
                   ///< (config's node_id rule), which is what tells entries apart from other keys
  std::string incarnation;  ///< new_incarnation(): a node declared down may only come back with a new one
  std::string host;         ///< where other nodes and clients reach it
  std::uint16_t client_port = 0;   ///< WebSocket/HTTP port
  std::uint16_t cluster_port = 0;  ///< CAF middleman port
  std::int64_t started_at_ms = 0;  ///< wall clock (Unix ms) when this incarnation started
  std::uint32_t wire_version = 0;  ///< the build's actors::cluster_wire_version: nodes peer only when theirs
                                   ///< are equal. 0 for an entry without one (a build from before it existed)

  friend bool operator==(const node_info&, const node_info&) = default;
};

/// A fresh incarnation id: 64 random bits as 16 lowercase hex digits. One per process start, and a new
/// one whenever a node rejoins after heartbeat() reported `lost`.
std::string new_incarnation();

/// node_info as one compact JSON object, the value stored in Redis and carried by announcements:
/// {"id":…,"incarnation":…,"host":…,"client_port":…,"cluster_port":…,"started_at_ms":…,"wire_version":…}
std::string encode(const node_info& node);

/// The inverse of encode(); nullopt for anything else (wrong JSON, missing fields, ports out of range,
/// an empty id or incarnation). Unknown fields are ignored, so later versions can add some; a missing
/// "wire_version" reads as 0, one that is not a 32-bit unsigned integer makes the entry unreadable.
std::optional<node_info> decode_node(std::string_view text);

/// What a node publishes about its load every heartbeat, for operators (`chorusctl stats`).
struct node_stats {
  std::uint64_t rooms = 0;            ///< room actors active on the node now
  std::uint64_t connections = 0;      ///< WebSocket sessions open on the node now
  std::uint64_t messages_stored = 0;  ///< running total on this node since it started: a rate is the
                                      ///< difference of two readings over the difference of their at_ms
  std::int64_t at_ms = 0;             ///< wall clock (Unix ms) of the node when it took these figures
  bool draining = false;              ///< the node accepts no connections and is handing its rooms over

  friend bool operator==(const node_stats&, const node_stats&) = default;
};

/// node_stats as one compact JSON object, the value stored in Redis:
/// {"rooms":…,"connections":…,"messages_stored":…,"at_ms":…,"draining":…}
std::string encode(const node_stats& stats);

/// The inverse of encode(const node_stats&); nullopt for anything else (wrong JSON, a missing field, a count
/// that is negative or not an integer, a draining flag that is not a boolean). Unknown fields are ignored.
std::optional<node_stats> decode_stats(std::string_view text);

/// What a registry call came to. Never an exception: Redis being down is an ordinary answer.
enum class outcome {
  ok,                 ///< done, and (heartbeat, leave) the entry was ours
  lost,               ///< our entry expired or now belongs to another incarnation: we were declared down
  not_registered,     ///< heartbeat/leave/publish_stats before a successful register_self; request_drain
                      ///< of a node that has no live entry
  stale_incarnation,  ///< register_self with an incarnation that was lost before: make a new_incarnation()
  unavailable,        ///< Redis unreachable, timed out, answered unexpectedly, or no usable URL
};

/// The name of an outcome, for log lines and test output.
std::string_view to_string(outcome o);

/// This node's entry in Redis and the view of everyone else's.
///
/// The entry `<key_prefix><id>` holds encode(info) and expires `ttl` after the last register_self or
/// heartbeat; a node whose entry expired is down. Heartbeats extend the entry only while it still holds
/// exactly our value (a Lua script), so a node that was paused past its TTL, or replaced by a newer
/// incarnation of the same id, learns it was declared down (`lost`) and must rejoin as a new incarnation.
///
/// Each call is one short round trip bounded by `connect_timeout` and `command_timeout`. When Redis cannot be
/// reached the call answers `unavailable` (or nullopt); the state change is logged once, the connection is
/// retried lazily after a backoff that doubles up to `max_backoff`, and being back is logged once too.
///
/// Beside the entries, under the same prefix, live keys that are not entries; node ids never contain ':', so
/// no entry is mistaken for one of them or the other way round:
///   `<key_prefix>stats:<id>`  encode(node_stats) as last published by node `id`; expires `ttl` after that.
///   `<key_prefix>drain:<id>`  an operator's request that node `id` drain, holding the node's entry as it was
///                             when requested: only that incarnation drains, so a node restarted afterwards
///                             is not stopped again by a request meant for its previous life.
///
/// Thread-safe (calls are serialised), though meant for one owner: the node's cluster actor.
class node_registry {
 public:
  struct options {
    std::string key_prefix = "chorus:nodes:";
    std::string channel;                  ///< pub/sub channel of announcements; empty: `<key_prefix>events`
    std::chrono::milliseconds ttl{3000};  ///< node_ttl_ms
    std::chrono::milliseconds connect_timeout{200};
    std::chrono::milliseconds command_timeout{200};
    std::chrono::milliseconds min_backoff{250};  ///< first wait before retrying an unreachable Redis
    std::chrono::milliseconds max_backoff{5000};
    std::string client_name = "chorus-node-registry";  ///< CLIENT SETNAME; empty: none
  };

  /// `url`: redis://[[user]:password@]host[:port][/db]. An empty or malformed URL makes every call
  /// `unavailable` (logged once at construction).
  explicit node_registry(std::string url);
  node_registry(std::string url, options opts);
  ~node_registry();
  node_registry(const node_registry&) = delete;
  node_registry& operator=(const node_registry&) = delete;

  /// Writes our entry (SET PX ttl) and announces "joined", atomically. Replaces an entry of another
  /// incarnation of the same id (a restart before the old entry expired; logged). `self.incarnation` must
  /// not be one that heartbeat() or leave() reported lost: that answers `stale_incarnation`.
  outcome register_self(const node_info& self);

  /// Extends our entry's TTL if it is still ours: `ok`, `lost` (expired or replaced: stop acting as this
  /// incarnation, rejoin with a new one), `not_registered`, or `unavailable` (we cannot tell; a caller that
  /// stays unavailable for longer than the TTL should assume it was declared down).
  outcome heartbeat();

  /// Deletes our entry if it is still ours and announces "left" (also when it was not ours any more, since
  /// the announcement names our incarnation, listeners can tell). `ok`, `lost`, `not_registered`,
  /// `unavailable`. Afterwards heartbeat() answers `not_registered`.
  outcome leave();

  /// Every live node's entry (SCAN by prefix, then MGET), sorted by id. Only keys `<key_prefix><id>` are
  /// read: keys with a ':' after the prefix (stats, drain requests) are skipped without being fetched, and
  /// values that fail decode_node() or name another id are skipped too. nullopt when Redis is unavailable.
  std::optional<std::vector<node_info>> live_nodes();

  /// Stores `stats` as this node's figures (SET `<key_prefix>stats:<id>` PX ttl), replacing the last ones.
  /// Called after each heartbeat, so the figures expire with a node that stops heartbeating. `ok`,
  /// `not_registered` (nothing is stored for a node that is not registered) or `unavailable`.
  outcome publish_stats(const node_stats& stats);

  /// Every node's last published figures (SCAN `<key_prefix>stats:*`, then MGET) with its id, sorted by id;
  /// unreadable values are skipped. A node that left cleanly may still be listed until its figures expire:
  /// join with live_nodes() to show live nodes only. nullopt when Redis is unavailable.
  std::optional<std::vector<std::pair<std::string, node_stats>>> stats();

  /// Asks node `node_id` to drain: stop accepting connections, hand its rooms over and exit. Stores the
  /// node's current entry as `<key_prefix>drain:<node_id>` for `valid_for` (PX), atomically with checking
  /// that the entry exists (a Lua script), and publishes nothing: the node finds it by polling
  /// drain_requested() (its membership actor does, every heartbeat). `ok`, `not_registered` (no live node has
  /// that id) or `unavailable`. Any registry may call it; it needs no register_self.
  outcome request_drain(std::string_view node_id, std::chrono::milliseconds valid_for);

  /// Whether an operator asked this incarnation to drain (GET of our drain key, compared with our entry): a
  /// request for an earlier incarnation of our id, or one that expired, is false. nullopt when Redis is
  /// unavailable or we are not registered. A caller that starts draining should remember it: the answer
  /// turns false again when the request expires or this node rejoins as a new incarnation.
  std::optional<bool> drain_requested();

  /// The node given to the last successful register_self(), until leave() or `lost`.
  std::optional<node_info> self() const;

  /// The channel announcements are published on (options::channel or its default).
  const std::string& channel() const;

  /// True when the most recent call reached Redis.
  bool reachable() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// A node joining or leaving, as published by a node_registry; or a note that some may have been missed.
struct announcement {
  enum class kind {
    joined,  ///< `node` registered (a new incarnation, or a restart)
    left,    ///< `node` left on purpose (expiry is not announced: list live_nodes() to notice it)
    resync,  ///< the subscription was (re)established: announcements may have been missed, so list
             ///< live_nodes() again; `node` is empty. Always the first thing next() returns.
  };
  kind what = kind::resync;
  node_info node;
};

/// The receiving end of the announcements, on a connection of its own (a subscribed connection can run
/// no other command). Subscribes at construction (so nothing published after the constructor returns is
/// missed while Redis is up) and resubscribes lazily with backoff after the connection fails.
///
/// Not thread-safe: one consumer calls next() in a loop, typically on a thread of its own.
class announcements {
 public:
  using options = node_registry::options;  ///< uses channel/key_prefix, timeouts, backoff, client_name

  explicit announcements(std::string url);
  announcements(std::string url, options opts);
  ~announcements();
  announcements(const announcements&) = delete;
  announcements& operator=(const announcements&) = delete;

  /// The next announcement, waiting at most `wait` (0: only what has arrived); nullopt on timeout or while
  /// Redis is unavailable. Malformed messages on the channel are skipped.
  std::optional<announcement> next(std::chrono::milliseconds wait);

  /// True while subscribed.
  bool subscribed() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace chorus::cluster
