// Runs chorusd as a child process: start, wait for its listening line, signal, reap, collect its output.
#include "tests/support/node_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <regex>
#include <stdexcept>

extern char** environ;

namespace chorus::testing {

namespace {

using clock = std::chrono::steady_clock;

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

node_process::node_process(const std::string& binary, std::vector<std::string> args,
                           std::map<std::string, std::string> env,
                           std::chrono::milliseconds startup_timeout) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");

  std::vector<std::string> argv_store{binary};
  argv_store.insert(argv_store.end(), args.begin(), args.end());
  argv_store.insert(argv_store.end(), {"--host", "127.0.0.1", "--port", "0"});
  std::vector<char*> argv;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    // The test decides the node's configuration; nothing leaks in from the caller's shell.
    if (entry.rfind("CHORUS_", 0) != 0) env_store.push_back(entry);
  }
  for (auto& [k, v] : env) env_store.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    ::execve(binary.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  out_fd_ = fds[0];
  ::fcntl(out_fd_, F_SETFL, O_NONBLOCK);

  static const std::regex listening(R"(listening on http://[^:\s]+:(\d+))");
  auto deadline = clock::now() + startup_timeout;
  while (clock::now() < deadline) {
    pump(50ms);
    std::smatch m;
    if (std::regex_search(output_, m, listening)) {
      port_ = static_cast<std::uint16_t>(std::stoi(m[1]));
      return;
    }
    if (wait_exit(0ms)) break;
  }
  std::string out = output_;
  if (!exit_status_) {
    ::kill(pid_, SIGKILL);
    wait_exit(5s);
  }
  ::close(out_fd_);
  out_fd_ = -1;
  throw std::runtime_error("chorusd did not start listening; its output:\n" + out);
}

node_process::~node_process() {
  if (pid_ > 0 && !exit_status_) {
    ::kill(pid_, SIGKILL);
    wait_exit(5s);
  }
  if (out_fd_ >= 0) ::close(out_fd_);
}

void node_process::signal(int sig) {
  if (pid_ > 0 && !exit_status_) ::kill(pid_, sig);
}

void node_process::pump(std::chrono::milliseconds timeout) {
  if (out_fd_ < 0) return;
  pollfd p{out_fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return;
  char buf[4096];
  for (;;) {
    auto n = ::read(out_fd_, buf, sizeof buf);
    if (n <= 0) break;
    output_.append(buf, static_cast<std::size_t>(n));
  }
}

std::optional<int> node_process::wait_exit(std::chrono::milliseconds timeout) {
  if (exit_status_) return exit_status_;
  auto deadline = clock::now() + timeout;
  for (;;) {
    int status = 0;
    auto r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_status_ = decode_status(status);
      pump(0ms);
      return exit_status_;
    }
    if (clock::now() >= deadline) return std::nullopt;
    // Drain output while waiting so the child never blocks on a full pipe.
    pump(10ms);
  }
}

std::string node_process::output() {
  pump(0ms);
  return output_;
}

}  // namespace chorus::testing
