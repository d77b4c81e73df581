// Durable messages end to end: a real chorusd on a real PostgreSQL, checked against the messages table.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <map>
#include <pqxx/pqxx>
#include <set>
#include <string_view>
#include <thread>

#include "tests/integration/node_fixture.hpp"
#include "tests/support/postgres_server.hpp"

namespace chorus::testing {
namespace {

struct stored_row {
  std::int64_t seq;
  std::string id;
  std::string author;
  std::string text;
  std::string client_msg_id;
};

std::vector<stored_row> table(const std::string& url, const std::string& room = "general") {
  pqxx::connection c{url};
  pqxx::work tx{c};
  std::vector<stored_row> out;
  for (auto row :
       tx.exec("SELECT seq, id::text, author, text, coalesce(client_msg_id, '') FROM messages WHERE room = " +
               tx.quote(room) + " ORDER BY seq"))
    out.push_back({row[0].as<std::int64_t>(), row[1].as<std::string>(), row[2].as<std::string>(),
                   row[3].as<std::string>(), row[4].as<std::string>()});
  return out;
}

void expect_consecutive(const std::vector<stored_row>& rows) {
  for (std::size_t i = 0; i < rows.size(); ++i)
    ASSERT_EQ(rows[i].seq, static_cast<std::int64_t>(i + 1)) << "gap or duplicate at position " << i;
}

bool is_message(const json::object& o) {
  return o.contains("ev") && o.at("ev") == "message";
}

json::object send_op(const std::string& text, const std::string& client_msg_id = "") {
  json::object op{{"op", "send"}, {"room", "general"}, {"text", text}};
  if (!client_msg_id.empty()) op["client_msg_id"] = client_msg_id;
  return op;
}

/// The value of `name` in the node's GET /metrics, or -1 when it is missing.
double metric(std::uint16_t port, const std::string& name) {
  auto res = http_get(port, "/metrics");
  EXPECT_EQ(res.status, 200u);
  auto at = res.body.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(res.body.substr(at + name.size() + 2));
}

/// `LOCK TABLE messages` held from construction to release(): a database stall as the writers see it.
class messages_lock {
 public:
  explicit messages_lock(const std::string& url) : url_(url), conn_{url}, tx_{conn_} {
    tx_.exec("LOCK TABLE messages IN EXCLUSIVE MODE");
  }
  /// Whether a writer came to wait for the lock within 5 s.
  bool a_writer_waits() {
    pqxx::connection watcher{url_};
    for (int i = 0; i < 100; ++i) {
      pqxx::nontransaction q{watcher};
      if (q.exec1("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")[0].as<int>() > 0)
        return true;
      std::this_thread::sleep_for(50ms);  // bounded polling: a lock wait sends no event
    }
    return false;
  }
  void release() { tx_.commit(); }

