// Whole-node tests of accounts, rooms and permissions: the HTTP API and the WebSocket protocol together, on a
// real chorusd with PostgreSQL (and Redis when CHORUS_REDIS_URL is set), outside dev_mode.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <pqxx/pqxx>
#include <set>
#include <string_view>
#include <thread>

#include "actors/protocol.hpp"
#include "tests/integration/node_fixture.hpp"
#include "tests/support/frame_mutator.hpp"
#include "tests/support/http_client.hpp"

namespace chorus::testing {
namespace {

using ::testing::HasSubstr;

/// A registered, logged-in user.
struct account {
  std::string id;
  std::string username;
  std::string password;
  std::string access;
  std::string refresh;
};

class accounts_test : public node_test {
 protected:
  void SetUp() override { start(base_settings()); }

  static settings base_settings() {
    settings s{{"CHORUS_DEV_MODE", "0"},
               {"CHORUS_LOGIN_LOCKOUT_FAILURES", "3"},
               {"CHORUS_LOGIN_ATTEMPTS_PER_MINUTE", "1000"},
               {"CHORUS_REGISTRATIONS_PER_HOUR", "100000"},
               {"CHORUS_API_REQUESTS_PER_SECOND", "1000"},
               {"CHORUS_API_BURST", "1000"},
               {"CHORUS_MAX_BODY_BYTES", "8192"},
               {"CHORUS_SENDS_PER_SECOND", "1"},
               {"CHORUS_SENDS_BURST", "3"}};
    // Rate limits are shared through Redis when the run has one; the tests hold either way.
    if (const char* redis = std::getenv("CHORUS_REDIS_URL")) s["CHORUS_REDIS_URL"] = redis;
    return s;
  }

  /// Usernames unique per test, so that one database serves every test of the process.
  std::string unique(const std::string& base) {
    static int counter = 0;
    return base + std::to_string(::getpid() % 100000) + "_" + std::to_string(++counter);
  }

  http_result api(const std::string& method, const std::string& target, const json::value& body = nullptr,
                  const std::string& token = {}) {
    std::vector<std::pair<std::string, std::string>> headers{{"Content-Type", "application/json"}};
    if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
    return http_call(node_->port(), method, target, body.is_null() ? std::string{} : json::serialize(body),
                     headers);
  }

  static json::object body_of(const http_result& r) {
    auto v = json::parse(r.body);
    EXPECT_TRUE(v.is_object()) << r.body;
    return v.is_object() ? v.as_object() : json::object{};
  }

  static std::string txt(const json::value& v) {
    return v.is_string() ? std::string(v.as_string()) : json::serialize(v);
  }

  static std::string code_of(const http_result& r) {
    if (r.body.empty()) return "(empty body, status " + std::to_string(r.status) + ")";
    auto o = body_of(r);
    if (!o.contains("error")) return "(no error: " + r.body + ")";
    return std::string(o.at("error").at("code").as_string());
  }

  account make_account(const std::string& base) {
    account a;
    a.username = unique(base);
    a.password = "correct horse " + a.username;
    auto reg =
        api("POST", "/api/v1/auth/register",
            json::object{
                {"username", a.username}, {"email", a.username + "@example.test"}, {"password", a.password}});
    EXPECT_EQ(reg.status, 201u) << reg.body;
    a.id = std::string(body_of(reg).at("user").at("id").as_string());
    auto login =
        api("POST", "/api/v1/auth/login", json::object{{"login", a.username}, {"password", a.password}});
    EXPECT_EQ(login.status, 200u) << login.body;
    auto o = body_of(login);
    a.access = std::string(o.at("access_token").as_string());
    a.refresh = std::string(o.at("refresh_token").as_string());
    return a;
  }

  std::string make_room(const account& owner, const std::string& kind, std::vector<std::string> members = {},
                        bool is_public = false) {
    json::array ids;
    for (auto& m : members) ids.emplace_back(m);
    json::object body{{"kind", kind}, {"members", ids}};
    if (kind != "direct") {
      body["name"] = unique("room");
      body["public"] = is_public;
    }
    auto r = api("POST", "/api/v1/rooms", body, owner.access);
    EXPECT_EQ(r.status, 201u) << r.body;
    return r.status == 201 ? std::string(body_of(r).at("id").as_string()) : std::string{};
  }

  /// A WebSocket client authenticated with an account's access token.
  std::unique_ptr<ws_client> ws_for(const account& a) {
    ws_client::options opts;
    opts.bearer = a.access;
    auto c = ws_client::connect(node_->port(), opts);
    auto hello = c->next();
    EXPECT_TRUE(hello && hello->at("ev") == "hello");
    return c;
  }

  /// One value from the database, as text; for checking that a refused request changed nothing.
  static std::string sql(const std::string& query) {
    pqxx::connection c{test_database::instance().url()};
    pqxx::nontransaction tx{c};
    auto r = tx.exec(query);
    return r.empty() || r[0][0].is_null() ? std::string("(null)") : r[0][0].c_str();
  }

