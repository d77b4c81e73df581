// Whole-cluster tests of rooms: real chorusd nodes, clients on each, exactly-once in-order delivery.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <csignal>
#include <cstdio>
#include <functional>
#include <iterator>
#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "cluster/placement.hpp"
#include "tests/integration/node_fixture.hpp"
#include "tests/support/free_port.hpp"
#include "tests/support/redis_probe.hpp"
#include "tests/support/tcp_relay.hpp"

namespace chorus::testing {
namespace {

using steady = std::chrono::steady_clock;

/// How long a client waits for a reply before it counts the request as lost and retries it.
constexpr auto reply_timeout = 6s;
/// How long a client keeps retrying one send (or reconnecting) before it gives up and reports it.
constexpr auto give_up_after = 15s;
/// Pause before retrying a send or join answered `unavailable` (the client keeps reading meanwhile).
constexpr auto retry_backoff = 100ms;

/// The line a node logs when its view of the live cluster becomes `ids`.
std::string view_line(std::vector<std::string> ids) {
  std::sort(ids.begin(), ids.end());
  std::string line = "cluster: view is now " + std::to_string(ids.size()) + " nodes [";
  for (std::size_t i = 0; i < ids.size(); ++i) line += (i == 0 ? "" : ", ") + ids[i];
  return line + "]";
}

/// The last view line in `output` that starts at or after `from`; "" when there is none.
std::string last_view_line(const std::string& output, std::size_t from = 0) {
  auto pos = output.rfind("cluster: view is now");
  if (pos == std::string::npos || pos < from) return "";
  return output.substr(pos, output.find('\n', pos) - pos);
}

/// The last `lines` lines of `text`.
std::string tail(const std::string& text, std::size_t lines) {
  std::size_t pos = text.size();
  for (std::size_t n = 0; n < lines; ++n) {
    pos = pos == 0 ? std::string::npos : text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
  }
  return "[...]\n" + text.substr(pos + 1);
}

/// The wall clock as the nodes log it (UTC, milliseconds), to line client-side notes up with node logs.
std::string wall_clock() {
  const auto now = std::chrono::system_clock::now();
  const auto t = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms));
  return buf;
}

/// The client ports of the nodes clients may (re)connect to; shared by the test thread and the clients'
/// threads.
class live_ports {
 public:
  void add(std::uint16_t port) {
    std::lock_guard lock(m_);
    ports_.push_back(port);
  }
  void remove(std::uint16_t port) {
    std::lock_guard lock(m_);
    std::erase(ports_, port);
  }
  std::vector<std::uint16_t> all() const {
    std::lock_guard lock(m_);
    return ports_;
  }

 private:
  mutable std::mutex m_;
  std::vector<std::uint16_t> ports_;
};

struct received_message {
  std::int64_t seq = 0;
  std::string id;
  std::string client_msg_id;
};

struct acknowledgement {
  std::string room;
  std::int64_t seq = 0;
  std::string client_msg_id;
  steady::time_point attempt_start;  ///< when the attempt that got this reply was sent
  steady::time_point at;             ///< when the reply arrived
};

/// One user's connection to the cluster, driven by a thread of its own, behaving as a careful client should:
/// it records every `message` event per room; it sends its messages one at a time, each retried with the same
/// client_msg_id (after `unavailable`, a lost reply or a dropped connection) until acknowledged; and when its
/// connection drops it reconnects to a live node and rejoins every room with `last_seq`. Anything a client
/// should never see (a gap, a duplicate, an unexpected error, a wrong replay count) is recorded as a problem.
class agent {
 public:
  /// Connects to `port` and joins `rooms` before returning (on the caller's thread), then starts reading.
  agent(std::string user, std::vector<std::string> rooms, std::uint16_t port, const live_ports& ports)
      : user_(std::move(user)), rooms_(std::move(rooms)), home_(port), port_(port), ports_(ports) {
    if (connect_and_join())
      thread_ = std::thread([this] { run(); });
    else
      ended_ = true;
  }
  ~agent() {
    quit_ = true;
    if (thread_.joinable()) thread_.join();
  }
  agent(const agent&) = delete;
  agent& operator=(const agent&) = delete;

  const std::string& user() const { return user_; }
  const std::vector<std::string>& rooms() const { return rooms_; }
  /// The node it first connected to.
  std::uint16_t home() const { return home_; }
  bool connected_at_start() const { return thread_.joinable(); }

  /// Sends messages round robin over its rooms until it has started `total` of them (unbounded by default).
  void start_sending(long total = LONG_MAX) { budget_ = total; }
  /// Starts no further message; the one in progress is still retried until acknowledged.
  void stop_sending() { budget_ = next_.load(); }
  /// True once it has started every message it was asked to and the last was acknowledged (or given up).
  /// Also true once it gave up reconnecting (its problems say why).
  bool idle() const { return ended_ || (idle_ && next_ >= budget_); }

  struct counters {
    int unavailable = 0;  ///< sends and joins answered `unavailable`
    int timeouts = 0;     ///< requests that got no reply within reply_timeout
    int disconnects = 0;  ///< connections that dropped
    int rejoins = 0;      ///< rooms resumed with last_seq after a reconnect
  };
  counters stats() const {
    std::lock_guard lock(m_);
    return stats_;
  }
  std::vector<std::string> problems() const {
    std::lock_guard lock(m_);
    return problems_;
  }
  std::vector<std::string> notes() const {
    std::lock_guard lock(m_);
    return notes_;
  }
  std::vector<acknowledgement> acks() const {
    std::lock_guard lock(m_);
    return acks_;
  }
  std::map<std::string, std::vector<received_message>> received() const {
    std::lock_guard lock(m_);
    return received_;
  }
  /// The room's last_seq when it first joined: it must receive every message after it.
  std::int64_t start_of(const std::string& room) const {
    std::lock_guard lock(m_);
    return start_.count(room) ? start_.at(room) : -1;
  }
  /// The highest seq it has received in `room` (its first join's last_seq before any).
  std::int64_t last_seq(const std::string& room) const {
    std::lock_guard lock(m_);
    return last_.count(room) ? last_.at(room) : -1;
  }

 private:
  struct outgoing {
    std::string room;
    std::string client_msg_id;
    steady::time_point first_try;
    steady::time_point attempt_start;
    steady::time_point retry_at;
    std::int64_t request = 0;
    bool in_flight = false;
  };

  void run() {
    while (!quit_) {
      if (!conn_ && !connect_and_join()) break;
      maybe_send();
      idle_ = !pending_.has_value();
      if (!conn_) continue;
      if (auto frame = conn_->next(20ms)) {
        handle(*frame);
      } else if (conn_->close_code()) {
        dropped();
      } else if (pending_ && pending_->in_flight && steady::now() - pending_->attempt_start > reply_timeout) {
        note("no reply within 6 s to send " + pending_->client_msg_id + " in " + pending_->room + " (port " +
             std::to_string(port_) + ")");
        count(&counters::timeouts);
        pending_->in_flight = false;
        pending_->retry_at = steady::now();
      }
    }
    ended_ = true;
  }

