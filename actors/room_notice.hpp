// The notices a live room gets from outside its clients: committed membership and room changes, and word that
// another node's activation of it ended.
#pragma once

#include <cstdint>
#include <string>

#include "storage/account_store.hpp"

namespace chorus::actors {

/// A change REST made to a room that its connected members must hear about at once; or (`handed_over`) that
/// another node ran the room at `epoch` and has just handed it to this node.
struct room_notice {
  enum kind { member_joined, member_left, member_updated, room_updated, room_deleted, handed_over };
  kind what = room_updated;
  std::string room;
  std::string user;                 ///< the member concerned (member_*); empty otherwise
  std::string frame;                ///< the encoded event for the room's connected members
  storage::member_row member;       ///< member_joined, member_updated: the membership as stored now
  storage::room_access_row access;  ///< room_updated: kind and public flag as stored now
  /// handed_over: the ownership epoch the other node's activation held. A live room here with an older one
  /// was cut off from that node meanwhile: what was stored since is missing from it.
  std::uint64_t epoch = 0;
};

}  // namespace chorus::actors
