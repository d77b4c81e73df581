// Tests for message_store against a real PostgreSQL: appends, idempotency, sequence checks, fencing epochs,
// history, reconnects.
#include "storage/message_store.hpp"

#include "tests/support/test_database.hpp"

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace storage = chorus::storage;
using chorus::testing::test_database;
using storage::db_error;
using storage::direction;
using storage::message_row;

namespace storage_test {

std::string new_uuid() {
  static std::mt19937_64 rng{std::random_device{}()};
  const std::uint64_t hi = (rng() & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  const std::uint64_t lo = (rng() & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  char buf[37];
  std::snprintf(
      buf, sizeof buf, "%08llx-%04llx-%04llx-%04llx-%012llx", static_cast<unsigned long long>(hi >> 32),
      static_cast<unsigned long long>((hi >> 16) & 0xffff), static_cast<unsigned long long>(hi & 0xffff),
      static_cast<unsigned long long>(lo >> 48), static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  return buf;
}

// The node every activation in these tests claims rooms for, unless a test plays two nodes.
constexpr std::string_view node = "node-a";

// The epoch a room's first activation takes: row() writes under it, as a room activated once does.
constexpr std::uint64_t first_epoch = 1;

message_row row(std::string room, std::uint64_t seq, std::string author = "alice", std::string client_id = "",
                std::string text = "hello", std::int64_t created_at_ms = 1'700'000'000'123) {
  return message_row{new_uuid(),      std::move(room),      seq,           std::move(author),
                     std::move(text), std::move(client_id), created_at_ms, first_epoch};
}

// The same row written under another ownership epoch.
message_row at_epoch(message_row r, std::uint64_t epoch) {
  r.epoch = epoch;
  return r;
}

// Appends instead of `"literal" + std::to_string(n)`, on which g++ 12 -O3 gives a false -Wrestrict error.
std::string numbered(std::string prefix, long long n) {
  prefix += std::to_string(n);
  return prefix;
}

template <class T>
T ok(storage::result<T> r) {
  if (auto* e = std::get_if<db_error>(&r)) {
    ADD_FAILURE() << "database call failed: " << storage::describe(*e);
    return T{};
  }
  return std::get<T>(std::move(r));
}

std::vector<std::uint64_t> seqs(const std::vector<message_row>& rows) {
  std::vector<std::uint64_t> out;
  for (const auto& r : rows) out.push_back(r.seq);
  return out;
}

void expect_same(const message_row& a, const message_row& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.room, b.room);
  EXPECT_EQ(a.seq, b.seq);
  EXPECT_EQ(a.author, b.author);
  EXPECT_EQ(a.text, b.text);
  EXPECT_EQ(a.client_msg_id, b.client_msg_id);
  EXPECT_EQ(a.created_at_ms, b.created_at_ms);
  EXPECT_EQ(a.epoch, b.epoch);
}

// Every test runs twice: with appends by statement, and with every append by COPY (copy_from_rows 1).
class message_store_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  void SetUp() override { test_database::instance().truncate_all(); }

  const std::string& url() const { return test_database::instance().url(); }

  long long scalar(const std::string& sql) {
    pqxx::connection conn{url()};
    pqxx::nontransaction tx{conn};
    return tx.exec(sql).at(0).at(0).as<long long>();
  }

  // The room's seqs as the table holds them, straight from SQL rather than through the store.
  std::vector<std::uint64_t> stored_seqs(const std::string& room) {
    pqxx::connection conn{url()};
    pqxx::nontransaction tx{conn};
    std::vector<std::uint64_t> out;
    for (const auto& r :
         tx.exec("SELECT seq FROM messages WHERE room = " + tx.quote(room) + " ORDER BY seq")) {
      out.push_back(r[0].as<std::uint64_t>());
    }
    return out;
  }

  std::uint64_t last_seq(const std::string& room) {
    pqxx::connection conn{url()};
    pqxx::nontransaction tx{conn};
    return tx.exec("SELECT last_seq FROM rooms WHERE id = " + tx.quote(room)).at(0).at(0).as<std::uint64_t>();
  }

  // The room's owner_epoch and owner_node ("NULL" for none), straight from SQL.
  std::pair<std::uint64_t, std::string> owner(const std::string& room) {
    pqxx::connection conn{url()};
    pqxx::nontransaction tx{conn};
    const auto r =
        tx.exec("SELECT owner_epoch, coalesce(owner_node, 'NULL') FROM rooms WHERE id = " + tx.quote(room))
            .at(0);
    return {r[0].as<std::uint64_t>(), r[1].as<std::string>()};
  }

  // The epochs the room's stored rows carry, in seq order.
  std::vector<std::uint64_t> stored_epochs(const std::string& room) {
    pqxx::connection conn{url()};
    pqxx::nontransaction tx{conn};
    std::vector<std::uint64_t> out;
    for (const auto& r :
         tx.exec("SELECT epoch FROM messages WHERE room = " + tx.quote(room) + " ORDER BY seq")) {
      out.push_back(r[0].as<std::uint64_t>());
    }
    return out;
  }

  storage::message_store store{url(), GetParam()};
};

TEST_P(message_store_test, append_round_trips_every_field) {
  ok(store.activate("r1", 0, node));
  const std::vector<std::string> texts = {
      "plain",
      "tab\there\tand\tthere",
      "new\nline\r\nand carriage return",
      "back\\slash \\N \\t \\\\ and a COPY end marker:\n\\.\n",
      "quotes ' '' \" `  and $1 $$ ; DROP TABLE messages; --",
      "UTF-8: h\u00e9llo \u00fcn\u00efc\u00f6de \u65e5\u672c\u8a9e \u05e2\u05d1\u05e8\u05d9\u05ea",
      "emoji \U0001F600\U0001F44D\U0001F3FD \U0001F468\u200D\U0001F469\u200D\U0001F467",
      "",
      std::string(10000, 'x'),
  };
  std::vector<message_row> rows;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    rows.push_back(row("r1", i + 1, i % 2 ? "bob" : "alice",
                       i % 3 ? numbered("cid-\t\"'\\", static_cast<long long>(i)) : "", texts[i],
                       1'700'000'000'000 + static_cast<std::int64_t>(i) * 1001));
  }
  rows[1].created_at_ms = -1;  // 1969-12-31T23:59:59.999Z: before the epoch still rounds the right way
  rows[2].created_at_ms = 0;

  const auto outcome = ok(store.append(rows));

  EXPECT_TRUE(outcome.duplicates.empty());
  EXPECT_TRUE(outcome.out_of_sequence.empty());
  EXPECT_TRUE(outcome.fenced.empty());
  EXPECT_TRUE(outcome.unwritten.empty());
  EXPECT_TRUE(outcome.written("r1"));
  const auto stored = ok(store.page("r1", 0, direction::newer, 100));
  ASSERT_EQ(stored.size(), rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) expect_same(stored[i], rows[i]);
  EXPECT_EQ(scalar("SELECT count(*) FROM messages WHERE client_msg_id IS NULL"), 3);
  EXPECT_EQ(scalar("SELECT count(*) FROM messages WHERE created_at = '1969-12-31T23:59:59.999Z'"), 1);
  EXPECT_EQ(last_seq("r1"), rows.size());
}

TEST_P(message_store_test, created_at_round_trips_from_year_1_to_beyond_9999) {
  ok(store.activate("r", 0, node));
  // A COPY carries created_at as ISO text for years 1 to 9999; a batch with any other time goes by statement.
  const std::vector<std::pair<std::int64_t, std::string>> times = {
      {-62'135'596'800'000, "0001-01-01 00:00:00+00"},  {-62'135'596'799'999, "0001-01-01 00:00:00.001+00"},
      {951'825'599'999, "2000-02-29 11:59:59.999+00"},  {253'402'300'799'999, "9999-12-31 23:59:59.999+00"},
      {253'402'300'800'000, "10000-01-01 00:00:00+00"},
  };
  std::uint64_t seq = 0;
  for (const auto& [ms, text] : times) {
    const std::vector<message_row> batch = {row("r", ++seq, "alice", "", "t", ms),
                                            row("r", ++seq, "bob", "", "t", ms)};
    ASSERT_TRUE(ok(store.append(batch)).written("r")) << text;
  }
  const auto stored = ok(store.page("r", 0, direction::newer, 100));
  ASSERT_EQ(stored.size(), 2 * times.size());
  pqxx::connection conn{url()};
  pqxx::nontransaction tx{conn};
  for (std::size_t i = 0; i < times.size(); ++i) {
    EXPECT_EQ(stored[2 * i].created_at_ms, times[i].first);
    EXPECT_EQ(stored[2 * i + 1].created_at_ms, times[i].first);
    // By statement created_at is epoch + ms * 1 ms, multiplied in floating point: near year 9999 that is
    // microseconds off, which reads back as the same millisecond. A COPY stores exactly the text it sends.
    if (GetParam() != 1) continue;
    EXPECT_EQ(tx.exec_params("SELECT created_at::text FROM messages WHERE room = 'r' AND seq = $1",
                             static_cast<long long>(2 * i + 1))
                  .at(0)
                  .at(0)
                  .as<std::string>(),
              times[i].second);
  }
}

TEST_P(message_store_test, batches_continue_each_room_and_advance_last_seq) {
  for (const char* room : {"a", "b", "c"}) ok(store.activate(room, 0, node));
  // Rooms interleaved in one batch, as a shared batch writer sees them.
  const std::vector<message_row> first = {row("a", 1), row("b", 1), row("a", 2), row("c", 1), row("a", 3)};
  EXPECT_TRUE(ok(store.append(first)).unwritten.empty());
  const std::vector<message_row> second = {row("b", 2), row("a", 4), row("b", 3)};
  EXPECT_TRUE(ok(store.append(second)).unwritten.empty());

  EXPECT_EQ(stored_seqs("a"), (std::vector<std::uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(stored_seqs("b"), (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(stored_seqs("c"), (std::vector<std::uint64_t>{1}));
  EXPECT_EQ(last_seq("a"), 4u);
  EXPECT_EQ(last_seq("b"), 3u);
  EXPECT_EQ(last_seq("c"), 1u);
  EXPECT_TRUE(ok(store.append({})).unwritten.empty());
}

TEST_P(message_store_test, stored_duplicate_leaves_its_room_unwritten_and_other_rooms_commit) {
  for (const char* room : {"r1", "r2", "r3"}) ok(store.activate(room, 0, node));
  const auto original = row("r1", 1, "alice", "c1", "first try");
  ok(store.append(std::vector<message_row>{original}));

  const std::vector<message_row> batch = {
      row("r1", 2, "alice", "c1", "retry"),            // duplicate of the stored original
      row("r1", 3, "bob"),                             // same room: left unwritten with it
      row("r2", 1, "carol", "c2"),                     // another room: committed
      row("r3", 1, "alice", "c1", "retry elsewhere"),  // same key in another room: still a duplicate
  };
  const auto outcome = ok(store.append(batch));

  ASSERT_EQ(outcome.duplicates.size(), 2u);
  EXPECT_EQ(outcome.duplicates[0].first, 0u);
  expect_same(outcome.duplicates[0].second, original);
  EXPECT_EQ(outcome.duplicates[1].first, 3u);
  expect_same(outcome.duplicates[1].second, original);
  EXPECT_TRUE(outcome.out_of_sequence.empty());
  EXPECT_EQ(outcome.unwritten, (std::vector<std::string>{"r1", "r3"}));
  EXPECT_FALSE(outcome.written("r1"));
  EXPECT_TRUE(outcome.written("r2"));
  EXPECT_FALSE(outcome.written("r3"));
  EXPECT_EQ(stored_seqs("r1"), (std::vector<std::uint64_t>{1}));
  EXPECT_EQ(last_seq("r1"), 1u);
  EXPECT_EQ(stored_seqs("r2"), (std::vector<std::uint64_t>{1}));
  EXPECT_EQ(stored_seqs("r3"), (std::vector<std::uint64_t>{}));
  EXPECT_EQ(last_seq("r3"), 0u);
}

TEST_P(message_store_test, duplicate_within_a_batch_reports_the_first_row_only_if_it_was_written) {
  for (const char* room : {"r1", "r2", "r3"}) ok(store.activate(room, 0, node));
  // clang-format off
  const std::vector<message_row> batch = {
      row("r1", 1, "bob", "x"),
      row("r2", 1, "bob", "x"),   // repeats row 0, which is written, from another room
      row("r3", 1, "bob", "y"),
      row("r3", 2, "bob", "y"),   // repeats row 2 in its own room, so neither is stored: no original
      row("r2", 2, "dave", "x"),  // same client id, other author: not a duplicate
  };
  // clang-format on
  const auto outcome = ok(store.append(batch));

  ASSERT_EQ(outcome.duplicates.size(), 1u);
  EXPECT_EQ(outcome.duplicates[0].first, 1u);
  expect_same(outcome.duplicates[0].second, batch[0]);
  EXPECT_TRUE(outcome.out_of_sequence.empty());
  EXPECT_EQ(outcome.unwritten, (std::vector<std::string>{"r2", "r3"}));
  EXPECT_EQ(stored_seqs("r1"), (std::vector<std::uint64_t>{1}));
  EXPECT_EQ(stored_seqs("r2"), (std::vector<std::uint64_t>{}));
  EXPECT_EQ(stored_seqs("r3"), (std::vector<std::uint64_t>{}));
}

TEST_P(message_store_test, seqs_that_do_not_continue_the_room_are_refused) {
  for (const char* room : {"gap", "inner_gap", "repeat", "start", "stored_again", "good"})
    ok(store.activate(room, 0, node));
  ok(store.append(std::vector<message_row>{row("gap", 1), row("gap", 2), row("stored_again", 1),
                                           row("stored_again", 2)}));

  const std::vector<message_row> batch = {
      row("gap", 4),  // stored up to 2: 3 is missing
      row("inner_gap", 1),
      row("inner_gap", 3),  // a gap inside the batch
      row("repeat", 1),
      row("repeat", 1),           // the same seq twice
      row("start", 2),            // a new room starts at 1
      row("stored_again", 2),     // already stored
      row("never_activated", 1),  // no rooms row
      row("good", 1),
      row("good", 2),
  };
  const auto outcome = ok(store.append(batch));

  auto oos = outcome.out_of_sequence;
  std::sort(oos.begin(), oos.end());
  EXPECT_EQ(oos, (std::vector<std::string>{"gap", "inner_gap", "never_activated", "repeat", "start",
                                           "stored_again"}));
  EXPECT_TRUE(outcome.fenced.empty());
  EXPECT_TRUE(outcome.duplicates.empty());
  EXPECT_TRUE(outcome.written("good"));
  EXPECT_FALSE(outcome.written("gap"));
  EXPECT_EQ(stored_seqs("gap"), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(last_seq("gap"), 2u);
  EXPECT_EQ(stored_seqs("inner_gap"), (std::vector<std::uint64_t>{}));
  EXPECT_EQ(stored_seqs("repeat"), (std::vector<std::uint64_t>{}));
  EXPECT_EQ(stored_seqs("start"), (std::vector<std::uint64_t>{}));
  EXPECT_EQ(stored_seqs("stored_again"), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(stored_seqs("good"), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(scalar("SELECT count(*) FROM rooms WHERE id = 'never_activated'"), 0);

  // A second store, like a second writer that missed the first one's commit, is refused the same way.
  storage::message_store other{url(), GetParam()};
  EXPECT_EQ(ok(other.append(std::vector<message_row>{row("good", 2)})).out_of_sequence,
            (std::vector<std::string>{"good"}));
  EXPECT_TRUE(ok(other.append(std::vector<message_row>{row("good", 3)})).written("good"));
}

TEST_P(message_store_test, rooms_held_back_are_told_apart_while_the_rest_of_the_batch_commits) {
  for (const char* room : {"good", "gap", "dup"}) ok(store.activate(room, 0, node));
  ok(store.append(std::vector<message_row>{row("gap", 1), row("gap", 2), row("dup", 1, "alice", "c-1")}));
  const std::vector<message_row> batch = {
      row("good", 1, "bob", "c-9"),
      row("gap", 4),                  // stored up to 2: 3 is missing
      row("dup", 5, "alice", "c-1"),  // out of sequence, and a resend of a stored message
      row("good", 2),
  };

  const auto outcome = ok(store.append(batch));

  EXPECT_TRUE(outcome.written("good"));
  EXPECT_EQ(outcome.out_of_sequence, (std::vector<std::string>{"gap"}));
  EXPECT_TRUE(outcome.fenced.empty());
  ASSERT_EQ(outcome.duplicates.size(), 1u);
  EXPECT_EQ(outcome.duplicates[0].first, 2u);  // its index in this batch
  EXPECT_EQ(outcome.duplicates[0].second.seq, 1u);
  EXPECT_EQ(stored_seqs("good"), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(stored_seqs("gap"), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(stored_seqs("dup"), (std::vector<std::uint64_t>{1}));
}

TEST_P(message_store_test, a_failure_after_other_rooms_committed_is_in_doubt_not_unavailable) {
  for (const char* room : {"first", "gap"}) ok(store.activate(room, 0, node));
  ok(store.append(std::vector<message_row>{row("gap", 1), row("gap", 2)}));
  {
    // Fails any later statement that updates rooms once "first" has rows: the held-back rooms' second
    // statement, after the one that committed "first".
    pqxx::connection conn{url()};
    pqxx::nontransaction tx{conn};
    tx.exec(
        "CREATE FUNCTION fail_once_first_is_written() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF EXISTS (SELECT 1 FROM messages WHERE room = 'first') THEN RAISE EXCEPTION 'injected'; END IF; "
        "RETURN NULL; END $$");
    tx.exec(
        "CREATE TRIGGER fail_once_first_is_written BEFORE UPDATE ON rooms FOR EACH STATEMENT "
        "EXECUTE FUNCTION fail_once_first_is_written()");
  }
  const auto failed = store.append(std::vector<message_row>{row("first", 1), row("gap", 4)});
  {
    pqxx::connection conn{url()};
    pqxx::nontransaction tx{conn};
    tx.exec("DROP TRIGGER fail_once_first_is_written ON rooms");
    tx.exec("DROP FUNCTION fail_once_first_is_written()");
  }
  ASSERT_TRUE(std::holds_alternative<db_error>(failed));
  EXPECT_EQ(std::get<db_error>(failed), db_error::in_doubt) << store.last_error();
  EXPECT_EQ(stored_seqs("first"), (std::vector<std::uint64_t>{1}));
  EXPECT_EQ(stored_seqs("gap"), (std::vector<std::uint64_t>{1, 2}));
}

TEST_P(message_store_test, pages_match_the_table_in_both_directions) {
  ok(store.activate("h", 0, node));
  ok(store.activate("other", 0, node));
  constexpr std::uint64_t total = 250;
  std::vector<message_row> batch;
  for (std::uint64_t s = 1; s <= total; ++s) {
    batch.push_back(row("h", s, "alice", "", numbered("m", static_cast<long long>(s))));
    batch.push_back(row("other", s));
  }
  ok(store.append(batch));
  ASSERT_EQ(stored_seqs("h").size(), total);

  auto range = [](std::uint64_t from, std::uint64_t to) {  // inclusive, either way round
    std::vector<std::uint64_t> out;
    if (from <= to) {
      for (auto s = from; s <= to; ++s) out.push_back(s);
    } else {
      for (auto s = from; s >= to; --s) out.push_back(s);
    }
    return out;
  };
  constexpr auto max = std::numeric_limits<std::uint64_t>::max();
  EXPECT_EQ(seqs(ok(store.page("h", total + 1, direction::older, 100))), range(250, 151));
  EXPECT_EQ(seqs(ok(store.page("h", max, direction::older, 10))), range(250, 241));
  EXPECT_EQ(seqs(ok(store.page("h", 101, direction::older, 100))), range(100, 1));
  EXPECT_EQ(seqs(ok(store.page("h", 5, direction::older, 100))), range(4, 1));
  EXPECT_TRUE(ok(store.page("h", 1, direction::older, 100)).empty());
  EXPECT_TRUE(ok(store.page("h", 0, direction::older, 100)).empty());
  EXPECT_EQ(seqs(ok(store.page("h", 0, direction::newer, 100))), range(1, 100));
  EXPECT_EQ(seqs(ok(store.page("h", 245, direction::newer, 100))), range(246, 250));
  EXPECT_TRUE(ok(store.page("h", total, direction::newer, 100)).empty());
  EXPECT_TRUE(ok(store.page("h", max, direction::newer, 100)).empty());
  EXPECT_TRUE(ok(store.page("h", 100, direction::newer, 0)).empty());
  EXPECT_TRUE(ok(store.page("nowhere", 0, direction::newer, 100)).empty());

  // Walking the whole history page by page, either way, yields exactly the table.
  const auto table = stored_seqs("h");
  std::vector<std::uint64_t> forwards;
  for (std::uint64_t from = 0;;) {
    const auto page = ok(store.page("h", from, direction::newer, 37));
    if (page.empty()) break;
    for (const auto& m : page) {
      EXPECT_EQ(m.room, "h");
      EXPECT_EQ(m.text, numbered("m", static_cast<long long>(m.seq)));
      forwards.push_back(m.seq);
    }
    from = page.back().seq;
  }
  EXPECT_EQ(forwards, table);
  std::vector<std::uint64_t> backwards;
  for (std::uint64_t from = max;;) {
    const auto page = ok(store.page("h", from, direction::older, 37));
    if (page.empty()) break;
    for (const auto& m : page) backwards.push_back(m.seq);
    from = page.back().seq;
  }
  std::reverse(backwards.begin(), backwards.end());
  EXPECT_EQ(backwards, table);
}

TEST_P(message_store_test, activate_creates_the_room_and_returns_the_tail_oldest_first) {
  const auto fresh = ok(store.activate("new", 10, node));
  EXPECT_EQ(fresh.last_seq, 0u);
  EXPECT_TRUE(fresh.tail.empty());
  EXPECT_EQ(scalar("SELECT count(*) FROM rooms WHERE id = 'new' AND kind = 'group'"), 1);

  std::vector<message_row> batch;
  for (std::uint64_t s = 1; s <= 30; ++s) batch.push_back(row("new", s));
  ok(store.append(batch));

  const auto again = ok(store.activate("new", 10, node));
  EXPECT_EQ(again.last_seq, 30u);
  std::vector<std::uint64_t> expected;
  for (std::uint64_t s = 21; s <= 30; ++s) expected.push_back(s);
  EXPECT_EQ(seqs(again.tail), expected);
  expect_same(again.tail.back(), batch.back());
  EXPECT_EQ(ok(store.activate("new", 100, node)).tail.size(), 30u);
  EXPECT_TRUE(ok(store.activate("new", 0, node)).tail.empty());
  EXPECT_EQ(scalar("SELECT count(*) FROM rooms"), 1);
}

TEST_P(message_store_test, find_by_client_id) {
  ok(store.activate("r", 0, node));
  const auto stored = row("r", 1, "alice", "abc");
  ok(store.append(std::vector<message_row>{stored, row("r", 2, "bob")}));

  const auto found = ok(store.find_by_client_id("alice", "abc"));
  ASSERT_TRUE(found.has_value());
  expect_same(*found, stored);
  EXPECT_FALSE(ok(store.find_by_client_id("bob", "abc")).has_value());
  EXPECT_FALSE(ok(store.find_by_client_id("alice", "abd")).has_value());
  EXPECT_FALSE(ok(store.find_by_client_id("bob", "")).has_value());
}

TEST_P(message_store_test, broken_connection_fails_one_call_then_reconnects) {
  // application_name lets the test find this store's backend among the others: one name per variant, as
  // ctest runs both at once (and this database only, as every test binary has its own).
  const std::string name = GetParam() == 1 ? "chorus_victim_copy" : "chorus_victim_statement";
  storage::message_store victim{
      url() + (url().find('?') == std::string::npos ? "?" : "&") + "application_name=" + name, GetParam()};
  ok(victim.activate("r", 0, node));
  ASSERT_TRUE(victim.connected());
  {
    pqxx::connection admin{url()};
    pqxx::nontransaction tx{admin};
    // The timeout makes pg_terminate_backend wait until the backend has gone.
    const auto killed = tx.exec_params(
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE application_name = $1 "
        "AND datname = current_database()",
        name);
    ASSERT_EQ(killed.size(), 1u);
    ASSERT_TRUE(killed[0][0].as<bool>());
  }

  // The batch goes out as one statement that commits by itself, so a connection lost under it may have
  // committed it: the call cannot say "nothing written", only "in doubt" (the room resyncs either way). By
  // COPY the loss comes before the commit, and the store says "in doubt" all the same.
  const auto failed = victim.append(std::vector<message_row>{row("r", 1)});
  ASSERT_TRUE(std::holds_alternative<db_error>(failed));
  EXPECT_EQ(std::get<db_error>(failed), db_error::in_doubt);
  EXPECT_FALSE(victim.connected());
  EXPECT_FALSE(victim.last_error().empty());

  EXPECT_TRUE(ok(victim.append(std::vector<message_row>{row("r", 1)})).written("r"));
  EXPECT_TRUE(victim.connected());
  EXPECT_EQ(stored_seqs("r"), (std::vector<std::uint64_t>{1}));
}

TEST_P(message_store_test, failed_statement_rolls_back_and_keeps_the_connection) {
  ok(store.activate("r", 0, node));
  auto bad = row("r", 1);
  bad.id = "not-a-uuid";
  const auto failed = store.append(std::vector<message_row>{bad});
  ASSERT_TRUE(std::holds_alternative<db_error>(failed));
  EXPECT_EQ(std::get<db_error>(failed), db_error::unavailable);
  EXPECT_NE(store.last_error().find("uuid"), std::string::npos) << store.last_error();
  EXPECT_TRUE(store.connected());
  // The UPDATE of last_seq rolled back with the rows of its statement.
  EXPECT_EQ(last_seq("r"), 0u);

  EXPECT_TRUE(ok(store.append(std::vector<message_row>{row("r", 1)})).written("r"));
}

TEST_P(message_store_test, every_activation_takes_the_next_epoch_and_records_its_node) {
  const auto first = ok(store.activate("r", 0, "node-a"));
  EXPECT_EQ(first.epoch, 1u);
  EXPECT_EQ(owner("r"), (std::pair<std::uint64_t, std::string>{1, "node-a"}));
  ok(store.append(std::vector<message_row>{row("r", 1), row("r", 2)}));

  // Another node (its own connection) takes the room over: a fresh epoch, the same sequence.
  storage::message_store other{url()};
  const auto second = ok(other.activate("r", 10, "node-b"));
  EXPECT_EQ(second.epoch, 2u);
  EXPECT_EQ(second.last_seq, 2u);
  EXPECT_EQ(seqs(second.tail), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(owner("r"), (std::pair<std::uint64_t, std::string>{2, "node-b"}));

  EXPECT_EQ(ok(store.activate("r", 0, "")).epoch, 3u);
  EXPECT_EQ(owner("r"), (std::pair<std::uint64_t, std::string>{3, "NULL"}));
  EXPECT_EQ(scalar("SELECT count(*) FROM rooms"), 1);
}

TEST_P(message_store_test, activation_ends_a_writer_stalled_in_its_copy_and_takes_the_room) {
  ok(store.activate("r", 0, "node-a"));
  // A writer paused (SIGSTOP) in the middle of a large batch: the room's row is locked by the UPDATE, and the
  // COPY waits for rows that never come. Its backend is "active", so no server timeout ends it.
  pqxx::connection stalled{url()};
  auto tx = std::make_unique<pqxx::work>(stalled);
  tx->exec("UPDATE rooms SET last_seq = last_seq WHERE id = 'r'");
  auto copy = std::make_unique<pqxx::stream_to>(*tx, "messages", std::vector<std::string>{"id", "room"});
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));

  storage::message_store other{url()};
  const auto taken = ok(other.activate("r", 0, "node-b"));
  EXPECT_EQ(taken.epoch, 2u);
  EXPECT_EQ(owner("r"), (std::pair<std::uint64_t, std::string>{2, "node-b"}));
  EXPECT_EQ(scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                   "AND query LIKE 'COPY messages %'"),
            0);                        // (other tests' databases have writers of their own)
  EXPECT_ANY_THROW(copy->complete());  // the stalled writer's batch is gone: its connection was ended
  copy.reset();
  tx.reset();
}

TEST_P(message_store_test, activation_takes_the_room_from_a_writer_paused_between_its_statements) {
  ok(store.activate("r", 0, "node-a"));
  // This version's writer paused (SIGSTOP) between the statements of its batch: the room's row is locked by
  // the batch's UPDATE and its backend is idle in a transaction, which the server ends after a second (as
  // for every writer connection; set here by hand on a plain connection).
  pqxx::connection stalled{url()};
  pqxx::nontransaction{stalled}.exec("SET idle_in_transaction_session_timeout = '1s'");
  auto tx = std::make_unique<pqxx::work>(stalled);
  tx->exec("UPDATE rooms SET last_seq = last_seq WHERE id = 'r'");

  storage::message_store other{url()};
  const auto taken = ok(other.activate("r", 0, "node-b"));
  EXPECT_EQ(taken.epoch, 2u);
  EXPECT_EQ(owner("r"), (std::pair<std::uint64_t, std::string>{2, "node-b"}));
  EXPECT_ANY_THROW(tx->commit());  // the paused writer's batch is gone: the server ended its session
  tx.reset();
}

TEST_P(message_store_test, rows_are_stored_with_the_epoch_they_were_written_under) {
  ok(store.activate("r", 0, node));
  ok(store.append(std::vector<message_row>{row("r", 1)}));
  ASSERT_EQ(ok(store.activate("r", 0, node)).epoch, 2u);
  const auto second = at_epoch(row("r", 2, "alice", "c2"), 2);

  const auto outcome = ok(store.append(std::vector<message_row>{second, at_epoch(row("r", 3), 2)}));

  EXPECT_TRUE(outcome.unwritten.empty());
  EXPECT_TRUE(outcome.fenced.empty());
  EXPECT_EQ(stored_epochs("r"), (std::vector<std::uint64_t>{1, 2, 2}));
  EXPECT_EQ(last_seq("r"), 3u);
  // Every read fills it in: pages, the activation tail, lookups by client id and duplicates' originals.
  const auto page = ok(store.page("r", 0, direction::newer, 10));
  ASSERT_EQ(page.size(), 3u);
  EXPECT_EQ(page[0].epoch, 1u);
  expect_same(page[1], second);
  const auto tail = ok(store.activate("r", 10, node)).tail;
  ASSERT_EQ(tail.size(), 3u);
  expect_same(tail[1], second);
  const auto found = ok(store.find_by_client_id("alice", "c2"));
  ASSERT_TRUE(found.has_value());
  expect_same(*found, second);
  const auto retry = ok(store.append(std::vector<message_row>{at_epoch(row("r", 4, "alice", "c2"), 3)}));
  ASSERT_EQ(retry.duplicates.size(), 1u);
  expect_same(retry.duplicates[0].second, second);
}

TEST_P(message_store_test, rows_under_a_stale_epoch_are_fenced_and_other_rooms_commit) {
  // The old owner activated every room; then another node took over all of them but "kept".
  for (const char* room : {"lost", "lost_gap", "lost_dup", "kept", "mixed"})
    ok(store.activate(room, 0, "node-a"));
  ok(store.append(std::vector<message_row>{row("lost", 1), row("lost_dup", 1, "bob", "b1")}));
  storage::message_store new_owner{url()};
  for (const char* room : {"lost", "lost_gap", "lost_dup", "mixed"})
    ASSERT_EQ(ok(new_owner.activate(room, 0, "node-b")).epoch, 2u);

  const std::vector<message_row> batch = {
      row("lost", 2),                   // continues the sequence, but under epoch 1
      row("kept", 1),                   // still the old owner's: committed
      row("lost_gap", 5),               // stale and out of sequence: fenced, not out of sequence
      row("lost_dup", 2, "bob", "b1"),  // stale and a duplicate: fenced, the original still reported
      at_epoch(row("mixed", 1), 2),     // the current epoch…
      row("mixed", 2),                  // …and a stale one in the same room
      row("kept", 2),
  };
  const auto outcome = ok(store.append(batch));

  EXPECT_EQ(outcome.fenced, (std::vector<std::string>{"lost", "lost_gap", "lost_dup", "mixed"}));
  EXPECT_EQ(outcome.unwritten, (std::vector<std::string>{"lost", "lost_gap", "lost_dup", "mixed"}));
  EXPECT_TRUE(outcome.out_of_sequence.empty());
  ASSERT_EQ(outcome.duplicates.size(), 1u);
  EXPECT_EQ(outcome.duplicates[0].first, 3u);
  EXPECT_TRUE(outcome.written("kept"));
  EXPECT_EQ(stored_seqs("lost"), (std::vector<std::uint64_t>{1}));
  EXPECT_EQ(last_seq("lost"), 1u);
  EXPECT_EQ(stored_seqs("lost_gap"), (std::vector<std::uint64_t>{}));
  EXPECT_EQ(last_seq("lost_gap"), 0u);
  EXPECT_EQ(last_seq("lost_dup"), 1u);
  EXPECT_EQ(stored_seqs("mixed"), (std::vector<std::uint64_t>{}));
  EXPECT_EQ(last_seq("mixed"), 0u);
  EXPECT_EQ(stored_seqs("kept"), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(last_seq("kept"), 2u);

  // The new owner writes under its epoch.
  const auto taken = ok(new_owner.append(std::vector<message_row>{at_epoch(row("lost", 2), 2)}));
  EXPECT_TRUE(taken.unwritten.empty());
  EXPECT_EQ(stored_epochs("lost"), (std::vector<std::uint64_t>{1, 2}));
}

TEST_P(message_store_test, wrong_seq_under_the_current_epoch_is_out_of_sequence_not_fenced) {
  for (const char* room : {"r", "in_batch_gap", "ok"}) ok(store.activate(room, 0, node));
  ok(store.append(std::vector<message_row>{row("r", 1)}));

  const auto outcome = ok(store.append(
      std::vector<message_row>{row("r", 1), row("in_batch_gap", 1), row("in_batch_gap", 3), row("ok", 1)}));

  EXPECT_EQ(outcome.out_of_sequence, (std::vector<std::string>{"r", "in_batch_gap"}));
  EXPECT_TRUE(outcome.fenced.empty());
  EXPECT_EQ(outcome.unwritten, (std::vector<std::string>{"r", "in_batch_gap"}));
  EXPECT_TRUE(outcome.written("ok"));
  EXPECT_EQ(last_seq("r"), 1u);
}

// What PostgreSQL has counted for `rooms` over every session: sequential scans and rows updated. A session
// hands its counts over when it ends (while it lives, up to ten seconds later).
/// What PostgreSQL counted for the rooms table: sequential scans, row updates, and of those the updates
/// that stayed on their page (HOT).
struct room_table_counts {
  long long seq_scans = 0, updates = 0, hot_updates = 0;
  bool operator==(const room_table_counts&) const = default;
};

room_table_counts room_counts(const std::string& url) {
  pqxx::connection conn{url};
  pqxx::nontransaction tx{conn};
  const auto r =
      tx.exec("SELECT seq_scan, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'rooms'")
          .at(0);
  return {r[0].as<long long>(), r[1].as<long long>(), r[2].as<long long>()};
}

// A batch finds its rooms by key, so its cost does not grow with the number of rooms. Thousands of rooms
// PostgreSQL has not analyzed yet (a burst of new ones, before autovacuum comes by) made the planner read
// all of them for every batch, and the prepared statement kept that plan. And it moves each room's last_seq
// on the row's own page (HOT, migration 0005): packed pages sent those updates elsewhere, with new entries
// in every index of `rooms` that VACUUM then had to clean.
TEST_P(message_store_test, appends_find_their_rooms_by_key_and_update_them_in_place_among_thousands) {
  {
    pqxx::connection conn{url()};
    pqxx::nontransaction tx{conn};
    tx.exec("INSERT INTO rooms (id) SELECT 'many-' || g FROM generate_series(1, 3000) g");
  }
  // This process's earlier sessions (migrations, the insert above) have ended: wait for their counts.
  auto before = room_counts(url());
  for (int i = 0; i < 25; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const auto now = room_counts(url());
    if (now == before) break;
    before = now;
  }

  std::vector<std::string> busy;
  for (int i = 1; i <= 10; ++i) busy.push_back(numbered("many-", i * 250));
  constexpr int batches = 20;  // past the five executions after which PostgreSQL may settle on a cached plan
  {
    storage::message_store writer{url()};
    for (const auto& room : busy) ok(writer.activate(room, 0, node));
    for (int b = 0; b < batches; ++b) {
      std::vector<message_row> rows;
      for (const auto& room : busy) rows.push_back(row(room, static_cast<std::uint64_t>(b) + 1));
      ASSERT_TRUE(ok(writer.append(rows)).unwritten.empty());
    }
  }  // the writer's session ends, and its counts arrive
  const long long updates = static_cast<long long>(busy.size()) * (1 + batches);  // a claim, then advances
  auto after = room_counts(url());
  for (int i = 0; i < 200 && after.updates < before.updates + updates; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    after = room_counts(url());
  }

  EXPECT_EQ(after.updates - before.updates, updates);
  EXPECT_EQ(after.seq_scans, before.seq_scans) << "appends read the whole rooms table";
  EXPECT_EQ(after.hot_updates - before.hot_updates, updates) << "room updates left their page";
  EXPECT_EQ(stored_seqs(busy.front()).size(), static_cast<std::size_t>(batches));
}

TEST(message_store_offline, unreachable_server_returns_unavailable_without_throwing) {
  storage::message_store store{"postgresql://postgres@127.0.0.1:1/chorus?connect_timeout=2"};
  EXPECT_FALSE(store.connected());
  EXPECT_EQ(store.ensure_connected(), db_error::unavailable);
  EXPECT_FALSE(store.last_error().empty());
  const auto r = store.append(std::vector<message_row>{row("r", 1)});
  ASSERT_TRUE(std::holds_alternative<db_error>(r));
  EXPECT_EQ(std::get<db_error>(r), db_error::unavailable);
  EXPECT_TRUE(std::holds_alternative<db_error>(store.activate("r", 10, node)));
  EXPECT_TRUE(std::holds_alternative<db_error>(store.page("r", 0, direction::newer, 10)));
  EXPECT_TRUE(std::holds_alternative<db_error>(store.find_by_client_id("a", "b")));
}

TEST(message_store_offline, a_server_that_accepts_and_never_answers_is_given_up_on) {
  // A listening socket nobody accepts from: the kernel completes the handshake, and the server never says a
  // word (a hung server, or a proxy in front of a dead one).
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 8), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const auto url = "postgresql://postgres@127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/chorus";

  auto append = std::async(std::launch::async, [&] {
    storage::message_store store{url};
    return store.append(std::vector<message_row>{row("r", 1)});
  });
  const bool answered = append.wait_for(std::chrono::seconds(15)) == std::future_status::ready;
  ::close(listener);  // resets the waiting connection, so that the call ends even when the test failed
  EXPECT_TRUE(answered) << "the store waited 15 s and more for a server that never answers";
  const auto r = append.get();
  ASSERT_TRUE(std::holds_alternative<db_error>(r));
  EXPECT_EQ(std::get<db_error>(r), db_error::unavailable);
}

// Appends 100k rows in batches of 1000 from `writers` threads, each with its own store and rooms, like the
// batch writer pool; returns rows per second. Every row carries a client id, as sends from clients do.
double append_rate(const std::string& url, int writers, std::size_t copy_from_rows) {
  constexpr int rooms = 10;
  constexpr int per_batch = 1000;
  const int batches = 100 / writers;
  std::vector<std::vector<std::vector<message_row>>> work(writers,
                                                          std::vector<std::vector<message_row>>(batches));
  for (int w = 0; w < writers; ++w) {
    storage::message_store setup{url};
    for (int r = 0; r < rooms; ++r) ok(setup.activate(numbered(numbered("w", w) + "t", r), 0, node));
    for (int b = 0; b < batches; ++b) {
      for (int i = 0; i < per_batch; ++i) {
        const int r = i % rooms;
        const auto seq = static_cast<std::uint64_t>(b * (per_batch / rooms) + i / rooms + 1);
        work[w][b].push_back(row(numbered(numbered("w", w) + "t", r), seq, numbered("user", i % 97),
                                 numbered(numbered(numbered("c-", w) + "-", b) + "-", i),
                                 "a typical chat message of some length"));
      }
    }
  }
  std::vector<std::unique_ptr<storage::message_store>> stores;
  for (int w = 0; w < writers; ++w) {
    stores.push_back(std::make_unique<storage::message_store>(url, copy_from_rows));
    EXPECT_EQ(stores.back()->ensure_connected(), std::nullopt);
  }

  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      for (const auto& batch : work[w]) EXPECT_TRUE(ok(stores[w]->append(batch)).unwritten.empty());
    });
  }
  for (auto& t : threads) t.join();
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  const int total = writers * batches * per_batch;
  std::printf(
      "message_store append: %d rows in batches of %d from %d writer(s) by %s in %.3f s = %.0f rows/s\n",
      total, per_batch, writers, static_cast<std::size_t>(per_batch) >= copy_from_rows ? "COPY" : "statement",
      took.count(), total / took.count());
  return total / took.count();
}

// Not timed tests: they print the rate so a regression shows in the log (ctest -V or --output-on-failure).
TEST_P(message_store_test, throughput_one_writer) {
  RecordProperty("rows_per_second", static_cast<int>(append_rate(url(), 1, GetParam())));
  EXPECT_EQ(scalar("SELECT count(*) FROM messages"), 100'000);
}

TEST_P(message_store_test, throughput_two_writers) {
  RecordProperty("rows_per_second", static_cast<int>(append_rate(url(), 2, GetParam())));
  EXPECT_EQ(scalar("SELECT count(*) FROM messages"), 100'000);
}

INSTANTIATE_TEST_SUITE_P(by_statement_and_by_copy, message_store_test,
                         ::testing::Values(std::numeric_limits<std::size_t>::max(), std::size_t{1}),
                         [](const ::testing::TestParamInfo<std::size_t>& info) {
                           return info.param == 1 ? "copy" : "statement";
                         });

}  // namespace storage_test
