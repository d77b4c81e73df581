// Starts a real chorusd process for integration tests and stops it, whatever the test's outcome.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace chorus::testing {

using namespace std::chrono_literals;

/// A chorusd child process listening on a free 127.0.0.1 port. The destructor kills it if still running.
class node_process {
 public:
  /// Starts `binary` with `args` (plus `--host 127.0.0.1 --port 0`) and `env` added to the environment,
  /// then waits until it logs the port it listens on. Throws std::runtime_error if it exits or times out.
  node_process(const std::string& binary, std::vector<std::string> args,
               std::map<std::string, std::string> env, std::chrono::milliseconds startup_timeout = 15s);
  ~node_process();
  node_process(const node_process&) = delete;
  node_process& operator=(const node_process&) = delete;

  std::uint16_t port() const { return port_; }
  int pid() const { return pid_; }

  /// Sends `signal` (e.g. SIGTERM).
  void signal(int sig);
  /// Waits for the process to exit; returns its exit status (or 128 + signal), or nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  /// Everything the process wrote to stderr/stdout so far.
  std::string output();

 private:
  void pump(std::chrono::milliseconds timeout);
  int pid_ = -1;
  int out_fd_ = -1;
  std::uint16_t port_ = 0;
  std::string output_;
  std::optional<int> exit_status_;
};

}  // namespace chorus::testing
