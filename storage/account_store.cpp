// PostgreSQL access for accounts, refresh tokens, rooms and membership: prepared statements, one
// transaction per change, constraint violations turned into store_failure values.
#include "storage/account_store.hpp"
#include "storage/pg_conninfo.hpp"

#include <pqxx/pqxx>

#include <algorithm>
#include <cctype>
#include <limits>
#include <map>
#include <set>

namespace chorus::storage {
namespace {

// Milliseconds since the epoch, so neither side parses a timestamp text.
#define CHORUS_MS(col) "floor(extract(epoch FROM " col ") * 1000)::bigint"

// Every query returning a user, room or member selects these, in this order (see read_user and friends).
#define CHORUS_USER_COLUMNS                                                                       \
  "u.id::text, u.username, u.email, u.display_name, u.about, u.status, u.avatar_url, " CHORUS_MS( \
      "u.last_seen") ", " CHORUS_MS("u.created_at")

#define CHORUS_ROOM_COLUMNS                                                                              \
  "r.id, r.kind, r.name, r.description, r.topic, r.is_public, r.category, coalesce(r.created_by::text, " \
  "''), " CHORUS_MS("r.created_at") ", r.last_seq"
constexpr int room_columns = 10;

#define CHORUS_MEMBER_COLUMNS                                                                 \
  "m.room_id, m.user_id::text, m.role, m.granted, m.revoked, m.muted, m.archived, m.pinned, " \
  "m.last_read_seq, " CHORUS_MS("m.joined_at")

#define CHORUS_TO_TIMESTAMP(param) "to_timestamp(" param "::double precision / 1000)"

// Prepared on every new connection. Every value is a bound parameter; NULL means "leave as it is" in the
// patch statements. Ids that are UUIDs in the schema arrive as text and are cast here; the C++ side has
// already checked their shape, so a cast never fails on caller input.
const std::pair<const char*, const char*> statements[] = {
    // --- users
    {"acc_create_user",
     "INSERT INTO users AS u (username, email, password_hash, display_name) VALUES ($1, $2, $3, $4) "
     "RETURNING " CHORUS_USER_COLUMNS},
    {"acc_credentials_by_username",
     "SELECT id::text, password_hash, deleted_at IS NOT NULL FROM users WHERE lower(username) = lower($1)"},
    {"acc_credentials_by_email",
     "SELECT id::text, password_hash, deleted_at IS NOT NULL FROM users WHERE lower(email) = lower($1)"},
    {"acc_get_user",
     "SELECT " CHORUS_USER_COLUMNS " FROM users u WHERE u.id = $1::uuid AND u.deleted_at IS NULL"},
    {"acc_get_user_by_username",
     "SELECT " CHORUS_USER_COLUMNS
     " FROM users u WHERE lower(u.username) = lower($1) AND u.deleted_at IS NULL"},
    {"acc_update_profile",
     "UPDATE users u SET display_name = coalesce($2, u.display_name), about = coalesce($3, u.about), "
     "status = coalesce($4, u.status), avatar_url = coalesce($5, u.avatar_url) "
     "WHERE u.id = $1::uuid AND u.deleted_at IS NULL RETURNING " CHORUS_USER_COLUMNS},
    // A byte-order range scan on users_username_key (text_pattern_ops). Lower-cased usernames only hold
    // [a-z0-9_.-], all below '{', so every name with the prefix sorts below prefix || '{'.
    {"acc_search_users", "SELECT " CHORUS_USER_COLUMNS
                         " FROM users u WHERE u.deleted_at IS NULL AND lower(u.username) ~>=~ lower($1) "
                         "AND lower(u.username) ~<~ (lower($1) || '{') AND lower(u.username) ~>~ $2 "
                         "ORDER BY lower(u.username) USING ~<~ LIMIT $3"},
    {"acc_touch_last_seen", "UPDATE users SET last_seen = now() WHERE id = $1::uuid AND deleted_at IS NULL"},
    {"acc_delete_user", "UPDATE users SET deleted_at = now() WHERE id = $1::uuid AND deleted_at IS NULL"},
    {"acc_live_users", "SELECT count(*) FROM users WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL"},

    // --- refresh tokens
    {"acc_store_refresh",
     "INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at) "
     "SELECT $1, u.id, coalesce(nullif($3, ''), gen_random_uuid()::text), " CHORUS_TO_TIMESTAMP(
         "$4") " FROM users u WHERE u.id = $2::uuid AND u.deleted_at IS NULL RETURNING family"},
    // The row lock makes two presentations of one token take turns: the second sees used_at and reports
    // reuse, which is what a thief racing the owner should cause.
    {"acc_lock_refresh",
     "SELECT t.user_id::text, t.family, t.used_at IS NOT NULL, t.revoked_at IS NOT NULL OR u.deleted_at IS "
     "NOT NULL, t.expires_at <= now() FROM refresh_tokens t JOIN users u ON u.id = t.user_id "
     "WHERE t.token_hash = $1 FOR UPDATE OF t"},
    {"acc_mark_refresh_used", "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1"},
    {"acc_insert_refresh",
     "INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at) VALUES ($1, $2::uuid, "
     "$3, " CHORUS_TO_TIMESTAMP("$4") ")"},
    {"acc_revoke_refresh",
     "UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE token_hash = $1"},
    {"acc_revoke_family",
     "UPDATE refresh_tokens SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL"},
    {"acc_revoke_user_tokens",
     "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1::uuid AND revoked_at IS NULL"},

    // --- rooms
    // ON CONFLICT covers only the direct pair: a concurrent creator of the same pair waits for the other
    // transaction and then finds its room instead of failing with an error.
    {"acc_insert_room",
     "INSERT INTO rooms AS r (kind, name, description, topic, is_public, category, created_by, direct_key) "
     "VALUES ($1, $2, $3, $4, $5, $6, $7::uuid, $8) ON CONFLICT (direct_key) DO NOTHING "
     "RETURNING " CHORUS_ROOM_COLUMNS},
    {"acc_room_by_direct_key",
     "SELECT " CHORUS_ROOM_COLUMNS " FROM rooms r WHERE r.direct_key = $1 AND r.deleted_at IS NULL"},
    {"acc_insert_members",
     "INSERT INTO room_members (room_id, user_id, role) SELECT $1, x.u, x.r "
     "FROM unnest($2::uuid[], $3::text[]) AS x (u, r)"},
    {"acc_get_room", "SELECT " CHORUS_ROOM_COLUMNS " FROM rooms r WHERE r.id = $1 AND r.deleted_at IS NULL"},
    {"acc_update_room",
     "UPDATE rooms r SET name = coalesce($2, r.name), description = coalesce($3, r.description), "
     "topic = coalesce($4, r.topic), is_public = coalesce($5::boolean, r.is_public), "
     "category = coalesce($6, r.category) WHERE r.id = $1 AND r.deleted_at IS NULL "
     "RETURNING " CHORUS_ROOM_COLUMNS},
    {"acc_delete_room",
     "UPDATE rooms SET deleted_at = now(), direct_key = NULL WHERE id = $1 AND deleted_at IS NULL"},
    {"acc_list_my_rooms",
     "SELECT " CHORUS_ROOM_COLUMNS ", " CHORUS_MEMBER_COLUMNS ", greatest(r.last_seq - m.last_read_seq, 0) "
     "FROM room_members m JOIN rooms r ON r.id = m.room_id "
     "WHERE m.user_id = $1::uuid AND r.deleted_at IS NULL AND m.room_id > $2 ORDER BY m.room_id LIMIT $3"},
    // A byte-order range scan on rooms_public_name_idx. The upper bound is prefix || U+10FFFF: a name that
    // continues the prefix with U+10FFFF itself (a noncharacter) is not found, which is acceptable.
    // The redundant `~>=~ $2` lets the scan start at the cursor instead of filtering up to it.
    {"acc_search_public_rooms",
     "SELECT " CHORUS_ROOM_COLUMNS ", lower(r.name)"
     " FROM rooms r WHERE r.is_public AND r.deleted_at IS NULL AND lower(r.name) ~>=~ lower($1) "
     "AND lower(r.name) ~<~ (lower($1) || chr(1114111)) "
     "AND lower(r.name) ~>=~ $2 AND (lower(r.name) ~>~ $2 OR (lower(r.name) = $2 AND r.id > $3)) "
     "ORDER BY lower(r.name) USING ~<~, r.id LIMIT $4"},

    // --- members
    {"acc_room_state", "SELECT kind, deleted_at IS NOT NULL FROM rooms WHERE id = $1"},
    {"acc_list_members",
     "SELECT " CHORUS_MEMBER_COLUMNS " FROM room_members m WHERE m.room_id = $1 "
     "AND (nullif($2, '') IS NULL OR m.user_id > nullif($2, '')::uuid) ORDER BY m.user_id LIMIT $3"},
    {"acc_all_members",
     // A deleted account is no member: a room that loads its rules after the deletion lets it in nowhere.
     "SELECT " CHORUS_MEMBER_COLUMNS " FROM room_members m JOIN users u ON u.id = m.user_id "
     "WHERE m.room_id = $1 AND u.deleted_at IS NULL ORDER BY m.user_id"},
    {"acc_get_member",
     "SELECT " CHORUS_MEMBER_COLUMNS " FROM room_members m WHERE m.room_id = $1 AND m.user_id = $2::uuid"},
    // A user who comes back gets back what was revoked from it before it left (room_restrictions).
    {"acc_add_member",
     "INSERT INTO room_members AS m (room_id, user_id, role, revoked) SELECT $1, u.id, $3, "
     "coalesce((SELECT r.revoked FROM room_restrictions r WHERE r.room_id = $1 AND r.user_id = u.id), 0) "
     "FROM users u WHERE u.id = $2::uuid AND u.deleted_at IS NULL RETURNING " CHORUS_MEMBER_COLUMNS},
    {"acc_forget_restriction", "DELETE FROM room_restrictions WHERE room_id = $1 AND user_id = $2::uuid"},
    {"acc_remove_member",
     "WITH gone AS (DELETE FROM room_members WHERE room_id = $1 AND user_id = $2::uuid RETURNING revoked), "
     "kept AS (INSERT INTO room_restrictions (room_id, user_id, revoked) SELECT $1, $2::uuid, revoked "
     "FROM gone WHERE revoked <> 0 ON CONFLICT (room_id, user_id) DO UPDATE SET revoked = excluded.revoked) "
     "SELECT count(*) FROM gone"},
    {"acc_lock_member",
     "SELECT " CHORUS_MEMBER_COLUMNS " FROM room_members m WHERE m.room_id = $1 AND m.user_id = $2::uuid "
     "FOR UPDATE"},
    {"acc_set_role",
     "UPDATE room_members m SET role = $3 WHERE m.room_id = $1 AND m.user_id = $2::uuid "
     "RETURNING " CHORUS_MEMBER_COLUMNS},
    {"acc_set_permissions",
     "UPDATE room_members m SET granted = $3, revoked = $4 WHERE m.room_id = $1 AND m.user_id = $2::uuid "
     "RETURNING " CHORUS_MEMBER_COLUMNS},
    {"acc_set_settings",
     "UPDATE room_members m SET muted = coalesce($3::boolean, m.muted), "
     "archived = coalesce($4::boolean, m.archived), pinned = coalesce($5::boolean, m.pinned) "
     "WHERE m.room_id = $1 AND m.user_id = $2::uuid RETURNING " CHORUS_MEMBER_COLUMNS},
    // Capped at the room's last_seq so unread counts never go negative; greatest() keeps it monotonic.
    {"acc_mark_read",
     "UPDATE room_members m SET last_read_seq = greatest(m.last_read_seq, least($3::bigint, r.last_seq)) "
     "FROM rooms r WHERE r.id = m.room_id AND m.room_id = $1 AND m.user_id = $2::uuid "
     "RETURNING m.last_read_seq"},
    {"acc_room_access", "SELECT kind, is_public, deleted_at IS NOT NULL, last_seq FROM rooms WHERE id = $1"},
};

#undef CHORUS_MS
#undef CHORUS_USER_COLUMNS
#undef CHORUS_ROOM_COLUMNS
#undef CHORUS_MEMBER_COLUMNS
#undef CHORUS_TO_TIMESTAMP

// The field a violated constraint stands for, as store_failure::detail reports it.
const std::map<std::string, std::string, std::less<>> constraint_details = {
    {"users_username_key", "username"},
    {"users_email_key", "email"},
    {"users_username_check", "username"},
    {"users_email_check", "email"},
    {"users_display_name_check", "display_name"},
    {"users_about_check", "about"},
    {"users_status_check", "status"},
    {"users_avatar_url_check", "avatar_url"},
    {"refresh_tokens_pkey", "refresh_token"},
    {"refresh_tokens_user_fkey", "user"},
    {"rooms_name_check", "name"},
    {"rooms_description_check", "description"},
    {"rooms_topic_check", "topic"},
    {"rooms_category_check", "category"},
    {"rooms_is_public_check", "is_public"},
    {"rooms_direct_pair_key", "direct_pair"},
    {"rooms_created_by_fkey", "user"},
    {"room_members_pkey", "member"},
    {"room_members_room_fkey", "room"},
    {"room_members_user_fkey", "user"},
    {"room_members_role_check", "role"},
};

// libpqxx 6.4 does not expose the constraint name; PostgreSQL's message quotes it: … constraint "name" ….
std::string constraint_detail(const std::string& message) {
  const auto at = message.find("constraint \"");
  if (at == std::string::npos) return "constraint";
  const auto begin = at + 12;
  const auto end = message.find('"', begin);
  if (end == std::string::npos) return "constraint";
  const auto name = message.substr(begin, end - begin);
  const auto it = constraint_details.find(name);
  return it == constraint_details.end() ? name : it->second;
}

store_failure fail(store_failure::kind k, std::string detail = {}) {
  return store_failure{k, std::move(detail), {}};
}

constexpr std::uint64_t max_bigint = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

long long clamp_to_bigint(std::uint64_t v) {
  return static_cast<long long>(std::min(v, max_bigint));
}

long long page_limit(std::size_t limit) {
  return static_cast<long long>(std::clamp<std::size_t>(limit, 1, max_page_limit));
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// The canonical text form PostgreSQL prints (8-4-4-4-12 hex digits, either case).
bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !is_hex(s[i])) return false;
  }
  return true;
}

