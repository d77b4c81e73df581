// Tests for cluster-wide presence (label redis; CHORUS_REDIS_URL from scripts/services.sh): a user on two
// nodes is online once, a dead node's users expire, restarts and shutdowns clean up, the hash is rewritten
// after an outage, and without Redis the answers are per node and logged once.
#include "storage/presence_store.hpp"
#include "tests/support/redis_probe.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using chorus::storage::presence_store;
using chorus::testing::log_capture;
using chorus::testing::raw_redis;
using chorus::testing::redis_url;
using chorus::testing::unique;
using chorus::testing::unreachable_url;

class PresenceStore : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = redis_url();
    if (url_.empty()) GTEST_SKIP() << "CHORUS_REDIS_URL is not set (scripts/services.sh env)";
    prefix_ = "test:" + unique("presence") + ":";
  }

  void TearDown() override {
    if (url_.empty()) return;
    raw_redis raw(url_);
    for (const auto& id : ids_) raw.run({"DEL", hash(id)});
    raw.run({"DEL", prefix_ + "nodes"});
  }

  presence_store::options opts(std::chrono::milliseconds ttl = 60s) {
    presence_store::options o;
    o.key_prefix = prefix_;
    o.ttl = ttl;
    o.min_backoff = 0ms;
    return o;
  }

  std::unique_ptr<presence_store> node(const std::string& id, presence_store::options o) {
    ids_.push_back(id);
    return std::make_unique<presence_store>(url_, id, std::move(o));
  }
  std::unique_ptr<presence_store> node(const std::string& id) { return node(id, opts()); }

  std::string hash(const std::string& id) const { return prefix_ + "node:" + id; }

  std::string url_;
  std::string prefix_;
  std::vector<std::string> ids_;
};

TEST_F(PresenceStore, AUserOnTwoNodesIsOnlineOnce) {
  auto a = node("a");
  auto b = node("b");
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());

  EXPECT_TRUE(a->connected("alice"));  // first anywhere
  EXPECT_TRUE(a->shared());
  EXPECT_FALSE(b->connected("alice"));  // already online through a
  EXPECT_TRUE(b->shared());
  EXPECT_FALSE(a->connected("alice"));  // a second connection on a
  EXPECT_EQ(raw.run({"HGET", hash("a"), "alice"}), "2");
  EXPECT_EQ(raw.run({"HGET", hash("b"), "alice"}), "1");
  EXPECT_EQ(a->local_connections("alice"), 2u);

  EXPECT_FALSE(a->gone("alice"));
  EXPECT_FALSE(a->gone("alice"));  // a has none left, but b has one
  EXPECT_EQ(raw.run({"HEXISTS", hash("a"), "alice"}), "0");
  EXPECT_EQ(a->online("alice"), true);
  EXPECT_TRUE(b->gone("alice"));  // the last one in the cluster
  EXPECT_TRUE(b->shared());
  EXPECT_EQ(a->online("alice"), false);
  EXPECT_EQ(b->online("alice"), false);

  EXPECT_FALSE(a->gone("alice"));      // nothing counted for alice on a any more: no answer to give
  EXPECT_TRUE(a->connected("alice"));  // online again, first again
  EXPECT_FALSE(b->connected("alice"));
  EXPECT_TRUE(b->connected("bob"));  // users are independent
}

TEST_F(PresenceStore, ABatchAnswersAsOneCallAfterAnother) {
  using chorus::storage::presence_change;
  auto a = node("a");
  auto b = node("b");
  ASSERT_TRUE(b->connected("vic"));
  const std::vector<presence_change> batch{{"uma", true},  {"uma", true},  {"vic", true}, {"uma", false},
                                           {"uma", false}, {"wes", false}, {"vic", false}};
  const std::vector<bool> expected{true, false, false, false, true, false, false};
  EXPECT_EQ(a->apply(batch), expected);
  EXPECT_TRUE(a->shared());
  EXPECT_TRUE(a->apply({}).empty());
  EXPECT_TRUE(b->gone("vic"));  // a's connection of vic came and went within the batch
}

