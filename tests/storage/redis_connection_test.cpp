// Tests for the shared Redis connection (label redis; CHORUS_REDIS_URL from scripts/services.sh): commands,
// pipelines, scripts, database selection, the backoff, logging each state change once, and coming back after
// a private Redis server restarts.
#include "storage/redis_connection.hpp"
#include "tests/support/free_port.hpp"
#include "tests/support/redis_probe.hpp"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using chorus::storage::redis_connection;
using chorus::storage::redis_script;
using chorus::storage::text_of;
using chorus::testing::free_port;
using chorus::testing::log_capture;
using chorus::testing::raw_redis;
using chorus::testing::redis_url;
using chorus::testing::unique;
using chorus::testing::unreachable_url;

redis_connection::options quick(std::string label = "conn test") {
  redis_connection::options o;
  o.label = std::move(label);
  o.min_backoff = 0ms;  // retry on every call
  return o;
}

class RedisConnection : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = redis_url();
    if (url_.empty()) GTEST_SKIP() << "CHORUS_REDIS_URL is not set (scripts/services.sh env)";
  }
  std::string url_;
};

TEST_F(RedisConnection, CommandsAndPipelinesAnswerInOrder) {
  redis_connection conn(url_, quick());
  const std::string key = unique("k");
  EXPECT_EQ(conn.generation(), 0u);  // lazy: nothing opened yet
  auto set = conn.command({"SET", key, "v", "PX", "60000"});
  ASSERT_TRUE(set);
  EXPECT_EQ(text_of(set->get()), "OK");
  EXPECT_TRUE(conn.reachable());
  EXPECT_EQ(conn.generation(), 1u);

  const std::vector<std::string> argv{"GET", key};
  auto get = conn.command(std::span<const std::string>(argv));
  ASSERT_TRUE(get);
  EXPECT_EQ(text_of(get->get()), "v");

  const std::vector<std::vector<std::string>> batch{
      {"INCR", key + ":n"}, {"INCR", key + ":n"}, {"PEXPIRE", key + ":n", "60000"}, {"GET", key + ":n"}};
  auto replies = conn.pipeline(batch);
  ASSERT_TRUE(replies);
  ASSERT_EQ(replies->size(), 4u);
  EXPECT_EQ((*replies)[0]->integer, 1);
  EXPECT_EQ((*replies)[1]->integer, 2);
  EXPECT_EQ(text_of((*replies)[3].get()), "2");
  auto none = conn.pipeline({});
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(conn.generation(), 1u);  // all on one connection
}

TEST_F(RedisConnection, AnErrorReplyIsNoAnswerAndTheNextCallReconnects) {
  log_capture logs;
  redis_connection conn(url_, quick());
  const std::string key = unique("list");
  ASSERT_TRUE(conn.command({"RPUSH", key, "x"}));
  EXPECT_FALSE(conn.command({"INCR", key}));  // WRONGTYPE
  EXPECT_FALSE(conn.reachable());
  EXPECT_EQ(logs.count("conn test: Redis at "), 1);
  EXPECT_EQ(logs.count("WRONGTYPE"), 1);
  // One bad reply in a pipeline spoils the lot (on a new connection: "is back", then "unreachable" again).
  const std::vector<std::vector<std::string>> batch{{"PING"}, {"INCR", key}};
  EXPECT_FALSE(conn.pipeline(batch));
  ASSERT_TRUE(conn.command({"DEL", key}));
  EXPECT_EQ(conn.generation(), 3u);
  EXPECT_EQ(logs.count("unreachable (WRONGTYPE"), 2);
  EXPECT_EQ(logs.count("is back"), 2);
}

