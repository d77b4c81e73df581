// Room actor behaviour under CAF's deterministic scheduler: ordering, fan-out, membership, errors.
#include "actors/room_actor.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <caf/all.hpp>
#include <map>
#include <set>

namespace chorus::actors {
namespace {

namespace json = boost::json;

/// Everything one probe session saw, in arrival order: "reply:..." for answers to its requests,
/// the frame text for delivered events.
struct probe_log {
  std::vector<std::string> entries;
  std::vector<const std::string*> frame_addresses;
  std::vector<traffic> kinds;
  std::size_t deliveries = 0;      ///< deliver messages received: one may carry several events
  std::uint64_t member_count = 0;  ///< from the last join reply
  bool member_events = true;       ///< from the last join reply
  std::vector<json::object> events() const {
    std::vector<json::object> out;
    for (const auto& e : entries)
      if (e.rfind("reply:", 0) != 0) out.push_back(json::parse(e).as_object());
    return out;
  }
};

/// PostgreSQL as the room sees it through its writer: what is stored, and whether it answers.
struct fake_db {
  bool down = false;
  std::map<std::string, std::uint64_t> last_seq;
  std::map<std::string, std::uint64_t> epoch;  ///< each activation takes the next; older ones are fenced
  std::vector<storage::message_row> rows;
  std::size_t stores = 0;                ///< store requests that reached the writer
  std::vector<std::size_t> store_sizes;  ///< rows per store request, in arrival order
  std::size_t refuse_next = 0;           ///< refuse this many coming requests (out of sequence)
  bool hold = false;                     ///< take requests but never answer them (a hung PostgreSQL)
  bool held_fail = true;  ///< `flush` fails the held requests; false: writes them (PostgreSQL was only slow)
  std::vector<caf::typed_response_promise<std::vector<store_result>>> held;
  std::vector<std::vector<storage::message_row>> held_rows;  ///< the rows of each held request
  std::size_t snapshot_tail = SIZE_MAX;  ///< newest rows an activation returns, as the room's tail_cache_size
};

/// What message_store::append does with one request's rows: all stored, or none.
std::vector<store_result> write(fake_db& db, const std::vector<storage::message_row>& rows) {
  std::vector<store_result> out(rows.size());
  if (std::any_of(rows.begin(), rows.end(), [&](const auto& r) { return r.epoch != db.epoch[r.room]; })) {
    for (auto& r : out) r.status = store_status::fenced;
    return out;
  }
  bool written = true;
  if (db.refuse_next > 0) {
    --db.refuse_next;
    written = false;
  }
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& row = rows[i];
    for (const auto& r : db.rows)
      if (!row.client_msg_id.empty() && r.author == row.author && r.client_msg_id == row.client_msg_id) {
        out[i] = store_result{store_status::duplicate, r};
        written = false;
      }
    if (row.seq != db.last_seq[row.room] + 1 + i) written = false;
  }
  if (!written) {
    for (auto& r : out)
      if (r.status != store_status::duplicate) r.status = store_status::refused;
    return out;
  }
  for (const auto& row : rows) {
    db.last_seq[row.room] = row.seq;
    db.rows.push_back(row);
  }
  return out;
}

/// A writer that stores each request at once (one room's rows, all or nothing) and applies the same
/// rules as message_store::append.
batch_writer_actor::behavior_type fake_writer(batch_writer_actor::pointer self, std::shared_ptr<fake_db> db) {
  return {
      [self, db](atom::store,
                 std::vector<storage::message_row>& rows) -> caf::result<std::vector<store_result>> {
        ++db->stores;
        db->store_sizes.push_back(rows.size());
        if (db->hold) {
          auto rp = self->make_response_promise<std::vector<store_result>>();
          db->held.push_back(rp);
          db->held_rows.push_back(std::move(rows));
          return rp;
        }
        if (db->down) return make_error(protocol::error_code::unavailable);
        return write(*db, rows);
      },
      [db](atom::activate, const std::string& room) -> caf::result<storage::room_snapshot> {
        if (db->down) return make_error(protocol::error_code::unavailable);
        storage::room_snapshot snap{db->last_seq[room], {}, ++db->epoch[room]};
        for (const auto& r : db->rows)
          if (r.room == room) snap.tail.push_back(r);
        if (snap.tail.size() > db->snapshot_tail)
          snap.tail.erase(snap.tail.begin(),
                          snap.tail.end() - static_cast<std::ptrdiff_t>(db->snapshot_tail));
        return snap;
      },
      [db](atom::flush) {  // answers held requests, late
        for (std::size_t i = 0; i < db->held.size(); ++i) {
          if (db->held_fail)
            db->held[i].deliver(make_error(protocol::error_code::unavailable));
          else
            db->held[i].deliver(write(*db, db->held_rows[i]));
        }
        db->held.clear();
        db->held_rows.clear();
      },
  };
}

/// A reader serving pages from the fake database, so tests can tell cache hits from reads.
history_reader_actor::behavior_type fake_reader(history_reader_actor::pointer, std::shared_ptr<fake_db> db,
                                                std::shared_ptr<int> reads) {
  return {
      [db, reads](atom::history, const history_query& q) -> std::vector<protocol::chat_message> {
        ++*reads;
        std::vector<protocol::chat_message> out;
        for (const auto& r : db->rows)
          if (r.room == q.room && r.seq <= q.max_seq &&
              (q.newer ? r.seq > q.from : (q.from == 0 || r.seq < q.from)))
            out.push_back({r.id, r.room, r.seq, r.author, r.text, r.created_at_ms, r.client_msg_id});
        if (!q.newer) std::reverse(out.begin(), out.end());
        if (out.size() > q.limit) out.resize(q.limit);
        return out;
      },
  };
}

/// An accounts worker whose room rules (a private group whose only member is alice) fail to load while
/// `*down` holds.
account_worker_actor::behavior_type fake_accounts(account_worker_actor::pointer, std::shared_ptr<bool> down) {
  return {
      [](atom::api, const http_request&) -> caf::result<http_response> {
        return make_error(protocol::error_code::internal);
      },
      [down](atom::access, const std::string& room) -> caf::result<storage::room_access_row> {
        if (*down) return make_error(protocol::error_code::unavailable);
        storage::room_access_row row{room, storage::room_kind::group, false, false, 0, {}};
        row.members.push_back(storage::member_row{room, "alice"});
        return row;
      },
      [](atom::lookup, const std::string&) -> caf::result<std::string> { return std::string("online"); },
      [](atom::gone, const std::string&) {},
  };
}

void record(probe_log& log, const outbound_event& ev) {
  log.entries.push_back(*ev.bytes);
  log.frame_addresses.push_back(ev.bytes.get());
  log.kinds.push_back(ev.kind);
}

/// A stand-in for a session actor: joins, posts, types and leaves on command and records what it gets.
caf::behavior probe(caf::event_based_actor* self, room_actor room, std::string user,
                    std::shared_ptr<probe_log> log) {
  auto ref = [self, user] { return member_ref{user, caf::actor_cast<event_sink>(self), {}}; };
  auto on_error = [log](caf::error& err) {
    log->entries.push_back("reply:error:" + std::string(protocol::to_string(to_protocol_error(err))));
  };
  return {
      [log](atom::deliver, const outbound_event& ev) {
        ++log->deliveries;
        record(*log, ev);
      },
      [log](atom::deliver, const std::vector<outbound_event>& events) {
        ++log->deliveries;
        for (const auto& ev : events) record(*log, ev);
      },
      [=](atom::join) {
        self->request(room, caf::infinite, atom::join_v, join_request{ref(), false, 0})
            .then(
                [log](const join_result& r) {
                  std::string members;
                  for (const auto& m : r.members) members += m.user + ",";
                  log->entries.push_back("reply:joined:" + std::to_string(r.last_seq) + ":" + members);
                  log->member_count = r.member_count;
                  log->member_events = r.member_events;
                },
                on_error);
      },
      [=](atom::join, bool invisible) {
        self->request(room, caf::infinite, atom::join_v, join_request{ref(), false, 0, invisible})
            .then([log](const join_result&) { log->entries.push_back("reply:joined"); }, on_error);
      },
      [=](atom::join, std::uint64_t last_seen) {
        self->request(room, caf::infinite, atom::join_v, join_request{ref(), true, last_seen})
            .then(
                [log](const join_result& r) {
                  std::string replay;
                  for (const auto& m : r.replay) replay += std::to_string(m.seq) + ",";
                  log->entries.push_back("reply:resumed:" + replay +
                                         (r.complete ? "complete" : "incomplete"));
                },
                on_error);
      },
      [=](atom::post, const std::string& text, const std::string& client_msg_id) {
        self->request(room, caf::infinite, atom::post_v, post_request{user, text, client_msg_id})
            .then(
                [log](const protocol::chat_message& m) {
                  log->entries.push_back("reply:posted:" + std::to_string(m.seq) + ":" + m.text);
                },
                on_error);
      },
      [=](atom::history, std::uint64_t from, bool newer, std::uint32_t limit) {
        self->request(room, caf::infinite, atom::history_v, history_query{"", from, newer, limit, 0})
            .then(
                [log](const std::vector<protocol::chat_message>& page) {
                  std::string seqs;
                  for (const auto& m : page) seqs += std::to_string(m.seq) + ",";
                  log->entries.push_back("reply:page:" + seqs);
                },
                on_error);
      },
      [=](atom::post, const std::string& text) {
        self->request(room, caf::infinite, atom::post_v, post_request{user, text, "c-" + text})
            .then(
                [log](const protocol::chat_message& m) {
                  log->entries.push_back("reply:posted:" + std::to_string(m.seq) + ":" + m.text);
                },
                on_error);
      },
      [=](atom::typing) { self->send(room, atom::typing_v, ref()); },
      [=](atom::members, const std::string& after, std::uint32_t limit) {
        self->request(room, caf::infinite, atom::members_v, members_query{after, limit})
            .then(
                [log](const members_page& page) {
                  std::string users;
                  for (const auto& m : page.members) users += m.user + ",";
                  log->entries.push_back("reply:members:" + std::to_string(page.count) + ":" + users +
                                         (page.more ? "more" : "end"));
                },
                on_error);
      },
      [=](atom::leave) {
        self->request(room, caf::infinite, atom::leave_v, ref())
            .then([log](bool was) { log->entries.push_back(was ? "reply:left" : "reply:not-member"); },
                  on_error);
      },
  };
}

class room_actor_test : public ::testing::Test {
 protected:
  room_actor_test()
      : sys_(configure(cfg_)), sched_(dynamic_cast<caf::scheduler::test_coordinator&>(sys_.scheduler())) {
    writer_ = sys_.spawn(fake_writer, db_);
    reader_ = sys_.spawn(fake_reader, db_, reads_);
  }

