// The change notices the HTTP API sends to live rooms after committing a membership or room change.
#pragma once

#include <string>

#include "storage/account_store.hpp"

namespace chorus::actors {

/// A change REST made to a room that its connected members must hear about at once.
struct room_notice {
  enum kind { member_joined, member_left, member_updated, room_updated, room_deleted };
  kind what = room_updated;
  std::string room;
  std::string user;                 ///< the member concerned (member_*); empty otherwise
  std::string frame;                ///< the encoded event for the room's connected members
  storage::member_row member;       ///< member_joined, member_updated: the membership as stored now
  storage::room_access_row access;  ///< room_updated: kind and public flag as stored now
};

}  // namespace chorus::actors
