// The fixture of whole-node tests: starts chorusd on its own database and talks to it like a client.
#pragma once

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "actors/jwt.hpp"
#include "tests/support/node_process.hpp"
#include "tests/support/test_database.hpp"
#include "tests/support/ws_client.hpp"

namespace chorus::testing {

namespace json = boost::json;

inline const std::string secret = "integration-test-secret-0123456789abcdef";

inline std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline std::string token_for(const std::string& user, std::int64_t ttl = 3600,
                             const std::string& key = secret) {
  return actors::jwt::mint(key, user, now_s(), ttl);
}

using settings = std::map<std::string, std::string>;

class node_test : public ::testing::Test {
 protected:
  /// Starts the node; `extra` overrides or adds CHORUS_* settings. These tests exercise messaging with
  /// minted tokens and rooms made on first join, which is dev_mode; the accounts tests turn it off.
  void start(settings extra = {}) {
    settings env{{"CHORUS_JWT_SECRET", secret},
                 {"CHORUS_DEV_MODE", "1"},
                 // Per-user send limits have tests of their own; here they would only slow the bursts down.
                 {"CHORUS_SENDS_PER_SECOND", "100000"},
                 {"CHORUS_SENDS_BURST", "100000"},
                 {"CHORUS_LOG_LEVEL", "info"},
                 {"CHORUS_NODE_ID", "it-node"},
                 {"CHORUS_DATABASE_URL", test_database::instance().url()}};
    for (auto& [k, v] : extra) env[k] = v;
    node_ = std::make_unique<node_process>(CHORUSD_PATH, std::vector<std::string>{}, env);
  }

  void TearDown() override {
    if (HasFailure() && node_) std::cerr << "--- chorusd output ---\n" << node_->output() << "\n";
  }

  /// A client that has read its hello; authenticated through the upgrade header when `user` is set.
  std::unique_ptr<ws_client> connect(const std::optional<std::string>& user = std::nullopt, int rcvbuf = 0) {
    ws_client::options opts;
    if (user) opts.bearer = token_for(*user);
    opts.receive_buffer_bytes = rcvbuf;
    auto c = ws_client::connect(node_->port(), opts);
    auto hello = c->next();
    EXPECT_TRUE(hello && hello->at("ev") == "hello") << (hello ? json::serialize(*hello) : "no hello");
    return c;
  }

  /// Sends `request` with correlation id `id` and returns the reply to it, skipping events.
  static json::object call(ws_client& c, json::object request, std::int64_t id) {
    request["id"] = id;
    EXPECT_TRUE(c.send_json(request));
    auto reply = c.next_where([id](const json::object& o) { return o.contains("re") && o.at("re") == id; });
    EXPECT_TRUE(reply.has_value()) << "no reply to " << json::serialize(request);
    return reply.value_or(json::object{});
  }

  static void expect_ok(const json::object& reply) {
    EXPECT_EQ(reply.contains("ok") ? reply.at("ok") : json::value(false), true) << json::serialize(reply);
  }

  static std::string error_code_of(const json::object& frame) {
    if (!frame.contains("error")) return "(no error in " + json::serialize(frame) + ")";
    return std::string(frame.at("error").at("code").as_string());
  }

  static void join(ws_client& c, const std::string& room, std::int64_t id = 1) {
    expect_ok(call(c, {{"op", "join"}, {"room", room}}, id));
  }

  /// A client for `user`, authenticated and joined to `room`.
  std::unique_ptr<ws_client> member_of(const std::string& room, const std::string& user) {
    auto c = connect(user);
    join(*c, room);
    return c;
  }

  /// The connection still answers: proof that an error left it open.
  static void expect_alive(ws_client& c) { expect_ok(call(c, {{"op", "ping"}}, 9999)); }

  unsigned open_connections() {
    auto r = http_get(node_->port(), "/healthz");
    return static_cast<unsigned>(json::parse(r.body).at("connections").to_number<std::int64_t>());
  }

  std::unique_ptr<node_process> node_;
};

}  // namespace chorus::testing
