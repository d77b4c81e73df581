// Room actor behaviour under CAF's deterministic scheduler: ordering, fan-out, membership, errors.
#include "actors/room_actor.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <caf/all.hpp>

namespace chorus::actors {
namespace {

namespace json = boost::json;

/// Everything one probe session saw, in arrival order: "reply:..." for answers to its requests,
/// the frame text for delivered events.
struct probe_log {
  std::vector<std::string> entries;
  std::vector<const std::string*> frame_addresses;
  std::vector<traffic> kinds;
  std::vector<json::object> events() const {
    std::vector<json::object> out;
    for (const auto& e : entries)
      if (e.rfind("reply:", 0) != 0) out.push_back(json::parse(e).as_object());
    return out;
  }
};

/// A stand-in for a session actor: joins, posts, types and leaves on command and records what it gets.
caf::behavior probe(caf::event_based_actor* self, room_actor room, std::string user, std::shared_ptr<probe_log> log) {
  auto ref = [self, user] { return member_ref{user, caf::actor_cast<event_sink>(self)}; };
  auto on_error = [log](caf::error& err) {
    log->entries.push_back("reply:error:" + std::string(protocol::to_string(to_protocol_error(err))));
  };
  return {
      [log](atom::deliver, const outbound_event& ev) {
        log->entries.push_back(*ev.bytes);
        log->frame_addresses.push_back(ev.bytes.get());
        log->kinds.push_back(ev.kind);
      },
      [=](atom::join) {
        self->request(room, caf::infinite, atom::join_v, ref())
            .then(
                [log](const join_result& r) {
                  std::string members;
                  for (const auto& m : r.members) members += m.user + ",";
                  log->entries.push_back("reply:joined:" + std::to_string(r.last_seq) + ":" + members);
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
      [=](atom::leave) {
        self->request(room, caf::infinite, atom::leave_v, ref())
            .then([log](bool was) { log->entries.push_back(was ? "reply:left" : "reply:not-member"); }, on_error);
      },
  };
}

class room_actor_test : public ::testing::Test {
 protected:
  room_actor_test() : sys_(configure(cfg_)), sched_(dynamic_cast<caf::scheduler::test_coordinator&>(sys_.scheduler())) {
    room_ = sys_.spawn(room, std::string("general"));
    run();
  }

  ~room_actor_test() override {
    caf::anon_send_exit(room_, caf::exit_reason::user_shutdown);
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
  room_actor room_;
  std::vector<caf::actor> probes_;
};

TEST_F(room_actor_test, first_joiner_sees_empty_room_and_later_joiners_are_announced) {
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
        out.emplace_back(ev.at("seq").to_number<std::uint64_t>(), std::string(ev.at("d").at("text").as_string()));
    return out;
  };
  auto alice_seen = seqs_and_texts(*alice_log);
  ASSERT_EQ(alice_seen.size(), 5u);
  for (std::size_t i = 0; i < alice_seen.size(); ++i) EXPECT_EQ(alice_seen[i].first, i + 1);
  EXPECT_EQ(alice_seen, seqs_and_texts(*bob_log));
}

TEST_F(room_actor_test, sender_gets_its_reply_before_its_own_message_event) {
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
  auto [alice, alice_log] = member("alice");
  auto [bob, bob_log] = member("bob");
  bob_log->entries.clear();
  alice_log->entries.clear();
  caf::anon_send(bob, atom::join_v);
  run();
  EXPECT_EQ(bob_log->entries, std::vector<std::string>{"reply:joined:0:alice,bob,"});
  EXPECT_TRUE(alice_log->entries.empty());
}

}  // namespace
}  // namespace chorus::actors
