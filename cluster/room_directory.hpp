// The room directory: maps a room id to the actor of the room, on whichever node of the cluster owns it.
//
//   session ──lookup──► directory ── owner is this node ──► local room actor (spawned on first use)
//                                └─ owner is node B ──claim──► B's node actor ──► B's directory ──► room on B
//
// The owner is the rendezvous winner (cluster/placement.hpp) over the directory's view: this node plus every
// peer that is registered in Redis (the membership actor's `nodes`) *and* connected through the middleman.
// A peer registered with another actors::cluster_wire_version is never dialed (logged once per incarnation).
// A peer whose node actor goes down leaves the view at once (no waiting for its Redis entry to expire); it
// comes back when a dial to it succeeds again, or as a new incarnation. When the view changes, rooms that now
// belong elsewhere are handed over (they finish what is in flight and stop; their sessions join again and
// reach the new owner), and the new owner hears the epoch the room ran at here: a copy it kept from before
// the two lost sight of each other reloads. Two nodes whose views briefly disagree may both activate a room:
// the ownership epoch the writer checks (storage, `fenced`) keeps the older activation from storing anything.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/room_actor.hpp"
#include "cluster/peering.hpp"

namespace chorus::cluster {

/// Another live node, as the directory knows it.
struct peer_entry {
  actors::peer_node info;
  actors::node_actor node;  ///< its node actor once dialed and its hello matched `info`; null meanwhile
  node_dialer dialer;       ///< the dial in progress, if any
};

struct directory_state {
  std::string node_id;  ///< this node
  bool clustered = false;
  std::string incarnation;      ///< this node's incarnation as the membership actor last reported it
  actors::peer_node self_info;  ///< this node's registry entry (for the clients' list of nodes)
  std::vector<actors::batch_writer_actor> writers;
  actors::room_services services;  ///< given to every room, with the room's own writer filled in
  std::unordered_map<std::string, actors::room_actor> rooms;  ///< rooms active on this node
  std::map<std::string, peer_entry> peers;                    ///< other registered nodes, by id
  std::vector<std::string> view;  ///< sorted ids of this node and every connected peer; placement runs on it
  dial_policy dialing;
  bool draining = false;  ///< this node leaves: it is not in its own view and takes no room
  /// When the first `nodes` came, and whether every peer it listed has answered since (or settle_time
  /// passed): until then a clustered directory places nothing, rather than take every room while its view is
  /// only itself.
  std::chrono::steady_clock::time_point first_view_at{};
  bool settled = false;
  /// How long after a rejoin every other node has surely rejoined too, when Redis lost every entry (two
  /// heartbeat intervals: one for them to find out, one for this node to list them).
  std::chrono::milliseconds rejoin_wait{0};
  /// The least time after `first_view_at` before placing rooms: 0 on a first start, rejoin_wait after a
  /// rejoin (the first listings then may hold only the nodes that were quickest to rejoin).
  std::chrono::milliseconds min_wait{0};
  std::vector<caf::actor_addr> draining_rooms;  ///< rooms handed over by the drain that have not stopped yet
  std::uint64_t drained = 0;                    ///< how many rooms the drain handed over
  std::vector<caf::typed_response_promise<std::uint64_t>> drain_waiting;
  static inline const char* name = "room_directory";
};

/// The directory of node `node_id`. Each room it runs gets one of `writers`, always the same for the same
/// room id. Rooms are linked to the directory, so stopping it stops every room.
///
/// Not `clustered` (no cluster port): every room is placed here. Clustered: until the first `nodes` arrives
/// and every peer it lists is connected (at most settle_time after it) the directory knows no owner and
/// answers `unavailable` (clients retry); afterwards rooms go to their owner. The same holds after this node
/// rejoins as a new incarnation, except that it waits at least two `heartbeat` intervals first: if Redis lost
/// every entry (a restart), every node is rejoining, and the first listings hold only the quickest.
actors::room_directory::behavior_type room_directory(
    actors::room_directory::stateful_pointer<directory_state> self, std::string node_id, bool clustered,
    std::vector<actors::batch_writer_actor> writers, actors::room_services services,
    std::chrono::milliseconds heartbeat);

}  // namespace chorus::cluster
