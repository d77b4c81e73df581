// Whole-node tests of cluster membership: real chorusd processes with a cluster port register in Redis, keep
// their entries alive, leave cleanly on SIGTERM and expire after kill -9; and chorusctl reading what they
// keep.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "actors/jwt.hpp"
#include "actors/messages.hpp"
#include "cluster/node_registry.hpp"
#include "cluster/peering.hpp"
#include "tests/support/free_port.hpp"
#include "tests/support/node_process.hpp"
#include "tests/support/redis_probe.hpp"
#include "tests/support/test_database.hpp"
#include "tests/support/ws_client.hpp"

namespace chorus::testing {
namespace {

using namespace std::chrono_literals;

/// What a chorusctl run printed (stdout and stderr together) and its exit status.
struct ctl_result {
  int status = -1;
  std::string output;
};

/// Runs chorusctl with `args` (each quoted for the shell) and waits for it.
ctl_result chorusctl(const std::vector<std::string>& args) {
  std::string command = CHORUSCTL_PATH;
  for (const auto& a : args) command += " '" + a + "'";
  command += " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {};
  ctl_result r;
  char buf[4096];
  while (auto n = std::fread(buf, 1, sizeof buf, pipe)) r.output.append(buf, n);
  const int status = ::pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

/// The whitespace-separated fields of the line of `table` whose first field is `key`; empty when none is.
std::vector<std::string> row_of(const std::string& table, const std::string& key) {
  std::istringstream lines(table);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::vector<std::string> fields;
    for (std::string w; words >> w;) fields.push_back(w);
    if (!fields.empty() && fields[0] == key) return fields;
  }
  return {};
}

bool is_number(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789.") == std::string::npos;
}

class cluster_test : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* redis = std::getenv("CHORUS_REDIS_URL");
    if (redis == nullptr) GTEST_SKIP() << "CHORUS_REDIS_URL is not set";
    // A database of its own: ctest runs tests in parallel, and nodes sharing one would form one cluster.
    database_ = std::make_unique<redis_database>(redis);
    ASSERT_TRUE(database_->claimed()) << "no free Redis database (1-15) on " << redis;
    redis_ = database_->url();
    registry_ = std::make_unique<cluster::node_registry>(redis_);
  }

  void TearDown() override {
    if (HasFailure())
      for (auto& [id, node] : nodes_) std::cerr << "--- " << id << " ---\n" << node->output() << "\n";
  }

  /// Starts a clustered node with a node id unique to this test process; `extra` overrides or adds settings.
  node_process& start(const std::string& name, const std::map<std::string, std::string>& extra = {}) {
    auto id = name + "-" + std::to_string(::getpid());
    std::map<std::string, std::string> env{{"CHORUS_JWT_SECRET", "cluster-test-secret-0123456789abcdef"},
                                           {"CHORUS_NODE_ID", id},
                                           {"CHORUS_DATABASE_URL", test_database::instance().url()},
                                           {"CHORUS_REDIS_URL", redis_},
                                           {"CHORUS_CLUSTER_PORT", std::to_string(free_port())},
                                           {"CHORUS_NODE_TTL_MS", "1000"},
                                           {"CHORUS_NODE_HEARTBEAT_MS", "200"}};
    for (const auto& [k, v] : extra) env[k] = v;
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

  /// Whether `node` logs a line containing `text` within `within`.
  static bool wait_logged(node_process& node, const std::string& text, std::chrono::milliseconds within) {
    auto deadline = std::chrono::steady_clock::now() + within;
    do {
      if (node.output().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(50ms);
    } while (std::chrono::steady_clock::now() < deadline);
    return false;
  }

  std::unique_ptr<redis_database> database_;
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
  auto r = chorusctl({"--redis_url", redis_, "nodes"});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find(id_of("f")), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(id_of("g")), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("127.0.0.1:" + std::to_string(a.port())), std::string::npos) << r.output;
}

TEST_F(cluster_test, chorusctl_drain_refuses_a_node_that_is_not_live) {
  auto r = chorusctl({"--redis_url", redis_, "drain", id_of("nobody")});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find(id_of("nobody") + " is not a live node"), std::string::npos) << r.output;
  EXPECT_EQ(chorusctl({"--redis_url", redis_, "drain"}).status, 2);  // no NODE: a usage error
}

