// The middleman foundation of the cluster, over loopback: every type of the `chorus` type-ID block
// round-trips between two actor systems, the node actor answers and relays across nodes, dialers connect
// without blocking, and a peer that quits, dies or hangs is noticed by its monitors.
#include "cluster/node_registry.hpp"
#include "cluster/peering.hpp"
#include "tests/support/free_port.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace chorus::cluster {
namespace {

using namespace std::chrono_literals;
using actors::event_sink;
using chorus::testing::free_port;

// Short enough to keep the tests quick, long enough that loopback under sanitizers never trips it.
constexpr std::uint32_t heartbeat_ms = 100;
constexpr std::uint32_t timeout_ms = 600;
/// Time allowed on top of peer_timeout_ms for a monitor to hear about a lost peer (a loaded CI machine).
constexpr auto detection_margin = 2000ms;
constexpr auto reply_timeout = 10s;

config::node_config peer_config() {
  config::node_config cfg;
  cfg.peer_heartbeat_ms = heartbeat_ms;
  cfg.peer_timeout_ms = timeout_ms;
  return cfg;
}

/// One node's actor system with the configuration it refers to (declared first, so destroyed last).
struct test_node {
  caf::actor_system_config cfg;
  std::optional<caf::actor_system> sys;
  test_node() {
    configure_middleman(cfg, peer_config());
    sys.emplace(cfg);
  }
};

/// Answers every message with the message itself. (The int argument: see actors/messages.hpp.)
caf::behavior echo(caf::event_based_actor* self, int) {
  self->set_default_handler(caf::reflect);
  return {[](int) {}};
}

/// A session as rooms and node actors see it: passes each event on to `probe` with its own name.
event_sink::behavior_type sink(event_sink::pointer, caf::actor probe, std::string name) {
  return {[probe, name](atom::deliver, const actors::outbound_event& ev) { caf::anon_send(probe, name, ev); },
          [probe, name](atom::deliver, const std::vector<actors::outbound_event>& events) {
            for (const auto& ev : events) caf::anon_send(probe, name, ev);
          }};
}

/// A room directory that only passes notices from peers on to `probe`, and refuses every claim with
/// `forbidden` (so that a test can tell its answer from any other error).
actors::room_directory::behavior_type notice_probe(actors::room_directory::pointer, caf::actor probe,
                                                   actors::node_hello me) {
  return {
      [me](atom::hello) { return me; },
      [](atom::hello, const std::string&) {},
      [](atom::lookup, const std::string&) -> caf::result<actors::room_actor> {
        return caf::make_error(caf::sec::unexpected_message);
      },
      [](atom::claim, const std::string&) -> caf::result<actors::room_actor> {
        return actors::make_error(protocol::error_code::forbidden);
      },
      [](atom::notice, actors::room_notice&) {},
      [probe](atom::relay, actors::room_notice& n) { caf::anon_send(probe, std::move(n)); },
      [](atom::nodes, actors::cluster_view&) {},
      [probe](atom::unlisted, const std::string& incarnation) {
        caf::anon_send(probe, atom::unlisted_v, incarnation);
      },
      [](atom::handover) { return std::uint64_t{0}; },
      [](atom::nodes) { return std::vector<actors::peer_node>{}; },
  };
}

/// A node's relay as rooms see it; drops what it gets (only its handle is under test).
actors::relay_sink::behavior_type relay_stub(actors::relay_sink::pointer, int) {
  return {[](atom::relay, const actors::relay_batch&) {}};
}

// -- equality, field by field (not through inspect, which is what is under test) --

template <class T>
bool same(const std::vector<T>& a, const std::vector<T>& b);

bool same(const actors::outbound_event& a, const actors::outbound_event& b) {
  return a.bytes && b.bytes && *a.bytes == *b.bytes && a.kind == b.kind && a.seq == b.seq &&
         (a.room ? b.room && *a.room == *b.room : !b.room);
}
bool same(const actors::member_ref& a, const actors::member_ref& b) {
  return a.user == b.user && a.session == b.session && a.relay == b.relay;
}
bool same(const actors::join_request& a, const actors::join_request& b) {
  return same(a.member, b.member) && a.resume == b.resume && a.last_seen == b.last_seen &&
         a.invisible == b.invisible;
}
bool same(const protocol::chat_message& a, const protocol::chat_message& b) {
  return a.id == b.id && a.room == b.room && a.seq == b.seq && a.user == b.user && a.text == b.text &&
         a.ts_ms == b.ts_ms && a.client_msg_id == b.client_msg_id;
}
bool same(const protocol::member_info& a, const protocol::member_info& b) {
  return a.user == b.user && a.online == b.online;
}
bool same(const storage::message_row& a, const storage::message_row& b) {
  return a.id == b.id && a.room == b.room && a.seq == b.seq && a.author == b.author && a.text == b.text &&
         a.client_msg_id == b.client_msg_id && a.created_at_ms == b.created_at_ms && a.epoch == b.epoch;
}
bool same(const storage::member_row& a, const storage::member_row& b) {
  return a.room_id == b.room_id && a.user_id == b.user_id && a.role == b.role && a.granted == b.granted &&
         a.revoked == b.revoked && a.muted == b.muted && a.archived == b.archived && a.pinned == b.pinned &&
         a.last_read_seq == b.last_read_seq && a.joined_at_ms == b.joined_at_ms;
}
bool same(const storage::room_access_row& a, const storage::room_access_row& b) {
  return a.room_id == b.room_id && a.kind == b.kind && a.is_public == b.is_public && a.deleted == b.deleted &&
         a.last_seq == b.last_seq && same(a.members, b.members);
}
bool same(const storage::room_snapshot& a, const storage::room_snapshot& b) {
  return a.last_seq == b.last_seq && same(a.tail, b.tail) && a.epoch == b.epoch;
}
bool same(const actors::join_result& a, const actors::join_result& b) {
  return a.last_seq == b.last_seq && same(a.members, b.members) && same(a.replay, b.replay) &&
         a.complete == b.complete && a.member_count == b.member_count && a.member_events == b.member_events;
}
bool same(const actors::members_query& a, const actors::members_query& b) {
  return a.after == b.after && a.limit == b.limit;
}
bool same(const actors::members_page& a, const actors::members_page& b) {
  return same(a.members, b.members) && a.count == b.count && a.more == b.more;
}
bool same(const actors::history_query& a, const actors::history_query& b) {
  return a.room == b.room && a.from == b.from && a.newer == b.newer && a.limit == b.limit &&
         a.max_seq == b.max_seq;
}
bool same(const actors::store_result& a, const actors::store_result& b) {
  return a.status == b.status && same(a.original, b.original);
}
bool same(const actors::post_request& a, const actors::post_request& b) {
  return a.user == b.user && a.text == b.text && a.client_msg_id == b.client_msg_id;
}
bool same(const actors::http_request& a, const actors::http_request& b) {
  return a.method == b.method && a.path == b.path && a.query == b.query && a.body == b.body &&
         a.content_type == b.content_type && a.bearer_token == b.bearer_token && a.remote_ip == b.remote_ip;
}
bool same(const actors::http_response& a, const actors::http_response& b) {
  return a.status == b.status && a.body == b.body && a.headers == b.headers;
}
bool same(const actors::room_notice& a, const actors::room_notice& b) {
  return a.what == b.what && a.room == b.room && a.user == b.user && a.frame == b.frame &&
         same(a.member, b.member) && same(a.access, b.access) && a.epoch == b.epoch;
}
bool same(const actors::node_hello& a, const actors::node_hello& b) {
  return a.node_id == b.node_id && a.incarnation == b.incarnation;
}
bool same(const actors::peer_node& a, const actors::peer_node& b) {
  return a == b;
}
bool same(const actors::room_actor& a, const actors::room_actor& b) {
  return a == b;
}
bool same(const event_sink& a, const event_sink& b) {
  return a == b;
}
template <class T>
bool same(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!same(a[i], b[i])) return false;
  return true;
}
bool same(const actors::relay_batch& a, const actors::relay_batch& b) {
  return same(a.sessions, b.sessions) && same(a.events, b.events);
}
bool same(const actors::cluster_view& a, const actors::cluster_view& b) {
  return a.incarnation == b.incarnation && same(a.nodes, b.nodes);
}