  static std::string role_in(const std::string& room, const std::string& user) {
    return sql("SELECT coalesce((SELECT role FROM room_members WHERE room_id = '" + room +
               "' AND user_id = '" + user + "'), '(none)')");
  }
};

// ---- accounts and tokens ----

TEST_F(accounts_test, register_login_profile_and_last_seen) {
  auto a = make_account("alice");
  auto me = api("GET", "/api/v1/users/me", nullptr, a.access);
  ASSERT_EQ(me.status, 200u) << me.body;
  EXPECT_EQ(txt(body_of(me).at("username")), a.username);
  EXPECT_EQ(txt(body_of(me).at("email")), a.username + "@example.test");

  auto patched =
      api("PATCH", "/api/v1/users/me",
          json::object{{"display_name", "Alice A."}, {"status", "busy"}, {"about", "hi"}}, a.access);
  ASSERT_EQ(patched.status, 200u) << patched.body;
  EXPECT_EQ(body_of(patched).at("status"), "busy");

  auto b = make_account("bob");
  auto seen = api("GET", "/api/v1/users/" + a.id, nullptr, b.access);
  ASSERT_EQ(seen.status, 200u);
  EXPECT_EQ(body_of(seen).at("display_name"), "Alice A.");
  EXPECT_FALSE(body_of(seen).contains("email")) << "another user's email is private";

  // Invisible looks offline to others.
  api("PATCH", "/api/v1/users/me", json::object{{"status", "invisible"}}, a.access);
  EXPECT_EQ(body_of(api("GET", "/api/v1/users/" + a.id, nullptr, b.access)).at("status"), "offline");
  EXPECT_EQ(body_of(api("GET", "/api/v1/users/me", nullptr, a.access)).at("status"), "invisible");

  auto search =
      api("GET", "/api/v1/users?q=" + a.username.substr(0, a.username.size() - 1), nullptr, b.access);
  ASSERT_EQ(search.status, 200u);
  bool found = false;
  auto page = body_of(search);
  for (auto& u : page.at("items").as_array()) found |= u.at("id").as_string() == a.id;
  EXPECT_TRUE(found) << search.body;
}

TEST_F(accounts_test, duplicate_usernames_and_emails_conflict_ignoring_case) {
  auto a = make_account("carol");
  auto upper = a.username;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto r =
      api("POST", "/api/v1/auth/register",
          json::object{{"username", upper}, {"email", "other@example.test"}, {"password", "long enough pw"}});
  EXPECT_EQ(r.status, 409u);
  EXPECT_EQ(code_of(r), "conflict");
  EXPECT_EQ(sql("SELECT count(*) FROM users WHERE lower(username) = lower('" + a.username + "')"), "1");
}

TEST_F(accounts_test, refresh_rotates_and_reuse_revokes_the_family) {
  auto a = make_account("dave");
  auto first = api("POST", "/api/v1/auth/refresh", json::object{{"refresh_token", a.refresh}});
  ASSERT_EQ(first.status, 200u) << first.body;
  auto second_token = std::string(body_of(first).at("refresh_token").as_string());
  EXPECT_NE(second_token, a.refresh);

  // The first token again: theft suspected, so the whole family (the new token too) is revoked.
  auto reuse = api("POST", "/api/v1/auth/refresh", json::object{{"refresh_token", a.refresh}});
  EXPECT_EQ(reuse.status, 401u);
  EXPECT_EQ(code_of(reuse), "invalid_token");
  auto after = api("POST", "/api/v1/auth/refresh", json::object{{"refresh_token", second_token}});
  EXPECT_EQ(after.status, 401u) << "the rotated-to token belongs to the revoked family";
}

TEST_F(accounts_test, logout_revokes_the_refresh_token) {
  auto a = make_account("erin");
  EXPECT_EQ(api("POST", "/api/v1/auth/logout", json::object{{"refresh_token", a.refresh}}).status, 204u);
  auto r = api("POST", "/api/v1/auth/refresh", json::object{{"refresh_token", a.refresh}});
  EXPECT_EQ(r.status, 401u);
  EXPECT_EQ(code_of(r), "invalid_token");
}

TEST_F(accounts_test, forged_expired_wrong_secret_and_missing_tokens_are_refused) {
  auto a = make_account("frank");
  struct {
    std::string token;
    unsigned status;
    std::string code;
  } cases[] = {
      {"", 401, "auth_required"},
      {"not.a.jwt", 401, "invalid_token"},
      {token_for(a.id, 3600, std::string(40, 'x')), 401, "invalid_token"},  // wrong secret
      {token_for(a.id, -10), 401, "token_expired"},
      {a.access.substr(0, a.access.size() - 2) + "AA", 401, "invalid_token"},  // tampered signature
  };
  for (auto& c : cases) {
    auto r = api("GET", "/api/v1/users/me", nullptr, c.token);
    EXPECT_EQ(r.status, c.status) << c.token;
    EXPECT_EQ(code_of(r), c.code) << c.token;
    EXPECT_EQ(r.headers["www-authenticate"], "Bearer") << c.token;
  }
  // The login's and the refresh token's 401s name the scheme too.
  auto login = api("POST", "/api/v1/auth/login", json::object{{"login", a.username}, {"password", "wrong"}});
  EXPECT_EQ(login.status, 401u);
  EXPECT_EQ(login.headers["www-authenticate"], "Bearer");
  auto refresh = api("POST", "/api/v1/auth/refresh", json::object{{"refresh_token", "not-one-of-ours"}});
  EXPECT_EQ(refresh.status, 401u);
  EXPECT_EQ(refresh.headers["www-authenticate"], "Bearer");
}

TEST_F(accounts_test, a_deleted_users_token_stops_working) {
  auto a = make_account("gina");
  EXPECT_EQ(api("DELETE", "/api/v1/users/me", nullptr, a.access).status, 204u);
  auto r = api("GET", "/api/v1/users/me", nullptr, a.access);
  EXPECT_EQ(r.status, 401u);
  EXPECT_EQ(code_of(r), "invalid_token");
  auto login =
      api("POST", "/api/v1/auth/login", json::object{{"login", a.username}, {"password", a.password}});
  EXPECT_EQ(login.status, 401u);
  EXPECT_EQ(api("POST", "/api/v1/auth/refresh", json::object{{"refresh_token", a.refresh}}).status, 401u);
}

TEST_F(accounts_test, login_brute_force_hits_the_lockout) {
  auto a = make_account("hank");
  for (int i = 0; i < 2; ++i) {
    auto r = api("POST", "/api/v1/auth/login",
                 json::object{{"login", a.username}, {"password", "wrong password"}});
    EXPECT_EQ(r.status, 401u);
    EXPECT_EQ(code_of(r), "invalid_credentials");
  }
  auto locked =
      api("POST", "/api/v1/auth/login", json::object{{"login", a.username}, {"password", "wrong again"}});
  EXPECT_EQ(locked.status, 429u);
  EXPECT_EQ(code_of(locked), "account_locked");
  EXPECT_TRUE(locked.headers.count("retry-after")) << "a lockout says when to retry";
  // Even the right password is refused while locked.
  auto right =
      api("POST", "/api/v1/auth/login", json::object{{"login", a.username}, {"password", a.password}});
  EXPECT_EQ(right.status, 429u);
  EXPECT_EQ(code_of(right), "account_locked");
}

// ---- bad input ----

TEST_F(accounts_test, a_room_id_that_cannot_exist_is_not_found) {
  auto a = make_account("roomless");
  // Percent-encoded bytes that are not UTF-8, a NUL, characters no room id has: no such room.
  for (const std::string& id :
       std::vector<std::string>{"%FF", "%C3%28", "a%00b", "x%20y", std::string(65, 'a')}) {
    for (const char* method : {"GET", "PATCH", "DELETE"}) {
      auto r = api(
          method, "/api/v1/rooms/" + id,
          std::string(method) == "PATCH" ? json::value(json::object{{"name", "n"}}) : json::value(nullptr),
          a.access);
      EXPECT_EQ(r.status, 404u) << method << " " << id << ": " << r.body;
      EXPECT_EQ(code_of(r), "not_found") << method << " " << id;
    }
    auto members = api("GET", "/api/v1/rooms/" + id + "/members", nullptr, a.access);
    EXPECT_EQ(members.status, 404u) << id << ": " << members.body;
  }
}

TEST_F(accounts_test, malformed_oversize_and_mistyped_bodies_change_nothing) {
  auto users_before = sql("SELECT count(*) FROM users");
  struct {
    std::string body;
    unsigned status;
    std::string code;
  } cases[] = {
      {"{not json", 400, "malformed_json"},
      {"[1,2]", 400, "not_an_object"},
      {R"({"username":5,"email":"x@y.z","password":"long enough"})", 400, "bad_request"},
      {R"({"username":"ok_name","email":"no-at-sign","password":"long enough"})", 400, "bad_request"},
      {R"({"username":"ok_name","email":"x@y.z","password":"short"})", 400, "bad_request"},
      {R"({"username":"a b","email":"x@y.z","password":"long enough"})", 400, "bad_request"},
      {R"({"username":"ok_name","email":"x@y.z","password":"long enough","admin":true})", 400, "bad_request"},
      {"{\"username\":\"" + std::string(40, 'u') + "\",\"email\":\"x@y.z\",\"password\":\"long enough\"}",
       400, "bad_request"},
      {"{\"username\":\"big\",\"pad\":\"" + std::string(9000, 'p') + "\"}", 413, "payload_too_large"},
  };
  for (auto& c : cases) {
    auto r = http_call(node_->port(), "POST", "/api/v1/auth/register", c.body,
                       {{"Content-Type", "application/json"}});
    EXPECT_EQ(r.status, c.status) << c.body.substr(0, 80);
    EXPECT_EQ(code_of(r), c.code) << c.body.substr(0, 80);
  }
  EXPECT_EQ(sql("SELECT count(*) FROM users"), users_before);
  // The node is fine afterwards.
  EXPECT_EQ(http_get(node_->port(), "/healthz").status, 200u);
}

TEST_F(accounts_test,
       a_storm_of_broken_bodies_gets_client_errors_with_known_codes_and_creates_only_what_succeeded) {
  auto owner = make_account("storm");
  auto other = make_account("storm_other");
  const auto room = make_room(owner, "group", {other.id});
  struct route {
    std::string method, target, body;
  };
  const std::vector<route> corpus = {
      {"POST", "/api/v1/auth/register",
       json::serialize(json::object{{"username", unique("stormy")},
                                    {"email", unique("stormy") + "@example.test"},
                                    {"password", "correct horse battery"},
                                    {"display_name", "Stormy"}})},
      {"POST", "/api/v1/auth/login", R"({"login":"nobody_at_all","password":"correct horse battery"})"},
      {"POST", "/api/v1/auth/refresh", R"({"refresh_token":"3q2-7wVx9kQm1ZpL0aB4cD8eF6gH2jK5nR7sT9uW1yA"})"},
      {"PATCH", "/api/v1/users/me",
       R"({"display_name":"Alice","status":"away","avatar_url":"https://e.test/a.png"})"},
      {"POST", "/api/v1/rooms",
       R"({"kind":"group","name":"Tea","description":"Mad","topic":"Ravens","public":true,"members":[]})"},
      {"PATCH", "/api/v1/rooms/" + room, R"({"topic":"Change places!","public":false})"},
      {"POST", "/api/v1/rooms/" + room + "/members", R"({"user_id":")" + other.id + R"(","role":"member"})"},
      {"PATCH", "/api/v1/rooms/" + room + "/members/" + other.id,
       R"({"role":"moderator","granted":["edit_room"],"revoked":["delete_messages"]})"},
      {"PATCH", "/api/v1/rooms/" + room + "/settings", R"({"muted":true,"pinned":false})"},
      {"POST", "/api/v1/rooms/" + room + "/read", R"({"seq":0})"},
  };
  // A request's own fields get the wrong values; an unknown field is refused whatever its value.
  std::vector<std::string> names;
  auto fields_of = [&names](const std::string& body) {
    names.clear();
    const json::value doc = json::parse(body);
    for (const auto& field : doc.as_object()) names.emplace_back(field.key());
    return std::vector<std::string_view>(names.begin(), names.end());
  };
  std::set<std::string> known_codes;
  for (int c = 0; c <= static_cast<int>(protocol::error_code::internal); ++c)
    known_codes.insert(std::string(protocol::to_string(static_cast<protocol::error_code>(c))));
  known_codes.erase("internal");

  const auto users_before = std::stoll(sql("SELECT count(*) FROM users"));
  const auto rooms_before = std::stoll(sql("SELECT count(*) FROM rooms"));
  int users_made = 0;
  int rooms_made = 0;
  int succeeded = 0;
  std::map<unsigned, int> refused;  // by status
  test::rng gen(5);
  for (int i = 0; i < 500 && !HasFatalFailure(); ++i) {
    const auto& r = corpus[test::pick(gen, corpus.size())];
    const std::string body = test::pick(gen, 2) == 0 ? test::mutate_fields(r.body, gen, fields_of(r.body))
                                                     : test::mutate_bytes(r.body, gen);
    SCOPED_TRACE(r.method + " " + r.target + " " + body.substr(0, 200));
    auto res = http_call(node_->port(), r.method, r.target, body,
                         {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + owner.access}});
    ASSERT_GE(res.status, 200u) << res.body;
    ASSERT_LT(res.status, 500u) << res.body;
    if (res.status >= 400) {
      ++refused[res.status];
      EXPECT_TRUE(known_codes.count(code_of(res))) << res.status << " " << res.body;
      continue;
    }
    ++succeeded;
    if (res.status == 201 && r.target == "/api/v1/auth/register") {
      ++users_made;
    } else if (res.status == 201 && r.target == "/api/v1/rooms") {
      ++rooms_made;
    }
  }
  // What was refused left nothing behind; the node and the owner's session work as before.
  EXPECT_EQ(std::stoll(sql("SELECT count(*) FROM users")), users_before + users_made);
  EXPECT_EQ(std::stoll(sql("SELECT count(*) FROM rooms")), rooms_before + rooms_made);
  EXPECT_EQ(api("GET", "/api/v1/users/me", nullptr, owner.access).status, 200u);
  EXPECT_EQ(http_get(node_->port(), "/healthz").status, 200u);
  // The storm reached past the parser: some requests succeeded, and several kinds of refusal came back.
  EXPECT_GT(succeeded, 10);
  EXPECT_GE(refused.size(), 3u);
  EXPECT_GT(refused[400], 50);
}

TEST_F(accounts_test, sql_metacharacters_and_long_text_round_trip_as_plain_text) {
  auto a = make_account("ivy");
  std::string evil = "Robert'); DROP TABLE users;-- \\ \" % _ \xF0\x9F\x98\x80";
  auto r = api("PATCH", "/api/v1/users/me",
               json::object{{"display_name", evil}, {"about", std::string(2000, 'a')}}, a.access);
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(txt(body_of(api("GET", "/api/v1/users/me", nullptr, a.access)).at("display_name")), evil);
  auto too_long = api("PATCH", "/api/v1/users/me", json::object{{"about", std::string(2001, 'a')}}, a.access);
  EXPECT_EQ(too_long.status, 400u);
  auto room = api("POST", "/api/v1/rooms", json::object{{"kind", "group"}, {"name", evil}, {"topic", "'%_"}},
                  a.access);
  ASSERT_EQ(room.status, 201u) << room.body;
  EXPECT_EQ(txt(body_of(room).at("name")), evil);
  EXPECT_EQ(sql("SELECT count(*) > 0 FROM users"), "t");
  // A search with LIKE wildcards matches them literally, not everyone.
  auto search = api("GET", "/api/v1/users?q=%25", nullptr, a.access);
  ASSERT_EQ(search.status, 200u);
  EXPECT_TRUE(body_of(search).at("items").as_array().empty()) << search.body;
}

// ---- rooms and permissions ----

TEST_F(accounts_test, user_ids_in_capitals_name_the_same_users) {
  auto ann = make_account("ann");
  auto bob = make_account("bob");
  auto upper = [](std::string id) {
    for (auto& c : id) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return id;
  };
  // Her own id among the members, in capitals: she is still the room's owner, and bob is in it.
  auto made =
      api("POST", "/api/v1/rooms",
          json::object{{"kind", "group"},
                       {"name", unique("caps")},
                       {"public", true},
                       {"members", json::array{json::string(upper(ann.id)), json::string(upper(bob.id))}}},
          ann.access);
  ASSERT_EQ(made.status, 201u) << made.body;
  const auto room = txt(body_of(made).at("id"));
  EXPECT_EQ(role_in(room, ann.id), "owner");
  EXPECT_EQ(role_in(room, bob.id), "member");
  // Joining a public room under one's own id in capitals is joining it.
  auto cid = make_account("cid");
  auto joined =
      api("POST", "/api/v1/rooms/" + room + "/members", json::object{{"user_id", upper(cid.id)}}, cid.access);
  EXPECT_EQ(joined.status, 201u) << joined.body;
  EXPECT_EQ(role_in(room, cid.id), "member");
}

TEST_F(accounts_test, direct_rooms_are_unique_per_pair_and_closed_to_others) {
  auto a = make_account("jo");
  auto b = make_account("kim");
  auto c = make_account("lee");
  auto room = make_room(a, "direct", {b.id});
  auto again = api("POST", "/api/v1/rooms", json::object{{"kind", "direct"}, {"members", json::array{a.id}}},
                   b.access);
  EXPECT_EQ(again.status, 409u);
  EXPECT_EQ(txt(body_of(again).at("error").at("room_id")), room);

  auto add = api("POST", "/api/v1/rooms/" + room + "/members", json::object{{"user_id", c.id}}, a.access);
  EXPECT_EQ(add.status, 403u);
  EXPECT_EQ(code_of(add), "forbidden");
  EXPECT_EQ(role_in(room, c.id), "(none)");

  // Not a member of a private room: it does not exist as far as c can tell.
  EXPECT_EQ(api("GET", "/api/v1/rooms/" + room, nullptr, c.access).status, 404u);
  // Either member may delete it.
  EXPECT_EQ(api("DELETE", "/api/v1/rooms/" + room, nullptr, b.access).status, 204u);
  EXPECT_EQ(api("GET", "/api/v1/rooms/" + room, nullptr, a.access).status, 404u);
}

TEST_F(accounts_test, group_members_add_users_but_only_the_owner_deletes) {
  auto owner = make_account("mo");
  auto member = make_account("ned");
  auto extra = make_account("oli");
  auto room = make_room(owner, "group", {member.id});
  auto add =
      api("POST", "/api/v1/rooms/" + room + "/members", json::object{{"user_id", extra.id}}, member.access);
  EXPECT_EQ(add.status, 201u) << add.body;
  EXPECT_EQ(role_in(room, extra.id), "member");

  auto del = api("DELETE", "/api/v1/rooms/" + room, nullptr, member.access);
  EXPECT_EQ(del.status, 403u);
  EXPECT_EQ(sql("SELECT deleted_at IS NULL FROM rooms WHERE id = '" + room + "'"), "t");
  EXPECT_EQ(api("DELETE", "/api/v1/rooms/" + room, nullptr, owner.access).status, 204u);
}

TEST_F(accounts_test, permissions_taken_away_stay_taken_after_leaving_and_joining_again) {
  auto owner = make_account("olga");
  auto loud = make_account("lou");
  auto room = make_room(owner, "group", {loud.id}, true);
  const auto url = "/api/v1/rooms/" + room + "/members/" + loud.id;
  ASSERT_EQ(api("PATCH", url, json::object{{"revoked", json::array{"create_messages"}}}, owner.access).status,
            200u);
  // Lou leaves the public room and joins it again, as anyone may.
  ASSERT_EQ(api("DELETE", url, nullptr, loud.access).status, 204u);
  auto back =
      api("POST", "/api/v1/rooms/" + room + "/members", json::object{{"user_id", loud.id}}, loud.access);
  ASSERT_EQ(back.status, 201u) << back.body;
  EXPECT_EQ(json::serialize(body_of(back).at("revoked")), R"(["create_messages"])");
  auto ws = ws_for(loud);
  join(*ws, room);
  EXPECT_EQ(error_code_of(call(*ws, {{"op", "send"}, {"room", room}, {"text", "I am back"}}, 2)),
            "forbidden");
  EXPECT_EQ(sql("SELECT count(*) FROM messages WHERE room = '" + room + "'"), "0");
  // What the owner gives back is given back.
  ASSERT_EQ(api("PATCH", url, json::object{{"revoked", json::array{}}}, owner.access).status, 200u);
  ASSERT_EQ(api("DELETE", url, nullptr, loud.access).status, 204u);
  back = api("POST", "/api/v1/rooms/" + room + "/members", json::object{{"user_id", loud.id}}, loud.access);
  ASSERT_EQ(back.status, 201u) << back.body;
  EXPECT_EQ(json::serialize(body_of(back).at("revoked")), "[]");
}

TEST_F(accounts_test, members_cannot_raise_themselves_and_moderators_cannot_remove_the_owner) {
  auto owner = make_account("pat");
  auto mod = make_account("quinn");
  auto member = make_account("ray");
  auto room = make_room(owner, "group", {mod.id, member.id});
  ASSERT_EQ(api("PATCH", "/api/v1/rooms/" + room + "/members/" + mod.id, json::object{{"role", "moderator"}},
                owner.access)
                .status,
            200u);

  auto raise = api("PATCH", "/api/v1/rooms/" + room + "/members/" + member.id,
                   json::object{{"role", "admin"}}, member.access);
  EXPECT_EQ(raise.status, 403u);
  auto perms = api("PATCH", "/api/v1/rooms/" + room + "/members/" + member.id,
                   json::object{{"granted", json::array{"delete_room"}}}, member.access);
  EXPECT_EQ(perms.status, 403u);
  EXPECT_EQ(role_in(room, member.id), "member");
  EXPECT_EQ(sql("SELECT granted FROM room_members WHERE room_id = '" + room + "' AND user_id = '" +
                member.id + "'"),
            "0");

  // Overrides a PATCH does not name, or names as null, stay as they are; naming nothing is a bad request.
  const auto member_url = "/api/v1/rooms/" + room + "/members/" + member.id;
  ASSERT_EQ(api("PATCH", member_url, json::object{{"revoked", json::array{"create_messages"}}}, owner.access)
                .status,
            200u);
  auto granted = api("PATCH", member_url,
                     json::object{{"granted", json::array{"edit_room"}}, {"revoked", nullptr}}, owner.access);
  ASSERT_EQ(granted.status, 200u) << granted.body;
  EXPECT_EQ(json::serialize(body_of(granted).at("revoked")), R"(["create_messages"])");
  EXPECT_EQ(json::serialize(body_of(granted).at("granted")), R"(["edit_room"])");
  auto nothing = api("PATCH", member_url, json::object{{"granted", nullptr}}, owner.access);
  EXPECT_EQ(nothing.status, 400u) << nothing.body;

  auto kick_owner = api("DELETE", "/api/v1/rooms/" + room + "/members/" + owner.id, nullptr, mod.access);
  EXPECT_EQ(kick_owner.status, 403u);
  EXPECT_EQ(role_in(room, owner.id), "owner");
  // A moderator may remove a plain member.
  EXPECT_EQ(api("DELETE", "/api/v1/rooms/" + room + "/members/" + member.id, nullptr, mod.access).status,
            204u);
  EXPECT_EQ(role_in(room, member.id), "(none)");
}

// ---- the same rules over WebSocket ----

TEST_F(accounts_test, a_room_always_has_one_owner_and_an_admin_cannot_give_what_was_taken_from_it) {
  auto owner = make_account("olga");
  auto admin = make_account("abe");
  auto member = make_account("mia");
  auto outsider = make_account("otto");
  auto room = make_room(owner, "group", {admin.id, member.id});
  const auto members_url = "/api/v1/rooms/" + room + "/members";
  ASSERT_EQ(api("PATCH", members_url + "/" + admin.id,
                json::object{{"role", "admin"}, {"revoked", json::array{"delete_messages"}}}, owner.access)
                .status,
            200u);

  // Adding someone straight in as owner would make two: refused, and nobody was added.
  auto second_owner =
      api("POST", members_url, json::object{{"user_id", outsider.id}, {"role", "owner"}}, owner.access);
  EXPECT_EQ(second_owner.status, 403u) << second_owner.body;
  EXPECT_EQ(role_in(room, outsider.id), "(none)");

  // The admin without delete_messages cannot appoint a moderator, who would have it.
  auto appoint =
      api("PATCH", members_url + "/" + member.id, json::object{{"role", "moderator"}}, admin.access);
  EXPECT_EQ(appoint.status, 403u) << appoint.body;
  EXPECT_EQ(role_in(room, member.id), "member");

  // Handing ownership over steps the owner down to admin; the room still has exactly one owner.
  auto transfer = api("PATCH", members_url + "/" + member.id, json::object{{"role", "owner"}}, owner.access);
  ASSERT_EQ(transfer.status, 200u) << transfer.body;
  EXPECT_EQ(role_in(room, member.id), "owner");
  EXPECT_EQ(role_in(room, owner.id), "admin");
  EXPECT_EQ(sql("SELECT count(*) FROM room_members WHERE room_id = '" + room + "' AND role = 'owner'"), "1");
}

TEST_F(accounts_test, websocket_join_of_unknown_or_private_rooms_is_not_found) {
  auto a = make_account("sam");
  auto b = make_account("tia");
  auto room = make_room(a, "group");
  auto c = ws_for(b);
  auto r = call(*c, {{"op", "join"}, {"room", room}}, 1);
  EXPECT_EQ(error_code_of(r), "not_found");
  auto unknown = call(*c, {{"op", "join"}, {"room", "no-such-room"}}, 2);
  EXPECT_EQ(error_code_of(unknown), "not_found");
  EXPECT_EQ(sql("SELECT count(*) FROM rooms WHERE id = 'no-such-room'"), "0")
      << "joining must not create rooms";
  expect_alive(*c);
}

TEST_F(accounts_test, channel_members_read_and_only_permitted_members_post) {
  auto owner = make_account("uma");
  auto reader = make_account("vic");
  auto room = make_room(owner, "channel", {reader.id});
  auto oc = ws_for(owner);
  auto rc = ws_for(reader);
  join(*oc, room);
  join(*rc, room);
  auto refused = call(*rc, {{"op", "send"}, {"room", room}, {"text", "may I?"}}, 2);
  EXPECT_EQ(error_code_of(refused), "forbidden");
  expect_ok(call(*oc, {{"op", "send"}, {"room", room}, {"text", "announcement"}}, 3));
  auto ev = rc->next_where([](const json::object& o) { return o.contains("ev") && o.at("ev") == "message"; });
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->at("d").at("text"), "announcement");
  EXPECT_EQ(sql("SELECT count(*) FROM messages WHERE room = '" + room + "'"), "1");