  void maybe_send() {
    const auto now = steady::now();
    if (!pending_ && next_ < budget_) {
      idle_ = false;  // before next_ moves, so that idle() never sees the new message counted but not pending
      auto cid = user_ + "-m" + std::to_string(next_.load());
      pending_ = outgoing{.room = rooms_[static_cast<std::size_t>(next_.load()) % rooms_.size()],
                          .client_msg_id = cid,
                          .first_try = now,
                          .attempt_start = {},
                          .retry_at = now};
      ++next_;
    }
    if (!pending_ || pending_->in_flight || now < pending_->retry_at || !conn_) return;
    if (now - pending_->first_try > give_up_after) {
      problem("gave up on " + pending_->client_msg_id + ": not acknowledged within 15 s");
      pending_.reset();
      return;
    }
    pending_->request = ++request_;
    pending_->attempt_start = now;
    pending_->in_flight = true;
    if (!conn_->send_json({{"op", "send"},
                           {"id", pending_->request},
                           {"room", pending_->room},
                           {"text", "from " + pending_->client_msg_id},
                           {"client_msg_id", pending_->client_msg_id}}))
      dropped();
  }

  void handle(const json::object& frame) {
    if (const auto* ev = frame.if_contains("ev")) {
      if (*ev == "message") on_message(frame);
      if (*ev == "error") problem("error event: " + json::serialize(frame));
      return;
    }
    if (frame.contains("re")) on_reply(frame);
  }

  void on_message(const json::object& frame) {
    const auto room = std::string(frame.at("room").as_string());
    const auto seq = frame.at("seq").to_number<std::int64_t>();
    const auto& d = frame.at("d").as_object();
    received_message m{seq, std::string(d.at("id").as_string()), ""};
    if (const auto* cid = d.if_contains("client_msg_id")) m.client_msg_id = std::string(cid->as_string());
    std::lock_guard lock(m_);
    auto last = last_.find(room);
    if (last == last_.end()) {
      problems_.push_back("a message in " + room + ", which it never joined");
      return;
    }
    if (seq != last->second + 1)
      problems_.push_back(room + ": received seq " + std::to_string(seq) + " after seq " +
                          std::to_string(last->second) +
                          (seq <= last->second ? " (a duplicate)" : " (a gap)"));
    last->second = std::max(last->second, seq);
    received_[room].push_back(std::move(m));
  }

  void on_reply(const json::object& frame) {
    if (!pending_) return;
    const auto now = steady::now();
    if (frame.at("ok") == true) {
      const auto& d = frame.at("d").as_object();
      const auto* cid = d.if_contains("client_msg_id");
      // Also a late reply to an earlier attempt of the same message counts: it was stored.
      if (cid == nullptr || !cid->is_string() || cid->as_string() != pending_->client_msg_id) return;
      std::lock_guard lock(m_);
      if (d.at("room").as_string() != pending_->room)
        problems_.push_back(pending_->client_msg_id + " acknowledged in room " +
                            json::serialize(d.at("room")));
      acks_.push_back({pending_->room, d.at("seq").to_number<std::int64_t>(), pending_->client_msg_id,
                       pending_->attempt_start, now});
      pending_.reset();
      return;
    }
    if (frame.at("re") != pending_->request || !pending_->in_flight) return;  // to an attempt given up on
    const auto code = frame.at("error").at("code");
    if (code == "unavailable")
      count(&counters::unavailable);
    else
      problem("send " + pending_->client_msg_id + " answered " + json::serialize(frame));
    pending_->in_flight = false;
    pending_->retry_at = now + retry_backoff;
  }

  void dropped() {
    {
      std::lock_guard lock(m_);
      ++stats_.disconnects;
    }
    conn_.reset();
    if (pending_) {
      pending_->in_flight = false;
      pending_->retry_at = steady::now();
    }
  }

  /// Connects to its node if that is still live, else to another live one, and joins every room: the first
  /// time plainly, afterwards resuming after the last seq it saw. Keeps trying for give_up_after.
  bool connect_and_join() {
    const auto deadline = steady::now() + give_up_after;
    std::string last_failure;
    while (steady::now() < deadline && !quit_) {
      auto ports = ports_.all();
      if (ports.empty()) {
        std::this_thread::sleep_for(retry_backoff);  // every node is down: poll until one is back
        continue;
      }
      if (std::find(ports.begin(), ports.end(), port_) == ports.end())
        port_ = ports[static_cast<std::size_t>(rotation_++) % ports.size()];
      try {
        ws_client::options opts;
        opts.bearer = token_for(user_);
        conn_ = ws_client::connect(port_, opts);
      } catch (const std::exception& e) {
        last_failure = e.what();
        port_ = 0;  // try another node next
        continue;
      }
      auto hello = conn_->next(2s);
      if (hello && hello->contains("ev") && hello->at("ev") == "hello" && join_all(deadline)) return true;
      last_failure = "no hello, or dropped while joining";
      conn_.reset();
      port_ = 0;
    }
    if (!quit_) problem("could not connect and join within 15 s (" + last_failure + ")");
    return false;
  }

  bool join_all(steady::time_point deadline) {
    for (const auto& room : rooms_) {
      std::optional<std::int64_t> resume;
      {
        std::lock_guard lock(m_);
        if (last_.count(room)) resume = last_.at(room);
      }
      for (;;) {
        if (steady::now() > deadline || quit_) return false;
        json::object op{{"op", "join"}, {"id", ++request_}, {"room", room}};
        if (resume) op["last_seq"] = *resume;
        if (!conn_->send_json(op)) return false;
        auto reply = await_reply(request_);
        if (!reply) {
          if (conn_->close_code()) return false;
          note("no reply within 6 s to joining " + room + " (port " + std::to_string(port_) + ")");
          count(&counters::timeouts);
          continue;
        }
        if (reply->at("ok") == true) {
          joined(room, resume, reply->at("d").as_object());
          break;
        }
        if (reply->at("error").at("code") == "unavailable")
          count(&counters::unavailable);
        else
          problem("join " + room + " answered " + json::serialize(*reply));
        if (!read_for(retry_backoff)) return false;
      }
    }
    return true;
  }

  void joined(const std::string& room, std::optional<std::int64_t> resume, const json::object& d) {
    const auto room_last = d.at("last_seq").to_number<std::int64_t>();
    std::lock_guard lock(m_);
    if (!resume) {
      start_[room] = last_[room] = room_last;
      return;
    }
    ++stats_.rejoins;
    const auto replayed = d.at("replayed").to_number<std::int64_t>();
    if (d.at("complete") != true || replayed != room_last - *resume)
      problems_.push_back("resume of " + room + " after seq " + std::to_string(*resume) + " answered " +
                          json::serialize(d) +
                          ": expected replayed = " + std::to_string(room_last - *resume));
  }

