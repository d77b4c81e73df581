// Whole-node tests of cluster membership: real chorusd processes with a cluster port register in Redis, keep
// their entries alive, leave cleanly on SIGTERM and expire after kill -9.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>

#include "cluster/node_registry.hpp"
#include "tests/support/node_process.hpp"
#include "tests/support/test_database.hpp"

namespace chorus::testing {
namespace {

using namespace std::chrono_literals;

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

class cluster_test : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* redis = std::getenv("CHORUS_REDIS_URL");
    if (redis == nullptr) GTEST_SKIP() << "CHORUS_REDIS_URL is not set";
    redis_ = redis;
    registry_ = std::make_unique<cluster::node_registry>(redis_);
  }

  void TearDown() override {
    if (HasFailure())
      for (auto& [id, node] : nodes_) std::cerr << "--- " << id << " ---\n" << node->output() << "\n";
  }

  /// Starts a clustered node with a node id unique to this test process.
  node_process& start(const std::string& name) {
    auto id = name + "-" + std::to_string(::getpid());
    std::map<std::string, std::string> env{{"CHORUS_JWT_SECRET", "cluster-test-secret-0123456789abcdef"},
                                           {"CHORUS_NODE_ID", id},
                                           {"CHORUS_DATABASE_URL", test_database::instance().url()},
                                           {"CHORUS_REDIS_URL", redis_},
                                           {"CHORUS_CLUSTER_PORT", std::to_string(free_port())},
                                           {"CHORUS_NODE_TTL_MS", "1000"},
                                           {"CHORUS_NODE_HEARTBEAT_MS", "200"}};
    nodes_[id] = std::make_unique<node_process>(CHORUSD_PATH, std::vector<std::string>{}, env);
    return *nodes_[id];
  }

  std::string id_of(const std::string& name) { return name + "-" + std::to_string(::getpid()); }

  /// The registered entry of `id`, polled for up to `within` until `present` holds (there is no event to wait
  /// for: registration happens inside another process).
  bool wait_registered(const std::string& id, bool present, std::chrono::milliseconds within) {
    auto deadline = std::chrono::steady_clock::now() + within;
    do {
      if (auto nodes = registry_->live_nodes()) {
        bool found = std::any_of(nodes->begin(), nodes->end(), [&](const auto& n) { return n.id == id; });
        if (found == present) return true;
      }
      std::this_thread::sleep_for(50ms);
    } while (std::chrono::steady_clock::now() < deadline);
    return false;
  }

  std::optional<cluster::node_info> entry(const std::string& id) {
    if (auto nodes = registry_->live_nodes())
      for (auto& n : *nodes)
        if (n.id == id) return n;
    return std::nullopt;
  }

  std::string redis_;
  std::unique_ptr<cluster::node_registry> registry_;
  std::map<std::string, std::unique_ptr<node_process>> nodes_;
};

TEST_F(cluster_test, clustered_nodes_register_with_their_addresses_and_stay_registered) {
  auto& a = start("a");
  auto& b = start("b");
  ASSERT_TRUE(wait_registered(id_of("a"), true, 5s));
  ASSERT_TRUE(wait_registered(id_of("b"), true, 5s));
  auto ea = entry(id_of("a"));
  ASSERT_TRUE(ea.has_value());
  EXPECT_EQ(ea->client_port, a.port());
  EXPECT_NE(ea->cluster_port, 0);
  EXPECT_FALSE(ea->incarnation.empty());
  EXPECT_EQ(entry(id_of("b"))->client_port, b.port());
  // Well past the 1 s TTL, heartbeats keep both entries, with the same incarnation.
  std::this_thread::sleep_for(2500ms);
  auto later = entry(id_of("a"));
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(later->incarnation, ea->incarnation);
  EXPECT_TRUE(entry(id_of("b")).has_value());
}

TEST_F(cluster_test, chorusctl_nodes_lists_every_live_node) {
  auto& a = start("f");
  start("g");
  ASSERT_TRUE(wait_registered(id_of("f"), true, 5s));
  ASSERT_TRUE(wait_registered(id_of("g"), true, 5s));
  std::string command = std::string(CHORUSCTL_PATH) + " --redis_url " + redis_ + " nodes";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  ASSERT_TRUE(pipe);
  std::string out;
  char buf[4096];
  while (auto n = std::fread(buf, 1, sizeof buf, pipe.get())) out.append(buf, n);
  EXPECT_NE(out.find(id_of("f")), std::string::npos) << out;
  EXPECT_NE(out.find(id_of("g")), std::string::npos) << out;
  EXPECT_NE(out.find("127.0.0.1:" + std::to_string(a.port())), std::string::npos) << out;
}

TEST_F(cluster_test, sigterm_leaves_the_registry_at_once_and_kill_9_expires_after_the_ttl) {
  auto& a = start("c");
  auto& b = start("d");
  ASSERT_TRUE(wait_registered(id_of("c"), true, 5s));
  ASSERT_TRUE(wait_registered(id_of("d"), true, 5s));

  a.signal(SIGTERM);
  ASSERT_EQ(a.wait_exit(10s), 0);
  EXPECT_FALSE(entry(id_of("c")).has_value()) << "a clean stop removes the entry before the process exits";
  EXPECT_NE(a.output().find("left the registry"), std::string::npos);

  b.signal(SIGKILL);
  ASSERT_TRUE(b.wait_exit(5s).has_value());
  EXPECT_TRUE(entry(id_of("d")).has_value()) << "nobody removed it: it must expire";
  EXPECT_TRUE(wait_registered(id_of("d"), false, 1000ms + 1500ms)) << "the entry outlived its TTL";
}

TEST_F(cluster_test, a_node_declared_down_rejoins_as_a_new_incarnation) {
  auto& a = start("e");
  ASSERT_TRUE(wait_registered(id_of("e"), true, 5s));
  auto first = entry(id_of("e"));
  ASSERT_TRUE(first.has_value());
  // Pause it past its TTL: the entry expires, and on waking its heartbeat finds it gone.
  a.signal(SIGSTOP);
  ASSERT_TRUE(wait_registered(id_of("e"), false, 3s));
  a.signal(SIGCONT);
  ASSERT_TRUE(wait_registered(id_of("e"), true, 5s));
  auto again = entry(id_of("e"));
  ASSERT_TRUE(again.has_value());
  EXPECT_NE(again->incarnation, first->incarnation);
  EXPECT_NE(a.output().find("declared down"), std::string::npos);
}

}  // namespace
}  // namespace chorus::testing
