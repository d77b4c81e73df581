// Who is online across the cluster: each node's connection counts per user in Redis, expiring with the node,
// and this node's own counts in process. No CAF.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace chorus::storage {

/// One change of a user's connections on this node, for presence_store::apply().
struct presence_change {
  std::string user;
  bool opened = true;  ///< true: a connection opened (as connected()); false: one closed (as gone())
};

/// One node's view of presence: connected() and gone() say whether a connection was the user's first or last
/// in the whole cluster, so that a user connected to two nodes is online once.
///
/// Keys (node ids never contain ':', so a node's key cannot be mistaken for the set):
///   `<key_prefix>node:<node_id>`  hash user → this node's connections of that user. Expires `ttl` after the
///                                 last write or refresh(), so the users of a node that died (or was cut off
///                                 from Redis for longer) go offline by themselves.
///   `<key_prefix>nodes`           set of node ids that may have a hash; a member whose hash has expired is
///                                 removed by whichever node next looks.
/// Each call is one round trip (apply() one for many changes): a Lua script writes this node's count for the
/// user and, when the answer depends on it, looks through the other nodes' hashes listed in the set,
/// atomically, so two nodes connecting (or disconnecting) the same user at once never both answer "first" (or
/// both "last").
///
/// This node's counts are kept in process too, and they are what it writes: the hash holds absolute counts
/// (HSET, not HINCRBY), so a call whose reply was lost after Redis applied it cannot leave a count off by
/// one for good, and the whole hash is rewritten from them on every new connection to Redis and whenever
/// refresh() finds it gone (expired while this node was paused or cut off, or Redis lost its data). When
/// Redis is unreachable (or the URL is empty) answers come from those counts alone, per node, and the change
/// is logged once (storage::redis_connection); the counts written meanwhile reach Redis when it is back.
///
/// Not thread-safe: meant for one owner, the node's presence actor. Calls block for at most the connect and
/// command timeouts.
class presence_store {
 public:
  struct options {
    std::string key_prefix = "chorus:presence:";
    std::chrono::milliseconds ttl{9000};  ///< lifetime of this node's hash without refresh(): 3 × node_ttl_ms
    std::chrono::milliseconds connect_timeout{100};
    std::chrono::milliseconds command_timeout{100};
    std::chrono::milliseconds min_backoff{250};  ///< first wait before retrying an unreachable Redis
    std::chrono::milliseconds max_backoff{5000};
    std::string client_name = "chorus-presence";  ///< CLIENT SETNAME, for CLIENT LIST; empty: none
    std::function<std::int64_t()> now_ms;         ///< monotonic ms for the backoff; default steady_clock
  };

  /// `url`: redis://[[user]:password@]host[:port][/db]; empty: per-node counts only (logged at debug).
  /// `node_id`: this node's configured id (no ':').
  presence_store(std::string url, std::string node_id);
  presence_store(std::string url, std::string node_id, options opts);
  ~presence_store();
  presence_store(const presence_store&) = delete;
  presence_store& operator=(const presence_store&) = delete;

  /// A connection of `user` opened on this node. True when no other connection of the user is open
  /// anywhere in the cluster (per node while Redis is unreachable).
  bool connected(std::string_view user);

  /// A connection of `user` on this node closed. True when it was the user's last in the cluster (per node
  /// while Redis is unreachable). A user with no connection counted here answers false and changes nothing.
  bool gone(std::string_view user);

  /// connected() and gone() for several changes, in order, in one pipelined round trip (what a busy node's
  /// presence actor has queued); the answers in the same order, each as the single call would give it.
  std::vector<bool> apply(std::span<const presence_change> changes);

  /// Whether `user` has a connection anywhere: true or false from Redis; while Redis is unreachable, true
  /// if it has one on this node, else nullopt (unknown).
  std::optional<bool> online(std::string_view user);

  /// Extends this node's hash by `ttl` (rewriting it if it is gone). Call it well within `ttl`, e.g. every
  /// node_heartbeat_ms. True when Redis answered.
  bool refresh();

  /// Forgets every connection of this node, here and in Redis (a clean shutdown: its users are not left
  /// online until the hash expires). True when Redis answered (or there is none).
  bool clear();

  /// True when the most recent call was answered by Redis (cluster-wide), false when per node.
  bool shared() const;

  /// This node's connections of `user`, as counted here.
  std::size_t local_connections(std::string_view user) const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace chorus::storage