std::string lower_ascii(std::string_view s) {
  std::string out{s};
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// libpq passes text parameters as C strings: an embedded NUL would silently cut the value.
bool has_nul(std::string_view s) {
  return s.find('\0') != std::string_view::npos;
}

/// Whether `s` could name a room: room ids are UUIDs, or in dev_mode names of [a-z0-9_-]. Anything else
/// (bytes that are not UTF-8, say, which PostgreSQL would refuse as a value) names no room.
bool possible_room_id(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
  });
}

// Parameters that may be NULL: libpqxx 6.4 sends a null const char* as SQL NULL.
const char* nullable(const std::optional<std::string>& s) {
  return s ? s->c_str() : nullptr;
}
const char* nullable(const std::optional<bool>& b) {
  return b ? (*b ? "t" : "f") : nullptr;
}

// Cursors: hex of each key part, '.'-separated. Opaque to callers, trivially validated here.
std::string hex(std::string_view s) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::optional<std::string> unhex(std::string_view s) {
  if (s.size() % 2 != 0) return std::nullopt;
  auto value = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  std::string out;
  out.reserve(s.size() / 2);
  for (std::size_t i = 0; i < s.size(); i += 2) {
    if (!is_hex(s[i]) || !is_hex(s[i + 1])) return std::nullopt;
    out += static_cast<char>(value(s[i]) * 16 + value(s[i + 1]));
  }
  return out;
}

