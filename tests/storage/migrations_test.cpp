// Tests for the schema migrations: a fresh apply, idempotence, concurrent start-up, refusing a newer schema.
#include "storage/message_store.hpp"

#include "tests/support/test_database.hpp"

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <atomic>
#include <exception>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace storage = chorus::storage;
using chorus::testing::test_database;

namespace {

struct applied_migration {
  int version;
  std::string name;
  std::string applied_at;
};

std::vector<applied_migration> applied(const std::string& url) {
  pqxx::connection conn{url};
  pqxx::nontransaction tx{conn};
  std::vector<applied_migration> out;
  for (const auto& r :
       tx.exec("SELECT version, name, applied_at::text FROM schema_migrations ORDER BY version")) {
    out.push_back({r[0].as<int>(), r[1].as<std::string>(), r[2].as<std::string>()});
  }
  return out;
}

long long scalar(const std::string& url, const std::string& sql) {
  pqxx::connection conn{url};
  pqxx::nontransaction tx{conn};
  return tx.exec(sql).at(0).at(0).as<long long>();
}

}  // namespace

TEST(migrations, apply_in_order_to_an_empty_database) {
  const auto url = test_database::instance().create_empty("empty");
  ASSERT_GE(storage::known_schema_version(), 1);

  EXPECT_EQ(storage::migrate(url), storage::known_schema_version());

  const auto rows = applied(url);
  ASSERT_EQ(rows.size(), static_cast<std::size_t>(storage::known_schema_version()));
  for (std::size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i].version, static_cast<int>(i) + 1);
  EXPECT_EQ(rows[0].name, "messages");
  EXPECT_EQ(scalar(url,
                   "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN "
                   "('rooms', 'messages', 'schema_migrations')"),
            3);
  // History paging and idempotent sends rely on these two unique indexes.
  EXPECT_EQ(scalar(url,
                   "SELECT count(*) FROM pg_constraint WHERE contype = 'u' AND conname IN "
                   "('messages_room_seq_key', 'messages_author_client_msg_id_key')"),
            2);
  // Fencing (0003): rooms carry their ownership epoch and owner, rows the epoch they were written under.
  EXPECT_EQ(scalar(url,
                   "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND "
                   "(table_name, column_name) IN (('rooms', 'owner_epoch'), ('rooms', 'owner_node'), "
                   "('messages', 'epoch'))"),
            3);
}

TEST(migrations, identifiers_and_their_indexes_compare_as_bytes) {
  const auto url = test_database::instance().create_empty("collation");
  storage::migrate(url);

  // 0007: every key a send's statement compares in a B-tree, whatever the database's default collation.
  EXPECT_EQ(
      scalar(url,
             "SELECT count(*) FROM pg_attribute WHERE attcollation = 'pg_catalog.\"C\"'::regcollation AND "
             "(attrelid::regclass::text, attname) IN (('rooms', 'id'), ('room_members', 'room_id'), "
             "('messages', 'room'), ('messages', 'author'), ('messages', 'client_msg_id'))"),
      5);
  // The unique indexes were rebuilt with it (one C key column each, two in the idempotency key).
  EXPECT_EQ(
      scalar(url,
             "SELECT count(*) FROM pg_index i CROSS JOIN LATERAL unnest(i.indcollation::oid[]) AS c (oid) "
             "WHERE i.indexrelid::regclass::text IN ('rooms_pkey', 'room_members_pkey', "
             "'messages_room_seq_key', 'messages_author_client_msg_id_key') "
             "AND c.oid = 'pg_catalog.\"C\"'::regcollation"),
      5);
}

TEST(migrations, second_run_changes_nothing) {
  const auto url = test_database::instance().create_empty("twice");
  storage::migrate(url);
  const auto first = applied(url);

  EXPECT_EQ(storage::migrate(url), storage::known_schema_version());

  const auto second = applied(url);
  ASSERT_EQ(second.size(), first.size());
  for (std::size_t i = 0; i < first.size(); ++i) EXPECT_EQ(second[i].applied_at, first[i].applied_at);
}

TEST(migrations, concurrent_start_applies_each_migration_once) {
  const auto url = test_database::instance().create_empty("concurrent");
  constexpr int nodes = 4;
  std::atomic<int> ready{0};
  std::vector<int> versions(nodes, -1);
  std::vector<std::string> errors(nodes);
  std::vector<std::thread> threads;
  for (int i = 0; i < nodes; ++i) {
    threads.emplace_back([&, i] {
      // Line the threads up so their migrate() calls overlap as much as possible.
      ready.fetch_add(1);
      while (ready.load() < nodes) std::this_thread::yield();
      try {
        versions[i] = storage::migrate(url);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();

  for (int i = 0; i < nodes; ++i) {
    EXPECT_EQ(errors[i], "") << "node " << i;
    EXPECT_EQ(versions[i], storage::known_schema_version()) << "node " << i;
  }
  EXPECT_EQ(applied(url).size(), static_cast<std::size_t>(storage::known_schema_version()));
}

TEST(migrations, database_at_a_newer_version_is_refused) {
  const auto url = test_database::instance().create_empty("newer");
  storage::migrate(url);
  const int newer = storage::known_schema_version() + 1;
  {
    pqxx::connection conn{url};
    pqxx::work tx{conn};
    tx.exec("INSERT INTO schema_migrations (version, name) VALUES (" + std::to_string(newer) + ", 'future')");
    tx.commit();
  }

  try {
    storage::migrate(url);
    FAIL() << "migrate() accepted a newer schema";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string{e.what()}, "database schema is at version " + std::to_string(newer) +
                                         " but this chorusd knows only up to " +
                                         std::to_string(storage::known_schema_version()) +
                                         "; upgrade chorusd");
  }
  // The refusal released the advisory lock: another start-up is not blocked.
  EXPECT_THROW(storage::migrate(url), std::runtime_error);
}

TEST(migrations, unreachable_server_is_a_runtime_error) {
  try {
    storage::migrate("postgresql://postgres@127.0.0.1:1/chorus?connect_timeout=2");
    FAIL() << "migrate() succeeded without a server";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string{e.what()}.find("database migration failed"), std::string::npos) << e.what();
  }
}
