// PostgreSQL access for accounts, refresh tokens, rooms and membership (issue 5). No CAF, no JSON here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace chorus::storage {

// ---------------------------------------------------------------------------------------------------------
// Errors and results

/// Why an account_store call did not return a value. `detail` says which rule or key, so the REST layer can
/// pick a status code and a message without parsing SQL errors.
struct store_failure {
  enum kind {
    unavailable,  ///< no connection, or the server failed the statement; nothing was written
    in_doubt,     ///< the connection broke during COMMIT: the change may or may not be stored
    not_found,    ///< detail: "user", "room", "member", "refresh_token" (also for soft-deleted rows)
    conflict,     ///< a unique key is taken; detail: "username", "email", "direct_pair", "member",
                  ///< "refresh_token"
    invalid,      ///< the input breaks a schema rule; detail names the field ("username", "email", "name",
                  ///< "cursor", "direct_members", "permissions", "value" for bad UTF-8, …)
  };
  kind what = unavailable;
  std::string detail;
  /// For conflict "direct_pair": the id of the existing direct room of that pair. Empty otherwise.
  std::string existing_id;
};

/// A short text for a log line, e.g. "conflict: username".
std::string describe(const store_failure& f);

/// A value or the reason there is none. libpqxx exceptions never leave account_store.
template <class T>
using outcome = std::variant<T, store_failure>;

/// The value of calls that return nothing but success.
struct done {};

/// One page of a list. Pass `next_cursor` back to get the next page; it is empty on the last page.
/// Cursors are opaque: a malformed one yields store_failure{invalid, "cursor"}.
template <class T>
struct page {
  std::vector<T> items;
  std::string next_cursor;
};

/// Every list call clamps its limit to [1, max_page_limit].
inline constexpr std::size_t max_page_limit = 200;

// ---------------------------------------------------------------------------------------------------------
// Enumerations shared with the REST layer and the room actors. Their text forms are what the database holds.

/// Per-member permission overrides. The enum value is the bit index in granted/revoked masks; never reorder,
/// only append (the masks are stored).
enum class permission : unsigned {
  add_users = 0,
  remove_users = 1,
  create_messages = 2,
  delete_messages = 3,
  delete_own_messages = 4,
  edit_messages = 5,
  edit_own_messages = 6,
  edit_room = 7,
  delete_room = 8,
};
using permission_mask = std::uint32_t;
inline constexpr unsigned permission_count = 9;
/// The mask with only `p` set.
constexpr permission_mask mask_of(permission p) {
  return permission_mask{1} << static_cast<unsigned>(p);
}
/// Every defined permission bit; masks with other bits are refused (invalid "permissions").
inline constexpr permission_mask all_permissions = (permission_mask{1} << permission_count) - 1;

enum class room_kind { direct, group, channel };
enum class member_role { owner, admin, moderator, member };
enum class user_status { online, away, busy, invisible };

/// "direct", "group", "channel".
std::string_view to_string(room_kind k);
/// "owner", "admin", "moderator", "member".
std::string_view to_string(member_role r);
/// "online", "away", "busy", "invisible".
std::string_view to_string(user_status s);
/// The enum for its exact lower-case text form, or nullopt.
std::optional<room_kind> parse_room_kind(std::string_view s);
/// The enum for its exact lower-case text form, or nullopt.
std::optional<member_role> parse_member_role(std::string_view s);
/// The enum for its exact lower-case text form, or nullopt.
std::optional<user_status> parse_user_status(std::string_view s);

/// Size limits the schema enforces (characters, not bytes); longer input fails with invalid + the field.
/// Usernames are 3–32 of [A-Za-z0-9_.-], unique ignoring case; emails contain '@' and are unique ignoring
/// case.
namespace limits {
inline constexpr std::size_t username_min = 3;
inline constexpr std::size_t username_max = 32;
inline constexpr std::size_t email_max = 254;
inline constexpr std::size_t display_name_max = 100;
inline constexpr std::size_t about_max = 2000;
inline constexpr std::size_t avatar_url_max = 2048;
inline constexpr std::size_t room_name_max = 100;
inline constexpr std::size_t room_description_max = 4000;
inline constexpr std::size_t room_topic_max = 1000;
inline constexpr std::size_t room_category_max = 64;
}  // namespace limits