  // Granting create_messages lets the reader post; the room hears of it at once.
  ASSERT_EQ(api("PATCH", "/api/v1/rooms/" + room + "/members/" + reader.id,
                json::object{{"granted", json::array{"create_messages"}}}, owner.access)
                .status,
            200u);
  expect_ok(call(*rc, {{"op", "send"}, {"room", room}, {"text", "thanks"}}, 4));
}

TEST_F(accounts_test, member_changes_reach_connected_members_and_removal_ends_access) {
  auto owner = make_account("wes");
  auto member = make_account("xia");
  auto newcomer = make_account("yan");
  auto room = make_room(owner, "group", {member.id});
  auto oc = ws_for(owner);
  auto mc = ws_for(member);
  join(*oc, room);
  join(*mc, room);

  ASSERT_EQ(
      api("POST", "/api/v1/rooms/" + room + "/members", json::object{{"user_id", newcomer.id}}, owner.access)
          .status,
      201u);
  auto joined =
      mc->next_where([](const json::object& o) { return o.contains("ev") && o.at("ev") == "member_joined"; });
  ASSERT_TRUE(joined.has_value());
  EXPECT_EQ(txt(joined->at("d").at("user")), newcomer.id);

  ASSERT_EQ(api("DELETE", "/api/v1/rooms/" + room + "/members/" + member.id, nullptr, owner.access).status,
            204u);
  auto left =
      oc->next_where([](const json::object& o) { return o.contains("ev") && o.at("ev") == "member_left"; });
  ASSERT_TRUE(left.has_value());
  EXPECT_EQ(txt(left->at("d").at("user")), member.id);
  auto refused = call(*mc, {{"op", "send"}, {"room", room}, {"text", "still here?"}}, 5);
  EXPECT_EQ(error_code_of(refused), "not_joined");
  auto unread = call(*mc, {{"op", "history"}, {"room", room}, {"limit", 10}}, 6);
  EXPECT_EQ(error_code_of(unread), "not_joined") << "a removed member reads the room no more";
  EXPECT_EQ(sql("SELECT count(*) FROM messages WHERE room = '" + room + "'"), "0");

  ASSERT_EQ(api("DELETE", "/api/v1/rooms/" + room, nullptr, owner.access).status, 204u);
  auto deleted =
      oc->next_where([](const json::object& o) { return o.contains("ev") && o.at("ev") == "room_deleted"; });
  EXPECT_TRUE(deleted.has_value());
}

TEST_F(accounts_test, a_join_that_timed_out_while_the_room_loaded_leaves_no_trace_in_it) {
  auto ann = make_account("ann");
  auto bob = make_account("bob");
  auto room = make_room(ann, "group", {bob.id});
  {
    auto first = ws_for(ann);
    join(*first, room);
    expect_ok(call(*first, {{"op", "send"}, {"room", room}, {"text", "so that it has messages to load"}}, 2));
  }
  // A node that has not loaded the room yet.
  auto s = base_settings();
  s["CHORUS_REQUEST_TIMEOUT_MS"] = "1000";
  node_.reset();
  start(s);
  auto ac = ws_for(ann);
  auto bc = ws_for(bob);
  expect_alive(*ac);  // their accounts are checked before the tables lock
  expect_alive(*bc);

  // A room loads its members, then its messages. Each read is held up for 0.7 s here: less than a request
  // may wait, but both together longer than the session waits for the join.
  pqxx::connection members_conn{test_database::instance().url()};
  pqxx::connection messages_conn{test_database::instance().url()};
  pqxx::work hold_members{members_conn};
  hold_members.exec("LOCK TABLE room_members IN ACCESS EXCLUSIVE MODE");
  pqxx::work hold_messages{messages_conn};
  hold_messages.exec("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE");
  const auto asked_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(ac->send_json({{"op", "join"}, {"id", 1}, {"room", room}}));
  std::this_thread::sleep_for(700ms);
  hold_members.commit();
  auto refused = ac->next_where([](const json::object& o) { return o.contains("re") && o.at("re") == 1; });
  const auto answered_after = std::chrono::steady_clock::now() - asked_at;
  hold_messages.commit();
  ASSERT_TRUE(refused);
  EXPECT_EQ(error_code_of(*refused), "unavailable");
  EXPECT_LT(answered_after, 1400ms) << "the session waits request_timeout_ms (1 s) for the join";
  std::this_thread::sleep_for(300ms);  // the messages are read now, and the room has let the join in

  // The room let the join in once it had loaded, after the session had given up on it. Ann is not in the
  // room all the same: bob does not see her there, and his message does not reach her.
  auto joined = call(*bc, {{"op", "join"}, {"room", room}}, 2);
  expect_ok(joined);
  std::set<std::string> members;
  for (const auto& m : joined.at("d").at("members").as_array()) members.insert(txt(m.at("user")));
  EXPECT_EQ(members, (std::set<std::string>{bob.id})) << json::serialize(joined);
  expect_ok(call(*bc, {{"op", "send"}, {"room", room}, {"text", "for members"}}, 3));
  ASSERT_TRUE(ac->send_json({{"op", "ping"}, {"id", 4}}));
  for (;;) {
    auto frame = ac->next();
    ASSERT_TRUE(frame) << "no pong";
    if (frame->contains("re") && frame->at("re") == 4) break;
    EXPECT_FALSE(frame->contains("ev") && frame->at("ev") == "message")
        << "ann, whose join failed, got " << json::serialize(*frame);
  }
}

TEST_F(accounts_test, a_header_token_whose_account_cannot_be_checked_leaves_the_usual_time_to_authenticate) {
  auto ann = make_account("ann");
  auto s = base_settings();
  s["CHORUS_REQUEST_TIMEOUT_MS"] = "300";
  s["CHORUS_AUTH_TIMEOUT_MS"] = "2000";
  node_.reset();
  start(s);
  {
    // The account check waits on the lock past request_timeout_ms.
    pqxx::connection conn{test_database::instance().url()};
    pqxx::work hold_users{conn};
    hold_users.exec("LOCK TABLE users IN ACCESS EXCLUSIVE MODE");
    auto c = ws_for(ann);
    auto refused = c->next();
    ASSERT_TRUE(refused);
    EXPECT_EQ(error_code_of(*refused), "unavailable") << json::serialize(*refused);
    hold_users.commit();
    // Not authenticated, and no longer being checked: without an `auth` it is closed like any connection
    // that never authenticates.
    EXPECT_EQ(error_code_of(call(*c, {{"op", "join"}, {"room", "x"}}, 1)), "auth_required");
    EXPECT_EQ(c->wait_closed(5s), 4002);
  }
}

TEST_F(accounts_test, requests_past_the_burst_while_the_account_is_checked_are_refused_by_their_id) {
  auto ann = make_account("ann");
  auto s = base_settings();
  s["CHORUS_OPS_BURST"] = "5";
  node_.reset();
  start(s);
  pqxx::connection conn{test_database::instance().url()};
  pqxx::work hold_users{conn};
  hold_users.exec("LOCK TABLE users IN ACCESS EXCLUSIVE MODE");  // the account check waits
  auto c = ws_for(ann);
  for (std::int64_t id = 1; id <= 8; ++id) ASSERT_TRUE(c->send_json({{"op", "ping"}, {"id", id}}));
  // The five within the burst wait for the check; the three past it are refused at once, each by its id.
  for (std::int64_t id = 6; id <= 8; ++id) {
    auto refused = c->next();
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->contains("re") ? refused->at("re") : json::value(nullptr), id)
        << json::serialize(*refused);
    EXPECT_EQ(error_code_of(*refused), "rate_limited");
  }
  hold_users.commit();
  for (std::int64_t id = 1; id <= 5; ++id) {
    auto pong = c->next_where([](const json::object& o) { return o.contains("re"); });
    ASSERT_TRUE(pong);
    EXPECT_EQ(pong->at("re"), id);
    expect_ok(*pong);
  }
}