  /// Starts the room; tests that preload the database do so first.
  void open_room(std::size_t tail_cache_size = 4, std::uint32_t member_events_limit = 1000,
                 account_worker_actor accounts = {}) {
    room_services services{
        writer_, reader_, accounts, false, tail_cache_size, 3, std::chrono::milliseconds(1000), counters_};
    services.member_events_limit = member_events_limit;
    services.shed_after = shed_after_;
    room_ = sys_.spawn(room, std::string("general"), services);
    run();
  }

  ~room_actor_test() override {
    caf::anon_send_exit(room_, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(writer_, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(reader_, caf::exit_reason::user_shutdown);
    for (auto& p : probes_) caf::anon_send_exit(p, caf::exit_reason::user_shutdown);
    run();
  }

  static caf::actor_system_config& configure(caf::actor_system_config& cfg) {
    cfg.set("scheduler.policy", caf::atom("testing"));
    cfg.set("logger.file-verbosity", caf::atom("quiet"));
    cfg.add_message_types<caf::id_block::chorus>();
    return cfg;
  }

  void run() { sched_.run(); }

  /// Lets each probe handle its next command (and so send its request to the room) while the room runs
  /// nothing: the requests then wait in the room's mailbox and arrive in one drain.
  void step_probes(const std::vector<caf::actor>& probes) {
    for (const auto& p : probes) {
      ASSERT_TRUE(sched_.prioritize(p));
      sched_.run_once();
    }
  }

  std::pair<caf::actor, std::shared_ptr<probe_log>> member(const std::string& user) {
    auto log = std::make_shared<probe_log>();
    auto p = sys_.spawn(probe, room_, user, log);
    probes_.push_back(p);
    caf::anon_send(p, atom::join_v);
    run();
    return {p, log};
  }

  caf::actor_system_config cfg_;
  caf::actor_system sys_;
  caf::scheduler::test_coordinator& sched_;
  std::shared_ptr<fake_db> db_ = std::make_shared<fake_db>();
  std::shared_ptr<int> reads_ = std::make_shared<int>(0);
  std::shared_ptr<node_counters> counters_ = std::make_shared<node_counters>();
  std::chrono::milliseconds shed_after_{0};  ///< room_services::shed_after of the next open_room()
  batch_writer_actor writer_;
  history_reader_actor reader_;
  room_actor room_;
  std::vector<caf::actor> probes_;
};

TEST_F(room_actor_test, first_joiner_sees_empty_room_and_later_joiners_are_announced) {
  open_room();
  auto [alice, alice_log] = member("alice");
  ASSERT_EQ(alice_log->entries, std::vector<std::string>{"reply:joined:0:alice,"});

  auto [bob, bob_log] = member("bob");
  EXPECT_EQ(bob_log->entries, std::vector<std::string>{"reply:joined:0:alice,bob,"});
  auto events = alice_log->events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].at("ev"), "member_joined");
  EXPECT_EQ(events[0].at("d").at("user"), "bob");
  EXPECT_EQ(events[1].at("ev"), "presence");
  EXPECT_EQ(events[1].at("d").at("status"), "online");
  EXPECT_EQ(alice_log->kinds[1], traffic::droppable);
}

TEST_F(room_actor_test, messages_get_consecutive_seqs_and_everyone_sees_the_same_order) {
  open_room();
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  alice_log->entries.clear();
  bob_log->entries.clear();

  for (int i = 1; i <= 5; ++i) {
    caf::anon_send(i % 2 ? alice : bob, atom::post_v, "m" + std::to_string(i));
  }
  run();

  auto seqs_and_texts = [](const probe_log& log) {
    std::vector<std::pair<std::uint64_t, std::string>> out;
    for (const auto& ev : log.events())
      if (ev.at("ev") == "message")
        out.emplace_back(ev.at("seq").to_number<std::uint64_t>(),
                         std::string(ev.at("d").at("text").as_string()));
    return out;
  };
  auto alice_seen = seqs_and_texts(*alice_log);
  ASSERT_EQ(alice_seen.size(), 5u);
  for (std::size_t i = 0; i < alice_seen.size(); ++i) EXPECT_EQ(alice_seen[i].first, i + 1);
  EXPECT_EQ(alice_seen, seqs_and_texts(*bob_log));
}

TEST_F(room_actor_test, message_ids_are_distinct_uuid_v7_texts) {
  open_room();
  auto [alice, alice_log] = member("alice");
  alice_log->entries.clear();
  for (int i = 0; i < 20; ++i) caf::anon_send(alice, atom::post_v, "m" + std::to_string(i));
  run();

  std::set<std::string> ids;
  for (const auto& ev : alice_log->events()) {
    if (ev.at("ev") != "message") continue;
    const std::string id(ev.at("d").at("id").as_string());
    ASSERT_EQ(id.size(), 36u) << id;
    for (std::size_t i = 0; i < id.size(); ++i) {
      if (i == 8 || i == 13 || i == 18 || i == 23) {
        EXPECT_EQ(id[i], '-') << id;
      } else {
        EXPECT_TRUE((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')) << id;
      }
    }
    EXPECT_EQ(id[14], '7') << id;  // version 7: time-ordered
    EXPECT_NE(std::string_view("89ab").find(id[19]), std::string_view::npos) << id;  // RFC 9562 variant
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 20u);
}

TEST_F(room_actor_test, sender_gets_its_reply_before_its_own_message_event) {
  open_room();
  auto [alice, alice_log] = member("alice");
  alice_log->entries.clear();
  caf::anon_send(alice, atom::post_v, std::string("hi"));
  run();
  ASSERT_EQ(alice_log->entries.size(), 2u);
  EXPECT_EQ(alice_log->entries[0], "reply:posted:1:hi");
  auto ev = json::parse(alice_log->entries[1]).as_object();
  EXPECT_EQ(ev.at("ev"), "message");
  EXPECT_EQ(ev.at("seq"), 1);
  EXPECT_EQ(ev.at("d").at("user"), "alice");
  EXPECT_EQ(ev.at("d").at("client_msg_id"), "c-hi");
}

TEST_F(room_actor_test, a_broadcast_is_encoded_once_and_its_bytes_shared) {
  open_room();
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  auto [carol, carol_log] = member("carol");
  caf::anon_send(alice, atom::post_v, std::string("shared"));
  run();
  ASSERT_FALSE(bob_log->frame_addresses.empty());
  EXPECT_EQ(bob_log->frame_addresses.back(), carol_log->frame_addresses.back());
  EXPECT_EQ(alice_log->frame_addresses.back(), bob_log->frame_addresses.back());
}

TEST_F(room_actor_test, post_from_a_session_that_has_not_joined_is_refused) {
  open_room();
  auto log = std::make_shared<probe_log>();
  auto outsider = sys_.spawn(probe, room_, std::string("mallory"), log);
  probes_.push_back(outsider);
  auto [alice, alice_log] = member("alice");
  alice_log->entries.clear();
  caf::anon_send(outsider, atom::post_v, std::string("sneaky"));
  run();
  EXPECT_EQ(log->entries, std::vector<std::string>{"reply:error:not_joined"});
  EXPECT_TRUE(alice_log->entries.empty());
}

TEST_F(room_actor_test, typing_reaches_others_but_not_the_typist) {
  open_room();
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  alice_log->entries.clear();
  bob_log->entries.clear();
  caf::anon_send(alice, atom::typing_v);
  run();
  EXPECT_TRUE(alice_log->entries.empty());
  auto events = bob_log->events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].at("ev"), "typing");
  EXPECT_EQ(events[0].at("d").at("user"), "alice");
  EXPECT_EQ(bob_log->kinds.back(), traffic::droppable);
}

TEST_F(room_actor_test, a_user_leaves_when_their_last_session_does) {
  open_room();
  auto [alice1, alice1_log] = member("alice");
  auto [alice2, alice2_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  bob_log->entries.clear();

  caf::anon_send(alice1, atom::leave_v);
  run();
  EXPECT_EQ(alice1_log->entries.back(), "reply:left");
  EXPECT_TRUE(bob_log->entries.empty()) << "alice still has a session in the room";

  caf::anon_send(alice2, atom::leave_v);
  run();
  auto events = bob_log->events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].at("ev"), "member_left");
  EXPECT_EQ(events[0].at("d").at("user"), "alice");
}

