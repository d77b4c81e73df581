// Presence across nodes, end to end: two chorusd processes sharing Redis count a user connected to both once
// (rooms hear "offline" only when the last connection anywhere closes), and a killed node's users go offline
// once its presence entry expires. Skipped without CHORUS_REDIS_URL.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "tests/integration/node_fixture.hpp"
#include "tests/support/redis_probe.hpp"

namespace chorus::testing {
namespace {

class cluster_presence_test : public node_test {
 protected:
  void SetUp() override {
    const auto server = redis_url();
    if (server.empty()) GTEST_SKIP() << "CHORUS_REDIS_URL is not set (scripts/services.sh env)";
    // A database of its own: presence counts every node in it, and tests running in parallel connect users
    // of the same names.
    database_ = std::make_unique<redis_database>(server);
    ASSERT_TRUE(database_->claimed()) << "no free Redis database (1-15) on " << server;
    redis_ = database_->url();
  }

  void TearDown() override {
    if (HasFailure())
      for (auto& [id, node] : nodes_) std::cerr << "--- " << id << " ---\n" << node->output() << "\n";
  }

  /// A node with an id unique to this test process, sharing Redis (for presence) but not clustered: each
  /// node runs its own rooms, which is all presence needs. Presence entries live 3 × node_ttl_ms = 1.5 s.
  node_process& start_node(const std::string& name) {
    const std::string id = node_id(name);
    settings env{{"CHORUS_JWT_SECRET", secret},
                 {"CHORUS_DEV_MODE", "1"},
                 {"CHORUS_LOG_LEVEL", "info"},
                 {"CHORUS_NODE_ID", id},
                 {"CHORUS_DATABASE_URL", test_database::instance().url()},
                 {"CHORUS_REDIS_URL", redis_},
                 {"CHORUS_NODE_TTL_MS", "500"},
                 {"CHORUS_NODE_HEARTBEAT_MS", "100"}};
    nodes_[id] = std::make_unique<node_process>(CHORUSD_PATH, std::vector<std::string>{}, env);
    return *nodes_[id];
  }

  std::string node_id(const std::string& name) const {
    return "pres-" + name + "-" + std::to_string(::getpid());
  }

  std::unique_ptr<ws_client> connect_to(node_process& node, const std::string& user) {
    ws_client::options opts;
    opts.bearer = token_for(user);
    auto c = ws_client::connect(node.port(), opts);
    auto hello = c->next();
    EXPECT_TRUE(hello && hello->at("ev") == "hello");
    return c;
  }

  /// Polls Redis (bounded) until node `name`'s presence entry has `user` (or not). There is no event to wait
  /// for: the node writes it from its own process once the connection has authenticated or closed.
  bool wait_entry(const std::string& name, const std::string& user, bool present) {
    raw_redis raw(redis_);
    const std::string key = "chorus:presence:node:" + node_id(name);
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    do {
      if (raw.run({"HEXISTS", key, user}) == (present ? "1" : "0")) return true;
      std::this_thread::sleep_for(10ms);
    } while (std::chrono::steady_clock::now() < deadline);
    return false;
  }

  static auto is_event(const char* name) {
    return [name](const json::object& o) { return o.contains("ev") && o.at("ev") == name; };
  }

  /// The next presence or member_left event about `user` that `c` receives.
  static std::optional<json::object> next_about(ws_client& c, const std::string& user) {
    return c.next_where([user](const json::object& o) {
      return o.contains("ev") && (o.at("ev") == "presence" || o.at("ev") == "member_left") &&
             o.at("d").at("user") == user.c_str();
    });
  }

  std::unique_ptr<redis_database> database_;
  std::string redis_;
  std::map<std::string, std::unique_ptr<node_process>> nodes_;
};

TEST_F(cluster_presence_test, a_user_on_two_nodes_goes_offline_only_when_the_last_connection_closes) {
  auto& a = start_node("a");
  auto& b = start_node("b");
  auto alice = connect_to(a, "alice");
  join(*alice, "lobby");
  auto bob_a = connect_to(a, "bob");
  join(*bob_a, "lobby");
  auto online = alice->next_where(is_event("presence"));
  ASSERT_TRUE(online);
  EXPECT_EQ(online->at("d").at("status"), "online");

  auto bob_b = connect_to(b, "bob");
  ASSERT_TRUE(wait_entry("b", "bob", true));

  // Bob's connection to A closes, but he is still connected to B: A's room hears he left, not that he is
  // offline.
  bob_a->close();
  auto after_a = next_about(*alice, "bob");
  ASSERT_TRUE(after_a);
  EXPECT_EQ(after_a->at("ev"), "member_left") << json::serialize(*after_a);

  // Back on A, then off B (still on A), then off A: only the last is "offline".
  auto bob_a2 = connect_to(a, "bob");
  join(*bob_a2, "lobby");
  ASSERT_TRUE(alice->next_where(is_event("presence")));  // the room sees him join again: "online"
  bob_b->close();
  ASSERT_TRUE(wait_entry("b", "bob", false));
  bob_a2->close();
  auto offline = next_about(*alice, "bob");
  ASSERT_TRUE(offline);
  EXPECT_EQ(offline->at("ev"), "presence") << json::serialize(*offline);
  EXPECT_EQ(offline->at("d").at("status"), "offline");
}

TEST_F(cluster_presence_test, a_killed_nodes_users_go_offline_when_its_entry_expires) {
  auto& a = start_node("c");
  auto& b = start_node("d");
  auto alice = connect_to(a, "alice");
  join(*alice, "hall");
  auto bob_a = connect_to(a, "bob");
  join(*bob_a, "hall");
  ASSERT_TRUE(alice->next_where(is_event("presence")));  // "online"
  auto bob_b = connect_to(b, "bob");
  ASSERT_TRUE(wait_entry("d", "bob", true));

  b.signal(SIGKILL);  // no clean shutdown: its entry stays until it expires (1.5 s)
  ASSERT_TRUE(b.wait_exit(5s));
  ASSERT_TRUE(wait_entry("d", "bob", false));

  bob_a->close();
  auto offline = next_about(*alice, "bob");
  ASSERT_TRUE(offline);
  EXPECT_EQ(offline->at("ev"), "presence") << json::serialize(*offline);
  EXPECT_EQ(offline->at("d").at("status"), "offline");
}

}  // namespace
}  // namespace chorus::testing