TEST_F(accounts_test, a_deleted_users_token_is_refused_on_the_websocket_too) {
  auto a = make_account("del");
  ASSERT_EQ(api("DELETE", "/api/v1/users/me", nullptr, a.access).status, 204u);
  auto c = ws_client::connect(node_->port(), {});
  ASSERT_TRUE(c->next());  // hello
  // Frames sent right behind the auth wait for the account check, then are refused with the connection.
  c->send_json({{"op", "auth"}, {"id", 1}, {"token", a.access}});
  c->send_json({{"op", "ping"}, {"id", 2}});
  auto reply = c->next_where([](const json::object& o) { return o.contains("re") && o.at("re") == 1; });
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(error_code_of(*reply), "invalid_token");
  EXPECT_EQ(c->wait_closed(), 4001);
}

TEST_F(accounts_test, invisible_users_send_no_presence_and_last_seen_follows_disconnects) {
  auto watcher = make_account("watch");
  auto hidden = make_account("hide");
  auto room = make_room(watcher, "group", {hidden.id});
  ASSERT_EQ(api("PATCH", "/api/v1/users/me", json::object{{"status", "invisible"}}, hidden.access).status,
            200u);
  auto wc = ws_for(watcher);
  join(*wc, room);
  {
    auto hc = ws_for(hidden);
    join(*hc, room, 2);  // frames sent right after header auth are held until the account is checked
    expect_ok(call(*hc, {{"op", "send"}, {"room", room}, {"text", "boo"}}, 3));
  }
  // The first presence or message event the watcher gets must be the message: no "online" before it...
  auto first = wc->next_where([](const json::object& o) {
    return o.contains("ev") && (o.at("ev") == "message" || o.at("ev") == "presence");
  });
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(txt(first->at("ev")), "message") << json::serialize(*first);
  // ...and no "offline" after the hidden user's connection closed.
  auto presence =
      wc->next_where([](const json::object& o) { return o.contains("ev") && o.at("ev") == "presence"; },
                     std::chrono::milliseconds(500));
  EXPECT_FALSE(presence.has_value()) << json::serialize(*presence);
  auto seen = body_of(api("GET", "/api/v1/users/" + hidden.id, nullptr, watcher.access));
  EXPECT_EQ(txt(seen.at("status")), "offline");
  EXPECT_TRUE(seen.at("last_seen").is_int64()) << json::serialize(seen);
}