// -- sample values: every field set to something other than its default --

/// Real local actor handles of the sending system, so that handles inside messages are checked too.
struct sample_context {
  event_sink first;
  event_sink second;
  actors::relay_sink relay;
};

actors::outbound_event an_event() {
  return {std::make_shared<const std::string>(R"({"ev":"message","d":{"text":"héllo\n\"x\""}})"),
          actors::traffic::droppable, 0, nullptr};
}
actors::outbound_event a_message_event() {
  return {std::make_shared<const std::string>(R"({"ev":"message","d":{"seq":42}})"),
          actors::traffic::essential, 42, std::make_shared<const std::string>("general")};
}
storage::message_row a_row(std::uint64_t seq) {
  return {"0b6f3c1e-5f0e-4a8e-9a64-2f1d7f0c9e1" + std::to_string(seq % 10),
          "general",
          seq,
          "alice",
          "text " + std::to_string(seq),
          "cm-" + std::to_string(seq),
          1700000000000 + static_cast<std::int64_t>(seq),
          seq + 3};
}
protocol::chat_message a_message(std::uint64_t seq) {
  return {"id-" + std::to_string(seq),
          "general",
          seq,
          "bob",
          "hi\t" + std::to_string(seq),
          1700000000123 + static_cast<std::int64_t>(seq),
          "c-" + std::to_string(seq)};
}
protocol::member_info a_member_info(const std::string& user) {
  return {user, true};
}
storage::member_row a_member_row(const std::string& user) {
  return {"room-uuid", user, storage::member_role::moderator, 0x5, 0x2, true, true, true, 41, 1700000000999};
}
storage::room_access_row an_access_row() {
  return {"room-uuid", storage::room_kind::channel,
          true,        true,
          77,          {a_member_row("carol"), a_member_row("dave")}};
}
actors::store_result a_store_result() {
  return {actors::store_status::duplicate, a_row(9)};
}
actors::member_ref a_member_ref(const sample_context& ctx) {
  return {"erin", ctx.first, ctx.relay};
}