TEST_F(room_actor_test, a_session_that_dies_without_leaving_is_removed) {
  open_room();
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  bob_log->entries.clear();
  caf::anon_send_exit(alice, caf::exit_reason::kill);
  run();
  auto events = bob_log->events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].at("ev"), "member_left");

  // The room goes on: a new message gets the next seq and reaches the survivor.
  caf::anon_send(bob, atom::post_v, std::string("still here"));
  run();
  EXPECT_EQ(bob_log->entries[1], "reply:posted:1:still here");
}

TEST_F(room_actor_test, presence_offline_goes_to_everyone_but_that_user) {
  open_room();
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  alice_log->entries.clear();
  bob_log->entries.clear();
  caf::anon_send(room_, atom::presence_v, std::string("alice"), false);
  run();
  EXPECT_TRUE(alice_log->entries.empty());
  auto events = bob_log->events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].at("ev"), "presence");
  EXPECT_EQ(events[0].at("d").at("status"), "offline");
}

TEST_F(room_actor_test, joining_twice_is_idempotent) {
  open_room();
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  bob_log->entries.clear();
  alice_log->entries.clear();
  caf::anon_send(bob, atom::join_v);
  run();
  EXPECT_EQ(bob_log->entries, std::vector<std::string>{"reply:joined:0:alice,bob,"});
  EXPECT_TRUE(alice_log->entries.empty());
}

// ---- durability: ack after the writer stored it, idempotent sends, resync, resume, history ----

std::vector<std::string> replies(const probe_log& log) {
  std::vector<std::string> out;
  for (const auto& e : log.entries)
    if (e.rfind("reply:", 0) == 0) out.push_back(e);
  return out;
}

std::size_t message_events(const probe_log& log) {
  std::size_t n = 0;
  for (const auto& ev : log.events())
    if (ev.at("ev") == "message") ++n;
  return n;
}

storage::message_row stored(std::uint64_t seq, const std::string& author = "zed",
                            const std::string& cid = "") {
  return {
      "00000000-0000-7000-8000-" + std::string(12 - std::to_string(seq).size(), '0') + std::to_string(seq),
      "general",
      seq,
      author,
      "old " + std::to_string(seq),
      cid,
      1700000000000 + static_cast<std::int64_t>(seq)};
}

TEST_F(room_actor_test, a_room_continues_the_stored_sequence) {
  for (std::uint64_t seq = 1; seq <= 5; ++seq) db_->rows.push_back(stored(seq));
  db_->last_seq["general"] = 5;
  open_room();
  auto [alice, log] = member("alice");
  EXPECT_EQ(log->entries[0], "reply:joined:5:alice,");
  caf::anon_send(alice, atom::post_v, std::string("next"));
  run();
  EXPECT_EQ(replies(*log).back(), "reply:posted:6:next");
  EXPECT_EQ(db_->rows.back().seq, 6u);
}

TEST_F(room_actor_test, a_send_the_writer_could_not_store_is_unavailable_and_never_delivered) {
  open_room();
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  bob_log->entries.clear();
  db_->down = true;
  caf::anon_send(alice, atom::post_v, std::string("lost"));
  run();
  EXPECT_EQ(replies(*alice_log).back(), "reply:error:unavailable");
  EXPECT_EQ(message_events(*bob_log), 0u);

  // While the database is down the room cannot reload: sends fail at once without reaching the writer.
  auto stores_before = db_->stores;
  caf::anon_send(alice, atom::post_v, std::string("also lost"));
  run();
  EXPECT_EQ(replies(*alice_log).back(), "reply:error:unavailable");
  EXPECT_EQ(db_->stores, stores_before);

  // The database returns; the room's retry timer reloads it and the sequence carries on with no gap.
  db_->down = false;
  sched_.trigger_timeouts();
  run();
  caf::anon_send(alice, atom::post_v, std::string("back"));
  run();
  EXPECT_EQ(replies(*alice_log).back(), "reply:posted:1:back");
  EXPECT_EQ(message_events(*bob_log), 1u);
}

