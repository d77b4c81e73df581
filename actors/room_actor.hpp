// The room actor: gives each message the room's next sequence number and fans every event out to members.
#pragma once

#include <string>

#include "actors/messages.hpp"

namespace chorus::actors {

/// State of one room. Lives only inside the room actor.
///
/// Membership is per session: a user with two connections in the room has two entries, but the
/// room's other members see one `member_joined` (when the first joins) and one `member_left`
/// (when the last leaves). The room monitors every member session, so a session that dies without
/// leaving is removed as if it had left.
struct room_state {
  std::string id;
  std::uint64_t last_seq = 0;
  std::unordered_map<caf::actor_addr, member_ref> sessions;
  std::unordered_map<std::string, std::size_t> sessions_per_user;
  std::uint64_t id_entropy = 0;  ///< mixed into message ids so two rooms never mint the same one

  static inline const char* name = "room";
};

using room_pointer = room_actor::stateful_pointer<room_state>;

/// Behaviour of the room `id`, starting empty at sequence 0.
room_actor::behavior_type room(room_pointer self, std::string id);

}  // namespace chorus::actors
