// Chorus wire protocol v1: all client requests are decoded and all server frames encoded here, nowhere else.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace chorus::protocol {

inline constexpr int version = 1;

/// Stable error codes. Their spelling on the wire comes from to_string(); docs/protocol.md lists each one.
enum class error_code {
  malformed_json,         ///< the frame is not valid JSON
  not_an_object,          ///< valid JSON, but not an object
  unsupported_frame,      ///< a binary frame; only text frames carry the protocol
  unknown_op,             ///< `op` names no operation
  bad_request,            ///< a field is missing or has the wrong type
  invalid_room,           ///< room id does not match [a-z0-9][a-z0-9_-]{0,63}
  text_too_long,          ///< message text over max_message_chars code points
  invalid_text,           ///< message text empty, or not valid Unicode (e.g. a lone surrogate escape)
  not_joined,             ///< send/typing/leave in a room this connection has not joined
  auth_required,          ///< any op but auth before authenticating
  already_authenticated,  ///< a second auth
  invalid_token,          ///< bad signature, malformed, wrong algorithm, or missing subject
  token_expired,          ///< the token's exp has passed
  rate_limited,           ///< too many operations; retry after retry_after_ms
  unavailable,            ///< the server cannot do it right now; safe to retry
  not_found,              ///< the named room, user or member does not exist, or is private to its members
  forbidden,              ///< the caller's role and permissions do not allow this action
  conflict,               ///< the name, pair or membership is already taken
  invalid_credentials,    ///< login: no such account, or a wrong password (deliberately not told apart)
  account_locked,         ///< login: too many failed attempts; retry after retry_after_ms
  payload_too_large,      ///< HTTP request body over max_body_bytes
  method_not_allowed,     ///< HTTP method the route does not serve
  internal,               ///< a bug; reported, never expected
};

std::string_view to_string(error_code code);

/// WebSocket close codes Chorus uses besides the RFC 6455 ones (1000, 1001, 1007, 1009).
namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;   ///< server shutting down
inline constexpr std::uint16_t bad_payload = 1007;  ///< text frame that is not UTF-8 (RFC 6455: must close)
inline constexpr std::uint16_t too_big = 1009;      ///< frame over max_frame_bytes
inline constexpr std::uint16_t service_restart =
    1012;                                             ///< the node was declared down and rejoined the cluster
inline constexpr std::uint16_t unauthorized = 4001;   ///< bad, expired or missing token
inline constexpr std::uint16_t slow_consumer = 4008;  ///< outgoing queue full of unread messages
inline constexpr std::uint16_t auth_timeout = 4002;   ///< no auth within auth_timeout_ms
}  // namespace close_code

// ---- requests (client → server) ----

struct auth_op {
  std::string token;
};
struct join_op {
  std::string room;
  /// Resume: the last seq the client saw in the room; the server replays every later message.
  std::optional<std::uint64_t> last_seq = std::nullopt;
};
struct leave_op {
  std::string room;
};
struct send_op {
  std::string room;
  std::string text;
  std::string client_msg_id;  ///< optional on the wire; empty when absent
};
struct typing_op {
  std::string room;
};
struct ping_op {};

/// Which way a history page goes from `from`.
enum class history_direction {
  older,  ///< seq < from (from absent: the newest messages), newest first
  newer,  ///< seq > from, oldest first
};

/// The page size when a history request gives no `limit` (clamped to decode_limits::max_history_limit).
inline constexpr std::uint32_t default_history_limit = 50;

/// `before` / no position → older; `after` → newer; `cursor` → whatever the cursor says.
struct history_op {
  std::string room;
  history_direction dir = history_direction::older;
  std::optional<std::uint64_t> from = std::nullopt;  ///< exclusive; absent only for older (= +infinity)
  std::uint32_t limit = default_history_limit;       ///< 1..max_history_limit
};

/// The page size of a members request that gives no `limit`, and the largest one it may ask for.
inline constexpr std::uint32_t default_members_limit = 100;
inline constexpr std::uint32_t max_members_limit = 1000;

/// A page of the users connected to a room, in user id order, after `after` ("" : from the first).
struct members_op {
  std::string room;
  std::string after;
  std::uint32_t limit = default_members_limit;  ///< 1..max_members_limit
};

using operation =
    std::variant<auth_op, join_op, leave_op, send_op, typing_op, ping_op, history_op, members_op>;

struct request {
  std::int64_t id = 0;  ///< the client's correlation id, echoed as `re`
  operation op;
};

/// Why a frame could not become a request. `id` is set when the frame carried a usable one,
/// so the error can go back as a reply instead of an `error` event.
struct decode_error {
  error_code code;
  std::string message;
  std::optional<std::int64_t> id;
};

/// Limits the decoder enforces on field values.
struct decode_limits {
  std::uint32_t max_message_chars = 4000;
  std::uint32_t max_client_msg_id_chars = 64;
  std::uint32_t max_history_limit = 100;  ///< largest `limit` a history request may ask for
};

/// Parses one text frame. Validates types, room ids, text length (in code points) and Unicode.
std::variant<request, decode_error> decode_request(std::string_view frame, const decode_limits& limits);

/// True when `room` matches [a-z0-9][a-z0-9_-]{0,63}.
bool valid_room_id(std::string_view room);

