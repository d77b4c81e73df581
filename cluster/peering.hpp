// The middleman foundation of the cluster: how a node sets up CAF's middleman, publishes its one node actor
// on the cluster port, and reaches the node actors of its peers.
//
//   node A                                   node B
//   publish_node(node actor, cluster_port)   connect_node / spawn_dialer(host, port) ──► node_actor of A
//                                            monitor(A's node actor) ──► down_msg when A dies or hangs
//
// A hung node (stopped, not closed) is noticed only through the middleman's heartbeat and connection
// timeout, which configure_middleman sets from peer_heartbeat_ms / peer_timeout_ms: monitors of its actors
// then get a down_msg (reason remote_link_unreachable) about peer_timeout_ms after it went silent.
#pragma once

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "actors/messages.hpp"
#include "config/config.hpp"

namespace chorus::cluster {

/// Loads CAF's middleman into `cfg`, sets its heartbeat (`middleman.heartbeat-interval`) and connection
/// timeout (`middleman.connection-timeout`) from `node.peer_heartbeat_ms` / `node.peer_timeout_ms`, and
/// registers the `chorus` type-ID block, so that every node announces the same message types.
void configure_middleman(caf::actor_system_config& cfg, const config::node_config& node);

struct node_state {
  actors::node_hello me;
  actors::room_directory directory;  ///< where `notice` goes; may be null (notices are then dropped)
  static inline const char* name = "node";
};

/// The node actor: answers `hello` with the directory's identity of this node (`me` without a directory),
/// fans a `relay` out to the sessions it names (each gets `deliver` with the event), passes a peer's `notice`
/// on to `directory` (to apply here only), and hands a `claim` for a room to `directory`. Stateless apart
/// from its identity, so it never blocks and a peer's request to it is answered at once.
actors::node_actor::behavior_type node(actors::node_actor::stateful_pointer<node_state> self,
                                       actors::node_hello me, actors::room_directory directory);

/// Publishes `node` on `host`:`port` (port 0 picks a free one) for other nodes. Returns the port it is
/// bound to, or nullopt (logged with the reason) when the port cannot be opened.
std::optional<std::uint16_t> publish_node(caf::actor_system& sys, const actors::node_actor& node,
                                          std::uint16_t port, const std::string& host = "127.0.0.1");

/// Connects to the node actor published at `host`:`port`, blocking the calling thread (≈1 ms on loopback;
/// a closed port fails at once with sec::cannot_connect_to_node). For start-up and tests; actors use a
/// dialer instead. A peer that publishes some other actor fails with
/// sec::unexpected_actor_messaging_interface.
caf::expected<actors::node_actor> connect_node(caf::actor_system& sys, const std::string& host,
                                               std::uint16_t port);

/// How a dialer keeps trying a peer that is not up yet.
struct dial_policy {
  std::chrono::milliseconds retry_delay{250};       ///< pause after a failed attempt
  std::uint32_t attempts = 0;                       ///< attempts before giving up; 0: never give up
  std::chrono::milliseconds attempt_timeout{2000};  ///< longest one attempt may take
};

/// The interface of a dialer. `connected` answers the peer's node actor once an attempt succeeds, or the
/// last attempt's error once `attempts` have failed. `activate` is its own retry timer.
using node_dialer = caf::typed_actor<caf::replies_to<atom::connected>::with<actors::node_actor>,
                                     caf::reacts_to<atom::activate>>;

/// Connects to `host`:`port` without blocking anyone: request `connected` from the returned dialer (with
/// caf::infinite or a deadline of your own) and handle both branches. The dialer tries at once, asks the
/// middleman (connect_atom) again after each failure, and answers every `connected` with the outcome (also
/// those that arrive after it is known); it goes away with its last handle, or when `owner` (if given)
/// terminates: a dialer still retrying holds itself alive through its retry timer, and would otherwise keep
/// the actor system from shutting down. Monitor the node actor it hands you to hear when the peer dies or
/// hangs.
node_dialer spawn_dialer(caf::actor_system& sys, std::string host, std::uint16_t port,
                         dial_policy policy = {}, caf::actor_addr owner = {});

}  // namespace chorus::cluster
