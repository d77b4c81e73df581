// The middleman foundation of the cluster: middleman settings, the node actor, publishing and dialing.
#include "cluster/peering.hpp"

#include <spdlog/spdlog.h>

#include <caf/io/middleman.hpp>
#include <set>
#include <utility>
#include <vector>

namespace chorus::cluster {

void configure_middleman(caf::actor_system_config& cfg, const config::node_config& node) {
  cfg.load<caf::io::middleman>();
  // Both options are timespans in CAF 0.17.6 and default to 0 (off): without them a peer that stops
  // answering but keeps its socket open is never noticed. The middleman reads them with get_or(timespan),
  // so a value of another type would be refused by `set` and silently leave the default.
  cfg.set("middleman.heartbeat-interval", caf::timespan{std::chrono::milliseconds(node.peer_heartbeat_ms)});
  cfg.set("middleman.connection-timeout", caf::timespan{std::chrono::milliseconds(node.peer_timeout_ms)});
  cfg.add_message_types<caf::id_block::chorus>();
}

actors::node_actor::behavior_type node(actors::node_actor::stateful_pointer<node_state> self,
                                       actors::node_hello me, actors::room_directory directory) {
  self->state.me = std::move(me);
  self->state.directory = std::move(directory);
  return {
      [self](atom::hello) -> caf::result<actors::node_hello> {
        // The directory knows the incarnation membership registered last, which changes when this node
        // rejoins after being declared down; `me` is only the identity it started with.
        if (self->state.directory) return self->delegate(self->state.directory, atom::hello_v);
        return self->state.me;
      },
      [self](atom::relay, const actors::relay_batch& batch) {
        if (batch.events.empty()) return;
        for (const auto& session : batch.sessions) {
          if (!session) continue;
          if (batch.events.size() == 1)
            self->send(session, atom::deliver_v, batch.events.front());
          else
            self->send(session, atom::deliver_v, batch.events);
        }
      },
      [self](atom::notice, actors::room_notice& notice) {
        if (self->state.directory) self->send(self->state.directory, atom::relay_v, std::move(notice));
      },
      [self](atom::unlisted, std::string& incarnation) {
        if (self->state.directory)
          self->send(self->state.directory, atom::unlisted_v, std::move(incarnation));
      },
      [self](atom::claim, const std::string& room) -> caf::result<actors::room_actor> {
        if (!self->state.directory) return actors::make_error(protocol::error_code::unavailable);
        return self->delegate(self->state.directory, atom::claim_v, room);
      },
  };
}

std::optional<std::uint16_t> publish_node(caf::actor_system& sys, const actors::node_actor& node,
                                          std::uint16_t port, const std::string& host) {
  auto bound = sys.middleman().publish(node, port, host.c_str(), true);
  if (!bound) {
    spdlog::error("cannot publish the node actor on {}:{}: {}", host, port, sys.render(bound.error()));
    return std::nullopt;
  }
  return *bound;
}

caf::expected<actors::node_actor> connect_node(caf::actor_system& sys, const std::string& host,
                                               std::uint16_t port) {
  return sys.middleman().remote_actor<actors::node_actor>(host, port);
}

namespace {

struct dialer_state {
  std::string host;
  std::uint16_t port = 0;
  dial_policy policy;
  std::uint32_t tried = 0;
  std::vector<caf::typed_response_promise<actors::node_actor>> waiting;
  /// Set once the dialing is over; every later `connected` is answered from it. (The dialer does not quit:
  /// a request could otherwise arrive after it and fail; it goes away with its last handle.)
  std::optional<caf::expected<actors::node_actor>> outcome;
  static inline const char* name = "node_dialer";
};

using dialer_pointer = node_dialer::stateful_pointer<dialer_state>;

void finish(dialer_pointer self, caf::expected<actors::node_actor> outcome) {
  auto& st = self->state;
  for (auto& rp : st.waiting) {
    if (outcome)
      rp.deliver(*outcome);
    else
      rp.deliver(outcome.error());
  }
  st.waiting.clear();
  st.outcome = std::move(outcome);
}

void attempt(dialer_pointer self) {
  auto& st = self->state;
  ++st.tried;
  auto mm = self->home_system().middleman().actor_handle();
  self->request(mm, st.policy.attempt_timeout, caf::connect_atom_v, st.host, st.port)
      .then(
          [self](const caf::node_id&, caf::strong_actor_ptr& peer, const std::set<std::string>& ifs) {
            if (!peer) {
              finish(self, caf::make_error(caf::sec::no_actor_published_at_port));
            } else if (!self->home_system().assignable<actors::node_actor>(ifs)) {
              // Another program (or another version of Chorus) on that port: retrying will not help.
              spdlog::error("{}:{} publishes something other than a Chorus node actor", self->state.host,
                            self->state.port);
              finish(self, caf::make_error(caf::sec::unexpected_actor_messaging_interface));
            } else {
              finish(self, caf::actor_cast<actors::node_actor>(std::move(peer)));
            }
          },
          [self](caf::error& err) {
            auto& st = self->state;
            if (st.policy.attempts != 0 && st.tried >= st.policy.attempts) {
              spdlog::warn("giving up on peer {}:{} after {} attempts: {}", st.host, st.port, st.tried,
                           self->home_system().render(err));
              finish(self, std::move(err));
              return;
            }
            spdlog::debug("peer {}:{} not reachable yet ({}); retrying in {} ms", st.host, st.port,
                          self->home_system().render(err), st.policy.retry_delay.count());
            self->delayed_send(self, st.policy.retry_delay, atom::activate_v);
          });
}

node_dialer::behavior_type dialer(dialer_pointer self, std::string host, std::uint16_t port,
                                  dial_policy policy, caf::actor_addr owner) {
  if (auto owner_actor = caf::actor_cast<caf::actor>(owner)) {
    self->monitor(owner_actor);
    self->set_down_handler([self](const caf::down_msg&) { self->quit(); });
  }
  self->state.host = std::move(host);
  self->state.port = port;
  self->state.policy = policy;
  attempt(self);
  return {
      [self](atom::connected) -> caf::result<actors::node_actor> {
        auto& st = self->state;
        if (st.outcome) {
          if (*st.outcome) return **st.outcome;
          return st.outcome->error();
        }
        auto rp = self->make_response_promise<actors::node_actor>();
        st.waiting.push_back(rp);
        return rp;
      },
      [self](atom::activate) { attempt(self); },
  };
}

}  // namespace

node_dialer spawn_dialer(caf::actor_system& sys, std::string host, std::uint16_t port, dial_policy policy,
                         caf::actor_addr owner) {
  return sys.spawn(dialer, std::move(host), port, policy, std::move(owner));
}

}  // namespace chorus::cluster
