// Creates, migrates and drops the per-process test database; sweeps databases left by crashed test processes.
#include "tests/support/test_database.hpp"

#include "storage/message_store.hpp"

#include <pqxx/pqxx>

#include <signal.h>
#include <unistd.h>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace chorus::testing {
namespace {

constexpr std::string_view prefix_base = "chorus_t_";

void run_admin(const std::string& admin_url, const std::string& sql) {
  pqxx::connection conn{admin_url};
  pqxx::nontransaction tx{conn};  // CREATE/DROP DATABASE cannot run inside a transaction block
  tx.exec(sql);
}

// Test databases are named chorus_t_<pid>_…; one whose process is gone was left by a crash or a kill.
void drop_abandoned(const std::string& admin_url) {
  std::vector<std::string> abandoned;
  {
    pqxx::connection conn{admin_url};
    pqxx::nontransaction tx{conn};
    for (const auto& row : tx.exec("SELECT datname FROM pg_database WHERE datname LIKE 'chorus\\_t\\_%'")) {
      const auto name = row[0].as<std::string>();
      const long pid = std::strtol(name.c_str() + prefix_base.size(), nullptr, 10);
      if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) abandoned.push_back(name);
    }
  }
  for (const auto& name : abandoned) {
    try {
      run_admin(admin_url, "DROP DATABASE IF EXISTS \"" + name + "\" WITH (FORCE)");
    } catch (const std::exception&) {
      // Another test process may be sweeping the same one; either way it is gone or goes next time.
    }
  }
}

std::string sanitized(std::string_view s) {
  std::string out;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    out += ok ? c : (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : '_';
  }
  return out;
}

}  // namespace

std::string with_database(std::string_view url, std::string_view database) {
  const auto scheme = url.find("://");
  if (scheme == std::string_view::npos) {
    // A key=value connection string: libpq takes the last dbname given.
    return std::string{url} + " dbname=" + std::string{database};
  }
  const auto path = url.find('/', scheme + 3);
  const auto query = url.find('?', scheme + 3);
  std::string out{url.substr(0, std::min(path, query))};
  out += '/';
  out += database;
  if (query != std::string_view::npos) out += url.substr(query);
  return out;
}

test_database& test_database::instance() {
  static test_database db;
  return db;
}

test_database::test_database() {
  const char* admin = std::getenv("CHORUS_DATABASE_URL");
  if (admin == nullptr || *admin == '\0') {
    throw std::runtime_error(
        "CHORUS_DATABASE_URL is not set: this test needs PostgreSQL. Run `scripts/services.sh start` and "
        "`eval \"$(scripts/services.sh env)\"`, or scripts/test.sh, which does both.");
  }
  admin_url_ = admin;
  // PostgreSQL identifiers stop at 63 bytes; the pid and the tags must survive, so the binary name is cut.
  prefix_ = std::string{prefix_base} + std::to_string(::getpid()) + "_" +
            sanitized(program_invocation_short_name).substr(0, 24);
  try {
    drop_abandoned(admin_url_);
    url_ = create(prefix_);
    storage::migrate(url_);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot prepare the test database on CHORUS_DATABASE_URL: " +
                             std::string{e.what()});
  }
}

test_database::~test_database() {
  for (const auto& name : databases_) {
    try {
      run_admin(admin_url_, "DROP DATABASE IF EXISTS \"" + name + "\" WITH (FORCE)");
    } catch (const std::exception& e) {
      std::fprintf(stderr, "test_database: cannot drop %s: %s\n", name.c_str(), e.what());
    }
  }
}

std::string test_database::create(std::string name) {
  run_admin(admin_url_, "DROP DATABASE IF EXISTS \"" + name + "\" WITH (FORCE)");
  run_admin(admin_url_, "CREATE DATABASE \"" + name + "\"");
  databases_.push_back(name);
  return with_database(admin_url_, name);
}

std::string test_database::create_empty(std::string_view tag) {
  return create(prefix_ + "_" + sanitized(tag).substr(0, 20));
}

void test_database::truncate_all() {
  pqxx::connection conn{url_};
  pqxx::work tx{conn};
  std::string tables;
  for (const auto& row : tx.exec("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' "
                                 "AND tablename <> 'schema_migrations'")) {
    tables += (tables.empty() ? "" : ", ") + row[0].as<std::string>();
  }
  if (!tables.empty()) tx.exec("TRUNCATE " + tables + " CASCADE");
  tx.commit();
}

}  // namespace chorus::testing