std::string make_cursor(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (auto part : parts) {
    if (!out.empty()) out += '.';
    out += hex(part);
  }
  return out;
}

// Splits a cursor into exactly `n` parts; nullopt if it is malformed. An empty cursor is n empty parts.
std::optional<std::vector<std::string>> parse_cursor(std::string_view cursor, std::size_t n) {
  std::vector<std::string> parts;
  if (cursor.empty()) return std::vector<std::string>(n);
  // The empty first part is written as "" too, so "a.b" always has its dot.
  std::size_t begin = 0;
  while (true) {
    const auto dot = cursor.find('.', begin);
    auto part = unhex(cursor.substr(begin, dot == std::string_view::npos ? dot : dot - begin));
    if (!part || has_nul(*part)) return std::nullopt;
    parts.push_back(std::move(*part));
    if (dot == std::string_view::npos) break;
    begin = dot + 1;
  }
  if (parts.size() != n) return std::nullopt;
  // A cursor is never made from an empty key (it would be the start again); refusing it keeps walks finite.
  if (std::all_of(parts.begin(), parts.end(), [](const auto& p) { return p.empty(); })) return std::nullopt;
  return parts;
}

template <class E>
E parse_or(std::optional<E> e, E fallback) {
  return e ? *e : fallback;
}

user_row read_user(const pqxx::row& r, int at = 0) {
  user_row u;
  u.id = r[at + 0].as<std::string>();
  u.username = r[at + 1].as<std::string>();
  u.email = r[at + 2].as<std::string>();
  u.display_name = r[at + 3].as<std::string>();
  u.about = r[at + 4].as<std::string>();
  u.status = parse_or(parse_user_status(r[at + 5].as<std::string>()), user_status::online);
  u.avatar_url = r[at + 6].as<std::string>();
  if (!r[at + 7].is_null()) u.last_seen_ms = r[at + 7].as<long long>();
  u.created_at_ms = r[at + 8].as<long long>();
  return u;
}

room_row read_room(const pqxx::row& r, int at = 0) {
  room_row room;
  room.id = r[at + 0].as<std::string>();
  room.kind = parse_or(parse_room_kind(r[at + 1].as<std::string>()), room_kind::group);
  room.name = r[at + 2].as<std::string>();
  room.description = r[at + 3].as<std::string>();
  room.topic = r[at + 4].as<std::string>();
  room.is_public = r[at + 5].as<bool>();
  room.category = r[at + 6].as<std::string>();
  room.created_by = r[at + 7].as<std::string>();
  room.created_at_ms = r[at + 8].as<long long>();
  room.last_seq = static_cast<std::uint64_t>(r[at + 9].as<long long>());
  return room;
}

member_row read_member(const pqxx::row& r, int at = 0) {
  member_row m;
  m.room_id = r[at + 0].as<std::string>();
  m.user_id = r[at + 1].as<std::string>();
  m.role = parse_or(parse_member_role(r[at + 2].as<std::string>()), member_role::member);
  m.granted = static_cast<permission_mask>(r[at + 3].as<long long>());
  m.revoked = static_cast<permission_mask>(r[at + 4].as<long long>());
  m.muted = r[at + 5].as<bool>();
  m.archived = r[at + 6].as<bool>();
  m.pinned = r[at + 7].as<bool>();
  m.last_read_seq = static_cast<std::uint64_t>(r[at + 8].as<long long>());
  m.joined_at_ms = r[at + 9].as<long long>();
  return m;
}

