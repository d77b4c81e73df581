// The send limiter actor: each user's message rate, counted in Redis so that it holds across every node.
#pragma once

#include <memory>
#include <string>
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

/// Answers `limit` with 0 when `user` may send one message now, else the milliseconds to wait. Spawn it
/// `caf::detached`: it blocks on Redis. Everything that arrived while Redis answered the previous round goes
/// out as one pipelined round, so the cost per send stays small under load. Without Redis (or while it is
/// unreachable) it counts on this node alone and says so in the log (storage::rate_limiter).
send_limiter_actor::behavior_type send_limiter(send_limiter_actor::stateful_pointer<send_limiter_state> self,
                                               std::string redis_url, storage::bucket shape);

}  // namespace chorus::actors
