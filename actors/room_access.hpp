// What one room allows whom: its kind, public flag and members, asked through the one authorisation function.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>

#include "actors/authorization.hpp"
#include "storage/account_store.hpp"

namespace chorus::actors {

/// A room actor's copy of the room's access rules: loaded from PostgreSQL on activation and kept current by
/// the notices the HTTP API sends after each committed change. Every check goes through decide().
class room_access {
 public:
  /// Development rooms (dev_mode): made on first join, public, everyone may read and post.
  static room_access open_room();

  /// The rules as stored.
  static room_access from(const storage::room_access_row& row);

  /// Whether `user` may do `what`. A user who may not even read a private room should be told "not found".
  decision check(std::string_view user, action what) const;

  bool is_open() const { return open_; }
  bool deleted() const { return deleted_; }
  bool is_member(std::string_view user) const;

  /// Records a member's membership as it is stored now (joined or updated).
  void put_member(const storage::member_row& m);
  void remove_member(std::string_view user);
  /// Records the room's kind and public flag as stored now; members are kept.
  void update_room(const storage::room_access_row& row);
  void mark_deleted() { deleted_ = true; }

 private:
  bool open_ = false;
  bool deleted_ = false;
  room_kind kind_ = room_kind::group;
  bool is_public_ = false;
  std::unordered_map<std::string, subject> members_;
};

}  // namespace chorus::actors
