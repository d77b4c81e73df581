// The HTTP API: each route validates its input completely before it writes anything, asks authorize() before
// it acts, and answers with JSON. Routes are listed once, in `table`, which openapi.yaml must match.
#include "actors/api_routes.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <optional>
#include <utility>
#include <variant>

#include "actors/address_block.hpp"
#include "actors/authorization.hpp"
#include "actors/jwt.hpp"
#include "actors/password.hpp"
#include "actors/protocol.hpp"
#include "actors/secret_token.hpp"

namespace chorus::actors {

namespace {

namespace json = boost::json;
using protocol::error_code;
using storage::member_role;
using storage::room_kind;
using storage::store_failure;

// ---- responses ----

unsigned status_of(error_code code) {
  switch (code) {
    case error_code::malformed_json:
    case error_code::not_an_object:
    case error_code::bad_request:
    case error_code::invalid_room:
    case error_code::text_too_long:
    case error_code::invalid_text:
      return 400;
    case error_code::auth_required:
    case error_code::invalid_token:
    case error_code::token_expired:
    case error_code::invalid_credentials:
      return 401;
    case error_code::forbidden:
    case error_code::not_joined:
      return 403;
    case error_code::not_found:
      return 404;
    case error_code::method_not_allowed:
      return 405;
    case error_code::conflict:
    case error_code::already_authenticated:
      return 409;
    case error_code::payload_too_large:
      return 413;
    case error_code::rate_limited:
    case error_code::account_locked:
      return 429;
    case error_code::unavailable:
      return 503;
    case error_code::unsupported_frame:
    case error_code::unknown_op:
    case error_code::internal:
      break;
  }
  return 500;
}

/// A refusal: what the client did wrong (or what is wrong with the server), with a stable code.
struct api_failure {
  error_code code = error_code::internal;
  std::string message;
  std::uint32_t retry_after_ms = 0;  ///< rate_limited, account_locked
  json::object extra{};              ///< further fields of the error object, e.g. the existing room id
};

http_response error_response(const api_failure& f) {
  json::object err{{"code", protocol::to_string(f.code)}, {"message", f.message}};
  for (const auto& [k, v] : f.extra) err[k] = v;
  http_response res;
  res.status = status_of(f.code);
  if (f.retry_after_ms > 0) {
    err["retry_after_ms"] = f.retry_after_ms;
    res.headers.emplace_back("Retry-After", std::to_string((f.retry_after_ms + 999) / 1000));
  }
  // Every 401 names the scheme (RFC 9110), also the login's and the refresh token's.
  if (res.status == 401) res.headers.emplace_back("WWW-Authenticate", "Bearer");
  res.body = json::serialize(json::object{{"error", std::move(err)}});
  return res;
}

http_response json_response(unsigned status, const json::value& body) {
  return {status, json::serialize(body), {}};
}

http_response no_content() {
  return {204, {}, {}};
}

template <class T>
using expected = std::variant<T, api_failure>;

api_failure fail(error_code code, std::string message) {
  return {code, std::move(message), 0, {}};
}

/// The API's view of a store failure: not_found and conflict are the client's business, the rest is ours.
api_failure from_store(const store_failure& f) {
  switch (f.what) {
    case store_failure::not_found:
      return fail(error_code::not_found, f.detail + " not found");
    case store_failure::conflict: {
      auto out = fail(error_code::conflict, f.detail + " is already taken");
      if (f.detail == "direct_pair") {
        out.message = "a direct room of these two users exists already";
        out.extra["room_id"] = f.existing_id;
      } else if (f.detail == "member") {
        out.message = "already a member";
      } else if (f.detail == "member_changed") {
        out.message = "the member, or your own role, changed meanwhile; read the member again and retry";
      }
      return out;
    }
    case store_failure::invalid:
      return fail(error_code::bad_request, f.detail + " is not valid");
    case store_failure::unavailable:
    case store_failure::in_doubt:
      break;
  }
  return fail(error_code::unavailable, "the database is unavailable; try again");
}

// ---- request bodies ----

expected<json::object> body_object(const http_request& req) {
  if (req.body.empty()) return fail(error_code::bad_request, "a JSON object body is required");
  boost::system::error_code ec;
  json::parse_options opts;
  opts.max_depth = 16;
  auto value = json::parse(req.body, ec, {}, opts);
  if (ec) return fail(error_code::malformed_json, "the body is not valid JSON");
  if (!value.is_object()) return fail(error_code::not_an_object, "the body must be a JSON object");
  return std::move(value.as_object());
}

std::size_t code_points(std::string_view s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xc0) != 0x80; }));
}

/// A string field: absent → nullopt (or an error if required); present with another type → error.
expected<std::optional<std::string>> string_field(const json::object& o, std::string_view key, bool required,
                                                  std::size_t max_chars, std::size_t min_chars = 0) {
  auto it = o.find(key);
  if (it == o.end() || (it->value().is_null() && !required)) {
    if (required) return fail(error_code::bad_request, std::string(key) + " is required");
    return std::optional<std::string>{};
  }
  if (!it->value().is_string()) return fail(error_code::bad_request, std::string(key) + " must be a string");
  std::string s(it->value().as_string());
  auto n = code_points(s);
  if (n > max_chars)
    return fail(error_code::bad_request,
                std::string(key) + " must be at most " + std::to_string(max_chars) + " characters");
  if (n < min_chars)
    return fail(error_code::bad_request,
                std::string(key) + " must be at least " + std::to_string(min_chars) + " characters");
  if (s.find('\0') != std::string::npos)
    return fail(error_code::bad_request, std::string(key) + " must not contain NUL");
  return std::optional<std::string>{std::move(s)};
}