TEST_F(room_actor_test, each_committed_send_is_counted_with_its_ack_time_and_nothing_else_is) {
  open_room();
  auto [alice, alice_log] = member("alice");
  for (const char* text : {"one", "two", "three"}) caf::anon_send(alice, atom::post_v, std::string(text));
  run();
  const auto& acks = counters_->send_ack;
  auto observed = [&] {
    std::uint64_t n = 0;
    for (auto c : acks.counts()) n += c;
    return n;
  };
  EXPECT_EQ(observed(), 3u);
  EXPECT_EQ(counters_->messages_stored.load(), 3u);

  // A resend answered with the original commits nothing; neither does a send the writer could not store.
  caf::anon_send(alice, atom::post_v, std::string("one"));
  run();
  EXPECT_EQ(replies(*alice_log).back(), "reply:posted:1:one");
  db_->down = true;
  caf::anon_send(alice, atom::post_v, std::string("lost"));
  run();
  EXPECT_EQ(replies(*alice_log).back(), "reply:error:unavailable");
  EXPECT_EQ(observed(), 3u);
}

TEST_F(room_actor_test, the_same_client_msg_id_is_stored_and_delivered_once) {
  open_room();
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  bob_log->entries.clear();
  caf::anon_send(alice, atom::post_v, std::string("hello"), std::string("c-1"));
  caf::anon_send(alice, atom::post_v, std::string("hello"), std::string("c-1"));
  run();
  caf::anon_send(alice, atom::post_v, std::string("hello"), std::string("c-1"));
  run();
  EXPECT_EQ(replies(*alice_log), (std::vector<std::string>{"reply:joined:0:alice,", "reply:posted:1:hello",
                                                           "reply:posted:1:hello", "reply:posted:1:hello"}));
  EXPECT_EQ(db_->rows.size(), 1u);
  EXPECT_EQ(message_events(*bob_log), 1u);
}

TEST_F(room_actor_test, a_client_msg_id_stored_before_returns_the_original_and_the_room_resyncs) {
  // Stored long ago, outside anything the room has cached (say, before a restart, in another room).
  auto original = stored(1, "alice", "c-old");
  original.room = "elsewhere";
  db_->rows.push_back(original);
  open_room();
  auto [alice, log] = member("alice");
  caf::anon_send(alice, atom::post_v, std::string("again"), std::string("c-old"));
  run();
  EXPECT_EQ(replies(*log).back(), "reply:posted:1:old 1");
  caf::anon_send(alice, atom::post_v, std::string("fresh"), std::string("c-new"));
  run();
  EXPECT_EQ(replies(*log).back(), "reply:posted:1:fresh");
  ASSERT_EQ(db_->rows.size(), 2u);
  EXPECT_EQ(db_->rows.back().room, "general");
}

TEST_F(room_actor_test, resume_replays_exactly_the_missed_messages_then_live_events) {
  open_room();
  auto [alice, alice_log] = member("alice");
  for (int i = 1; i <= 3; ++i) caf::anon_send(alice, atom::post_v, "m" + std::to_string(i));
  run();
  auto log = std::make_shared<probe_log>();
  auto bob = sys_.spawn(probe, room_, std::string("bob"), log);
  probes_.push_back(bob);
  caf::anon_send(bob, atom::join_v, std::uint64_t{1});
  run();
  EXPECT_EQ(replies(*log), std::vector<std::string>{"reply:resumed:2,3,complete"});
  caf::anon_send(alice, atom::post_v, std::string("live"));
  run();
  auto events = log->events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].at("seq"), 4);
}

TEST_F(room_actor_test, a_resume_from_past_the_rooms_last_seq_reloads_it_if_another_activation_stored_more) {
  open_room();
  auto [alice, alice_log] = member("alice");
  caf::anon_send(alice, atom::post_v, std::string("m1"));
  run();
  // Meanwhile another activation of the room (on a node that ran it while this one was cut off, and is gone
  // now) stored two more; nobody told this one.
  ++db_->epoch["general"];
  db_->rows.push_back(stored(2));
  db_->rows.push_back(stored(3));
  db_->last_seq["general"] = 3;
  const auto epoch_before = db_->epoch["general"];
  // A client of that node comes back with what it saw there.
  auto bob_log = std::make_shared<probe_log>();
  auto bob = sys_.spawn(probe, room_, std::string("bob"), bob_log);
  probes_.push_back(bob);
  caf::anon_send(bob, atom::join_v, std::uint64_t{3});
  run();
  EXPECT_EQ(replies(*bob_log), std::vector<std::string>{"reply:resumed:complete"});
  EXPECT_EQ(db_->epoch["general"], epoch_before + 1) << "the room activated again";
  std::vector<std::int64_t> at_alice;
  for (const auto& ev : alice_log->events())
    if (ev.at("ev") == "message") at_alice.push_back(ev.at("seq").to_number<std::int64_t>());
  EXPECT_EQ(at_alice, (std::vector<std::int64_t>{1, 2, 3})) << "alice gets what she missed, in order";
  caf::anon_send(alice, atom::post_v, std::string("m4"));
  run();
  EXPECT_EQ(replies(*alice_log).back(), "reply:posted:4:m4");

  // A client whose last_seq is simply wrong costs one read (one a second at most), and the room stays as
  // it is.
  sched_.clock().advance_time(std::chrono::milliseconds(1100));
  const auto reads_before = *reads_;
  auto carol_log = std::make_shared<probe_log>();
  auto carol = sys_.spawn(probe, room_, std::string("carol"), carol_log);
  probes_.push_back(carol);
  caf::anon_send(carol, atom::join_v, std::uint64_t{99});
  run();
  EXPECT_EQ(replies(*carol_log), std::vector<std::string>{"reply:resumed:complete"});
  EXPECT_EQ(*reads_, reads_before + 1);
  caf::anon_send(carol, atom::join_v, std::uint64_t{99});
  run();
  EXPECT_EQ(*reads_, reads_before + 1) << "not again within the second";
  EXPECT_EQ(db_->epoch["general"], epoch_before + 1);
}

TEST_F(room_actor_test, a_leave_behind_a_resume_that_checks_the_store_comes_after_it) {
  open_room();
  auto [alice, alice_log] = member("alice");
  // Bob resumes from past the room's last seq (the room reads the store to check it) and, at once, leaves
  // (his session gave up on the join): both reach the room before the read is answered.
  auto bob_log = std::make_shared<probe_log>();
  auto bob = sys_.spawn(probe, room_, std::string("bob"), bob_log);
  probes_.push_back(bob);
  caf::anon_send(bob, atom::join_v, std::uint64_t{7});
  caf::anon_send(bob, atom::leave_v);
  step_probes({bob, bob});
  for (int i = 0; i < 2; ++i) {  // the join (the room asks the store), then the leave
    ASSERT_TRUE(sched_.prioritize(room_));
    sched_.run_once();
  }
  // The read is slow: by its answer a second check would be due, and the join waits for that one too.
  sched_.clock().advance_time(std::chrono::milliseconds(1100));
  run();
  EXPECT_EQ(replies(*bob_log), (std::vector<std::string>{"reply:resumed:complete", "reply:left"}));
  alice_log->entries.clear();
  caf::anon_send(alice, atom::post_v, std::string("hi"));
  run();
  EXPECT_EQ(message_events(*bob_log), 0u) << "bob is not in the room";
  caf::anon_send(alice, atom::members_v, std::string(), std::uint32_t{10});
  run();
  EXPECT_EQ(replies(*alice_log).back(), "reply:members:1:alice,end");
}