// A PostgreSQL array literal passed as one text parameter: only '"' and '\' need escaping inside quotes.
class array_literal {
 public:
  void add(std::string_view value) {
    text_ += text_.size() == 1 ? "\"" : ",\"";
    for (char c : value) {
      if (c == '"' || c == '\\') text_ += '\\';
      text_ += c;
    }
    text_ += '"';
  }
  std::string str() const { return text_ + '}'; }

 private:
  std::string text_ = "{";
};

// The first text field (by name) that holds a NUL byte, if any.
std::optional<std::string> nul_field(std::initializer_list<std::pair<const char*, std::string_view>> fields) {
  for (const auto& [name, value] : fields) {
    if (has_nul(value)) return std::string{name};
  }
  return std::nullopt;
}

}  // namespace

// -----------------------------------------------------------------------------------------------------------

std::string describe(const store_failure& f) {
  std::string out;
  switch (f.what) {
    case store_failure::unavailable:
      out = "database unavailable";
      break;
    case store_failure::in_doubt:
      out = "database connection lost during commit; the change may or may not be stored";
      break;
    case store_failure::not_found:
      out = "not found";
      break;
    case store_failure::conflict:
      out = "conflict";
      break;
    case store_failure::invalid:
      out = "invalid";
      break;
  }
  if (!f.detail.empty()) out += ": " + f.detail;
  if (!f.existing_id.empty()) out += " (existing " + f.existing_id + ")";
  return out;
}

std::string_view to_string(room_kind k) {
  switch (k) {
    case room_kind::direct:
      return "direct";
    case room_kind::group:
      return "group";
    case room_kind::channel:
      return "channel";
  }
  return "group";
}

std::string_view to_string(member_role r) {
  switch (r) {
    case member_role::owner:
      return "owner";
    case member_role::admin:
      return "admin";
    case member_role::moderator:
      return "moderator";
    case member_role::member:
      return "member";
  }
  return "member";
}

std::string_view to_string(user_status s) {
  switch (s) {
    case user_status::online:
      return "online";
    case user_status::away:
      return "away";
    case user_status::busy:
      return "busy";
    case user_status::invisible:
      return "invisible";
  }
  return "online";
}

std::optional<room_kind> parse_room_kind(std::string_view s) {
  for (auto k : {room_kind::direct, room_kind::group, room_kind::channel}) {
    if (s == to_string(k)) return k;
  }
  return std::nullopt;
}

std::optional<member_role> parse_member_role(std::string_view s) {
  for (auto r : {member_role::owner, member_role::admin, member_role::moderator, member_role::member}) {
    if (s == to_string(r)) return r;
  }
  return std::nullopt;
}

std::optional<user_status> parse_user_status(std::string_view s) {
  for (auto st : {user_status::online, user_status::away, user_status::busy, user_status::invisible}) {
    if (s == to_string(st)) return st;
  }
  return std::nullopt;
}

// -----------------------------------------------------------------------------------------------------------

struct account_store::impl {
  std::string url;
  std::unique_ptr<pqxx::connection> conn;
  std::string last_error;

  std::optional<store_failure> connect() {
    if (conn) return std::nullopt;
    try {
      auto fresh = std::make_unique<pqxx::connection>(with_network_timeouts(url));
      for (const auto& [name, sql] : statements) fresh->prepare(name, sql);
      conn = std::move(fresh);
      return std::nullopt;
    } catch (const std::exception& e) {
      last_error = e.what();
      return fail(store_failure::unavailable);
    }
  }

  // Runs one operation and turns every exception into a store_failure: constraint violations by the
  // constraint's field, a broken connection by dropping it so the next call reconnects.
  template <class T, class F>
  outcome<T> guard(F&& operation) {
    if (auto e = connect()) return *e;
    try {
      return operation(*conn);
    } catch (const pqxx::in_doubt_error& e) {
      last_error = e.what();
      conn.reset();
      return fail(store_failure::in_doubt);
    } catch (const pqxx::broken_connection& e) {
      last_error = e.what();
      conn.reset();
      return fail(store_failure::unavailable);
    } catch (const pqxx::unique_violation& e) {
      last_error = e.what();
      return fail(store_failure::conflict, constraint_detail(last_error));
    } catch (const pqxx::foreign_key_violation& e) {
      last_error = e.what();
      return fail(store_failure::not_found, constraint_detail(last_error));
    } catch (const pqxx::check_violation& e) {
      last_error = e.what();
      return fail(store_failure::invalid, constraint_detail(last_error));
    } catch (const pqxx::data_exception& e) {
      // Bad UTF-8, a value out of range: the input, not the database.
      last_error = e.what();
      return fail(store_failure::invalid, "value");
    } catch (const std::exception& e) {
      last_error = e.what();
    } catch (...) {
      last_error = "unknown exception";
    }
    if (conn && !conn->is_open()) conn.reset();
    return fail(store_failure::unavailable);
  }
};

account_store::account_store(std::string url) : impl_{std::make_unique<impl>()} {
  impl_->url = std::move(url);
}

account_store::~account_store() = default;

bool account_store::connected() const {
  return impl_->conn && impl_->conn->is_open();
}

std::optional<store_failure> account_store::ensure_connected() {
  return impl_->connect();
}

const std::string& account_store::last_error() const {
  return impl_->last_error;
}

// --- users
// --------------------------------------------------------------------------------------------------

outcome<user_row> account_store::create_user(const new_user& u) {
  if (auto f = nul_field({{"username", u.username},
                          {"email", u.email},
                          {"password_hash", u.password_hash},
                          {"display_name", u.display_name}})) {
    return fail(store_failure::invalid, *f);
  }
  if (u.password_hash.empty()) return fail(store_failure::invalid, "password_hash");
  return impl_->guard<user_row>([&](pqxx::connection& conn) -> outcome<user_row> {
    pqxx::work tx{conn};
    auto res = tx.exec_prepared("acc_create_user", u.username, u.email, u.password_hash, u.display_name);
    auto row = read_user(res.at(0));
    tx.commit();
    return row;
  });
}

outcome<credentials> account_store::credentials_by_login(std::string_view username_or_email) {
  if (username_or_email.empty() || has_nul(username_or_email)) return fail(store_failure::not_found, "user");
  const bool email = username_or_email.find('@') != std::string_view::npos;
  return impl_->guard<credentials>([&](pqxx::connection& conn) -> outcome<credentials> {
    pqxx::nontransaction tx{conn};
    const auto res = tx.exec_prepared(email ? "acc_credentials_by_email" : "acc_credentials_by_username",
                                      std::string{username_or_email});
    if (res.empty()) return fail(store_failure::not_found, "user");
    return credentials{res[0][0].as<std::string>(), res[0][1].as<std::string>(), res[0][2].as<bool>()};
  });
}

