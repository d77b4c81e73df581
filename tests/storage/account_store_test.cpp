// Tests for account_store against a real PostgreSQL: users, refresh-token rotation, rooms, membership,
// pagination, conflicts and soft deletes.
#include "storage/account_store.hpp"

#include "tests/support/test_database.hpp"

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <vector>

namespace storage = chorus::storage;
using chorus::testing::test_database;
using storage::member_role;
using storage::permission;
using storage::refresh_status;
using storage::room_kind;
using storage::store_failure;

namespace {

template <class T>
T ok(storage::outcome<T> r) {
  if (auto* f = std::get_if<store_failure>(&r)) {
    ADD_FAILURE() << "account_store call failed: " << storage::describe(*f);
    return T{};
  }
  return std::get<T>(std::move(r));
}

template <class T>
store_failure failure(storage::outcome<T> r) {
  if (auto* f = std::get_if<store_failure>(&r)) return *f;
  ADD_FAILURE() << "account_store call succeeded but should have failed";
  return store_failure{store_failure::unavailable, "(succeeded)", {}};
}

#define EXPECT_FAILURE(call, kind, detail_text) \
  do {                                          \
    const auto f_ = failure(call);              \
    EXPECT_EQ(f_.what, store_failure::kind);    \
    EXPECT_EQ(f_.detail, detail_text) << #call; \
  } while (false)

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Appends instead of `"literal" + std::to_string(n)`, on which g++ 12 -O3 gives a false -Wrestrict error.
std::string numbered(std::string prefix, long long n) {
  prefix += std::to_string(n);
  return prefix;
}

std::string repeat(std::string_view unit, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += unit;
  return out;
}

void exec(const std::string& sql) {
  pqxx::connection conn{test_database::instance().url()};
  pqxx::work tx{conn};
  tx.exec(sql);
  tx.commit();
}

class account_store_test : public ::testing::Test {
 protected:
  void SetUp() override { test_database::instance().truncate_all(); }

  storage::user_row user(const std::string& name) {
    return ok(store.create_user({name, name + "@example.com", "hash-of-" + name, "User " + name}));
  }

  storage::room_row group(const std::string& creator, const std::string& name, bool is_public = false,
                          std::vector<std::pair<std::string, member_role>> members = {}) {
    storage::new_room r;
    r.kind = room_kind::group;
    r.name = name;
    r.is_public = is_public;
    r.creator = creator;
    r.members = std::move(members);
    return ok(store.create_room(r));
  }

  storage::outcome<storage::room_row> direct(const std::string& a, const std::string& b) {
    storage::new_room r;
    r.kind = room_kind::direct;
    r.creator = a;
    r.members = {{b, member_role::member}};
    return store.create_room(r);
  }

