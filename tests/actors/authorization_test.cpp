// Tests for the authorisation rule: every role (and non-member) × room kind × public flag × action, written
// out by hand, then the requirement cases of issue 5, rank rules and per-member overrides.
#include "actors/authorization.hpp"

#include "storage/account_store.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace {

using namespace chorus::actors;

namespace st = chorus::storage;

constexpr std::optional<role> none = std::nullopt;

subject member_subject(std::optional<role> r, permission_mask granted = 0, permission_mask revoked = 0) {
  subject s;
  s.member_role = r;
  s.granted = granted;
  s.revoked = revoked;
  return s;
}

target member_target(std::optional<role> r) {
  target t;
  t.member_role = r;
  return t;
}
constexpr auto D = room_kind::direct;
constexpr auto G = room_kind::group;
constexpr auto C = room_kind::channel;

// The columns of the table, in this order. Each action with a target gets a fixed one:
//   edit_message / delete_message: somebody else's message;
//   remove_member: another user whose role is member;
//   change_role: another user whose role is member, to become moderator;
//   set_permissions: another user whose role is member, granting create_messages.
constexpr action columns[] = {
    action::read,           action::join_public,     action::post,          action::edit_message,
    action::delete_message, action::add_member,      action::remove_member, action::leave,
    action::change_role,    action::set_permissions, action::edit_room,     action::delete_room,
};
static_assert(std::size(columns) == action_count);

target column_target(action a) {
  target t;
  t.member_role = role::member;
  if (a == action::change_role) t.new_role = role::moderator;
  if (a == action::set_permissions) t.changed_bits = mask_of(permission::create_messages);
  return t;
}

// A allow; M not_member; P not_permitted; D direct_room; O outranked; S self; L owner_cannot_leave;
// T target_not_member; X missing_target.
decision code(char c) {
  switch (c) {
    case 'A':
      return decision::allow();
    case 'M':
      return decision::deny(deny_reason::not_member);
    case 'P':
      return decision::deny(deny_reason::not_permitted);
    case 'D':
      return decision::deny(deny_reason::direct_room);
    case 'O':
      return decision::deny(deny_reason::outranked);
    case 'S':
      return decision::deny(deny_reason::self);
    case 'L':
      return decision::deny(deny_reason::owner_cannot_leave);
    case 'T':
      return decision::deny(deny_reason::target_not_member);
    case 'X':
      return decision::deny(deny_reason::missing_target);
  }
  ADD_FAILURE() << "bad code " << c;
  return decision::allow();
}

std::string name(const decision& d) {
  return d.allowed ? "allow" : "deny(" + std::string(to_string(d.reason)) + ")";
}

std::string name(std::optional<role> r) {
  return r ? std::string(to_string(*r)) : "non-member";
}

struct row {
  room_kind kind;
  bool is_public;
  std::optional<role> who;
  const char* expected;  // one code per column, spaces ignored
};