/// The samples of T; the primary template is left undefined on purpose: a type added to the `chorus` block
/// without samples here does not compile (see round_trip_every_type).
template <class T>
struct samples;

template <>
struct samples<actors::outbound_event> {
  static std::vector<actors::outbound_event> make(const sample_context&) {
    return {an_event(), a_message_event()};
  }
};
template <>
struct samples<actors::member_ref> {
  static std::vector<actors::member_ref> make(const sample_context& ctx) { return {a_member_ref(ctx)}; }
};
template <>
struct samples<actors::join_request> {
  static std::vector<actors::join_request> make(const sample_context& ctx) {
    return {{a_member_ref(ctx), true, 12345, true}};
  }
};
template <>
struct samples<actors::join_result> {
  static std::vector<actors::join_result> make(const sample_context&) {
    return {
        {99, {a_member_info("a"), a_member_info("b")}, {a_message(98), a_message(99)}, false, 5000, false}};
  }
};
template <>
struct samples<actors::members_query> {
  static std::vector<actors::members_query> make(const sample_context&) { return {{"", 100}, {"bob", 7}}; }
};
template <>
struct samples<actors::members_page> {
  static std::vector<actors::members_page> make(const sample_context&) {
    return {{{a_member_info("a"), a_member_info("b")}, 5000, true}, {{}, 0, false}};
  }
};
template <>
struct samples<actors::history_query> {
  static std::vector<actors::history_query> make(const sample_context&) {
    return {{"general", 17, true, 7, 80}};
  }
};
template <>
struct samples<actors::store_result> {
  static std::vector<actors::store_result> make(const sample_context&) { return {a_store_result()}; }
};
template <>
struct samples<std::vector<actors::store_result>> {
  static std::vector<std::vector<actors::store_result>> make(const sample_context&) {
    return {{a_store_result(), {actors::store_status::refused, a_row(3)}}};
  }
};
template <>
struct samples<std::vector<storage::message_row>> {
  static std::vector<std::vector<storage::message_row>> make(const sample_context&) {
    return {{a_row(1), a_row(2), a_row(3)}};
  }
};
template <>
struct samples<storage::message_row> {
  static std::vector<storage::message_row> make(const sample_context&) { return {a_row(5)}; }
};
template <>
struct samples<storage::room_snapshot> {
  static std::vector<storage::room_snapshot> make(const sample_context&) {
    return {{42, {a_row(41), a_row(42)}, 9}};
  }
};
template <>
struct samples<std::vector<protocol::chat_message>> {
  static std::vector<std::vector<protocol::chat_message>> make(const sample_context&) {
    return {{a_message(1), a_message(2)}};
  }
};
template <>
struct samples<actors::post_request> {
  static std::vector<actors::post_request> make(const sample_context&) {
    return {{"frank", "a message with ünïcode 🎉", "client-7"}};
  }
};
template <>
struct samples<protocol::chat_message> {
  static std::vector<protocol::chat_message> make(const sample_context&) { return {a_message(7)}; }
};
template <>
struct samples<protocol::member_info> {
  static std::vector<protocol::member_info> make(const sample_context&) { return {a_member_info("gina")}; }
};
template <>
struct samples<std::vector<protocol::member_info>> {
  static std::vector<std::vector<protocol::member_info>> make(const sample_context&) {
    return {{a_member_info("h"), a_member_info("i")}};
  }
};
template <>
struct samples<actors::http_request> {
  static std::vector<actors::http_request> make(const sample_context&) {
    actors::http_request with{"PATCH",           "/api/v1/rooms/x",  "a=1&b=2",
                              R"({"name":"y"})", "application/json", std::string("tok.en.sig"),
                              "10.1.2.3"};
    auto without = with;
    without.bearer_token.reset();
    auto empty_token = with;  // present but empty is not the same as absent
    empty_token.bearer_token = std::string{};
    return {with, without, empty_token};
  }
};
template <>
struct samples<actors::http_response> {
  static std::vector<actors::http_response> make(const sample_context&) {
    return {{429, R"({"error":"rate_limited"})", {{"Retry-After", "3"}, {"X-Other", "v"}}}};
  }
};
template <>
struct samples<actors::room_notice> {
  static std::vector<actors::room_notice> make(const sample_context&) {
    actors::room_notice handed_over;
    handed_over.what = actors::room_notice::handed_over;
    handed_over.room = "general";
    handed_over.epoch = 7;
    return {{actors::room_notice::member_joined, "general", "ivan", R"({"ev":"member_joined"})",
             a_member_row("ivan"), an_access_row()},
            handed_over};
  }
};
template <>
struct samples<storage::member_row> {
  static std::vector<storage::member_row> make(const sample_context&) { return {a_member_row("judy")}; }
};
template <>
struct samples<storage::room_access_row> {
  static std::vector<storage::room_access_row> make(const sample_context&) { return {an_access_row()}; }
};
template <>
struct samples<actors::node_hello> {
  static std::vector<actors::node_hello> make(const sample_context&) {
    return {{"node-7", "1234567890abcdef"}};
  }
};
template <>
struct samples<actors::peer_node> {
  static std::vector<actors::peer_node> make(const sample_context&) {
    return {{"node-3", "fedcba9876543210", "10.0.0.3", 8443, 9443, 4000000000u}};
  }
};
template <>
struct samples<actors::cluster_view> {
  static std::vector<actors::cluster_view> make(const sample_context&) {
    return {
        {"0123456789abcdef", {{"node-1", "aaaa", "10.0.0.1", 1, 2}, {"node-2", "bbbb", "10.0.0.2", 3, 4}}}};
  }
};
template <>
struct samples<actors::room_actor> {
  // Only the handle travels (a claim's answer): any actor of the sending node stands in for a room.
  static std::vector<actors::room_actor> make(const sample_context& ctx) {
    return {caf::actor_cast<actors::room_actor>(ctx.second)};
  }
};
template <>
struct samples<std::vector<actors::peer_node>> {
  static std::vector<std::vector<actors::peer_node>> make(const sample_context& ctx) {
    return {samples<actors::cluster_view>::make(ctx).front().nodes, {}};
  }
};
template <>
struct samples<actors::relay_batch> {
  static std::vector<actors::relay_batch> make(const sample_context& ctx) {
    return {{{ctx.first, ctx.second}, {an_event()}}, {{ctx.first}, {an_event(), a_message_event()}}};
  }
};
template <>
struct samples<std::vector<actors::outbound_event>> {
  static std::vector<std::vector<actors::outbound_event>> make(const sample_context&) {
    return {{an_event(), a_message_event()}};
  }
};

