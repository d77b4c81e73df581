// Tests for the Redis node registry (label redis; CHORUS_REDIS_URL from scripts/services.sh): entries,
// expiry and heartbeats, lost incarnations, leaving, announcements, reconnects, stats, drain requests, and
// failures as values when Redis is unreachable. Every test uses a key prefix and channel of its own.
#include "cluster/node_registry.hpp"
#include "tests/support/redis_probe.hpp"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
using chorus::cluster::announcement;
using chorus::cluster::announcements;
using chorus::cluster::decode_node;
using chorus::cluster::decode_stats;
using chorus::cluster::encode;
using chorus::cluster::new_incarnation;
using chorus::cluster::node_info;
using chorus::cluster::node_registry;
using chorus::cluster::node_stats;
using chorus::cluster::outcome;
using chorus::testing::log_capture;
using chorus::testing::raw_redis;
using chorus::testing::redis_url;
using chorus::testing::unreachable_url;

// Unique per process and per call, so reruns and parallel runs never share a key or a channel.
std::string unique_name(std::string_view what) {
  static const auto run = std::chrono::steady_clock::now().time_since_epoch().count();
  static int counter = 0;
  return "test-" + std::to_string(::getpid()) + "-" + std::to_string(run) + "-" + std::to_string(++counter) +
         "-" + std::string(what);
}

node_info make_node(std::string id, std::uint16_t port = 8080) {
  return node_info{std::move(id), new_incarnation(),          "127.0.0.1",
                   port,          std::uint16_t(port + 1000), 1'700'000'000'000};
}

std::vector<std::string> ids(const std::vector<node_info>& nodes) {
  std::vector<std::string> out;
  for (const auto& n : nodes) out.push_back(n.id);
  return out;
}

class NodeRegistry : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = redis_url();
    if (url_.empty()) GTEST_SKIP() << "CHORUS_REDIS_URL is not set (scripts/services.sh env)";
    opts_.key_prefix = "test:" + unique_name("nodes") + ":";
  }
  void TearDown() override {
    if (url_.empty()) return;
    raw_redis raw(url_);  // leave nothing behind, even when a test failed half-way
    const auto keys = ids_of_prefix(raw);
    for (const auto& k : keys) raw.run({"DEL", k});
  }

  std::vector<std::string> ids_of_prefix(raw_redis& raw) {
    std::vector<std::string> out;
    auto* r = static_cast<redisReply*>(redisCommand(raw.ctx, "KEYS %s*", opts_.key_prefix.c_str()));
    if (r != nullptr && r->type == REDIS_REPLY_ARRAY)
      for (std::size_t i = 0; i < r->elements; ++i) out.emplace_back(r->element[i]->str, r->element[i]->len);
    if (r != nullptr) freeReplyObject(r);
    return out;
  }

  // Options with a connection name of its own, so a test can kill exactly that connection.
  node_registry::options named(std::string_view who) const {
    auto o = opts_;
    o.client_name = unique_name(who);
    return o;
  }

  // The live node list, asserting that Redis answered.
  std::vector<node_info> live(node_registry& r) {
    auto nodes = r.live_nodes();
    EXPECT_TRUE(nodes.has_value());
    return nodes.value_or(std::vector<node_info>{});
  }

  // The next announcement that is not a resync, within `wait`.
  static std::optional<announcement> next_event(announcements& a, std::chrono::milliseconds wait = 2s) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < deadline) {
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      auto got = a.next(std::max(left, 1ms));
      if (got && got->what != announcement::kind::resync) return got;
    }
    return std::nullopt;
  }

  std::string url_;
  node_registry::options opts_;
};