// ---------------------------------------------------------------------------------------------------------
// Rows. Ids are text: user ids are UUIDs PostgreSQL generates; room ids are UUID text for rooms made here
// and any text for rooms the message path created. Times are milliseconds since the Unix epoch.

/// A user as others may see it (everything but the password hash).
struct user_row {
  std::string id;
  std::string username;  ///< as registered (case kept); uniqueness ignores case
  std::string email;
  std::string display_name;
  std::string about;
  user_status status = user_status::online;
  std::string avatar_url;
  std::optional<std::int64_t> last_seen_ms;  ///< nullopt until touch_last_seen()
  std::int64_t created_at_ms = 0;
};

/// What create_user() needs. The password is hashed by the caller (e.g. libsodium crypto_pwhash_str).
struct new_user {
  std::string username;
  std::string email;
  std::string password_hash;
  std::string display_name;  ///< may be empty
};

/// What a login checks: found by username or email, deleted users included so the caller can refuse them.
struct credentials {
  std::string user_id;
  std::string password_hash;
  bool deleted = false;
};

/// Profile fields to change; nullopt leaves a field as it is, an empty string clears a text field.
struct profile_patch {
  std::optional<std::string> display_name;
  std::optional<std::string> about;
  std::optional<user_status> status;
  std::optional<std::string> avatar_url;
};

/// The verdict of use_refresh()/rotate_refresh().
enum class refresh_status {
  ok,       ///< valid: now marked used (and, for rotate_refresh, the replacement stored)
  reused,   ///< already used before: the whole family has just been revoked (likely theft)
  expired,  ///< past expires_at; nothing changed
  revoked,  ///< revoked (logout, family revocation, or the user was deleted); nothing changed
  unknown,  ///< no such token hash
};

/// The result of presenting a refresh token; user_id and family are set for every status but unknown.
struct refresh_use {
  refresh_status status = refresh_status::unknown;
  std::string user_id;
  std::string family;
};

/// A room row. Rooms made by the message path have kind group, empty name and no members.
struct room_row {
  std::string id;
  room_kind kind = room_kind::group;
  std::string name;
  std::string description;
  std::string topic;
  bool is_public = false;  ///< always false for direct rooms
  std::string category;
  std::string created_by;  ///< user id; empty for rooms the message path created
  std::int64_t created_at_ms = 0;
  std::uint64_t last_seq = 0;  ///< the highest message seq stored for the room
};

/// What create_room() needs.
struct new_room {
  room_kind kind = room_kind::group;
  std::string name;
  std::string description;
  std::string topic;
  bool is_public = false;  ///< must be false for direct rooms (invalid "is_public")
  std::string category;
  std::string creator;  ///< user id; joins as owner (whatever `members` says about it: a room has its owner)
  /// Further initial members (user id, role). A direct room has exactly two distinct users in total,
  /// counting the creator (invalid "direct_members" otherwise).
  std::vector<std::pair<std::string, member_role>> members;
};

/// Room fields to change; nullopt leaves a field as it is.
struct room_patch {
  std::optional<std::string> name;
  std::optional<std::string> description;
  std::optional<std::string> topic;
  std::optional<bool> is_public;  ///< true on a direct room is invalid "is_public"
  std::optional<std::string> category;
};

/// One membership: role, permission overrides, the member's own settings and read position.
struct member_row {
  std::string room_id;
  std::string user_id;
  member_role role = member_role::member;
  permission_mask granted = 0;  ///< permissions added on top of the role's
  permission_mask revoked = 0;  ///< permissions taken away from the role's (revoked wins over granted)
  bool muted = false;
  bool archived = false;
  bool pinned = false;
  std::uint64_t last_read_seq = 0;  ///< never above the room's last_seq, never moves backwards
  std::int64_t joined_at_ms = 0;
};

