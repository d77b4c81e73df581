// Tests for the batch writer on a real PostgreSQL (label pg): rows that queue up behind a commit go in
// batches of at most max_rows; batches are counted for /metrics; a commit held up past slow_commit is logged,
// at most once per interval and with a count of the slow ones in between; quick commits log nothing.
#include "actors/batch_writer.hpp"
#include "tests/support/log_capture.hpp"
#include "tests/support/test_database.hpp"

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <algorithm>
#include <caf/all.hpp>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
using namespace chorus;
using chorus::testing::log_capture;
using chorus::testing::test_database;

class BatchWriter : public ::testing::Test {
 protected:
  BatchWriter() : sys_(configure(cfg_)), self_(sys_) {}
  ~BatchWriter() override {
    for (auto& writer : writers_) {
      self_->send_exit(writer, caf::exit_reason::user_shutdown);
      self_->wait_for(writer);
    }
  }

  static caf::actor_system_config& configure(caf::actor_system_config& cfg) {
    cfg.add_message_types<caf::id_block::chorus>();
    return cfg;
  }

  actors::batch_writer_actor spawn(actors::batch_settings settings) {
    writers_.push_back(sys_.spawn<caf::detached>(actors::batch_writer, test_database::instance().url(),
                                                 std::move(settings)));
    return writers_.back();
  }

  /// A writer with these slow-commit settings, and the epoch of `room`, activated through it.
  std::pair<actors::batch_writer_actor, std::uint64_t> start(const std::string& room,
                                                             std::chrono::milliseconds slow_commit,
                                                             std::chrono::milliseconds interval = 10s) {
    actors::batch_settings settings;
    settings.slow_commit = slow_commit;
    settings.slow_commit_log_interval = interval;
    auto writer = spawn(std::move(settings));
    return {writer, activate(writer, room).epoch};
  }

  storage::room_snapshot activate(const actors::batch_writer_actor& writer, const std::string& room) {
    storage::room_snapshot out;
    self_->request(writer, 10s, atom::activate_v, room)
        .receive([&](storage::room_snapshot& s) { out = std::move(s); },
                 [&](caf::error& err) { ADD_FAILURE() << sys_.render(err); });
    return out;
  }

  /// Asks the writer to store the room's next message; the answer is the handle's.
  auto request_next(const actors::batch_writer_actor& writer, const std::string& room, std::uint64_t epoch) {
    const auto seq = ++seq_;
    static unsigned long long ids = 0;  // message ids stay unique when every case runs in one process
    char id[37];
    std::snprintf(id, sizeof id, "00000000-0000-7000-8000-%012llu", ++ids);
    std::vector<storage::message_row> rows{{id, room, seq, "alice", "hello", "", 1'700'000'000'000, epoch}};
    return self_->request(writer, 10s, atom::store_v, std::move(rows));
  }

  /// Whether the answer to a one-row store says it was stored.
  template <class Handle>
  bool stored(Handle&& handle) {
    bool out = false;
    handle.receive(
        [&](std::vector<actors::store_result>& r) {
          out = r.size() == 1 && r[0].status == actors::store_status::stored;
        },
        [&](caf::error& err) { ADD_FAILURE() << sys_.render(err); });
    return out;
  }

  /// Stores the room's next message and says whether it was stored.
  bool store_next(const actors::batch_writer_actor& writer, const std::string& room, std::uint64_t epoch) {
    return stored(request_next(writer, room, epoch));
  }

  /// Sends `count` stores while another transaction holds the room's row, then lets it go: the first commit
  /// waits for the lock and the others queue up behind it. Says whether every message was stored.
  bool store_queued_behind_a_lock(const actors::batch_writer_actor& writer, const std::string& room,
                                  std::uint64_t epoch, int count) {
    pqxx::connection conn{test_database::instance().url()};
    pqxx::work lock{conn};
    lock.exec_params("SELECT 1 FROM rooms WHERE id = $1 FOR UPDATE", room);
    std::vector<decltype(request_next(writer, room, epoch))> answers;
    for (int i = 0; i < count; ++i) answers.push_back(request_next(writer, room, epoch));
    std::this_thread::sleep_for(300ms);  // every store is in the writer's mailbox long before this
    lock.commit();
    bool all = true;
    for (auto& answer : answers) all = stored(answer) && all;
    return all;
  }