// clang-format off
//                               read join post edit del  add  rm   leav role perm edit del
//                                              oth  oth                           room room
const row policy[] = {
    // Direct rooms: never public (the flag is ignored); roles do not matter; membership is fixed; either
    // member may delete the room.
    {D, false, none,            "M    M    M    M    M    M    M    M    M    M    M    M"},
    {D, false, role::owner,     "A    A    A    P    P    D    D    D    D    D    D    A"},
    {D, false, role::admin,     "A    A    A    P    P    D    D    D    D    D    D    A"},
    {D, false, role::moderator, "A    A    A    P    P    D    D    D    D    D    D    A"},
    {D, false, role::member,    "A    A    A    P    P    D    D    D    D    D    D    A"},
    {D, true,  none,            "M    M    M    M    M    M    M    M    M    M    M    M"},
    {D, true,  role::owner,     "A    A    A    P    P    D    D    D    D    D    D    A"},
    {D, true,  role::admin,     "A    A    A    P    P    D    D    D    D    D    D    A"},
    {D, true,  role::moderator, "A    A    A    P    P    D    D    D    D    D    D    A"},
    {D, true,  role::member,    "A    A    A    P    P    D    D    D    D    D    D    A"},
    // Groups: everyone posts and adds users; only the owner deletes the room.
    {G, false, none,            "M    M    M    M    M    M    M    M    M    M    M    M"},
    {G, false, role::owner,     "A    A    A    A    A    A    A    L    A    A    A    A"},
    {G, false, role::admin,     "A    A    A    A    A    A    A    A    A    A    A    P"},
    {G, false, role::moderator, "A    A    A    P    A    A    A    A    P    P    P    P"},
    {G, false, role::member,    "A    A    A    P    P    A    P    A    P    P    P    P"},
    {G, true,  none,            "A    A    M    M    M    M    M    M    M    M    M    M"},
    {G, true,  role::owner,     "A    A    A    A    A    A    A    L    A    A    A    A"},
    {G, true,  role::admin,     "A    A    A    A    A    A    A    A    A    A    A    P"},
    {G, true,  role::moderator, "A    A    A    P    A    A    A    A    P    P    P    P"},
    {G, true,  role::member,    "A    A    A    P    P    A    P    A    P    P    P    P"},
    // Channels: moderators and above post; plain members read (and leave).
    {C, false, none,            "M    M    M    M    M    M    M    M    M    M    M    M"},
    {C, false, role::owner,     "A    A    A    A    A    A    A    L    A    A    A    A"},
    {C, false, role::admin,     "A    A    A    A    A    A    A    A    A    A    A    P"},
    {C, false, role::moderator, "A    A    A    P    A    A    A    A    P    P    P    P"},
    {C, false, role::member,    "A    A    P    P    P    P    P    A    P    P    P    P"},
    {C, true,  none,            "A    A    M    M    M    M    M    M    M    M    M    M"},
    {C, true,  role::owner,     "A    A    A    A    A    A    A    L    A    A    A    A"},
    {C, true,  role::admin,     "A    A    A    A    A    A    A    A    A    A    A    P"},
    {C, true,  role::moderator, "A    A    A    P    A    A    A    A    P    P    P    P"},
    {C, true,  role::member,    "A    A    P    P    P    P    P    A    P    P    P    P"},
};
// clang-format on

TEST(Authorization, TableCoversEveryRoleKindVisibilityAndAction) {
  std::vector<std::string> seen;
  for (const auto& r : policy) {
    std::string codes;
    for (const char* c = r.expected; *c != '\0'; ++c)
      if (*c != ' ') codes += *c;
    ASSERT_EQ(codes.size(), action_count) << r.expected;
    seen.push_back(std::string(to_string(r.kind)) + (r.is_public ? "/public/" : "/private/") + name(r.who));
    for (std::size_t i = 0; i < action_count; ++i) {
      const action a = columns[i];
      const target t = column_target(a);
      const decision got = decide(member_subject(r.who), r.kind, r.is_public, a, &t);
      EXPECT_EQ(name(got), name(code(codes[i])))
          << to_string(r.kind) << (r.is_public ? " public " : " private ") << name(r.who) << " "
          << to_string(a);
    }
  }
  // 5 memberships × 3 kinds × 2 visibilities, each exactly once.
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()), seen.end());
  EXPECT_EQ(seen.size(), 5u * 3u * 2u);
}

decision act(std::optional<role> who, room_kind kind, action a, const target* t = nullptr,
             permission_mask granted = 0, permission_mask revoked = 0, bool is_public = false) {
  return decide(member_subject(who, granted, revoked), kind, is_public, a, t);
}

const decision allow = decision::allow();
decision deny(deny_reason r) {
  return decision::deny(r);
}

// --- the requirement cases of issue 5 ------------------------------------------------------------------

TEST(Authorization, DirectRoomNeitherAddsOthersEitherDeletes) {
  for (auto r : {role::owner, role::member}) {
    EXPECT_EQ(act(r, D, action::add_member), deny(deny_reason::direct_room)) << to_string(r);
    EXPECT_EQ(act(r, D, action::delete_room), allow) << to_string(r);
  }
  // Even a stored grant of add_users, or every permission, does not open a direct room.
  EXPECT_EQ(act(role::member, D, action::add_member, nullptr, all_permissions),
            deny(deny_reason::direct_room));
  // And no revocation takes deleting away from either member.
  EXPECT_EQ(act(role::member, D, action::delete_room, nullptr, 0, all_permissions), allow);
}