TEST_F(NodeRegistry, RegisteredNodeIsListed) {
  node_registry reg(url_, opts_);
  EXPECT_TRUE(live(reg).empty());
  const auto self = make_node("node-1");
  ASSERT_EQ(reg.register_self(self), outcome::ok);
  EXPECT_TRUE(reg.reachable());
  const auto nodes = live(reg);
  ASSERT_EQ(nodes.size(), 1u);
  EXPECT_EQ(nodes[0], self);
  EXPECT_EQ(reg.self(), self);
  EXPECT_EQ(reg.heartbeat(), outcome::ok);

  // Stored under its id, as the compact encoding, with a TTL no longer than configured.
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw.run({"GET", opts_.key_prefix + "node-1"}), encode(self));
  const int ttl = std::stoi(raw.run({"PTTL", opts_.key_prefix + "node-1"}));
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 3000);
}

TEST_F(NodeRegistry, TwoNodesSeeEachOther) {
  node_registry a(url_, opts_);
  node_registry b(url_, opts_);
  const auto na = make_node("node-a", 8001);
  const auto nb = make_node("node-b", 8002);
  ASSERT_EQ(a.register_self(na), outcome::ok);
  ASSERT_EQ(b.register_self(nb), outcome::ok);
  const std::vector<std::string> both{"node-a", "node-b"};
  EXPECT_EQ(ids(live(a)), both);
  EXPECT_EQ(ids(live(b)), both);
  EXPECT_EQ(live(a), (std::vector<node_info>{na, nb}));

  // Other keys under the prefix, and entries stored under a name that is not their id, are ignored.
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  raw.run({"SET", opts_.key_prefix + "garbage", "not json"});
  raw.run({"SET", opts_.key_prefix + "alias", encode(na)});
  raw.run({"HSET", opts_.key_prefix + "hash", "f", "v"});
  EXPECT_EQ(ids(live(b)), both);
}

TEST_F(NodeRegistry, ManyNodesAreAllListed) {
  // More entries than one SCAN batch under a busy prefix: the listing follows the cursor to the end.
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  std::set<std::string> expected;
  for (int i = 0; i < 1200; ++i) {
    const auto n = make_node("n" + std::to_string(i));
    raw.run({"SET", opts_.key_prefix + n.id, encode(n), "PX", "60000"});
    expected.insert(n.id);
  }
  node_registry reg(url_, opts_);
  const auto nodes = live(reg);
  const auto got = ids(nodes);
  EXPECT_EQ(std::set<std::string>(got.begin(), got.end()), expected);
  EXPECT_EQ(got.size(), expected.size());
  EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
}

TEST_F(NodeRegistry, EntryExpiresWithoutHeartbeatAndTheIncarnationIsLost) {
  opts_.ttl = 300ms;
  node_registry reg(url_, opts_);
  node_registry observer(url_, opts_);
  const auto self = make_node("node-1");
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(reg.register_self(self), outcome::ok);
  ASSERT_EQ(ids(live(observer)), std::vector<std::string>{"node-1"});
  // Redis's clock decides; poll the listing until the entry is gone (no fixed sleep).
  while (!live(observer).empty() && std::chrono::steady_clock::now() - start < 3s)
    std::this_thread::sleep_for(20ms);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(live(observer).empty());
  EXPECT_GE(elapsed, 250ms);

  // The paused node finds out on its next heartbeat, and may only come back as a new incarnation.
  EXPECT_EQ(reg.heartbeat(), outcome::lost);
  EXPECT_FALSE(reg.self().has_value());
  EXPECT_EQ(reg.heartbeat(), outcome::not_registered);
  EXPECT_EQ(reg.register_self(self), outcome::stale_incarnation);
  EXPECT_TRUE(live(observer).empty());
  auto again = self;
  again.incarnation = new_incarnation();
  ASSERT_NE(again.incarnation, self.incarnation);
  EXPECT_EQ(reg.register_self(again), outcome::ok);
  EXPECT_EQ(live(observer), std::vector<node_info>{again});
}

TEST_F(NodeRegistry, HeartbeatsKeepTheEntry) {
  // 500 ms rather than 300: a loaded CI machine may stall a heartbeat by a few hundred milliseconds.
  opts_.ttl = 500ms;
  node_registry reg(url_, opts_);
  node_registry observer(url_, opts_);
  ASSERT_EQ(reg.register_self(make_node("node-1")), outcome::ok);
  // Three TTLs long, heartbeating every 100 ms (node_heartbeat_ms is a third of node_ttl_ms by default).
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < 1500ms) {
    ASSERT_EQ(reg.heartbeat(), outcome::ok);
    ASSERT_EQ(ids(live(observer)), std::vector<std::string>{"node-1"});
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(reg.heartbeat(), outcome::ok);
}

