// Tests for reading, checking, documenting and printing the node configuration from file, environment and
// flags.
#include "config/config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace chorus::config;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string secret = "0123456789abcdef0123456789abcdef-secret";  // 39 bytes

const std::string database = "postgresql://chorus@127.0.0.1:5432/chorus";

// Every serving node needs a database; tests about other keys get one from the environment unless they
// set it themselves.
invocation parse(const std::vector<std::string>& args, environment env = {}) {
  bool flagged =
      std::ranges::any_of(args, [](const std::string& a) { return a.rfind("--database_url", 0) == 0; });
  if (!flagged) env.try_emplace("CHORUS_DATABASE_URL", database);
  std::vector<const char*> argv{"chorusd"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  return parse_invocation(static_cast<int>(argv.size()), argv.data(), env);
}

std::string joined(const std::vector<std::string>& args) {
  std::string out;
  for (const std::string& a : args) out += " " + a;
  return out;
}

// The config_error message, or a test failure when parsing succeeds or throws something else.
std::string parse_error(const std::vector<std::string>& args, const environment& env = {}) {
  try {
    parse(args, env);
  } catch (const config_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no config_error for chorusd" << joined(args);
  return {};
}

std::string validate_error(const node_config& cfg) {
  try {
    validate(cfg);
  } catch (const config_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "validate accepted the config";
  return {};
}

node_config with_secret() {
  node_config cfg;
  cfg.jwt_secret = secret;
  cfg.database_url = database;
  return cfg;
}

void expect_same(const node_config& a, const node_config& b) {
  EXPECT_EQ(a.host, b.host);
  EXPECT_EQ(a.port, b.port);
  EXPECT_EQ(a.node_id, b.node_id);
  EXPECT_EQ(a.log_level, b.log_level);
  EXPECT_EQ(a.jwt_secret, b.jwt_secret);
  EXPECT_EQ(a.io_threads, b.io_threads);
  EXPECT_EQ(a.actor_threads, b.actor_threads);
  EXPECT_EQ(a.max_frame_bytes, b.max_frame_bytes);
  EXPECT_EQ(a.max_message_chars, b.max_message_chars);
  EXPECT_EQ(a.send_queue_limit, b.send_queue_limit);
  EXPECT_EQ(a.idle_timeout_ms, b.idle_timeout_ms);
  EXPECT_EQ(a.auth_timeout_ms, b.auth_timeout_ms);
  EXPECT_EQ(a.ops_per_second, b.ops_per_second);
  EXPECT_EQ(a.ops_burst, b.ops_burst);
  EXPECT_EQ(a.shutdown_timeout_ms, b.shutdown_timeout_ms);
  EXPECT_EQ(a.max_connections, b.max_connections);
  EXPECT_EQ(a.request_timeout_ms, b.request_timeout_ms);
  EXPECT_EQ(a.receive_queue_limit, b.receive_queue_limit);
  EXPECT_EQ(a.shed_after_ms, b.shed_after_ms);
  EXPECT_EQ(a.database_url, b.database_url);
  EXPECT_EQ(a.writer_count, b.writer_count);
  EXPECT_EQ(a.batch_max_rows, b.batch_max_rows);
  EXPECT_EQ(a.batch_max_delay_ms, b.batch_max_delay_ms);
  EXPECT_EQ(a.slow_commit_ms, b.slow_commit_ms);
  EXPECT_EQ(a.history_limit, b.history_limit);
  EXPECT_EQ(a.tail_cache_size, b.tail_cache_size);
  EXPECT_EQ(a.member_events_limit, b.member_events_limit);
  EXPECT_EQ(a.redis_url, b.redis_url);
  EXPECT_EQ(a.dev_mode, b.dev_mode);
  EXPECT_EQ(a.access_token_ttl_s, b.access_token_ttl_s);
  EXPECT_EQ(a.refresh_token_ttl_s, b.refresh_token_ttl_s);
  EXPECT_EQ(a.max_body_bytes, b.max_body_bytes);
  EXPECT_EQ(a.api_workers, b.api_workers);
  EXPECT_EQ(a.login_attempts_per_minute, b.login_attempts_per_minute);
  EXPECT_EQ(a.login_lockout_failures, b.login_lockout_failures);
  EXPECT_EQ(a.login_lockout_s, b.login_lockout_s);
  EXPECT_EQ(a.registrations_per_hour, b.registrations_per_hour);
  EXPECT_EQ(a.api_requests_per_second, b.api_requests_per_second);
  EXPECT_EQ(a.api_burst, b.api_burst);
  EXPECT_EQ(a.sends_per_second, b.sends_per_second);
  EXPECT_EQ(a.sends_burst, b.sends_burst);
  EXPECT_EQ(a.cluster_port, b.cluster_port);
  EXPECT_EQ(a.node_ttl_ms, b.node_ttl_ms);
  EXPECT_EQ(a.node_heartbeat_ms, b.node_heartbeat_ms);
  EXPECT_EQ(a.peer_heartbeat_ms, b.peer_heartbeat_ms);
  EXPECT_EQ(a.peer_timeout_ms, b.peer_timeout_ms);
}

// Written out here rather than derived from config.cpp, so a changed default or a dropped key fails a test.
const std::vector<std::pair<std::string, std::string>> documented_defaults{
    {"host", "\"127.0.0.1\""},
    {"port", "8080"},
    {"node_id", "\"node-1\""},
    {"log_level", "\"info\""},
    {"jwt_secret", "(none)"},
    {"io_threads", "1"},
    {"actor_threads", "0"},
    {"max_frame_bytes", "65536"},
    {"max_message_chars", "4000"},
    {"send_queue_limit", "1024"},
    {"receive_queue_limit", "64"},
    {"idle_timeout_ms", "30000"},
    {"auth_timeout_ms", "10000"},
    {"ops_per_second", "20"},
    {"ops_burst", "50"},
    {"shutdown_timeout_ms", "5000"},
    {"max_connections", "20000"},
    {"request_timeout_ms", "5000"},
    {"shed_after_ms", "2000"},
    {"database_url", "(none)"},
    {"writer_count", "2"},
    {"batch_max_rows", "4000"},
    {"batch_max_delay_ms", "2"},
    {"slow_commit_ms", "250"},
    {"history_limit", "100"},
    {"tail_cache_size", "256"},
    {"member_events_limit", "1000"},
    {"redis_url", "\"\""},
    {"dev_mode", "0"},
    {"access_token_ttl_s", "900"},
    {"refresh_token_ttl_s", "2592000"},
    {"max_body_bytes", "65536"},
    {"api_workers", "2"},
    {"login_attempts_per_minute", "10"},
    {"login_lockout_failures", "5"},
    {"login_lockout_s", "300"},
    {"registrations_per_hour", "20"},
    {"api_requests_per_second", "20"},
    {"api_burst", "40"},
    {"sends_per_second", "10"},
    {"sends_burst", "30"},
    {"cluster_port", "0"},
    {"node_ttl_ms", "3000"},
    {"node_heartbeat_ms", "1000"},
    {"peer_heartbeat_ms", "500"},
    {"peer_timeout_ms", "2000"},
};

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  return s;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> words_of(const std::string& line) {
  std::vector<std::string> words;
  std::istringstream in(line);
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

/// A fresh directory per test for config files, removed afterwards.
class ConfigFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    dir_ = std::filesystem::temp_directory_path() /
           ("chorus-config-test-" + std::to_string(::getpid()) + "-" + std::to_string(random()));
    ASSERT_TRUE(std::filesystem::create_directory(dir_));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    std::filesystem::path path = dir_ / name;
    std::ofstream(path, std::ios::binary) << text;
    return path.string();
  }

  std::filesystem::path dir_;
};

// --- defaults and validation
// ---------------------------------------------------------------------------------

TEST(Config, DefaultsAreValidOnceASecretIsSet) {
  EXPECT_NO_THROW(validate(with_secret()));
  EXPECT_THAT(validate_error(node_config{}), HasSubstr("jwt_secret"));
}

TEST(Config, NoArgumentsServeWithDefaults) {
  invocation inv = parse({}, {{"CHORUS_JWT_SECRET", secret}});
  EXPECT_EQ(inv.what, command::serve);
  expect_same(inv.cfg, with_secret());
}

TEST(Config, MissingSecretSaysHowToSetIt) {
  std::string message = parse_error({});
  EXPECT_THAT(message, AllOf(HasSubstr("jwt_secret"), HasSubstr("32 bytes"), HasSubstr("config file"),
                             HasSubstr("CHORUS_JWT_SECRET"), HasSubstr("--jwt_secret")));
  message = parse_error({"--jwt_secret", "too-short"});
  EXPECT_THAT(message, AllOf(HasSubstr("jwt_secret"), HasSubstr("9 bytes"), Not(HasSubstr("too-short"))));
}

TEST(Config, SecretOfExactly32BytesIsEnough) {
  node_config cfg = with_secret();
  cfg.jwt_secret = std::string(32, 'k');
  EXPECT_NO_THROW(validate(cfg));
  cfg.jwt_secret = std::string(31, 'k');
  EXPECT_THAT(validate_error(cfg), HasSubstr("jwt_secret"));
}

struct rule_case {
  std::string key;
  std::function<void(node_config&)> change;
};

class ValidateRule : public ::testing::TestWithParam<rule_case> {};

TEST_P(ValidateRule, NamesTheKey) {
  node_config cfg = with_secret();
  GetParam().change(cfg);
  std::string message = validate_error(cfg);
  EXPECT_THAT(message, HasSubstr(GetParam().key + ": "));
  EXPECT_THAT(message, HasSubstr("CHORUS_" + upper(GetParam().key)));
}

INSTANTIATE_TEST_SUITE_P(
    Config, ValidateRule,
    ::testing::Values(rule_case{"host", [](node_config& c) { c.host = ""; }},
                      rule_case{"log_level", [](node_config& c) { c.log_level = "loud"; }},
                      rule_case{"redis_url", [](node_config& c) { c.redis_url = "http://127.0.0.1:6379"; }},
                      rule_case{"node_ttl_ms", [](node_config& c) { c.node_ttl_ms = c.node_heartbeat_ms; }},
                      rule_case{"cluster_port", [](node_config& c) { c.cluster_port = 7001; }},
                      rule_case{"log_level", [](node_config& c) { c.log_level = "INFO"; }},
                      rule_case{"io_threads", [](node_config& c) { c.io_threads = 0; }},
                      rule_case{"io_threads", [](node_config& c) { c.io_threads = 65; }},
                      rule_case{"actor_threads", [](node_config& c) { c.actor_threads = 257; }},
                      rule_case{"max_frame_bytes", [](node_config& c) { c.max_frame_bytes = 1023; }},
                      rule_case{"max_frame_bytes",
                                [](node_config& c) {
                                  c.max_frame_bytes = 16777217;
                                  c.max_message_chars = 1;
                                }},
                      rule_case{"max_message_chars", [](node_config& c) { c.max_message_chars = 0; }},
                      rule_case{"max_message_chars",
                                [](node_config& c) {
                                  c.max_frame_bytes = 2048;
                                  c.max_message_chars = 2049;
                                }},
                      rule_case{"send_queue_limit", [](node_config& c) { c.send_queue_limit = 15; }},
                      rule_case{"send_queue_limit", [](node_config& c) { c.send_queue_limit = 1000001; }},
                      rule_case{"idle_timeout_ms", [](node_config& c) { c.idle_timeout_ms = 999; }},
                      rule_case{"idle_timeout_ms", [](node_config& c) { c.idle_timeout_ms = 3600001; }},
                      rule_case{"auth_timeout_ms", [](node_config& c) { c.auth_timeout_ms = 99; }},
                      rule_case{"auth_timeout_ms", [](node_config& c) { c.auth_timeout_ms = 600001; }},
                      rule_case{"ops_per_second", [](node_config& c) { c.ops_per_second = 0; }},
                      rule_case{"ops_burst", [](node_config& c) { c.ops_burst = 0; }},
                      rule_case{"shutdown_timeout_ms", [](node_config& c) { c.shutdown_timeout_ms = 99; }},
                      rule_case{"shutdown_timeout_ms",
                                [](node_config& c) { c.shutdown_timeout_ms = 600001; }},
                      rule_case{"max_connections", [](node_config& c) { c.max_connections = 0; }},
                      rule_case{"max_connections", [](node_config& c) { c.max_connections = 10000001; }},
                      rule_case{"node_id", [](node_config& c) { c.node_id = ""; }},
                      rule_case{"node_id", [](node_config& c) { c.node_id = "-leading-dash"; }},
                      rule_case{"node_id", [](node_config& c) { c.node_id = "has space"; }},
                      rule_case{"node_id", [](node_config& c) { c.node_id = "slash/no"; }},
                      rule_case{"node_id", [](node_config& c) { c.node_id = std::string(65, 'n'); }},
                      rule_case{"jwt_secret", [](node_config& c) { c.jwt_secret = ""; }},
                      rule_case{"database_url", [](node_config& c) { c.database_url = ""; }},
                      rule_case{"writer_count", [](node_config& c) { c.writer_count = 0; }},
                      rule_case{"batch_max_rows", [](node_config& c) { c.batch_max_rows = 0; }},
                      rule_case{"slow_commit_ms", [](node_config& c) { c.slow_commit_ms = 600001; }},
                      rule_case{"history_limit", [](node_config& c) { c.history_limit = 1001; }}));

TEST(Config, BoundaryValuesAreAccepted) {
  node_config cfg = with_secret();
  cfg.port = 0;
  cfg.actor_threads = 0;
  cfg.io_threads = 64;
  cfg.node_id = "A" + std::string(63, '.');
  cfg.log_level = "off";
  cfg.max_frame_bytes = 1024;
  cfg.max_message_chars = 1024;
  cfg.send_queue_limit = 16;
  cfg.idle_timeout_ms = 3600000;
  cfg.auth_timeout_ms = 100;
  cfg.ops_per_second = 4294967295u;
  cfg.ops_burst = 1;
  cfg.shutdown_timeout_ms = 600000;
  cfg.max_connections = 10000000;
  cfg.slow_commit_ms = 0;  // never logs
  EXPECT_NO_THROW(validate(cfg));
  cfg.slow_commit_ms = 600000;
  EXPECT_NO_THROW(validate(cfg));
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    cfg.log_level = level;
    EXPECT_NO_THROW(validate(cfg)) << level;
  }
}

// --- sources and precedence
// ----------------------------------------------------------------------------------

TEST_F(ConfigFile, FileThenEnvironmentThenFlags) {
  std::string path = write("chorus.toml",
                           "# a comment\n"
                           "port = 1000\n"
                           "node_id = \"from-file\"\n"
                           "io_threads = 2\n"
                           "log_level = \"debug\"\n"
                           "jwt_secret = \"" +
                               secret + "\"\n");
  environment env{{"CHORUS_PORT", "2000"}, {"CHORUS_NODE_ID", "from-env"}, {"PATH", "/usr/bin"}};
  invocation inv = parse({"--config", path, "--port", "3000"}, env);
  EXPECT_EQ(inv.what, command::serve);
  EXPECT_EQ(inv.cfg.port, 3000);           // flag beats environment and file
  EXPECT_EQ(inv.cfg.node_id, "from-env");  // environment beats file
  EXPECT_EQ(inv.cfg.io_threads, 2u);       // file beats default
  EXPECT_EQ(inv.cfg.log_level, "debug");
  EXPECT_EQ(inv.cfg.jwt_secret, secret);
  EXPECT_EQ(inv.cfg.host, "127.0.0.1");  // untouched keys keep their defaults
  EXPECT_EQ(inv.cfg.max_frame_bytes, 65536u);
}

TEST_F(ConfigFile, ConfigVariableNamesTheFileAndTheFlagOverridesIt) {
  std::string from_env = write("env.toml", "node_id = \"env-file\"\n");
  std::string from_flag = write("flag.toml", "node_id = \"flag-file\"\n");
  environment env{{"CHORUS_CONFIG", from_env}, {"CHORUS_JWT_SECRET", secret}};
  EXPECT_EQ(parse({}, env).cfg.node_id, "env-file");
  EXPECT_EQ(parse({"--config", from_flag}, env).cfg.node_id, "flag-file");
  EXPECT_EQ(parse({"--config=" + from_flag}, env).cfg.node_id, "flag-file");
}

TEST(Config, EmptyConfigVariableMeansNoFile) {
  EXPECT_EQ(parse({}, {{"CHORUS_CONFIG", ""}, {"CHORUS_JWT_SECRET", secret}}).cfg.node_id, "node-1");
}

TEST(Config, EveryKeyCanBeSetByFlagAndByEnvironment) {
  std::vector<std::pair<std::string, std::string>> values{{"host", "0.0.0.0"},
                                                          {"port", "9001"},
                                                          {"node_id", "n2"},
                                                          {"log_level", "warn"},
                                                          {"jwt_secret", secret + "x"},
                                                          {"io_threads", "3"},
                                                          {"actor_threads", "5"},
                                                          {"max_frame_bytes", "2048"},
                                                          {"max_message_chars", "100"},
                                                          {"send_queue_limit", "64"},
                                                          {"receive_queue_limit", "8"},
                                                          {"idle_timeout_ms", "5000"},
                                                          {"auth_timeout_ms", "700"},
                                                          {"ops_per_second", "7"},
                                                          {"ops_burst", "9"},
                                                          {"shutdown_timeout_ms", "300"},
                                                          {"max_connections", "11"},
                                                          {"request_timeout_ms", "250"},
                                                          {"shed_after_ms", "200"},
                                                          {"database_url", database + "2"},
                                                          {"writer_count", "3"},
                                                          {"batch_max_rows", "10"},
                                                          {"batch_max_delay_ms", "7"},
                                                          {"slow_commit_ms", "900"},
                                                          {"history_limit", "20"},
                                                          {"tail_cache_size", "30"},
                                                          {"member_events_limit", "40"},
                                                          {"redis_url", "redis://127.0.0.1:1"},
                                                          {"dev_mode", "1"},
                                                          {"access_token_ttl_s", "60"},
                                                          {"refresh_token_ttl_s", "600"},
                                                          {"max_body_bytes", "4096"},
                                                          {"api_workers", "4"},
                                                          {"login_attempts_per_minute", "3"},
                                                          {"login_lockout_failures", "2"},
                                                          {"login_lockout_s", "9"},
                                                          {"registrations_per_hour", "8"},
                                                          {"api_requests_per_second", "6"},
                                                          {"api_burst", "12"},
                                                          {"sends_per_second", "4"},
                                                          {"sends_burst", "5"},
                                                          {"cluster_port", "7001"},
                                                          {"node_ttl_ms", "4000"},
                                                          {"node_heartbeat_ms", "700"},
                                                          {"peer_heartbeat_ms", "300"},
                                                          {"peer_timeout_ms", "1500"}};
  ASSERT_EQ(values.size(), documented_defaults.size());
  node_config want;
  want.host = "0.0.0.0";
  want.port = 9001;
  want.node_id = "n2";
  want.log_level = "warn";
  want.jwt_secret = secret + "x";
  want.io_threads = 3;
  want.actor_threads = 5;
  want.max_frame_bytes = 2048;
  want.max_message_chars = 100;
  want.send_queue_limit = 64;
  want.receive_queue_limit = 8;
  want.idle_timeout_ms = 5000;
  want.auth_timeout_ms = 700;
  want.ops_per_second = 7;
  want.ops_burst = 9;
  want.shutdown_timeout_ms = 300;
  want.max_connections = 11;
  want.request_timeout_ms = 250;
  want.shed_after_ms = 200;
  want.database_url = database + "2";
  want.writer_count = 3;
  want.batch_max_rows = 10;
  want.batch_max_delay_ms = 7;
  want.slow_commit_ms = 900;
  want.history_limit = 20;
  want.tail_cache_size = 30;
  want.member_events_limit = 40;
  want.redis_url = "redis://127.0.0.1:1";
  want.dev_mode = 1;
  want.access_token_ttl_s = 60;
  want.refresh_token_ttl_s = 600;
  want.max_body_bytes = 4096;
  want.api_workers = 4;
  want.login_attempts_per_minute = 3;
  want.login_lockout_failures = 2;
  want.login_lockout_s = 9;
  want.registrations_per_hour = 8;
  want.api_requests_per_second = 6;
  want.api_burst = 12;
  want.sends_per_second = 4;
  want.sends_burst = 5;
  want.cluster_port = 7001;
  want.node_ttl_ms = 4000;
  want.node_heartbeat_ms = 700;
  want.peer_heartbeat_ms = 300;
  want.peer_timeout_ms = 1500;

  std::vector<std::string> flags;
  environment env;
  for (const auto& [key, value] : values) {
    flags.push_back("--" + key);
    flags.push_back(value);
    env["CHORUS_" + upper(key)] = value;
  }
  expect_same(parse(flags).cfg, want);
  expect_same(parse({}, env).cfg, want);
}

TEST(Config, FlagEqualsFormAndLastFlagWins) {
  invocation inv = parse({"--jwt_secret=" + secret, "--port=1234", "--port", "4321"});
  EXPECT_EQ(inv.cfg.port, 4321);
  EXPECT_EQ(inv.cfg.jwt_secret, secret);
  // Only the first '=' separates, so a value may contain one; the node_id rule then rejects it.
  EXPECT_THAT(parse_error({"--jwt_secret=" + secret, "--node_id=a=b"}), HasSubstr("node_id"));
  EXPECT_EQ(parse({"--jwt_secret=" + secret, "--host=a=b"}).cfg.host, "a=b");
}

// --- errors name the key and the source
// ----------------------------------------------------------------------

TEST_F(ConfigFile, UnknownFileKeyNamesKeyFileAndLine) {
  std::string path = write("chorus.toml", "port = 1\n\nprot = 2\n");
  EXPECT_EQ(parse_error({"--config", path, "--jwt_secret", secret}),
            "unknown key 'prot' in " + path + " (line 3)");
}

TEST_F(ConfigFile, NestedTableIsAnUnknownKey) {
  std::string path = write("chorus.toml", "[server]\nport = 1\n");
  EXPECT_THAT(parse_error({"--config", path}), AllOf(HasSubstr("unknown key 'server'"), HasSubstr(path)));
}

TEST_F(ConfigFile, WrongTomlTypeNamesKeyFileAndLine) {
  struct bad {
    std::string toml;
    std::string got;
  };
  for (const bad& b : {bad{"port = \"8080\"", "a string"}, bad{"port = 80.5", "a floating-point number"},
                       bad{"port = true", "a boolean"}, bad{"host = 1", "an integer"},
                       bad{"host = [\"a\"]", "an array"}, bad{"io_threads = 1979-05-27", "a date"}}) {
    std::string path = write("chorus.toml", "\n" + b.toml + "\n");
    std::string message = parse_error({"--config", path, "--jwt_secret", secret});
    std::string key = b.toml.substr(0, b.toml.find(' '));
    EXPECT_THAT(message, AllOf(HasSubstr("'" + key + "'"), HasSubstr(path + " (line 2)"), HasSubstr(b.got)))
        << b.toml;
  }
}

TEST_F(ConfigFile, OutOfRangeFileNumbersAreRejected) {
  for (std::string toml : {"port = -1", "port = 65536", "io_threads = 65", "max_connections = 99999999999"}) {
    std::string path = write("chorus.toml", toml + "\n");
    std::string message = parse_error({"--config", path, "--jwt_secret", secret});
    EXPECT_THAT(message, AllOf(HasSubstr("'" + toml.substr(0, toml.find(' ')) + "'"), HasSubstr(path),
                               HasSubstr(toml.substr(toml.find('=') + 2))))
        << toml;
  }
  std::string path = write("ok.toml", "port = 65535\nactor_threads = 0\n");
  EXPECT_EQ(parse({"--config", path, "--jwt_secret", secret}).cfg.port, 65535);
}

TEST_F(ConfigFile, UnparsableFileNamesFileAndLine) {
  std::string path = write("chorus.toml", "port = 1\nhost = \"unterminated\n");
  EXPECT_THAT(parse_error({"--config", path}),
              AllOf(HasSubstr("cannot parse config file"), HasSubstr(path + " (line 2)")));
  path = write("dup.toml", "port = 1\nport = 2\n");
  EXPECT_THAT(parse_error({"--config", path}), AllOf(HasSubstr(path), HasSubstr("port")));
}

TEST_F(ConfigFile, UnreadableFileNamesThePath) {
  std::string missing = (dir_ / "missing.toml").string();
  EXPECT_THAT(parse_error({"--config", missing}),
              AllOf(HasSubstr("cannot open config file " + missing), HasSubstr("No such file")));
  EXPECT_THAT(parse_error({}, {{"CHORUS_CONFIG", missing}}), HasSubstr(missing));
  EXPECT_THAT(parse_error({"--config", dir_.string()}),
              AllOf(HasSubstr("config file " + dir_.string()), HasSubstr("directory")));
}

TEST(Config, UnknownFlagIsNamed) {
  EXPECT_THAT(parse_error({"--jwt_secret", secret, "--prot", "1"}), HasSubstr("--prot: unknown flag"));
  EXPECT_THAT(parse_error({"--max-frame-bytes", "2048"}), HasSubstr("--max-frame-bytes"));
  EXPECT_THAT(parse_error({"-p", "1"}), HasSubstr("-p: unknown flag"));
}

TEST(Config, UnknownEnvironmentVariableIsNamed) {
  environment env{{"CHORUS_JWT_SECRET", secret}, {"CHORUS_PROT", "1"}};
  EXPECT_THAT(parse_error({}, env), HasSubstr("CHORUS_PROT"));
  // Variables outside the CHORUS_ namespace, or only similar to it, are none of our business.
  environment unrelated{
      {"CHORUS_JWT_SECRET", secret}, {"HOME", "/root"}, {"chorus_port", "x"}, {"CHORUSPORT", "x"}};
  EXPECT_EQ(parse({}, unrelated).cfg.port, 8080);
}

TEST(Config, NonNumberInEnvironmentNamesVariableAndRange) {
  EXPECT_EQ(parse_error({}, {{"CHORUS_PORT", "abc"}}),
            "CHORUS_PORT: expected an integer 0..65535, got 'abc'");
  EXPECT_EQ(parse_error({}, {{"CHORUS_IO_THREADS", ""}}),
            "CHORUS_IO_THREADS: expected an integer 1..64, got ''");
}

TEST(Config, BadNumbersInFlagsNameTheFlag) {
  for (std::string bad :
       {"12abc", "-1", "+5", " 5", "5 ", "0x10", "1.5", "65536", "99999999999999999999999"}) {
    std::string message = parse_error({"--jwt_secret", secret, "--port", bad});
    EXPECT_EQ(message, "--port: expected an integer 0..65535, got '" + bad + "'") << bad;
  }
  EXPECT_THAT(parse_error({"--jwt_secret", secret, "--io_threads=65"}), HasSubstr("--io_threads: expected"));
  EXPECT_THAT(parse_error({"--jwt_secret", secret, "--max_connections", "4294967296"}),
              HasSubstr("--max_connections"));
}

TEST(Config, MissingFlagValueIsNamed) {
  EXPECT_EQ(parse_error({"--jwt_secret", secret, "--port"}), "--port: missing value");
  EXPECT_EQ(parse_error({"--host", "--jwt_secret", secret}), "--host: missing value");
  EXPECT_EQ(parse_error({"--config"}), "--config: missing value");
  EXPECT_EQ(parse_error({"--config="}), "--config: missing value");
}

TEST(Config, UnexpectedPositionalArgument) {
  EXPECT_THAT(parse_error({"serve", "--jwt_secret", secret}), HasSubstr("'serve'"));
  EXPECT_THAT(parse_error({"--jwt_secret", secret, "token"}),
              HasSubstr("'token'"));  // the command comes first
  EXPECT_THAT(parse_error({"token", "--user", "a", "--jwt_secret", secret, "extra"}), HasSubstr("'extra'"));
}

TEST(Config, FlagValuesMayLookLikeNegativeNumbers) {
  // A single dash does not end a value, so a negative number reaches the range check rather than "missing".
  EXPECT_THAT(parse_error({"--jwt_secret", secret, "--actor_threads", "-3"}), HasSubstr("got '-3'"));
}

// --- commands
// ------------------------------------------------------------------------------------------------

TEST(Config, HelpAnywhereSkipsEverythingElse) {
  EXPECT_EQ(parse({"--help"}).what, command::help);
  EXPECT_EQ(parse({"-h"}).what, command::help);
  EXPECT_EQ(parse({"token", "--help"}).what, command::help);
  // No secret, a bad value, an unknown flag, an unknown variable and a missing file: help still works.
  EXPECT_EQ(parse({"--port", "nope", "--bogus", "--config", "/nonexistent/chorus.toml", "-h"},
                  {{"CHORUS_BOGUS", "1"}})
                .what,
            command::help);
}

TEST(Config, PrintConfigValidates) {
  invocation inv = parse({"--print-config", "--port", "77"}, {{"CHORUS_JWT_SECRET", secret}});
  EXPECT_EQ(inv.what, command::print_config);
  EXPECT_EQ(inv.cfg.port, 77);
  EXPECT_THAT(parse_error({"--print-config"}), HasSubstr("jwt_secret"));
  EXPECT_THAT(parse_error({"--print-config=yes", "--jwt_secret", secret}), HasSubstr("--print-config"));
}

TEST(Config, TokenCommand) {
  invocation inv = parse({"token", "--user", "alice", "--jwt_secret", secret});
  EXPECT_EQ(inv.what, command::token);
  EXPECT_EQ(inv.token_user, "alice");
  EXPECT_EQ(inv.token_ttl_seconds, 3600u);
  EXPECT_EQ(inv.cfg.jwt_secret, secret);

  inv = parse({"token", "--ttl=60", "--user=bob", "--node_id", "n7"}, {{"CHORUS_JWT_SECRET", secret}});
  EXPECT_EQ(inv.token_user, "bob");
  EXPECT_EQ(inv.token_ttl_seconds, 60u);
  EXPECT_EQ(inv.cfg.node_id, "n7");
}

TEST(Config, TokenCommandErrors) {
  EXPECT_THAT(parse_error({"token", "--jwt_secret", secret}), HasSubstr("--user"));
  EXPECT_THAT(parse_error({"token", "--user=", "--jwt_secret", secret}), HasSubstr("--user"));
  EXPECT_THAT(parse_error({"token", "--user"}), HasSubstr("--user: missing value"));
  EXPECT_THAT(parse_error({"token", "--user", "a", "--ttl", "soon", "--jwt_secret", secret}),
              HasSubstr("--ttl"));
  EXPECT_THAT(parse_error({"token", "--user", "a", "--ttl", "0", "--jwt_secret", secret}),
              HasSubstr("--ttl"));
  EXPECT_THAT(parse_error({"token", "--user", "a"}), HasSubstr("jwt_secret"));  // needs the key to sign with
  EXPECT_THAT(parse_error({"--user", "a", "--jwt_secret", secret}), HasSubstr("--user"));
  EXPECT_THAT(parse_error({"--ttl", "5", "--jwt_secret", secret}), HasSubstr("--ttl"));
  EXPECT_THAT(parse_error({"token", "--user", "a", "--print-config", "--jwt_secret", secret}),
              HasSubstr("--print-config"));
}

// --- help and render
// -----------------------------------------------------------------------------------------

TEST(Config, HelpShowsUsageAndEveryKeyWithDefaultInAlignedColumns) {
  std::string help = help_text();
  EXPECT_THAT(help, HasSubstr("chorusd [--config FILE] [--KEY VALUE]..."));
  EXPECT_THAT(help, HasSubstr("chorusd token --user NAME [--ttl SECONDS]"));
  EXPECT_THAT(help, HasSubstr("chorusd --print-config"));
  EXPECT_THAT(help, HasSubstr("CHORUS_<KEY>"));

  std::vector<std::string> lines = lines_of(help);
  std::size_t default_column = std::string::npos;
  for (const auto& [key, def] : documented_defaults) {
    auto line = std::find_if(lines.begin(), lines.end(), [&](const std::string& l) {
      std::vector<std::string> w = words_of(l);
      return !w.empty() && w[0] == key;
    });
    ASSERT_NE(line, lines.end()) << key;
    std::vector<std::string> words = words_of(*line);
    ASSERT_GE(words.size(), 5u) << *line;
    EXPECT_EQ(words[1], key == "port" || key == "cluster_port"     ? "uint16"
                        : def.starts_with("\"") || def == "(none)" ? "string"
                                                                   : "uint32")
        << *line;
    EXPECT_EQ(words[2], def) << *line;
    EXPECT_THAT(*line, HasSubstr(" CHORUS_" + upper(key) + " "));
    std::size_t column = line->find(" " + def + " ");
    if (default_column == std::string::npos) default_column = column;
    EXPECT_EQ(column, default_column) << "misaligned: " << *line;
  }
  EXPECT_THAT(help, HasSubstr("trace|debug|info|warn|error|critical|off"));
  EXPECT_THAT(help, HasSubstr("1..max_frame_bytes"));
}

TEST(Config, RenderListsEveryKeyInOrderAndRedactsTheSecret) {
  std::vector<std::string> lines = lines_of(render_toml(with_secret()));
  ASSERT_EQ(lines.size(), documented_defaults.size());
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto& [key, def] = documented_defaults[i];
    std::string want = key == "jwt_secret" || key == "database_url" ? "\"<redacted>\"" : def;
    EXPECT_EQ(lines[i], key + " = " + want);
  }
  EXPECT_THAT(render_toml(node_config{}), HasSubstr("jwt_secret = \"\"\n"));
}

