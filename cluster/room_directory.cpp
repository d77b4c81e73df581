// The room directory: placement of rooms over the live view of the cluster, local rooms, peers and handover.
#include "cluster/room_directory.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>

#include "cluster/placement.hpp"

namespace chorus::cluster {

namespace {

using directory_pointer = actors::room_directory::stateful_pointer<directory_state>;
using protocol::error_code;

std::string joined_ids(const std::vector<std::string>& ids) {
  std::string out;
  for (const auto& id : ids) out += (out.empty() ? "" : ", ") + id;
  return out;
}

/// Whether this node can talk to `peer` at all: CAF reads only messages laid out as its own build lays them.
bool compatible(const actors::peer_node& peer) {
  return peer.wire_version == actors::cluster_wire_version;
}

/// The longest a joining node waits for the peers of its first view before placing rooms anyway (a listed
/// peer may be dead, its entry not expired yet).
constexpr std::chrono::milliseconds settle_time{2000};

/// Whether the view is worth placing rooms by: the first listing came and its peers answered (or gave it
/// settle_time). A node whose view is only itself would otherwise take every room for a moment, and fence
/// their owners' writes for nothing.
bool settled(directory_pointer self) {
  auto& st = self->state;
  if (st.settled) return true;
  if (st.first_view_at == std::chrono::steady_clock::time_point{}) return false;
  bool all_connected = std::all_of(st.peers.begin(), st.peers.end(), [](const auto& entry) {
    return entry.second.node || !compatible(entry.second.info);  // one never dialed cannot answer
  });
  const auto waited = std::chrono::steady_clock::now() - st.first_view_at;
  if ((all_connected && waited >= st.min_wait) || waited >= st.min_wait + settle_time) {
    st.settled = true;
    spdlog::info("cluster: placing rooms over {} nodes", st.view.size());
  }
  return st.settled;
}

/// The node that owns `room` in the current view; empty while a clustered directory has no settled view.
std::string_view owner(directory_pointer self, const std::string& room) {
  auto& st = self->state;
  if (!st.clustered) return st.draining ? std::string_view{} : std::string_view{st.node_id};
  if (!settled(self)) return {};
  return owner_of(room, st.view);
}

void count_rooms(directory_pointer self) {
  if (auto& counters = self->state.services.counters)
    counters->rooms.store(self->state.rooms.size(), std::memory_order_relaxed);
}

/// A room handed over by the drain has stopped; the drain is done when the last one has.
void drained_room(directory_pointer self, const caf::actor_addr& room) {
  auto& st = self->state;
  auto it = std::find(st.draining_rooms.begin(), st.draining_rooms.end(), room);
  if (it == st.draining_rooms.end()) return;
  st.draining_rooms.erase(it);
  if (!st.draining_rooms.empty()) return;
  for (auto& rp : st.drain_waiting) rp.deliver(st.drained);
  st.drain_waiting.clear();
}

actors::room_actor local_room(directory_pointer self, const std::string& id) {
  auto& st = self->state;
  auto it = st.rooms.find(id);
  if (it == st.rooms.end()) {
    auto services = st.services;
    services.writer = st.writers[std::hash<std::string>{}(id) % st.writers.size()];
    auto room = self->spawn<caf::linked>(actors::room, id, std::move(services));
    self->monitor(room);
    it = st.rooms.emplace(id, std::move(room)).first;
    count_rooms(self);
  }
  return it->second;
}

/// Tells the node that owns `room` now that this node ran it at `epoch` until a moment ago. That node may
/// still run a copy it kept from before the two lost sight of each other (room_notice::handed_over).
void tell_owner(directory_pointer self, const std::string& room, std::uint64_t epoch) {
  auto& st = self->state;
  auto where = owner(self, room);
  if (epoch == 0 || where.empty() || where == st.node_id) return;
  auto peer = st.peers.find(std::string(where));
  if (peer == st.peers.end() || !peer->second.node) return;
  actors::room_notice notice;
  notice.what = actors::room_notice::handed_over;
  notice.room = room;
  notice.epoch = epoch;
  self->send(peer->second.node, atom::notice_v, std::move(notice));
}

/// Hands every local room that `keep` refuses over: it stops once its writes are answered, and its sessions
/// join again through a directory that no longer places it here. Its new owner hears which epoch it had
/// here, before those sessions reach it (the same two actors, so in order).
template <class Keep>
void hand_over(directory_pointer self, Keep keep) {
  auto& rooms = self->state.rooms;
  for (auto it = rooms.begin(); it != rooms.end();) {
    if (keep(it->first)) {
      ++it;
      continue;
    }
    self->request(it->second, std::chrono::seconds(5), atom::handover_v)
        .then([self, room = it->first](std::uint64_t epoch) { tell_owner(self, room, epoch); },
              [](caf::error&) {});  // it stopped first: whoever runs the room next loads it afresh
    if (self->state.draining) {
      self->state.draining_rooms.push_back(it->second.address());
      ++self->state.drained;
    }
    it = rooms.erase(it);  // its down message finds nothing left to erase
  }
  count_rooms(self);
}

/// Recomputes the view from the connected peers; when it changed, says so and hands over the rooms that now
/// belong to another node.
void update_view(directory_pointer self) {
  auto& st = self->state;
  std::vector<std::string> view;
  if (!st.draining) view.push_back(st.node_id);
  for (const auto& [id, peer] : st.peers)
    if (peer.node) view.push_back(id);
  std::sort(view.begin(), view.end());
  if (view == st.view) return;
  st.view = std::move(view);
  spdlog::info("cluster: view is now {} nodes [{}]", st.view.size(), joined_ids(st.view));
  hand_over(self, [self](const std::string& room) { return owner(self, room) == self->state.node_id; });
}

void dial(directory_pointer self, const std::string& id);

/// Dials `id` again after the dial policy's pause (the `hello` timer), unless it is connected or gone by
/// then.
void redial_later(directory_pointer self, const std::string& id) {
  auto it = self->state.peers.find(id);
  if (it == self->state.peers.end()) return;
  if (it->second.dialer) self->send_exit(it->second.dialer, caf::exit_reason::user_shutdown);
  it->second.dialer = nullptr;
  self->delayed_send(self, self->state.dialing.retry_delay, atom::hello_v, id);
}

/// Stops dialing and watching a peer (it left, or came back as another incarnation).
void forget(directory_pointer self, peer_entry& peer) {
  if (peer.dialer) self->send_exit(peer.dialer, caf::exit_reason::user_shutdown);
  peer.dialer = nullptr;
  if (peer.node) self->demonitor(peer.node.address());
  peer.node = nullptr;
}

/// Connects to a peer's node actor (retrying until it answers or the peer leaves Redis), checks that it is
/// the incarnation the registry lists, and watches it.
void dial(directory_pointer self, const std::string& id) {
  auto& peer = self->state.peers.at(id);
  peer.dialer = spawn_dialer(self->home_system(), peer.info.host, peer.info.cluster_port, self->state.dialing,
                             self->address());
  auto incarnation = peer.info.incarnation;
  self->request(peer.dialer, caf::infinite, atom::connected_v)
      .then(
          [self, id, incarnation](actors::node_actor& node) {
            self->request(node, std::chrono::seconds(2), atom::hello_v)
                .then(
                    [self, id, incarnation, node](actors::node_hello& hello) {
                      auto it = self->state.peers.find(id);
                      if (it == self->state.peers.end() || it->second.info.incarnation != incarnation) return;
                      auto& peer = it->second;
                      if (hello.node_id != id || hello.incarnation != incarnation) {
                        // Another run of that node answers on the port, or the peer registered anew and its
                        // node actor has not heard yet: ask again shortly, until the registry and the peer
                        // agree.
                        spdlog::info("cluster: {} at {}:{} is incarnation {}, not {}; asking again", id,
                                     peer.info.host, peer.info.cluster_port, hello.incarnation, incarnation);
                        redial_later(self, id);
                        return;
                      }
                      if (peer.dialer) self->send_exit(peer.dialer, caf::exit_reason::user_shutdown);
                      peer.dialer = nullptr;
                      peer.node = node;
                      self->monitor(node);
                      spdlog::info("cluster: connected to {} (incarnation {})", id, incarnation);
                      update_view(self);
                    },
                    [self, id](caf::error&) { redial_later(self, id); });
          },
          [](caf::error&) {});  // the dialer was stopped: the peer left or changed incarnation
}

/// This node's registration lapsed: hands every room over and places none until every node has had time to
/// register again (rejoin_wait), then until the view settles as on a first start.
void step_down(directory_pointer self, std::string_view why) {
  auto& st = self->state;
  if (st.settled || !st.rooms.empty())
    spdlog::warn(
        "cluster: this node {}; handing over its {} active rooms and placing none until the others "
        "have had time to register again",
        why, st.rooms.size());
  hand_over(self, [](const std::string&) { return false; });
  // Redis may have lost every entry (a restart): then every node is rejoining, and until all have, a
  // listing holds only some. Placing rooms by it would take rooms from nodes missing from it for nothing.
  st.settled = false;
  st.first_view_at = {};
  st.min_wait = st.rejoin_wait;
}

/// The membership actor's view: this node's incarnation and every registered node.
void on_nodes(directory_pointer self, actors::cluster_view& view) {
  auto& st = self->state;
  const bool self_listed = std::any_of(view.nodes.begin(), view.nodes.end(), [&](const actors::peer_node& n) {
    return n.id == st.node_id && n.incarnation == view.incarnation;
  });
  if (!st.incarnation.empty() && view.incarnation != st.incarnation)
    // Declared down (paused or cut off past the TTL): other nodes have taken over our rooms meanwhile.
    step_down(self, "was declared down");
  else if (!self_listed)
    // Registered a moment ago, yet gone: Redis lost it (a restart) or it expired. The next heartbeat finds
    // out and rejoins; meanwhile this listing holds only the nodes quicker to rejoin, if any.
    step_down(self, "is missing from the registry");
  st.incarnation = view.incarnation;
  if (st.first_view_at == std::chrono::steady_clock::time_point{})
    st.first_view_at = std::chrono::steady_clock::now();
  std::map<std::string, actors::peer_node> listed;
  for (auto& node : view.nodes) {
    if (node.id == st.node_id)
      st.self_info = std::move(node);
    else
      listed.emplace(node.id, std::move(node));
  }
  for (auto it = st.peers.begin(); it != st.peers.end();) {
    auto found = listed.find(it->first);
    if (found != listed.end() && found->second == it->second.info) {
      ++it;
      continue;
    }
    spdlog::info("cluster: {} (incarnation {}) left the registry", it->first, it->second.info.incarnation);
    // Still connected, yet its entry is gone: it may be cut off from Redis, in which case only its peers can
    // tell it (on_unlisted). One that rejoined as another incarnation knows already.
    if (found == listed.end() && it->second.node)
      self->send(it->second.node, atom::unlisted_v, it->second.info.incarnation);
    forget(self, it->second);
    it = st.peers.erase(it);
  }
  for (auto& [id, info] : listed) {
    if (st.peers.count(id)) continue;
    if (!compatible(info))
      // Once per incarnation: the entry stays until the peer leaves or changes. Placing rooms without it
      // splits the cluster in two, which the ownership epochs keep from storing anything twice; connecting
      // would lose every message CAF cannot read.
      spdlog::error(
          "cluster: {} (incarnation {}) at {}:{} runs cluster wire version {}, this node {}: not connecting "
          "to it. Nodes of different builds cannot peer; stop the nodes of one build (README, Cluster)",
          id, info.incarnation, info.host, info.cluster_port, info.wire_version,
          actors::cluster_wire_version);
    bool dialable = compatible(info);
    st.peers.emplace(id, peer_entry{std::move(info), {}, {}});
    if (dialable) dial(self, id);
  }
  update_view(self);
}

/// A connected peer that reaches Redis no longer finds `incarnation` of this node there. If that is the
/// incarnation this node runs as, it is cut off from Redis (or its entry has just lapsed): its peers place
/// its rooms elsewhere now, and if it went on placing them on itself for its own clients, each room would
/// move back and forth, one fenced send at a time. It steps down instead, until a listing shows it again.
/// (When Redis is down for every node, no node lists anything, nobody is told, and the cluster carries on.)
void on_unlisted(directory_pointer self, const std::string& incarnation) {
  auto& st = self->state;
  if (incarnation != st.incarnation || st.draining) return;
  step_down(self, "is no longer in Redis as its peers see it");
}

/// A peer's node actor went down (the peer died, hung past the timeout, or the link broke): it leaves the
/// view now and is dialed again, in case it is still alive; the registry decides if it is gone for good.
bool on_peer_down(directory_pointer self, const caf::down_msg& msg) {
  auto& st = self->state;
  for (auto& [id, peer] : st.peers) {
    if (!peer.node || peer.node.address() != msg.source) continue;
    spdlog::warn("cluster: lost the connection to {} ({}); its rooms move to the other nodes", id,
                 self->home_system().render(msg.reason));
    peer.node = nullptr;
    update_view(self);
    dial(self, id);
    return true;
  }
  return false;
}

}  // namespace

actors::room_directory::behavior_type room_directory(directory_pointer self, std::string node_id,
                                                     bool clustered,
                                                     std::vector<actors::batch_writer_actor> writers,
                                                     actors::room_services services,
                                                     std::chrono::milliseconds heartbeat) {
  auto& st = self->state;
  st.rejoin_wait = 2 * heartbeat;
  st.node_id = std::move(node_id);
  st.clustered = clustered;
  st.writers = std::move(writers);
  st.services = std::move(services);
  st.dialing = dial_policy{std::chrono::milliseconds(250), 0, std::chrono::milliseconds(2000)};
  // A room stops by itself when it turns out not to exist, is deleted, or was fenced; forget it, so the next
  // lookup starts afresh. (Linked rooms stop with the directory; a room that ends normally does not stop it.)
  self->set_down_handler([self](const caf::down_msg& msg) {
    if (on_peer_down(self, msg)) return;
    drained_room(self, msg.source);
    auto& rooms = self->state.rooms;
    for (auto it = rooms.begin(); it != rooms.end(); ++it)
      if (it->second.address() == msg.source) {
        rooms.erase(it);
        count_rooms(self);
        break;
      }
  });
  return {
      [self](atom::lookup, const std::string& id) -> caf::result<actors::room_actor> {
        auto& st = self->state;
        auto where = owner(self, id);
        if (where.empty()) return actors::make_error(error_code::unavailable);
        if (where == st.node_id) return local_room(self, id);
        return self->delegate(st.peers.at(std::string(where)).node, atom::claim_v, id);
      },
      [self](atom::claim, const std::string& id) -> caf::result<actors::room_actor> {
        // A peer places the room here. If this node's view disagrees, activating the room would only fence
        // its rightful owner's writes: refuse, and let the views converge (the session retries).
        if (owner(self, id) != self->state.node_id) return actors::make_error(error_code::unavailable);
        return local_room(self, id);
      },
      [self](atom::notice, actors::room_notice& notice) {
        auto& st = self->state;
        if (auto it = st.rooms.find(notice.room); it != st.rooms.end()) {
          self->send(it->second, atom::notice_v, std::move(notice));
          return;
        }
        // The HTTP API of any node commits the change; the room's owner applies it.
        auto where = owner(self, notice.room);
        if (!where.empty() && where != st.node_id)
          self->send(st.peers.at(std::string(where)).node, atom::notice_v, std::move(notice));
      },
      [self](atom::relay, actors::room_notice& notice) {
        if (auto it = self->state.rooms.find(notice.room); it != self->state.rooms.end())
          self->send(it->second, atom::notice_v, std::move(notice));
      },
      [self](atom::nodes, actors::cluster_view& view) { on_nodes(self, view); },
      [self](atom::unlisted, const std::string& incarnation) { on_unlisted(self, incarnation); },
      [self](atom::hello) -> caf::result<actors::node_hello> {
        auto& st = self->state;
        if (st.incarnation.empty()) return actors::make_error(error_code::unavailable);
        return actors::node_hello{st.node_id, st.incarnation};
      },
      [self](atom::hello, const std::string& id) {
        auto it = self->state.peers.find(id);
        if (it != self->state.peers.end() && !it->second.node && !it->second.dialer &&
            compatible(it->second.info))
          dial(self, id);
      },
      [self](atom::nodes) {
        auto& st = self->state;
        std::vector<actors::peer_node> out;
        for (const auto& id : st.view) {
          if (id == st.node_id && !st.self_info.id.empty())
            out.push_back(st.self_info);
          else if (auto it = st.peers.find(id); it != st.peers.end())
            out.push_back(it->second.info);
        }
        return out;
      },
      [self](atom::handover) -> caf::result<std::uint64_t> {
        auto& st = self->state;
        if (!st.draining) {
          st.draining = true;
          spdlog::info("cluster: draining: handing over {} rooms", st.rooms.size());
          if (st.clustered) update_view(self);  // a view without this node
          hand_over(self, [](const std::string&) { return false; });
        }
        if (st.draining_rooms.empty()) return st.drained;
        auto rp = self->make_response_promise<std::uint64_t>();
        st.drain_waiting.push_back(rp);
        return rp;
      },
  };
}

}  // namespace chorus::cluster