 private:
  std::string url_;
  pqxx::connection conn_;
  pqxx::work tx_;
};

class durable_test : public node_test {
 protected:
  const std::string& db() { return test_database::instance().url(); }
  /// These tests send far more than a person would: lift the per-connection rate limit.
  void start(settings extra = {}) {
    extra.try_emplace("CHORUS_OPS_PER_SECOND", "100000");
    extra.try_emplace("CHORUS_OPS_BURST", "100000");
    node_test::start(std::move(extra));
  }
};

TEST_F(durable_test, acknowledged_messages_are_stored_once_in_order_with_consecutive_seqs) {
  start();
  std::vector<std::unique_ptr<ws_client>> clients;
  for (const char* user : {"alice", "bob", "carol"}) {
    clients.push_back(connect(std::string(user)));
    join(*clients.back(), "general");
  }
  constexpr int per_client = 100;
  for (int i = 0; i < per_client; ++i)
    for (std::size_t c = 0; c < clients.size(); ++c) {
      auto op = send_op("m" + std::to_string(c) + "-" + std::to_string(i));
      op["id"] = 1000 + i;
      clients[c]->send_json(op);
    }
  std::map<std::string, std::int64_t> acked;  // message id → seq
  for (auto& c : clients)
    for (int i = 0; i < per_client; ++i) {
      auto reply =
          c->next_where([i](const json::object& o) { return o.contains("re") && o.at("re") == 1000 + i; });
      ASSERT_TRUE(reply && reply->at("ok") == true) << (reply ? json::serialize(*reply) : "timeout");
      acked[std::string(reply->at("d").at("id").as_string())] =
          reply->at("d").at("seq").to_number<std::int64_t>();
    }
  auto rows = table(db());
  ASSERT_EQ(rows.size(), clients.size() * per_client);
  expect_consecutive(rows);
  for (const auto& row : rows) {
    auto it = acked.find(row.id);
    ASSERT_NE(it, acked.end()) << "stored but never acknowledged: " << row.id;
    EXPECT_EQ(it->second, row.seq);
  }

  // What an operator sees of it: every row went through the writers in batches, none failed.
  const auto port = node_->port();
  EXPECT_EQ(metric(port, "chorus_messages_stored_total"), 300);
  EXPECT_EQ(metric(port, "chorus_write_rows_total"), 300);
  EXPECT_GE(metric(port, "chorus_write_batches_total"), 1);
  EXPECT_LE(metric(port, "chorus_write_batches_total"), 300);
  EXPECT_GT(metric(port, "chorus_write_busy_seconds_total"), 0);
  EXPECT_EQ(metric(port, "chorus_write_failures_total"), 0);
  EXPECT_EQ(metric(port, "chorus_send_ack_seconds_count"), 300);
  EXPECT_GT(metric(port, "chorus_send_ack_seconds_sum"), 0);
  EXPECT_EQ(metric(port, "chorus_connections"), 3);
}

TEST_F(durable_test, a_resent_client_msg_id_yields_one_row_one_delivery_and_the_original_reply) {
  start();
  auto alice = member_of("general", "alice");
  auto bob = member_of("general", "bob");
  auto first = call(*alice, send_op("hello", "c-1"), 2);
  auto again = call(*alice, send_op("hello", "c-1"), 3);
  expect_ok(first);
  EXPECT_EQ(again.at("d"), first.at("d"));

  // From a new connection too, as after a reconnect.
  auto alice2 = connect("alice");
  join(*alice2, "general");
  EXPECT_EQ(call(*alice2, send_op("hello", "c-1"), 4).at("d"), first.at("d"));

  // Bob saw it once: the next thing after the message is his ping reply.
  auto msg = bob->next_where(is_message);
  ASSERT_TRUE(msg);
  EXPECT_EQ(msg->at("d").at("id"), first.at("d").at("id"));
  auto pong = call(*bob, {{"op", "ping"}}, 5);
  expect_ok(pong);
  EXPECT_EQ(table(db()).size(), 1u);
}

TEST_F(durable_test, duplicates_are_caught_by_the_database_when_no_cache_remembers_them) {
  start({{"CHORUS_TAIL_CACHE_SIZE", "0"}});
  auto alice = connect("alice");
  join(*alice, "general");
  auto first = call(*alice, send_op("once", "c-7"), 2);
  expect_ok(first);
  EXPECT_EQ(call(*alice, send_op("once", "c-7"), 3).at("d"), first.at("d"));
  // The same id in another room returns the original, from the first room.
  join(*alice, "random", 4);
  EXPECT_EQ(
      call(*alice, {{"op", "send"}, {"room", "random"}, {"text", "x"}, {"client_msg_id", "c-7"}}, 5).at("d"),
      first.at("d"));
  // And the room carries on without a gap.
  auto next = call(*alice, send_op("twice"), 6);
  expect_ok(next);
  EXPECT_EQ(next.at("d").at("seq"), 2);
  auto rows = table(db());
  ASSERT_EQ(rows.size(), 2u);
  expect_consecutive(rows);
  EXPECT_TRUE(table(db(), "random").empty());
}

TEST_F(durable_test, a_retry_the_room_no_longer_remembers_costs_the_other_senders_nothing) {
  start({{"CHORUS_TAIL_CACHE_SIZE", "0"}});
  auto alice = member_of("general", "alice");
  auto bob = member_of("general", "bob");
  auto first = call(*alice, send_op("once", "c-old"), 2);
  expect_ok(first);
  // Bob sends a burst with nothing between his sends; alice's retry lands in the middle of it, in the same
  // writes as some of his.
  constexpr std::int64_t burst = 40;
  for (std::int64_t i = 1; i <= burst; ++i) {
    ASSERT_TRUE(bob->send_json([&] {
      auto op = send_op("b" + std::to_string(i));
      op["id"] = 100 + i;
      return op;
    }()));
    if (i == burst / 4) {
      auto retry = send_op("once", "c-old");
      retry["id"] = 3;
      ASSERT_TRUE(alice->send_json(retry));
    }
  }
  auto again = alice->next_where([](const json::object& o) { return o.contains("re") && o.at("re") == 3; });
  ASSERT_TRUE(again);
  ASSERT_TRUE(again->contains("d")) << json::serialize(*again);
  EXPECT_EQ(again->at("d"), first.at("d"));
  std::vector<std::int64_t> seqs;
  while (seqs.size() < burst) {
    auto reply = bob->next_where([](const json::object& o) { return o.contains("re"); });
    ASSERT_TRUE(reply) << "after " << seqs.size() << " replies";
    ASSERT_EQ(reply->at("ok"), true) << json::serialize(*reply);
    seqs.push_back(reply->at("d").at("seq").to_number<std::int64_t>());
  }
  std::sort(seqs.begin(), seqs.end());
  for (std::int64_t i = 0; i < burst; ++i) EXPECT_EQ(seqs[i], i + 2);
  auto rows = table(db());
  ASSERT_EQ(rows.size(), static_cast<std::size_t>(burst + 1));
  expect_consecutive(rows);
  for (std::int64_t i = 1; i <= burst; ++i) EXPECT_EQ(rows[i].text, "b" + std::to_string(i));
}

TEST_F(durable_test, a_send_waiting_for_its_join_when_the_token_expires_is_never_stored) {
  start();
  auto c = connect();
  const auto issued = now_s();
  expect_ok(call(*c, {{"op", "auth"}, {"token", actors::jwt::mint(secret, "alice", issued, 2)}}, 1));
  const auto expiry = std::chrono::system_clock::time_point(std::chrono::seconds(issued + 2));
  std::this_thread::sleep_until(expiry - 400ms);
  // The room's first load waits on the lock past the token's expiry, and the send waits for the join.
  pqxx::connection conn{db()};
  pqxx::work hold_rooms{conn};
  hold_rooms.exec("LOCK TABLE rooms IN ACCESS EXCLUSIVE MODE");
  ASSERT_TRUE(c->send_json({{"op", "join"}, {"id", 2}, {"room", "expiring"}}));
  ASSERT_TRUE(c->send_json({{"op", "send"}, {"id", 3}, {"room", "expiring"}, {"text", "after the token"}}));
  // The connection ends with the token (the client has not read the close yet); then the room loads.
  std::this_thread::sleep_until(expiry + 300ms);
  hold_rooms.commit();
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(c->wait_closed(), 4001);
  EXPECT_TRUE(table(db(), "expiring").empty()) << "a request that came with the token ran after it expired";
}

TEST_F(durable_test, history_pages_backwards_and_forwards_match_the_table) {
  start({{"CHORUS_TAIL_CACHE_SIZE", "5"}, {"CHORUS_HISTORY_LIMIT", "20"}});
  auto alice = connect("alice");
  join(*alice, "general");
  constexpr int count = 57;
  for (int i = 1; i <= count; ++i) expect_ok(call(*alice, send_op("text " + std::to_string(i)), 100 + i));
  auto rows = table(db());
  ASSERT_EQ(rows.size(), static_cast<std::size_t>(count));

  auto walk = [&](json::object first_request) {
    std::vector<std::pair<std::int64_t, std::string>> seen;
    json::object request = std::move(first_request);
    for (int page = 0; page < 10; ++page) {
      auto reply = call(*alice, request, 500 + page);
      expect_ok(reply);
      for (const auto& m : reply.at("d").at("messages").as_array())
        seen.emplace_back(m.at("seq").to_number<std::int64_t>(), std::string(m.at("text").as_string()));
      if (reply.at("d").at("next").is_null()) break;
      request = {{"op", "history"}, {"room", "general"}, {"cursor", reply.at("d").at("next")}, {"limit", 20}};
    }
    return seen;
  };
  auto backwards = walk({{"op", "history"}, {"room", "general"}, {"limit", 20}});
  auto forwards = walk({{"op", "history"}, {"room", "general"}, {"after", 0}, {"limit", 20}});
  ASSERT_EQ(backwards.size(), rows.size());
  ASSERT_EQ(forwards.size(), rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(forwards[i], std::make_pair(rows[i].seq, rows[i].text));
    EXPECT_EQ(backwards[rows.size() - 1 - i], std::make_pair(rows[i].seq, rows[i].text));
  }

  // The ends: nothing before seq 1 (or before 0), nothing after the last; "before" past the end is the
  // newest.
  auto page = [&](json::object request, std::int64_t id) {
    request["op"] = "history";
    request["room"] = "general";
    auto reply = call(*alice, request, id);
    expect_ok(reply);
    std::vector<std::int64_t> seqs;
    for (const auto& m : reply.at("d").at("messages").as_array())
      seqs.push_back(m.at("seq").to_number<std::int64_t>());
    return std::make_pair(seqs, reply.at("d").at("next"));
  };
  for (const json::object& nothing : {json::object{{"before", 1}}, json::object{{"before", 0}},
                                      json::object{{"cursor", "o:0"}}, json::object{{"after", count}}}) {
    auto [seqs, next] = page(nothing, 600);
    EXPECT_TRUE(seqs.empty()) << json::serialize(nothing) << " gave " << seqs.size() << " messages";
    EXPECT_TRUE(next.is_null()) << json::serialize(nothing);
  }
  auto [newest, next] = page({{"before", count + 100}, {"limit", 2}}, 601);
  EXPECT_EQ(newest, (std::vector<std::int64_t>{count, count - 1}));
  EXPECT_EQ(next, json::value("o:" + std::to_string(count - 1)));
}

TEST_F(durable_test, resume_after_a_dropped_connection_delivers_exactly_the_missed_messages) {
  start();
  auto alice = member_of("general", "alice");
  auto bob = member_of("general", "bob");
  for (int i = 1; i <= 3; ++i) expect_ok(call(*alice, send_op("before " + std::to_string(i)), 10 + i));
  std::int64_t last_seen = 0;
  for (int i = 0; i < 3; ++i) {
    auto msg = bob->next_where(is_message);
    ASSERT_TRUE(msg);
    last_seen = msg->at("seq").to_number<std::int64_t>();
  }
  bob->close();
  bob.reset();
  for (int i = 1; i <= 4; ++i) expect_ok(call(*alice, send_op("missed " + std::to_string(i)), 20 + i));

  auto back = connect("bob");
  auto reply = call(*back, {{"op", "join"}, {"room", "general"}, {"last_seq", last_seen}}, 1);
  expect_ok(reply);
  EXPECT_EQ(reply.at("d").at("replayed"), 4);
  EXPECT_EQ(reply.at("d").at("complete"), true);
  expect_ok(call(*alice, send_op("live"), 30));
  for (std::int64_t seq = last_seen + 1; seq <= last_seen + 5; ++seq) {
    auto msg = back->next();
    ASSERT_TRUE(msg && is_message(*msg)) << (msg ? json::serialize(*msg) : "timeout");
    EXPECT_EQ(msg->at("seq"), seq);
  }
}

TEST_F(durable_test, a_client_away_longer_than_the_rooms_tail_gets_everything_page_by_page) {
  // A short tail and small pages, so that most of what bob missed comes from the table, over several pages.
  start({{"CHORUS_TAIL_CACHE_SIZE", "16"}, {"CHORUS_HISTORY_LIMIT", "20"}});
  auto alice = member_of("general", "alice");
  auto bob = member_of("general", "bob");
  for (int i = 1; i <= 5; ++i) expect_ok(call(*alice, send_op("seen " + std::to_string(i)), i));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(bob->next_where(is_message));
  bob->close();
  bob.reset();
  for (int i = 6; i <= 100; ++i) expect_ok(call(*alice, send_op("missed " + std::to_string(i)), i));

  // The first message bob missed is older than the room's tail in memory: nothing is replayed, and the
  // reply says so; everything comes by history, from the table first, then from the tail.
  auto back = connect("bob");
  auto reply = call(*back, {{"op", "join"}, {"room", "general"}, {"last_seq", 5}}, 1);
  expect_ok(reply);
  EXPECT_EQ(reply.at("d").at("replayed"), 0);
  EXPECT_EQ(reply.at("d").at("complete"), false);
  EXPECT_EQ(reply.at("d").at("last_seq"), 100);
  std::map<std::int64_t, std::string> got;  // seq → text, as bob's client would assemble the room
  // The room goes on while bob catches up: live messages overlap the pages, and the seq tells them apart.
  for (int i = 101; i <= 110; ++i) expect_ok(call(*alice, send_op("live " + std::to_string(i)), i));

  // Bob's client: live message events are kept by seq while it waits for each page.
  std::set<std::int64_t> live;
  auto page_for = [&](json::object request, std::int64_t id) {
    request["id"] = id;
    EXPECT_TRUE(back->send_json(request));
    while (auto frame = back->next()) {
      if (is_message(*frame)) {
        EXPECT_TRUE(live.insert(frame->at("seq").to_number<std::int64_t>()).second);
      }
      if (frame->contains("re") && frame->at("re") == id) return *frame;
    }
    ADD_FAILURE() << "no reply to " << json::serialize(request);
    return json::object{};
  };
  json::object page_request{{"op", "history"}, {"room", "general"}, {"after", 5}, {"limit", 20}};
  int pages = 0;
  std::int64_t id = 1000;
  for (;;) {
    auto page = page_for(page_request, ++id);
    expect_ok(page);
    ASSERT_LT(++pages, 20) << "paging did not end";
    std::int64_t previous = 0;
    for (const auto& m : page.at("d").at("messages").as_array()) {
      const auto seq = m.at("seq").to_number<std::int64_t>();
      EXPECT_GT(seq, previous) << "a page after a seq is oldest first";
      previous = seq;
      EXPECT_TRUE(got.emplace(seq, std::string(m.at("text").as_string())).second)
          << "seq " << seq << " twice";
    }
    if (page.at("d").at("next").is_null()) break;
    page_request = {
        {"op", "history"}, {"room", "general"}, {"cursor", page.at("d").at("next")}, {"limit", 20}};
  }
  EXPECT_GE(pages, 5);
  auto rows = table(db());
  ASSERT_EQ(rows.size(), 110u);
  ASSERT_EQ(got.size(), 105u) << "everything from seq 6 on, once";
  for (const auto& row : rows) {
    if (row.seq <= 5) continue;
    ASSERT_TRUE(got.count(row.seq)) << "missing seq " << row.seq;
    EXPECT_EQ(got[row.seq], row.text) << "seq " << row.seq;
  }
  // The live events came too, each once.
  while (auto msg = back->next(500ms)) {
    if (is_message(*msg)) {
      EXPECT_TRUE(live.insert(msg->at("seq").to_number<std::int64_t>()).second);
    }
  }
  EXPECT_EQ(live, (std::set<std::int64_t>{101, 102, 103, 104, 105, 106, 107, 108, 109, 110}));
}

TEST_F(durable_test, postgres_stopped_and_started_during_traffic_loses_nothing_acknowledged) {
  postgres_server pg;
  {
    pqxx::connection admin{pg.admin_url()};
    pqxx::nontransaction tx{admin};
    tx.exec("CREATE DATABASE chorus");
  }
  // One writer, so that "once per state change" is an exact count of its log lines.
  start({{"CHORUS_DATABASE_URL", pg.url("chorus")},
         {"CHORUS_REQUEST_TIMEOUT_MS", "2000"},
         {"CHORUS_WRITER_COUNT", "1"}});
  auto alice = connect("alice");
  join(*alice, "general");

  int next = 0;
  std::set<std::string> acked;
  auto send_next = [&](std::int64_t id) {
    auto cid = "c-" + std::to_string(next);
    auto reply = call(*alice, send_op("n" + std::to_string(next), cid), id);
    if (reply.contains("ok") && reply.at("ok") == true) {
      acked.insert(cid);
      ++next;
      return std::string("ok");
    }
    return error_code_of(reply);
  };
  for (int i = 0; i < 20; ++i) ASSERT_EQ(send_next(100 + i), "ok");

  pg.stop();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(send_next(200 + i), "unavailable");  // never a false ok
  EXPECT_EQ(http_get(node_->port(), "/healthz").status, 200u);
  EXPECT_GE(metric(node_->port(), "chorus_write_failures_total"), 1);
  expect_ok(
      call(*alice, {{"op", "history"}, {"room", "general"}, {"limit", 5}}, 300));  // cached tail still reads

  pg.start();
  // The writer and the room find PostgreSQL again by themselves; the retried message goes through once.
  std::string outcome;
  for (int attempt = 0; attempt < 100 && outcome != "ok"; ++attempt) {
    outcome = send_next(400 + attempt);
    if (outcome != "ok")
      std::this_thread::sleep_for(100ms);  // bounded polling: recovery has no event to await
  }
  ASSERT_EQ(outcome, "ok");
  for (int i = 0; i < 10; ++i) ASSERT_EQ(send_next(600 + i), "ok");

  auto rows = table(pg.url("chorus"));
  expect_consecutive(rows);
  std::set<std::string> stored;
  for (const auto& r : rows)
    EXPECT_TRUE(stored.insert(r.client_msg_id).second) << "twice: " << r.client_msg_id;
  for (const auto& cid : acked) EXPECT_TRUE(stored.count(cid)) << "acknowledged but lost: " << cid;
  // The outage is logged when it starts and when it ends, not once per failed send.
  auto log = node_->output();
  auto lines_with = [&log](std::string_view text) {
    std::size_t n = 0;
    for (auto at = log.find(text); at != std::string::npos; at = log.find(text, at + text.size())) ++n;
    return n;
  };
  EXPECT_EQ(lines_with("batch writer: PostgreSQL is back"), 1u) << log;
  EXPECT_EQ(lines_with("sends fail with `unavailable` until it is back"), 1u) << log;
}

TEST_F(durable_test, clients_that_read_keep_their_connections_when_a_database_stall_ends) {
  // A small outgoing queue, so that what the stall holds back is more than one queue's worth.
  start({{"CHORUS_SEND_QUEUE_LIMIT", "16"}});
  auto alice = connect("alice");
  auto bob = connect("bob");
  join(*alice, "general");
  join(*bob, "general");

  // Alice gets a reply and her own message per send, 48 frames; Bob 24. Each is past the limit of 16 and
  // within the queue's hard cap of four times it.
  constexpr int count = 24;
  {
    messages_lock lock(db());
    for (int i = 0; i < count; ++i) {
      auto op = send_op("held " + std::to_string(i), "held-" + std::to_string(i));
      op["id"] = 100 + i;
      ASSERT_TRUE(alice->send_json(op));
    }
    // Hold the lock until a writer waits on it and the sends have had time to reach the room.
    ASSERT_TRUE(lock.a_writer_waits()) << "no writer ever waited for the lock";
    std::this_thread::sleep_for(300ms);
    lock.release();
  }

  // Every acknowledgement and every message, released together, reaches both clients, in order.
  for (int i = 0; i < count; ++i) {
    auto reply =
        alice->next_where([i](const json::object& o) { return o.contains("re") && o.at("re") == 100 + i; });
    ASSERT_TRUE(reply && reply->at("ok") == true)
        << (reply ? json::serialize(*reply) : "no reply to " + std::to_string(i));
  }
  std::int64_t last_seq = 0;
  for (int i = 0; i < count; ++i) {
    auto ev = bob->next_where(is_message);
    ASSERT_TRUE(ev) << "bob is missing message " << i;
    const auto seq = ev->at("seq").to_number<std::int64_t>();
    EXPECT_EQ(seq, last_seq + 1);
    last_seq = seq;
  }
  EXPECT_FALSE(alice->close_code());
  EXPECT_FALSE(bob->close_code());
  EXPECT_EQ(open_connections(), 2u);
  expect_alive(*alice);
  expect_alive(*bob);
  expect_consecutive(table(db()));
  EXPECT_EQ(table(db()).size(), static_cast<std::size_t>(count));
}

TEST_F(durable_test, a_stall_past_shed_after_refuses_new_sends_at_once_and_their_retries_are_stored_once) {
  start({{"CHORUS_SHED_AFTER_MS", "300"}});
  auto alice = connect("alice");
  auto bob = connect("bob");
  join(*alice, "general");
  join(*bob, "general");

  constexpr int taken = 5;
  constexpr int refused = 3;
  {
    messages_lock lock(db());
    for (int i = 0; i < taken; ++i) {
      auto op = send_op("taken " + std::to_string(i), "taken-" + std::to_string(i));
      op["id"] = 100 + i;
      ASSERT_TRUE(alice->send_json(op));
    }
    ASSERT_TRUE(lock.a_writer_waits()) << "no writer ever waited for the lock";
    std::this_thread::sleep_for(400ms);  // the writer's store has now waited past shed_after

    // The lock still holds, so an answer now means the node refused without waiting for the database.
    for (int i = 0; i < refused; ++i) {
      auto reply = call(*alice, send_op("late " + std::to_string(i), "late-" + std::to_string(i)), 200 + i);
      EXPECT_EQ(error_code_of(reply), "unavailable") << json::serialize(reply);
    }
    EXPECT_EQ(metric(node_->port(), "chorus_sends_shed_total"), refused);
    lock.release();
  }

  // What was taken before the stall grew long is acknowledged and delivered once the lock is gone.
  for (int i = 0; i < taken; ++i) {
    auto reply =
        alice->next_where([i](const json::object& o) { return o.contains("re") && o.at("re") == 100 + i; });
    ASSERT_TRUE(reply && reply->at("ok") == true)
        << (reply ? json::serialize(*reply) : "no reply to " + std::to_string(i));
  }
  // The refused sends, retried with their client_msg_ids, are taken like any other.
  for (int i = 0; i < refused; ++i)
    expect_ok(call(*alice, send_op("late " + std::to_string(i), "late-" + std::to_string(i)), 300 + i));
  for (int i = 0; i < taken + refused; ++i) {
    auto ev = bob->next_where(is_message);
    ASSERT_TRUE(ev) << "bob is missing message " << i;
    EXPECT_EQ(ev->at("seq").to_number<std::int64_t>(), i + 1);
  }
  auto rows = table(db());
  expect_consecutive(rows);
  ASSERT_EQ(rows.size(), static_cast<std::size_t>(taken + refused));
  for (int i = 0; i < refused; ++i) EXPECT_EQ(rows[taken + i].client_msg_id, "late-" + std::to_string(i));
  EXPECT_EQ(metric(node_->port(), "chorus_sends_shed_total"), refused);
  EXPECT_FALSE(alice->close_code());
}

TEST_F(durable_test, kill_9_during_a_burst_keeps_every_acknowledged_message_exactly_once) {
  start();
  auto alice = connect("alice");
  join(*alice, "general");
  constexpr int burst = 400;
  for (int i = 0; i < burst; ++i) {
    auto op = send_op("burst " + std::to_string(i), "k-" + std::to_string(i));
    op["id"] = 10000 + i;
    alice->send_json(op);
  }
  std::set<std::string> acked;
  while (acked.size() < 50) {
    auto reply = alice->next_where([](const json::object& o) { return o.contains("re"); });
    ASSERT_TRUE(reply);
    if (reply->at("ok") == true) acked.insert(std::string(reply->at("d").at("client_msg_id").as_string()));
  }
  node_->signal(SIGKILL);
  // Replies already on their way count as acknowledged too.
  while (auto reply = alice->next_where([](const json::object& o) { return o.contains("re"); }, 1s))
    if (reply->at("ok") == true) acked.insert(std::string(reply->at("d").at("client_msg_id").as_string()));
  ASSERT_TRUE(node_->wait_exit(5s).has_value());

  auto rows = table(db());
  expect_consecutive(rows);
  std::set<std::string> stored;
  for (const auto& r : rows)
    EXPECT_TRUE(stored.insert(r.client_msg_id).second) << "twice: " << r.client_msg_id;
  for (const auto& cid : acked) EXPECT_TRUE(stored.count(cid)) << "acknowledged but lost: " << cid;

  // After a restart the client resends everything: each is stored exactly once, in one unbroken sequence.
  start();
  auto again = connect("alice");
  join(*again, "general");
  for (int i = 0; i < burst; ++i)
    expect_ok(call(*again, send_op("burst " + std::to_string(i), "k-" + std::to_string(i)), 20000 + i));
  rows = table(db());
  ASSERT_EQ(rows.size(), static_cast<std::size_t>(burst));
  expect_consecutive(rows);
}

}  // namespace
}  // namespace chorus::testing