TEST_F(room_actor_test, a_resume_while_the_room_cannot_load_is_unavailable_until_it_can) {
  open_room();
  auto [alice, alice_log] = member("alice");
  caf::anon_send(alice, atom::post_v, std::string("m1"));
  run();
  db_->down = true;
  caf::anon_send(alice, atom::post_v, std::string("lost"));  // the failed write makes the room reload
  run();
  auto [bob, bob_log] = member("bob");
  bob_log->entries.clear();
  caf::anon_send(bob, atom::join_v, std::uint64_t{0});
  run();
  EXPECT_EQ(replies(*bob_log).back(), "reply:error:unavailable");

  db_->down = false;
  sched_.trigger_timeouts();
  run();
  caf::anon_send(bob, atom::join_v, std::uint64_t{0});
  run();
  EXPECT_EQ(replies(*bob_log).back(), "reply:resumed:1,complete");
}

TEST_F(room_actor_test, nobody_joins_a_private_room_until_its_rules_have_loaded) {
  auto down = std::make_shared<bool>(true);
  auto accounts = sys_.spawn(fake_accounts, down);
  open_room(4, 1000, accounts);
  // The rules cannot load: the room does not know who may read it, so it lets no one in, not even alice.
  auto [mallory, mallory_log] = member("mallory");
  EXPECT_EQ(replies(*mallory_log).back(), "reply:error:unavailable");
  auto [alice, alice_log] = member("alice");
  EXPECT_EQ(replies(*alice_log).back(), "reply:error:unavailable");

  *down = false;
  sched_.trigger_timeouts();  // the room's retry
  run();
  caf::anon_send(mallory, atom::join_v);
  caf::anon_send(alice, atom::join_v);
  run();
  EXPECT_EQ(replies(*mallory_log).back(), "reply:error:not_found");
  EXPECT_EQ(replies(*alice_log).back(), "reply:joined:0:alice,");
  caf::anon_send_exit(accounts, caf::exit_reason::user_shutdown);
}

TEST_F(room_actor_test, a_join_before_the_first_load_is_unavailable_not_an_empty_room) {
  for (int seq = 1; seq <= 3; ++seq)
    db_->rows.push_back(storage::message_row{"m" + std::to_string(seq), "general",
                                             static_cast<std::uint64_t>(seq), "alice",
                                             "old " + std::to_string(seq), "", 1000, 1});
  db_->last_seq["general"] = 3;
  db_->down = true;
  open_room();
  auto [bob, bob_log] = member("bob");
  EXPECT_EQ(replies(*bob_log).back(), "reply:error:unavailable");
  db_->down = false;
  sched_.trigger_timeouts();
  run();
  caf::anon_send(bob, atom::join_v);
  run();
  EXPECT_EQ(replies(*bob_log).back(), "reply:joined:3:bob,");
}

TEST_F(room_actor_test, messages_committed_in_doubt_beyond_the_tail_reach_members_in_order) {
  open_room(2);  // a tail of two messages
  db_->snapshot_tail = 2;
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  caf::anon_send(alice, atom::post_v, std::string("m1"));
  run();
  // Five sends whose stores the writer takes and does not answer (a stalled PostgreSQL).
  db_->hold = true;
  db_->held_fail = false;
  for (int i = 2; i <= 6; ++i) {
    caf::anon_send(alice, atom::post_v, "m" + std::to_string(i));
    run();
  }
  // The watchdog gives up on them; before the room's reload reaches the writer, the stores commit.
  sched_.clock().advance_time(std::chrono::milliseconds(1100));
  caf::anon_send(writer_, atom::flush_v);
  ASSERT_TRUE(sched_.prioritize(writer_));
  sched_.run_once();
  db_->hold = false;
  run();
  EXPECT_EQ(db_->last_seq["general"], 6u);
  // The room reloads a tail of two (seqs 5 and 6): bob gets 2-4 from the reader first, so no seq is missed.
  std::vector<std::int64_t> seqs;
  for (const auto& ev : bob_log->events())
    if (ev.at("ev") == "message") seqs.push_back(ev.at("seq").to_number<std::int64_t>());
  EXPECT_EQ(seqs, (std::vector<std::int64_t>{1, 2, 3, 4, 5, 6}));
  caf::anon_send(alice, atom::post_v, std::string("m7"));
  run();
  EXPECT_EQ(replies(*alice_log).back(), "reply:posted:7:m7");
}

TEST_F(room_actor_test, resume_beyond_the_cache_says_it_is_incomplete) {
  open_room();  // caches 4 messages, replays at most 3
  auto [alice, alice_log] = member("alice");
  for (int i = 1; i <= 6; ++i) caf::anon_send(alice, atom::post_v, "m" + std::to_string(i));
  run();
  auto [bob, bob_log] = member("bob");
  caf::anon_send(bob, atom::join_v, std::uint64_t{0});
  run();
  EXPECT_EQ(replies(*bob_log).back(), "reply:resumed:incomplete");
  caf::anon_send(bob, atom::join_v, std::uint64_t{2});
  run();
  EXPECT_EQ(replies(*bob_log).back(), "reply:resumed:3,4,5,incomplete");
  caf::anon_send(bob, atom::join_v, std::uint64_t{5});
  run();
  EXPECT_EQ(replies(*bob_log).back(), "reply:resumed:6,complete");
}

TEST_F(room_actor_test, history_comes_from_the_cache_when_it_can_and_from_the_reader_otherwise) {
  open_room();
  auto [alice, log] = member("alice");
  for (int i = 1; i <= 6; ++i) caf::anon_send(alice, atom::post_v, "m" + std::to_string(i));
  run();
  caf::anon_send(alice, atom::history_v, std::uint64_t{0}, false, std::uint32_t{3});  // newest 3
  run();
  EXPECT_EQ(replies(*log).back(), "reply:page:6,5,4,");
  EXPECT_EQ(*reads_, 0);
  caf::anon_send(alice, atom::history_v, std::uint64_t{4}, false, std::uint32_t{3});  // older than 4
  run();
  EXPECT_EQ(replies(*log).back(), "reply:page:3,2,1,");
  EXPECT_EQ(*reads_, 1);
  caf::anon_send(alice, atom::history_v, std::uint64_t{0}, true, std::uint32_t{50});  // limit is capped at 3
  run();
  EXPECT_EQ(replies(*log).back(), "reply:page:1,2,3,");
  caf::anon_send(alice, atom::history_v, std::uint64_t{4}, true, std::uint32_t{3});  // newer than 4, cached
  run();
  EXPECT_EQ(replies(*log).back(), "reply:page:5,6,");
  EXPECT_EQ(*reads_, 2);
}

// ---- the write path: one store request per mailbox drain, answered once ----