outcome<user_row> account_store::get_user(std::string_view id) {
  if (!is_uuid(id)) return fail(store_failure::not_found, "user");
  return impl_->guard<user_row>([&](pqxx::connection& conn) -> outcome<user_row> {
    pqxx::nontransaction tx{conn};
    const auto res = tx.exec_prepared("acc_get_user", std::string{id});
    if (res.empty()) return fail(store_failure::not_found, "user");
    return read_user(res[0]);
  });
}

outcome<user_row> account_store::get_user_by_username(std::string_view username) {
  if (username.empty() || has_nul(username)) return fail(store_failure::not_found, "user");
  return impl_->guard<user_row>([&](pqxx::connection& conn) -> outcome<user_row> {
    pqxx::nontransaction tx{conn};
    const auto res = tx.exec_prepared("acc_get_user_by_username", std::string{username});
    if (res.empty()) return fail(store_failure::not_found, "user");
    return read_user(res[0]);
  });
}

outcome<user_row> account_store::update_profile(std::string_view id, const profile_patch& patch) {
  if (!is_uuid(id)) return fail(store_failure::not_found, "user");
  if (auto f = nul_field({{"display_name", patch.display_name.value_or("")},
                          {"about", patch.about.value_or("")},
                          {"avatar_url", patch.avatar_url.value_or("")}})) {
    return fail(store_failure::invalid, *f);
  }
  std::optional<std::string> status;
  if (patch.status) status = std::string{to_string(*patch.status)};
  return impl_->guard<user_row>([&](pqxx::connection& conn) -> outcome<user_row> {
    pqxx::work tx{conn};
    const auto res = tx.exec_prepared("acc_update_profile", std::string{id}, nullable(patch.display_name),
                                      nullable(patch.about), nullable(status), nullable(patch.avatar_url));
    if (res.empty()) return fail(store_failure::not_found, "user");
    auto row = read_user(res[0]);
    tx.commit();
    return row;
  });
}

outcome<page<user_row>> account_store::search_users(std::string_view prefix, std::string_view cursor,
                                                    std::size_t limit) {
  if (has_nul(prefix)) return fail(store_failure::invalid, "prefix");
  const auto after = parse_cursor(cursor, 1);
  if (!after) return fail(store_failure::invalid, "cursor");
  const auto n = page_limit(limit);
  return impl_->guard<page<user_row>>([&](pqxx::connection& conn) -> outcome<page<user_row>> {
    pqxx::nontransaction tx{conn};
    const auto res = tx.exec_prepared("acc_search_users", std::string{prefix}, (*after)[0], n + 1);
    page<user_row> out;
    for (const auto& r : res) {
      if (static_cast<long long>(out.items.size()) == n) {
        out.next_cursor = make_cursor({lower_ascii(out.items.back().username)});
        break;
      }
      out.items.push_back(read_user(r));
    }
    return out;
  });
}

outcome<done> account_store::touch_last_seen(std::string_view id) {
  if (!is_uuid(id)) return fail(store_failure::not_found, "user");
  return impl_->guard<done>([&](pqxx::connection& conn) -> outcome<done> {
    pqxx::work tx{conn};
    if (tx.exec_prepared("acc_touch_last_seen", std::string{id}).affected_rows() == 0) {
      return fail(store_failure::not_found, "user");
    }
    tx.commit();
    return done{};
  });
}

outcome<done> account_store::delete_user(std::string_view id) {
  if (!is_uuid(id)) return fail(store_failure::not_found, "user");
  return impl_->guard<done>([&](pqxx::connection& conn) -> outcome<done> {
    pqxx::work tx{conn};
    const std::string user{id};
    if (tx.exec_prepared("acc_delete_user", user).affected_rows() == 0) {
      return fail(store_failure::not_found, "user");
    }
    tx.exec_prepared("acc_revoke_user_tokens", user);
    tx.commit();
    return done{};
  });
}

// --- refresh tokens ----------------------------------------------------------------------------------------

outcome<std::string> account_store::store_refresh(std::string_view hash, std::string_view user,
                                                  std::string_view family, std::int64_t expires_at_ms) {
  if (hash.empty() || has_nul(hash)) return fail(store_failure::invalid, "refresh_token");
  if (has_nul(family)) return fail(store_failure::invalid, "family");
  if (!is_uuid(user)) return fail(store_failure::not_found, "user");
  return impl_->guard<std::string>([&](pqxx::connection& conn) -> outcome<std::string> {
    pqxx::work tx{conn};
    const auto res = tx.exec_prepared("acc_store_refresh", std::string{hash}, std::string{user},
                                      std::string{family}, static_cast<long long>(expires_at_ms));
    if (res.empty()) return fail(store_failure::not_found, "user");
    auto out = res[0][0].as<std::string>();
    tx.commit();
    return out;
  });
}

namespace {

// The verdict on one presented token, inside the caller's transaction; marks it used or revokes the family.
refresh_use present_refresh(pqxx::work& tx, const std::string& hash) {
  refresh_use out;
  const auto res = tx.exec_prepared("acc_lock_refresh", hash);
  if (res.empty()) return out;  // unknown
  out.user_id = res[0][0].as<std::string>();
  out.family = res[0][1].as<std::string>();
  const bool used = res[0][2].as<bool>();
  const bool revoked = res[0][3].as<bool>();
  const bool expired = res[0][4].as<bool>();
  if (revoked) {
    out.status = refresh_status::revoked;
  } else if (used) {
    tx.exec_prepared("acc_revoke_family", out.family);
    out.status = refresh_status::reused;
  } else if (expired) {
    out.status = refresh_status::expired;
  } else {
    tx.exec_prepared("acc_mark_refresh_used", hash);
    out.status = refresh_status::ok;
  }
  return out;
}

}  // namespace

outcome<refresh_use> account_store::use_refresh(std::string_view hash) {
  if (hash.empty() || has_nul(hash)) return refresh_use{};
  return impl_->guard<refresh_use>([&](pqxx::connection& conn) -> outcome<refresh_use> {
    pqxx::work tx{conn};
    auto out = present_refresh(tx, std::string{hash});
    tx.commit();
    return out;
  });
}