/// A change to one membership made by another member (or the member itself): a new role and new permission
/// overrides, each optional. A new role of owner is a transfer: the one making it steps down to admin.
struct member_change {
  std::optional<member_role> role;
  std::optional<std::pair<permission_mask, permission_mask>> overrides;  ///< granted, revoked
};

/// Per-member settings to change; nullopt leaves a setting as it is.
struct member_settings_patch {
  std::optional<bool> muted;
  std::optional<bool> archived;
  std::optional<bool> pinned;
};

/// A room in "my rooms": the room, my membership, and how many messages I have not read.
struct my_room_row {
  room_row room;
  member_row me;
  std::uint64_t unread = 0;  ///< room.last_seq - me.last_read_seq
};

/// Everything a room actor needs on activation to authorise requests.
struct room_access_row {
  std::string room_id;
  room_kind kind = room_kind::group;
  bool is_public = false;
  bool deleted = false;  ///< soft-deleted rooms are reported (not not_found) so the actor can refuse all
  std::uint64_t last_seq = 0;
  std::vector<member_row> members;  ///< every member, ordered by user id
};

// ---------------------------------------------------------------------------------------------------------

/// One PostgreSQL connection and the account/room statements Chorus runs on it. Not thread-safe: each owner
/// (one actor or one REST worker) has its own. Reconnects lazily: any call on a broken connection tries to
/// reconnect first. Every multi-statement change runs in one transaction. Malformed ids (not UUID text where
/// a UUID is stored) are reported as not_found, like ids that do not exist.
class account_store {
 public:
  explicit account_store(std::string url);
  ~account_store();
  account_store(const account_store&) = delete;
  account_store& operator=(const account_store&) = delete;

  /// True while a connection is open (it may still turn out broken on the next call).
  bool connected() const;
  /// Connects if not connected. Returns nullopt on success.
  std::optional<store_failure> ensure_connected();
  /// What libpqxx or the server said about the most recent failure, for a log line; empty before any.
  const std::string& last_error() const;

  // --- users -------------------------------------------------------------------------------------------

  /// Registers a user; conflict "username"/"email" if taken ignoring case; invalid on a bad field.
  outcome<user_row> create_user(const new_user& u);
  /// Looks up a login by username or (if it contains '@') email, ignoring case; not_found if neither.
  outcome<credentials> credentials_by_login(std::string_view username_or_email);
  /// The user with this id; not_found if unknown or deleted.
  outcome<user_row> get_user(std::string_view id);
  /// The user with this username (ignoring case); not_found if unknown or deleted.
  outcome<user_row> get_user_by_username(std::string_view username);
  /// Changes the given profile fields and returns the updated user; not_found if unknown or deleted.
  outcome<user_row> update_profile(std::string_view id, const profile_patch& patch);
  /// Live users whose username starts with `prefix` (ignoring case), ordered by lower-case username.
  outcome<page<user_row>> search_users(std::string_view prefix, std::string_view cursor, std::size_t limit);
  /// Sets last_seen to now; not_found if unknown or deleted.
  outcome<done> touch_last_seen(std::string_view id);
  /// Soft-deletes the user and revokes all its refresh tokens; memberships and messages stay.
  outcome<done> delete_user(std::string_view id);

  // --- refresh tokens (stored hashed: the caller hashes, e.g. SHA-256 hex) -------------------------------