TEST_F(NodeRegistry, ReplacedEntryMakesHeartbeatReportLost) {
  node_registry old_life(url_, opts_);
  node_registry new_life(url_, opts_);
  const auto first = make_node("node-1");
  auto second = first;
  second.incarnation = new_incarnation();
  second.started_at_ms += 5000;
  ASSERT_EQ(old_life.register_self(first), outcome::ok);
  ASSERT_EQ(new_life.register_self(second), outcome::ok);  // a restart before the old entry expired
  EXPECT_EQ(live(new_life), std::vector<node_info>{second});
  EXPECT_EQ(old_life.heartbeat(), outcome::lost);
  EXPECT_EQ(new_life.heartbeat(), outcome::ok);
  EXPECT_EQ(old_life.register_self(first), outcome::stale_incarnation);
  EXPECT_EQ(live(old_life), std::vector<node_info>{second});
}

TEST_F(NodeRegistry, LeaveOfAReplacedEntryDeletesNothing) {
  node_registry old_life(url_, opts_);
  node_registry new_life(url_, opts_);
  const auto first = make_node("node-1");
  auto second = first;
  second.incarnation = new_incarnation();
  ASSERT_EQ(old_life.register_self(first), outcome::ok);
  ASSERT_EQ(new_life.register_self(second), outcome::ok);
  EXPECT_EQ(old_life.leave(), outcome::lost);
  EXPECT_EQ(live(new_life), std::vector<node_info>{second});
  EXPECT_EQ(new_life.heartbeat(), outcome::ok);
}

TEST_F(NodeRegistry, LeaveRemovesTheEntryAndAnnouncesIt) {
  announcements events(url_, opts_);
  ASSERT_TRUE(events.subscribed());
  auto first = events.next(0ms);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->what, announcement::kind::resync);  // the first thing said: list the nodes now

  node_registry reg(url_, opts_);
  const auto self = make_node("node-1");
  EXPECT_EQ(reg.leave(), outcome::not_registered);
  ASSERT_EQ(reg.register_self(self), outcome::ok);
  auto joined = next_event(events);
  ASSERT_TRUE(joined.has_value());
  EXPECT_EQ(joined->what, announcement::kind::joined);
  EXPECT_EQ(joined->node, self);

  EXPECT_EQ(reg.leave(), outcome::ok);
  EXPECT_TRUE(live(reg).empty());
  EXPECT_EQ(reg.heartbeat(), outcome::not_registered);
  EXPECT_EQ(reg.leave(), outcome::not_registered);
  auto left = next_event(events);
  ASSERT_TRUE(left.has_value());
  EXPECT_EQ(left->what, announcement::kind::left);
  EXPECT_EQ(left->node, self);
  EXPECT_FALSE(events.next(50ms).has_value());  // nothing else was said
}

TEST_F(NodeRegistry, AnotherRegistrysSubscriberHearsJoinsAndLeavesInOrder) {
  node_registry a(url_, opts_);
  node_registry b(url_, opts_);
  announcements a_hears(url_, opts_);
  announcements b_hears(url_, opts_);
  const auto na = make_node("node-a", 8001);
  const auto nb = make_node("node-b", 8002);
  ASSERT_EQ(a.register_self(na), outcome::ok);
  ASSERT_EQ(b.register_self(nb), outcome::ok);
  ASSERT_EQ(a.leave(), outcome::ok);
  for (auto* hears : {&a_hears, &b_hears}) {
    std::vector<std::pair<announcement::kind, std::string>> got;
    for (int i = 0; i < 3; ++i) {
      auto e = next_event(*hears);
      ASSERT_TRUE(e.has_value()) << i;
      got.emplace_back(e->what, e->node.id);
    }
    const std::vector<std::pair<announcement::kind, std::string>> expected{
        {announcement::kind::joined, "node-a"},
        {announcement::kind::joined, "node-b"},
        {announcement::kind::left, "node-a"}};
    EXPECT_EQ(got, expected);
  }

  // Messages on the channel that are not announcements are skipped.
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  raw.run({"PUBLISH", a.channel(), "hello"});
  raw.run({"PUBLISH", a.channel(), R"({"event":"exploded","node":{}})"});
  ASSERT_EQ(b.leave(), outcome::ok);
  auto e = next_event(a_hears);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->what, announcement::kind::left);
  EXPECT_EQ(e->node, nb);
}