  storage::account_store store{test_database::instance().url()};
};

const std::string unknown_uuid = "7b0c2f36-5a4e-4c1f-9d7e-2f1a3b4c5d6e";

// --- users
// ---------------------------------------------------------------------------------------------------

TEST_F(account_store_test, create_and_get_user) {
  const auto before = now_ms();
  const auto u = ok(store.create_user({"Alice.B-1_", "Alice@Example.com", "h", "Alice B"}));
  EXPECT_EQ(u.id.size(), 36u);
  EXPECT_EQ(u.username, "Alice.B-1_");
  EXPECT_EQ(u.email, "Alice@Example.com");
  EXPECT_EQ(u.display_name, "Alice B");
  EXPECT_EQ(u.status, storage::user_status::online);
  EXPECT_FALSE(u.last_seen_ms);
  EXPECT_GE(u.created_at_ms, before - 5000);
  EXPECT_LE(u.created_at_ms, now_ms() + 5000);

  const auto got = ok(store.get_user(u.id));
  EXPECT_EQ(got.id, u.id);
  EXPECT_EQ(got.username, u.username);
  EXPECT_EQ(got.created_at_ms, u.created_at_ms);
  EXPECT_EQ(ok(store.get_user_by_username("alice.b-1_")).id, u.id);

  EXPECT_FAILURE(store.get_user(unknown_uuid), not_found, "user");
  EXPECT_FAILURE(store.get_user("not-a-uuid'; --"), not_found, "user");
  EXPECT_FAILURE(store.get_user_by_username("nobody"), not_found, "user");
}

TEST_F(account_store_test, duplicate_username_or_email_ignoring_case_is_a_conflict) {
  user("alice");
  EXPECT_FAILURE(store.create_user({"ALICE", "other@example.com", "h", ""}), conflict, "username");
  EXPECT_FAILURE(store.create_user({"alice2", "ALICE@EXAMPLE.COM", "h", ""}), conflict, "email");
  EXPECT_TRUE(
      std::holds_alternative<storage::user_row>(store.create_user({"alice2", "a2@example.com", "h", ""})));
}

TEST_F(account_store_test, invalid_user_fields_are_refused) {
  EXPECT_FAILURE(store.create_user({"ab", "ab@example.com", "h", ""}), invalid, "username");
  EXPECT_FAILURE(store.create_user({std::string(33, 'a'), "x@example.com", "h", ""}), invalid, "username");
  EXPECT_FAILURE(store.create_user({"has space", "x@example.com", "h", ""}), invalid, "username");
  EXPECT_FAILURE(store.create_user({"ünïcode", "x@example.com", "h", ""}), invalid, "username");
  EXPECT_FAILURE(store.create_user({"it's", "x@example.com", "h", ""}), invalid, "username");
  EXPECT_FAILURE(store.create_user({"valid", "no-at-sign", "h", ""}), invalid, "email");
  EXPECT_FAILURE(store.create_user({"valid", "x@example.com", "", ""}), invalid, "password_hash");
  EXPECT_FAILURE(store.create_user({"valid", "x@example.com", "h", std::string(101, 'd')}), invalid,
                 "display_name");
  EXPECT_FAILURE(store.create_user({"valid", "x@example.com", "h", std::string("a\0b", 3)}), invalid,
                 "display_name");
  // Exactly at the limits is fine.
  const auto u = ok(store.create_user({std::string(32, 'z'), "y@example.com", "h", repeat("é", 100)}));
  EXPECT_EQ(u.display_name, repeat("é", 100));
  ok(store.create_user({"abc", "z@example.com", "h", ""}));
}

TEST_F(account_store_test, credentials_by_username_or_email) {
  const auto u = ok(store.create_user({"Bob", "Bob@Example.com", "$argon2id$v=19$secret", ""}));
  for (const char* login : {"bob", "BOB", "Bob", "bob@example.com", "BOB@EXAMPLE.COM"}) {
    const auto c = ok(store.credentials_by_login(login));
    EXPECT_EQ(c.user_id, u.id) << login;
    EXPECT_EQ(c.password_hash, "$argon2id$v=19$secret");
    EXPECT_FALSE(c.deleted);
  }
  EXPECT_FAILURE(store.credentials_by_login("carol"), not_found, "user");
  EXPECT_FAILURE(store.credentials_by_login("bob@elsewhere.com"), not_found, "user");
  EXPECT_FAILURE(store.credentials_by_login(""), not_found, "user");
  EXPECT_FAILURE(store.credentials_by_login("' OR '1'='1"), not_found, "user");

  ok(store.delete_user(u.id));
  EXPECT_TRUE(ok(store.credentials_by_login("bob")).deleted);
}

TEST_F(account_store_test, update_profile_changes_only_given_fields) {
  const auto u = user("carol");
  storage::profile_patch p;
  p.about = "likes \"quotes\", 'apostrophes', back\\slashes,\ttabs\nand newlines; DROP TABLE users; --";
  p.status = storage::user_status::busy;
  auto got = ok(store.update_profile(u.id, p));
  EXPECT_EQ(got.about, *p.about);
  EXPECT_EQ(got.status, storage::user_status::busy);
  EXPECT_EQ(got.display_name, "User carol");

  storage::profile_patch p2;
  p2.display_name = "";
  p2.avatar_url = "https://cdn.example.com/a.png?x=1&y=%20";
  got = ok(store.update_profile(u.id, p2));
  EXPECT_EQ(got.display_name, "");
  EXPECT_EQ(got.about, *p.about);
  EXPECT_EQ(got.avatar_url, *p2.avatar_url);
  EXPECT_EQ(got.status, storage::user_status::busy);

  storage::profile_patch long_about;
  long_about.about = repeat("日本", storage::limits::about_max / 2);
  EXPECT_EQ(ok(store.update_profile(u.id, long_about)).about, *long_about.about);
  EXPECT_EQ(ok(store.get_user(u.id)).about, *long_about.about);
  long_about.about = *long_about.about + "x";
  EXPECT_FAILURE(store.update_profile(u.id, long_about), invalid, "about");
  storage::profile_patch bad_utf8;
  bad_utf8.about = "\xff\xfe";
  EXPECT_EQ(failure(store.update_profile(u.id, bad_utf8)).what, store_failure::invalid);

  EXPECT_FAILURE(store.update_profile(unknown_uuid, p), not_found, "user");
  for (auto s : {storage::user_status::online, storage::user_status::away, storage::user_status::invisible}) {
    storage::profile_patch ps;
    ps.status = s;
    EXPECT_EQ(ok(store.update_profile(u.id, ps)).status, s);
  }
}

TEST_F(account_store_test, touch_last_seen) {
  const auto u = user("dave");
  const auto before = now_ms();
  ok(store.touch_last_seen(u.id));
  const auto got = ok(store.get_user(u.id));
  ASSERT_TRUE(got.last_seen_ms);
  EXPECT_GE(*got.last_seen_ms, before - 5000);
  EXPECT_FAILURE(store.touch_last_seen(unknown_uuid), not_found, "user");
}

TEST_F(account_store_test, search_users_by_prefix_walks_all_pages) {
  std::set<std::string> expected;
  for (int i = 0; i < 23; ++i) {
    const auto name = numbered(i % 2 == 0 ? "Walker" : "walker", 100 + i);
    user(name);
    expected.insert(numbered("walker", 100 + i));
  }
  user("walk");      // shorter than the prefix
  user("wal_kerx");  // '_' is no wildcard
  user("otherwalker");
  const auto gone = user("walkerzzz");
  ok(store.delete_user(gone.id));

  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    const auto p = ok(store.search_users("WALKER", cursor, 5));
    EXPECT_LE(p.items.size(), 5u);
    for (const auto& u : p.items) seen.push_back(u.username);
    cursor = p.next_cursor;
    ASSERT_LT(++pages, 20);
  } while (!cursor.empty());
  EXPECT_EQ(pages, 5);
  std::vector<std::string> lowered;
  for (auto s : seen) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    lowered.push_back(s);
  }
  EXPECT_TRUE(std::is_sorted(lowered.begin(), lowered.end()));
  EXPECT_EQ(std::set<std::string>(lowered.begin(), lowered.end()), expected);
  EXPECT_EQ(lowered.size(), expected.size());

  const auto metas = ok(store.search_users("wal_", "", 50));
  ASSERT_EQ(metas.items.size(), 1u);
  EXPECT_EQ(metas.items[0].username, "wal_kerx");
  EXPECT_TRUE(ok(store.search_users("%", "", 50)).items.empty());
  EXPECT_TRUE(ok(store.search_users("'", "", 50)).items.empty());
  EXPECT_EQ(ok(store.search_users("", "", 200)).items.size(), 26u);
  // Exactly one full page: no cursor to an empty page.
  EXPECT_TRUE(ok(store.search_users("walker10", "", 10)).next_cursor.empty());
  EXPECT_FAILURE(store.search_users("w", "not-hex", 5), invalid, "cursor");
}

