// Whole-node tests: a real chorusd process on 127.0.0.1 driven by real WebSocket and HTTP clients.
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/json.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/node_fixture.hpp"
#include "tests/support/frame_mutator.hpp"
#include "tests/support/redis_probe.hpp"

namespace chorus::testing {
namespace {

namespace json = boost::json;

// ---- HTTP ----

TEST_F(node_test, healthz_reports_ok_and_the_node_id) {
  start();
  auto r = http_get(node_->port(), "/healthz");
  EXPECT_EQ(r.status, 200u);
  auto body = json::parse(r.body).as_object();
  EXPECT_EQ(body.at("status"), "ok");
  EXPECT_EQ(body.at("node"), "it-node");
  EXPECT_EQ(http_get(node_->port(), "/nope").status, 404u);
}

TEST_F(node_test, an_unknown_config_key_stops_the_node_with_its_name) {
  try {
    node_process bad(CHORUSD_PATH, {"--max_frame_byte", "10"}, {{"CHORUS_JWT_SECRET", secret}});
    FAIL() << "chorusd started with an unknown flag";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("max_frame_byte"), std::string::npos) << e.what();
  }
}

// ---- hello and authentication ----

TEST_F(node_test, hello_comes_first_with_version_node_and_limits) {
  start();
  auto c = ws_client::connect(node_->port());
  auto hello = c->next();
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->at("ev"), "hello");
  auto& d = hello->at("d").as_object();
  EXPECT_EQ(d.at("protocol"), 1);
  EXPECT_EQ(d.at("node"), "it-node");
  EXPECT_EQ(d.at("heartbeat_ms"), 15000);
  EXPECT_EQ(d.at("limits").at("max_frame_bytes"), 65536);
  EXPECT_EQ(d.at("limits").at("max_message_chars"), 4000);
}

TEST_F(node_test, auth_by_first_frame_then_only_once) {
  start();
  auto c = connect();
  expect_ok(call(*c, {{"op", "ping"}}, 1));  // ping needs no auth
  EXPECT_EQ(error_code_of(call(*c, {{"op", "join"}, {"room", "general"}}, 2)), "auth_required");
  auto ok = call(*c, {{"op", "auth"}, {"token", token_for("alice")}}, 3);
  expect_ok(ok);
  EXPECT_EQ(ok.at("d").at("user"), "alice");
  // Another user's token cannot take the connection over; alice's own fresh one renews it.
  EXPECT_EQ(error_code_of(call(*c, {{"op", "auth"}, {"token", token_for("bob")}}, 4)),
            "already_authenticated");
  auto renewed = call(*c, {{"op", "auth"}, {"token", token_for("alice")}}, 6);
  expect_ok(renewed);
  EXPECT_EQ(renewed.at("d").at("user"), "alice");
  join(*c, "general", 5);
}

TEST_F(node_test, auth_by_upgrade_header) {
  start();
  auto c = connect("alice");
  join(*c, "general");
}

TEST_F(node_test, forged_token_gets_invalid_token_and_4001) {
  start();
  auto c = connect();
  auto forged = token_for("alice", 3600, "another-secret-another-secret-another");
  EXPECT_EQ(error_code_of(call(*c, {{"op", "auth"}, {"token", forged}}, 1)), "invalid_token");
  EXPECT_EQ(c->wait_closed(), 4001);
}

TEST_F(node_test, expired_token_gets_token_expired_and_4001) {
  start();
  auto c = connect();
  EXPECT_EQ(error_code_of(call(*c, {{"op", "auth"}, {"token", token_for("alice", -10)}}, 1)),
            "token_expired");
  EXPECT_EQ(c->wait_closed(), 4001);
}

TEST_F(node_test, a_connection_ends_when_its_token_expires_with_token_expired_and_4001) {
  start();
  auto short_lived = connect();
  expect_ok(call(*short_lived, {{"op", "auth"}, {"token", token_for("alice", 2)}}, 1));
  join(*short_lived, "general", 2);
  auto lasting = member_of("general", "bob");
  expect_ok(call(*short_lived, {{"op", "ping"}}, 3));  // alive while the token is
  auto error = short_lived->next_where([](const json::object& o) { return o.contains("error"); }, 5s);
  ASSERT_TRUE(error) << "no error event when the token expired";
  EXPECT_EQ(error_code_of(*error), "token_expired");
  EXPECT_EQ(short_lived->wait_closed(), 4001);
  expect_alive(*lasting);  // a connection whose token is valid stays
}

