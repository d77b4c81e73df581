// The session actor: one per WebSocket connection; speaks the protocol and talks to rooms for its client.
//
// Phases: unauthenticated (only auth and ping; a deadline of auth_timeout_ms) → authenticated
// (join/leave/send/typing/ping) → closing (connection gone: tell presence and rooms, then quit).
#pragma once

#include <memory>
#include <string>
#include <unordered_map>

#include "actors/messages.hpp"
#include "actors/token_bucket.hpp"
#include "config/config.hpp"

namespace chorus::actors {

/// What every session on a node shares: where rooms and presence are, and the limits it enforces.
struct session_context {
  room_directory directory;
  presence_actor presence;
  send_limiter_actor send_limiter;  ///< each user's message rate across nodes
  account_worker_actor accounts;    ///< checks that a token's account still exists; null in dev_mode
  config::node_config cfg;
  frame_ptr hello;  ///< encoded once per node, sent first on every connection
};

struct session_state {
  std::shared_ptr<const session_context> ctx;
  std::shared_ptr<client_link> link;  ///< reset when the connection closes, breaking the link ↔ actor cycle
  connection_info info;
  std::string user;               ///< empty until authenticated
  bool verifying = false;         ///< the token is good; its account is being checked
  std::vector<std::string> held;  ///< frames that arrived while verifying, in order
  bool invisible = false;         ///< the user's status hides its presence
  std::unordered_map<std::string, room_actor> rooms;
  token_bucket bucket{1, 1};
  bool closing = false;

  static inline const char* name = "session";
};

using session_pointer = caf::stateful_actor<session_state>*;

/// Behaviour of the session for one connection. Accepts `frame` (text), `binary`, `closed`, `deliver` and
/// its own `auth_due` deadline.
caf::behavior session(session_pointer self, std::shared_ptr<const session_context> ctx,
                      std::shared_ptr<client_link> link, connection_info info);

/// The network layer's way in: spawns a session actor per connection and forwards its input as messages.
class actor_session_factory final : public session_factory {
 public:
  actor_session_factory(caf::actor_system& system, std::shared_ptr<const session_context> ctx);
  std::unique_ptr<session_handle> open(std::shared_ptr<client_link> link, connection_info info) override;
  /// Drops the shared context once the server has stopped (no open() after that), so that the handles it
  /// holds to detached actors go away with the last session and the actor system can shut down.
  void close() { ctx_.reset(); }

 private:
  caf::actor_system& system_;
  std::shared_ptr<const session_context> ctx_;
};

/// Builds the context: encodes the hello frame from `cfg`.
std::shared_ptr<const session_context> make_session_context(room_directory directory, presence_actor presence,
                                                            send_limiter_actor send_limiter,
                                                            account_worker_actor accounts,
                                                            config::node_config cfg);

}  // namespace chorus::actors
