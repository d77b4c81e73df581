// Tests for the presence actor (label redis; CHORUS_REDIS_URL from scripts/services.sh): two nodes' actors
// count a user once, the actor refreshes its entry on its own timer and clears it when it exits; without
// Redis it counts per node as before.
#include "actors/presence_actor.hpp"
#include "tests/support/redis_probe.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <caf/all.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using namespace chorus;
using chorus::testing::raw_redis;
using chorus::testing::redis_url;

std::string unique_prefix() {
  static const auto run = std::chrono::steady_clock::now().time_since_epoch().count();
  static int counter = 0;
  return "test:" + std::to_string(::getpid()) + "-" + std::to_string(run) + "-" + std::to_string(++counter) +
         ":presence:";
}

class PresenceActor : public ::testing::Test {
 protected:
  PresenceActor() : sys_(configure(cfg_)), self_(sys_) {}

  static caf::actor_system_config& configure(caf::actor_system_config& cfg) {
    cfg.add_message_types<caf::id_block::chorus>();
    return cfg;
  }

  void SetUp() override {
    url_ = redis_url();
    prefix_ = unique_prefix();
  }

  void TearDown() override {
    if (url_.empty()) return;
    raw_redis raw(url_);
    for (const char* id : {"a", "b", "c"}) raw.run({"DEL", prefix_ + "node:" + id});
    raw.run({"DEL", prefix_ + "nodes"});
  }

  actors::presence_actor spawn(const std::string& id, std::chrono::milliseconds ttl = 60s,
                               std::chrono::milliseconds refresh = 1s) {
    storage::presence_store::options o;
    o.key_prefix = prefix_;
    o.ttl = ttl;
    return sys_.spawn<caf::detached>(actors::shared_presence,
                                     std::make_shared<storage::presence_store>(url_, id, o), refresh);
  }

  template <class Atom>
  bool ask(const actors::presence_actor& who, Atom what, const std::string& user) {
    bool answer = false;
    self_->request(who, 5s, what, user)
        .receive([&](bool b) { answer = b; }, [&](caf::error& err) { ADD_FAILURE() << sys_.render(err); });
    return answer;
  }

  void stop(const actors::presence_actor& who) {
    self_->send_exit(who, caf::exit_reason::user_shutdown);
    self_->wait_for(who);
  }

  caf::actor_system_config cfg_;
  caf::actor_system sys_;
  caf::scoped_actor self_;
  std::string url_;
  std::string prefix_;
};

TEST_F(PresenceActor, TwoNodesCountAUserOnce) {
  if (url_.empty()) GTEST_SKIP() << "CHORUS_REDIS_URL is not set (scripts/services.sh env)";
  auto a = spawn("a");
  auto b = spawn("b");
  EXPECT_TRUE(ask(a, atom::connected_v, "alice"));
  EXPECT_FALSE(ask(b, atom::connected_v, "alice"));
  EXPECT_FALSE(ask(a, atom::gone_v, "alice"));  // still connected through b
  EXPECT_TRUE(ask(b, atom::gone_v, "alice"));
  stop(a);
  stop(b);
}

TEST_F(PresenceActor, ABurstOfRequestsIsAnsweredInOrder) {
  if (url_.empty()) GTEST_SKIP() << "CHORUS_REDIS_URL is not set (scripts/services.sh env)";
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  auto a = spawn("a");
  auto b = spawn("b");
  ASSERT_TRUE(ask(b, atom::connected_v, "u7"));
  // All sent before any answer is read: most arrive while a round is in Redis and go in the next one.
  std::vector<caf::response_handle<caf::blocking_actor, caf::detail::type_list<bool>, true>> pending;
  for (int i = 0; i < 50; ++i)
    pending.push_back(self_->request(a, 5s, atom::connected_v, "u" + std::to_string(i)));
  for (int i = 0; i < 50; ++i)
    pending.push_back(self_->request(a, 5s, atom::gone_v, "u" + std::to_string(i)));
  for (int i = 0; i < 100; ++i) {
    const bool expected = i % 50 != 7;  // first and last everywhere, except u7, which is on b too
    pending[i].receive([&](bool answer) { EXPECT_EQ(answer, expected) << i; },
                       [&](caf::error& err) { ADD_FAILURE() << sys_.render(err); });
  }
  EXPECT_EQ(raw.run({"EXISTS", prefix_ + "node:a"}), "0");  // every count back to zero
  stop(a);
  stop(b);
}

TEST_F(PresenceActor, ExitingClearsTheNodesEntry) {
  if (url_.empty()) GTEST_SKIP() << "CHORUS_REDIS_URL is not set (scripts/services.sh env)";
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  auto a = spawn("a");
  auto b = spawn("b");
  ASSERT_TRUE(ask(a, atom::connected_v, "bob"));
  ASSERT_EQ(raw.run({"HGET", prefix_ + "node:a", "bob"}), "1");
  stop(a);  // a clean shutdown, sessions not told: bob must not stay online until the entry expires
  // wait_for() may return before the actor's exit functor has run on its own thread: wait (bounded) for it.
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (raw.run({"EXISTS", prefix_ + "node:a"}) != "0" && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  EXPECT_EQ(raw.run({"EXISTS", prefix_ + "node:a"}), "0");
  EXPECT_TRUE(ask(b, atom::connected_v, "bob"));
  stop(b);
}

TEST_F(PresenceActor, DropsALeftoverEntryAndRefreshesOnItsOwnTimer) {
  if (url_.empty()) GTEST_SKIP() << "CHORUS_REDIS_URL is not set (scripts/services.sh env)";
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  const std::string hash = prefix_ + "node:c";
  raw.run({"HSET", hash, "ghost", "1"});  // what a crashed earlier run of node c left behind
  raw.run({"PEXPIRE", hash, "60000"});
  raw.run({"SADD", prefix_ + "nodes", "c"});

  auto c = spawn("c", 500ms, 20ms);
  ASSERT_TRUE(ask(c, atom::connected_v, "carol"));
  EXPECT_EQ(raw.run({"HEXISTS", hash, "ghost"}), "0");
  // Stretch the entry's TTL behind the actor's back; its next refresh sets it back to 500 ms. Waiting for
  // that event (bounded), since the actor's timer runs on the real clock.
  ASSERT_EQ(raw.run({"PEXPIRE", hash, "600000"}), "1");
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  long long ttl = 600000;
  while (ttl > 500 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
    ttl = std::stoll(raw.run({"PTTL", hash}));
  }
  EXPECT_LE(ttl, 500);
  EXPECT_GT(ttl, 0);
  stop(c);
}

TEST_F(PresenceActor, WithoutRedisCountsPerNode) {
  auto a = sys_.spawn(actors::presence, std::string("a"));
  EXPECT_TRUE(ask(a, atom::connected_v, "dave"));
  EXPECT_FALSE(ask(a, atom::connected_v, "dave"));
  self_->send(a, atom::heartbeat_v);  // a no-op here
  EXPECT_FALSE(ask(a, atom::gone_v, "dave"));
  EXPECT_TRUE(ask(a, atom::gone_v, "dave"));
  EXPECT_FALSE(ask(a, atom::gone_v, "dave"));
  stop(a);
}

}  // namespace
