// Chorus wire protocol v1: decoding client frames with Boost.JSON and encoding server frames by hand.
#include "actors/protocol.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <exception>
#include <system_error>
#include <type_traits>
#include <utility>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

namespace chorus::protocol {

std::string_view to_string(error_code code) {
  switch (code) {
    case error_code::malformed_json:
      return "malformed_json";
    case error_code::not_an_object:
      return "not_an_object";
    case error_code::unsupported_frame:
      return "unsupported_frame";
    case error_code::unknown_op:
      return "unknown_op";
    case error_code::bad_request:
      return "bad_request";
    case error_code::invalid_room:
      return "invalid_room";
    case error_code::text_too_long:
      return "text_too_long";
    case error_code::invalid_text:
      return "invalid_text";
    case error_code::not_joined:
      return "not_joined";
    case error_code::auth_required:
      return "auth_required";
    case error_code::already_authenticated:
      return "already_authenticated";
    case error_code::invalid_token:
      return "invalid_token";
    case error_code::token_expired:
      return "token_expired";
    case error_code::rate_limited:
      return "rate_limited";
    case error_code::unavailable:
      return "unavailable";
    case error_code::not_found:
      return "not_found";
    case error_code::forbidden:
      return "forbidden";
    case error_code::conflict:
      return "conflict";
    case error_code::invalid_credentials:
      return "invalid_credentials";
    case error_code::account_locked:
      return "account_locked";
    case error_code::payload_too_large:
      return "payload_too_large";
    case error_code::method_not_allowed:
      return "method_not_allowed";
    case error_code::internal:
      return "internal";
  }
  return "internal";
}

bool valid_room_id(std::string_view room) {
  if (room.empty() || room.size() > 64) return false;
  auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!lower_or_digit(room.front())) return false;
  for (char c : room.substr(1)) {
    if (!lower_or_digit(c) && c != '_' && c != '-') return false;
  }
  return true;
}

std::string make_cursor(history_direction dir, std::uint64_t from) {
  std::string out(dir == history_direction::older ? "o:" : "n:");
  std::array<char, 24> buf;
  const auto res = std::to_chars(buf.data(), buf.data() + buf.size(), from);
  out.append(buf.data(), res.ptr);
  return out;
}