TEST_F(ConfigFile, RenderedConfigParsesBackToTheSameValues) {
  node_config cfg;
  cfg.host = "we\"ird\\host\t\x01\x7f\xc3\xa9";
  cfg.port = 0;
  cfg.node_id = "node_7.b-2";
  cfg.log_level = "critical";
  cfg.io_threads = 4;
  cfg.actor_threads = 256;
  cfg.max_frame_bytes = 16777216;
  cfg.max_message_chars = 16777216;
  cfg.send_queue_limit = 1000000;
  cfg.idle_timeout_ms = 1000;
  cfg.auth_timeout_ms = 600000;
  cfg.ops_per_second = 4294967295u;
  cfg.ops_burst = 1;
  cfg.shutdown_timeout_ms = 100;
  cfg.max_connections = 1;

  // Without a secret the rendering is complete, and the secret comes from a flag as an operator would pass
  // it.
  std::string path = write("rendered.toml", render_toml(cfg));
  invocation inv = parse({"--config", path, "--jwt_secret", secret});
  cfg.jwt_secret = secret;
  cfg.database_url = database;  // from the environment, which outranks the file's empty value
  expect_same(inv.cfg, cfg);

  // With a secret only the placeholder is printed; putting the secret back gives the same config again.
  std::string rendered = render_toml(cfg);
  EXPECT_THAT(rendered, Not(HasSubstr(secret)));
  std::string placeholder = "\"<redacted>\"";
  ASSERT_NE(rendered.find(placeholder), std::string::npos);
  rendered.replace(rendered.find(placeholder), placeholder.size(), "\"" + secret + "\"");
  path = write("restored.toml", rendered);
  expect_same(parse({"--config", path}).cfg, cfg);
}