TEST_F(PresenceStore, ADeadNodesUsersExpire) {
  auto dead = node("dead", opts(100ms));  // stops refreshing: its hash lives 100 ms
  auto alive = node("alive");
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  ASSERT_TRUE(dead->connected("carol"));
  ASSERT_TRUE(dead->connected("dave"));
  ASSERT_FALSE(alive->connected("dave"));
  EXPECT_EQ(alive->online("carol"), true);

  // Redis's clock decides when the hash expires, and it cannot be mocked: wait (bounded) for that event.
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (alive->online("carol") != false && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(alive->online("carol"), false);
  EXPECT_EQ(raw.run({"SISMEMBER", prefix_ + "nodes", "dead"}), "0");  // pruned by the node that looked
  EXPECT_TRUE(alive->connected("carol"));  // first again: the dead node does not count
  EXPECT_TRUE(alive->gone("dave"));        // and the last: dave's other connection died with its node

  // The "dead" node was only paused: its next refresh finds its hash gone and writes its users again.
  log_capture logs;
  EXPECT_TRUE(dead->refresh());
  EXPECT_EQ(logs.count("had expired"), 1);
  EXPECT_EQ(raw.run({"HGET", hash("dead"), "carol"}), "1");
  EXPECT_EQ(raw.run({"SISMEMBER", prefix_ + "nodes", "dead"}), "1");
  EXPECT_FALSE(alive->gone("carol"));  // carol is still connected through the node that came back
}

TEST_F(PresenceStore, RefreshKeepsTheEntryAlive) {
  auto a = node("a", opts(60s));
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  ASSERT_TRUE(a->connected("erin"));
  ASSERT_EQ(raw.run({"PEXPIRE", hash("a"), "1000"}), "1");
  EXPECT_TRUE(a->refresh());
  EXPECT_GT(std::stoll(raw.run({"PTTL", hash("a")})), 50000);
}

TEST_F(PresenceStore, ARestartedNodeDropsWhatItsPredecessorLeft) {
  auto other = node("other");
  {
    auto crashed = node("a");
    ASSERT_TRUE(crashed->connected("frank"));
    ASSERT_EQ(other->online("frank"), true);
  }  // gone without clear(): a crash
  auto restarted = node("a");
  EXPECT_TRUE(restarted->refresh());  // the first contact rewrites the node's hash from its (empty) counts
  EXPECT_EQ(other->online("frank"), false);
  EXPECT_TRUE(other->connected("frank"));
}

TEST_F(PresenceStore, ClearTakesTheNodesUsersOffline) {
  auto a = node("a");
  auto b = node("b");
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  ASSERT_TRUE(a->connected("grace"));
  ASSERT_TRUE(a->connected("heidi"));
  EXPECT_TRUE(a->clear());
  EXPECT_EQ(raw.run({"EXISTS", hash("a")}), "0");
  EXPECT_EQ(raw.run({"SISMEMBER", prefix_ + "nodes", "a"}), "0");
  EXPECT_EQ(b->online("grace"), false);
  EXPECT_TRUE(b->connected("heidi"));
  EXPECT_EQ(a->local_connections("grace"), 0u);
}

TEST_F(PresenceStore, CountsMadeDuringAnOutageReachRedisWhenItIsBack) {
  log_capture logs;
  auto o = opts();
  o.client_name = unique("presence-conn");
  auto a = node("a", o);
  auto b = node("b");
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  ASSERT_TRUE(a->connected("ivan"));
  ASSERT_TRUE(a->shared());

  ASSERT_TRUE(raw.kill(o.client_name));
  EXPECT_TRUE(a->connected("judy"));  // the broken connection: answered on this node alone
  EXPECT_FALSE(a->shared());
  EXPECT_EQ(logs.count("presence: Redis at"), 1);
  EXPECT_EQ(logs.count("presence counts this node only"), 1);
  EXPECT_EQ(b->online("judy"), false);  // b cannot know yet

  EXPECT_TRUE(a->connected("mallory"));  // reconnected: the whole hash is written again first
  EXPECT_TRUE(a->shared());
  EXPECT_EQ(logs.count("is back; presence is cluster-wide again"), 1);
  EXPECT_EQ(b->online("judy"), true);
  EXPECT_EQ(b->online("ivan"), true);
  EXPECT_EQ(raw.run({"HGET", hash("a"), "ivan"}), "1");
  EXPECT_FALSE(b->connected("judy"));
  EXPECT_EQ(logs.count("unreachable"), 1);
}

// --- without Redis (no CHORUS_REDIS_URL needed) ---------------------------------------------------------

TEST(PresenceStoreFallback, UnreachableRedisAnswersPerNodeAndSaysSoOnce) {
  log_capture logs;
  presence_store::options o;
  o.min_backoff = 0ms;  // try the closed port on every call: still one log line per store
  presence_store a(unreachable_url, "a", o);
  presence_store b(unreachable_url, "b", o);
  EXPECT_TRUE(a.connected("alice"));
  EXPECT_TRUE(b.connected("alice"));  // per node: b cannot see a's connection
  EXPECT_FALSE(a.shared());
  EXPECT_FALSE(a.connected("alice"));
  EXPECT_FALSE(a.gone("alice"));
  EXPECT_TRUE(a.gone("alice"));
  EXPECT_FALSE(a.gone("alice"));               // nothing left to close
  EXPECT_EQ(a.online("alice"), std::nullopt);  // unknown: maybe on another node
  EXPECT_EQ(b.online("alice"), true);          // certain: connected here
  EXPECT_FALSE(a.refresh());
  EXPECT_FALSE(a.clear());  // Redis could not be told
  EXPECT_EQ(a.local_connections("alice"), 0u);
  EXPECT_EQ(logs.count("presence: Redis at 127.0.0.1:1 unreachable"), 2);
  EXPECT_EQ(logs.count("presence counts this node only"), 2);
  EXPECT_EQ(logs.count("is back"), 0);
}

TEST(PresenceStoreFallback, WithoutAUrlPresenceIsPerNode) {
  log_capture logs;
  presence_store a("", "a");
  EXPECT_TRUE(a.connected("alice"));
  EXPECT_FALSE(a.connected("alice"));
  EXPECT_FALSE(a.gone("alice"));
  EXPECT_TRUE(a.gone("alice"));
  EXPECT_FALSE(a.shared());
  EXPECT_FALSE(a.refresh());
  EXPECT_EQ(logs.count("unreachable"), 0);
}

}  // namespace
