// Each user's message rate: counted in Redis by the send limiter actor, or by a node alone without Redis.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "actors/messages.hpp"
#include "storage/rate_limiter.hpp"

namespace chorus::actors {

struct send_limiter_state {
  std::unique_ptr<storage::rate_limiter> limits;
  storage::bucket shape;
  std::vector<std::string> users;  ///< waiting for the next flush, in arrival order
  std::vector<caf::typed_response_promise<std::uint32_t>> waiting;
  bool flush_scheduled = false;

  static inline const char* name = "send_limiter";
};

/// How a node's sessions check each user's message rate, set up once per node.
struct send_limits {
  /// With Redis: the limiter actor below, counting across every node.
  send_limiter_actor shared;
  /// Without Redis: this node's own buckets, taken by the session itself. Asking an actor would cost a
  /// message and its answer per send for a count of a few hundred nanoseconds: about 6 % of the node's CPU
  /// at 40,000 sends/s over 50 connections (BENCHMARKS.md, durable sends). Thread-safe, shared by every
  /// session of the node.
  std::shared_ptr<storage::rate_limiter> local;
  storage::bucket shape;
};

/// The Redis key of `user`'s message bucket, the same on every node.
inline std::string send_limit_key(std::string_view user) {
  return "send:user:" + std::string{user};
}

/// Answers `limit` with 0 when `user` may send one message now, else the milliseconds to wait. Spawn it
/// `caf::detached`: it blocks on Redis. Everything that arrived while Redis answered the previous round goes
/// out as one pipelined round, so the cost per send stays small under load. Without Redis (or while it is
/// unreachable) it counts on this node alone and says so in the log (storage::rate_limiter).
send_limiter_actor::behavior_type send_limiter(send_limiter_actor::stateful_pointer<send_limiter_state> self,
                                               std::string redis_url, storage::bucket shape);

}  // namespace chorus::actors