TEST_F(accounts_test, with_redis_unreachable_the_node_counts_locally_and_keeps_serving) {
  start({{"CHORUS_DEV_MODE", "0"},
         {"CHORUS_REDIS_URL", "redis://127.0.0.1:1"},  // nothing listens on port 1
         {"CHORUS_LOGIN_LOCKOUT_FAILURES", "2"},
         {"CHORUS_SENDS_PER_SECOND", "1"},
         {"CHORUS_SENDS_BURST", "1"}});
  auto a = make_account("nored");
  auto room = make_room(a, "group");
  auto c = ws_for(a);
  join(*c, room);
  expect_ok(call(*c, {{"op", "send"}, {"room", room}, {"text", "one"}}, 2));
  EXPECT_EQ(error_code_of(call(*c, {{"op", "send"}, {"room", room}, {"text", "two"}}, 3)), "rate_limited");
  // The lockout still holds, counted by this node alone.
  for (int i = 0; i < 2; ++i)
    api("POST", "/api/v1/auth/login", json::object{{"login", a.username}, {"password", "wrong password"}});
  auto locked =
      api("POST", "/api/v1/auth/login", json::object{{"login", a.username}, {"password", a.password}});
  EXPECT_EQ(code_of(locked), "account_locked");
  EXPECT_NE(node_->output().find("Redis"), std::string::npos) << "the fallback is logged";
}