TEST_F(node_test, a_fresh_token_for_the_same_user_keeps_the_connection_past_the_first_ones_expiry) {
  start();
  auto c = connect();
  expect_ok(call(*c, {{"op", "auth"}, {"token", token_for("alice", 2)}}, 1));
  join(*c, "general", 2);
  expect_ok(call(*c, {{"op", "auth"}, {"token", token_for("alice", 3600)}}, 3));
  // Past the first token's end: no error event, no close, and the room still delivers.
  EXPECT_FALSE(c->next_where([](const json::object& o) { return o.contains("error"); }, 3500ms));
  EXPECT_FALSE(c->close_code());
  expect_ok(call(*c, {{"op", "send"}, {"room", "general"}, {"text", "still here"}}, 4));
}

TEST_F(node_test, garbage_token_in_upgrade_header_gets_error_event_and_4001) {
  start();
  ws_client::options opts;
  opts.bearer = "not.a.token";
  auto c = ws_client::connect(node_->port(), opts);
  auto err = c->next_where([](const json::object& o) { return o.contains("ev") && o.at("ev") == "error"; });
  ASSERT_TRUE(err);
  EXPECT_EQ(error_code_of(*err), "invalid_token");
  EXPECT_EQ(c->wait_closed(), 4001);
}

TEST_F(node_test, no_auth_in_time_closes_with_4002) {
  start({{"CHORUS_AUTH_TIMEOUT_MS", "300"}});
  auto c = connect();
  EXPECT_EQ(c->wait_closed(), 4002);
}

// ---- real time ----

TEST_F(node_test, two_clients_see_each_others_messages_in_one_order_with_consecutive_seqs) {
  start();
  auto alice = member_of("general", "alice");
  auto bob = member_of("general", "bob");

  constexpr int per_user = 25;
  std::int64_t id = 100;
  for (int i = 0; i < per_user; ++i) {
    alice->send_json({{"op", "send"}, {"id", ++id}, {"room", "general"}, {"text", "a" + std::to_string(i)}});
    bob->send_json({{"op", "send"}, {"id", ++id}, {"room", "general"}, {"text", "b" + std::to_string(i)}});
  }
  auto collect = [](ws_client& c) {
    std::vector<std::pair<std::int64_t, std::string>> seen;
    while (seen.size() < 2 * per_user) {
      auto ev =
          c.next_where([](const json::object& o) { return o.contains("ev") && o.at("ev") == "message"; });
      if (!ev) break;
      seen.emplace_back(ev->at("seq").to_number<std::int64_t>(),
                        std::string(ev->at("d").at("text").as_string()));
    }
    return seen;
  };
  auto at_alice = collect(*alice);
  auto at_bob = collect(*bob);
  ASSERT_EQ(at_alice.size(), 2u * per_user);
  for (std::size_t i = 0; i < at_alice.size(); ++i)
    EXPECT_EQ(at_alice[i].first, static_cast<std::int64_t>(i + 1));
  EXPECT_EQ(at_alice, at_bob);
}

TEST_F(node_test, sender_gets_the_reply_before_its_own_message_and_resent_ids_echo) {
  start();
  auto alice = connect("alice");
  join(*alice, "general");
  alice->send_json(
      {{"op", "send"}, {"id", 7}, {"room", "general"}, {"text", "hi"}, {"client_msg_id", "c-123"}});
  auto first = alice->next();
  auto second = alice->next();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->at("re"), 7);
  EXPECT_EQ(first->at("ok"), true);
  auto seq = first->at("d").at("seq");
  EXPECT_EQ(second->at("ev"), "message");
  EXPECT_EQ(second->at("seq"), seq);
  EXPECT_EQ(second->at("d").at("client_msg_id"), "c-123");
  EXPECT_EQ(second->at("d").at("id"), first->at("d").at("id"));
}