TEST_F(cluster_test, chorusctl_stats_shows_what_every_node_publishes) {
  start("s");
  start("t");
  ASSERT_TRUE(wait_registered(id_of("s"), true, 5s));
  ASSERT_TRUE(wait_registered(id_of("t"), true, 5s));
  // Nodes publish their figures with every heartbeat (200 ms here): a row of numbers for each, soon.
  const auto published = [](const std::vector<std::string>& row) {
    return row.size() == 6 && is_number(row[1]) && is_number(row[2]) && is_number(row[3]);
  };
  ctl_result r;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  do {
    r = chorusctl({"--redis_url", redis_, "stats", "--once"});
    if (published(row_of(r.output, id_of("s"))) && published(row_of(r.output, id_of("t")))) break;
    std::this_thread::sleep_for(100ms);
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(published(row_of(r.output, id_of("s")))) << r.output;
  EXPECT_TRUE(published(row_of(r.output, id_of("t")))) << r.output;

  // Two readings: a rate for each node, and neither is draining.
  r = chorusctl({"--redis_url", redis_, "stats"});
  EXPECT_EQ(r.status, 0) << r.output;
  for (const auto& name : {"s", "t"}) {
    const auto row = row_of(r.output, id_of(name));
    ASSERT_EQ(row.size(), 6u) << r.output;
    EXPECT_TRUE(is_number(row[4])) << r.output;  // MSG/S
    EXPECT_EQ(row[5], "no") << r.output;         // DRAINING
  }
}

TEST_F(cluster_test, chorusctl_drain_wait_returns_once_the_node_has_left) {
  auto& a = start("u");
  start("v");
  ASSERT_TRUE(wait_registered(id_of("u"), true, 5s));
  ASSERT_TRUE(wait_registered(id_of("v"), true, 5s));
  auto r = chorusctl({"--redis_url", redis_, "drain", id_of("u"), "--wait"});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find(id_of("u") + " will stop accepting connections, hand its rooms over and exit"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find(id_of("u") + " has left the cluster"), std::string::npos) << r.output;
  EXPECT_TRUE(a.wait_exit(10s).has_value()) << "a drained node exits";
  EXPECT_TRUE(entry(id_of("v")).has_value()) << "only the node named is drained";
}

TEST_F(cluster_test, chorusctl_rooms_lists_a_room_after_a_client_sends_to_it) {
  // Not clustered (no cluster port, no registry): rooms live where they are joined, so the room is in this
  // test's database whatever other tests' nodes share the Redis server. chorusctl rooms reads PostgreSQL
  // only.
  const std::string secret = "cluster-test-secret-0123456789abcdef";
  auto& node = start("r", {{"CHORUS_CLUSTER_PORT", "0"}, {"CHORUS_DEV_MODE", "1"}});
  ws_client::options opts;
  opts.bearer = actors::jwt::mint(secret, "alice", std::time(nullptr), 3600);
  auto client = ws_client::connect(node.port(), opts);
  const std::string room = "ctl-room-" + std::to_string(::getpid());
  ASSERT_TRUE(client->send_json({{"op", "join"}, {"room", room}, {"id", 1}}));
  ASSERT_TRUE(client->next_where([](const auto& o) { return o.contains("re") && o.at("re") == 1; }));
  ASSERT_TRUE(client->send_json({{"op", "send"}, {"room", room}, {"text", "hello"}, {"id", 2}}));
  auto ack = client->next_where([](const auto& o) { return o.contains("re") && o.at("re") == 2; });
  ASSERT_TRUE(ack.has_value());
  ASSERT_TRUE(ack->contains("ok")) << "send refused";

  // ROOM LAST_SEQ OWNER_EPOCH OWNER_NODE, then OWNER_NODE ROOMS; a send is acknowledged once stored.
  const std::string db = test_database::instance().url();
  auto r = chorusctl({"--database_url", db, "rooms"});
  EXPECT_EQ(r.status, 0) << r.output;
  const auto row = row_of(r.output, room);
  ASSERT_EQ(row.size(), 4u) << r.output;
  EXPECT_EQ(row[1], "1") << r.output;
  EXPECT_EQ(row[3], id_of("r")) << r.output;
  EXPECT_EQ(row_of(r.output, id_of("r")), (std::vector<std::string>{id_of("r"), "1"})) << r.output;

  // Only that node's rooms, and none of a node that owns nothing.
  r = chorusctl({"--database_url", db, "rooms", "--node", id_of("r"), "--limit", "1"});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(row_of(r.output, room).size(), 4u) << r.output;
  r = chorusctl({"--database_url", db, "rooms", "--node", "nobody"});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(row_of(r.output, room).empty()) << r.output;
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

/// Another process's registry entry, kept alive by this test: long TTL, so that no heartbeat is needed.
std::unique_ptr<cluster::node_registry> register_entry(const std::string& redis,
                                                       const cluster::node_info& entry) {
  cluster::node_registry::options opts;
  opts.ttl = 60s;
  auto registry = std::make_unique<cluster::node_registry>(redis, opts);
  if (registry->register_self(entry) != cluster::outcome::ok) return nullptr;
  return registry;
}

TEST_F(cluster_test, a_node_does_not_start_beside_a_live_node_of_another_build) {
  // An entry as a build from before wire versions writes it (version 0).
  auto older = register_entry(redis_, {id_of("older"), cluster::new_incarnation(), "127.0.0.1", 1, 2, 0, 0});
  ASSERT_TRUE(older);
  try {
    start("h");
    FAIL() << "chorusd started beside a live node of another wire version";
  } catch (const std::runtime_error& e) {
    const std::string out = e.what();
    EXPECT_NE(out.find("node " + id_of("older") + " at 127.0.0.1:1 is live with cluster wire version 0"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("cannot join a cluster running another build"), std::string::npos) << out;
  }
  EXPECT_FALSE(entry(id_of("h")).has_value()) << "a refused node must not register";

  // Once the other build has left, the same node starts.
  ASSERT_EQ(older->leave(), cluster::outcome::ok);
  start("h");
  EXPECT_TRUE(wait_registered(id_of("h"), true, 5s));
  EXPECT_EQ(entry(id_of("h")).value_or(cluster::node_info{}).wire_version, actors::cluster_wire_version);
}

TEST_F(cluster_test, a_peer_of_another_build_that_registers_later_is_never_connected) {
  auto& node = start("i");
  ASSERT_TRUE(wait_registered(id_of("i"), true, 5s));
  ASSERT_TRUE(wait_logged(node, "cluster: view is now 1 nodes [" + id_of("i") + "]", 5s)) << node.output();

  // Two node actors in this process, answering hello as the registry lists them: one registered with this
  // build's wire version, one with version 0 (a build from before versions). Both would connect without
  // the check; only the first may.
  caf::actor_system_config cfg;
  cluster::configure_middleman(cfg, config::node_config{});
  caf::actor_system sys{cfg};
  std::vector<std::unique_ptr<cluster::node_registry>> entries;
  std::vector<actors::node_actor> actors_here;
  // The system waits for its actors as it goes, so they stop first, whichever way the test ends.
  struct stop_actors {
    std::vector<actors::node_actor>& actors;
    ~stop_actors() {
      for (auto& a : actors) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    }
  } stop{actors_here};
  for (auto [name, version] : {std::pair{"same", actors::cluster_wire_version}, std::pair{"older", 0u}}) {
    const auto incarnation = cluster::new_incarnation();
    auto actor =
        sys.spawn(cluster::node, actors::node_hello{id_of(name), incarnation}, actors::room_directory{});
    actors_here.push_back(actor);
    auto port = cluster::publish_node(sys, actor, 0);
    ASSERT_TRUE(port);
    entries.push_back(register_entry(redis_, {id_of(name), incarnation, "127.0.0.1", 1, *port, 0, version}));
    ASSERT_TRUE(entries.back());
  }

  const auto both = id_of("i") + ", " + id_of("same");  // sorted: "i-…" before "same-…"
  EXPECT_TRUE(wait_logged(node, "cluster: view is now 2 nodes [" + both + "]", 10s)) << node.output();
  EXPECT_TRUE(wait_logged(node,
                          id_of("older") + " (incarnation " + entries.back()->self()->incarnation +
                              ") at 127.0.0.1:" + std::to_string(entries.back()->self()->cluster_port) +
                              " runs cluster wire version 0, this node " +
                              std::to_string(actors::cluster_wire_version) + ": not connecting",
                          5s))
      << node.output();
  // A few more listings (every 200 ms): the older peer stays out of the view and is named once.
  std::this_thread::sleep_for(1s);
  const auto out = node.output();
  EXPECT_EQ(out.find("connected to " + id_of("older")), std::string::npos) << out;
  EXPECT_EQ(out.find("view is now 3 nodes"), std::string::npos) << out;
  const auto first = out.find("runs cluster wire version 0");
  EXPECT_EQ(out.find("runs cluster wire version 0", first + 1), std::string::npos) << out;

  for (auto& e : entries) e->leave();
}

}  // namespace
}  // namespace chorus::testing