// Without Redis the sessions take the node's own buckets themselves: still one bucket per user, not one per
// connection.
TEST_F(accounts_test, without_redis_a_users_connections_on_one_node_share_one_send_rate) {
  start({{"CHORUS_DEV_MODE", "0"},
         {"CHORUS_REDIS_URL", ""},
         {"CHORUS_SENDS_PER_SECOND", "1"},
         {"CHORUS_SENDS_BURST", "2"}});
  auto a = make_account("solo");
  auto room = make_room(a, "group");
  auto first = ws_for(a);
  auto second = ws_for(a);
  join(*first, room);
  join(*second, room);
  expect_ok(call(*first, {{"op", "send"}, {"room", room}, {"text", "one"}}, 2));
  expect_ok(call(*second, {{"op", "send"}, {"room", room}, {"text", "two"}}, 2));
  auto over = call(*first, {{"op", "send"}, {"room", room}, {"text", "three"}}, 3);
  EXPECT_EQ(error_code_of(over), "rate_limited");
  ASSERT_TRUE(over.contains("error") && over.at("error").as_object().contains("retry_after_ms"));
  EXPECT_GT(over.at("error").at("retry_after_ms").to_number<std::int64_t>(), 0);
  EXPECT_EQ(sql("SELECT count(*) FROM messages WHERE room = '" + room + "'"), "2");
  expect_alive(*first);
  expect_alive(*second);
}

TEST_F(accounts_test, a_user_over_the_send_rate_gets_rate_limited_and_nothing_is_stored) {
  auto owner = make_account("zed");
  auto room = make_room(owner, "group");
  auto c = ws_for(owner);
  join(*c, room);
  for (int i = 0; i < 3; ++i)
    expect_ok(call(*c, {{"op", "send"}, {"room", room}, {"text", "burst " + std::to_string(i)}}, 10 + i));
  auto over = call(*c, {{"op", "send"}, {"room", room}, {"text", "one too many"}}, 20);
  EXPECT_EQ(error_code_of(over), "rate_limited");
  ASSERT_TRUE(over.contains("error") && over.at("error").as_object().contains("retry_after_ms"));
  EXPECT_GT(over.at("error").at("retry_after_ms").to_number<std::int64_t>(), 0);
  EXPECT_EQ(sql("SELECT count(*) FROM messages WHERE room = '" + room + "'"), "3");
  expect_alive(*c);
}

}  // namespace
}  // namespace chorus::testing