  /// The reply to request `id`, handling everything else that arrives meanwhile.
  std::optional<json::object> await_reply(std::int64_t id) {
    const auto deadline = steady::now() + reply_timeout;
    while (steady::now() < deadline) {
      auto frame =
          conn_->next(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()));
      if (!frame) return std::nullopt;
      if (frame->contains("re") && frame->at("re") == id) return frame;
      handle(*frame);
    }
    return std::nullopt;
  }

  /// Handles whatever arrives for `d`; false if the connection dropped.
  bool read_for(std::chrono::milliseconds d) {
    const auto until = steady::now() + d;
    while (steady::now() < until) {
      if (auto frame =
              conn_->next(std::chrono::duration_cast<std::chrono::milliseconds>(until - steady::now())))
        handle(*frame);
      else if (conn_->close_code())
        return false;
    }
    return true;
  }

  void count(int counters::*which) {
    std::lock_guard lock(m_);
    ++(stats_.*which);
  }
  void problem(std::string what) {
    std::lock_guard lock(m_);
    problems_.push_back(std::move(what));
  }
  /// Something worth knowing that a client may see (a timeout), stamped with the wall clock of the node logs.
  void note(const std::string& what) {
    std::lock_guard lock(m_);
    notes_.push_back(wall_clock() + " " + what);
  }

  const std::string user_;
  const std::vector<std::string> rooms_;
  const std::uint16_t home_;
  std::uint16_t port_;
  const live_ports& ports_;
  std::atomic<bool> quit_{false};
  std::atomic<long> budget_{0};
  std::atomic<long> next_{0};  // messages started; only the agent's thread advances it
  std::atomic<bool> idle_{true};
  std::atomic<bool> ended_{false};
  // Owned by the agent's thread (by the constructor before it starts).
  std::unique_ptr<ws_client> conn_;
  std::optional<outgoing> pending_;
  std::int64_t request_ = 0;
  unsigned rotation_ = 0;
  // Shared with the test thread.
  mutable std::mutex m_;
  counters stats_;
  std::vector<std::string> problems_;
  std::vector<std::string> notes_;
  std::vector<acknowledgement> acks_;
  std::map<std::string, std::vector<received_message>> received_;
  std::map<std::string, std::int64_t> start_;
  std::map<std::string, std::int64_t> last_;
  std::thread thread_;  // last: starts after everything it uses exists
};

struct stored_row {
  std::int64_t seq = 0;
  std::string id;
  std::string author;
  std::string client_msg_id;
  std::int64_t epoch = 0;
};

struct room_row {
  std::int64_t last_seq = 0;
  std::int64_t owner_epoch = 0;
  std::string owner_node;
};

std::string sql_list(pqxx::work& tx, const std::vector<std::string>& values) {
  std::string list;
  for (const auto& v : values) list += (list.empty() ? "" : ", ") + tx.quote(v);
  return "(" + list + ")";
}

/// The messages table for `rooms`, each room in seq order.
std::map<std::string, std::vector<stored_row>> stored_messages(const std::vector<std::string>& rooms) {
  pqxx::connection c{test_database::instance().url()};
  pqxx::work tx{c};
  std::map<std::string, std::vector<stored_row>> out;
  for (const auto& room : rooms) out[room];
  for (auto row :
       tx.exec("SELECT room, seq, id::text, author, coalesce(client_msg_id, ''), epoch FROM messages "
               "WHERE room IN " +
               sql_list(tx, rooms) + " ORDER BY room, seq"))
    out[row[0].as<std::string>()].push_back({row[1].as<std::int64_t>(), row[2].as<std::string>(),
                                             row[3].as<std::string>(), row[4].as<std::string>(),
                                             row[5].as<std::int64_t>()});
  return out;
}

/// The rooms table for `rooms` (a room nobody has written to yet may be missing).
std::map<std::string, room_row> room_rows(const std::vector<std::string>& rooms) {
  pqxx::connection c{test_database::instance().url()};
  pqxx::work tx{c};
  std::map<std::string, room_row> out;
  for (auto row :
       tx.exec("SELECT id, last_seq, owner_epoch, coalesce(owner_node, '') FROM rooms WHERE id IN " +
               sql_list(tx, rooms)))
    out[row[0].as<std::string>()] = {row[1].as<std::int64_t>(), row[2].as<std::int64_t>(),
                                     row[3].as<std::string>()};
  return out;
}

/// Starts chorusd processes through node_test::start (dev mode, high send limits, the test database), each
/// clustered on a Redis database of this test, and drives agents against them.
class cluster_rooms_test : public node_test {
 protected:
  /// Short, so that the tests are quick; not shorter, or a node starved of CPU for that long (ctest runs
  /// tests in parallel on two cores) is declared down in the middle of a test about something else.
  static constexpr std::chrono::milliseconds node_ttl{2000};

  void SetUp() override {
    const char* redis = std::getenv("CHORUS_REDIS_URL");
    if (redis == nullptr) GTEST_SKIP() << "CHORUS_REDIS_URL is not set";
    redis_ = std::make_unique<redis_database>(redis);
    ASSERT_TRUE(redis_->claimed()) << "no free Redis database (1-15) on " << redis;
    // Unique within this process too: running the binary directly runs every test on one database.
    static int runs = 0;
    tag_ = "t" + std::to_string(++runs);
  }

  void TearDown() override {
    if (HasFailure() && !reported_) report_clients();
    agents_.clear();  // their threads stop before the nodes go
    if (HasFailure())
      for (auto& [id, node] : nodes_)
        std::cerr << "--- " << id << " ---\n" << tail(node->output(), 400) << "\n";
    nodes_.clear();
  }

  /// Node ids unique to this test: `<tag>n<i>-<pid>`.
  std::vector<std::string> node_ids(int count) const {
    std::vector<std::string> ids;
    for (int i = 0; i < count; ++i)
      ids.push_back(tag_ + "n" + std::to_string(i) + "-" + std::to_string(::getpid()));
    return ids;
  }

  /// Starts node `id` in the cluster and makes it a place clients may connect to; `extra` adds settings.
  node_process& start_node(const std::string& id, const settings& extra = {}) {
    settings env{{"CHORUS_NODE_ID", id},
                 {"CHORUS_REDIS_URL", redis_->url()},
                 {"CHORUS_CLUSTER_PORT", std::to_string(free_port())},
                 {"CHORUS_NODE_TTL_MS", std::to_string(node_ttl.count())},
                 {"CHORUS_NODE_HEARTBEAT_MS", "200"},
                 {"CHORUS_PEER_HEARTBEAT_MS", "200"},
                 {"CHORUS_PEER_TIMEOUT_MS", "1000"},
                 // Clients here send far faster than people; and a resume replays every missed message
                 // (the rooms cache more than a paused node's clients miss).
                 {"CHORUS_OPS_PER_SECOND", "100000"},
                 {"CHORUS_OPS_BURST", "100000"},
                 {"CHORUS_HISTORY_LIMIT", "1000"},
                 {"CHORUS_TAIL_CACHE_SIZE", "2048"}};
    for (const auto& [k, v] : extra) env[k] = v;
    node_test::start(env);
    auto& node = *(nodes_[id] = std::move(node_));
    ports_.add(node.port());
    return node;
  }

  /// Starts a node per id and waits until each logs the view of all of them.
  void start_cluster(const std::vector<std::string>& ids, const settings& extra = {}) {
    for (const auto& id : ids) start_node(id, extra);
    ASSERT_TRUE(wait_for_view(ids, ids, {}, 15s)) << "the nodes never all saw " << view_line(ids);
  }

  node_process& node(const std::string& id) { return *nodes_.at(id); }

