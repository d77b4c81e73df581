// Runs a throwaway PostgreSQL cluster for failure tests: initdb, start, stop, clean up.
#include "tests/support/postgres_server.hpp"
#include "tests/support/free_port.hpp"

#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace chorus::testing {

namespace {

std::string find_bin() {
  namespace fs = std::filesystem;
  for (const auto& version : {"17", "16", "15", "14", "13"}) {
    fs::path p = fs::path("/usr/lib/postgresql") / version / "bin";
    if (fs::exists(p / "pg_ctl")) return p.string();
  }
  throw std::runtime_error("no PostgreSQL server binaries under /usr/lib/postgresql (install postgresql)");
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

postgres_server::postgres_server() : bin_(find_bin()), port_(free_port()) {
  char tmpl[] = "/tmp/chorus-pg-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  if (::geteuid() == 0) {
    const passwd* pg = ::getpwnam("postgres");
    if (pg == nullptr || ::chown(dir_.c_str(), pg->pw_uid, pg->pw_gid) != 0)
      throw std::runtime_error("cannot hand " + dir_ + " to the postgres user");
  }
  if (run(bin_ + "/initdb -D " + dir_ + "/data -U postgres -A trust -E UTF8 --no-sync >" + dir_ +
          "/initdb.log 2>&1") != 0)
    throw std::runtime_error("initdb failed:\n" + slurp(dir_ + "/initdb.log"));
  start();
}

postgres_server::~postgres_server() {
  if (running_) stop(true);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

int postgres_server::run(const std::string& command) const {
  // PostgreSQL refuses to run as root; the commands run as its own user then.
  std::string wrapped = ::geteuid() == 0 ? "runuser -u postgres -- sh -c '" + command + "'" : command;
  return std::system(wrapped.c_str());
}

void postgres_server::start() {
  std::string options =
      "-p " + std::to_string(port_) + " -k " + dir_ + " -c listen_addresses=127.0.0.1 -c fsync=off";
  if (run(bin_ + "/pg_ctl -D " + dir_ + "/data -l " + dir_ + "/server.log -w -t 30 -o \"" + options +
          "\" start >/dev/null") != 0)
    throw std::runtime_error("PostgreSQL did not start:\n" + slurp(dir_ + "/server.log"));
  running_ = true;
}

void postgres_server::stop(bool immediate) {
  run(bin_ + "/pg_ctl -D " + dir_ + "/data -w -t 30 -m " + (immediate ? "immediate" : "fast") +
      " stop >/dev/null");
  running_ = false;
}

std::string postgres_server::admin_url() const {
  return url("postgres");
}

std::string postgres_server::url(const std::string& name) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + name;
}

}  // namespace chorus::testing