TEST(Authorization, GroupAnyoneAddsOnlyOwnerDeletes) {
  for (auto r : {role::owner, role::admin, role::moderator, role::member})
    EXPECT_EQ(act(r, G, action::add_member), allow) << to_string(r);
  EXPECT_EQ(act(role::owner, G, action::delete_room), allow);
  for (auto r : {role::admin, role::moderator, role::member})
    EXPECT_EQ(act(r, G, action::delete_room), deny(deny_reason::not_permitted)) << to_string(r);
  EXPECT_EQ(act(none, G, action::add_member, nullptr, 0, 0, true), deny(deny_reason::not_member));
}

TEST(Authorization, ChannelOnlyPermittedPostEveryoneElseReads) {
  EXPECT_EQ(act(role::member, C, action::post), deny(deny_reason::not_permitted));
  EXPECT_EQ(act(role::member, C, action::read), allow);
  EXPECT_EQ(act(none, C, action::read, nullptr, 0, 0, true), allow);
  EXPECT_EQ(act(none, C, action::post, nullptr, 0, 0, true), deny(deny_reason::not_member));
  for (auto r : {role::owner, role::admin, role::moderator}) EXPECT_EQ(act(r, C, action::post), allow);
}

// --- overrides ---------------------------------------------------------------------------------------------

TEST(Authorization, GrantedCreateMessagesLetsChannelMemberPost) {
  EXPECT_EQ(act(role::member, C, action::post, nullptr, mask_of(permission::create_messages)), allow);
}

TEST(Authorization, RevokedCreateMessagesSilencesGroupMember) {
  EXPECT_EQ(act(role::member, G, action::post, nullptr, 0, mask_of(permission::create_messages)),
            deny(deny_reason::not_permitted));
  // Revoked wins over granted.
  const auto m = mask_of(permission::create_messages);
  EXPECT_EQ(act(role::member, G, action::post, nullptr, m, m), deny(deny_reason::not_permitted));
  // A direct member can be silenced too.
  EXPECT_EQ(act(role::member, D, action::post, nullptr, 0, m), deny(deny_reason::not_permitted));
}

TEST(Authorization, GrantOfAddUsersInDirectRoomStillDenies) {
  EXPECT_EQ(act(role::member, D, action::add_member, nullptr, mask_of(permission::add_users)),
            deny(deny_reason::direct_room));
  target other = member_target(role::member);
  EXPECT_EQ(act(role::member, D, action::remove_member, &other, mask_of(permission::remove_users)),
            deny(deny_reason::direct_room));
}

TEST(Authorization, OwnerIgnoresRevocations) {
  EXPECT_EQ(act(role::owner, G, action::post, nullptr, 0, all_permissions), allow);
  EXPECT_EQ(act(role::owner, C, action::delete_room, nullptr, 0, all_permissions), allow);
}

TEST(Authorization, GrantsAndRevocationsOfOtherPermissions) {
  EXPECT_EQ(act(role::member, G, action::edit_room, nullptr, mask_of(permission::edit_room)), allow);
  EXPECT_EQ(act(role::admin, G, action::delete_room, nullptr, mask_of(permission::delete_room)), allow);
  EXPECT_EQ(act(role::admin, G, action::edit_room, nullptr, 0, mask_of(permission::edit_room)),
            deny(deny_reason::not_permitted));
  EXPECT_EQ(act(role::member, C, action::add_member, nullptr, mask_of(permission::add_users)), allow);
  EXPECT_EQ(act(role::moderator, G, action::add_member, nullptr, 0, mask_of(permission::add_users)),
            deny(deny_reason::not_permitted));
  target other_msg{};
  EXPECT_EQ(act(role::member, G, action::delete_message, &other_msg, mask_of(permission::delete_messages)),
            allow);
  EXPECT_EQ(
      act(role::moderator, G, action::delete_message, &other_msg, 0, mask_of(permission::delete_messages)),
      deny(deny_reason::not_permitted));
  // Grants never make a non-member a member.
  EXPECT_EQ(act(none, G, action::post, nullptr, all_permissions), deny(deny_reason::not_member));
}

// --- own messages ----------------------------------------------------------------------------------------

TEST(Authorization, OwnMessages) {
  target own{};
  own.own_message = true;
  for (auto k : {D, G, C}) {
    for (auto a : {action::edit_message, action::delete_message}) {
      EXPECT_EQ(act(role::member, k, a, &own), allow) << to_string(k) << " " << to_string(a);
    }
  }
  EXPECT_EQ(act(role::member, G, action::edit_message, &own, 0, mask_of(permission::edit_own_messages)),
            deny(deny_reason::not_permitted));
  // The permission for any message covers one's own.
  EXPECT_EQ(act(role::admin, G, action::edit_message, &own, 0, mask_of(permission::edit_own_messages)),
            allow);
  EXPECT_EQ(act(role::member, G, action::edit_message), deny(deny_reason::missing_target));
}