TEST_F(NodeRegistry, ReconnectsAfterItsConnectionIsKilled) {
  log_capture logs;
  auto o = named("reg");
  o.min_backoff = 0ms;
  node_registry reg(url_, o);
  ASSERT_EQ(reg.register_self(make_node("node-1")), outcome::ok);
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  ASSERT_TRUE(raw.kill(o.client_name));
  EXPECT_EQ(reg.heartbeat(), outcome::unavailable);  // the broken connection
  EXPECT_FALSE(reg.reachable());
  EXPECT_EQ(reg.heartbeat(), outcome::ok);  // reconnected, and the entry is still ours
  EXPECT_TRUE(reg.reachable());
  EXPECT_EQ(logs.count("unreachable"), 1);
  EXPECT_EQ(logs.count("is back"), 1);
}

TEST_F(NodeRegistry, SubscriberResubscribesAndSaysSo) {
  auto o = named("sub");
  o.min_backoff = 0ms;
  announcements events(url_, o);
  ASSERT_EQ(events.next(0ms)->what, announcement::kind::resync);
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  ASSERT_TRUE(raw.kill(o.client_name));
  // The loss is noticed, the subscription restored, and the caller told to list the nodes again.
  auto e = events.next(2s);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->what, announcement::kind::resync);
  EXPECT_TRUE(events.subscribed());
  node_registry reg(url_, opts_);
  ASSERT_EQ(reg.register_self(make_node("node-1")), outcome::ok);
  auto joined = next_event(events);
  ASSERT_TRUE(joined.has_value());
  EXPECT_EQ(joined->what, announcement::kind::joined);
}

// --- stats and drain requests ---------------------------------------------------------------------------

using stats_list = std::vector<std::pair<std::string, node_stats>>;

// Polls `done` until it holds or `within` passes: expiry is Redis's clock, there is no event to wait on.
template <typename F>
bool eventually(F done, std::chrono::milliseconds within = 3s) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

TEST_F(NodeRegistry, StatsRoundTripAndExpireAfterTheTtl) {
  // 500 ms: a loaded machine must not let the figures expire between publishing and reading them.
  opts_.ttl = 500ms;
  node_registry reg(url_, opts_);
  node_registry observer(url_, opts_);
  const node_stats figures{3, 17, 1'000'000'000'000ull, 1'700'000'000'123, false};
  EXPECT_EQ(reg.publish_stats(figures), outcome::not_registered);  // nothing stored for a stranger
  ASSERT_EQ(observer.stats(), stats_list{});

  ASSERT_EQ(reg.register_self(make_node("node-1")), outcome::ok);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(reg.publish_stats(figures), outcome::ok);
  EXPECT_EQ(observer.stats(), (stats_list{{"node-1", figures}}));
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw.run({"GET", opts_.key_prefix + "stats:node-1"}), encode(figures));
  const int ttl = std::stoi(raw.run({"PTTL", opts_.key_prefix + "stats:node-1"}));
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 500);

  // Newer figures replace the old ones.
  auto later = figures;
  later.messages_stored += 5;
  later.at_ms += 1000;
  later.draining = true;
  ASSERT_EQ(reg.publish_stats(later), outcome::ok);
  EXPECT_EQ(observer.stats(), (stats_list{{"node-1", later}}));

  // Not published again: gone after the TTL, like the entry.
  EXPECT_TRUE(eventually([&] { return observer.stats() == stats_list{}; }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 450ms);
}