TEST_F(room_actor_test, sends_arriving_together_go_to_the_writer_as_one_store_and_each_gets_its_seq) {
  open_room();
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  auto [carol, carol_log] = member("carol");
  bob_log->entries.clear();
  bob_log->deliveries = 0;
  auto stores_before = db_->stores;
  caf::anon_send(alice, atom::post_v, std::string("a"));
  caf::anon_send(bob, atom::post_v, std::string("b"));
  caf::anon_send(carol, atom::post_v, std::string("c"));
  step_probes({alice, bob, carol});
  run();
  EXPECT_EQ(db_->stores, stores_before + 1);
  EXPECT_EQ(db_->store_sizes.back(), 3u);
  EXPECT_EQ(replies(*alice_log).back(), "reply:posted:1:a");
  EXPECT_EQ(replies(*bob_log).back(), "reply:posted:2:b");
  EXPECT_EQ(replies(*carol_log).back(), "reply:posted:3:c");
  EXPECT_EQ(message_events(*bob_log), 3u);
  // The three events of the one commit reach each member together, in seq order.
  EXPECT_EQ(bob_log->deliveries, 1u);
  auto events = bob_log->events();
  ASSERT_EQ(events.size(), 3u);
  for (std::size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].at("seq"), i + 1);
  ASSERT_EQ(db_->rows.size(), 3u);
  EXPECT_EQ(db_->rows.back().seq, 3u);

  // A lone send still goes at once: the end of a drain is not a timer.
  caf::anon_send(alice, atom::post_v, std::string("d"));
  run();
  EXPECT_EQ(db_->store_sizes.back(), 1u);
  EXPECT_EQ(replies(*alice_log).back(), "reply:posted:4:d");
}

TEST_F(room_actor_test, the_sends_of_a_refused_store_are_taken_again_once_the_room_has_reloaded) {
  open_room();
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  bob_log->entries.clear();
  db_->refuse_next = 1;  // refused as out of sequence: certainly not written
  caf::anon_send(alice, atom::post_v, std::string("x"));
  caf::anon_send(bob, atom::post_v, std::string("y"));
  step_probes({alice, bob});
  run();
  // Written at the second try, after the room read back what is stored; each sender got one answer.
  EXPECT_EQ(db_->store_sizes, (std::vector<std::size_t>{2, 2}));
  EXPECT_EQ(replies(*alice_log).back(), "reply:posted:1:x");
  EXPECT_EQ(replies(*bob_log), std::vector<std::string>{"reply:posted:2:y"});
  EXPECT_EQ(message_events(*bob_log), 2u);
  ASSERT_EQ(db_->rows.size(), 2u);
  EXPECT_EQ(db_->rows[0].text, "x");
  EXPECT_EQ(db_->rows[1].text, "y");
}

TEST_F(room_actor_test, a_duplicate_in_a_store_gets_its_original_and_the_other_sends_are_taken_again) {
  // Alice's retry of a send stored long ago (the room's tail no longer holds it), in one store with bob's.
  auto original = stored(1, "alice", "c-old");
  original.room = "elsewhere";
  db_->rows.push_back(original);
  open_room();
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  bob_log->entries.clear();
  db_->hold = true;
  caf::anon_send(bob, atom::post_v, std::string("first"));
  caf::anon_send(alice, atom::post_v, std::string("again"), std::string("c-old"));
  step_probes({bob, alice});
  run();
  // Bob's next send travels in a later store, which cannot follow on from one that was refused.
  caf::anon_send(bob, atom::post_v, std::string("second"));
  run();
  ASSERT_EQ(db_->store_sizes, (std::vector<std::size_t>{2, 1}));
  db_->hold = false;
  db_->held_fail = false;
  caf::anon_send(writer_, atom::flush_v);
  run();
  EXPECT_EQ(replies(*alice_log).back(), "reply:posted:1:old 1");  // the original, from the other room
  // Bob's sends were not failed for it: taken again after the room reloaded, stored once each, in order.
  EXPECT_EQ(replies(*bob_log), (std::vector<std::string>{"reply:posted:1:first", "reply:posted:2:second"}));
  std::vector<std::pair<std::uint64_t, std::string>> in_room;
  for (const auto& r : db_->rows)
    if (r.room == "general") in_room.emplace_back(r.seq, r.text);
  EXPECT_EQ(in_room, (std::vector<std::pair<std::uint64_t, std::string>>{{1, "first"}, {2, "second"}}));
  EXPECT_EQ(message_events(*alice_log), 2u);
}

TEST_F(room_actor_test, a_store_the_writer_never_answers_is_failed_by_the_watchdog) {
  open_room();
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  bob_log->entries.clear();
  db_->hold = true;
  caf::anon_send(alice, atom::post_v, std::string("stuck"));
  run();
  EXPECT_EQ(replies(*alice_log).size(), 1u) << "no answer before the commit";
  // request_timeout (1 s here) later the room gives up on it, fails the send and reloads what is stored.
  sched_.trigger_timeouts();
  run();
  EXPECT_EQ(replies(*alice_log).back(), "reply:error:unavailable");
  EXPECT_EQ(message_events(*bob_log), 0u);
  db_->hold = false;
  caf::anon_send(alice, atom::post_v, std::string("later"));
  run();
  EXPECT_EQ(replies(*alice_log).back(), "reply:posted:1:later");
  // The stuck store's answer, should it come after all, is ignored: it belongs to an older generation.
  caf::anon_send(writer_, atom::flush_v);
  run();
  EXPECT_TRUE(db_->held.empty());
  EXPECT_EQ(replies(*alice_log).back(), "reply:posted:1:later");
  EXPECT_EQ(message_events(*bob_log), 1u);
}

TEST_F(room_actor_test, sends_are_refused_while_a_write_waits_past_shed_after_and_taken_once_it_is_answered) {
  shed_after_ = std::chrono::milliseconds(400);  // request_timeout is 1 s here
  open_room();
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  bob_log->entries.clear();
  db_->hold = true;  // PostgreSQL slows down: the writer takes stores and answers none yet
  caf::anon_send(alice, atom::post_v, std::string("first"));
  run();
  sched_.clock().advance_time(std::chrono::milliseconds(300));
  caf::anon_send(alice, atom::post_v, std::string("second"));
  run();
  EXPECT_EQ(replies(*alice_log).size(), 1u) << "waited 300 ms: both are taken, neither answered";
  EXPECT_EQ(db_->stores, 2u);

  sched_.clock().advance_time(std::chrono::milliseconds(150));  // the first store has now waited 450 ms
  caf::anon_send(alice, atom::post_v, std::string("third"));
  run();
  EXPECT_EQ(replies(*alice_log).back(), "reply:error:unavailable") << "refused at once, not queued";
  EXPECT_EQ(db_->stores, 2u) << "a refused send never reaches the writer";
  EXPECT_EQ(counters_->sends_shed.load(), 1u);

  // The database catches up: what was taken is acknowledged and delivered, and a retry of the refused
  // send is taken like any other.
  db_->hold = false;
  db_->held_fail = false;
  caf::anon_send(writer_, atom::flush_v);
  run();
  caf::anon_send(alice, atom::post_v, std::string("third"));
  run();
  auto r = replies(*alice_log);
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[2], "reply:posted:1:first");
  EXPECT_EQ(r[3], "reply:posted:2:second");
  EXPECT_EQ(r[4], "reply:posted:3:third");
  EXPECT_EQ(message_events(*bob_log), 3u);
  ASSERT_EQ(db_->rows.size(), 3u);
  EXPECT_EQ(db_->rows.back().seq, 3u);
  EXPECT_EQ(counters_->sends_shed.load(), 1u);
}

TEST_F(room_actor_test, without_shed_after_sends_queue_behind_a_slow_write_until_the_watchdog) {
  open_room();  // shed_after 0: never refuse for a slow writer
  auto [alice, alice_log] = member("alice");
  db_->hold = true;
  caf::anon_send(alice, atom::post_v, std::string("first"));
  run();
  sched_.clock().advance_time(std::chrono::milliseconds(900));
  caf::anon_send(alice, atom::post_v, std::string("second"));
  run();
  EXPECT_EQ(replies(*alice_log).size(), 1u) << "both wait for the writer";
  EXPECT_EQ(db_->stores, 2u);
  EXPECT_EQ(counters_->sends_shed.load(), 0u);
}