// --- rank rules --------------------------------------------------------------------------------------------

constexpr role all_roles[] = {role::owner, role::admin, role::moderator, role::member};

TEST(Authorization, RemoveMemberByRank) {
  // Rows: the actor; columns: the removed member's role owner, admin, moderator, member.
  const std::pair<role, const char*> table[] = {
      {role::owner, "OAAA"},
      {role::admin, "OOAA"},
      {role::moderator, "OOOA"},
      {role::member, "PPPP"},
  };
  for (const auto& [actor, codes] : table) {
    for (std::size_t i = 0; i < 4; ++i) {
      target t = member_target(all_roles[i]);
      EXPECT_EQ(name(act(actor, G, action::remove_member, &t)), name(code(codes[i])))
          << to_string(actor) << " removes " << to_string(all_roles[i]);
    }
  }
}

TEST(Authorization, ChangeRoleByRank) {
  // Target a member; rows: the actor; columns: the new role owner, admin, moderator, member.
  const std::pair<role, const char*> to_new[] = {
      {role::owner, "AAAA"},  // new role owner = transfer of ownership
      {role::admin, "OOAA"},
      {role::moderator, "PPPP"},
      {role::member, "PPPP"},
  };
  for (const auto& [actor, codes] : to_new) {
    for (std::size_t i = 0; i < 4; ++i) {
      target t = member_target(role::member);
      t.new_role = all_roles[i];
      EXPECT_EQ(name(act(actor, C, action::change_role, &t)), name(code(codes[i])))
          << to_string(actor) << " makes a member " << to_string(all_roles[i]);
    }
  }
  // An admin cannot demote another admin nor touch the owner; the owner can demote an admin.
  target admin = member_target(role::admin);
  admin.new_role = role::member;
  EXPECT_EQ(act(role::admin, G, action::change_role, &admin), deny(deny_reason::outranked));
  EXPECT_EQ(act(role::owner, G, action::change_role, &admin), allow);
  target owner = member_target(role::owner);
  owner.new_role = role::member;
  EXPECT_EQ(act(role::admin, G, action::change_role, &owner), deny(deny_reason::outranked));
}

TEST(Authorization, NobodyChangesThemselves) {
  target me = member_target(role::owner);
  me.is_self = true;
  me.new_role = role::admin;
  me.changed_bits = mask_of(permission::add_users);
  EXPECT_EQ(act(role::owner, G, action::change_role, &me), deny(deny_reason::self));
  EXPECT_EQ(act(role::owner, G, action::set_permissions, &me), deny(deny_reason::self));
  EXPECT_EQ(act(role::owner, G, action::remove_member, &me), deny(deny_reason::self));
  target admin_me = member_target(role::admin);
  admin_me.is_self = true;
  admin_me.new_role = role::owner;
  EXPECT_EQ(act(role::admin, G, action::change_role, &admin_me), deny(deny_reason::self));
}

TEST(Authorization, OwnerCannotLeaveOrBeRemoved) {
  EXPECT_EQ(act(role::owner, G, action::leave), deny(deny_reason::owner_cannot_leave));
  target owner = member_target(role::owner);
  for (auto r : {role::admin, role::moderator})
    EXPECT_EQ(act(r, G, action::remove_member, &owner, all_permissions), deny(deny_reason::outranked));
  EXPECT_EQ(act(role::member, G, action::remove_member, &owner, mask_of(permission::remove_users)),
            deny(deny_reason::outranked));
}