using block = caf::id_block::chorus;
constexpr std::size_t block_size = block::end - block::begin;

/// Calls f.template operator()<T>() for every type T of the `chorus` block, in ID order.
template <class F, caf::type_id_t... Is>
void for_each_block_type(F&& f, std::integer_sequence<caf::type_id_t, Is...>) {
  (f.template operator()<typename caf::type_by_id<block::begin + Is>::type>(), ...);
}
template <class F>
void for_each_block_type(F&& f) {
  for_each_block_type(std::forward<F>(f), std::make_integer_sequence<caf::type_id_t, block_size>{});
}

/// Two nodes in one process: A publishes, B connects.
class middleman_test : public ::testing::Test {
 protected:
  void SetUp() override {
    node_a_ = std::make_unique<test_node>();
    node_b_ = std::make_unique<test_node>();
    a_ = &*node_a_->sys;
    b_ = &*node_b_->sys;
  }

  void TearDown() override {
    for (auto& h : a_actors_) caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
    for (auto& h : b_actors_) caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
    a_actors_.clear();
    b_actors_.clear();
    b_ = a_ = nullptr;
    node_b_.reset();
    node_a_.reset();
  }

  template <class Handle>
  Handle on_a(Handle h) {
    a_actors_.push_back(caf::actor_cast<caf::actor>(h));
    return h;
  }
  template <class Handle>
  Handle on_b(Handle h) {
    b_actors_.push_back(caf::actor_cast<caf::actor>(h));
    return h;
  }

  /// Publishes an echo actor on A and returns B's handle to it.
  caf::actor remote_echo() {
    auto local = on_a(a_->spawn(echo, 0));
    auto port = a_->middleman().publish(local, 0, "127.0.0.1", true);
    EXPECT_TRUE(port) << a_->render(port.error());
    if (!port) return {};
    auto remote = b_->middleman().remote_actor(std::string("127.0.0.1"), *port);
    EXPECT_TRUE(remote) << b_->render(remote.error());
    return remote ? *remote : caf::actor{};
  }

