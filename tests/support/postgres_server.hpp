// A private PostgreSQL server for tests that stop and start the database under a running node.
#pragma once

#include <cstdint>
#include <string>

namespace chorus::testing {

/// initdb + pg_ctl in a temporary directory, on a free 127.0.0.1 port. Runs the server as the `postgres`
/// user when the test runs as root (PostgreSQL refuses root). Stops and removes everything on destruction.
class postgres_server {
 public:
  postgres_server();  ///< creates the cluster and starts it; throws std::runtime_error with the log on
                      ///< failure
  ~postgres_server();
  postgres_server(const postgres_server&) = delete;
  postgres_server& operator=(const postgres_server&) = delete;

  void start();
  /// Stops the server; `immediate` kills it without a checkpoint, like a crash.
  void stop(bool immediate = false);

  /// URL of the `postgres` database, for creating others.
  std::string admin_url() const;
  /// URL of database `name` on this server.
  std::string url(const std::string& name) const;
  std::uint16_t port() const { return port_; }

 private:
  int run(const std::string& command) const;
  std::string dir_;
  std::string bin_;
  std::uint16_t port_ = 0;
  bool running_ = false;
};

}  // namespace chorus::testing