  /// The rows of each transaction that wrote the room's messages (rows of one commit share their xmin).
  static std::vector<long> rows_per_commit(const std::string& room) {
    pqxx::connection conn{test_database::instance().url()};
    pqxx::nontransaction tx{conn};
    std::vector<long> out;
    for (const auto& r :
         tx.exec_params("SELECT count(*) FROM messages WHERE room = $1 GROUP BY xmin::text", room))
      out.push_back(r[0].as<long>());
    return out;
  }

  /// Stores the next message while another transaction holds the room's row for `hold`: the writer's
  /// update of last_seq waits for it, so the commit takes at least that long.
  bool store_held_up(const actors::batch_writer_actor& writer, const std::string& room, std::uint64_t epoch,
                     std::chrono::milliseconds hold) {
    pqxx::connection conn{test_database::instance().url()};
    pqxx::work lock{conn};
    lock.exec_params("SELECT 1 FROM rooms WHERE id = $1 FOR UPDATE", room);
    std::thread release([&] {
      std::this_thread::sleep_for(hold);
      lock.commit();
    });
    const bool stored = store_next(writer, room, epoch);
    release.join();
    return stored;
  }

  caf::actor_system_config cfg_;
  caf::actor_system sys_;
  caf::scoped_actor self_;
  std::vector<actors::batch_writer_actor> writers_;
  std::uint64_t seq_ = 0;  ///< the last seq stored; each case writes to rooms of its own
};

TEST_F(BatchWriter, rows_queued_behind_a_commit_go_in_batches_of_at_most_max_rows) {
  actors::batch_settings capped;
  capped.max_rows = 2;
  capped.max_delay = 10s;  // only the cap or an empty mailbox ends a batch
  auto writer = spawn(capped);
  ASSERT_TRUE(store_queued_behind_a_lock(writer, "capped", activate(writer, "capped").epoch, 5));
  const auto sizes = rows_per_commit("capped");
  ASSERT_FALSE(sizes.empty());
  EXPECT_EQ(std::accumulate(sizes.begin(), sizes.end(), 0L), 5);
  EXPECT_LE(*std::max_element(sizes.begin(), sizes.end()), 2);
  EXPECT_GE(sizes.size(), 3u);
}

TEST_F(BatchWriter, rows_queued_behind_a_commit_go_in_one_batch_under_the_default_cap) {
  actors::batch_settings defaults;
  defaults.max_delay = 10s;
  auto writer = spawn(defaults);
  ASSERT_TRUE(store_queued_behind_a_lock(writer, "uncapped", activate(writer, "uncapped").epoch, 5));
  // Whatever the first commit took before it waited for the lock, everything after it went in one more.
  const auto sizes = rows_per_commit("uncapped");
  EXPECT_EQ(std::accumulate(sizes.begin(), sizes.end(), 0L), 5);
  EXPECT_LE(sizes.size(), 2u);
}

TEST_F(BatchWriter, every_answered_batch_is_counted_with_its_rows_and_the_time_it_took) {
  actors::batch_settings settings;
  settings.max_delay = 10s;
  settings.counters = std::make_shared<actors::node_counters>();
  const auto& c = *settings.counters;
  auto writer = spawn(settings);
  const auto epoch = activate(writer, "counted").epoch;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store_next(writer, "counted", epoch));
  EXPECT_EQ(c.write_batches.load(), 3u);
  EXPECT_EQ(c.write_rows.load(), 3u);
  EXPECT_EQ(c.write_failures.load(), 0u);
  const auto busy = c.write_busy_us.load();
  EXPECT_GT(busy, 0u);

  // Four rows behind a lock held 300 ms: at most two batches (as above), and that wait is busy time.
  ASSERT_TRUE(store_queued_behind_a_lock(writer, "counted", epoch, 4));
  EXPECT_EQ(c.write_rows.load(), 7u);
  EXPECT_GE(c.write_batches.load(), 4u);
  EXPECT_LE(c.write_batches.load(), 5u);
  EXPECT_GE(c.write_busy_us.load() - busy, 250'000u);
}