TEST_F(NodeRegistry, StatsListsEveryNodeSortedById) {
  node_registry b(url_, opts_);
  node_registry a(url_, opts_);
  node_registry observer(url_, opts_);
  ASSERT_EQ(b.register_self(make_node("node-b", 8002)), outcome::ok);
  ASSERT_EQ(a.register_self(make_node("node-a", 8001)), outcome::ok);
  const node_stats sb{1, 2, 3, 4, false};
  const node_stats sa{10, 20, 30, 40, true};
  ASSERT_EQ(b.publish_stats(sb), outcome::ok);
  ASSERT_EQ(a.publish_stats(sa), outcome::ok);
  EXPECT_EQ(observer.stats(), (stats_list{{"node-a", sa}, {"node-b", sb}}));

  // Unreadable figures, and keys under stats: that name no node, are skipped.
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  raw.run({"SET", opts_.key_prefix + "stats:node-c", "not json"});
  raw.run({"SET", opts_.key_prefix + "stats:x:y", encode(sa)});
  raw.run({"SET", opts_.key_prefix + "stats:", encode(sa)});
  EXPECT_EQ(observer.stats(), (stats_list{{"node-a", sa}, {"node-b", sb}}));
}

TEST_F(NodeRegistry, DrainRequestIsSeenByThatNodeOnlyAndExpires) {
  node_registry a(url_, opts_);
  node_registry b(url_, opts_);
  node_registry operator_(url_, opts_);          // chorusctl: never registers
  EXPECT_EQ(a.drain_requested(), std::nullopt);  // not registered: cannot tell
  ASSERT_EQ(a.register_self(make_node("node-a", 8001)), outcome::ok);
  ASSERT_EQ(b.register_self(make_node("node-b", 8002)), outcome::ok);
  EXPECT_EQ(a.drain_requested(), false);
  EXPECT_EQ(b.drain_requested(), false);

  EXPECT_EQ(operator_.request_drain("node-c", 10s), outcome::not_registered);        // no such live node
  EXPECT_EQ(operator_.request_drain("stats:node-a", 10s), outcome::not_registered);  // not even an id
  EXPECT_EQ(operator_.request_drain("", 10s), outcome::not_registered);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(operator_.request_drain("node-a", 500ms), outcome::ok);
  EXPECT_EQ(a.drain_requested(), true);
  EXPECT_EQ(b.drain_requested(), false);
  // Still a live node while it drains: requesting does not touch the entry, and heartbeats go on.
  EXPECT_EQ(ids(live(b)), (std::vector<std::string>{"node-a", "node-b"}));
  EXPECT_EQ(a.heartbeat(), outcome::ok);

  EXPECT_TRUE(eventually([&] { return a.drain_requested() == false; }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 450ms);
  EXPECT_EQ(b.drain_requested(), false);
}

TEST_F(NodeRegistry, DrainRequestIsForOneIncarnationOnly) {
  // A node drained and restarted (by hand or by a supervisor) before the request expired is not drained
  // again: the request names the incarnation it was made for.
  node_registry first_life(url_, opts_);
  node_registry operator_(url_, opts_);
  const auto first = make_node("node-1");
  ASSERT_EQ(first_life.register_self(first), outcome::ok);
  ASSERT_EQ(operator_.request_drain("node-1", 60s), outcome::ok);
  EXPECT_EQ(first_life.drain_requested(), true);
  ASSERT_EQ(first_life.leave(), outcome::ok);
  EXPECT_EQ(first_life.drain_requested(), std::nullopt);
  EXPECT_EQ(operator_.request_drain("node-1", 60s), outcome::not_registered);  // gone: nothing to drain

  node_registry second_life(url_, opts_);
  auto second = first;
  second.incarnation = new_incarnation();
  ASSERT_EQ(second_life.register_self(second), outcome::ok);
  EXPECT_EQ(second_life.drain_requested(), false);
  ASSERT_EQ(operator_.request_drain("node-1", 60s), outcome::ok);
  EXPECT_EQ(second_life.drain_requested(), true);
}

TEST_F(NodeRegistry, LiveNodesIgnoresStatsAndDrainKeys) {
  node_registry a(url_, opts_);
  const auto na = make_node("node-a");
  ASSERT_EQ(a.register_self(na), outcome::ok);
  ASSERT_EQ(a.publish_stats(node_stats{1, 2, 3, 4, false}), outcome::ok);
  ASSERT_EQ(a.request_drain("node-a", 60s), outcome::ok);  // holds node-a's entry: a valid node_info
  // Values that would pass for entries stored under their own id, were ids allowed to contain ':'.
  auto fake_stats = make_node("stats:node-z");
  auto fake_drain = make_node("drain:node-z");
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  raw.run({"SET", opts_.key_prefix + fake_stats.id, encode(fake_stats)});
  raw.run({"SET", opts_.key_prefix + fake_drain.id, encode(fake_drain)});
  EXPECT_EQ(live(a), std::vector<node_info>{na});
}

// --- without Redis (no CHORUS_REDIS_URL needed) ---------------------------------------------------------

TEST(NodeRegistryOffline, UnreachableRedisFailsAsValuesAndLogsOnce) {
  log_capture logs;
  node_registry::options o;
  o.min_backoff = 0ms;  // try the closed port on every call: still one log line
  node_registry reg(unreachable_url, o);
  const auto self = make_node("node-1");
  EXPECT_EQ(reg.register_self(self), outcome::unavailable);
  EXPECT_EQ(reg.register_self(self), outcome::unavailable);
  EXPECT_FALSE(reg.self().has_value());
  EXPECT_EQ(reg.heartbeat(), outcome::not_registered);
  EXPECT_EQ(reg.leave(), outcome::not_registered);
  EXPECT_FALSE(reg.live_nodes().has_value());
  EXPECT_EQ(reg.publish_stats(node_stats{}), outcome::not_registered);
  EXPECT_FALSE(reg.stats().has_value());
  EXPECT_EQ(reg.request_drain("node-2", 1s), outcome::unavailable);
  EXPECT_EQ(reg.drain_requested(), std::nullopt);
  EXPECT_FALSE(reg.reachable());
  EXPECT_EQ(logs.count("node registry: Redis at 127.0.0.1:1 unreachable"), 1);

  announcements events(unreachable_url, o);
  EXPECT_FALSE(events.subscribed());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(events.next(100ms).has_value());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);  // the wait is honoured, not multiplied
  EXPECT_FALSE(events.next(0ms).has_value());
  EXPECT_EQ(logs.count("node announcements: Redis at 127.0.0.1:1 unreachable"), 1);
  EXPECT_EQ(logs.count("is back"), 0);
}

