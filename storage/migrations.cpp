// Schema migrations: the SQL files of storage/migrations/, compiled in, applied in order under an advisory
// lock.
#include "storage/message_store.hpp"
#include "storage/pg_conninfo.hpp"

#include <pqxx/pqxx>

#include <iterator>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>

namespace chorus::storage {
namespace {

struct migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

// storage/CMakeLists.txt generates the list and has already checked that versions run 1, 2, 3, … in order.
constexpr migration all_migrations[] = {
#include "storage/migrations.inc"
};

// Any fixed key works if every chorusd uses it and nothing else in the database does; this one spells
// "chorusmg". A session-level lock, so it is held across the per-migration transactions.
constexpr long long migration_lock_key = 0x63686f7275736d67;

void run(pqxx::connection& conn, const std::string& sql) {
  pqxx::nontransaction tx{conn};
  tx.exec(sql);
}

}  // namespace

int known_schema_version() {
  return all_migrations[std::size(all_migrations) - 1].version;
}

int migrate(const std::string& url) {
  const migration* current = nullptr;
  try {
    pqxx::connection conn{with_network_timeouts(url)};
    // "relation already exists, skipping" notices are expected on every start after the first.
    run(conn, "SET client_min_messages = warning");
    run(conn, "SELECT pg_advisory_lock(" + std::to_string(migration_lock_key) + ")");
    run(conn,
        "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text NOT NULL, "
        "applied_at timestamptz NOT NULL DEFAULT now())");

    std::set<int> applied;
    {
      pqxx::nontransaction tx{conn};
      for (const auto& row : tx.exec("SELECT version FROM schema_migrations"))
        applied.insert(row[0].as<int>());
    }
    const int stored = applied.empty() ? 0 : *applied.rbegin();
    if (stored > known_schema_version()) {
      // Closing the connection below releases the lock; an older binary must not touch a newer schema.
      throw std::runtime_error("database schema is at version " + std::to_string(stored) +
                               " but this chorusd knows only up to " +
                               std::to_string(known_schema_version()) + "; upgrade chorusd");
    }

    for (const auto& m : all_migrations) {
      if (applied.contains(m.version)) continue;
      current = &m;
      pqxx::work tx{conn};
      tx.exec(std::string{m.sql});
      tx.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version,
                     std::string{m.name});
      tx.commit();
      current = nullptr;
    }
    run(conn, "SELECT pg_advisory_unlock(" + std::to_string(migration_lock_key) + ")");
    return known_schema_version();
  } catch (const pqxx::failure& e) {
    std::string what = "database migration failed";
    if (current != nullptr) {
      what += " at " + std::to_string(current->version) + "_" + std::string{current->name} + ".sql";
    }
    throw std::runtime_error(what + ": " + e.what());
  } catch (const std::logic_error& e) {
    // libpqxx reports misuse and conversion failures this way; start-up still wants one exception type.
    throw std::runtime_error(std::string{"database migration failed: "} + e.what());
  }
}

}  // namespace chorus::storage