outcome<refresh_use> account_store::rotate_refresh(std::string_view hash, std::string_view new_hash,
                                                   std::int64_t new_expires_at_ms) {
  if (hash.empty() || has_nul(hash)) return refresh_use{};
  if (new_hash.empty() || has_nul(new_hash) || new_hash == hash) {
    return fail(store_failure::invalid, "refresh_token");
  }
  return impl_->guard<refresh_use>([&](pqxx::connection& conn) -> outcome<refresh_use> {
    pqxx::work tx{conn};
    auto out = present_refresh(tx, std::string{hash});
    if (out.status == refresh_status::ok) {
      tx.exec_prepared("acc_insert_refresh", std::string{new_hash}, out.user_id, out.family,
                       static_cast<long long>(new_expires_at_ms));
    }
    tx.commit();
    return out;
  });
}

outcome<done> account_store::revoke_refresh(std::string_view hash) {
  if (hash.empty() || has_nul(hash)) return fail(store_failure::not_found, "refresh_token");
  return impl_->guard<done>([&](pqxx::connection& conn) -> outcome<done> {
    pqxx::work tx{conn};
    if (tx.exec_prepared("acc_revoke_refresh", std::string{hash}).affected_rows() == 0) {
      return fail(store_failure::not_found, "refresh_token");
    }
    tx.commit();
    return done{};
  });
}

outcome<std::size_t> account_store::revoke_family(std::string_view family) {
  if (family.empty() || has_nul(family)) return std::size_t{0};
  return impl_->guard<std::size_t>([&](pqxx::connection& conn) -> outcome<std::size_t> {
    pqxx::work tx{conn};
    const auto n = tx.exec_prepared("acc_revoke_family", std::string{family}).affected_rows();
    tx.commit();
    return static_cast<std::size_t>(n);
  });
}

outcome<std::size_t> account_store::revoke_user_tokens(std::string_view user) {
  if (!is_uuid(user)) return fail(store_failure::not_found, "user");
  return impl_->guard<std::size_t>([&](pqxx::connection& conn) -> outcome<std::size_t> {
    pqxx::work tx{conn};
    const auto n = tx.exec_prepared("acc_revoke_user_tokens", std::string{user}).affected_rows();
    tx.commit();
    return static_cast<std::size_t>(n);
  });
}

// --- rooms
// ---------------------------------------------------------------------------------------------------

outcome<room_row> account_store::create_room(const new_room& r) {
  if (auto f = nul_field(
          {{"name", r.name}, {"description", r.description}, {"topic", r.topic}, {"category", r.category}})) {
    return fail(store_failure::invalid, *f);
  }
  if (r.kind == room_kind::direct && r.is_public) return fail(store_failure::invalid, "is_public");
  // Members in order, the creator first as owner; a later entry for the same user sets its role, except
  // the creator's: a room always has its owner.
  std::vector<std::pair<std::string, member_role>> members;
  auto put = [&](std::string_view id, member_role role) {
    const auto user = lower_ascii(id);
    auto it = std::find_if(members.begin(), members.end(), [&](const auto& m) { return m.first == user; });
    if (it == members.end()) {
      members.emplace_back(user, role);
    } else if (it != members.begin()) {
      it->second = role;
    }
  };
  if (!is_uuid(r.creator)) return fail(store_failure::not_found, "user");
  put(r.creator, member_role::owner);
  for (const auto& [id, role] : r.members) {
    if (!is_uuid(id)) return fail(store_failure::not_found, "user");
    put(id, role);
  }
  std::string direct_key;
  if (r.kind == room_kind::direct) {
    if (members.size() != 2) return fail(store_failure::invalid, "direct_members");
    const auto [lo, hi] = std::minmax(members[0].first, members[1].first);
    direct_key = lo + ":" + hi;
  }
  array_literal ids, roles;
  for (const auto& [id, role] : members) {
    ids.add(id);
    roles.add(to_string(role));
  }
  return impl_->guard<room_row>([&](pqxx::connection& conn) -> outcome<room_row> {
    pqxx::work tx{conn};
    const auto live = tx.exec_prepared("acc_live_users", ids.str()).at(0).at(0).as<long long>();
    if (live != static_cast<long long>(members.size())) return fail(store_failure::not_found, "user");
    const auto res = tx.exec_prepared("acc_insert_room", std::string{to_string(r.kind)}, r.name,
                                      r.description, r.topic, r.is_public, r.category, members[0].first,
                                      direct_key.empty() ? nullptr : direct_key.c_str());
    if (res.empty()) {
      // The pair already has a live direct room (possibly committed a moment ago by a concurrent call).
      store_failure f = fail(store_failure::conflict, "direct_pair");
      const auto existing = tx.exec_prepared("acc_room_by_direct_key", direct_key);
      if (!existing.empty()) f.existing_id = existing[0][0].as<std::string>();
      return f;
    }
    auto room = read_room(res[0]);
    tx.exec_prepared("acc_insert_members", room.id, ids.str(), roles.str());
    tx.commit();
    return room;
  });
}

outcome<room_row> account_store::get_room(std::string_view id) {
  if (!possible_room_id(id)) return fail(store_failure::not_found, "room");
  return impl_->guard<room_row>([&](pqxx::connection& conn) -> outcome<room_row> {
    pqxx::nontransaction tx{conn};
    const auto res = tx.exec_prepared("acc_get_room", std::string{id});
    if (res.empty()) return fail(store_failure::not_found, "room");
    return read_room(res[0]);
  });
}

outcome<room_row> account_store::find_direct_room(std::string_view user_a, std::string_view user_b) {
  if (!is_uuid(user_a) || !is_uuid(user_b)) return fail(store_failure::not_found, "room");
  const auto a = lower_ascii(user_a);
  const auto b = lower_ascii(user_b);
  const auto& [lo, hi] = std::minmax(a, b);
  return impl_->guard<room_row>([&](pqxx::connection& conn) -> outcome<room_row> {
    pqxx::nontransaction tx{conn};
    const auto res = tx.exec_prepared("acc_room_by_direct_key", lo + ":" + hi);
    if (res.empty()) return fail(store_failure::not_found, "room");
    return read_room(res[0]);
  });
}