  std::unique_ptr<test_node> node_a_;
  std::unique_ptr<test_node> node_b_;
  caf::actor_system* a_ = nullptr;
  caf::actor_system* b_ = nullptr;
  std::vector<caf::actor> a_actors_;
  std::vector<caf::actor> b_actors_;
};

TEST(configure_middleman, sets_heartbeat_and_timeout_and_registers_the_block) {
  test_node n;
  auto& sys = *n.sys;
  ASSERT_TRUE(sys.has_middleman());
  EXPECT_EQ(caf::get_or(sys.config(), "middleman.heartbeat-interval", caf::timespan{0}),
            caf::timespan{std::chrono::milliseconds(heartbeat_ms)});
  EXPECT_EQ(caf::get_or(sys.config(), "middleman.connection-timeout", caf::timespan{0}),
            caf::timespan{std::chrono::milliseconds(timeout_ms)});
  const auto& types = sys.types();
  for_each_block_type([&]<class T>() {
    EXPECT_NE(types.portable_name(caf::make_rtti_pair<T>()), types.default_type_name())
        << caf::type_name<T>::value << " is not registered";
  });
}

TEST_F(middleman_test, every_type_of_the_chorus_block_round_trips) {
  auto echo_b = remote_echo();
  ASSERT_TRUE(echo_b);
  caf::scoped_actor self{*b_};
  auto probe = caf::actor_cast<caf::actor>(self);
  sample_context ctx{on_b(b_->spawn(sink, probe, std::string("first"))),
                     on_b(b_->spawn(sink, probe, std::string("second"))), on_b(b_->spawn(relay_stub, 0))};
  std::size_t covered = 0;
  std::size_t values = 0;
  for_each_block_type([&]<class T>() {
    ++covered;
    const char* name = caf::type_name<T>::value;
    auto xs = samples<T>::make(ctx);
    EXPECT_FALSE(xs.empty()) << name;
    for (const auto& x : xs) {
      ++values;
      bool answered = false;
      self->request(echo_b, reply_timeout, x)
          .receive(
              [&](T& back) {
                answered = true;
                EXPECT_TRUE(same(x, back)) << name << " changed on its way through the middleman";
              },
              [&](caf::error& err) { ADD_FAILURE() << name << ": " << b_->render(err); });
      EXPECT_TRUE(answered) << name;
    }
  });
  EXPECT_EQ(covered, block_size);
  EXPECT_GE(values, block_size);
}

/// The block in actors/messages.hpp and the block the test iterates are the same (no CAF_ADD_TYPE_ID
/// outside the block's begin/end bookkeeping, nothing commented out that the count would miss).
TEST(type_id_block, every_entry_in_messages_hpp_is_covered) {
  std::ifstream in(CHORUS_MESSAGES_HPP);
  ASSERT_TRUE(in) << CHORUS_MESSAGES_HPP;
  std::size_t entries = 0;
  for (std::string line; std::getline(in, line);)
    if (line.rfind("CAF_ADD_TYPE_ID(chorus,", 0) == 0) ++entries;
  std::size_t covered = 0;
  for_each_block_type([&]<class T>() { ++covered; });
  EXPECT_EQ(entries, block_size);
  EXPECT_EQ(covered, entries);
}

/// What a node writes for the samples of every type of the block, in ID order and each after its type's
/// name, hashed (64-bit FNV-1a). Handles are null, so that it does not depend on the run. It changes when a
/// type's layout, name or place in the block changes (and when a sample above does).
std::uint64_t wire_fingerprint() {
  test_node node;  // a handle is written through an actor system, null ones too
  std::vector<char> bytes;
  caf::binary_serializer sink{*node.sys, bytes};
  const sample_context null_handles{};
  for_each_block_type([&]<class T>() {
    std::string name = caf::type_name<T>::value;
    EXPECT_FALSE(sink(name)) << name;
    for (auto& x : samples<T>::make(null_handles)) EXPECT_FALSE(sink(x)) << name;
  });
  std::uint64_t hash = 0xcbf29ce484222325u;
  for (char c : bytes) hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3u;
  return hash;
}