TEST_F(node_test, requests_sent_right_after_a_join_wait_for_it) {
  start();
  auto alice = connect("alice");
  // No waiting for the join's reply: a client may pipeline, and the room is made (and loaded) meanwhile.
  alice->send_json({{"op", "join"}, {"id", 1}, {"room", "fresh"}});
  alice->send_json({{"op", "send"}, {"id", 2}, {"room", "fresh"}, {"text", "first"}});
  alice->send_json({{"op", "members"}, {"id", 3}, {"room", "fresh"}});
  alice->send_json({{"op", "leave"}, {"id", 4}, {"room", "fresh"}});
  alice->send_json({{"op", "send"}, {"id", 5}, {"room", "fresh"}, {"text", "after leaving"}});
  std::map<std::int64_t, json::object> replies;
  std::vector<std::int64_t> order;
  while (replies.size() < 5) {
    auto reply = alice->next_where([](const json::object& o) { return o.contains("re"); });
    ASSERT_TRUE(reply) << "after " << replies.size() << " replies";
    order.push_back(reply->at("re").to_number<std::int64_t>());
    replies[order.back()] = *reply;
  }
  EXPECT_EQ(order.front(), 1) << "every other request waits for the join";
  expect_ok(replies[1]);
  expect_ok(replies[2]);
  EXPECT_EQ(replies[2].at("d").at("seq"), 1);
  expect_ok(replies[3]);
  const auto& members = replies[3].at("d").at("members").as_array();
  ASSERT_EQ(members.size(), 1u) << json::serialize(replies[3]);
  EXPECT_EQ(members.at(0).at("user"), "alice");
  expect_ok(replies[4]);
  EXPECT_EQ(error_code_of(replies[5]), "not_joined");  // the leave ran before it, as sent
}

class send_then_leave_test : public node_test {
 protected:
  /// Thirty sends and a leave back to back: each send is stored, in the order sent, and the leave after them.
  void expect_sends_stored_before_the_leave(const std::string& room) {
    auto alice = connect("alice");
    join(*alice, room);
    // Back to back, so that the node reads several of them at once: a leave that overtook a send there would
    // fail it with not_joined.
    constexpr std::int64_t sends = 30;
    for (std::int64_t i = 1; i <= sends; ++i)
      alice->send_json({{"op", "send"}, {"id", 100 + i}, {"room", room}, {"text", "m" + std::to_string(i)}});
    alice->send_json({{"op", "leave"}, {"id", 500}, {"room", room}});
    std::map<std::int64_t, json::object> replies;
    while (replies.size() < sends + 1) {
      auto reply = alice->next_where([](const json::object& o) { return o.contains("re"); });
      ASSERT_TRUE(reply) << "after " << replies.size() << " replies";
      replies[reply->at("re").to_number<std::int64_t>()] = *reply;
    }
    for (std::int64_t i = 1; i <= sends; ++i) {
      const auto& reply = replies[100 + i];
      ASSERT_EQ(reply.at("ok"), true) << json::serialize(reply);
      EXPECT_EQ(reply.at("d").at("seq"), i);  // the room's order is the order they were sent in
    }
    EXPECT_EQ(replies[500].at("ok"), true);
  }
};

TEST_F(send_then_leave_test, sends_followed_at_once_by_a_leave_are_all_stored_in_order_before_it) {
  start();
  expect_sends_stored_before_the_leave("general");
}

TEST_F(send_then_leave_test, the_same_when_send_limits_are_kept_in_redis) {
  const char* redis = std::getenv("CHORUS_REDIS_URL");
  if (redis == nullptr) GTEST_SKIP() << "CHORUS_REDIS_URL is not set";
  // Each send now waits for the cluster-wide limit in Redis before it reaches its room; the leave must not
  // overtake them meanwhile.
  redis_database database{redis};
  ASSERT_TRUE(database.claimed()) << "no free Redis database (1-15) on " << redis;
  start({{"CHORUS_REDIS_URL", database.url()}});
  expect_sends_stored_before_the_leave("limited");
}

TEST_F(node_test, typing_reaches_others_but_not_its_sender) {
  start();
  auto alice = member_of("general", "alice");
  auto bob = member_of("general", "bob");
  expect_ok(call(*alice, {{"op", "typing"}, {"room", "general"}}, 2));
  auto typing =
      bob->next_where([](const json::object& o) { return o.contains("ev") && o.at("ev") == "typing"; });
  ASSERT_TRUE(typing);
  EXPECT_EQ(typing->at("d").at("user"), "alice");
  EXPECT_EQ(typing->at("room"), "general");
  // Alice's next frames are the ping reply, with no typing event before it.
  alice->send_json({{"op", "ping"}, {"id", 3}});
  auto next = alice->next();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->at("re"), 3) << json::serialize(*next);
}

