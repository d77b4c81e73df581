// The one authorisation rule of Chorus: (membership and role, room kind, action) → allow | deny(reason).
// Pure: no CAF, no I/O. Every REST handler and room actor asks decide(); docs/permissions.md is its table.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "storage/account_store.hpp"

namespace chorus::actors {

// The vocabulary is storage's: kinds, roles and permission bits are stored exactly as they are named there.
using storage::all_permissions;
using storage::mask_of;
using storage::permission;
using storage::permission_count;
using storage::permission_mask;
using storage::room_kind;
using role = storage::member_role;

/// owner 3 > admin 2 > moderator 1 > member 0. Compare ranks with this, never with the enum values.
constexpr int rank(role r) {
  return 3 - static_cast<int>(r);
}

/// Everything a user may ask to do in or to a room.
enum class action : std::uint8_t {
  read,             ///< history, members, room details; subscribe to its events
  join_public,      ///< become a member of a public room by oneself
  post,             ///< send a message
  edit_message,     ///< target: own_message
  delete_message,   ///< target: own_message
  add_member,       ///< add another user (as a member)
  remove_member,    ///< target: the member removed
  leave,            ///< remove oneself
  change_role,      ///< target: the member and new_role (new_role owner = transfer of ownership)
  set_permissions,  ///< target: the member and the bits being granted or revoked
  edit_room,        ///< name, description, topic, public flag, category
  delete_room,
};
inline constexpr unsigned action_count = 12;

/// Why decide() refused.
enum class deny_reason : std::uint8_t {
  not_member,          ///< the actor is not a member (for a private room, callers answer "not found")
  not_permitted,       ///< the actor's role and overrides do not include what the action needs
  direct_room,         ///< a direct room's membership, roles and settings are fixed
  outranked,           ///< the target (or the new role) ranks at or above the actor
  self,                ///< a member cannot remove itself (leave instead), change its own role or permissions
  owner_cannot_leave,  ///< the owner must transfer ownership (or delete the room) first
  target_not_member,   ///< remove/change_role/set_permissions on a user who is not a member
  missing_target,      ///< the action needs a target (or a new role) and none was given
};

/// The actor's membership of the room. No role = not a member (the masks are then ignored).
struct subject {
  std::optional<role> member_role;
  permission_mask granted = 0;  ///< added to the role's defaults
  permission_mask revoked = 0;  ///< taken from the role's defaults; revoked wins over granted
};

/// What an action is done to, for the actions that have a target.
struct target {
  std::optional<role> member_role;   ///< the target member's role; nullopt: not a member
  bool is_self = false;              ///< the target member is the actor
  bool own_message = false;          ///< edit/delete_message: the message is the actor's own
  std::optional<role> new_role;      ///< change_role: the role to give
  permission_mask changed_bits = 0;  ///< set_permissions: bits whose override changes (granted ∪ revoked)
};

/// allow, or deny with the reason.
struct decision {
  bool allowed = false;
  deny_reason reason = deny_reason::not_permitted;  ///< meaningful only when !allowed

  static constexpr decision allow() { return {true, deny_reason::not_permitted}; }
  static constexpr decision deny(deny_reason r) { return {false, r}; }
  explicit operator bool() const { return allowed; }
  friend bool operator==(const decision&, const decision&) = default;
};

/// The permissions a role has by default in a room of this kind (before overrides). In a direct room every
/// member counts as `member`, whatever role is stored.
permission_mask default_permissions(role r, room_kind kind);

/// The permissions a member holds: (defaults | granted) & ~revoked; the owner always holds every permission
/// (overrides do not apply to the owner). 0 for a non-member.
permission_mask effective_permissions(const subject& who, room_kind kind);

/// The decision. `is_public` is ignored for direct rooms (they are never public). Actions with a target
/// (edit_message, delete_message, remove_member, change_role, set_permissions) deny missing_target when
/// `what` is null. The full policy is the table in docs/permissions.md.
decision decide(const subject& who, room_kind kind, bool is_public, action what, const target* on = nullptr);

/// Names on the wire and in the database.
std::string_view to_string(permission p);   ///< "add_users", …, "delete_room"
std::string_view to_string(action a);       ///< "read", "join_public", …
std::string_view to_string(deny_reason r);  ///< "not_member", "not_permitted", …

/// The enum for its exact lower-case name, or nullopt.
std::optional<permission> parse_permission(std::string_view s);
std::optional<action> parse_action(std::string_view s);

}  // namespace chorus::actors