TEST(Authorization, SetPermissionsOnlyWithinOwnPermissions) {
  target member = member_target(role::member);
  member.changed_bits = mask_of(permission::delete_room);
  EXPECT_EQ(act(role::admin, G, action::set_permissions, &member), deny(deny_reason::not_permitted));
  EXPECT_EQ(act(role::owner, G, action::set_permissions, &member), allow);
  member.changed_bits = mask_of(permission::create_messages) | mask_of(permission::edit_room);
  EXPECT_EQ(act(role::admin, C, action::set_permissions, &member), allow);
  EXPECT_EQ(act(role::admin, C, action::set_permissions, &member, 0, mask_of(permission::edit_room)),
            deny(deny_reason::not_permitted));
  member.changed_bits = permission_mask{1} << 20;  // not a permission at all
  EXPECT_EQ(act(role::owner, G, action::set_permissions, &member), deny(deny_reason::not_permitted));
  target moderator = member_target(role::moderator);
  EXPECT_EQ(act(role::admin, G, action::set_permissions, &moderator), allow);
  EXPECT_EQ(act(role::moderator, G, action::set_permissions, &member), deny(deny_reason::not_permitted));
}

TEST(Authorization, ARoleIsGivenOnlyByWhoHoldsWhatItBrings) {
  // An admin whose owner took delete_messages away cannot hand it back out by appointing a moderator.
  target member = member_target(role::member);
  member.new_role = role::moderator;
  EXPECT_EQ(act(role::admin, G, action::change_role, &member), allow);
  EXPECT_EQ(act(role::admin, G, action::change_role, &member, 0, mask_of(permission::delete_messages)),
            deny(deny_reason::not_permitted));
  // Nor by making someone a member when members may post and it may not (a channel's member posts not).
  member.new_role = role::member;
  target moderator = member_target(role::moderator);
  moderator.new_role = role::member;
  EXPECT_EQ(act(role::admin, G, action::change_role, &moderator, 0, mask_of(permission::create_messages)),
            deny(deny_reason::not_permitted));
  EXPECT_EQ(act(role::admin, C, action::change_role, &moderator, 0, mask_of(permission::create_messages)),
            allow);
}

TEST(Authorization, TargetsMustBeGivenAndBeMembers) {
  for (auto a : {action::remove_member, action::change_role, action::set_permissions, action::edit_message,
                 action::delete_message})
    EXPECT_EQ(act(role::owner, G, a), deny(deny_reason::missing_target)) << to_string(a);
  target nobody{};
  nobody.new_role = role::member;
  for (auto a : {action::remove_member, action::change_role, action::set_permissions})
    EXPECT_EQ(act(role::owner, G, a, &nobody), deny(deny_reason::target_not_member)) << to_string(a);
  target no_new_role = member_target(role::member);
  EXPECT_EQ(act(role::owner, G, action::change_role, &no_new_role), deny(deny_reason::missing_target));
}

TEST(Authorization, EffectivePermissions) {
  EXPECT_EQ(effective_permissions(member_subject(none), G), 0u);
  EXPECT_EQ(effective_permissions(member_subject(role::owner), G), all_permissions);
  EXPECT_EQ(effective_permissions(member_subject(role::admin), C),
            all_permissions & ~mask_of(permission::delete_room));
  EXPECT_EQ(default_permissions(role::owner, D), default_permissions(role::member, D));
  EXPECT_EQ(effective_permissions(member_subject(role::member, permission_mask{1} << 30), G),
            default_permissions(role::member, G));
}

// --- names -------------------------------------------------------------------------------------------------

TEST(Authorization, NamesRoundTrip) {
  EXPECT_EQ(to_string(role::owner), "owner");
  EXPECT_EQ(to_string(room_kind::channel), "channel");
  EXPECT_EQ(to_string(permission::add_users), "add_users");
  EXPECT_EQ(to_string(permission::delete_room), "delete_room");
  EXPECT_EQ(to_string(action::join_public), "join_public");
  EXPECT_EQ(to_string(deny_reason::owner_cannot_leave), "owner_cannot_leave");
  for (auto r : all_roles) EXPECT_EQ(st::parse_member_role(to_string(r)), r);
  for (auto k : {D, G, C}) EXPECT_EQ(st::parse_room_kind(to_string(k)), k);
  for (unsigned i = 0; i < permission_count; ++i) {
    const auto p = static_cast<permission>(i);
    EXPECT_EQ(parse_permission(to_string(p)), p);
  }
  for (auto a : columns) EXPECT_EQ(parse_action(to_string(a)), a);
  EXPECT_EQ(st::parse_member_role("Owner"), std::nullopt);
  EXPECT_EQ(st::parse_member_role(""), std::nullopt);
  EXPECT_EQ(parse_permission("post"), std::nullopt);
  EXPECT_EQ(st::parse_room_kind("dm"), std::nullopt);
}

}  // namespace