/// Watches an actor and records when it goes down.
caf::behavior watcher(caf::event_based_actor* self, caf::actor target, std::shared_ptr<bool> down) {
  self->monitor(target);
  self->set_down_handler([down](const caf::down_msg&) { *down = true; });
  return {[](atom::flush) {}};
}

TEST_F(room_actor_test, rows_carry_the_epoch_of_the_activation_that_wrote_them) {
  db_->epoch["general"] = 6;  // activated six times before, e.g. on other nodes
  open_room();
  auto [alice, alice_log] = member("alice");
  caf::anon_send(alice, atom::post_v, std::string("x"));
  run();
  EXPECT_EQ(replies(*alice_log).back(), "reply:posted:1:x");
  ASSERT_EQ(db_->rows.size(), 1u);
  EXPECT_EQ(db_->rows[0].epoch, 7u);
}

TEST_F(room_actor_test, a_room_handed_over_acks_what_it_had_taken_then_refuses_and_stops) {
  open_room();
  auto down = std::make_shared<bool>(false);
  probes_.push_back(sys_.spawn(watcher, caf::actor_cast<caf::actor>(room_), down));
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  bob_log->entries.clear();
  // The post is in the room's mailbox before the handover: it is taken, stored and acknowledged.
  caf::anon_send(alice, atom::post_v, std::string("before"));
  step_probes({alice});
  caf::anon_send(room_, atom::handover_v);
  run();
  EXPECT_EQ(replies(*alice_log).back(), "reply:posted:1:before");
  EXPECT_EQ(message_events(*bob_log), 1u);
  EXPECT_TRUE(*down) << "the room stops once nothing is in flight";
  caf::anon_send(bob, atom::post_v, std::string("after"));
  run();
  EXPECT_EQ(replies(*bob_log).back(), "reply:error:unavailable");
  EXPECT_EQ(db_->rows.size(), 1u);
}

TEST_F(room_actor_test, a_room_another_node_ran_meanwhile_reloads_when_handed_back_and_sends_what_it_missed) {
  open_room();
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  caf::anon_send(alice, atom::post_v, std::string("m1"));
  run();
  // This node and another lost sight of each other without either being declared down: the other activated
  // the room, stored two messages, then handed the room back to this node, which had kept its activation.
  const auto theirs = ++db_->epoch["general"];
  for (std::uint64_t seq = 2; seq <= 3; ++seq) {
    db_->rows.push_back(storage::message_row{"m" + std::to_string(seq), "general", seq, "carol",
                                             "m" + std::to_string(seq), "", 1000, theirs});
    db_->last_seq["general"] = seq;
  }
  bob_log->entries.clear();
  auto handed_back = [](std::uint64_t epoch) {
    room_notice n;
    n.what = room_notice::handed_over;
    n.room = "general";
    n.epoch = epoch;
    return n;
  };
  // From a node whose activation was older than this one's: nothing to catch up on.
  caf::anon_send(room_, atom::notice_v, handed_back(theirs - 1));
  run();
  EXPECT_EQ(message_events(*bob_log), 0u);
  EXPECT_EQ(db_->epoch["general"], theirs) << "no reload";

  caf::anon_send(room_, atom::notice_v, handed_back(theirs));
  run();
  std::vector<std::int64_t> seqs;
  for (const auto& ev : bob_log->events())
    if (ev.at("ev") == "message") seqs.push_back(ev.at("seq").to_number<std::int64_t>());
  EXPECT_EQ(seqs, (std::vector<std::int64_t>{2, 3})) << "what the other node stored, without anyone sending";
  caf::anon_send(alice, atom::post_v, std::string("m4"));
  run();
  EXPECT_EQ(replies(*alice_log).back(), "reply:posted:4:m4")
      << "the reload took the room back (epoch " << theirs + 1 << ")";
  EXPECT_EQ(db_->rows.back().epoch, theirs + 1);
}

TEST_F(room_actor_test, an_invisible_user_gets_the_room_but_nobody_sees_it_come_or_go) {
  open_room();
  auto [alice, alice_log] = member("alice");
  alice_log->entries.clear();
  auto log = std::make_shared<probe_log>();
  auto hide = sys_.spawn(probe, room_, std::string("hide"), log);
  probes_.push_back(hide);
  caf::anon_send(hide, atom::join_v, true);
  run();
  EXPECT_EQ(replies(*log).back(), "reply:joined");
  caf::anon_send(alice, atom::post_v, std::string("hello"));
  run();
  EXPECT_EQ(message_events(*log), 1u) << "it gets the room's messages";
  // Nothing told alice of it: not a join, not a presence; and neither lists nor counts show it.
  for (const auto& ev : alice_log->events()) EXPECT_EQ(ev.at("ev"), "message") << json::serialize(ev);
  auto [bob, bob_log] = member("bob");
  EXPECT_EQ(replies(*bob_log).back(), "reply:joined:1:alice,bob,");
  EXPECT_EQ(bob_log->member_count, 2u);
  caf::anon_send(bob, atom::members_v, std::string(), std::uint32_t{10});
  run();
  EXPECT_EQ(replies(*bob_log).back(), "reply:members:2:alice,bob,end");
  alice_log->entries.clear();
  caf::anon_send(hide, atom::typing_v);
  run();
  EXPECT_TRUE(alice_log->events().empty()) << "nor does it see it type";
  caf::anon_send(hide, atom::leave_v);
  run();
  EXPECT_EQ(replies(*log).back(), "reply:left");
  EXPECT_TRUE(alice_log->events().empty()) << "nor does it see it go";
}

TEST_F(room_actor_test, offline_goes_out_only_for_a_users_last_connection_in_the_room) {
  open_room();
  auto [alice1, alice1_log] = member("alice");
  auto [alice2, alice2_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  bob_log->entries.clear();
  // Alice's first connection closes as her second is here: its session (told by presence that it was her
  // last connection, just before the second one counted) says offline, then leaves.
  caf::anon_send(room_, atom::presence_v, std::string("alice"), false);
  caf::anon_send(alice1, atom::leave_v);
  run();
  EXPECT_TRUE(bob_log->events().empty()) << "alice is still here: no offline, no member_left";
  // Nor anything about a user who is not in the room.
  caf::anon_send(room_, atom::presence_v, std::string("carol"), false);
  run();
  EXPECT_TRUE(bob_log->events().empty());
  // Her last connection here going: offline and left, as usual.
  caf::anon_send(room_, atom::presence_v, std::string("alice"), false);
  caf::anon_send(alice2, atom::leave_v);
  run();
  std::vector<std::string> seen;
  for (const auto& ev : bob_log->events()) seen.push_back(std::string(ev.at("ev").as_string()));
  EXPECT_EQ(seen, (std::vector<std::string>{"presence", "member_left"}));
}

TEST_F(room_actor_test, readers_dropped_when_a_room_turns_private_are_seen_to_leave) {
  auto down = std::make_shared<bool>(false);
  auto accounts = sys_.spawn(fake_accounts, down);
  open_room(4, 1000, accounts);
  auto room_is = [&](bool is_public) {
    room_notice n;
    n.what = room_notice::room_updated;
    n.room = "general";
    n.frame = R"({"ev":"room_updated","room":"general","d":{}})";
    n.access = storage::room_access_row{"general", storage::room_kind::group, is_public, false, 0, {}};
    caf::anon_send(room_, atom::notice_v, std::move(n));
    run();
  };
  room_is(true);  // bob, not a member, may read it now
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  EXPECT_EQ(replies(*bob_log).back(), "reply:joined:0:alice,bob,");
  alice_log->entries.clear();
  room_is(false);
  std::vector<std::string> seen;
  for (const auto& ev : alice_log->events())
    seen.push_back(
        std::string(ev.at("ev").as_string()) +
        (ev.at("ev") == "member_left" ? ":" + std::string(ev.at("d").at("user").as_string()) : ""));
  EXPECT_EQ(seen, (std::vector<std::string>{"room_updated", "member_left:bob"}));
  // Bob's connection closing later tells alice nothing about him.
  alice_log->entries.clear();
  caf::anon_send(room_, atom::presence_v, std::string("bob"), false);
  run();
  EXPECT_TRUE(alice_log->events().empty());
  caf::anon_send_exit(accounts, caf::exit_reason::user_shutdown);
}

TEST_F(room_actor_test, a_fenced_room_stores_nothing_fails_its_sends_and_stops) {
  open_room();
  auto down = std::make_shared<bool>(false);
  probes_.push_back(sys_.spawn(watcher, caf::actor_cast<caf::actor>(room_), down));
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  bob_log->entries.clear();
  ++db_->epoch["general"];  // another node activated the room meanwhile
  caf::anon_send(alice, atom::post_v, std::string("stale"));
  run();
  EXPECT_EQ(replies(*alice_log).back(), "reply:error:unavailable");
  EXPECT_EQ(message_events(*bob_log), 0u);
  EXPECT_TRUE(db_->rows.empty());
  EXPECT_TRUE(*down) << "a fenced room must not reactivate by itself and fence the new owner";
}

}  // namespace