TEST(cluster_wire_version, names_the_layout_nodes_exchange) {
  // Every version with the fingerprint of its layout; an entry never changes once on main. When this test
  // fails, what nodes exchange changed: bump actors::cluster_wire_version and add its fingerprint below, so
  // that nodes of the old build and the new refuse each other (cluster/room_directory.cpp, chorusd) instead
  // of losing the messages they cannot read. (A changed sample above counts as a change too: bump all the
  // same.)
  const std::map<std::uint32_t, std::uint64_t> recorded{
      {1, 0xf6ef4c126fc4f789u}, {2, 0xdbda912bc8b8d41eu}, {3, 0xe8fa5b73f631dd80u},
      {4, 0x3ee23e7819be4a8bu}, {5, 0x3ee23e7819be4a8bu},
  };
  const auto fingerprint = wire_fingerprint();
  auto it = recorded.find(actors::cluster_wire_version);
  ASSERT_NE(it, recorded.end()) << "no fingerprint recorded for cluster_wire_version "
                                << actors::cluster_wire_version << "; this build's is 0x" << std::hex
                                << fingerprint;
  EXPECT_EQ(fingerprint, it->second) << "the layout changed without a new cluster_wire_version; this build's "
                                     << "fingerprint is 0x" << std::hex << fingerprint;
}

TEST_F(middleman_test, node_actor_says_hello_relays_passes_notices_on_and_answers_claims) {
  caf::scoped_actor a_probe{*a_};
  // The node actor started as one incarnation; the directory knows the one registered since (the node was
  // declared down and rejoined): peers must hear the current one.
  actors::node_hello me{"node-a", new_incarnation()};
  auto directory = on_a(a_->spawn(notice_probe, caf::actor_cast<caf::actor>(a_probe), me));
  auto node_a = on_a(a_->spawn(node, actors::node_hello{"node-a", new_incarnation()}, directory));
  auto port = publish_node(*a_, node_a, 0);
  ASSERT_TRUE(port);
  ASSERT_NE(*port, 0);

  auto remote = connect_node(*b_, "127.0.0.1", *port);
  ASSERT_TRUE(remote) << b_->render(remote.error());
  caf::scoped_actor self{*b_};
  bool said_hello = false;
  self->request(*remote, reply_timeout, atom::hello_v)
      .receive(
          [&](const actors::node_hello& h) {
            said_hello = true;
            EXPECT_TRUE(same(h, me));
          },
          [&](caf::error& err) { ADD_FAILURE() << b_->render(err); });
  EXPECT_TRUE(said_hello);

  // One relay from B to A's node actor reaches both of B's sessions (their handles crossed twice), with
  // both of its events, in order.
  auto probe = caf::actor_cast<caf::actor>(self);
  auto first = on_b(b_->spawn(sink, probe, std::string("first")));
  auto second = on_b(b_->spawn(sink, probe, std::string("second")));
  std::vector<actors::outbound_event> evs{an_event(), a_message_event()};
  self->send(*remote, atom::relay_v, actors::relay_batch{{first, second}, evs});
  std::map<std::string, std::vector<actors::outbound_event>> got;
  for (int i = 0; i < 4; ++i)
    self->receive(
        [&](const std::string& who, const actors::outbound_event& back) { got[who].push_back(back); },
        caf::after(reply_timeout) >> [&] { ADD_FAILURE() << "relay not delivered"; });
  ASSERT_EQ(got.size(), 2u);
  for (const auto& [who, back] : got) EXPECT_TRUE(same(back, evs)) << who;

  auto notice = samples<actors::room_notice>::make({}).front();
  self->send(*remote, atom::notice_v, notice);
  a_probe->receive([&](const actors::room_notice& n) { EXPECT_TRUE(same(n, notice)); },
                   caf::after(reply_timeout) >> [&] { ADD_FAILURE() << "notice not passed on"; });

  // A peer that no longer finds this node in Redis says so to its directory.
  self->send(*remote, atom::unlisted_v, std::string("0123456789abcdef"));
  a_probe->receive(
      [&](atom::unlisted, const std::string& incarnation) { EXPECT_EQ(incarnation, "0123456789abcdef"); },
      caf::after(reply_timeout) >> [&] { ADD_FAILURE() << "unlisted not passed on"; });

  // A claim is answered by A's directory, across the nodes (here: its refusal).
  bool answered = false;
  self->request(*remote, reply_timeout, atom::claim_v, std::string("general"))
      .receive([&](const actors::room_actor&) { ADD_FAILURE() << "the probe directory grants nothing"; },
               [&](caf::error& err) {
                 answered = true;
                 EXPECT_EQ(actors::to_protocol_error(err), protocol::error_code::forbidden)
                     << b_->render(err);
               });
  EXPECT_TRUE(answered);
}

TEST_F(middleman_test, publish_node_reports_a_port_in_use) {
  auto node_a = on_a(a_->spawn(node, actors::node_hello{"a", "1"}, actors::room_directory{}));
  auto port = publish_node(*a_, node_a, 0);
  ASSERT_TRUE(port);
  auto node_b = on_b(b_->spawn(node, actors::node_hello{"b", "2"}, actors::room_directory{}));
  EXPECT_FALSE(publish_node(*b_, node_b, *port));
}