// --- the real environment
// ------------------------------------------------------------------------------------

TEST(Config, ProcessEnvSnapshotsTheEnvironment) {
  ASSERT_EQ(::setenv("CHORUS_CONFIG_TEST_PROBE", "a=b=c", 1), 0);
  environment env = process_env();
  ::unsetenv("CHORUS_CONFIG_TEST_PROBE");
  ASSERT_TRUE(env.contains("CHORUS_CONFIG_TEST_PROBE"));
  EXPECT_EQ(env.at("CHORUS_CONFIG_TEST_PROBE"), "a=b=c");
  EXPECT_FALSE(process_env().contains("CHORUS_CONFIG_TEST_PROBE"));
}

}  // namespace

TEST(Config, TokenNeedsNoDatabaseButServingDoes) {
  std::vector<const char*> token{"chorusd", "token", "--user", "alice", "--jwt_secret", secret.c_str()};
  invocation inv = parse_invocation(static_cast<int>(token.size()), token.data(), environment{});
  EXPECT_EQ(inv.what, command::token);
  std::vector<const char*> serve{"chorusd", "--jwt_secret", secret.c_str()};
  try {
    parse_invocation(static_cast<int>(serve.size()), serve.data(), environment{});
    ADD_FAILURE() << "a node started without a database";
  } catch (const config_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("database_url"));
  }
}