TEST_F(node_test, presence_online_on_join_and_offline_when_the_last_connection_closes) {
  start();
  auto alice = connect("alice");
  join(*alice, "general");

  auto bob1 = connect("bob");
  auto bob2 = connect("bob");
  join(*bob1, "general");
  auto is_event = [](const char* name) {
    return [name](const json::object& o) { return o.contains("ev") && o.at("ev") == name; };
  };
  auto joined = alice->next_where(is_event("member_joined"));
  ASSERT_TRUE(joined);
  EXPECT_EQ(joined->at("d").at("user"), "bob");
  auto online = alice->next_where(is_event("presence"));
  ASSERT_TRUE(online);
  EXPECT_EQ(online->at("d").at("user"), "bob");
  EXPECT_EQ(online->at("d").at("status"), "online");

  // Bob's second connection closing is not Bob going offline: Alice's next event is Bob's message.
  bob2->close();
  bob2.reset();
  expect_ok(call(*bob1, {{"op", "send"}, {"room", "general"}, {"text", "still here"}}, 2));
  auto next = alice->next();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->at("ev"), "message") << json::serialize(*next);

  bob1->close();
  auto offline = alice->next_where(is_event("presence"));
  ASSERT_TRUE(offline);
  EXPECT_EQ(offline->at("d").at("user"), "bob");
  EXPECT_EQ(offline->at("d").at("status"), "offline");
  auto left = alice->next_where(is_event("member_left"));
  ASSERT_TRUE(left);
  EXPECT_EQ(left->at("d").at("user"), "bob");
}

TEST_F(node_test, a_crowded_room_sends_counts_instead_of_per_user_events_and_the_list_when_small_again) {
  start({{"CHORUS_MEMBER_EVENTS_LIMIT", "2"}});
  auto ev_is = [](const char* name) {
    return [name](const json::object& o) { return o.contains("ev") && o.at("ev") == name; };
  };
  auto ann = member_of("lobby", "ann");
  auto bob = member_of("lobby", "bob");
  ASSERT_TRUE(ann->next_where(ev_is("presence")));  // bob's, after his member_joined

  // The third user makes the room crowded: the reply says so and lists the first two users by id...
  auto cid = connect("cid");
  auto reply = call(*cid, {{"op", "join"}, {"room", "lobby"}}, 1);
  expect_ok(reply);
  const auto& d = reply.at("d").as_object();
  EXPECT_EQ(d.at("member_count"), 3) << json::serialize(reply);
  EXPECT_EQ(d.at("member_events"), false);
  ASSERT_EQ(d.at("members").as_array().size(), 2u);
  EXPECT_EQ(d.at("members").at(1).at("user"), "bob");
  // ...and the others hear the count as the next thing, not cid joining.
  auto count = ann->next();
  ASSERT_TRUE(count);
  EXPECT_EQ(count->at("ev"), "member_count") << json::serialize(*count);
  EXPECT_EQ(count->at("d").at("count"), 3);

  // Everyone connected, page by page, in user id order.
  auto page = call(*ann, {{"op", "members"}, {"room", "lobby"}, {"limit", 2}}, 5);
  expect_ok(page);
  EXPECT_EQ(page.at("d").at("member_count"), 3) << json::serialize(page);
  ASSERT_EQ(page.at("d").at("members").as_array().size(), 2u);
  EXPECT_EQ(page.at("d").at("next"), "bob");
  page = call(*ann, {{"op", "members"}, {"room", "lobby"}, {"after", "bob"}, {"limit", 2}}, 6);
  ASSERT_EQ(page.at("d").at("members").as_array().size(), 1u) << json::serialize(page);
  EXPECT_EQ(page.at("d").at("members").at(0).at("user"), "cid");
  EXPECT_TRUE(page.at("d").at("next").is_null());
  // A bad limit is refused with the field named, and the connection stays open.
  auto bad = call(*ann, {{"op", "members"}, {"room", "lobby"}, {"limit", 0}}, 7);
  EXPECT_EQ(error_code_of(bad), "bad_request");
  auto outside = connect("eve");
  EXPECT_EQ(error_code_of(call(*outside, {{"op", "members"}, {"room", "lobby"}}, 1)), "not_joined");
  expect_alive(*outside);

  // Typing and leaving send no per-user events; the count follows within a second.
  expect_ok(call(*cid, {{"op", "typing"}, {"room", "lobby"}}, 2));
  cid->close();
  count = ann->next(3s);
  ASSERT_TRUE(count);
  EXPECT_EQ(count->at("ev"), "member_count") << json::serialize(*count);
  EXPECT_EQ(count->at("d").at("count"), 2);

  // At half the limit the room is no longer crowded: the whole list, then per-user events again.
  bob->close();
  auto members = ann->next();
  ASSERT_TRUE(members);
  EXPECT_EQ(members->at("ev"), "members") << json::serialize(*members);
  ASSERT_EQ(members->at("d").at("members").as_array().size(), 1u);
  EXPECT_EQ(members->at("d").at("members").at(0).at("user"), "ann");
  auto dan = member_of("lobby", "dan");
  auto joined = ann->next();
  ASSERT_TRUE(joined);
  EXPECT_EQ(joined->at("ev"), "member_joined") << json::serialize(*joined);
  EXPECT_EQ(joined->at("d").at("user"), "dan");
}