/// The history cursor that continues from `from` in direction `dir`: "o:120" (older than 120) or
/// "n:80" (newer than 80). Opaque to clients; decode_request turns it back into dir + from.
std::string make_cursor(history_direction dir, std::uint64_t from);

// ---- server frames (server → client) ----

struct limits_info {
  std::uint32_t max_frame_bytes;
  std::uint32_t max_message_chars;
  std::uint32_t ops_per_second;
  std::uint32_t ops_burst;
  std::uint32_t send_queue_limit;
  std::uint32_t history_limit;
};

struct hello_event {
  std::string node_id;
  std::uint32_t heartbeat_ms;
  limits_info limits;
};

struct chat_message {
  std::string id;  ///< server-assigned, unique
  std::string room;
  std::uint64_t seq;  ///< per-room, consecutive from 1
  std::string user;
  std::string text;
  std::int64_t ts_ms;  ///< server time, milliseconds since the epoch; RFC 3339 on the wire
  std::string client_msg_id;
};

struct member_info {
  std::string user;
  bool online;
};

enum class presence_status { online, offline };

std::string encode_hello(const hello_event& hello);

// Replies: {"re":ID,"ok":true,"d":{...}}.
std::string encode_auth_ok(std::int64_t re, std::string_view user);
/// What a join reply says of the room's members: `members` (all of them, or the first ones by user id in a
/// crowded room), how many users are connected, and whether the room sends per-user membership events.
struct member_summary {
  const std::vector<member_info>& members;
  std::uint64_t count = 0;
  bool events = true;
};

/// `replayed`: how many `message` events follow this reply as resume; `complete` is false when the gap was
/// larger than one resume replays (the client pages the rest with history).
std::string encode_join_ok(std::int64_t re, std::string_view room, std::uint64_t last_seq,
                           const member_summary& members, std::uint64_t replayed, bool complete);
std::string encode_leave_ok(std::int64_t re, std::string_view room);
std::string encode_send_ok(std::int64_t re, const chat_message& msg);
/// {"re":ID,"ok":true,"d":{"room":ROOM,"messages":[...],"next":CURSOR|null}}; `messages` in page order
/// (older: newest first; newer: oldest first). Each message's own `room` field is not written.
std::string encode_history_ok(std::int64_t re, std::string_view room,
                              const std::vector<chat_message>& messages,
                              std::optional<std::string> next_cursor);
/// {"re":ID,"ok":true,"d":{"room":ROOM,"member_count":N,"members":[...],"next":USER|null}}; `next` is the
/// `after` of the following page, null on the last.
std::string encode_members_ok(std::int64_t re, std::string_view room, std::uint64_t count,
                              const std::vector<member_info>& members, bool more);
std::string encode_empty_ok(std::int64_t re);  ///< typing
std::string encode_pong(std::int64_t re, std::int64_t server_ts_ms);

/// {"re":ID,"ok":false,"error":{"code":...,"message":...[,"retry_after_ms":N]}}
std::string encode_error_reply(std::int64_t re, error_code code, std::string_view message,
                               std::optional<std::uint32_t> retry_after_ms = std::nullopt);
/// {"ev":"error","error":{...}}: for errors that answer no request (no usable id, or unprompted).
std::string encode_error_event(error_code code, std::string_view message,
                               std::optional<std::uint32_t> retry_after_ms = std::nullopt);

// Events: {"ev":NAME,"room":ROOM,...,"d":{...}}.
std::string encode_message_event(const chat_message& msg);
std::string encode_member_joined(std::string_view room, std::string_view user);
std::string encode_member_left(std::string_view room, std::string_view user);
/// {"ev":"member_updated","room":ROOM,"d":{"user":USER,"role":ROLE}}: a role or permission change.
std::string encode_member_updated(std::string_view room, std::string_view user, std::string_view role);
/// {"ev":"room_updated","room":ROOM,"d":ROOM_JSON}; `room_json` is the room object, already encoded.
std::string encode_room_updated(std::string_view room, std::string_view room_json);
/// {"ev":"room_deleted","room":ROOM,"d":{}}: the room is gone; its members are no longer joined to it.
std::string encode_room_deleted(std::string_view room);
std::string encode_typing(std::string_view room, std::string_view user);
/// {"ev":"member_count","room":ROOM,"d":{"count":N}}: in a crowded room, instead of per-user events.
std::string encode_member_count(std::string_view room, std::uint64_t count);
/// {"ev":"members","room":ROOM,"d":{"members":[...]}}: a room no longer crowded, with everyone in it.
std::string encode_members_event(std::string_view room, const std::vector<member_info>& members);
std::string encode_presence(std::string_view user, presence_status status);

/// A node a client may connect to: where its WebSocket endpoint is.
struct node_address {
  std::string id;
  std::string host;
  std::uint16_t port = 0;
};
/// {"ev":"nodes","d":{"nodes":[{"id":…,"url":"ws://host:port/ws"},…]}}: the cluster's live nodes, sent after
/// auth_ok on a clustered node, so a client knows where to reconnect when its node goes away (close 1001).
std::string encode_nodes(const std::vector<node_address>& nodes);

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds: 2026-11-22T03:04:05.123Z.
std::string format_timestamp(std::int64_t ts_ms);

}  // namespace chorus::protocol
