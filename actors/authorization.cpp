// The authorisation policy of docs/permissions.md: role defaults per kind, overrides, then kind and rank
// rules.
#include "actors/authorization.hpp"

#include <array>
#include <initializer_list>

namespace chorus::actors {
namespace {

constexpr permission_mask bits(std::initializer_list<permission> ps) {
  permission_mask m = 0;
  for (auto p : ps) m |= mask_of(p);
  return m;
}

using enum permission;

constexpr permission_mask own_messages = bits({create_messages, delete_own_messages, edit_own_messages});
constexpr permission_mask direct_member = own_messages;
constexpr permission_mask group_member = own_messages | mask_of(add_users);
constexpr permission_mask channel_member = bits({delete_own_messages, edit_own_messages});
constexpr permission_mask moderator_defaults =
    own_messages | bits({add_users, remove_users, delete_messages});
constexpr permission_mask admin_defaults = all_permissions & ~mask_of(delete_room);

bool has(permission_mask m, permission p) {
  return (m & mask_of(p)) != 0;
}

decision need(permission_mask held, permission p) {
  return has(held, p) ? decision::allow() : decision::deny(deny_reason::not_permitted);
}

// Checks shared by remove_member, change_role and set_permissions, in the order the table documents.
std::optional<decision> check_member_target(const target* on) {
  if (on == nullptr) return decision::deny(deny_reason::missing_target);
  if (on->is_self) return decision::deny(deny_reason::self);
  if (!on->member_role) return decision::deny(deny_reason::target_not_member);
  return std::nullopt;
}

constexpr std::array<std::string_view, permission_count> permission_names{
    "add_users",     "remove_users",      "create_messages", "delete_messages", "delete_own_messages",
    "edit_messages", "edit_own_messages", "edit_room",       "delete_room"};
constexpr std::array<std::string_view, action_count> action_names{
    "read",          "join_public", "post",        "edit_message",    "delete_message", "add_member",
    "remove_member", "leave",       "change_role", "set_permissions", "edit_room",      "delete_room"};
constexpr std::array<std::string_view, 8> reason_names{
    "not_member", "not_permitted",      "direct_room",       "outranked",
    "self",       "owner_cannot_leave", "target_not_member", "missing_target"};

template <class Enum, std::size_t N>
std::string_view name_of(const std::array<std::string_view, N>& names, Enum e) {
  const auto i = static_cast<std::size_t>(e);
  return i < N ? names[i] : std::string_view{"unknown"};
}

template <class Enum, std::size_t N>
std::optional<Enum> parse(const std::array<std::string_view, N>& names, std::string_view s) {
  for (std::size_t i = 0; i < N; ++i)
    if (names[i] == s) return static_cast<Enum>(i);
  return std::nullopt;
}

}  // namespace

permission_mask default_permissions(role r, room_kind kind) {
  if (kind == room_kind::direct) return direct_member;
  switch (r) {
    case role::owner:
      return all_permissions;
    case role::admin:
      return admin_defaults;
    case role::moderator:
      return moderator_defaults;
    case role::member:
      return kind == room_kind::channel ? channel_member : group_member;
  }
  return 0;
}

permission_mask effective_permissions(const subject& who, room_kind kind) {
  if (!who.member_role) return 0;
  // The owner is immune to overrides so that a room can never be left without anyone able to run it.
  if (kind != room_kind::direct && *who.member_role == role::owner) return all_permissions;
  return ((default_permissions(*who.member_role, kind) | who.granted) & ~who.revoked) & all_permissions;
}

decision decide(const subject& who, room_kind kind, bool is_public, action what, const target* on) {
  const bool direct = kind == room_kind::direct;
  if (direct) is_public = false;  // direct rooms are never public, whatever the caller passed

  if (!who.member_role) {
    if (is_public && (what == action::read || what == action::join_public)) return decision::allow();
    return decision::deny(deny_reason::not_member);
  }

  // In a direct room both members are equal: whatever role is stored, each counts as a member.
  const role me = direct ? role::member : *who.member_role;
  const permission_mask held = effective_permissions(who, kind);
  const auto direct_fixed = decision::deny(deny_reason::direct_room);

  switch (what) {
    case action::read:
    case action::join_public:  // already a member: joining again is a no-op, not an error
      return decision::allow();

    case action::post:
      return need(held, create_messages);

    case action::edit_message:
    case action::delete_message: {
      if (on == nullptr) return decision::deny(deny_reason::missing_target);
      const bool edit = what == action::edit_message;
      const permission any = edit ? edit_messages : delete_messages;
      const permission own = edit ? edit_own_messages : delete_own_messages;
      if (has(held, any) || (on->own_message && has(held, own))) return decision::allow();
      return decision::deny(deny_reason::not_permitted);
    }

    case action::add_member:
      if (direct) return direct_fixed;
      return need(held, add_users);

    case action::remove_member: {
      if (direct) return direct_fixed;
      if (auto d = check_member_target(on)) return *d;
      if (!has(held, remove_users)) return decision::deny(deny_reason::not_permitted);
      if (rank(*on->member_role) >= rank(me)) return decision::deny(deny_reason::outranked);
      return decision::allow();
    }

    case action::leave:
      if (direct) return direct_fixed;
      if (me == role::owner) return decision::deny(deny_reason::owner_cannot_leave);
      return decision::allow();

    case action::change_role: {
      if (direct) return direct_fixed;
      if (on != nullptr && !on->new_role) return decision::deny(deny_reason::missing_target);
      if (auto d = check_member_target(on)) return *d;
      if (rank(me) < rank(role::admin)) return decision::deny(deny_reason::not_permitted);
      if (rank(*on->member_role) >= rank(me)) return decision::deny(deny_reason::outranked);
      // Transfer of ownership: only the owner gives it away; the caller demotes the old owner to admin in
      // the same transaction so that a room always has exactly one owner.
      if (*on->new_role == role::owner) {
        return me == role::owner ? decision::allow() : decision::deny(deny_reason::outranked);
      }
      if (rank(*on->new_role) >= rank(me)) return decision::deny(deny_reason::outranked);
      // A role brings its default permissions: handing it out hands those out, which set_permissions
      // allows only to someone who holds them (else an admin stripped of a permission gets it back through
      // a moderator it appoints).
      if ((default_permissions(*on->new_role, kind) & ~held) != 0)
        return decision::deny(deny_reason::not_permitted);
      return decision::allow();
    }

    case action::set_permissions: {
      if (direct) return direct_fixed;
      if (auto d = check_member_target(on)) return *d;
      if (rank(me) < rank(role::admin)) return decision::deny(deny_reason::not_permitted);
      if (rank(*on->member_role) >= rank(me)) return decision::deny(deny_reason::outranked);
      // Nobody hands out (or takes away) a permission they do not hold themselves.
      if ((on->changed_bits & ~held) != 0) return decision::deny(deny_reason::not_permitted);
      return decision::allow();
    }

    case action::edit_room:
      if (direct) return direct_fixed;
      return need(held, edit_room);

    case action::delete_room:
      // Either member of a direct room may delete it; no override takes that away.
      if (direct) return decision::allow();
      return need(held, delete_room);
  }
  return decision::deny(deny_reason::not_permitted);
}

std::string_view to_string(permission p) {
  return name_of(permission_names, p);
}
std::string_view to_string(action a) {
  return name_of(action_names, a);
}
std::string_view to_string(deny_reason r) {
  return name_of(reason_names, r);
}

std::optional<permission> parse_permission(std::string_view s) {
  return parse<permission>(permission_names, s);
}
std::optional<action> parse_action(std::string_view s) {
  return parse<action>(action_names, s);
}

}  // namespace chorus::actors