outcome<room_row> account_store::update_room(std::string_view id, const room_patch& patch) {
  if (!possible_room_id(id)) return fail(store_failure::not_found, "room");
  if (auto f = nul_field({{"name", patch.name.value_or("")},
                          {"description", patch.description.value_or("")},
                          {"topic", patch.topic.value_or("")},
                          {"category", patch.category.value_or("")}})) {
    return fail(store_failure::invalid, *f);
  }
  return impl_->guard<room_row>([&](pqxx::connection& conn) -> outcome<room_row> {
    pqxx::work tx{conn};
    const auto res = tx.exec_prepared("acc_update_room", std::string{id}, nullable(patch.name),
                                      nullable(patch.description), nullable(patch.topic),
                                      nullable(patch.is_public), nullable(patch.category));
    if (res.empty()) return fail(store_failure::not_found, "room");
    auto room = read_room(res[0]);
    tx.commit();
    return room;
  });
}

outcome<done> account_store::delete_room(std::string_view id) {
  if (!possible_room_id(id)) return fail(store_failure::not_found, "room");
  return impl_->guard<done>([&](pqxx::connection& conn) -> outcome<done> {
    pqxx::work tx{conn};
    if (tx.exec_prepared("acc_delete_room", std::string{id}).affected_rows() == 0) {
      return fail(store_failure::not_found, "room");
    }
    tx.commit();
    return done{};
  });
}

outcome<page<my_room_row>> account_store::list_my_rooms(std::string_view user, std::string_view cursor,
                                                        std::size_t limit) {
  const auto after = parse_cursor(cursor, 1);
  if (!after) return fail(store_failure::invalid, "cursor");
  if (!is_uuid(user)) return page<my_room_row>{};
  const auto n = page_limit(limit);
  return impl_->guard<page<my_room_row>>([&](pqxx::connection& conn) -> outcome<page<my_room_row>> {
    pqxx::nontransaction tx{conn};
    const auto res = tx.exec_prepared("acc_list_my_rooms", std::string{user}, (*after)[0], n + 1);
    page<my_room_row> out;
    for (const auto& r : res) {
      if (static_cast<long long>(out.items.size()) == n) {
        out.next_cursor = make_cursor({out.items.back().room.id});
        break;
      }
      my_room_row row;
      row.room = read_room(r);
      row.me = read_member(r, room_columns);
      row.unread = static_cast<std::uint64_t>(r[room_columns + 10].as<long long>());
      out.items.push_back(std::move(row));
    }
    return out;
  });
}

outcome<page<room_row>> account_store::search_public_rooms(std::string_view prefix, std::string_view cursor,
                                                           std::size_t limit) {
  if (has_nul(prefix)) return fail(store_failure::invalid, "prefix");
  const auto after = parse_cursor(cursor, 2);
  if (!after) return fail(store_failure::invalid, "cursor");
  const auto n = page_limit(limit);
  return impl_->guard<page<room_row>>([&](pqxx::connection& conn) -> outcome<page<room_row>> {
    pqxx::nontransaction tx{conn};
    // The cursor keeps the database's own lower(name), so the key compares exactly as the query orders.
    const auto res =
        tx.exec_prepared("acc_search_public_rooms", std::string{prefix}, (*after)[0], (*after)[1], n + 1);
    page<room_row> out;
    std::string last_key;
    for (const auto& r : res) {
      if (static_cast<long long>(out.items.size()) == n) {
        out.next_cursor = make_cursor({last_key, out.items.back().id});
        break;
      }
      out.items.push_back(read_room(r));
      last_key = r[room_columns].as<std::string>();
    }
    return out;
  });
}

// --- members
// -------------------------------------------------------------------------------------------------

namespace {

// nullopt if the room exists and is live; otherwise not_found "room". Also reports the kind.
std::optional<store_failure> check_room(pqxx::transaction_base& tx, const std::string& room,
                                        room_kind* kind = nullptr) {
  const auto res = tx.exec_prepared("acc_room_state", room);
  if (res.empty() || res[0][1].as<bool>()) return fail(store_failure::not_found, "room");
  if (kind != nullptr) *kind = parse_or(parse_room_kind(res[0][0].as<std::string>()), room_kind::group);
  return std::nullopt;
}

}  // namespace

outcome<page<member_row>> account_store::list_members(std::string_view room, std::string_view cursor,
                                                      std::size_t limit) {
  if (!possible_room_id(room)) return fail(store_failure::not_found, "room");
  const auto after = parse_cursor(cursor, 1);
  if (!after || (!(*after)[0].empty() && !is_uuid((*after)[0])))
    return fail(store_failure::invalid, "cursor");
  const auto n = page_limit(limit);
  return impl_->guard<page<member_row>>([&](pqxx::connection& conn) -> outcome<page<member_row>> {
    pqxx::work tx{conn};
    const std::string id{room};
    if (auto f = check_room(tx, id)) return *f;
    const auto res = tx.exec_prepared("acc_list_members", id, (*after)[0], n + 1);
    page<member_row> out;
    for (const auto& r : res) {
      if (static_cast<long long>(out.items.size()) == n) {
        out.next_cursor = make_cursor({out.items.back().user_id});
        break;
      }
      out.items.push_back(read_member(r));
    }
    tx.commit();
    return out;
  });
}

outcome<member_row> account_store::get_member(std::string_view room, std::string_view user) {
  if (!possible_room_id(room)) return fail(store_failure::not_found, "room");
  return impl_->guard<member_row>([&](pqxx::connection& conn) -> outcome<member_row> {
    pqxx::work tx{conn};
    const std::string id{room};
    if (auto f = check_room(tx, id)) return *f;
    if (!is_uuid(user)) return fail(store_failure::not_found, "member");
    const auto res = tx.exec_prepared("acc_get_member", id, std::string{user});
    if (res.empty()) return fail(store_failure::not_found, "member");
    auto m = read_member(res[0]);
    tx.commit();
    return m;
  });
}

outcome<member_row> account_store::add_member(std::string_view room, std::string_view user,
                                              member_role role) {
  if (!possible_room_id(room)) return fail(store_failure::not_found, "room");
  if (!is_uuid(user)) return fail(store_failure::not_found, "user");
  return impl_->guard<member_row>([&](pqxx::connection& conn) -> outcome<member_row> {
    pqxx::work tx{conn};
    const std::string id{room};
    room_kind kind = room_kind::group;
    if (auto f = check_room(tx, id, &kind)) return *f;
    if (kind == room_kind::direct) return fail(store_failure::invalid, "direct_members");
    const auto res = tx.exec_prepared("acc_add_member", id, std::string{user}, std::string{to_string(role)});
    if (res.empty()) return fail(store_failure::not_found, "user");
    auto m = read_member(res[0]);
    tx.exec_prepared("acc_forget_restriction", id, std::string{user});  // the membership carries it now
    tx.commit();
    return m;
  });
}