TEST_F(BatchWriter, a_batch_the_database_cannot_take_is_counted_as_failed_not_written) {
  actors::batch_settings settings;
  settings.counters = std::make_shared<actors::node_counters>();
  const auto& c = *settings.counters;
  // Nothing listens on port 1: the connection is refused at once.
  writers_.push_back(sys_.spawn<caf::detached>(actors::batch_writer,
                                               std::string("postgresql://127.0.0.1:1/none"), settings));
  auto writer = writers_.back();
  for (int i = 0; i < 2; ++i) {  // the second fails without trying: the writer is backing off
    bool failed = false;
    request_next(writer, "nowhere", 1)
        .receive([](std::vector<actors::store_result>&) { ADD_FAILURE() << "stored without a database"; },
                 [&](caf::error&) { failed = true; });
    EXPECT_TRUE(failed);
  }
  EXPECT_EQ(c.write_failures.load(), 2u);
  EXPECT_EQ(c.write_batches.load(), 0u);
  EXPECT_EQ(c.write_rows.load(), 0u);
}

TEST_F(BatchWriter, a_statement_that_fails_on_a_live_server_fails_alone) {
  log_capture log;
  auto [writer, epoch] = start("calm", 0ms);
  activate(writer, "locked");
  // Another session holds the room's row for longer than an activation waits for it (and is no stalled
  // COPY that the activation may end): the activation fails while the server is up.
  pqxx::connection conn{test_database::instance().url()};
  pqxx::work lock{conn};
  lock.exec_params("SELECT 1 FROM rooms WHERE id = $1 FOR UPDATE", std::string("locked"));
  bool failed = false;
  self_->request(writer, 10s, atom::activate_v, std::string("locked"))
      .receive([](storage::room_snapshot&) { ADD_FAILURE() << "activated a room another session holds"; },
               [&](caf::error&) { failed = true; });
  EXPECT_TRUE(failed);
  EXPECT_TRUE(store_next(writer, "calm", epoch)) << "a send to another room right after";
  EXPECT_EQ(log.count("PostgreSQL database unavailable"), 0) << "the server never went away";
  lock.commit();
}

TEST_F(BatchWriter, quick_commits_log_nothing) {
  log_capture log;
  auto [writer, epoch] = start("quick", 2000ms);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store_next(writer, "quick", epoch));
  EXPECT_EQ(log.count("batch writer: a commit"), 0);
}

TEST_F(BatchWriter, a_slow_commit_is_logged_once_per_interval_with_the_count_of_the_others) {
  log_capture log;
  auto [writer, epoch] = start("held", 150ms, 3000ms);
  const auto first = std::chrono::steady_clock::now();

  ASSERT_TRUE(store_held_up(writer, "held", epoch, 300ms));
  EXPECT_EQ(log.count("batch writer: a commit of 1 messages took"), 1);
  // Within the interval: counted, not logged.
  ASSERT_TRUE(store_held_up(writer, "held", epoch, 300ms));
  ASSERT_TRUE(store_next(writer, "held", epoch));  // quick: neither logged nor counted
  EXPECT_EQ(log.count("batch writer: a commit of 1 messages took"), 1);

  std::this_thread::sleep_until(first + 3200ms);
  ASSERT_TRUE(store_held_up(writer, "held", epoch, 300ms));
  EXPECT_EQ(log.count("batch writer: a commit of 1 messages took"), 2);
  EXPECT_EQ(log.count("(1 more commits took over 150 ms since the last report)"), 1);
}

TEST_F(BatchWriter, a_zero_threshold_never_logs) {
  log_capture log;
  auto [writer, epoch] = start("unwatched", 0ms);
  ASSERT_TRUE(store_held_up(writer, "unwatched", epoch, 300ms));
  EXPECT_EQ(log.count("batch writer: a commit"), 0);
}

}  // namespace