  /// A relay to this test's Redis server, and the URL of this test's database through it: a node given that
  /// URL can be cut off from Redis alone.
  std::pair<std::unique_ptr<tcp_relay>, std::string> redis_relay() const {
    const auto url = redis_->url();  // redis://host:port/db, as scripts/services.sh prints it
    const auto host_at = url.find("://") + 3;
    const auto colon = url.rfind(':');
    const auto slash = url.find('/', host_at);
    auto relay = std::make_unique<tcp_relay>(url.substr(host_at, colon - host_at),
                                             static_cast<std::uint16_t>(std::stoi(url.substr(colon + 1))));
    auto through = "redis://127.0.0.1:" + std::to_string(relay->port()) + url.substr(slash);
    return {std::move(relay), std::move(through)};
  }

  /// Where each node's output ends now: view lines after it are news.
  std::map<std::string, std::size_t> output_marks() {
    std::map<std::string, std::size_t> marks;
    for (auto& [id, n] : nodes_) marks[id] = n->output().size();
    return marks;
  }

  /// Waits until the last view line each node of `on` logged (after its mark) names exactly `ids`.
  bool wait_for_view(const std::vector<std::string>& on, const std::vector<std::string>& ids,
                     const std::map<std::string, std::size_t>& marks, std::chrono::milliseconds within) {
    const auto want = view_line(ids);
    return eventually(
        [&] {
          return std::all_of(on.begin(), on.end(), [&](const std::string& id) {
            auto mark = marks.count(id) ? marks.at(id) : 0;
            return last_view_line(node(id).output(), mark) == want;
          });
        },
        within);
  }

  /// Waits until every node of `on` has logged `text` after its mark.
  bool wait_for_log(const std::vector<std::string>& on, std::string_view text,
                    const std::map<std::string, std::size_t>& marks, std::chrono::milliseconds within) {
    return eventually(
        [&] {
          return std::all_of(on.begin(), on.end(), [&](const std::string& id) {
            return node(id).output().find(text, marks.at(id)) != std::string::npos;
          });
        },
        within);
  }

  /// Polls `done` (state in other processes and threads, with no event to wait on) until it holds or `within`
  /// passes, reading the nodes' output meanwhile so none of them blocks on a full pipe.
  bool eventually(const std::function<bool()>& done, std::chrono::milliseconds within) {
    const auto deadline = steady::now() + within;
    for (;;) {
      if (done()) return true;
      if (steady::now() >= deadline) return false;
      for (auto& [id, n] : nodes_) n->output();
      std::this_thread::sleep_for(20ms);
    }
  }

  /// `per_node` room ids owned by each of `ids` under rendezvous placement over exactly `ids`: so every node
  /// owns some, whatever the pid in the names makes the hashes.
  std::vector<std::string> rooms_owned(const std::vector<std::string>& ids, std::size_t per_node) const {
    std::map<std::string, std::size_t> owned;
    std::vector<std::string> rooms;
    for (int k = 0; rooms.size() < ids.size() * per_node; ++k) {
      auto room = "r-" + std::to_string(::getpid()) + "-" + tag_ + "-" + std::to_string(k);
      auto& n = owned[std::string(cluster::owner_of(room, ids))];
      if (n < per_node) {
        ++n;
        rooms.push_back(room);
      }
    }
    return rooms;
  }

  /// Two clients on each node of `on`, each joined to every one of `rooms`.
  void add_agents(const std::vector<std::string>& on, const std::vector<std::string>& rooms) {
    for (const auto& id : on)
      for (const char* who : {"a", "b"}) {
        auto user = tag_ + "-" + id.substr(tag_.size(), id.find('-') - tag_.size()) + who;
        agents_.push_back(std::make_unique<agent>(user, rooms, node(id).port(), ports_));
        ASSERT_TRUE(agents_.back()->connected_at_start())
            << user << ": " << agents_.back()->problems().back();
      }
  }

  void start_traffic(long per_agent = LONG_MAX) {
    for (auto& a : agents_) a->start_sending(per_agent);
  }

  /// Acknowledged sends to `room` whose successful attempt started at or after `since`.
  std::size_t acks_in(const std::string& room, steady::time_point since = {}) {
    std::size_t n = 0;
    for (auto& a : agents_)
      for (const auto& ack : a->acks()) n += ack.room == room && ack.attempt_start >= since;
    return n;
  }

  /// Waits until every room of `rooms` got `count` acknowledged sends started at or after `since`.
  bool wait_for_acks(const std::vector<std::string>& rooms, std::size_t count, steady::time_point since,
                     std::chrono::milliseconds within) {
    return eventually(
        [&] {
          return std::all_of(rooms.begin(), rooms.end(), [&](auto& r) { return acks_in(r, since) >= count; });
        },
        within);
  }

  /// The first acknowledgement in one of `rooms` of an attempt started after `since`.
  std::optional<steady::time_point> first_ack(const std::set<std::string>& rooms, steady::time_point since) {
    std::optional<steady::time_point> first;
    for (auto& a : agents_)
      for (const auto& ack : a->acks())
        if (rooms.count(ack.room) && ack.attempt_start > since && (!first || ack.at < *first)) first = ack.at;
    return first;
  }

  void stop_traffic() {
    for (auto& a : agents_) a->stop_sending();
  }

  /// Waits until every sender's last send is acknowledged (or given up on).
  void wait_idle() {
    ASSERT_TRUE(eventually(
        [&] { return std::all_of(agents_.begin(), agents_.end(), [](auto& a) { return a->idle(); }); },
        give_up_after + 5s))
        << "some sends were neither acknowledged nor given up";
  }

  /// Stops every sender and waits until each has its last send answered.
  void quiet_down() {
    stop_traffic();
    wait_idle();
  }

  /// Waits until every sender's last send is acknowledged and every client has received its rooms up to their
  /// last stored seq.
  void finish_traffic(const std::vector<std::string>& rooms) {
    ASSERT_NO_FATAL_FAILURE(wait_idle());
    auto table = room_rows(rooms);
    std::string lagging;
    bool caught_up = eventually(
        [&] {
          lagging.clear();
          for (auto& a : agents_)
            for (const auto& room : rooms)
              if (a->last_seq(room) < table[room].last_seq)
                lagging += "\n  " + a->user() + " in " + room + " received up to seq " +
                           std::to_string(a->last_seq(room)) + " of " + std::to_string(table[room].last_seq);
          return lagging.empty();
        },
        15s);
    ASSERT_TRUE(caught_up) << "clients that never received every stored message:" << lagging;
  }

  /// After node `gone` (client port `port`) left the cluster: every request was answered, its clients
  /// reconnected and resumed every room elsewhere, the others kept their connections, and none of the rooms
  /// it owned (`owned`) names it as owner any more.
  void expect_clients_moved_off(const std::string& gone, std::uint16_t port,
                                const std::vector<std::string>& rooms, const std::set<std::string>& owned) {
    for (auto& a : agents_) {
      auto s = a->stats();
      EXPECT_EQ(s.timeouts, 0) << a->user() << ": every request gets a reply, `unavailable` at worst";
      if (a->home() == port) {
        EXPECT_GE(s.disconnects, 1) << a->user() << " was on " << gone;
        EXPECT_GE(s.rejoins, static_cast<int>(rooms.size())) << a->user() << " resumes every room elsewhere";
      } else {
        EXPECT_EQ(s.disconnects, 0) << a->user() << " was on a node that stayed";
      }
    }
    auto table = room_rows(rooms);
    for (const auto& room : owned) EXPECT_NE(table[room].owner_node, gone) << room << " still names " << gone;
  }

