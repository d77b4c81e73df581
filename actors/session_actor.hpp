// The session actor: one per WebSocket connection; speaks the protocol and talks to rooms for its client.
//
// Phases: unauthenticated (only auth and ping; a deadline of auth_timeout_ms) → authenticated
// (join/leave/send/typing/ping) → closing (connection gone: tell presence and rooms, then quit).
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "actors/messages.hpp"
#include "actors/node_counters.hpp"
#include "actors/send_limiter.hpp"
#include "actors/token_bucket.hpp"
#include "config/config.hpp"

namespace chorus::actors {

/// What every session on a node shares: where rooms and presence are, and the limits it enforces.
struct session_context {
  room_directory directory;
  presence_actor presence;
  send_limits sends;              ///< each user's message rate: across nodes with Redis, else on this one
  account_worker_actor accounts;  ///< checks that a token's account still exists; null in dev_mode
  relay_sink relay;               ///< this node's actor, relaying remote rooms' events; null if not clustered
  std::shared_ptr<node_counters> counters;  ///< open connections are counted here; may be null
  config::node_config cfg;
  frame_ptr hello;  ///< encoded once per node, sent first on every connection
};

/// Frames the network side has handed to a session and the session has not handled yet: past
/// `receive_queue_limit` the connection stops reading until the session is down to half of it.
using input_backlog = std::atomic<std::uint32_t>;

struct session_state {
  std::shared_ptr<const session_context> ctx;
  std::shared_ptr<client_link> link;  ///< reset when the connection closes, breaking the link ↔ actor cycle
  std::shared_ptr<input_backlog> backlog;  ///< shared with the connection's actor_session
  connection_info info;
  std::string user;               ///< empty until authenticated
  std::int64_t expires_at = 0;    ///< the `exp` of the token in force: the connection ends then
  std::string send_key;           ///< the user's message bucket (send_limit_key), once authenticated
  bool verifying = false;         ///< the token is good; its account is being checked
  std::vector<std::string> held;  ///< frames that arrived while verifying, in order
  bool invisible = false;         ///< the user's status hides its presence
  std::unordered_map<std::string, room_actor> rooms;
  /// Per joined room, the last seq the client has (or the room's seq when it joined): where a rejoin resumes.
  std::unordered_map<std::string, std::uint64_t> seen;
  /// Rooms whose actor stopped (handed over, or its node died) and that this session is joining again on
  /// their new owner, with the attempts made so far. Sends to them are `unavailable` meanwhile.
  std::unordered_map<std::string, std::uint32_t> rejoining;
  /// Message events of rooms being joined again, held back until the resume's replay has been pushed (they
  /// follow it, minus what it replayed): at most send_queue_limit per room.
  std::unordered_map<std::string, std::vector<outbound_event>> held_events;
  /// Posts to rooms on other nodes that are not answered yet: token → (room, request id). A node that dies
  /// answers nothing, so these are failed with `unavailable` when the room's actor goes down.
  std::map<std::uint64_t, std::pair<std::string, std::int64_t>> remote_posts;
  std::uint64_t next_post = 0;
  /// Sends waiting for the cluster-wide limiter (in Redis) before they go to their rooms. They keep their
  /// order among themselves (the limiter answers in order); any other request that comes meanwhile waits in
  /// `after_limits`, with every request after it, so that none overtakes them (a leave, say).
  std::uint32_t limit_checks = 0;
  std::deque<protocol::request> after_limits;
  /// Rooms with a join in progress, each with the requests about it that came after the join: they run once
  /// the join is answered, in order, so that a client may send to a room right after joining it (at most
  /// ops_burst each).
  std::unordered_map<std::string, std::deque<protocol::request>> joining;
  token_bucket bucket{1, 1};
  bool closing = false;

  static inline const char* name = "session";
};

using session_pointer = caf::stateful_actor<session_state>*;

/// Behaviour of the session for one connection. Accepts `frame` (text), `binary`, `closed`, `deliver`, its
/// own `auth_due` deadline and `join` (a room to join again, its retry timer).
caf::behavior session(session_pointer self, std::shared_ptr<const session_context> ctx,
                      std::shared_ptr<client_link> link, connection_info info,
                      std::shared_ptr<input_backlog> backlog);

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
                                                            send_limits sends, account_worker_actor accounts,
                                                            config::node_config cfg, relay_sink relay = {},
                                                            std::shared_ptr<node_counters> counters = {});

}  // namespace chorus::actors