TEST_F(middleman_test, connect_node_refuses_an_actor_of_another_interface) {
  auto local = on_a(a_->spawn(echo, 0));
  auto port = a_->middleman().publish(local, 0, "127.0.0.1", true);
  ASSERT_TRUE(port);
  auto remote = connect_node(*b_, "127.0.0.1", *port);
  ASSERT_FALSE(remote);
  EXPECT_EQ(remote.error(), caf::sec::unexpected_actor_messaging_interface);
}

TEST_F(middleman_test, dialer_connects_from_inside_an_actor) {
  auto node_a = on_a(a_->spawn(node, actors::node_hello{"node-a", "7"}, actors::room_directory{}));
  auto port = publish_node(*a_, node_a, 0);
  ASSERT_TRUE(port);
  auto dialer = spawn_dialer(*b_, "127.0.0.1", *port, {std::chrono::milliseconds(20), 5, 2000ms});
  // An event-based actor on B asks the dialer, then says hello, without blocking a thread.
  caf::scoped_actor self{*b_};
  auto asker = on_b(b_->spawn(
      [](caf::event_based_actor* me, node_dialer d, caf::actor report) -> caf::behavior {
        me->request(d, caf::infinite, atom::connected_v)
            .then(
                [=](actors::node_actor peer) {
                  me->request(peer, 5s, atom::hello_v)
                      .then([=](const actors::node_hello& h) { me->send(report, h); },
                            [=](caf::error& err) { me->send(report, err); });
                },
                [=](caf::error& err) { me->send(report, err); });
        return {[](int) {}};
      },
      dialer, caf::actor_cast<caf::actor>(self)));
  self->receive([&](const actors::node_hello& h) { EXPECT_EQ(h.node_id, "node-a"); },
                [&](const caf::error& err) { ADD_FAILURE() << b_->render(err); },
                caf::after(reply_timeout) >> [&] { ADD_FAILURE() << "dialer never answered"; });
}

TEST_F(middleman_test, dialer_gives_up_after_its_attempts) {
  auto port = free_port();
  auto dialer = spawn_dialer(*b_, "127.0.0.1", port, {std::chrono::milliseconds(10), 3, 2000ms});
  caf::scoped_actor self{*b_};
  bool failed = false;
  self->request(dialer, reply_timeout, atom::connected_v)
      .receive([&](const actors::node_actor&) { ADD_FAILURE() << "connected to a closed port"; },
               [&](caf::error& err) {
                 failed = true;
                 EXPECT_EQ(err, caf::sec::cannot_connect_to_node) << b_->render(err);
               });
  EXPECT_TRUE(failed);
}

TEST_F(middleman_test, dialer_keeps_trying_until_the_peer_is_up) {
  auto port = free_port();
  auto dialer = spawn_dialer(*b_, "127.0.0.1", port, {std::chrono::milliseconds(20), 0, 2000ms});
  caf::scoped_actor self{*b_};
  // Ask first, so the answer can only come from an attempt after the peer was published.
  auto pending = self->request(dialer, reply_timeout, atom::connected_v);
  auto node_a = on_a(a_->spawn(node, actors::node_hello{"late", "3"}, actors::room_directory{}));
  ASSERT_TRUE(publish_node(*a_, node_a, port));
  bool connected = false;
  std::move(pending).receive([&](const actors::node_actor& peer) { connected = static_cast<bool>(peer); },
                             [&](caf::error& err) { ADD_FAILURE() << b_->render(err); });
  EXPECT_TRUE(connected);
}

TEST_F(middleman_test, a_dialer_that_never_connects_stops_with_its_owner) {
  // Its retry timer would keep it alive, and the actor system with it, were it not watching its owner.
  auto port = free_port();
  // (An argument, since CAF's factory for an actor function without one trips UBSan.)
  auto owner = b_->spawn([](caf::event_based_actor*, int) -> caf::behavior { return {[](int) {}}; }, 0);
  auto dialer =
      spawn_dialer(*b_, "127.0.0.1", port, {std::chrono::milliseconds(10), 0, 2000ms}, owner.address());
  caf::scoped_actor self{*b_};
  self->monitor(dialer);
  self->send_exit(owner, caf::exit_reason::user_shutdown);
  bool stopped = false;
  self->receive([&](const caf::down_msg& msg) { stopped = msg.source == dialer.address(); },
                caf::after(reply_timeout) >> [] {});
  EXPECT_TRUE(stopped) << "the dialer kept retrying after its owner was gone";
}