namespace {

// ---- UTF-8 helpers ----

bool is_continuation(unsigned char c) {
  return (c & 0xC0) == 0x80;
}

/// Length of the well-formed UTF-8 sequence (RFC 3629: no overlongs, no surrogates, max U+10FFFF)
/// starting at s[i], or 0 when the bytes there are not one.
std::size_t valid_utf8_length(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const std::size_t left = s.size() - i;
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return left >= 2 && is_continuation(b(1)) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (left < 3 || !is_continuation(b(1)) || !is_continuation(b(2))) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;  // overlong
    if (c == 0xED && b(1) > 0x9F) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (left < 4 || !is_continuation(b(1)) || !is_continuation(b(2)) || !is_continuation(b(3))) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;  // overlong
    if (c == 0xF4 && b(1) > 0x8F) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

/// Code points in text Boost.JSON already validated, so every lead byte starts exactly one code point.
std::size_t count_code_points(std::string_view s) {
  std::size_t n = 0;
  for (char c : s) n += is_continuation(static_cast<unsigned char>(c)) ? 0 : 1;
  return n;
}

/// Decodes the code point at s[i] of valid UTF-8 and advances i past it.
char32_t next_code_point(std::string_view s, std::size_t& i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  if (i + len > s.size()) len = s.size() - i;
  char32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (std::size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += len;
  return cp;
}

/// Unicode White_Space plus the invisible zero-width space and BOM, which people use to post "nothing".
bool is_blank(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200B) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000 || cp == 0xFEFF;
}

bool all_blank(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    if (!is_blank(next_code_point(s, i))) return false;
  }
  return true;
}

/// The first `max` bytes of valid UTF-8, cut back to a code point boundary.
std::string_view utf8_prefix(std::string_view s, std::size_t max) {
  if (s.size() <= max) return s;
  while (max > 0 && is_continuation(static_cast<unsigned char>(s[max]))) --max;
  return s.substr(0, max);
}

// ---- lone surrogate recovery ----

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// The value of the `\uXXXX` escape at s[i], or -1.
int unicode_escape_at(std::string_view s, std::size_t i) {
  if (i + 6 > s.size() || s[i] != '\\' || s[i + 1] != 'u') return -1;
  int v = 0;
  for (std::size_t k = 2; k < 6; ++k) {
    const int h = hex_value(s[i + k]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

/// Boost.JSON 1.81 reports `"\ud800"` as a plain syntax error, indistinguishable from garbage, so we look
/// for unpaired surrogate escapes ourselves. Returns the frame with each one replaced by \ufffd (same
/// length), or nothing when there is none.
std::optional<std::string> replace_lone_surrogates(std::string_view frame) {
  std::optional<std::string> fixed;
  bool in_string = false;
  for (std::size_t i = 0; i < frame.size();) {
    const char c = frame[i];
    if (!in_string) {
      in_string = c == '"';
      ++i;
      continue;
    }
    if (c == '"') {
      in_string = false;
      ++i;
      continue;
    }
    if (c != '\\' || i + 1 >= frame.size()) {
      ++i;
      continue;
    }
    const int cp = unicode_escape_at(frame, i);
    if (cp < 0xD800 || cp > 0xDFFF) {
      i += cp < 0 ? 2 : 6;
      continue;
    }
    if (cp <= 0xDBFF) {
      const int low = unicode_escape_at(frame, i + 6);
      if (low >= 0xDC00 && low <= 0xDFFF) {
        i += 12;
        continue;
      }
    }
    if (!fixed) fixed.emplace(frame);
    fixed->replace(i, 6, "\\ufffd");
    i += 6;
  }
  return fixed;
}

// ---- decoding ----

decode_error fail(error_code code, std::string message, std::optional<std::int64_t> id = std::nullopt) {
  return decode_error{code, std::move(message), id};
}

std::optional<std::int64_t> integer_id(const boost::json::object& obj) {
  const boost::json::value* id = obj.if_contains("id");
  if (id != nullptr && id->is_int64()) return id->get_int64();
  return std::nullopt;
}

/// A required string field, or the bad_request naming it.
std::variant<std::string_view, decode_error> string_field(const boost::json::object& obj,
                                                          std::string_view key, std::int64_t id) {
  const boost::json::value* v = obj.if_contains(key);
  if (v == nullptr || !v->is_string()) {
    return fail(error_code::bad_request, std::string(key) + " is required and must be a string", id);
  }
  const boost::json::string& s = v->get_string();
  return std::string_view(s.data(), s.size());
}

std::variant<std::string, decode_error> room_field(const boost::json::object& obj, std::int64_t id) {
  auto room = string_field(obj, "room", id);
  if (auto* err = std::get_if<decode_error>(&room)) return std::move(*err);
  const auto value = std::get<std::string_view>(room);
  if (!valid_room_id(value)) {
    return fail(error_code::invalid_room,
                "room must be 1 to 64 characters of a-z, 0-9, '_' or '-', "
                "starting with a letter or digit",
                id);
  }
  return std::string(value);
}

std::variant<request, decode_error> decode_send(const boost::json::object& obj, std::int64_t id,
                                                const decode_limits& limits) {
  auto room = room_field(obj, id);
  if (auto* err = std::get_if<decode_error>(&room)) return std::move(*err);
  auto text_field = string_field(obj, "text", id);
  if (auto* err = std::get_if<decode_error>(&text_field)) return std::move(*err);
  const auto text = std::get<std::string_view>(text_field);
  if (text.empty()) return fail(error_code::invalid_text, "text must not be empty", id);
  if (count_code_points(text) > limits.max_message_chars) {
    return fail(error_code::text_too_long,
                "text is longer than " + std::to_string(limits.max_message_chars) + " characters", id);
  }
  if (all_blank(text)) return fail(error_code::invalid_text, "text must not be only whitespace", id);
  // PostgreSQL text cannot hold NUL: such a message could never be stored.
  if (text.find('\0') != std::string_view::npos)
    return fail(error_code::invalid_text, "text must not contain NUL (\\u0000)", id);

  send_op op{std::move(std::get<std::string>(room)), std::string(text), {}};
  // null is accepted as "absent" because many client serialisers write optional fields that way.
  if (const boost::json::value* cid = obj.if_contains("client_msg_id"); cid != nullptr && !cid->is_null()) {
    const auto bad = [&] {
      return fail(error_code::bad_request,
                  "client_msg_id must be a string of 1 to " + std::to_string(limits.max_client_msg_id_chars) +
                      " printable ASCII characters",
                  id);
    };
    if (!cid->is_string()) return bad();
    const boost::json::string& s = cid->get_string();
    if (s.empty() || s.size() > limits.max_client_msg_id_chars) return bad();
    for (char c : s) {
      if (c < 0x20 || c > 0x7E) return bad();
    }
    op.client_msg_id.assign(s.data(), s.size());
  }
  return request{id, std::move(op)};
}

/// An optional non-negative integer field (absent or null: nullopt), or the bad_request naming it.
std::variant<std::optional<std::uint64_t>, decode_error> seq_field(const boost::json::object& obj,
                                                                   std::string_view key, std::int64_t id) {
  const boost::json::value* v = obj.if_contains(key);
  if (v == nullptr || v->is_null()) return std::optional<std::uint64_t>{};
  // Boost.JSON stores integers up to INT64_MAX as int64 and larger ones as uint64.
  if (v->is_uint64()) return std::optional<std::uint64_t>{v->get_uint64()};
  if (v->is_int64() && v->get_int64() >= 0) {
    return std::optional<std::uint64_t>{static_cast<std::uint64_t>(v->get_int64())};
  }
  return fail(error_code::bad_request, std::string(key) + " must be a non-negative integer", id);
}

/// The direction and position of a cursor make_cursor() wrote, or nothing. Only the canonical spelling
/// is accepted, so every cursor has exactly one meaning.
std::optional<std::pair<history_direction, std::uint64_t>> parse_cursor(std::string_view cursor) {
  if (cursor.size() < 3 || cursor.size() > 22 || cursor[1] != ':') return std::nullopt;
  if (cursor[0] != 'o' && cursor[0] != 'n') return std::nullopt;
  const auto dir = cursor[0] == 'o' ? history_direction::older : history_direction::newer;
  std::uint64_t from = 0;
  const char* end = cursor.data() + cursor.size();
  const auto res = std::from_chars(cursor.data() + 2, end, from);
  if (res.ec != std::errc{} || res.ptr != end || make_cursor(dir, from) != cursor) return std::nullopt;
  return std::pair{dir, from};
}

std::variant<request, decode_error> decode_history(const boost::json::object& obj, std::int64_t id,
                                                   const decode_limits& limits) {
  auto room = room_field(obj, id);
  if (auto* err = std::get_if<decode_error>(&room)) return std::move(*err);
  history_op op{std::move(std::get<std::string>(room))};

  auto before = seq_field(obj, "before", id);
  if (auto* err = std::get_if<decode_error>(&before)) return std::move(*err);
  auto after = seq_field(obj, "after", id);
  if (auto* err = std::get_if<decode_error>(&after)) return std::move(*err);
  std::optional<std::pair<history_direction, std::uint64_t>> cursor;
  if (const boost::json::value* c = obj.if_contains("cursor"); c != nullptr && !c->is_null()) {
    if (c->is_string())
      cursor = parse_cursor(std::string_view(c->get_string().data(), c->get_string().size()));
    if (!cursor) {
      return fail(error_code::bad_request, "cursor must be a `next` value from a previous history reply", id);
    }
  }
  const auto& before_seq = std::get<std::optional<std::uint64_t>>(before);
  const auto& after_seq = std::get<std::optional<std::uint64_t>>(after);
  if (before_seq.has_value() + after_seq.has_value() + cursor.has_value() > 1) {
    return fail(error_code::bad_request, "give at most one of before, after and cursor", id);
  }
  if (after_seq) {
    op.dir = history_direction::newer;
    op.from = after_seq;
  } else if (cursor) {
    op.dir = cursor->first;
    op.from = cursor->second;
  } else {
    op.dir = history_direction::older;
    op.from = before_seq;
  }

  op.limit = std::min(default_history_limit, limits.max_history_limit);
  if (const boost::json::value* l = obj.if_contains("limit"); l != nullptr && !l->is_null()) {
    const bool in_range =
        (l->is_int64() && l->get_int64() >= 1 && l->get_int64() <= limits.max_history_limit);
    if (!in_range) {
      return fail(error_code::bad_request,
                  "limit must be an integer from 1 to " + std::to_string(limits.max_history_limit), id);
    }
    op.limit = static_cast<std::uint32_t>(l->get_int64());
  }
  return request{id, std::move(op)};
}

std::variant<request, decode_error> decode_members(const boost::json::object& obj, std::int64_t id) {
  auto room = room_field(obj, id);
  if (auto* err = std::get_if<decode_error>(&room)) return std::move(*err);
  members_op op{std::move(std::get<std::string>(room)), "", default_members_limit};
  if (const boost::json::value* a = obj.if_contains("after"); a != nullptr && !a->is_null()) {
    // A user id from a previous page's `next`; user ids are far shorter than this.
    if (!a->is_string() || a->get_string().size() > 256)
      return fail(error_code::bad_request, "after must be a `next` value from a previous members reply", id);
    op.after = std::string(a->get_string().data(), a->get_string().size());
  }
  if (const boost::json::value* l = obj.if_contains("limit"); l != nullptr && !l->is_null()) {
    if (!l->is_int64() || l->get_int64() < 1 || l->get_int64() > max_members_limit)
      return fail(error_code::bad_request,
                  "limit must be an integer from 1 to " + std::to_string(max_members_limit), id);
    op.limit = static_cast<std::uint32_t>(l->get_int64());
  }
  return request{id, std::move(op)};
}

std::variant<request, decode_error> decode_object(const boost::json::object& obj,
                                                  const decode_limits& limits) {
  const std::optional<std::int64_t> id = integer_id(obj);
  const boost::json::value* op_value = obj.if_contains("op");
  if (op_value == nullptr || !op_value->is_string()) {
    return fail(error_code::bad_request, "op is required and must be a string", id);
  }
  const boost::json::string& op_str = op_value->get_string();
  const std::string_view op(op_str.data(), op_str.size());
  static constexpr std::array<std::string_view, 8> known_ops = {"auth",   "join", "leave",   "send",
                                                                "typing", "ping", "history", "members"};
  // An unknown op is reported as such even without an id: it is the likelier mistake (a newer client).
  if (std::find(known_ops.begin(), known_ops.end(), op) == known_ops.end()) {
    return fail(error_code::unknown_op, "unknown op '" + std::string(utf8_prefix(op, 32)) + "'", id);
  }
  if (!id) return fail(error_code::bad_request, "id is required and must be an integer");

  if (op == "send") return decode_send(obj, *id, limits);
  if (op == "history") return decode_history(obj, *id, limits);
  if (op == "members") return decode_members(obj, *id);
  if (op == "ping") return request{*id, ping_op{}};
  if (op == "auth") {
    auto token = string_field(obj, "token", *id);
    if (auto* err = std::get_if<decode_error>(&token)) return std::move(*err);
    return request{*id, auth_op{std::string(std::get<std::string_view>(token))}};
  }
  auto room = room_field(obj, *id);
  if (auto* err = std::get_if<decode_error>(&room)) return std::move(*err);
  auto& r = std::get<std::string>(room);
  if (op == "join") {
    auto last_seq = seq_field(obj, "last_seq", *id);
    if (auto* err = std::get_if<decode_error>(&last_seq)) return std::move(*err);
    return request{*id, join_op{std::move(r), std::get<std::optional<std::uint64_t>>(last_seq)}};
  }
  if (op == "leave") return request{*id, leave_op{std::move(r)}};
  return request{*id, typing_op{std::move(r)}};
}

/// The frame had a lone surrogate escape; say which field when we can, and keep the id so the client
/// gets a reply.
decode_error lone_surrogate_error(std::string_view repaired) {
  alignas(std::max_align_t) unsigned char buffer[2048];
  boost::json::monotonic_resource resource(buffer, sizeof buffer);
  boost::system::error_code ec;
  const boost::json::value doc = boost::json::parse(repaired, ec, &resource);
  if (ec) return fail(error_code::malformed_json, "frame is not valid JSON");
  std::string field = "a string";
  std::optional<std::int64_t> id;
  if (const boost::json::object* obj = doc.if_object()) {
    id = integer_id(*obj);
    for (std::string_view key : {"text", "room", "token", "client_msg_id", "cursor", "op"}) {
      const boost::json::value* v = obj->if_contains(key);
      if (v != nullptr && v->is_string() &&
          std::string_view(v->get_string().data(), v->get_string().size()).find("\xEF\xBF\xBD") !=
              std::string_view::npos) {
        field = key;
        break;
      }
    }
  }
  return fail(error_code::invalid_text, field + " is not valid Unicode (unpaired surrogate escape)", id);
}

std::variant<request, decode_error> decode_checked(std::string_view frame, const decode_limits& limits) {
  // Most requests are well under 1 KiB; the parse then needs no heap allocation for the DOM.
  alignas(std::max_align_t) unsigned char buffer[2048];
  boost::json::monotonic_resource resource(buffer, sizeof buffer);
  boost::system::error_code ec;
  const boost::json::value doc = boost::json::parse(frame, ec, &resource);
  if (ec) {
    if (auto repaired = replace_lone_surrogates(frame)) return lone_surrogate_error(*repaired);
    if (ec == boost::json::error::illegal_leading_surrogate ||
        ec == boost::json::error::illegal_trailing_surrogate) {
      return fail(error_code::invalid_text, "a string is not valid Unicode (unpaired surrogate escape)");
    }
    return fail(error_code::malformed_json, "frame is not valid JSON");
  }
  const boost::json::object* obj = doc.if_object();
  if (obj == nullptr) return fail(error_code::not_an_object, "frame must be a JSON object");
  return decode_object(*obj, limits);
}

// ---- encoding ----

constexpr char hex_digits[] = "0123456789abcdef";

/// Appends `s` as a JSON string. Control characters become \u00XX, so no raw newline can split a frame;
/// bytes that are not UTF-8 become U+FFFD, because one bad byte would make the client close with 1007.
void append_string(std::string& out, std::string_view s) {
  out.push_back('"');
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      if (const std::size_t len = valid_utf8_length(s, i)) {
        i += len;
        continue;
      }
    }
    out.append(s.data() + start, i - start);
    if (c == '"') {
      out.append("\\\"");
    } else if (c == '\\') {
      out.append("\\\\");
    } else if (c < 0x20) {
      const char esc[] = {'\\', 'u', '0', '0', hex_digits[c >> 4], hex_digits[c & 0xF]};
      out.append(esc, sizeof esc);
    } else {
      out.append("\\ufffd");
    }
    ++i;
    start = i;
  }
  out.append(s.data() + start, s.size() - start);
  out.push_back('"');
}

template <typename Int>
void append_int(std::string& out, Int v) {
  static_assert(std::is_integral_v<Int>);
  std::array<char, 24> buf;
  const auto res = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  out.append(buf.data(), res.ptr);
}

/// Writes `"key":` for keys we control, which never need escaping.
void append_key(std::string& out, std::string_view key) {
  out.push_back('"');
  out.append(key);
  out.append("\":");
}

void append_timestamp(std::string& out, std::int64_t ts_ms) {
  out.push_back('"');
  out.append(format_timestamp(ts_ms));
  out.push_back('"');
}

std::string reply_head(std::int64_t re, std::size_t reserve) {
  std::string out;
  out.reserve(reserve + 32);
  out.append("{\"re\":");
  append_int(out, re);
  out.append(",\"ok\":true,\"d\":{");
  return out;
}

std::string event_head(std::string_view ev, std::string_view room, std::size_t reserve) {
  std::string out;
  out.reserve(reserve + room.size() + 40);
  out.append("{\"ev\":\"");
  out.append(ev);
  out.append("\",\"room\":");
  append_string(out, room);
  return out;
}

void append_error_body(std::string& out, error_code code, std::string_view message,
                       std::optional<std::uint32_t> retry_after_ms) {
  out.append("\"error\":{\"code\":\"");
  out.append(to_string(code));
  out.append("\",\"message\":");
  append_string(out, message);
  if (retry_after_ms) {
    out.append(",\"retry_after_ms\":");
    append_int(out, *retry_after_ms);
  }
  out.append("}}");
}

/// Appends `,"user":..,"text":..,"ts":..[,"client_msg_id":..]`, the fields a message event and a history
/// entry share after id and seq.
void append_message_tail(std::string& out, const chat_message& msg) {
  out.append(",\"user\":");
  append_string(out, msg.user);
  out.append(",\"text\":");
  append_string(out, msg.text);
  out.append(",\"ts\":");
  append_timestamp(out, msg.ts_ms);
  if (!msg.client_msg_id.empty()) {
    out.append(",\"client_msg_id\":");
    append_string(out, msg.client_msg_id);
  }
}

std::size_t message_reserve(const chat_message& msg) {
  return msg.id.size() + msg.user.size() + msg.text.size() + msg.client_msg_id.size() + 96;
}

std::size_t member_list_size(const std::vector<member_info>& members) {
  std::size_t size = 16;
  for (const auto& m : members) size += m.user.size() + 32;
  return size;
}

/// `"members":[{"user":...,"online":...},...]`
void append_member_list(std::string& out, const std::vector<member_info>& members) {
  out.append("\"members\":[");
  bool first = true;
  for (const auto& m : members) {
    if (!first) out.push_back(',');
    first = false;
    out.append("{\"user\":");
    append_string(out, m.user);
    out.append(m.online ? ",\"online\":true}" : ",\"online\":false}");
  }
  out.push_back(']');
}

std::string user_event(std::string_view ev, std::string_view room, std::string_view user) {
  std::string out = event_head(ev, room, user.size() + 16);
  out.append(",\"d\":{\"user\":");
  append_string(out, user);
  out.append("}}");
  return out;
}

}  // namespace

std::variant<request, decode_error> decode_request(std::string_view frame, const decode_limits& limits) {
  // Boost.JSON reports parse errors as values, but allocation can still throw; a hot-path decoder
  // that callers treat as total must not let that escape.
  try {
    return decode_checked(frame, limits);
  } catch (const std::exception&) {
    return decode_error{error_code::internal, "the server could not decode this frame", std::nullopt};
  }
}

std::string encode_hello(const hello_event& hello) {
  std::string out;
  out.reserve(256 + hello.node_id.size());
  out.append("{\"ev\":\"hello\",\"d\":{\"protocol\":");
  append_int(out, version);
  out.append(",\"node\":");
  append_string(out, hello.node_id);
  out.append(",\"heartbeat_ms\":");
  append_int(out, hello.heartbeat_ms);
  out.append(",\"limits\":{\"max_frame_bytes\":");
  append_int(out, hello.limits.max_frame_bytes);
  out.append(",\"max_message_chars\":");
  append_int(out, hello.limits.max_message_chars);
  out.append(",\"ops_per_second\":");
  append_int(out, hello.limits.ops_per_second);
  out.append(",\"ops_burst\":");
  append_int(out, hello.limits.ops_burst);
  out.append(",\"send_queue_limit\":");
  append_int(out, hello.limits.send_queue_limit);
  out.append(",\"history_limit\":");
  append_int(out, hello.limits.history_limit);
  out.append("}}}");
  return out;
}

std::string encode_auth_ok(std::int64_t re, std::string_view user) {
  std::string out = reply_head(re, user.size() + 16);
  append_key(out, "user");
  append_string(out, user);
  out.append("}}");
  return out;
}

std::string encode_join_ok(std::int64_t re, std::string_view room, std::uint64_t last_seq,
                           const member_summary& members, std::uint64_t replayed, bool complete) {
  std::string out = reply_head(re, room.size() + 160 + member_list_size(members.members));
  append_key(out, "room");
  append_string(out, room);
  out.append(",\"last_seq\":");
  append_int(out, last_seq);
  out.append(",\"replayed\":");
  append_int(out, replayed);
  out.append(complete ? ",\"complete\":true" : ",\"complete\":false");
  out.append(",\"member_count\":");
  append_int(out, members.count);
  out.append(members.events ? ",\"member_events\":true," : ",\"member_events\":false,");
  append_member_list(out, members.members);
  out.append("}}");
  return out;
}

std::string encode_members_ok(std::int64_t re, std::string_view room, std::uint64_t count,
                              const std::vector<member_info>& members, bool more) {
  std::string out = reply_head(re, room.size() + 80 + member_list_size(members));
  append_key(out, "room");
  append_string(out, room);
  out.append(",\"member_count\":");
  append_int(out, count);
  out.push_back(',');
  append_member_list(out, members);
  out.append(",\"next\":");
  if (more && !members.empty())
    append_string(out, members.back().user);
  else
    out.append("null");
  out.append("}}");
  return out;
}

std::string encode_leave_ok(std::int64_t re, std::string_view room) {
  std::string out = reply_head(re, room.size() + 16);
  append_key(out, "room");
  append_string(out, room);
  out.append("}}");
  return out;
}

std::string encode_send_ok(std::int64_t re, const chat_message& msg) {
  std::string out = reply_head(re, msg.id.size() + msg.room.size() + msg.client_msg_id.size() + 96);
  append_key(out, "id");
  append_string(out, msg.id);
  out.append(",\"room\":");
  append_string(out, msg.room);
  out.append(",\"seq\":");
  append_int(out, msg.seq);
  out.append(",\"ts\":");
  append_timestamp(out, msg.ts_ms);
  if (!msg.client_msg_id.empty()) {
    out.append(",\"client_msg_id\":");
    append_string(out, msg.client_msg_id);
  }
  out.append("}}");
  return out;
}

std::string encode_history_ok(std::int64_t re, std::string_view room,
                              const std::vector<chat_message>& messages,
                              std::optional<std::string> next_cursor) {
  std::size_t reserve = room.size() + 48 + (next_cursor ? next_cursor->size() : 0);
  for (const auto& m : messages) reserve += message_reserve(m);
  std::string out = reply_head(re, reserve);
  append_key(out, "room");
  append_string(out, room);
  out.append(",\"messages\":[");
  bool first = true;
  for (const auto& m : messages) {
    if (!first) out.push_back(',');
    first = false;
    out.append("{\"id\":");
    append_string(out, m.id);
    out.append(",\"seq\":");
    append_int(out, m.seq);
    append_message_tail(out, m);
    out.push_back('}');
  }
  out.append("],\"next\":");
  if (next_cursor) {
    append_string(out, *next_cursor);
  } else {
    out.append("null");
  }
  out.append("}}");
  return out;
}

std::string encode_empty_ok(std::int64_t re) {
  std::string out = reply_head(re, 0);
  out.append("}}");
  return out;
}

std::string encode_pong(std::int64_t re, std::int64_t server_ts_ms) {
  std::string out = reply_head(re, 40);
  append_key(out, "ts");
  append_timestamp(out, server_ts_ms);
  out.append("}}");
  return out;
}

std::string encode_error_reply(std::int64_t re, error_code code, std::string_view message,
                               std::optional<std::uint32_t> retry_after_ms) {
  std::string out;
  out.reserve(message.size() + 96);
  out.append("{\"re\":");
  append_int(out, re);
  out.append(",\"ok\":false,");
  append_error_body(out, code, message, retry_after_ms);
  return out;
}

std::string encode_error_event(error_code code, std::string_view message,
                               std::optional<std::uint32_t> retry_after_ms) {
  std::string out;
  out.reserve(message.size() + 96);
  out.append("{\"ev\":\"error\",");
  append_error_body(out, code, message, retry_after_ms);
  return out;
}

std::string encode_message_event(const chat_message& msg) {
  std::string out = event_head("message", msg.room, message_reserve(msg));
  out.append(",\"seq\":");
  append_int(out, msg.seq);
  out.append(",\"d\":{\"id\":");
  append_string(out, msg.id);
  append_message_tail(out, msg);
  out.append("}}");
  return out;
}

std::string encode_member_joined(std::string_view room, std::string_view user) {
  return user_event("member_joined", room, user);
}

std::string encode_member_left(std::string_view room, std::string_view user) {
  return user_event("member_left", room, user);
}

std::string encode_member_updated(std::string_view room, std::string_view user, std::string_view role) {
  std::string out = event_head("member_updated", room, user.size() + role.size() + 32);
  out.append(",\"d\":{\"user\":");
  append_string(out, user);
  out.append(",\"role\":");
  append_string(out, role);
  out.append("}}");
  return out;
}

std::string encode_room_updated(std::string_view room, std::string_view room_json) {
  std::string out = event_head("room_updated", room, room_json.size() + 16);
  out.append(",\"d\":");
  out.append(room_json);
  out.append("}");
  return out;
}

std::string encode_room_deleted(std::string_view room) {
  std::string out = event_head("room_deleted", room, 16);
  out.append(",\"d\":{}}");
  return out;
}

std::string encode_typing(std::string_view room, std::string_view user) {
  return user_event("typing", room, user);
}

std::string encode_member_count(std::string_view room, std::uint64_t count) {
  std::string out = event_head("member_count", room, 48);
  out.append(",\"d\":{\"count\":");
  append_int(out, count);
  out.append("}}");
  return out;
}

std::string encode_members_event(std::string_view room, const std::vector<member_info>& members) {
  std::string out = event_head("members", room, member_list_size(members) + 16);
  out.append(",\"d\":{");
  append_member_list(out, members);
  out.append("}}");
  return out;
}

std::string encode_presence(std::string_view user, presence_status status) {
  std::string out;
  out.reserve(user.size() + 64);
  out.append("{\"ev\":\"presence\",\"d\":{\"user\":");
  append_string(out, user);
  out.append(status == presence_status::online ? ",\"status\":\"online\"}}" : ",\"status\":\"offline\"}}");
  return out;
}

std::string encode_nodes(const std::vector<node_address>& nodes) {
  std::string out;
  out.reserve(32 + nodes.size() * 64);
  out.append("{\"ev\":\"nodes\",\"d\":{\"nodes\":[");
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.append("{\"id\":");
    append_string(out, nodes[i].id);
    out.append(",\"url\":");
    // An IPv6 host goes in brackets, as in any URL.
    const auto& host = nodes[i].host;
    bool v6 = host.find(':') != std::string::npos;
    append_string(out,
                  "ws://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(nodes[i].port) + "/ws");
    out.push_back('}');
  }
  out.append("]}}");
  return out;
}

std::string format_timestamp(std::int64_t ts_ms) {
  using namespace std::chrono;
  // RFC 3339 has four-digit years; clamping also keeps the calendar arithmetic far from overflow.
  constexpr std::int64_t min_ms = -62167219200000;  // 0000-01-01T00:00:00.000Z
  constexpr std::int64_t max_ms = 253402300799999;  // 9999-12-31T23:59:59.999Z
  ts_ms = std::clamp(ts_ms, min_ms, max_ms);
  const sys_time<milliseconds> tp{milliseconds{ts_ms}};
  const sys_days day = floor<days>(tp);
  const year_month_day ymd{day};
  const hh_mm_ss hms{tp - day};

  char buf[24];
  auto put = [&buf](std::size_t pos, unsigned value, std::size_t width) {
    for (std::size_t k = width; k > 0; --k) {
      buf[pos + k - 1] = static_cast<char>('0' + value % 10);
      value /= 10;
    }
  };
  put(0, static_cast<unsigned>(static_cast<int>(ymd.year())), 4);
  buf[4] = '-';
  put(5, static_cast<unsigned>(ymd.month()), 2);
  buf[7] = '-';
  put(8, static_cast<unsigned>(ymd.day()), 2);
  buf[10] = 'T';
  put(11, static_cast<unsigned>(hms.hours().count()), 2);
  buf[13] = ':';
  put(14, static_cast<unsigned>(hms.minutes().count()), 2);
  buf[16] = ':';
  put(17, static_cast<unsigned>(hms.seconds().count()), 2);
  buf[19] = '.';
  put(20, static_cast<unsigned>(hms.subseconds().count()), 3);
  buf[23] = 'Z';
  return std::string(buf, sizeof buf);
}

}  // namespace chorus::protocol
