// A fresh, migrated PostgreSQL database for each test process, on the server CHORUS_DATABASE_URL names.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace chorus::testing {

/// This process's own database: created and migrated on first use, dropped at exit, so test binaries
/// (and ctest's one process per test case) never see each other's rows. The server comes from
/// CHORUS_DATABASE_URL (`eval "$(scripts/services.sh env)"`); when it is unset every use throws with a
/// message saying so, failing the test: a test that needs PostgreSQL must never pass by skipping. Databases
/// left by crashed test processes are dropped by the next one. Not thread-safe; use it from the test thread.
class test_database {
 public:
  /// Throws std::runtime_error if CHORUS_DATABASE_URL is unset or the database cannot be made.
  static test_database& instance();
  ~test_database();
  test_database(const test_database&) = delete;
  test_database& operator=(const test_database&) = delete;

  /// The migrated database of this process.
  const std::string& url() const { return url_; }
  /// CHORUS_DATABASE_URL itself: the server's maintenance database, for statements outside url().
  const std::string& admin_url() const { return admin_url_; }
  /// Empties every table the migrations made, keeping the schema and its version.
  void truncate_all();
  /// A further empty database that is not migrated, dropped at exit like the main one; `tag` is [a-z0-9_].
  std::string create_empty(std::string_view tag);

 private:
  test_database();
  std::string create(std::string name);

  std::string admin_url_;
  std::string prefix_;  // chorus_t_<pid>_<binary>
  std::string url_;
  std::vector<std::string> databases_;
};

/// `url` with its database name (the path of a postgresql:// URL) replaced by `database`.
std::string with_database(std::string_view url, std::string_view database);

}  // namespace chorus::testing