  /// Stores a token hash for `user`; an empty `family` starts a new family. Returns the family id.
  /// conflict "refresh_token" if the hash is already stored; not_found "user" if the user is unknown/deleted.
  outcome<std::string> store_refresh(std::string_view hash, std::string_view user, std::string_view family,
                                     std::int64_t expires_at_ms);
  /// Presents a token atomically: valid → marked used; used before → whole family revoked (reused).
  outcome<refresh_use> use_refresh(std::string_view hash);
  /// use_refresh() and, if ok, stores `new_hash` in the same family, in one transaction (rotation).
  outcome<refresh_use> rotate_refresh(std::string_view hash, std::string_view new_hash,
                                      std::int64_t new_expires_at_ms);
  /// Revokes one token (logout); not_found "refresh_token" if unknown. Revoking twice is fine.
  outcome<done> revoke_refresh(std::string_view hash);
  /// Revokes every token of a family; returns how many were not revoked before.
  outcome<std::size_t> revoke_family(std::string_view family);
  /// Revokes every token of a user (logout everywhere); returns how many were not revoked before.
  outcome<std::size_t> revoke_user_tokens(std::string_view user);

  // --- rooms -------------------------------------------------------------------------------------------

  /// Creates a room and its initial members in one transaction; a second direct room for the same pair is
  /// conflict "direct_pair" with existing_id set; not_found "user" if a member is unknown or deleted.
  outcome<room_row> create_room(const new_room& r);
  /// The room with this id; not_found if unknown or deleted.
  outcome<room_row> get_room(std::string_view id);
  /// The live direct room of two users (either order); not_found if none.
  outcome<room_row> find_direct_room(std::string_view user_a, std::string_view user_b);
  /// Changes the given room fields and returns the updated room; not_found if unknown or deleted.
  outcome<room_row> update_room(std::string_view id, const room_patch& patch);
  /// Soft-deletes the room (members and messages stay; a direct pair may then open a new room).
  outcome<done> delete_room(std::string_view id);
  /// The live rooms `user` is a member of, ordered by room id, with my membership and unread count.
  outcome<page<my_room_row>> list_my_rooms(std::string_view user, std::string_view cursor, std::size_t limit);
  /// Live public rooms whose name starts with `prefix` (ignoring case), ordered by lower-case name, then id.
  outcome<page<room_row>> search_public_rooms(std::string_view prefix, std::string_view cursor,
                                              std::size_t limit);

  // --- members -----------------------------------------------------------------------------------------

  /// Members of a live room ordered by user id; not_found "room" if unknown or deleted.
  outcome<page<member_row>> list_members(std::string_view room, std::string_view cursor, std::size_t limit);
  /// One membership; not_found "member" if not a member, "room" if the room is unknown or deleted.
  outcome<member_row> get_member(std::string_view room, std::string_view user);
  /// Adds a member; conflict "member" if already one; invalid "direct_members" on a direct room. A user who
  /// was a member before gets back the permissions revoked from it then (they outlive the membership).
  outcome<member_row> add_member(std::string_view room, std::string_view user, member_role role);
  // Changes decided on memberships read before (whether the caller may make them) take `seen`: those rows
  // as read. The change is made only if each is still exactly so when it is written, in the same
  // transaction, with those rows locked; else conflict "member_changed" and nothing changes. So two
  // changes that race cannot both pass on rights one of them takes away (two owners, or a room with none).

  /// Removes a member; not_found "member" if not a member.
  outcome<done> remove_member(std::string_view room, std::string_view user,
                              std::span<const member_row> seen = {});
  /// Applies `change` to `user`'s membership, all of it in one transaction, and returns that membership,
  /// then (for a transfer of ownership) `by`'s. not_found "member" if either is not a member; invalid
  /// "permissions" if a mask has undefined bits.
  outcome<std::pair<member_row, std::optional<member_row>>> change_member(
      std::string_view room, std::string_view by, std::string_view user, const member_change& change,
      std::span<const member_row> seen = {});
  /// Changes the given member settings and returns the membership; not_found "member" if not a member.
  outcome<member_row> set_settings(std::string_view room, std::string_view user,
                                   const member_settings_patch& patch);
  /// Raises last_read_seq to `seq` (capped at the room's last_seq; never lowers it); returns the new value.
  outcome<std::uint64_t> mark_read(std::string_view room, std::string_view user, std::uint64_t seq);
  /// Kind, public and deleted flags, last seq and every member of a room (deleted too); not_found if unknown.
  outcome<room_access_row> room_access(std::string_view room);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace chorus::storage