TEST(NodeRegistryOffline, EmptyOrBadUrlIsUnavailable) {
  for (const char* url : {"", "http://127.0.0.1:6379", "redis://127.0.0.1:notaport"}) {
    node_registry reg(url);
    EXPECT_EQ(reg.register_self(make_node("node-1")), outcome::unavailable) << url;
    EXPECT_FALSE(reg.live_nodes().has_value()) << url;
    announcements events(url);
    EXPECT_FALSE(events.next(10ms).has_value()) << url;
  }
}

TEST(NodeInfo, EncodingRoundTrips) {
  node_info n{"node-\"1\"\n", new_incarnation(), "::1", 65535, 0, -5, 4294967295u};
  const auto text = encode(n);
  EXPECT_EQ(decode_node(text), n);
  EXPECT_EQ(text.find('\n'), std::string::npos);  // compact: one line
  EXPECT_EQ(decode_node(R"({"id":"a","incarnation":"b","host":"h","client_port":1,"cluster_port":2,)"
                        R"("started_at_ms":3,"zone":"later-field"})"),
            (node_info{"a", "b", "h", 1, 2, 3}));
}

TEST(NodeInfo, AnEntryWithoutAWireVersionIsOfVersionZero) {
  // What builds from before wire versions registered: readable, and compatible with no current build.
  auto old = decode_node(R"({"id":"a","incarnation":"b","host":"h","client_port":1,"cluster_port":2,)"
                         R"("started_at_ms":3})");
  ASSERT_TRUE(old.has_value());
  EXPECT_EQ(old->wire_version, 0u);
  auto current = decode_node(R"({"id":"a","incarnation":"b","host":"h","client_port":1,"cluster_port":2,)"
                             R"("started_at_ms":3,"wire_version":7})");
  ASSERT_TRUE(current.has_value());
  EXPECT_EQ(current->wire_version, 7u);
}