namespace {

// Runs an UPDATE … RETURNING member columns; not_found "member" when no row matched.
template <class... Args>
outcome<member_row> update_member(pqxx::work& tx, const char* statement, Args&&... args) {
  const auto res = tx.exec_prepared(statement, std::forward<Args>(args)...);
  if (res.empty()) return fail(store_failure::not_found, "member");
  auto m = read_member(res[0]);
  tx.commit();
  return m;
}

/// Locks the memberships in `seen` (in user order, so that two changes never wait on each other) and
/// checks that each is as it was read: conflict "member_changed" if one changed or went.
std::optional<store_failure> still_as_seen(pqxx::work& tx, const std::string& room,
                                           std::span<const member_row> seen) {
  std::vector<const member_row*> rows;
  for (const auto& m : seen) rows.push_back(&m);
  std::sort(rows.begin(), rows.end(), [](auto* a, auto* b) { return a->user_id < b->user_id; });
  for (const auto* m : rows) {
    if (!is_uuid(m->user_id)) return fail(store_failure::conflict, "member_changed");
    const auto res = tx.exec_prepared("acc_lock_member", room, m->user_id);
    if (res.empty()) return fail(store_failure::conflict, "member_changed");
    const auto now = read_member(res[0]);
    if (now.role != m->role || now.granted != m->granted || now.revoked != m->revoked)
      return fail(store_failure::conflict, "member_changed");
  }
  return std::nullopt;
}

}  // namespace

outcome<done> account_store::remove_member(std::string_view room, std::string_view user,
                                           std::span<const member_row> seen) {
  if (!possible_room_id(room) || !is_uuid(user)) return fail(store_failure::not_found, "member");
  return impl_->guard<done>([&](pqxx::connection& conn) -> outcome<done> {
    pqxx::work tx{conn};
    const std::string id{room};
    if (auto f = still_as_seen(tx, id, seen)) return *f;
    if (tx.exec_prepared("acc_remove_member", id, std::string{user}).at(0).at(0).as<long long>() == 0) {
      return fail(store_failure::not_found, "member");
    }
    tx.commit();
    return done{};
  });
}

outcome<std::pair<member_row, std::optional<member_row>>> account_store::change_member(
    std::string_view room, std::string_view by, std::string_view user, const member_change& change,
    std::span<const member_row> seen) {
  using result = std::pair<member_row, std::optional<member_row>>;
  if (change.overrides && ((change.overrides->first & ~all_permissions) != 0 ||
                           (change.overrides->second & ~all_permissions) != 0))
    return fail(store_failure::invalid, "permissions");
  if (!possible_room_id(room) || !is_uuid(user) || !is_uuid(by))
    return fail(store_failure::not_found, "member");
  return impl_->guard<result>([&](pqxx::connection& conn) -> outcome<result> {
    pqxx::work tx{conn};
    const std::string id{room};
    if (auto f = still_as_seen(tx, id, seen)) return *f;
    const auto member = [](const pqxx::result& res) -> outcome<member_row> {
      if (res.empty()) return fail(store_failure::not_found, "member");
      return read_member(res[0]);
    };
    // Rolled back by leaving without commit, whatever was written before.
    outcome<member_row> target = member(tx.exec_prepared("acc_get_member", id, std::string{user}));
    std::optional<member_row> stepped_down;
    if (change.role) {
      target = member(
          tx.exec_prepared("acc_set_role", id, std::string{user}, std::string{to_string(*change.role)}));
      if (*change.role == member_role::owner && std::holds_alternative<member_row>(target)) {
        // A room has one owner: the one handing it over steps down, in the same transaction.
        auto previous = member(tx.exec_prepared("acc_set_role", id, std::string{by}, "admin"));
        if (auto* f = std::get_if<store_failure>(&previous)) return *f;
        stepped_down = std::get<member_row>(std::move(previous));
      }
    }
    if (change.overrides && std::holds_alternative<member_row>(target))
      target = member(tx.exec_prepared("acc_set_permissions", id, std::string{user},
                                       static_cast<long long>(change.overrides->first),
                                       static_cast<long long>(change.overrides->second)));
    if (auto* f = std::get_if<store_failure>(&target)) return *f;
    result out{std::get<member_row>(std::move(target)), std::move(stepped_down)};
    tx.commit();
    return out;
  });
}

outcome<member_row> account_store::set_settings(std::string_view room, std::string_view user,
                                                const member_settings_patch& patch) {
  if (!possible_room_id(room) || !is_uuid(user)) return fail(store_failure::not_found, "member");
  return impl_->guard<member_row>([&](pqxx::connection& conn) {
    pqxx::work tx{conn};
    return update_member(tx, "acc_set_settings", std::string{room}, std::string{user}, nullable(patch.muted),
                         nullable(patch.archived), nullable(patch.pinned));
  });
}

outcome<std::uint64_t> account_store::mark_read(std::string_view room, std::string_view user,
                                                std::uint64_t seq) {
  if (!possible_room_id(room) || !is_uuid(user)) return fail(store_failure::not_found, "member");
  return impl_->guard<std::uint64_t>([&](pqxx::connection& conn) -> outcome<std::uint64_t> {
    pqxx::work tx{conn};
    const auto res =
        tx.exec_prepared("acc_mark_read", std::string{room}, std::string{user}, clamp_to_bigint(seq));
    if (res.empty()) return fail(store_failure::not_found, "member");
    const auto value = static_cast<std::uint64_t>(res[0][0].as<long long>());
    tx.commit();
    return value;
  });
}

outcome<room_access_row> account_store::room_access(std::string_view room) {
  if (!possible_room_id(room)) return fail(store_failure::not_found, "room");
  return impl_->guard<room_access_row>([&](pqxx::connection& conn) -> outcome<room_access_row> {
    // One snapshot for the room and its members, so the actor never sees half of a concurrent change.
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx{conn};
    const std::string id{room};
    const auto res = tx.exec_prepared("acc_room_access", id);
    if (res.empty()) return fail(store_failure::not_found, "room");
    room_access_row out;
    out.room_id = id;
    out.kind = parse_or(parse_room_kind(res[0][0].as<std::string>()), room_kind::group);
    out.is_public = res[0][1].as<bool>();
    out.deleted = res[0][2].as<bool>();
    out.last_seq = static_cast<std::uint64_t>(res[0][3].as<long long>());
    for (const auto& r : tx.exec_prepared("acc_all_members", id)) out.members.push_back(read_member(r));
    tx.commit();
    return out;
  });
}

}  // namespace chorus::storage