TEST_F(node_test, a_client_sending_faster_than_its_session_handles_is_read_in_step_and_answered_in_order) {
  // A limit of one frame: every frame stops the reading until the session has handled it, so each of the
  // pings below is read only after the session asked for the next.
  start({{"CHORUS_RECEIVE_QUEUE_LIMIT", "1"},
         {"CHORUS_OPS_PER_SECOND", "100000"},
         {"CHORUS_OPS_BURST", "100000"}});
  auto alice = connect("alice");
  constexpr int count = 200;
  for (int i = 0; i < count; ++i) ASSERT_TRUE(alice->send_json({{"op", "ping"}, {"id", i}}));
  for (int i = 0; i < count; ++i) {
    auto reply = alice->next_where([](const json::object& o) { return o.contains("re"); });
    ASSERT_TRUE(reply) << "no reply to ping " << i;
    EXPECT_EQ(reply->at("re").to_number<int>(), i);
  }
  const std::string name = "\nchorus_reads_paused_total ";
  const auto metrics = http_get(node_->port(), "/metrics").body;
  const auto at = metrics.find(name);
  ASSERT_NE(at, std::string::npos) << metrics;
  EXPECT_GE(std::stoull(metrics.substr(at + name.size())), static_cast<unsigned long long>(count));
  expect_alive(*alice);
}

TEST_F(node_test, a_client_that_never_reads_is_disconnected_while_others_get_everything) {
  start({{"CHORUS_SEND_QUEUE_LIMIT", "64"},
         {"CHORUS_OPS_PER_SECOND", "100000"},
         {"CHORUS_OPS_BURST", "100000"}});
  auto alice = connect("alice");
  auto bob = connect("bob");
  auto stuck = connect("carol", 4096);
  join(*alice, "general");
  join(*bob, "general");
  join(*stuck, "general");
  ASSERT_EQ(open_connections(), 3u);

  // ~8 MB of messages: more than carol's socket buffers and queue can hold, so her queue overflows.
  // Bob reads on his own thread, as a healthy client does; Alice waits for each ack, so she reads too.
  const std::string text(3900, 'x');
  constexpr int count = 2000;
  int received = 0;
  std::thread reader([&] {
    while (received < count) {
      auto ev =
          bob->next_where([](const json::object& o) { return o.contains("ev") && o.at("ev") == "message"; });
      if (!ev) break;
      ++received;
    }
  });
  for (int i = 0; i < count; ++i) {
    // Windows of 16 sends keep Alice's own queue (a reply and an event per send) well inside the limit.
    if (i % 16 != 15) {
      alice->send_json({{"op", "send"}, {"id", 1000 + i}, {"room", "general"}, {"text", text}});
      continue;
    }
    auto reply = call(*alice, {{"op", "send"}, {"room", "general"}, {"text", text}}, 1000 + i);
    if (reply.empty() || reply.at("ok") != true) {
      ADD_FAILURE() << "send " << i << " failed: " << json::serialize(reply);
      break;
    }
  }
  reader.join();
  EXPECT_EQ(received, count);
  // Carol was cut off; the others are still connected.
  auto code = stuck->wait_closed(10s);
  ASSERT_TRUE(code.has_value());
  EXPECT_TRUE(*code == 4008 || *code == 1006) << *code;
  EXPECT_EQ(open_connections(), 2u);
  expect_alive(*alice);
}