TEST_F(middleman_test, a_monitor_hears_when_the_remote_actor_quits) {
  auto node_a = on_a(a_->spawn(node, actors::node_hello{"a", "1"}, actors::room_directory{}));
  auto port = publish_node(*a_, node_a, 0);
  ASSERT_TRUE(port);
  auto remote = connect_node(*b_, "127.0.0.1", *port);
  ASSERT_TRUE(remote);
  caf::scoped_actor self{*b_};
  self->monitor(*remote);
  auto start = std::chrono::steady_clock::now();
  caf::anon_send_exit(node_a, caf::exit_reason::user_shutdown);
  bool down = false;
  self->receive(
      [&](const caf::down_msg& dm) {
        down = true;
        EXPECT_EQ(dm.source, caf::actor_cast<caf::actor_addr>(*remote));
      },
      caf::after(std::chrono::milliseconds(timeout_ms) + detection_margin) >> [] {});
  EXPECT_TRUE(down);
  EXPECT_LT(std::chrono::steady_clock::now() - start,
            std::chrono::milliseconds(timeout_ms) + detection_margin);
}

/// A node in a child process, so that it can be killed or stopped (SIGSTOP: a hung node) for real.
/// Forked before the parent creates any actor system, so no CAF thread is duplicated half-way.
class child_node {
 public:
  child_node() {
    int fds[2];
    if (::pipe(fds) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(fds[0]);
      test_node child;
      auto& sys = *child.sys;
      auto n = sys.spawn(node, actors::node_hello{"child", "1"}, actors::room_directory{});
      auto port = sys.middleman().publish(n, 0, "127.0.0.1", true);
      std::uint16_t p = port ? *port : 0;
      [[maybe_unused]] auto w = ::write(fds[1], &p, sizeof p);
      for (;;) ::pause();  // until the parent kills it
    }
    ::close(fds[1]);
    if (pid_ > 0 && ::read(fds[0], &port_, sizeof port_) != sizeof port_) port_ = 0;
    ::close(fds[0]);
  }
  ~child_node() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  child_node(const child_node&) = delete;
  child_node& operator=(const child_node&) = delete;
  pid_t pid() const { return pid_; }
  std::uint16_t port() const { return port_; }

 private:
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

/// Connects to the child's node actor, applies `signal` to the child, and returns how long until the
/// monitor's down_msg arrived (or nullopt when none did within peer_timeout_ms + margin).
std::optional<std::chrono::milliseconds> time_to_down(int signal, caf::error* reason) {
  child_node child;
  EXPECT_GT(child.pid(), 0);
  EXPECT_NE(child.port(), 0);
  if (child.pid() <= 0 || child.port() == 0) return std::nullopt;
  test_node parent;
  auto* sys = &*parent.sys;
  std::optional<std::chrono::milliseconds> took;
  {
    auto remote = connect_node(*sys, "127.0.0.1", child.port());
    EXPECT_TRUE(remote) << sys->render(remote.error());
    if (!remote) return std::nullopt;
    caf::scoped_actor self{*sys};
    bool said_hello = false;
    self->request(*remote, reply_timeout, atom::hello_v)
        .receive([&](const actors::node_hello& h) { said_hello = h.node_id == "child"; }, [](caf::error&) {});
    EXPECT_TRUE(said_hello);
    self->monitor(*remote);
    auto start = std::chrono::steady_clock::now();
    ::kill(child.pid(), signal);
    self->receive(
        [&](const caf::down_msg& dm) {
          took =
              std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
          *reason = dm.reason;
        },
        caf::after(std::chrono::milliseconds(timeout_ms) + detection_margin) >> [] {});
  }
  return took;
}

TEST(peer_failure, a_killed_node_is_noticed_at_once) {
  caf::error reason;
  auto took = time_to_down(SIGKILL, &reason);
  ASSERT_TRUE(took) << "no down_msg for a killed node";
  EXPECT_EQ(reason, caf::exit_reason::remote_link_unreachable);
  EXPECT_LT(*took, std::chrono::milliseconds(timeout_ms) + detection_margin);
}

TEST(peer_failure, a_hung_node_is_noticed_after_the_connection_timeout) {
  caf::error reason;
  auto took = time_to_down(SIGSTOP, &reason);
  ASSERT_TRUE(took) << "no down_msg for a stopped node: heartbeat / connection timeout not in effect";
  EXPECT_EQ(reason, caf::exit_reason::remote_link_unreachable);
  // Only silence can have told: the socket stayed open, so it cannot have been much before the timeout.
  EXPECT_GE(*took, std::chrono::milliseconds(timeout_ms) - std::chrono::milliseconds(heartbeat_ms));
  EXPECT_LT(*took, std::chrono::milliseconds(timeout_ms) + detection_margin);
}

}  // namespace
}  // namespace chorus::cluster