TEST(NodeInfo, DecodingRejectsWhatIsNotANode) {
  for (const char* bad :
       {"", "not json", "[]", "{}",
        R"({"id":"","incarnation":"b","host":"h","client_port":1,"cluster_port":2,"started_at_ms":3})",
        R"({"id":"a","incarnation":"","host":"h","client_port":1,"cluster_port":2,"started_at_ms":3})",
        R"({"id":"a","incarnation":"b","host":"h","client_port":65536,"cluster_port":2,"started_at_ms":3})",
        R"({"id":"a","incarnation":"b","host":"h","client_port":-1,"cluster_port":2,"started_at_ms":3})",
        R"({"id":"a","incarnation":"b","host":"h","client_port":"1","cluster_port":2,"started_at_ms":3})",
        R"({"id":"a","incarnation":"b","client_port":1,"cluster_port":2,"started_at_ms":3})",
        R"({"id":"a","incarnation":"b","host":"h","client_port":1,"cluster_port":2,"started_at_ms":1.5})",
        R"({"id":"a","incarnation":"b","host":"h","client_port":1,"cluster_port":2,"started_at_ms":3,)"
        R"("wire_version":-1})",
        R"({"id":"a","incarnation":"b","host":"h","client_port":1,"cluster_port":2,"started_at_ms":3,)"
        R"("wire_version":4294967296})",
        R"({"id":"a","incarnation":"b","host":"h","client_port":1,"cluster_port":2,"started_at_ms":3,)"
        R"("wire_version":"1"})"})
    EXPECT_FALSE(decode_node(bad).has_value()) << bad;
}

TEST(NodeStats, EncodingRoundTrips) {
  const node_stats s{1, 0, std::numeric_limits<std::uint64_t>::max(), -7, true};
  const auto text = encode(s);
  EXPECT_EQ(decode_stats(text), s);
  EXPECT_EQ(text.find('\n'), std::string::npos);  // compact: one line
  EXPECT_EQ(decode_stats(R"({"rooms":1,"connections":2,"messages_stored":3,"at_ms":4,"draining":false,)"
                         R"("queued":"later-field"})"),
            (node_stats{1, 2, 3, 4, false}));
}

TEST(NodeStats, DecodingRejectsWhatAreNotStats) {
  for (const char* bad : {"", "not json", "[]", "{}",
                          R"({"rooms":-1,"connections":2,"messages_stored":3,"at_ms":4,"draining":false})",
                          R"({"rooms":1,"connections":2.5,"messages_stored":3,"at_ms":4,"draining":false})",
                          R"({"rooms":1,"connections":2,"messages_stored":"3","at_ms":4,"draining":false})",
                          R"({"rooms":1,"connections":2,"messages_stored":3,"draining":false})",
                          R"({"rooms":1,"connections":2,"messages_stored":3,"at_ms":4,"draining":1})",
                          R"({"rooms":1,"connections":2,"messages_stored":3,"at_ms":4})"})
    EXPECT_FALSE(decode_stats(bad).has_value()) << bad;
}

TEST(NodeInfo, IncarnationsAreFreshHex) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const auto inc = new_incarnation();
    ASSERT_EQ(inc.size(), 16u);
    ASSERT_TRUE(
        std::all_of(inc.begin(), inc.end(), [](char c) { return std::isxdigit(c) && !std::isupper(c); }));
    seen.insert(inc);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

}  // namespace