  /// After a failure: waits until every room got 30 more acknowledged sends started at or after `since` (the
  /// cluster serves them all again), stops the traffic, and checks the end state (finish_traffic, then
  /// expect_consistent).
  void expect_traffic_to_go_on_and_end_consistent(const std::vector<std::string>& rooms,
                                                  steady::time_point since) {
    ASSERT_TRUE(wait_for_acks(rooms, 30, since, 15s)) << "traffic did not go on in every room";
    stop_traffic();
    ASSERT_NO_FATAL_FAILURE(finish_traffic(rooms));
    expect_consistent(rooms);
  }

  /// Prints what each client went through: retries, timeouts (with when and where), reconnects.
  void report_clients() {
    reported_ = true;
    for (auto& a : agents_) {
      auto s = a->stats();
      std::cout << "[ client ] " << a->user() << ": " << s.unavailable << " unavailable, " << s.timeouts
                << " timeouts, " << s.disconnects << " disconnects, " << s.rejoins << " rooms resumed\n";
      for (const auto& n : a->notes()) std::cout << "[ client ]   " << n << "\n";
    }
  }

  /// What every test ends with: each room's table holds seqs 1..last_seq once each, with epochs that never
  /// decrease along them; every acknowledged send is stored exactly once, at its acknowledged seq, and
  /// nothing else is; every client received every stored message of its rooms after its first join once, in
  /// seq order; and no client saw anything a client should not.
  void expect_consistent(const std::vector<std::string>& rooms) {
    auto rows = stored_messages(rooms);
    auto table = room_rows(rooms);
    std::map<std::pair<std::string, std::string>, std::pair<std::string, std::int64_t>>
        stored;  // (author, cid)
    for (const auto& room : rooms) {
      const auto& rs = rows[room];
      for (std::size_t i = 0; i < rs.size(); ++i)
        if (rs[i].seq != static_cast<std::int64_t>(i + 1)) {
          ADD_FAILURE() << room << ": stored seq " << rs[i].seq << " at position " << i + 1
                        << " (gap or duplicate)";
          break;
        }
      for (std::size_t i = 1; i < rs.size(); ++i)
        if (rs[i].epoch < rs[i - 1].epoch) {
          ADD_FAILURE() << room << ": seq " << rs[i].seq << " was written under epoch " << rs[i].epoch
                        << " after seq " << rs[i - 1].seq << " under epoch " << rs[i - 1].epoch
                        << ": a stale owner wrote after its successor";
          break;
        }
      EXPECT_EQ(table[room].last_seq, static_cast<std::int64_t>(rs.size())) << room << ": rooms.last_seq";
      if (!rs.empty()) {
        EXPECT_GE(table[room].owner_epoch, rs.back().epoch) << room << ": rooms.owner_epoch";
      }
      for (const auto& r : rs)
        if (!stored.emplace(std::make_pair(r.author, r.client_msg_id), std::make_pair(room, r.seq)).second)
          ADD_FAILURE() << r.author << "'s " << r.client_msg_id << " is stored twice";
    }
    std::size_t acked = 0;
    for (auto& a : agents_) {
      for (const auto& ack : a->acks()) {
        ++acked;
        auto it = stored.find({a->user(), ack.client_msg_id});
        if (it == stored.end())
          ADD_FAILURE() << ack.client_msg_id << " was acknowledged as " << ack.room << " seq " << ack.seq
                        << " but is not stored";
        else
          EXPECT_EQ(it->second, std::make_pair(ack.room, ack.seq))
              << ack.client_msg_id << ": acknowledged vs stored";
      }
      auto problems = a->problems();
      std::string listed;
      for (std::size_t i = 0; i < problems.size() && i < 10; ++i) listed += "\n  " + problems[i];
      EXPECT_TRUE(problems.empty()) << a->user() << " saw " << problems.size() << " problems:" << listed;
      auto got = a->received();
      for (const auto& room : rooms) {
        const auto& rs = rows[room];
        const auto from = a->start_of(room);
        const auto& mine = got[room];
        EXPECT_EQ(static_cast<std::int64_t>(mine.size()), static_cast<std::int64_t>(rs.size()) - from)
            << a->user() << " in " << room << ": messages received after seq " << from;
        const auto base = static_cast<std::size_t>(std::max<std::int64_t>(from, 0));
        for (std::size_t i = 0; i < mine.size() && base + i < rs.size(); ++i)
          if (mine[i].seq != rs[base + i].seq || mine[i].id != rs[base + i].id) {
            ADD_FAILURE() << a->user() << " in " << room << ": received #" << i << " was seq " << mine[i].seq
                          << " id " << mine[i].id << ", the table has seq " << rs[base + i].seq << " id "
                          << rs[base + i].id;
            break;
          }
      }
    }
    EXPECT_EQ(stored.size(), acked)
        << "stored messages that no send acknowledged, or acknowledged ones missing";
  }

  std::unique_ptr<redis_database> redis_;
  std::string tag_;
  std::map<std::string, std::unique_ptr<node_process>> nodes_;
  live_ports ports_;
  std::vector<std::unique_ptr<agent>> agents_;
  bool reported_ = false;
};