namespace {

/// The `ev` of each event a probe got since its log was last cleared, with `d.count` or `d.user` after a
/// colon.
std::vector<std::string> event_names(const probe_log& log) {
  std::vector<std::string> out;
  for (const auto& ev : log.events()) {
    std::string name(ev.at("ev").as_string());
    const auto& d = ev.at("d").as_object();
    if (d.contains("count")) name += ":" + std::to_string(d.at("count").to_number<std::uint64_t>());
    if (d.contains("user")) name += ":" + std::string(d.at("user").as_string());
    if (d.contains("members")) {
      name += ":";
      for (const auto& m : d.at("members").as_array()) name += std::string(m.at("user").as_string()) + ",";
    }
    out.push_back(name);
  }
  return out;
}

}  // namespace

TEST_F(room_actor_test, a_crowded_room_sends_member_counts_instead_of_per_user_events) {
  open_room(4, 3);
  auto [ann, ann_log] = member("ann");
  auto [bob, bob_log] = member("bob");
  auto [cid, cid_log] = member("cid");
  EXPECT_TRUE(cid_log->member_events);
  EXPECT_EQ(cid_log->member_count, 3u);
  ann_log->entries.clear();

  // The fourth user makes the room crowded: everyone already in hears the count instead of member_joined.
  auto [dan, dan_log] = member("dan");
  EXPECT_EQ(event_names(*ann_log), std::vector<std::string>{"member_count:4"});
  EXPECT_EQ(event_names(*cid_log).back(), "member_count:4");
  // The joiner's reply lists the first three users by id, counts all four, and says no per-user events come.
  EXPECT_EQ(dan_log->entries, std::vector<std::string>{"reply:joined:0:ann,bob,cid,"});
  EXPECT_EQ(dan_log->member_count, 4u);
  EXPECT_FALSE(dan_log->member_events);

  // Joins, typing and presence now send nothing at once; the count follows within a second, once.
  ann_log->entries.clear();
  auto [eve, eve_log] = member("eve");
  auto [fay, fay_log] = member("fay");
  caf::anon_send(bob, atom::typing_v);
  caf::anon_send(room_, atom::presence_v, std::string("fay"), false);
  run();
  EXPECT_TRUE(ann_log->entries.empty());
  sched_.advance_time(std::chrono::seconds(1));
  run();
  EXPECT_EQ(event_names(*ann_log), std::vector<std::string>{"member_count:6"});
  EXPECT_EQ(event_names(*eve_log), std::vector<std::string>{"member_count:6"});

  // Messages are delivered as ever.
  caf::anon_send(eve, atom::post_v, std::string("hello"));
  run();
  EXPECT_EQ(event_names(*ann_log).back(), "message:eve");
}

TEST_F(room_actor_test, a_crowded_room_counts_again_only_when_the_count_moved) {
  open_room(4, 2);
  auto [ann, ann_log] = member("ann");
  auto [bob, bob_log] = member("bob");
  auto [cid, cid_log] = member("cid");  // crowded from here
  ann_log->entries.clear();
  auto [dan, dan_log] = member("dan");
  caf::anon_send(dan, atom::leave_v);
  run();
  sched_.advance_time(std::chrono::seconds(1));
  run();
  EXPECT_TRUE(ann_log->entries.empty());  // back at three, which the last count said
}

TEST_F(room_actor_test, a_crowded_room_sends_the_whole_list_and_per_user_events_again_at_half_the_limit) {
  open_room(4, 4);
  std::vector<std::pair<caf::actor, std::shared_ptr<probe_log>>> in;
  for (const char* user : {"ann", "bob", "cid", "dan", "eve"}) in.push_back(member(user));  // crowded at eve
  auto& ann_log = in[0].second;

  // Down to three users it stays crowded (so a room at the limit does not flip with every join and leave)...
  ann_log->entries.clear();
  for (std::size_t i : {4u, 3u}) caf::anon_send(in[i].first, atom::leave_v);
  run();
  EXPECT_TRUE(ann_log->entries.empty());

  // ...and at two, half the limit, everyone gets the whole list, then per-user events as before.
  caf::anon_send(in[2].first, atom::leave_v);
  run();
  EXPECT_EQ(event_names(*ann_log), std::vector<std::string>{"members:ann,bob,"});
  EXPECT_EQ(event_names(*in[1].second).back(), "members:ann,bob,");
  ann_log->entries.clear();
  auto [fay, fay_log] = member("fay");
  EXPECT_TRUE(fay_log->member_events);
  EXPECT_EQ(fay_log->member_count, 3u);
  EXPECT_EQ(event_names(*ann_log), (std::vector<std::string>{"member_joined:fay", "presence:fay"}));
  // No count is left scheduled from the crowded time.
  ann_log->entries.clear();
  sched_.advance_time(std::chrono::seconds(1));
  run();
  EXPECT_TRUE(ann_log->entries.empty());
}

TEST_F(room_actor_test, members_pages_through_everyone_connected_in_user_order_and_only_for_members) {
  open_room(4, 2);
  auto [cid, cid_log] = member("cid");
  auto [ann, ann_log] = member("ann");
  auto [bob, bob_log] = member("bob");
  auto [dan, dan_log] = member("dan");
  auto second_ann = member("ann");  // a second connection counts once

  auto page = [&](const std::string& after, std::uint32_t limit) {
    caf::anon_send(bob, atom::members_v, after, limit);
    run();
    return bob_log->entries.back();
  };
  EXPECT_EQ(page("", 3), "reply:members:4:ann,bob,cid,more");
  EXPECT_EQ(page("cid", 3), "reply:members:4:dan,end");
  EXPECT_EQ(page("", 4), "reply:members:4:ann,bob,cid,dan,end");
  EXPECT_EQ(page("b", 1), "reply:members:4:bob,more");  // after any string, not only a user's id
  EXPECT_EQ(page("dan", 5), "reply:members:4:end");

  // Someone who has not joined learns nothing.
  auto log = std::make_shared<probe_log>();
  auto outsider = sys_.spawn(probe, room_, std::string("eve"), log);
  probes_.push_back(outsider);
  caf::anon_send(outsider, atom::members_v, std::string(), std::uint32_t{10});
  run();
  EXPECT_EQ(log->entries, std::vector<std::string>{"reply:error:not_joined"});
}

}  // namespace chorus::actors