TEST_F(account_store_test, deleted_user_is_gone_and_its_tokens_stop_working) {
  const auto u = user("erin");
  const auto room = group(u.id, "erin's room");
  const auto family = ok(store.store_refresh("tok-1", u.id, "", now_ms() + 60'000));
  ok(store.store_refresh("tok-2", u.id, "", now_ms() + 60'000));

  ok(store.delete_user(u.id));
  EXPECT_FAILURE(store.get_user(u.id), not_found, "user");
  EXPECT_FAILURE(store.delete_user(u.id), not_found, "user");
  EXPECT_FAILURE(store.update_profile(u.id, {}), not_found, "user");
  EXPECT_EQ(ok(store.use_refresh("tok-1")).status, refresh_status::revoked);
  EXPECT_EQ(ok(store.use_refresh("tok-2")).status, refresh_status::revoked);
  EXPECT_FAILURE(store.store_refresh("tok-3", u.id, family, now_ms() + 60'000), not_found, "user");
  // Nothing else is removed: the membership and the room stay. But the room's rules no longer count the
  // deleted account as a member, so no room that loads them lets its old tokens in.
  EXPECT_EQ(ok(store.get_member(room.id, u.id)).user_id, u.id);
  const auto access = ok(store.room_access(room.id));
  EXPECT_TRUE(access.members.empty());
  EXPECT_FALSE(access.deleted);
  // The name stays taken.
  EXPECT_FAILURE(store.create_user({"Erin", "new@example.com", "h", ""}), conflict, "username");
  // A deleted user cannot join rooms or start direct rooms.
  const auto other = user("frank");
  const auto other_room = group(other.id, "frank's");
  EXPECT_FAILURE(store.add_member(other_room.id, u.id, member_role::member), not_found, "user");
  EXPECT_FAILURE(direct(other.id, u.id), not_found, "user");
}

// --- refresh tokens ----------------------------------------------------------------------------------------

TEST_F(account_store_test, refresh_rotation_and_reuse_revokes_the_family) {
  const auto u = user("gina");
  const auto family = ok(store.store_refresh("r1", u.id, "", now_ms() + 60'000));
  EXPECT_FALSE(family.empty());

  auto use = ok(store.rotate_refresh("r1", "r2", now_ms() + 60'000));
  EXPECT_EQ(use.status, refresh_status::ok);
  EXPECT_EQ(use.user_id, u.id);
  EXPECT_EQ(use.family, family);

  use = ok(store.rotate_refresh("r2", "r3", now_ms() + 60'000));
  EXPECT_EQ(use.status, refresh_status::ok);

  // r1 again: a replay of a rotated token. The whole family, including the live r3, is revoked.
  use = ok(store.use_refresh("r1"));
  EXPECT_EQ(use.status, refresh_status::reused);
  EXPECT_EQ(use.family, family);
  EXPECT_EQ(use.user_id, u.id);
  EXPECT_EQ(ok(store.use_refresh("r3")).status, refresh_status::revoked);
  EXPECT_EQ(ok(store.rotate_refresh("r3", "r4", now_ms() + 60'000)).status, refresh_status::revoked);
  EXPECT_EQ(ok(store.use_refresh("r4")).status, refresh_status::unknown);

  // Another family of the same user is untouched.
  const auto other = ok(store.store_refresh("s1", u.id, "", now_ms() + 60'000));
  EXPECT_NE(other, family);
  EXPECT_EQ(ok(store.use_refresh("s1")).status, refresh_status::ok);
}

TEST_F(account_store_test, refresh_expired_unknown_revoked_and_conflicts) {
  const auto u = user("hank");
  ok(store.store_refresh("old", u.id, "fam-a", now_ms() - 1000));
  auto use = ok(store.use_refresh("old"));
  EXPECT_EQ(use.status, refresh_status::expired);
  EXPECT_EQ(use.family, "fam-a");
  EXPECT_EQ(ok(store.use_refresh("never-stored")).status, refresh_status::unknown);
  EXPECT_EQ(ok(store.use_refresh("")).status, refresh_status::unknown);
  EXPECT_EQ(ok(store.rotate_refresh("never-stored", "x", now_ms() + 1000)).status, refresh_status::unknown);
  EXPECT_FAILURE(store.rotate_refresh("old", "old", now_ms() + 1000), invalid, "refresh_token");

  EXPECT_EQ(ok(store.store_refresh("live", u.id, "fam-a", now_ms() + 60'000)), "fam-a");
  EXPECT_FAILURE(store.store_refresh("live", u.id, "", now_ms() + 60'000), conflict, "refresh_token");
  EXPECT_FAILURE(store.store_refresh("x", unknown_uuid, "", now_ms() + 60'000), not_found, "user");
  EXPECT_FAILURE(store.store_refresh("x", "nope", "", now_ms() + 60'000), not_found, "user");

  ok(store.revoke_refresh("live"));
  ok(store.revoke_refresh("live"));  // twice is fine
  EXPECT_EQ(ok(store.use_refresh("live")).status, refresh_status::revoked);
  EXPECT_FAILURE(store.revoke_refresh("never-stored"), not_found, "refresh_token");

  // A token that fails rotation stores no replacement.
  EXPECT_EQ(ok(store.rotate_refresh("live", "replacement", now_ms() + 60'000)).status,
            refresh_status::revoked);
  EXPECT_EQ(ok(store.use_refresh("replacement")).status, refresh_status::unknown);

  ok(store.store_refresh("b1", u.id, "fam-b", now_ms() + 60'000));
  ok(store.store_refresh("b2", u.id, "fam-b", now_ms() + 60'000));
  ok(store.store_refresh("c1", u.id, "fam-c", now_ms() + 60'000));
  EXPECT_EQ(ok(store.revoke_family("fam-b")), 2u);
  EXPECT_EQ(ok(store.revoke_family("fam-b")), 0u);
  EXPECT_EQ(ok(store.use_refresh("b2")).status, refresh_status::revoked);
  EXPECT_EQ(ok(store.revoke_user_tokens(u.id)), 2u);  // "old" (expired, never revoked) and c1
  EXPECT_EQ(ok(store.use_refresh("c1")).status, refresh_status::revoked);
}

// --- rooms
// ---------------------------------------------------------------------------------------------------

TEST_F(account_store_test, create_group_room_with_members_in_one_transaction) {
  const auto a = user("owner1");
  const auto b = user("admin1");
  const auto c = user("member1");
  storage::new_room r;
  r.kind = room_kind::channel;
  r.name = "General";
  r.description = "desc";
  r.topic = "topic";
  r.is_public = true;
  r.category = "work";
  r.creator = a.id;
  r.members = {{b.id, member_role::admin}, {c.id, member_role::member}};
  const auto room = ok(store.create_room(r));
  EXPECT_EQ(room.id.size(), 36u);
  EXPECT_EQ(room.kind, room_kind::channel);
  EXPECT_EQ(room.name, "General");
  EXPECT_EQ(room.description, "desc");
  EXPECT_EQ(room.topic, "topic");
  EXPECT_TRUE(room.is_public);
  EXPECT_EQ(room.category, "work");
  EXPECT_EQ(room.created_by, a.id);
  EXPECT_EQ(room.last_seq, 0u);

  const auto got = ok(store.get_room(room.id));
  EXPECT_EQ(got.name, "General");
  EXPECT_EQ(got.created_at_ms, room.created_at_ms);

  EXPECT_EQ(ok(store.get_member(room.id, a.id)).role, member_role::owner);
  EXPECT_EQ(ok(store.get_member(room.id, b.id)).role, member_role::admin);
  EXPECT_EQ(ok(store.get_member(room.id, c.id)).role, member_role::member);

  // One unknown member fails the whole creation: no room, no members.
  r.members.emplace_back(unknown_uuid, member_role::member);
  EXPECT_FAILURE(store.create_room(r), not_found, "user");
  r.members.back().first = "garbage";
  EXPECT_FAILURE(store.create_room(r), not_found, "user");
  EXPECT_EQ(ok(store.list_my_rooms(a.id, "", 50)).items.size(), 1u);

  // The creator listed with another role stays the owner (a room always has one); another user listed
  // twice gets the last entry's role.
  storage::new_room r2;
  r2.name = "second";
  r2.creator = a.id;
  r2.members = {{a.id, member_role::admin}, {b.id, member_role::member}, {b.id, member_role::moderator}};
  const auto room2 = ok(store.create_room(r2));
  EXPECT_EQ(ok(store.get_member(room2.id, a.id)).role, member_role::owner);
  EXPECT_EQ(ok(store.get_member(room2.id, b.id)).role, member_role::moderator);
  EXPECT_EQ(ok(store.room_access(room2.id)).members.size(), 2u);

  EXPECT_FAILURE(store.get_room("no-such-room"), not_found, "room");
  EXPECT_FAILURE(store.get_room(""), not_found, "room");
}

TEST_F(account_store_test, direct_rooms_are_unique_per_pair) {
  const auto a = user("dm_a");
  const auto b = user("dm_b");
  const auto c = user("dm_c");
  const auto room = ok(direct(a.id, b.id));
  EXPECT_EQ(room.kind, room_kind::direct);
  EXPECT_FALSE(room.is_public);

  auto f = failure(direct(a.id, b.id));
  EXPECT_EQ(f.what, store_failure::conflict);
  EXPECT_EQ(f.detail, "direct_pair");
  EXPECT_EQ(f.existing_id, room.id);
  f = failure(direct(b.id, a.id));  // either order
  EXPECT_EQ(f.detail, "direct_pair");
  EXPECT_EQ(f.existing_id, room.id);
  EXPECT_EQ(ok(store.find_direct_room(b.id, a.id)).id, room.id);
  EXPECT_FAILURE(store.find_direct_room(a.id, c.id), not_found, "room");

  ok(direct(a.id, c.id));  // another pair is fine

  storage::new_room three;
  three.kind = room_kind::direct;
  three.creator = a.id;
  three.members = {{b.id, member_role::member}, {c.id, member_role::member}};
  EXPECT_FAILURE(store.create_room(three), invalid, "direct_members");
  three.members = {{a.id, member_role::member}};
  EXPECT_FAILURE(store.create_room(three), invalid, "direct_members");
  three.members = {{c.id, member_role::member}};
  three.is_public = true;
  EXPECT_FAILURE(store.create_room(three), invalid, "is_public");

  EXPECT_FAILURE(store.add_member(room.id, c.id, member_role::member), invalid, "direct_members");
  storage::room_patch make_public;
  make_public.is_public = true;
  EXPECT_FAILURE(store.update_room(room.id, make_public), invalid, "is_public");

  // After a soft delete the pair may open a new direct room.
  ok(store.delete_room(room.id));
  EXPECT_FAILURE(store.find_direct_room(a.id, b.id), not_found, "room");
  const auto again = ok(direct(b.id, a.id));
  EXPECT_NE(again.id, room.id);
}

TEST_F(account_store_test, update_and_soft_delete_room) {
  const auto a = user("upd_a");
  const auto room = group(a.id, "Before", true);
  storage::room_patch p;
  p.topic = "new topic";
  p.category = "cat";
  auto got = ok(store.update_room(room.id, p));
  EXPECT_EQ(got.name, "Before");
  EXPECT_EQ(got.topic, "new topic");
  EXPECT_EQ(got.category, "cat");
  EXPECT_TRUE(got.is_public);

  storage::room_patch p2;
  p2.name = "After";
  p2.is_public = false;
  p2.description = "";
  got = ok(store.update_room(room.id, p2));
  EXPECT_EQ(got.name, "After");
  EXPECT_FALSE(got.is_public);
  EXPECT_EQ(got.topic, "new topic");

  storage::room_patch too_long;
  too_long.name = std::string(storage::limits::room_name_max + 1, 'n');
  EXPECT_FAILURE(store.update_room(room.id, too_long), invalid, "name");
  too_long.name.reset();
  too_long.category = std::string(storage::limits::room_category_max + 1, 'c');
  EXPECT_FAILURE(store.update_room(room.id, too_long), invalid, "category");

  ok(store.delete_room(room.id));
  EXPECT_FAILURE(store.get_room(room.id), not_found, "room");
  EXPECT_FAILURE(store.update_room(room.id, p), not_found, "room");
  EXPECT_FAILURE(store.delete_room(room.id), not_found, "room");
  EXPECT_FAILURE(store.list_members(room.id, "", 10), not_found, "room");
  EXPECT_FAILURE(store.get_member(room.id, a.id), not_found, "room");
  EXPECT_FAILURE(store.add_member(room.id, user("upd_b").id, member_role::member), not_found, "room");
  EXPECT_TRUE(ok(store.list_my_rooms(a.id, "", 10)).items.empty());
  const auto access = ok(store.room_access(room.id));
  EXPECT_TRUE(access.deleted);
  EXPECT_EQ(access.members.size(), 1u);
  EXPECT_FAILURE(store.room_access("no-such-room"), not_found, "room");
}

TEST_F(account_store_test, metacharacters_and_long_strings_round_trip) {
  const auto a = user("meta");
  storage::new_room r;
  r.name = repeat("ß", storage::limits::room_name_max);
  r.topic = "$1 $2 ?? :name E'\\x00' \\N NULL";
  r.category = "\"quoted\"";
  r.creator = a.id;
  // 13 characters (some multi-byte) repeated to just under the character limit.
  r.description = repeat("'\"\\%_;\t\n{},ü😀", storage::limits::room_description_max / 13);
  const auto room = ok(store.create_room(r));
  const auto got = ok(store.get_room(room.id));
  EXPECT_EQ(got.name, r.name);
  EXPECT_EQ(got.description, r.description);
  EXPECT_EQ(got.topic, r.topic);
  EXPECT_EQ(got.category, r.category);

  r.description += std::string(storage::limits::room_description_max, 'x');
  EXPECT_FAILURE(store.create_room(r), invalid, "description");
  r.description = "ok";
  r.topic = std::string(storage::limits::room_topic_max + 1, 't');
  EXPECT_FAILURE(store.create_room(r), invalid, "topic");
  r.topic = std::string("nul\0inside", 10);
  EXPECT_FAILURE(store.create_room(r), invalid, "topic");

  // Refresh token hashes and families are arbitrary text too.
  const std::string hash = "a'b\"c\\d;--" + std::string(500, 'h');
  ok(store.store_refresh(hash, a.id, "fam'\"\\", now_ms() + 60'000));
  const auto use = ok(store.use_refresh(hash));
  EXPECT_EQ(use.status, refresh_status::ok);
  EXPECT_EQ(use.family, "fam'\"\\");
}

TEST_F(account_store_test, rooms_made_by_the_message_path_are_readable) {
  exec("INSERT INTO rooms (id) VALUES ('plain-room')");
  const auto room = ok(store.get_room("plain-room"));
  EXPECT_EQ(room.kind, room_kind::group);
  EXPECT_EQ(room.name, "");
  EXPECT_EQ(room.created_by, "");
  const auto access = ok(store.room_access("plain-room"));
  EXPECT_FALSE(access.deleted);
  EXPECT_TRUE(access.members.empty());
  const auto a = user("joiner");
  EXPECT_EQ(ok(store.add_member("plain-room", a.id, member_role::member)).room_id, "plain-room");
}

TEST_F(account_store_test, list_my_rooms_walks_all_pages_with_unread_counts) {
  const auto me = user("lister");
  const auto other = user("other");
  std::set<std::string> mine;
  for (int i = 0; i < 17; ++i) mine.insert(group(me.id, numbered("room", i)).id);
  mine.insert(ok(direct(other.id, me.id)).id);
  group(other.id, "not mine");
  const auto deleted = group(me.id, "deleted");
  ok(store.delete_room(deleted.id));

  // Give the rooms messages: seq n in the i-th room, and read part of one.
  const auto first = *mine.begin();
  exec("UPDATE rooms SET last_seq = 10 WHERE id = '" + first + "'");
  ok(store.mark_read(first, me.id, 4));

  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    const auto p = ok(store.list_my_rooms(me.id, cursor, 4));
    for (const auto& r : p.items) {
      seen.push_back(r.room.id);
      EXPECT_EQ(r.me.user_id, me.id);
      EXPECT_EQ(r.me.room_id, r.room.id);
      EXPECT_EQ(r.unread, r.room.id == first ? 6u : 0u);
      if (r.room.id == first) {
        EXPECT_EQ(r.room.last_seq, 10u);
      }
    }
    cursor = p.next_cursor;
    ASSERT_LT(++pages, 20);
  } while (!cursor.empty());
  EXPECT_EQ(pages, 5);
  EXPECT_EQ(seen.size(), mine.size());
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), mine);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));

  EXPECT_TRUE(ok(store.list_my_rooms(unknown_uuid, "", 10)).items.empty());
  EXPECT_FAILURE(store.list_my_rooms(me.id, "zz", 10), invalid, "cursor");
  // Limits are clamped, not refused.
  EXPECT_EQ(ok(store.list_my_rooms(me.id, "", 0)).items.size(), 1u);
  EXPECT_EQ(ok(store.list_my_rooms(me.id, "", 100000)).items.size(), mine.size());
}

TEST_F(account_store_test, search_public_rooms_by_prefix) {
  const auto a = user("searcher");
  std::set<std::string> expected;
  // Equal names: the id breaks the tie, so pages neither repeat nor skip them.
  for (int i = 0; i < 7; ++i) expected.insert(group(a.id, "Team", true).id);
  for (int i = 0; i < 6; ++i) expected.insert(group(a.id, numbered(i % 2 ? "team-" : "TEAM-", i), true).id);
  group(a.id, "téam", true);  // another prefix
  group(a.id, "Team private", false);
  const auto gone = group(a.id, "Team gone", true);
  ok(store.delete_room(gone.id));
  group(a.id, "Other", true);
  const auto pct = group(a.id, "te%m", true);
  const auto under = group(a.id, "te_m", true);

  std::vector<std::string> seen;
  std::vector<std::string> names;
  std::string cursor;
  int pages = 0;
  do {
    const auto p = ok(store.search_public_rooms("tEaM", cursor, 3));
    for (const auto& r : p.items) {
      seen.push_back(r.id);
      std::string lowered = r.name;
      std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      names.push_back(lowered);
      EXPECT_TRUE(r.is_public);
    }
    cursor = p.next_cursor;
    ASSERT_LT(++pages, 20);
  } while (!cursor.empty());
  EXPECT_EQ(seen.size(), expected.size());
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), expected);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));

  auto only = ok(store.search_public_rooms("te%", "", 50));
  ASSERT_EQ(only.items.size(), 1u);
  EXPECT_EQ(only.items[0].id, pct.id);
  only = ok(store.search_public_rooms("te_", "", 50));
  ASSERT_EQ(only.items.size(), 1u);
  EXPECT_EQ(only.items[0].id, under.id);
  only = ok(store.search_public_rooms("Té", "", 50));
  ASSERT_EQ(only.items.size(), 1u);
  EXPECT_EQ(only.items[0].name, "téam");
  EXPECT_TRUE(ok(store.search_public_rooms("' OR 1=1 --", "", 50)).items.empty());
  EXPECT_EQ(ok(store.search_public_rooms("", "", 200)).items.size(), expected.size() + 4);
  EXPECT_FAILURE(store.search_public_rooms("t", "abc", 5), invalid, "cursor");
}

// --- members
// -------------------------------------------------------------------------------------------------

TEST_F(account_store_test, add_get_remove_members) {
  const auto a = user("m_owner");
  const auto b = user("m_b");
  const auto room = group(a.id, "members");
  const auto m = ok(store.add_member(room.id, b.id, member_role::moderator));
  EXPECT_EQ(m.room_id, room.id);
  EXPECT_EQ(m.user_id, b.id);
  EXPECT_EQ(m.role, member_role::moderator);
  EXPECT_EQ(m.granted, 0u);
  EXPECT_EQ(m.revoked, 0u);
  EXPECT_FALSE(m.muted || m.archived || m.pinned);
  EXPECT_EQ(m.last_read_seq, 0u);
  EXPECT_GT(m.joined_at_ms, 0);

  EXPECT_FAILURE(store.add_member(room.id, b.id, member_role::member), conflict, "member");
  EXPECT_FAILURE(store.add_member(room.id, unknown_uuid, member_role::member), not_found, "user");
  EXPECT_FAILURE(store.add_member("no-such-room", b.id, member_role::member), not_found, "room");
  EXPECT_EQ(ok(store.get_member(room.id, b.id)).role, member_role::moderator);
  EXPECT_FAILURE(store.get_member(room.id, unknown_uuid), not_found, "member");
  EXPECT_FAILURE(store.get_member(room.id, "x"), not_found, "member");
  EXPECT_FAILURE(store.get_member("no-such-room", b.id), not_found, "room");

  ok(store.remove_member(room.id, b.id));
  EXPECT_FAILURE(store.get_member(room.id, b.id), not_found, "member");
  EXPECT_FAILURE(store.remove_member(room.id, b.id), not_found, "member");
  ok(store.add_member(room.id, b.id, member_role::member));  // may rejoin
}

TEST_F(account_store_test, member_changes_apply_only_to_memberships_as_they_were_read) {
  const auto a = user("race_owner");
  const auto b = user("race_b");
  const auto c = user("race_c");
  const auto d = user("race_d");
  const auto room =
      group(a.id, "race", false,
            {{b.id, member_role::member}, {c.id, member_role::member}, {d.id, member_role::moderator}});
  const auto seen_a = ok(store.get_member(room.id, a.id));
  const auto seen_b = ok(store.get_member(room.id, b.id));
  const auto seen_c = ok(store.get_member(room.id, c.id));
  const auto seen_d = ok(store.get_member(room.id, d.id));
  auto owners = [&] {
    std::set<std::string> out;
    for (const auto& m : ok(store.room_access(room.id)).members)
      if (m.role == member_role::owner) out.insert(m.user_id);
    return out;
  };

  // The owner hands the room to b and, in a request that raced with it, to c: both were allowed when read.
  const storage::member_change to_owner{member_role::owner, std::nullopt};
  auto first = ok(store.change_member(room.id, a.id, b.id, to_owner, std::vector{seen_b, seen_a}));
  EXPECT_EQ(first.first.role, member_role::owner);
  ASSERT_TRUE(first.second);
  EXPECT_EQ(first.second->role, member_role::admin);
  EXPECT_FAILURE(store.change_member(room.id, a.id, c.id, to_owner, std::vector{seen_c, seen_a}), conflict,
                 "member_changed");
  EXPECT_EQ(owners(), std::set<std::string>{b.id});

  // An admin's removal of a moderator who became the owner meanwhile.
  auto to_d = ok(store.change_member(room.id, b.id, d.id, to_owner));
  EXPECT_EQ(to_d.first.role, member_role::owner);
  EXPECT_FAILURE(store.remove_member(room.id, d.id, std::vector{seen_d, ok(store.get_member(room.id, a.id))}),
                 conflict, "member_changed");
  EXPECT_EQ(owners(), std::set<std::string>{d.id});

  // A role and overrides with undefined bits: refused whole, the role is not changed either.
  EXPECT_FAILURE(
      store.change_member(room.id, d.id, c.id, {member_role::moderator, std::make_pair(0u, 1u << 31)}),
      invalid, "permissions");
  EXPECT_EQ(ok(store.get_member(room.id, c.id)).role, member_role::member);
  // And as read: a change on a member that left in between.
  ok(store.remove_member(room.id, c.id));
  EXPECT_FAILURE(
      store.change_member(room.id, d.id, c.id, {member_role::moderator, std::nullopt}, std::vector{seen_c}),
      conflict, "member_changed");
}

TEST_F(account_store_test, roles_permissions_and_settings) {
  const auto a = user("p_owner");
  const auto b = user("p_b");
  const auto room = group(a.id, "perms", false, {{b.id, member_role::member}});

  auto set_role = [&](const std::string& user, member_role role) {
    return store.change_member(room.id, a.id, user, {role, std::nullopt});
  };
  auto set_permissions = [&](const std::string& user, storage::permission_mask granted,
                             storage::permission_mask revoked) {
    return store.change_member(room.id, a.id, user, {std::nullopt, std::make_pair(granted, revoked)});
  };
  EXPECT_EQ(ok(set_role(b.id, member_role::admin)).first.role, member_role::admin);
  EXPECT_FAILURE(set_role(unknown_uuid, member_role::admin), not_found, "member");

  const auto granted = storage::mask_of(permission::edit_room) | storage::mask_of(permission::delete_room);
  const auto revoked = storage::mask_of(permission::create_messages);
  auto m = ok(set_permissions(b.id, granted, revoked)).first;
  EXPECT_EQ(m.granted, granted);
  EXPECT_EQ(m.revoked, revoked);
  m = ok(store.get_member(room.id, b.id));
  EXPECT_EQ(m.granted, granted);
  EXPECT_EQ(m.revoked, revoked);
  EXPECT_EQ(m.role, member_role::admin);
  m = ok(set_permissions(b.id, storage::all_permissions, 0)).first;
  EXPECT_EQ(m.granted, storage::all_permissions);
  EXPECT_EQ(m.revoked, 0u);
  EXPECT_FAILURE(set_permissions(b.id, storage::all_permissions + 1, 0), invalid, "permissions");
  EXPECT_FAILURE(set_permissions(b.id, 0, 1u << 31), invalid, "permissions");

  storage::member_settings_patch s;
  s.muted = true;
  m = ok(store.set_settings(room.id, b.id, s));
  EXPECT_TRUE(m.muted);
  EXPECT_FALSE(m.archived);
  EXPECT_FALSE(m.pinned);
  storage::member_settings_patch s2;
  s2.pinned = true;
  s2.archived = true;
  m = ok(store.set_settings(room.id, b.id, s2));
  EXPECT_TRUE(m.muted && m.archived && m.pinned);
  storage::member_settings_patch s3;
  s3.muted = false;
  m = ok(store.set_settings(room.id, b.id, s3));
  EXPECT_FALSE(m.muted);
  EXPECT_TRUE(m.archived && m.pinned);
  EXPECT_FAILURE(store.set_settings(room.id, unknown_uuid, s3), not_found, "member");

  // room_access carries all of it.
  const auto access = ok(store.room_access(room.id));
  EXPECT_EQ(access.kind, room_kind::group);
  EXPECT_FALSE(access.is_public);
  EXPECT_FALSE(access.deleted);
  ASSERT_EQ(access.members.size(), 2u);
  const auto& mb = access.members[0].user_id == b.id ? access.members[0] : access.members[1];
  EXPECT_EQ(mb.role, member_role::admin);
  EXPECT_EQ(mb.granted, storage::all_permissions);
  EXPECT_TRUE(mb.pinned);
  EXPECT_LT(access.members[0].user_id, access.members[1].user_id);
}

TEST_F(account_store_test, mark_read_is_monotonic_and_capped) {
  const auto a = user("reader");
  const auto room = group(a.id, "reading");
  EXPECT_EQ(ok(store.mark_read(room.id, a.id, 5)), 0u);  // the room has no messages yet
  exec("UPDATE rooms SET last_seq = 20 WHERE id = '" + room.id + "'");
  EXPECT_EQ(ok(store.mark_read(room.id, a.id, 5)), 5u);
  EXPECT_EQ(ok(store.mark_read(room.id, a.id, 3)), 5u);
  EXPECT_EQ(ok(store.mark_read(room.id, a.id, 12)), 12u);
  EXPECT_EQ(ok(store.mark_read(room.id, a.id, 0)), 12u);
  EXPECT_EQ(ok(store.mark_read(room.id, a.id, ~std::uint64_t{0})), 20u);
  EXPECT_EQ(ok(store.get_member(room.id, a.id)).last_read_seq, 20u);
  EXPECT_EQ(ok(store.list_my_rooms(a.id, "", 10)).items.at(0).unread, 0u);
  exec("UPDATE rooms SET last_seq = 27 WHERE id = '" + room.id + "'");
  EXPECT_EQ(ok(store.list_my_rooms(a.id, "", 10)).items.at(0).unread, 7u);
  EXPECT_FAILURE(store.mark_read(room.id, unknown_uuid, 1), not_found, "member");
  EXPECT_FAILURE(store.mark_read("no-such-room", a.id, 1), not_found, "member");
}

TEST_F(account_store_test, list_members_walks_all_pages) {
  const auto a = user("lm_owner");
  const auto room = group(a.id, "big");
  std::set<std::string> expected{a.id};
  for (int i = 0; i < 12; ++i) {
    const auto u = user(numbered("lm_", i));
    ok(store.add_member(room.id, u.id, member_role::member));
    expected.insert(u.id);
  }
  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    const auto p = ok(store.list_members(room.id, cursor, 5));
    for (const auto& m : p.items) seen.push_back(m.user_id);
    cursor = p.next_cursor;
    ASSERT_LT(++pages, 20);
  } while (!cursor.empty());
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen.size(), expected.size());
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), expected);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_FAILURE(store.list_members(room.id, "41", 5), invalid, "cursor");  // hex, but not a user id
  EXPECT_FAILURE(store.list_members("no-such-room", "", 5), not_found, "room");
}

// --- failures
// ------------------------------------------------------------------------------------------------

TEST_F(account_store_test, unreachable_database_is_unavailable_not_an_exception) {
  storage::account_store down{"postgresql://postgres@127.0.0.1:1/chorus?connect_timeout=2"};
  EXPECT_FALSE(down.connected());
  EXPECT_EQ(failure(down.get_user(unknown_uuid)).what, store_failure::unavailable);
  EXPECT_EQ(failure(down.create_user({"abc", "a@b.c", "h", ""})).what, store_failure::unavailable);
  EXPECT_FALSE(down.last_error().empty());
  EXPECT_TRUE(down.ensure_connected().has_value());
}

TEST_F(account_store_test, reconnects_after_the_connection_is_killed) {
  const auto a = user("reconnect");
  ASSERT_TRUE(store.connected());
  {
    pqxx::connection admin{test_database::instance().url()};
    pqxx::nontransaction tx{admin};
    tx.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()");
  }
  // The first call may find the connection broken; the next one reconnects.
  auto r = store.get_user(a.id);
  if (auto* f = std::get_if<store_failure>(&r)) {
    EXPECT_EQ(f->what, store_failure::unavailable);
  }
  EXPECT_EQ(ok(store.get_user(a.id)).id, a.id);
}

TEST(account_store_enums, text_forms_round_trip) {
  for (auto k : {room_kind::direct, room_kind::group, room_kind::channel}) {
    EXPECT_EQ(storage::parse_room_kind(storage::to_string(k)), k);
  }
  for (auto r : {member_role::owner, member_role::admin, member_role::moderator, member_role::member}) {
    EXPECT_EQ(storage::parse_member_role(storage::to_string(r)), r);
  }
  for (auto s : {storage::user_status::online, storage::user_status::away, storage::user_status::busy,
                 storage::user_status::invisible}) {
    EXPECT_EQ(storage::parse_user_status(storage::to_string(s)), s);
  }
  EXPECT_FALSE(storage::parse_room_kind("Direct"));
  EXPECT_EQ(storage::mask_of(permission::add_users), 1u);
  EXPECT_EQ(storage::mask_of(permission::delete_room), 1u << 8);
  EXPECT_EQ(storage::all_permissions, 0x1ffu);
  EXPECT_EQ(storage::describe(store_failure{store_failure::conflict, "email", {}}), "conflict: email");
}

}  // namespace