double ms_between(steady::time_point a, steady::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

TEST_F(cluster_rooms_test, members_on_every_node_see_the_same_messages_in_the_same_order) {
  auto ids = node_ids(3);
  ASSERT_NO_FATAL_FAILURE(start_cluster(ids));
  // One room per owner, so traffic crosses nodes in every direction.
  auto rooms = rooms_owned(ids, 1);
  ASSERT_NO_FATAL_FAILURE(add_agents(ids, rooms));
  constexpr long per_agent = 50;  // 6 senders on 3 nodes: 300 messages, 100 per room
  start_traffic(per_agent);
  ASSERT_NO_FATAL_FAILURE(finish_traffic(rooms));

  expect_consistent(rooms);
  auto rows = stored_messages(rooms);
  std::size_t total = 0;
  for (const auto& room : rooms) total += rows[room].size();
  EXPECT_EQ(total, agents_.size() * per_agent);
  auto table = room_rows(rooms);
  for (const auto& room : rooms)
    EXPECT_EQ(table[room].owner_node, cluster::owner_of(room, ids))
        << room
        << " is owned by another node than "
           "rendezvous placement over the view picks";
  for (auto& a : agents_) {
    auto s = a->stats();
    EXPECT_EQ(s.unavailable + s.timeouts + s.disconnects, 0)
        << a->user() << ": a steady cluster should answer like one node: " << s.unavailable
        << " unavailable, " << s.timeouts << " timeouts, " << s.disconnects << " disconnects";
  }
}

TEST_F(cluster_rooms_test, a_crowded_room_counts_and_pages_its_members_for_clients_on_another_node) {
  auto ids = node_ids(2);
  for (const auto& id : ids) start_node(id, {{"CHORUS_MEMBER_EVENTS_LIMIT", "2"}});
  ASSERT_TRUE(wait_for_view(ids, ids, {}, 15s)) << "the nodes never all saw " << view_line(ids);
  // A room the first node owns; the clients sit on the second.
  std::string room;
  for (const auto& r : rooms_owned(ids, 1))
    if (cluster::owner_of(r, ids) == ids[0]) room = r;
  ASSERT_FALSE(room.empty());
  auto client = [&](const std::string& user) {
    ws_client::options opts;
    opts.bearer = token_for(user);
    auto c = ws_client::connect(node(ids[1]).port(), opts);
    EXPECT_TRUE(c->next().has_value());  // hello
    return c;
  };
  auto join = [&](ws_client& c) { return call(c, {{"op", "join"}, {"room", room}}, 1); };
  auto ann = client("ann");
  auto bob = client("bob");
  expect_ok(join(*ann));
  expect_ok(join(*bob));
  EXPECT_EQ(room_rows({room})[room].owner_node, ids[0]) << "the room should live on the other node";
  ASSERT_TRUE(
      ann->next_where([](const json::object& o) { return o.contains("ev") && o.at("ev") == "presence"; }));

  auto cid = client("cid");
  auto reply = join(*cid);
  expect_ok(reply);
  EXPECT_EQ(reply.at("d").at("member_events"), false) << json::serialize(reply);
  EXPECT_EQ(reply.at("d").at("member_count"), 3);
  auto count = ann->next();
  ASSERT_TRUE(count);
  EXPECT_EQ(count->at("ev"), "member_count") << json::serialize(*count);
  EXPECT_EQ(count->at("d").at("count"), 3);

  // The page request and its answer cross from the second node to the room's and back.
  auto page = call(*ann, {{"op", "members"}, {"room", room}, {"after", "ann"}, {"limit", 1}}, 2);
  expect_ok(page);
  ASSERT_EQ(page.at("d").at("members").as_array().size(), 1u) << json::serialize(page);
  EXPECT_EQ(page.at("d").at("members").at(0).at("user"), "bob");
  EXPECT_EQ(page.at("d").at("next"), "bob");
  EXPECT_EQ(page.at("d").at("member_count"), 3);
}

TEST_F(cluster_rooms_test, kill_9_of_a_node_loses_no_acknowledged_message) {
  auto ids = node_ids(3);
  ASSERT_NO_FATAL_FAILURE(start_cluster(ids));
  auto rooms = rooms_owned(ids, 2);
  ASSERT_NO_FATAL_FAILURE(add_agents(ids, rooms));
  start_traffic();
  ASSERT_TRUE(wait_for_acks(rooms, 30, {}, 15s)) << "traffic never got going";

  // The victim: the owner of the first room, as placement says and the database confirms.
  const auto victim = std::string(cluster::owner_of(rooms.front(), ids));
  std::set<std::string> orphaned;  // rooms the victim owns
  auto owners = room_rows(rooms);
  for (const auto& room : rooms)
    if (cluster::owner_of(room, ids) == victim) {
      orphaned.insert(room);
      EXPECT_EQ(owners[room].owner_node, victim) << room << ": rooms.owner_node before the kill";
    }
  const auto victim_port = node(victim).port();

  ports_.remove(victim_port);
  const auto killed_at = steady::now();
  node(victim).signal(SIGKILL);
  ASSERT_TRUE(node(victim).wait_exit(5s).has_value());

  ASSERT_TRUE(eventually([&] { return first_ack(orphaned, killed_at).has_value(); }, 10s))
      << "no send to a room of the killed node succeeded within 10 s";
  const auto recovered_at = *first_ack(orphaned, killed_at);
  const auto failover_ms = ms_between(killed_at, recovered_at);
  std::cout << "[ metric ] kill -9 to first acknowledged send in a room the dead node owned: " << failover_ms
            << " ms (target 5000)\n";
  RecordProperty("failover_ms", static_cast<int>(failover_ms));
  EXPECT_LE(failover_ms, 10000.0);

  // Traffic goes on in every room, then everyone catches up.
  ASSERT_NO_FATAL_FAILURE(expect_traffic_to_go_on_and_end_consistent(rooms, recovered_at));

  report_clients();
  expect_clients_moved_off(victim, victim_port, rooms, orphaned);
}

TEST_F(cluster_rooms_test, a_fourth_node_joining_during_traffic_costs_no_error_beyond_delay) {
  auto ids = node_ids(4);
  const std::vector<std::string> first_three(ids.begin(), ids.begin() + 3);
  ASSERT_NO_FATAL_FAILURE(start_cluster(first_three));
  // Two rooms per node of the 4-node view: the newcomer's two move to it.
  auto rooms = rooms_owned(ids, 2);
  ASSERT_NO_FATAL_FAILURE(add_agents(first_three, rooms));
  start_traffic();
  ASSERT_TRUE(wait_for_acks(rooms, 30, {}, 15s)) << "traffic never got going";

  auto marks = output_marks();
  start_node(ids[3]);
  ASSERT_TRUE(wait_for_view(ids, ids, marks, 15s)) << "the nodes never all saw " << view_line(ids);
  const auto joined_at = steady::now();
  // A client of the newcomer takes part too.
  ASSERT_NO_FATAL_FAILURE(add_agents({ids[3]}, rooms));
  agents_[agents_.size() - 1]->start_sending();
  agents_[agents_.size() - 2]->start_sending();

  ASSERT_NO_FATAL_FAILURE(expect_traffic_to_go_on_and_end_consistent(rooms, joined_at));

  auto table = room_rows(rooms);
  int moved = 0;
  for (const auto& room : rooms)
    if (cluster::owner_of(room, ids) == ids[3]) {
      ++moved;
      EXPECT_EQ(table[room].owner_node, ids[3]) << room << " should have moved to the new node";
    }
  EXPECT_GE(moved, 1);
  report_clients();
  for (auto& a : agents_) {
    auto s = a->stats();
    EXPECT_EQ(s.timeouts, 0) << a->user() << ": every request gets a reply, `unavailable` at worst";
    EXPECT_EQ(s.disconnects, 0) << a->user() << ": a node joining drops no connection";
  }
}

TEST_F(cluster_rooms_test, a_node_paused_past_its_ttl_stores_nothing_under_a_stale_epoch) {
  auto ids = node_ids(3);
  ASSERT_NO_FATAL_FAILURE(start_cluster(ids));
  auto rooms = rooms_owned(ids, 1);
  const auto room = rooms.front();
  const auto paused = std::string(cluster::owner_of(room, ids));  // the node to pause owns `room`
  std::vector<std::string> others;
  std::copy_if(ids.begin(), ids.end(), std::back_inserter(others), [&](auto& id) { return id != paused; });
  ASSERT_NO_FATAL_FAILURE(add_agents(ids, rooms));
  start_traffic();
  ASSERT_TRUE(wait_for_acks(rooms, 30, {}, 15s)) << "traffic never got going";
  EXPECT_EQ(room_rows(rooms)[room].owner_node, paused) << room << ": rooms.owner_node before the pause";

  // Its clients keep sending into its frozen sockets: when it wakes it finds those requests first, before it
  // learns it was declared down, and must not store them under its old epoch.
  auto marks = output_marks();
  ports_.remove(node(paused).port());
  const auto stopped_at = steady::now();
  node(paused).signal(SIGSTOP);
  ASSERT_TRUE(wait_for_view(others, others, marks, 10s))
      << "the other nodes never dropped the paused one (peer timeout 1 s)";
  std::cout << "[ metric ] SIGSTOP to the 2-node view: " << ms_between(stopped_at, steady::now()) << " ms\n";
  ASSERT_TRUE(eventually([&] { return first_ack({room}, stopped_at).has_value(); }, 10s))
      << "no send to the paused node's room succeeded through the others";
  std::cout << "[ metric ] SIGSTOP to first acknowledged send in its room: "
            << ms_between(stopped_at, *first_ack({room}, stopped_at)) << " ms\n";
  ASSERT_TRUE(wait_for_acks({room}, 10, stopped_at, 10s));
  // Past its TTL for sure: its registration has expired, so it must find out it was declared down.
  ASSERT_TRUE(eventually([&] { return steady::now() > stopped_at + node_ttl + 500ms; }, node_ttl + 1s));

  marks = output_marks();
  node(paused).signal(SIGCONT);
  ports_.add(node(paused).port());
  ASSERT_TRUE(eventually(
      [&] {
        auto out = node(paused).output();
        return out.find("declared down", marks[paused]) != std::string::npos &&
               last_view_line(out) == view_line(ids);
      },
      15s))
      << "the resumed node never logged that it was declared down, or never saw all 3 nodes again";
  ASSERT_TRUE(wait_for_view(others, ids, marks, 15s)) << "the others never saw the resumed node again";
  const auto back_at = steady::now();

  ASSERT_NO_FATAL_FAILURE(expect_traffic_to_go_on_and_end_consistent(rooms, back_at));

  auto rows = stored_messages({room});
  std::set<std::int64_t> epochs;
  for (const auto& r : rows[room]) epochs.insert(r.epoch);
  EXPECT_GE(epochs.size(), 2u) << room << " moved away from the paused node: a new activation, a new epoch";
  EXPECT_EQ(room_rows({room})[room].owner_node, paused)
      << room << " moves back once its owner is in the view";
  report_clients();
}

TEST_F(cluster_rooms_test, a_node_cut_off_for_less_than_its_ttl_comes_back_with_what_was_said_meanwhile) {
  auto ids = node_ids(3);
  // A TTL far longer than the pause: the node is never declared down, it only loses its links to the others
  // (peer timeout 1 s), which take its room over meanwhile.
  constexpr auto long_ttl = 8000ms;
  ASSERT_NO_FATAL_FAILURE(start_cluster(ids, {{"CHORUS_NODE_TTL_MS", std::to_string(long_ttl.count())}}));
  auto rooms = rooms_owned(ids, 1);
  const auto room = rooms.front();
  const auto cut = std::string(cluster::owner_of(room, ids));  // the node to cut off owns `room`
  std::vector<std::string> others;
  std::copy_if(ids.begin(), ids.end(), std::back_inserter(others), [&](auto& id) { return id != cut; });
  ASSERT_NO_FATAL_FAILURE(add_agents(ids, rooms));
  start_traffic();
  ASSERT_TRUE(wait_for_acks(rooms, 30, {}, 15s)) << "traffic never got going";

  // Everyone goes quiet before the pause: a send already on its way to the node when it stops would reach its
  // stale room when it wakes, be fenced, and the fence would reload the room. Its own clients stay connected
  // to it throughout: what they miss while it is cut off can only reach them through it.
  const auto cut_port = node(cut).port();
  ASSERT_NO_FATAL_FAILURE(quiet_down());

  auto marks = output_marks();
  const auto stopped_at = steady::now();
  node(cut).signal(SIGSTOP);
  ASSERT_TRUE(wait_for_view(others, others, marks, 10s))
      << "the other nodes never dropped the silent one (peer timeout 1 s)";
  for (auto& a : agents_)
    if (a->home() != cut_port) a->start_sending();
  ASSERT_TRUE(wait_for_acks({room}, 10, stopped_at, 10s))
      << "no sends to the silent node's room succeeded through the others";
  ASSERT_NO_FATAL_FAILURE(quiet_down());
  ASSERT_LT(steady::now(), stopped_at + long_ttl - 2s) << "the test took too long to stay within the TTL";

  marks = output_marks();
  node(cut).signal(SIGCONT);
  ASSERT_TRUE(eventually([&] { return last_view_line(node(cut).output()) == view_line(ids); }, 15s))
      << "the node that was cut off never saw all 3 nodes again";
  ASSERT_TRUE(wait_for_view(others, ids, marks, 15s)) << "the others never saw it again";
  EXPECT_EQ(node(cut).output().find("declared down", marks[cut]), std::string::npos)
      << "the pause was meant to stay within the TTL";

  // Nobody sends any more: what its clients missed must reach them all the same, and a client of another
  // node that comes back to the room must find it where it left it.
  ASSERT_NO_FATAL_FAILURE(finish_traffic(rooms));
  expect_consistent(rooms);
  report_clients();
}

TEST_F(cluster_rooms_test, after_redis_loses_every_entry_each_room_is_activated_once_on_its_owner) {
  auto ids = node_ids(3);
  // A node waits two heartbeats after rejoining before it places rooms: at 500 ms, a node starved of CPU by
  // the tests running beside this one still rejoins within them.
  ASSERT_NO_FATAL_FAILURE(start_cluster(ids, {{"CHORUS_NODE_HEARTBEAT_MS", "500"}}));
  auto rooms = rooms_owned(ids, 2);
  ASSERT_NO_FATAL_FAILURE(add_agents(ids, rooms));
  start_traffic();
  ASSERT_TRUE(wait_for_acks(rooms, 30, {}, 15s)) << "traffic never got going";
  const auto before = room_rows(rooms);

  // A Redis restart without persistence: every node finds its entry gone, and rejoins as a new incarnation
  // (closing its connections: the clients come back and resume). Until every node has rejoined, the listing
  // holds only some of them; a node that placed rooms by it would take rooms from their owners for nothing.
  auto marks = output_marks();
  redis_->flush();
  const auto flushed_at = steady::now();
  ASSERT_TRUE(wait_for_log(ids, "declared down", marks, 10s))
      << "not every node noticed that its entry was gone";
  ASSERT_TRUE(wait_for_view(ids, ids, marks, 15s))
      << "the nodes never all saw " << view_line(ids) << " again";
  std::cout << "[ metric ] Redis flush to every node seeing the other two again: "
            << ms_between(flushed_at, steady::now()) << " ms\n";

  const auto back_at = steady::now();
  ASSERT_NO_FATAL_FAILURE(expect_traffic_to_go_on_and_end_consistent(rooms, back_at));

  auto after = room_rows(rooms);
  for (const auto& room : rooms) {
    EXPECT_EQ(after[room].owner_node, cluster::owner_of(room, ids)) << room;
    EXPECT_EQ(after[room].owner_epoch, before.at(room).owner_epoch + 1)
        << room << " was activated " << after[room].owner_epoch - before.at(room).owner_epoch
        << " times after the flush: a node placed it while it did not see the room's owner";
  }
  report_clients();
}

TEST_F(cluster_rooms_test, a_node_cut_off_from_redis_but_not_its_peers_steps_down_until_it_is_back) {
  auto ids = node_ids(3);
  auto rooms = rooms_owned(ids, 2);
  const auto cut = std::string(cluster::owner_of(rooms.front(), ids));  // reaches Redis through a relay
  std::vector<std::string> others;
  std::copy_if(ids.begin(), ids.end(), std::back_inserter(others), [&](auto& id) { return id != cut; });
  std::vector<std::string> its_rooms;
  std::copy_if(rooms.begin(), rooms.end(), std::back_inserter(its_rooms),
               [&](auto& room) { return cluster::owner_of(room, ids) == cut; });
  auto [relay, through_relay] = redis_relay();
  for (const auto& id : ids)
    start_node(id, id == cut ? settings{{"CHORUS_REDIS_URL", through_relay}} : settings{});
  ASSERT_TRUE(wait_for_view(ids, ids, {}, 15s)) << "the nodes never all saw " << view_line(ids);
  ASSERT_NO_FATAL_FAILURE(add_agents(ids, rooms));
  start_traffic();
  ASSERT_TRUE(wait_for_acks(rooms, 30, {}, 15s)) << "traffic never got going";

  // Its links to the others stay up; its entry expires, and the others place its rooms elsewhere.
  auto marks = output_marks();
  relay->cut();
  ASSERT_TRUE(wait_for_view(others, others, marks, 10s))
      << "the others never dropped the node whose entry expired";
  ASSERT_TRUE(wait_for_log({cut}, "is no longer in Redis", marks, 5s))
      << "the node cut off from Redis never stepped down";
  ASSERT_TRUE(wait_for_acks(its_rooms, 10, steady::now(), 10s))
      << "its rooms did not go on through the others";
  // Had it gone on placing its rooms on itself for its own clients, they would move back and forth, a new
  // activation (epoch) each time.
  const auto moved = room_rows(its_rooms);
  const auto watch_until = steady::now() + 2s;
  ASSERT_TRUE(eventually([&] { return steady::now() >= watch_until; }, 3s));
  ASSERT_TRUE(wait_for_acks(its_rooms, 10, watch_until - 2s, 1s));
  auto later = room_rows(its_rooms);
  for (const auto& room : its_rooms) {
    EXPECT_NE(later[room].owner_node, cut) << room;
    EXPECT_EQ(later[room].owner_epoch, moved.at(room).owner_epoch) << room << " moved back and forth";
  }

  // Back in Redis, it rejoins as a new incarnation and takes its rooms back.
  marks = output_marks();
  relay->restore();
  ASSERT_TRUE(eventually(
      [&] {
        auto out = node(cut).output();
        return out.find("declared down", marks[cut]) != std::string::npos &&
               last_view_line(out) == view_line(ids);
      },
      20s))
      << "the node never rejoined, or never saw all 3 nodes again";
  ASSERT_TRUE(wait_for_view(others, ids, marks, 15s)) << "the others never saw it again";
  const auto back_at = steady::now();
  ASSERT_NO_FATAL_FAILURE(expect_traffic_to_go_on_and_end_consistent(rooms, back_at));
  auto table = room_rows(its_rooms);
  for (const auto& room : its_rooms)
    EXPECT_EQ(table[room].owner_node, cut) << room << " moves back to its owner";
  report_clients();
}

TEST_F(cluster_rooms_test, while_no_node_reaches_redis_the_cluster_carries_on) {
  auto ids = node_ids(3);
  auto [relay, through_relay] = redis_relay();
  ASSERT_NO_FATAL_FAILURE(start_cluster(ids, {{"CHORUS_REDIS_URL", through_relay}}));
  auto rooms = rooms_owned(ids, 2);
  ASSERT_NO_FATAL_FAILURE(add_agents(ids, rooms));
  start_traffic();
  ASSERT_TRUE(wait_for_acks(rooms, 30, {}, 15s)) << "traffic never got going";
  const auto before = room_rows(rooms);

  // Redis is down for everyone (no node can tell it apart from being cut off alone): past the TTL, every
  // entry has expired, but no node can see that, and none may stop serving for it.
  auto marks = output_marks();
  relay->cut();
  const auto cut_at = steady::now();
  ASSERT_TRUE(eventually([&] { return steady::now() >= cut_at + node_ttl + 1s; }, node_ttl + 2s));
  ASSERT_TRUE(wait_for_acks(rooms, 20, cut_at + node_ttl, 10s))
      << "sends stopped while Redis was out of reach";
  const auto during = room_rows(rooms);
  for (const auto& room : rooms)
    EXPECT_EQ(during.at(room).owner_epoch, before.at(room).owner_epoch)
        << room << " moved while Redis was out of reach";
  for (const auto& id : ids)
    EXPECT_EQ(node(id).output().find("is no longer in Redis", marks[id]), std::string::npos)
        << id << " stepped down";

  marks = output_marks();
  relay->restore();
  ASSERT_TRUE(wait_for_log(ids, "declared down", marks, 20s))
      << "not every node rejoined once Redis was back";
  ASSERT_TRUE(wait_for_view(ids, ids, marks, 15s))
      << "the nodes never all saw " << view_line(ids) << " again";
  const auto back_at = steady::now();
  ASSERT_NO_FATAL_FAILURE(expect_traffic_to_go_on_and_end_consistent(rooms, back_at));
  report_clients();
}

TEST_F(cluster_rooms_test, draining_a_node_with_clients_moves_them_and_its_rooms_without_loss) {
  auto ids = node_ids(3);
  ASSERT_NO_FATAL_FAILURE(start_cluster(ids));
  auto rooms = rooms_owned(ids, 2);
  ASSERT_NO_FATAL_FAILURE(add_agents(ids, rooms));
  start_traffic();
  ASSERT_TRUE(wait_for_acks(rooms, 30, {}, 15s)) << "traffic never got going";

  const auto drained = ids.front();
  std::set<std::string> moved;  // rooms the drained node owns
  for (const auto& room : rooms)
    if (cluster::owner_of(room, ids) == drained) moved.insert(room);
  const auto drained_port = node(drained).port();
  ports_.remove(drained_port);  // clients told to go elsewhere reconnect to the others

  // What an operator runs: it returns once the node has left the registry.
  const auto asked_at = steady::now();
  std::string command = std::string(CHORUSCTL_PATH) + " --redis_url '" + redis_->url() + "' drain '" +
                        drained + "' --wait 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string printed;
  char buf[512];
  while (auto n = std::fread(buf, 1, sizeof buf, pipe)) printed.append(buf, n);
  const int status = ::pclose(pipe);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << printed;
  EXPECT_EQ(node(drained).wait_exit(15s), 0) << "a drained node exits cleanly";
  std::cout << "[ metric ] chorusctl drain to the node's clean exit: " << ms_between(asked_at, steady::now())
            << " ms\n";
  const auto out = node(drained).output();
  EXPECT_NE(out.find("an operator asked node " + drained + " to drain"), std::string::npos);
  EXPECT_NE(out.find("drained: "), std::string::npos) << "its rooms were handed over before it closed";

  const auto moved_at = steady::now();
  ASSERT_NO_FATAL_FAILURE(expect_traffic_to_go_on_and_end_consistent(rooms, moved_at));

  report_clients();
  expect_clients_moved_off(drained, drained_port, rooms, moved);
}

}  // namespace
}  // namespace chorus::testing