// ---- bad input: a clear error, the connection stays open, nothing changes ----

class bad_input_test : public node_test {
 protected:
  void SetUp() override {
    start();
    client_ = connect("alice");
    join(*client_, "general");
  }
  /// Sends raw text and returns the error (reply or event) it caused.
  std::string error_for_raw(const std::string& text) {
    EXPECT_TRUE(client_->send_text(text));
    auto frame = client_->next();
    EXPECT_TRUE(frame.has_value());
    return frame ? error_code_of(*frame) : "(nothing)";
  }
  std::unique_ptr<ws_client> client_;
};

TEST_F(bad_input_test, malformed_json) {
  EXPECT_EQ(error_for_raw("{\"op\":"), "malformed_json");
  expect_alive(*client_);
}

TEST_F(bad_input_test, frame_that_is_not_an_object) {
  EXPECT_EQ(error_for_raw("[1,2,3]"), "not_an_object");
  EXPECT_EQ(error_for_raw("\"send\""), "not_an_object");
  expect_alive(*client_);
}

TEST_F(bad_input_test, binary_frame) {
  ASSERT_TRUE(client_->send_binary(std::string("\x01\x02\x03", 3)));
  auto frame = client_->next();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->at("ev"), "error");
  EXPECT_EQ(error_code_of(*frame), "unsupported_frame");
  expect_alive(*client_);
}

TEST_F(node_test, a_flood_of_binary_frames_is_rate_limited_like_any_other) {
  start({{"CHORUS_OPS_BURST", "5"}, {"CHORUS_OPS_PER_SECOND", "1"}});
  auto c = connect("alice");
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(c->send_binary(std::string("\x01\x02", 2)));
  std::vector<std::string> codes;
  for (int i = 0; i < 8; ++i) {
    auto frame = c->next();
    ASSERT_TRUE(frame) << "after " << codes.size() << " answers";
    codes.push_back(error_code_of(*frame));
  }
  EXPECT_EQ(codes, (std::vector<std::string>{"unsupported_frame", "unsupported_frame", "unsupported_frame",
                                             "unsupported_frame", "unsupported_frame", "rate_limited",
                                             "rate_limited", "rate_limited"}));
}

TEST_F(bad_input_test, unknown_op_is_answered_with_its_id) {
  auto reply = call(*client_, {{"op", "explode"}}, 41);
  EXPECT_EQ(reply.at("ok"), false);
  EXPECT_EQ(error_code_of(reply), "unknown_op");
  expect_alive(*client_);
}

TEST_F(bad_input_test, missing_fields_and_wrong_types) {
  EXPECT_EQ(error_code_of(call(*client_, {{"op", "send"}, {"room", "general"}}, 1)), "bad_request");
  EXPECT_EQ(error_code_of(call(*client_, {{"op", "send"}, {"room", "general"}, {"text", 5}}, 2)),
            "bad_request");
  EXPECT_EQ(error_code_of(call(*client_, {{"op", "join"}, {"room", json::array{}}}, 3)), "bad_request");
  EXPECT_EQ(error_for_raw(R"({"op":"ping"})"), "bad_request");               // no id
  EXPECT_EQ(error_for_raw(R"({"op":"ping","id":"seven"})"), "bad_request");  // id of the wrong type
  expect_alive(*client_);
}

TEST_F(bad_input_test, text_over_the_limit_or_not_valid_unicode) {
  EXPECT_EQ(error_code_of(
                call(*client_, {{"op", "send"}, {"room", "general"}, {"text", std::string(4001, 'y')}}, 1)),
            "text_too_long");
  EXPECT_EQ(error_for_raw(R"({"op":"send","id":2,"room":"general","text":"bad \ud800 surrogate"})"),
            "invalid_text");
  // Nothing was stored: the next message is seq 1.
  auto ok = call(*client_, {{"op", "send"}, {"room", "general"}, {"text", std::string(4000, 'y')}}, 3);
  expect_ok(ok);
  EXPECT_EQ(ok.at("d").at("seq"), 1);
}