TEST_F(RedisConnection, SelectsTheDatabaseOfTheUrlAndNamesItself) {
  redis_connection::options o = quick();
  o.client_name = unique("named");
  redis_connection conn(url_ + "/5", o);
  const std::string key = unique("db");
  ASSERT_TRUE(conn.command({"SET", key, "in-5", "PX", "60000"}));
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw.run({"EXISTS", key}), "0");  // not in db 0
  const std::string clients = raw.run({"CLIENT", "LIST"});
  const auto line = clients.find(" name=" + o.client_name + " ");
  ASSERT_NE(line, std::string::npos);
  EXPECT_NE(clients.find("db=5", line), std::string::npos);
  ASSERT_EQ(raw.run({"SELECT", "5"}), "OK");
  EXPECT_EQ(raw.run({"GET", key}), "in-5");
}

TEST_F(RedisConnection, ScriptsLoadOnceAndAgainAfterScriptFlush) {
  redis_connection conn(url_, quick());
  redis_script script("return redis.call('INCRBY', KEYS[1], ARGV[1])", 1);
  const std::string key = unique("script");
  auto r = conn.eval(script, {key, "5"});
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)->integer, 5);
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  ASSERT_EQ(raw.run({"SCRIPT", "FLUSH"}), "OK");
  const std::vector<std::vector<std::string>> calls{{key, "1"}, {key, "2"}};
  auto many = conn.eval_many(script, calls);
  ASSERT_TRUE(many);
  ASSERT_EQ(many->size(), 2u);
  EXPECT_EQ((*many)[0]->integer, 6);
  EXPECT_EQ((*many)[1]->integer, 8);
  EXPECT_TRUE(conn.reachable());
  raw.run({"DEL", key});
}

TEST_F(RedisConnection, AWrongPasswordIsLoggedAsUnreachable) {
  log_capture logs;
  const auto rest = url_.substr(url_.find("://") + 3);
  redis_connection conn("redis://:wrong-password@" + rest, quick("auth test"));
  EXPECT_FALSE(conn.command({"PING"}));
  EXPECT_FALSE(conn.command({"PING"}));
  EXPECT_EQ(logs.count("auth test: Redis at "), 1);
  EXPECT_EQ(logs.count("wrong-password"), 0);  // never the password
}

// --- without CHORUS_REDIS_URL -----------------------------------------------------------------------------

TEST(RedisConnectionOffline, BacksOffDoublingAndLogsOnce) {
  log_capture logs;
  std::int64_t now = 1000;
  redis_connection::options o;
  o.label = "backoff test";
  o.fallback = "doing without";
  o.min_backoff = 100ms;
  o.max_backoff = 400ms;
  o.now_ms = [&now] { return now; };
  redis_connection conn(unreachable_url, o);
  EXPECT_TRUE(conn.configured());
  EXPECT_EQ(conn.where(), "127.0.0.1:1");
  EXPECT_FALSE(conn.command({"PING"}));
  EXPECT_EQ(conn.next_attempt_ms(), 1100);
  now = 1099;
  EXPECT_FALSE(conn.connect());
  EXPECT_EQ(conn.next_attempt_ms(), 1100);  // no attempt while the backoff lasts
  now = 1100;
  EXPECT_FALSE(conn.connect());
  EXPECT_EQ(conn.next_attempt_ms(), 1300);  // 200 ms
  now = 1300;
  EXPECT_FALSE(conn.connect());
  EXPECT_EQ(conn.next_attempt_ms(), 1700);  // 400 ms
  now = 1700;
  EXPECT_FALSE(conn.connect());
  EXPECT_EQ(conn.next_attempt_ms(), 2100);  // capped at 400 ms
  EXPECT_EQ(logs.count("backoff test: Redis at 127.0.0.1:1 unreachable"), 1);
  EXPECT_EQ(logs.count("; doing without"), 1);
  EXPECT_EQ(conn.generation(), 0u);
}

TEST(RedisConnectionOffline, EmptyAndMalformedUrlsNeverConnect) {
  log_capture logs;
  redis_connection empty("", quick("empty"));
  EXPECT_FALSE(empty.configured());
  EXPECT_FALSE(empty.command({"PING"}));
  EXPECT_EQ(logs.count("empty"), 0);  // the owner says what no Redis means
  redis_connection bad("http://127.0.0.1:6379", quick("bad"));
  EXPECT_FALSE(bad.configured());
  EXPECT_FALSE(bad.command({"PING"}));
  EXPECT_EQ(logs.count("bad: redis_url is not redis://"), 1);
}