expected<std::optional<bool>> bool_field(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return std::optional<bool>{};
  if (!it->value().is_bool())
    return fail(error_code::bad_request, std::string(key) + " must be true or false");
  return std::optional<bool>{it->value().as_bool()};
}

/// Rejects fields the route does not know, so a typo ("pubilc") is an error rather than silently ignored.
std::optional<api_failure> only_fields(const json::object& o, std::initializer_list<std::string_view> known) {
  for (const auto& [k, v] : o)
    if (std::find(known.begin(), known.end(), std::string_view(k)) == known.end())
      return fail(error_code::bad_request, "unknown field '" + std::string(k).substr(0, 64) + "'");
  return std::nullopt;
}

#define CHORUS_TRY(var, expr)                                       \
  auto var##_result = (expr);                                       \
  if (auto* f = std::get_if<api_failure>(&var##_result)) return *f; \
  auto var = std::move(std::get<0>(var##_result))

#define CHORUS_STORE(var, expr)                                                    \
  auto var##_outcome = (expr);                                                     \
  if (auto* f = std::get_if<store_failure>(&var##_outcome)) return from_store(*f); \
  [[maybe_unused]] auto var = std::move(std::get<0>(var##_outcome))

// ---- query strings and paths ----

std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '+' && plus_is_space) {
      out += ' ';
    } else if (c == '%' && i + 2 < s.size()) {
      unsigned v = 0;
      auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
      if (ec == std::errc{} && p == s.data() + i + 3) {
        out += static_cast<char>(v);
        i += 2;
      } else {
        out += c;
      }
    } else {
      out += c;
    }
  }
  return out;
}

std::optional<std::string> query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto part = query.substr(0, amp);
    auto eq = part.find('=');
    if (percent_decode(part.substr(0, eq), true) == name)
      return eq == std::string_view::npos ? std::string{} : percent_decode(part.substr(eq + 1), true);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

expected<std::size_t> limit_param(const http_request& req) {
  auto text = query_param(req.query, "limit");
  if (!text) return std::size_t{50};
  std::size_t v = 0;
  auto [p, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc{} || p != text->data() + text->size() || v < 1 || v > storage::max_page_limit)
    return fail(error_code::bad_request,
                "limit must be an integer from 1 to " + std::to_string(storage::max_page_limit));
  return v;
}

// ---- JSON views of rows ----

json::value time_or_null(const std::optional<std::int64_t>& ms) {
  return ms ? json::value(*ms) : json::value(nullptr);
}

json::object user_json(const storage::user_row& u, bool self) {
  // An invisible user looks offline to everyone else; only its own profile says "invisible".
  auto status = u.status == storage::user_status::invisible && !self ? std::string_view("offline")
                                                                     : storage::to_string(u.status);
  json::object o{{"id", u.id},
                 {"username", u.username},
                 {"display_name", u.display_name},
                 {"about", u.about},
                 {"status", status},
                 {"avatar_url", u.avatar_url},
                 {"last_seen", time_or_null(u.last_seen_ms)},
                 {"created_at", u.created_at_ms}};
  if (self) o["email"] = u.email;
  return o;
}

json::object room_json(const storage::room_row& r) {
  return {{"id", r.id},
          {"kind", storage::to_string(r.kind)},
          {"name", r.name},
          {"description", r.description},
          {"topic", r.topic},
          {"public", r.is_public},
          {"category", r.category},
          {"created_by", r.created_by},
          {"created_at", r.created_at_ms},
          {"last_seq", r.last_seq}};
}

json::array permission_names(storage::permission_mask mask) {
  json::array out;
  for (unsigned i = 0; i < storage::permission_count; ++i)
    if (mask & (storage::permission_mask{1} << i)) out.emplace_back(to_string(static_cast<permission>(i)));
  return out;
}

json::object member_json(const storage::member_row& m, bool self) {
  json::object o{{"user_id", m.user_id},
                 {"role", storage::to_string(m.role)},
                 {"granted", permission_names(m.granted)},
                 {"revoked", permission_names(m.revoked)},
                 {"joined_at", m.joined_at_ms}};
  if (self) {
    o["muted"] = m.muted;
    o["archived"] = m.archived;
    o["pinned"] = m.pinned;
    o["last_read_seq"] = m.last_read_seq;
  }
  return o;
}

template <class T, class F>
json::object page_json(const storage::page<T>& p, F&& item) {
  json::array items;
  for (const auto& row : p.items) items.push_back(item(row));
  return {{"items", std::move(items)},
          {"next_cursor", p.next_cursor.empty() ? json::value(nullptr) : json::value(p.next_cursor)}};
}

// ---- the router ----

struct caller {
  std::string user_id;
};

using params = std::vector<std::string>;  // the {placeholders} of the matched pattern, in order

class request_scope {
 public:
  request_scope(api_context& ctx, const http_request& req) : ctx_(ctx), req_(req) {}

  api_context& ctx() { return ctx_; }
  const http_request& req() const { return req_; }

  /// The authenticated user: a valid access token whose user still exists.
  expected<caller> authenticate() {
    if (!req_.bearer_token || req_.bearer_token->empty())
      return fail(error_code::auth_required, "this route needs `Authorization: Bearer <access token>`");
    auto verdict = jwt::verify(*req_.bearer_token, ctx_.cfg.jwt_secret, ctx_.now_ms() / 1000);
    if (auto* why = std::get_if<jwt::failure>(&verdict)) {
      return *why == jwt::failure::expired ? fail(error_code::token_expired, "the access token has expired")
                                           : fail(error_code::invalid_token, "the access token is not valid");
    }
    auto& claims = std::get<jwt::claims>(verdict);
    auto user = ctx_.store.get_user(claims.subject);
    if (auto* f = std::get_if<store_failure>(&user)) {
      if (f->what == store_failure::not_found) {
        return fail(error_code::invalid_token, "the token's account no longer exists");
      }
      return from_store(*f);
    }
    return caller{claims.subject};
  }

  /// Spends one token of `key`'s bucket; over the limit, a rate_limited failure.
  std::optional<api_failure> limit(const std::string& key, double per_second, double burst) {
    auto v = ctx_.limits.take(key, storage::bucket{per_second, burst});
    if (v.allowed) return std::nullopt;
    api_failure f = fail(error_code::rate_limited, "too many requests; retry later");
    f.retry_after_ms = std::max<std::uint32_t>(v.retry_after_ms, 1);
    return f;
  }

 private:
  api_context& ctx_;
  const http_request& req_;
};

using handler = http_response (*)(request_scope&, const params&);

struct route {
  route_spec spec;
  handler run;
};

// ---- auth ----

json::object token_pair(api_context& ctx, const std::string& user_id, const std::string& refresh) {
  auto now_s = ctx.now_ms() / 1000;
  return {{"access_token", jwt::mint(ctx.cfg.jwt_secret, user_id, now_s, ctx.cfg.access_token_ttl_s)},
          {"token_type", "Bearer"},
          {"expires_in", ctx.cfg.access_token_ttl_s},
          {"refresh_token", refresh},
          {"refresh_expires_in", ctx.cfg.refresh_token_ttl_s}};
}

std::string lower(std::string s) {
  for (auto& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

http_response do_register(request_scope& rq, const params&) {
  auto& ctx = rq.ctx();
  double per_hour = ctx.cfg.registrations_per_hour;
  if (auto f = rq.limit("register:ip:" + address_block(rq.req().remote_ip), per_hour / 3600.0, per_hour))
    return error_response(*f);
  auto run = [&]() -> expected<http_response> {
    CHORUS_TRY(body, body_object(rq.req()));
    if (auto f = only_fields(body, {"username", "email", "password", "display_name"})) return *f;
    CHORUS_TRY(username, string_field(body, "username", true, storage::limits::username_max,
                                      storage::limits::username_min));
    CHORUS_TRY(email, string_field(body, "email", true, storage::limits::email_max, 3));
    CHORUS_TRY(password, string_field(body, "password", true, 1024));
    CHORUS_TRY(display_name, string_field(body, "display_name", false, storage::limits::display_name_max));
    if (!std::all_of(username->begin(), username->end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                 c == '.' || c == '-';
        }))
      return fail(error_code::bad_request, "username may hold only letters, digits, '_', '.' and '-'");
    auto at = email->find('@');
    if (at == std::string::npos || at == 0 || at + 1 >= email->size() ||
        email->find_first_of(" \t\r\n") != std::string::npos)
      return fail(error_code::bad_request, "email is not a valid address");
    if (!password_acceptable(*password))
      return fail(error_code::bad_request, "password must be 8 to 128 bytes of UTF-8");
    storage::new_user u{*username, *email, hash_password(*password), display_name.value_or("")};
    CHORUS_STORE(user, ctx.store.create_user(u));
    spdlog::info("api: registered user {} ({})", user.id, user.username);
    return json_response(201, json::object{{"user", user_json(user, true)}});
  };
  auto out = run();
  if (auto* f = std::get_if<api_failure>(&out)) return error_response(*f);
  return std::get<http_response>(out);
}

/// Issues a new refresh token (a new family when `family` is empty) and the access token beside it.
expected<json::object> issue_tokens(api_context& ctx, const std::string& user_id, const std::string& family) {
  auto refresh = new_secret_token();
  auto expires = ctx.now_ms() + static_cast<std::int64_t>(ctx.cfg.refresh_token_ttl_s) * 1000;
  auto stored = ctx.store.store_refresh(token_digest(refresh), user_id, family, expires);
  if (auto* f = std::get_if<store_failure>(&stored)) return from_store(*f);
  return token_pair(ctx, user_id, refresh);
}

http_response do_login(request_scope& rq, const params&) {
  auto& ctx = rq.ctx();
  auto run = [&]() -> expected<http_response> {
    CHORUS_TRY(body, body_object(rq.req()));
    if (auto f = only_fields(body, {"login", "password"})) return *f;
    CHORUS_TRY(login, string_field(body, "login", true, storage::limits::email_max, 1));
    CHORUS_TRY(password, string_field(body, "password", true, 1024));
    double per_minute = ctx.cfg.login_attempts_per_minute;
    if (auto f = rq.limit("login:ip:" + address_block(rq.req().remote_ip), per_minute / 60.0, per_minute))
      return *f;
    auto found = ctx.store.credentials_by_login(*login);
    auto* creds = std::get_if<storage::credentials>(&found);
    if (auto* f = std::get_if<store_failure>(&found); f && f->what != store_failure::not_found)
      return from_store(*f);
    // Limits and lockout count per account, whichever of its names (username, email) the attempt used.
    auto account = creds != nullptr ? creds->user_id : lower(*login);
    if (auto f = rq.limit("login:acct:" + account, per_minute / 60.0, per_minute)) return *f;
    auto lock_key = "lock:" + account;
    if (auto locked = ctx.limits.locked(lock_key); locked.locked) {
      api_failure f =
          fail(error_code::account_locked, "too many failed logins; the account is locked for a while");
      f.retry_after_ms = std::max<std::uint32_t>(locked.retry_after_ms, 1);
      return f;
    }
    // Hash even when there is no such account, so the answer takes as long either way.
    bool ok = creds != nullptr && !creds->deleted && verify_password(creds->password_hash, *password);
    // A deleted account must not answer faster than an unknown one: that would tell it existed.
    if (creds == nullptr || creds->deleted)
      verify_password(
          "$argon2id$v=19$m=65536,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$"
          "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
          *password);
    if (!ok) {
      auto lock = ctx.limits.record_failure(lock_key, ctx.cfg.login_lockout_failures,
                                            std::chrono::seconds(ctx.cfg.login_lockout_s));
      if (lock.locked) {
        spdlog::warn("api: login for '{}' locked after repeated failures from {}",
                     lower(*login).substr(0, 64), rq.req().remote_ip);
        api_failure f =
            fail(error_code::account_locked, "too many failed logins; the account is locked for a while");
        f.retry_after_ms = std::max<std::uint32_t>(lock.retry_after_ms, 1);
        return f;
      }
      return fail(error_code::invalid_credentials, "wrong login or password");
    }
    ctx.limits.clear(lock_key);
    CHORUS_TRY(tokens, issue_tokens(ctx, creds->user_id, ""));
    CHORUS_STORE(user, ctx.store.get_user(creds->user_id));
    tokens["user"] = user_json(user, true);
    return json_response(200, tokens);
  };
  auto out = run();
  if (auto* f = std::get_if<api_failure>(&out)) return error_response(*f);
  return std::get<http_response>(out);
}

/// The per-address API bucket, for the routes that have no user yet.
std::optional<api_failure> limit_address(request_scope& rq) {
  auto& cfg = rq.ctx().cfg;
  return rq.limit("api:ip:" + address_block(rq.req().remote_ip), cfg.api_requests_per_second, cfg.api_burst);
}

http_response do_refresh(request_scope& rq, const params&) {
  auto& ctx = rq.ctx();
  if (auto f = limit_address(rq)) return error_response(*f);
  auto run = [&]() -> expected<http_response> {
    CHORUS_TRY(body, body_object(rq.req()));
    if (auto f = only_fields(body, {"refresh_token"})) return *f;
    CHORUS_TRY(token, string_field(body, "refresh_token", true, 256, 1));
    auto replacement = new_secret_token();
    auto expires = ctx.now_ms() + static_cast<std::int64_t>(ctx.cfg.refresh_token_ttl_s) * 1000;
    CHORUS_STORE(use, ctx.store.rotate_refresh(token_digest(*token), token_digest(replacement), expires));
    switch (use.status) {
      case storage::refresh_status::ok:
        break;
      case storage::refresh_status::reused:
        spdlog::warn("api: refresh token of user {} reused; its whole family is revoked", use.user_id);
        return fail(error_code::invalid_token, "this refresh token was already used; log in again");
      case storage::refresh_status::expired:
        return fail(error_code::token_expired, "the refresh token has expired; log in again");
      case storage::refresh_status::revoked:
      case storage::refresh_status::unknown:
        return fail(error_code::invalid_token, "the refresh token is not valid; log in again");
    }
    return json_response(200, token_pair(ctx, use.user_id, replacement));
  };
  auto out = run();
  if (auto* f = std::get_if<api_failure>(&out)) return error_response(*f);
  return std::get<http_response>(out);
}

http_response do_logout(request_scope& rq, const params&) {
  auto& ctx = rq.ctx();
  if (auto f = limit_address(rq)) return error_response(*f);
  auto run = [&]() -> expected<http_response> {
    CHORUS_TRY(body, body_object(rq.req()));
    if (auto f = only_fields(body, {"refresh_token"})) return *f;
    CHORUS_TRY(token, string_field(body, "refresh_token", true, 256, 1));
    auto revoked = ctx.store.revoke_refresh(token_digest(*token));
    if (auto* f = std::get_if<store_failure>(&revoked); f && f->what != store_failure::not_found)
      return from_store(*f);
    return no_content();  // logging out with an unknown token leaves nothing to do, and says nothing
  };
  auto out = run();
  if (auto* f = std::get_if<api_failure>(&out)) return error_response(*f);
  return std::get<http_response>(out);
}

// ---- the routes that need a caller: `authed` runs them after authentication and the per-user limit ----

using authed_handler = expected<http_response> (*)(request_scope&, const caller&, const params&);

template <authed_handler H>
http_response authed(request_scope& rq, const params& p) {
  auto who = rq.authenticate();
  if (auto* f = std::get_if<api_failure>(&who)) return error_response(*f);
  auto& me = std::get<caller>(who);
  auto& cfg = rq.ctx().cfg;
  if (auto f = rq.limit("api:user:" + me.user_id, cfg.api_requests_per_second, cfg.api_burst))
    return error_response(*f);
  auto out = H(rq, me, p);
  if (auto* f = std::get_if<api_failure>(&out)) return error_response(*f);
  return std::move(std::get<http_response>(out));
}

expected<http_response> get_me(request_scope& rq, const caller& me, const params&) {
  CHORUS_STORE(user, rq.ctx().store.get_user(me.user_id));
  return json_response(200, user_json(user, true));
}

expected<http_response> patch_me(request_scope& rq, const caller& me, const params&) {
  CHORUS_TRY(body, body_object(rq.req()));
  if (auto f = only_fields(body, {"display_name", "about", "status", "avatar_url"})) return *f;
  storage::profile_patch patch;
  CHORUS_TRY(display_name, string_field(body, "display_name", false, storage::limits::display_name_max));
  CHORUS_TRY(about, string_field(body, "about", false, storage::limits::about_max));
  CHORUS_TRY(status, string_field(body, "status", false, 16));
  CHORUS_TRY(avatar_url, string_field(body, "avatar_url", false, storage::limits::avatar_url_max));
  patch.display_name = display_name;
  patch.about = about;
  if (status) {
    patch.status = storage::parse_user_status(*status);
    if (!patch.status) return fail(error_code::bad_request, "status must be online, away, busy or invisible");
  }
  if (avatar_url && !avatar_url->empty() && !avatar_url->starts_with("https://") &&
      !avatar_url->starts_with("http://"))
    return fail(error_code::bad_request, "avatar_url must be an http(s) URL");
  patch.avatar_url = avatar_url;
  CHORUS_STORE(user, rq.ctx().store.update_profile(me.user_id, patch));
  return json_response(200, user_json(user, true));
}

expected<http_response> delete_me(request_scope& rq, const caller& me, const params&) {
  CHORUS_STORE(gone, rq.ctx().store.delete_user(me.user_id));
  spdlog::info("api: user {} deleted its account", me.user_id);
  return no_content();
}

expected<http_response> get_user(request_scope& rq, const caller& me, const params& p) {
  CHORUS_STORE(user, rq.ctx().store.get_user(p[0]));
  return json_response(200, user_json(user, user.id == me.user_id));
}

expected<http_response> search_users(request_scope& rq, const caller& me, const params&) {
  auto q = query_param(rq.req().query, "q").value_or("");
  if (code_points(q) > storage::limits::username_max)
    return fail(error_code::bad_request, "q must be at most 32 characters");
  CHORUS_TRY(limit, limit_param(rq.req()));
  auto cursor = query_param(rq.req().query, "cursor").value_or("");
  CHORUS_STORE(found, rq.ctx().store.search_users(q, cursor, limit));
  return json_response(
      200, page_json(found, [&](const storage::user_row& u) { return user_json(u, u.id == me.user_id); }));
}

// ---- rooms ----

/// The caller's membership of a live room, and the room; a private room a non-member cannot see is
/// not_found, so its existence does not leak.
struct room_view {
  storage::room_row room;
  std::optional<storage::member_row> me;
};

subject subject_of(const std::optional<storage::member_row>& m) {
  subject s;
  if (m) {
    s.member_role = m->role;
    s.granted = m->granted;
    s.revoked = m->revoked;
  }
  return s;
}

expected<room_view> view_room(api_context& ctx, const std::string& room_id, const caller& me) {
  auto room = ctx.store.get_room(room_id);
  if (auto* f = std::get_if<store_failure>(&room)) return from_store(*f);
  room_view v{std::move(std::get<storage::room_row>(room)), std::nullopt};
  auto member = ctx.store.get_member(room_id, me.user_id);
  if (auto* m = std::get_if<storage::member_row>(&member))
    v.me = std::move(*m);
  else if (auto* f = std::get_if<store_failure>(&member); f->what != store_failure::not_found)
    return from_store(*f);
  if (!decide(subject_of(v.me), v.room.kind, v.room.is_public, action::read))
    return fail(error_code::not_found, "room not found");
  return v;
}

std::optional<api_failure> require(const room_view& v, action a, const target* t = nullptr) {
  auto d = decide(subject_of(v.me), v.room.kind, v.room.is_public, a, t);
  if (d) return std::nullopt;
  return fail(error_code::forbidden, "not allowed: " + std::string(to_string(d.reason)));
}

expected<http_response> create_room(request_scope& rq, const caller& me, const params&) {
  auto& ctx = rq.ctx();
  CHORUS_TRY(body, body_object(rq.req()));
  if (auto f = only_fields(body, {"kind", "name", "description", "topic", "public", "category", "members"}))
    return *f;
  CHORUS_TRY(kind_text, string_field(body, "kind", true, 16));
  auto kind = storage::parse_room_kind(*kind_text);
  if (!kind) return fail(error_code::bad_request, "kind must be direct, group or channel");
  storage::new_room r;
  r.kind = *kind;
  r.creator = me.user_id;
  CHORUS_TRY(name, string_field(body, "name", *kind != room_kind::direct, storage::limits::room_name_max,
                                *kind != room_kind::direct ? 1 : 0));
  CHORUS_TRY(description, string_field(body, "description", false, storage::limits::room_description_max));
  CHORUS_TRY(topic, string_field(body, "topic", false, storage::limits::room_topic_max));
  CHORUS_TRY(category, string_field(body, "category", false, storage::limits::room_category_max));
  CHORUS_TRY(is_public, bool_field(body, "public"));
  r.name = name.value_or("");
  r.description = description.value_or("");
  r.topic = topic.value_or("");
  r.category = category.value_or("");
  r.is_public = is_public.value_or(false);
  if (r.kind == room_kind::direct && r.is_public)
    return fail(error_code::bad_request, "public: a direct room cannot be public");
  std::vector<std::string> others;
  if (auto it = body.find("members"); it != body.end() && !it->value().is_null()) {
    if (!it->value().is_array()) return fail(error_code::bad_request, "members must be an array of user ids");
    const auto& arr = it->value().as_array();
    if (arr.size() > 1000) return fail(error_code::bad_request, "members: at most 1000 at creation");
    for (const auto& v : arr) {
      if (!v.is_string() || v.as_string().size() > 64)
        return fail(error_code::bad_request, "members must be an array of user ids");
      // User ids are lower-case UUIDs; a client may send them in any case (its own id in capitals is its
      // own).
      auto id = lower(std::string(v.as_string()));
      if (id != me.user_id && std::find(others.begin(), others.end(), id) == others.end())
        others.push_back(id);
    }
  }
  if (r.kind == room_kind::direct && others.size() != 1)
    return fail(error_code::bad_request, "members: a direct room has exactly one other user");
  for (auto& id : others) r.members.emplace_back(id, member_role::member);
  CHORUS_STORE(room, ctx.store.create_room(r));
  spdlog::info("api: user {} created {} room {}", me.user_id, storage::to_string(room.kind), room.id);
  return json_response(201, room_json(room));
}

expected<http_response> list_rooms(request_scope& rq, const caller& me, const params&) {
  auto& ctx = rq.ctx();
  CHORUS_TRY(limit, limit_param(rq.req()));
  auto cursor = query_param(rq.req().query, "cursor").value_or("");
  if (auto q = query_param(rq.req().query, "q")) {
    if (code_points(*q) > storage::limits::room_name_max)
      return fail(error_code::bad_request, "q must be at most 100 characters");
    CHORUS_STORE(found, ctx.store.search_public_rooms(*q, cursor, limit));
    return json_response(200, page_json(found, [](const storage::room_row& r) { return room_json(r); }));
  }
  CHORUS_STORE(mine, ctx.store.list_my_rooms(me.user_id, cursor, limit));
  return json_response(200, page_json(mine, [](const storage::my_room_row& r) {
                         auto o = room_json(r.room);
                         o["unread"] = r.unread;
                         o["me"] = member_json(r.me, true);
                         return o;
                       }));
}

expected<http_response> get_room(request_scope& rq, const caller& me, const params& p) {
  CHORUS_TRY(v, view_room(rq.ctx(), p[0], me));
  auto o = room_json(v.room);
  if (v.me) o["me"] = member_json(*v.me, true);
  return json_response(200, o);
}

storage::room_access_row access_of(const storage::room_row& r) {
  storage::room_access_row a;
  a.room_id = r.id;
  a.kind = r.kind;
  a.is_public = r.is_public;
  a.last_seq = r.last_seq;
  return a;
}

expected<http_response> patch_room(request_scope& rq, const caller& me, const params& p) {
  auto& ctx = rq.ctx();
  CHORUS_TRY(v, view_room(ctx, p[0], me));
  CHORUS_TRY(body, body_object(rq.req()));
  if (auto f = only_fields(body, {"name", "description", "topic", "public", "category"})) return *f;
  storage::room_patch patch;
  CHORUS_TRY(name, string_field(body, "name", false, storage::limits::room_name_max, 1));
  CHORUS_TRY(description, string_field(body, "description", false, storage::limits::room_description_max));
  CHORUS_TRY(topic, string_field(body, "topic", false, storage::limits::room_topic_max));
  CHORUS_TRY(category, string_field(body, "category", false, storage::limits::room_category_max));
  CHORUS_TRY(is_public, bool_field(body, "public"));
  if (auto f = require(v, action::edit_room)) return *f;
  if (v.room.kind == room_kind::direct && is_public.value_or(false))
    return fail(error_code::bad_request, "public: a direct room cannot be public");
  patch.name = name;
  patch.description = description;
  patch.topic = topic;
  patch.category = category;
  patch.is_public = is_public;
  CHORUS_STORE(room, ctx.store.update_room(v.room.id, patch));
  room_notice n{room_notice::room_updated,
                room.id,
                me.user_id,
                protocol::encode_room_updated(room.id, json::serialize(room_json(room))),
                {},
                access_of(room)};
  ctx.notify(std::move(n));
  return json_response(200, room_json(room));
}

expected<http_response> delete_room(request_scope& rq, const caller& me, const params& p) {
  auto& ctx = rq.ctx();
  CHORUS_TRY(v, view_room(ctx, p[0], me));
  if (auto f = require(v, action::delete_room)) return *f;
  CHORUS_STORE(gone, ctx.store.delete_room(v.room.id));
  spdlog::info("api: user {} deleted room {}", me.user_id, v.room.id);
  ctx.notify(room_notice{
      room_notice::room_deleted, v.room.id, me.user_id, protocol::encode_room_deleted(v.room.id), {}, {}});
  return no_content();
}

// ---- members ----

expected<http_response> list_members(request_scope& rq, const caller& me, const params& p) {
  auto& ctx = rq.ctx();
  CHORUS_TRY(v, view_room(ctx, p[0], me));
  CHORUS_TRY(limit, limit_param(rq.req()));
  auto cursor = query_param(rq.req().query, "cursor").value_or("");
  CHORUS_STORE(members, ctx.store.list_members(v.room.id, cursor, limit));
  return json_response(200, page_json(members, [&](const storage::member_row& m) {
                         return member_json(m, m.user_id == me.user_id);
                       }));
}

expected<http_response> add_member(request_scope& rq, const caller& me, const params& p) {
  auto& ctx = rq.ctx();
  CHORUS_TRY(v, view_room(ctx, p[0], me));
  CHORUS_TRY(body, body_object(rq.req()));
  if (auto f = only_fields(body, {"user_id", "role"})) return *f;
  CHORUS_TRY(user_id, string_field(body, "user_id", true, 64, 1));
  CHORUS_TRY(role_text, string_field(body, "role", false, 16));
  auto role = member_role::member;
  if (role_text) {
    auto parsed = storage::parse_member_role(*role_text);
    if (!parsed) return fail(error_code::bad_request, "role must be owner, admin, moderator or member");
    role = *parsed;
  }
  *user_id = lower(std::move(*user_id));  // user ids are lower-case UUIDs, whatever case the client sent
  bool self_join = *user_id == me.user_id;
  if (self_join) {
    if (v.me) return fail(error_code::conflict, "already a member");
    if (role != member_role::member)
      return fail(error_code::forbidden, "not allowed: joining members start as member");
    if (auto f = require(v, action::join_public)) return *f;
  } else {
    // A room has one owner: ownership moves by PATCHing a member's role, which steps the owner down.
    if (role == member_role::owner)
      return fail(error_code::forbidden, "not allowed: make a member owner with PATCH .../members/{user_id}");
    target t;
    t.new_role = role;  // the rank the new member gets
    if (auto f = require(v, action::add_member, &t)) return *f;
    if (role != member_role::member) {
      // Adding someone above plain member is adding and promoting: the adder must be allowed both.
      t.member_role = member_role::member;
      if (auto f = require(v, action::change_role, &t)) return *f;
    }
  }
  CHORUS_STORE(member, ctx.store.add_member(v.room.id, *user_id, role));
  ctx.notify(room_notice{room_notice::member_joined,
                         v.room.id,
                         member.user_id,
                         protocol::encode_member_joined(v.room.id, member.user_id),
                         member,
                         {}});
  return json_response(201, member_json(member, self_join));
}

expected<storage::member_row> target_member(api_context& ctx, const room_view& v, const std::string& user) {
  auto m = ctx.store.get_member(v.room.id, user);
  if (auto* f = std::get_if<store_failure>(&m)) return from_store(*f);
  return std::move(std::get<storage::member_row>(m));
}

/// The memberships a decision about `member` was made on: the caller's (if a member) and the target's. The
/// store writes the change only if both are still so.
std::vector<storage::member_row> seen_by(const room_view& v, const storage::member_row& member) {
  std::vector<storage::member_row> seen{member};
  if (v.me && v.me->user_id != member.user_id) seen.push_back(*v.me);
  return seen;
}

expected<http_response> remove_member(request_scope& rq, const caller& me, const params& p) {
  auto& ctx = rq.ctx();
  CHORUS_TRY(v, view_room(ctx, p[0], me));
  CHORUS_TRY(member, target_member(ctx, v, p[1]));
  if (member.user_id == me.user_id) {
    if (auto f = require(v, action::leave)) return *f;
  } else {
    target t;
    t.member_role = member.role;
    if (auto f = require(v, action::remove_member, &t)) return *f;
  }
  CHORUS_STORE(gone, ctx.store.remove_member(v.room.id, member.user_id, seen_by(v, member)));
  ctx.notify(room_notice{room_notice::member_left,
                         v.room.id,
                         member.user_id,
                         protocol::encode_member_left(v.room.id, member.user_id),
                         member,
                         {}});
  return no_content();
}

/// A permission list; absent or null keeps `current`, so a PATCH changes only what it names.
expected<storage::permission_mask> mask_field(const json::object& o, std::string_view key,
                                              storage::permission_mask current) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return current;
  if (!it->value().is_array())
    return fail(error_code::bad_request, std::string(key) + " must be an array of permission names");
  storage::permission_mask mask = 0;
  for (const auto& v : it->value().as_array()) {
    if (!v.is_string())
      return fail(error_code::bad_request, std::string(key) + " must be an array of permission names");
    auto perm = parse_permission(v.as_string());
    if (!perm)
      return fail(error_code::bad_request, std::string(key) + ": unknown permission '" +
                                               std::string(v.as_string()).substr(0, 32) + "'");
    mask |= mask_of(*perm);
  }
  return mask;
}

expected<http_response> patch_member(request_scope& rq, const caller& me, const params& p) {
  auto& ctx = rq.ctx();
  CHORUS_TRY(v, view_room(ctx, p[0], me));
  CHORUS_TRY(member, target_member(ctx, v, p[1]));
  CHORUS_TRY(body, body_object(rq.req()));
  if (auto f = only_fields(body, {"role", "granted", "revoked"})) return *f;
  CHORUS_TRY(role_text, string_field(body, "role", false, 16));
  std::optional<member_role> role;
  if (role_text) {
    role = storage::parse_member_role(*role_text);
    if (!role) return fail(error_code::bad_request, "role must be owner, admin, moderator or member");
  }
  auto named = [&](std::string_view key) { return body.contains(key) && !body.at(key).is_null(); };
  bool masks = named("granted") || named("revoked");
  CHORUS_TRY(granted, mask_field(body, "granted", member.granted));
  CHORUS_TRY(revoked, mask_field(body, "revoked", member.revoked));
  if (!role && !masks) return fail(error_code::bad_request, "give role, granted or revoked");
  target t;
  t.member_role = member.role;
  t.is_self = member.user_id == me.user_id;
  if (role) {
    t.new_role = *role;
    if (auto f = require(v, action::change_role, &t)) return *f;
  }
  if (masks) {
    t.new_role.reset();
    t.changed_bits = (granted ^ member.granted) | (revoked ^ member.revoked);
    if (auto f = require(v, action::set_permissions, &t)) return *f;
  }
  // Both changes are checked before either is written, and written in one transaction: a refused or
  // failed request leaves the member unchanged. A transfer of ownership makes the old owner an admin there.
  storage::member_change change{role, std::nullopt};
  if (masks) change.overrides.emplace(granted, revoked);
  CHORUS_STORE(changed,
               ctx.store.change_member(v.room.id, me.user_id, member.user_id, change, seen_by(v, member)));
  member = std::move(changed.first);
  if (changed.second) {
    ctx.notify(room_notice{room_notice::member_updated,
                           v.room.id,
                           me.user_id,
                           protocol::encode_member_updated(v.room.id, me.user_id, "admin"),
                           *changed.second,
                           {}});
  }
  ctx.notify(
      room_notice{room_notice::member_updated,
                  v.room.id,
                  member.user_id,
                  protocol::encode_member_updated(v.room.id, member.user_id, storage::to_string(member.role)),
                  member,
                  {}});
  return json_response(200, member_json(member, t.is_self));
}

expected<http_response> patch_settings(request_scope& rq, const caller& me, const params& p) {
  auto& ctx = rq.ctx();
  CHORUS_TRY(v, view_room(ctx, p[0], me));
  if (!v.me) return fail(error_code::forbidden, "not allowed: not_member");
  CHORUS_TRY(body, body_object(rq.req()));
  if (auto f = only_fields(body, {"muted", "archived", "pinned"})) return *f;
  storage::member_settings_patch patch;
  CHORUS_TRY(muted, bool_field(body, "muted"));
  CHORUS_TRY(archived, bool_field(body, "archived"));
  CHORUS_TRY(pinned, bool_field(body, "pinned"));
  patch.muted = muted;
  patch.archived = archived;
  patch.pinned = pinned;
  CHORUS_STORE(member, ctx.store.set_settings(v.room.id, me.user_id, patch));
  return json_response(200, member_json(member, true));
}

expected<http_response> mark_read(request_scope& rq, const caller& me, const params& p) {
  auto& ctx = rq.ctx();
  CHORUS_TRY(v, view_room(ctx, p[0], me));
  if (!v.me) return fail(error_code::forbidden, "not allowed: not_member");
  CHORUS_TRY(body, body_object(rq.req()));
  if (auto f = only_fields(body, {"seq"})) return *f;
  auto it = body.find("seq");
  if (it == body.end() ||
      !(it->value().is_uint64() || (it->value().is_int64() && it->value().as_int64() >= 0)))
    return fail(error_code::bad_request, "seq is required and must be a non-negative integer");
  auto seq =
      it->value().is_uint64() ? it->value().as_uint64() : static_cast<std::uint64_t>(it->value().as_int64());
  CHORUS_STORE(now, ctx.store.mark_read(v.room.id, me.user_id, seq));
  return json_response(200, json::object{{"last_read_seq", now},
                                         {"unread", v.room.last_seq > now ? v.room.last_seq - now : 0}});
}

const std::vector<route>& table() {
  static const std::vector<route> routes{
      {{"POST", "/api/v1/auth/register"}, do_register},
      {{"POST", "/api/v1/auth/login"}, do_login},
      {{"POST", "/api/v1/auth/refresh"}, do_refresh},
      {{"POST", "/api/v1/auth/logout"}, do_logout},
      {{"GET", "/api/v1/users/me"}, authed<get_me>},
      {{"PATCH", "/api/v1/users/me"}, authed<patch_me>},
      {{"DELETE", "/api/v1/users/me"}, authed<delete_me>},
      {{"GET", "/api/v1/users"}, authed<search_users>},
      {{"GET", "/api/v1/users/{id}"}, authed<get_user>},
      {{"POST", "/api/v1/rooms"}, authed<create_room>},
      {{"GET", "/api/v1/rooms"}, authed<list_rooms>},
      {{"GET", "/api/v1/rooms/{id}"}, authed<get_room>},
      {{"PATCH", "/api/v1/rooms/{id}"}, authed<patch_room>},
      {{"DELETE", "/api/v1/rooms/{id}"}, authed<delete_room>},
      {{"GET", "/api/v1/rooms/{id}/members"}, authed<list_members>},
      {{"POST", "/api/v1/rooms/{id}/members"}, authed<add_member>},
      {{"PATCH", "/api/v1/rooms/{id}/members/{user_id}"}, authed<patch_member>},
      {{"DELETE", "/api/v1/rooms/{id}/members/{user_id}"}, authed<remove_member>},
      {{"PATCH", "/api/v1/rooms/{id}/settings"}, authed<patch_settings>},
      {{"POST", "/api/v1/rooms/{id}/read"}, authed<mark_read>},
  };
  return routes;
}

std::vector<std::string_view> segments(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash);
  }
  return out;
}

/// Matches `path` against `pattern`; literal segments win over placeholders (so /users/me is not
/// /users/{id}).
std::optional<params> match(std::string_view pattern, const std::vector<std::string_view>& path) {
  auto pat = segments(pattern);
  if (pat.size() != path.size()) return std::nullopt;
  params out;
  for (std::size_t i = 0; i < pat.size(); ++i) {
    if (pat[i].starts_with('{')) {
      auto value = percent_decode(path[i], false);
      if (value.empty() || value.size() > 128) return std::nullopt;
      out.push_back(std::move(value));
    } else if (pat[i] != path[i]) {
      return std::nullopt;
    }
  }
  return out;
}

}  // namespace

api_routes::api_routes(api_context ctx) : ctx_(std::move(ctx)) {}

const std::vector<route_spec>& api_routes::routes() {
  static const std::vector<route_spec> specs = [] {
    std::vector<route_spec> out;
    for (const auto& r : table()) out.push_back(r.spec);
    return out;
  }();
  return specs;
}

http_response api_routes::handle(const http_request& req) {
  auto path = segments(req.path);
  const route* found = nullptr;
  params found_params;
  std::string allowed;  // the methods the path serves, for a 405's Allow header
  std::size_t found_literals = 0;
  for (const auto& r : table()) {
    auto p = match(r.spec.pattern, path);
    if (!p) continue;
    if (r.spec.method != req.method) {
      if (allowed.find(r.spec.method) == std::string::npos)
        allowed += (allowed.empty() ? "" : ", ") + std::string(r.spec.method);
      continue;
    }
    // Prefer the route with the fewest placeholders: /users/me over /users/{id}.
    std::size_t literals = segments(r.spec.pattern).size() - p->size();
    if (found == nullptr || literals > found_literals) {
      found = &r;
      found_params = std::move(*p);
      found_literals = literals;
    }
  }
  if (found == nullptr) {
    if (!allowed.empty()) {
      auto res = error_response(fail(error_code::method_not_allowed, req.method + " is not served here"));
      res.headers.emplace_back("Allow", allowed);
      return res;
    }
    return error_response(fail(error_code::not_found, "no such route"));
  }
  request_scope rq(ctx_, req);
  try {
    return found->run(rq, found_params);
  } catch (const std::exception& e) {
    // Nothing below throws by design (stores and the limiter return values); this is the last line.
    spdlog::error("api: {} {} failed: {}", req.method, found->spec.pattern, e.what());
    return error_response(fail(error_code::internal, "internal error"));
  }
}

}  // namespace chorus::actors