TEST_F(bad_input_test, invalid_room_id) {
  EXPECT_EQ(error_code_of(call(*client_, {{"op", "join"}, {"room", "General!"}}, 1)), "invalid_room");
  EXPECT_EQ(error_code_of(call(*client_, {{"op", "join"}, {"room", std::string(65, 'a')}}, 2)),
            "invalid_room");
  expect_alive(*client_);
}

TEST_F(bad_input_test, send_and_typing_to_a_room_not_joined) {
  EXPECT_EQ(error_code_of(call(*client_, {{"op", "send"}, {"room", "elsewhere"}, {"text", "hi"}}, 1)),
            "not_joined");
  EXPECT_EQ(error_code_of(call(*client_, {{"op", "typing"}, {"room", "elsewhere"}}, 2)), "not_joined");
  EXPECT_EQ(error_code_of(call(*client_, {{"op", "leave"}, {"room", "elsewhere"}}, 3)), "not_joined");
  expect_alive(*client_);
}

TEST_F(bad_input_test, second_auth_as_another_user_or_with_a_bad_token) {
  EXPECT_EQ(error_code_of(call(*client_, {{"op", "auth"}, {"token", token_for("bob")}}, 1)),
            "already_authenticated");
  EXPECT_EQ(error_code_of(call(*client_, {{"op", "auth"}, {"token", "not.a.token"}}, 2)), "invalid_token");
  EXPECT_EQ(error_code_of(call(*client_, {{"op", "auth"}, {"token", token_for("alice", -10)}}, 3)),
            "token_expired");
  expect_alive(*client_);  // the connection keeps the token it has
}

TEST_F(bad_input_test, flood_is_rate_limited_with_a_retry_hint) {
  // The default budget is a burst of 50 operations: send more than that at once.
  for (int i = 1; i <= 80; ++i) client_->send_json({{"op", "ping"}, {"id", i}});
  int limited = 0;
  std::int64_t retry_after = 0;
  for (int i = 1; i <= 80; ++i) {
    auto reply = client_->next();
    ASSERT_TRUE(reply);
    if (reply->at("ok") == false) {
      EXPECT_EQ(error_code_of(*reply), "rate_limited");
      retry_after = reply->at("error").at("retry_after_ms").to_number<std::int64_t>();
      ++limited;
    }
  }
  EXPECT_GE(limited, 20);
  EXPECT_GT(retry_after, 0);
  EXPECT_LE(retry_after, 1000);
}

TEST_F(bad_input_test, oversize_frame_closes_with_1009) {
  std::string huge = R"({"op":"send","id":1,"room":"general","text":")" + std::string(70000, 'z') + "\"}";
  client_->send_text(huge);
  EXPECT_EQ(client_->wait_closed(), 1009);
}

TEST_F(bad_input_test, invalid_utf8_text_frame_closes_with_1007) {
  client_->send_text(std::string(R"({"op":"send","id":1,"room":"general","text":")") + "\xff\xfe" + "\"}");
  EXPECT_EQ(client_->wait_closed(), 1007);
}