// --- a private Redis server that goes away and comes back -------------------------------------------------

/// redis-server on a port of its own, with a password, started and stopped by the test.
class private_redis {
 public:
  private_redis() : port_(free_port()) {
    char dir[] = "/tmp/chorus-redis-XXXXXX";
    if (::mkdtemp(dir) != nullptr) dir_ = dir;
  }
  ~private_redis() {
    stop();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  int port() const { return port_; }

  // Starts it and waits (bounded) until it answers.
  bool start() {
    if (dir_.empty() || port_ == 0) return false;
    const std::string cmd = "redis-server --port " + std::to_string(port_) +
                            " --bind 127.0.0.1 --save '' --appendonly no --requirepass secret --daemonize yes"
                            " --dir " +
                            dir_ + " --pidfile " + dir_ + "/redis.pid --logfile " + dir_ + "/redis.log";
    if (std::system(cmd.c_str()) != 0) return false;
    for (int i = 0; i < 500; ++i) {  // up to 5 s; a local start takes a few milliseconds
      if (answers()) return read_pid();
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  // SIGTERM to the server this object started, then waits (bounded) until its port refuses connections.
  // (Not until the pid is gone: the daemon's exit is reaped by whoever adopted it, which may take a while.)
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 500 && listening(); ++i) std::this_thread::sleep_for(10ms);
    pid_ = 0;
  }

 private:
  bool listening() const {
    redisContext* c = redisConnect("127.0.0.1", port_);
    const bool ok = c != nullptr && c->err == 0;
    if (c != nullptr) redisFree(c);
    return ok;
  }

  bool answers() const {
    redisContext* c = redisConnect("127.0.0.1", port_);
    bool ok = c != nullptr && c->err == 0;
    if (ok) {
      auto* r = static_cast<redisReply*>(redisCommand(c, "AUTH secret"));
      ok = r != nullptr && r->type == REDIS_REPLY_STATUS;
      if (r != nullptr) freeReplyObject(r);
    }
    if (c != nullptr) redisFree(c);
    return ok;
  }

  bool read_pid() {
    std::ifstream in(dir_ + "/redis.pid");
    return static_cast<bool>(in >> pid_) && pid_ > 0;
  }

  int port_;
  std::string dir_;
  pid_t pid_ = 0;
};

TEST(RedisConnectionRestart, AuthenticatesAndComesBackAfterRedisRestarts) {
  if (std::system("command -v redis-server >/dev/null 2>&1") != 0) GTEST_SKIP() << "no redis-server";
  private_redis server;
  ASSERT_TRUE(server.start());
  log_capture logs;
  redis_connection::options o = quick("restart test");
  o.resumed = "all good";
  redis_connection conn("redis://:secret@127.0.0.1:" + std::to_string(server.port()), o);
  ASSERT_TRUE(conn.command({"SET", "k", "1"}));  // AUTH worked
  EXPECT_EQ(conn.generation(), 1u);

  server.stop();
  EXPECT_FALSE(conn.command({"GET", "k"}));  // the broken connection
  EXPECT_FALSE(conn.command({"GET", "k"}));  // connection refused
  EXPECT_EQ(logs.count("unreachable"), 1);

  ASSERT_TRUE(server.start());
  auto r = conn.command({"SET", "k", "2"});
  ASSERT_TRUE(r);
  EXPECT_EQ(text_of(r->get()), "OK");
  EXPECT_EQ(conn.generation(), 2u);
  EXPECT_EQ(
      logs.count("restart test: Redis at 127.0.0.1:" + std::to_string(server.port()) + " is back; all good"),
      1);
  EXPECT_EQ(logs.count("unreachable"), 1);
  EXPECT_EQ(logs.count("secret"), 0);  // never the password
}

}  // namespace