TEST_F(node_test, a_storm_of_broken_frames_gets_one_answer_each_and_stores_only_the_valid_sends) {
  start({{"CHORUS_OPS_PER_SECOND", "100000"}, {"CHORUS_OPS_BURST", "100000"}});
  auto alice = member_of("general", "alice");
  auto bob = member_of("general", "bob");
  // Every operation, aimed at the room both are in, so that what survives a mutation acts on it.
  const std::vector<std::string> corpus = {
      R"({"op":"send","id":1,"room":"general","text":"hello","client_msg_id":"c-1"})",
      R"({"op":"send","id":2,"room":"general","text":"caf\u00e9"})",
      R"({"op":"typing","id":3,"room":"general"})",
      R"({"op":"history","id":4,"room":"general","before":50,"limit":20})",
      R"({"op":"join","id":5,"room":"general","last_seq":0})",
      R"({"op":"members","id":6,"room":"general","limit":10})",
      R"({"op":"leave","id":7,"room":"general"})",
      R"({"op":"auth","id":8,"token":"a.b.c"})",
      R"({"op":"ping","id":9})",
  };
  test::rng gen(42);
  int frames = 0;
  std::set<std::int64_t> seqs_taken;  // a resent client_msg_id is answered with its first seq
  while (frames < 400 && !HasFatalFailure()) {
    const auto& base = corpus[test::pick(gen, corpus.size())];
    std::string frame =
        test::pick(gen, 2) == 0 ? test::mutate_fields(base, gen) : test::mutate_bytes(base, gen);
    if (!test::valid_utf8(frame)) continue;  // the server closes those with 1007 (a test of its own)
    ++frames;
    SCOPED_TRACE(frame.size() > 200 ? frame.substr(0, 200) + "..." : frame);
    ASSERT_TRUE(alice->send_text(frame));
    // Exactly one answer: the reply to the frame's id, or an error event when it had no usable id.
    auto answer = alice->next_where([](const json::object& o) {
      return o.contains("re") || (o.contains("ev") && o.at("ev") == "error");
    });
    ASSERT_TRUE(answer) << "no answer";
    boost::system::error_code ec;
    const json::value sent = json::parse(frame, ec);
    const json::object* sent_obj = ec ? nullptr : sent.if_object();
    const json::value* id = sent_obj ? sent_obj->if_contains("id") : nullptr;
    if (answer->contains("re")) {
      ASSERT_TRUE(id != nullptr && id->is_int64()) << json::serialize(*answer);
      EXPECT_EQ(answer->at("re"), *id);
    }
    if (!answer->contains("ok") || answer->at("ok") != true) {
      EXPECT_TRUE(answer->contains("error")) << json::serialize(*answer);
      continue;
    }
    ASSERT_NE(sent_obj, nullptr) << "a frame that is not a JSON object was taken";
    if (sent_obj->at("op") == "send" && sent_obj->at("room") == "general")
      seqs_taken.insert(answer->at("d").at("seq").to_number<std::int64_t>());
  }
  // No answer was left over: the next reply is the one to this ping.
  auto ping = alice->send_json({{"op", "ping"}, {"id", -77}});
  ASSERT_TRUE(ping);
  auto pong =
      alice->next_where([](const json::object& o) { return o.contains("re") || o.contains("error"); });
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->at("re"), -77) << json::serialize(*pong);

  // Bob saw exactly the sends the node took, in order; a valid send now continues the sequence.
  join(*alice, "general", 10);
  auto last = call(*alice, {{"op", "send"}, {"room", "general"}, {"text", "after the storm"}}, 11);
  expect_ok(last);
  const auto sends_taken = static_cast<std::int64_t>(seqs_taken.size());
  EXPECT_EQ(last.at("d").at("seq"), sends_taken + 1);
  for (std::int64_t seq = 1; seq <= sends_taken + 1; ++seq) {
    auto message =
        bob->next_where([](const json::object& o) { return o.contains("ev") && o.at("ev") == "message"; });
    ASSERT_TRUE(message) << "bob is missing seq " << seq;
    EXPECT_EQ(message->at("seq"), seq);
  }
  EXPECT_GT(sends_taken, 5) << "the storm should let some valid sends through";
  EXPECT_EQ(http_get(node_->port(), "/healthz").status, 200u);
  expect_alive(*bob);
}

// ---- lifecycle ----

TEST_F(node_test, sigterm_closes_clients_with_1001_and_exits_cleanly) {
  start();
  auto alice = member_of("general", "alice");
  auto bob = member_of("general", "bob");
  node_->signal(SIGTERM);
  EXPECT_EQ(alice->wait_closed(), 1001);
  EXPECT_EQ(bob->wait_closed(), 1001);
  EXPECT_EQ(node_->wait_exit(10s), 0);
}

TEST_F(node_test, keepalive_keeps_a_responsive_client_and_drops_a_silent_one) {
  start({{"CHORUS_IDLE_TIMEOUT_MS", "1000"}});
  auto lively = connect("alice");
  auto silent = connect("bob");
  // The lively client keeps reading (and so answers pings) for three idle periods.
  EXPECT_FALSE(lively->next(3s).has_value());
  EXPECT_FALSE(lively->close_code().has_value()) << "a client answering pings was dropped";
  expect_alive(*lively);
  // The silent one, which read nothing in that time, was dropped.
  EXPECT_TRUE(silent->wait_closed(2s).has_value());
  EXPECT_EQ(open_connections(), 1u);
}

}  // namespace
}  // namespace chorus::testing
