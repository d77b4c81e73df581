// chorusd: reads the configuration and wires config, actors, cluster and net into one running node.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <caf/all.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "actors/account_worker.hpp"
#include "actors/batch_writer.hpp"
#include "actors/history_reader.hpp"
#include "actors/jwt.hpp"
#include "actors/presence_actor.hpp"
#include "actors/send_limiter.hpp"
#include "actors/session_actor.hpp"
#include "cluster/membership.hpp"
#include "cluster/peering.hpp"
#include "cluster/room_directory.hpp"
#include "config/config.hpp"
#include "net/server.hpp"
#include "storage/message_store.hpp"
#include "storage/rate_limiter.hpp"

namespace {

using namespace chorus;

/// Before the connections close: leave the cluster, then hand every room over (each finishes the writes it
/// has taken, so their senders get their acks) before this node's sessions are told to go elsewhere.
void drain(caf::actor_system& system, const config::node_config& cfg, net::server& server,
           const actors::room_directory& directory, actors::membership_actor& membership) {
  server.stop_accepting();  // clients that reconnect now find another node
  if (membership) {
    // Out of the registry first; peers drop this node from placement at their next listing, so that the
    // rooms handed over below are claimed by them rather than sent back here.
    caf::anon_send_exit(membership, caf::exit_reason::user_shutdown);
    membership = nullptr;
    std::this_thread::sleep_for(std::chrono::milliseconds(cfg.node_heartbeat_ms + 100));
  }
  caf::scoped_actor self{system};
  self->request(directory, std::chrono::milliseconds(cfg.shutdown_timeout_ms), atom::handover_v)
      .receive([](std::uint64_t rooms) { spdlog::info("drained: {} rooms handed over", rooms); },
               [&](caf::error& err) { spdlog::warn("rooms not all handed over: {}", system.render(err)); });
}

int serve(const config::node_config& cfg) {
  auto log = spdlog::stderr_color_mt("chorus");
  spdlog::set_default_logger(log);
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");

  // Clustered: this node's entry in Redis, kept by the membership actor once the node listens. Nodes of two
  // builds cannot read each other's messages, so a node neither joins nor migrates the database beside live
  // nodes of another.
  std::shared_ptr<cluster::node_registry> registry;
  if (cfg.cluster_port != 0) {
    cluster::node_registry::options registry_options;
    registry_options.ttl = std::chrono::milliseconds(cfg.node_ttl_ms);
    registry = std::make_shared<cluster::node_registry>(cfg.redis_url, registry_options);
    cluster::node_info me;
    me.id = cfg.node_id;
    me.wire_version = actors::cluster_wire_version;
    if (auto others = cluster::incompatible_nodes(*registry, me); !others) {
      spdlog::warn(
          "cluster: cannot list the live nodes to compare builds (Redis unavailable); peers of another "
          "build will be refused when they are seen");
    } else if (!others->empty()) {
      for (const auto& n : *others)
        spdlog::critical(
            "cluster: node {} at {}:{} is live with cluster wire version {}; this build speaks {}", n.id,
            n.host, n.client_port, n.wire_version, actors::cluster_wire_version);
      spdlog::critical(
          "cannot join a cluster running another build: stop its nodes first, then start the new build on "
          "every node (README, Cluster)");
      return 1;
    }
  }

  try {
    auto version = storage::migrate(cfg.database_url);
    spdlog::info("database schema at version {}", version);
  } catch (const std::exception& e) {
    spdlog::critical("cannot prepare the database: {}", e.what());
    return 1;
  }

  caf::actor_system_config caf_cfg;
  if (cfg.cluster_port != 0)
    cluster::configure_middleman(caf_cfg, cfg);  // the middleman, its peer timeouts and the message types
  else
    caf_cfg.add_message_types<caf::id_block::chorus>();
  if (cfg.actor_threads > 0)
    caf_cfg.set("scheduler.max-threads", static_cast<std::size_t>(cfg.actor_threads));
  // An idle actor thread spins briefly, polls with up to 500 sleeps of 50 us (to steal work from the other
  // threads), then waits on its condition variable until work is enqueued. A lone thread has nobody to steal
  // from, and each sleep is a context switch, on a VM a dear one (a 50 us sleep took 143 us here): with
  // thousands of quiet connections, where the thread idles between most messages, the node needed 10-20 %
  // less CPU at 5,000-8,000 durable sends/s without them (BENCHMARKS.md, durable sends).
  if (cfg.actor_threads == 1) caf_cfg.set("work-stealing.moderate-poll-attempts", std::size_t{0});
  // The actor system goes before the server is destroyed: sessions hold sockets that belong to the
  // server's io_context, so every actor must be gone before it is (see the end of this function).
  auto system = std::make_unique<caf::actor_system>(caf_cfg);

  auto counters = std::make_shared<actors::node_counters>();
  // Writers and the reader block on PostgreSQL, so each gets a thread of its own (detached).
  const actors::batch_settings batching{.max_rows = cfg.batch_max_rows,
                                        .max_delay = std::chrono::milliseconds(cfg.batch_max_delay_ms),
                                        .tail_limit = cfg.tail_cache_size,
                                        .max_backoff = std::chrono::milliseconds(2000),
                                        .node_id = cfg.node_id,
                                        .slow_commit = std::chrono::milliseconds(cfg.slow_commit_ms),
                                        .counters = counters};
  std::vector<actors::batch_writer_actor> writers;
  for (std::uint32_t i = 0; i < cfg.writer_count; ++i)
    writers.push_back(system->spawn<caf::detached>(actors::batch_writer, cfg.database_url, batching));
  auto reader = system->spawn<caf::detached>(actors::history_reader, cfg.database_url);
  auto presence = actors::spawn_presence(*system, cfg);  // cluster-wide through Redis when configured
  // Rooms load their access rules through an account worker of their own, so that a room activating never
  // waits behind the password hashing of logins. It serves no HTTP, so it needs no directory to notify.
  auto api_limits = std::make_shared<storage::rate_limiter>(cfg.redis_url);
  auto room_accounts =
      system->spawn<caf::detached>(actors::account_worker, cfg, actors::room_directory{}, api_limits);
  actors::room_services room_services{{},
                                      reader,
                                      room_accounts,
                                      cfg.dev_mode == 1,
                                      cfg.tail_cache_size,
                                      cfg.history_limit,
                                      std::chrono::milliseconds(cfg.request_timeout_ms),
                                      counters,
                                      cfg.member_events_limit,
                                      std::chrono::milliseconds(cfg.shed_after_ms)};
  auto directory = system->spawn(cluster::room_directory, cfg.node_id, cfg.cluster_port != 0, writers,
                                 room_services, std::chrono::milliseconds(cfg.node_heartbeat_ms));
  // The HTTP API: workers block on PostgreSQL, Redis and password hashing, so each gets a thread (detached).
  std::vector<actors::account_worker_actor> account_workers;
  for (std::uint32_t i = 0; i < cfg.api_workers; ++i)
    account_workers.push_back(
        system->spawn<caf::detached>(actors::account_worker, cfg, directory, api_limits));
  actors::actor_http_handler api(*system, account_workers, std::chrono::milliseconds(cfg.request_timeout_ms));
  // Message rates per user, shared by every node through Redis by an actor that blocks on it (hence a thread
  // of its own). Without Redis the counts are this node's, and the sessions take them themselves.
  actors::send_limits sends;
  sends.shape = {static_cast<double>(cfg.sends_per_second), static_cast<double>(cfg.sends_burst)};
  if (cfg.redis_url.empty())
    sends.local = std::make_shared<storage::rate_limiter>(std::string{});
  else
    sends.shared = system->spawn<caf::detached>(actors::send_limiter, cfg.redis_url, sends.shape);
  // Clustered (cluster_port set): this node's actor for its peers (it also relays rooms' events to the
  // sessions here), published once the node listens, and its registration in Redis.
  actors::node_actor node;
  actors::membership_actor membership;
  auto incarnation = cluster::new_incarnation();
  if (cfg.cluster_port != 0)
    node = system->spawn(cluster::node, actors::node_hello{cfg.node_id, incarnation}, directory);
  auto stop_actors = [&] {
    caf::anon_send_exit(membership, caf::exit_reason::user_shutdown);  // leaves the registry at once
    membership = nullptr;
    caf::anon_send_exit(node, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(sends.shared, caf::exit_reason::user_shutdown);
    sends.shared = nullptr;
    for (auto& w : account_workers) caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
    account_workers.clear();
    caf::anon_send_exit(room_accounts, caf::exit_reason::user_shutdown);
    room_accounts = nullptr;
    room_services = {};
    api.drop_workers();
    caf::anon_send_exit(directory, caf::exit_reason::user_shutdown);
    // With a redis_url it is detached, so it ends only once this handle is gone too (see below); as it ends
    // it takes this node's users out of Redis.
    caf::anon_send_exit(presence, caf::exit_reason::user_shutdown);
    presence = nullptr;
    caf::anon_send_exit(reader, caf::exit_reason::user_shutdown);
    for (auto& w : writers) caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
    // A detached actor's thread ends only once the last handle to it is gone: drop ours.
    writers.clear();
    reader = nullptr;
  };
  actors::actor_session_factory sessions(
      *system, actors::make_session_context(
                   directory, presence, sends,
                   cfg.dev_mode == 1 ? actors::account_worker_actor{} : room_accounts, cfg, node, counters));
  net::server server(cfg, sessions, &api, [counters] { return actors::metrics_text(*counters); });

  std::uint16_t port = 0;
  try {
    port = server.start();
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    stop_actors();
    return 1;
  }
  spdlog::info("node {} listening on http://{}:{} (WebSocket at ws://{}:{}/ws)", cfg.node_id, cfg.host, port,
               cfg.host, port);
  if (cfg.cluster_port != 0) {
    auto cluster_port = cluster::publish_node(*system, node, cfg.cluster_port, cfg.host);
    if (!cluster_port) {
      spdlog::critical("cannot publish the node actor on {}:{}", cfg.host, cfg.cluster_port);
      server.stop();
      sessions.close();
      stop_actors();
      return 1;
    }
    auto started_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
    membership = system->spawn<caf::detached>(
        cluster::membership, registry,
        cluster::node_info{cfg.node_id, incarnation, cfg.host, port, *cluster_port, started_ms,
                           actors::cluster_wire_version},
        std::chrono::milliseconds(cfg.node_heartbeat_ms), directory, counters,
        cluster::membership_hooks{
            [&server] { server.request_shutdown(); },  // chorusctl drain: the same way out as SIGTERM
            [&server] {
              auto n = server.restart_sessions();
              spdlog::warn(
                  "cluster: closed {} connections with 1012 (their clients resume elsewhere or here)", n);
            }});
  }

  server.wait_for_signal();
  drain(*system, cfg, server, directory, membership);
  spdlog::info("shutting down: closing connections (up to {} ms)", cfg.shutdown_timeout_ms);
  auto cut = server.stop();
  if (cut > 0) spdlog::warn("{} connections did not close in time and were cut off", cut);
  sessions.close();
  // Sessions go first: as they end they tell presence and their rooms, which must still be there to answer
  // (a request that reaches an actor as it stops may go unanswered until its timeout).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(cfg.request_timeout_ms);
  while (counters->connections.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop_actors();
  system.reset();  // waits for every actor, sessions included, to finish
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  config::invocation inv;
  try {
    inv = config::parse_invocation(argc, argv, config::process_env());
  } catch (const config::config_error& e) {
    std::fprintf(stderr, "chorusd: %s\n(chorusd --help lists every key)\n", e.what());
    return 2;
  }
  switch (inv.what) {
    case config::command::help:
      std::fputs(config::help_text().c_str(), stdout);
      return 0;
    case config::command::print_config:
      std::fputs(config::render_toml(inv.cfg).c_str(), stdout);
      return 0;
    case config::command::token: {
      // A token for any name, with no account behind it: only for development and load tests.
      if (inv.cfg.dev_mode == 0) {
        std::fputs(
            "chorusd: token: refused: minting tokens needs dev_mode = 1 (development only); users log in "
            "with POST /api/v1/auth/login\n",
            stderr);
        return 2;
      }
      auto now = std::chrono::duration_cast<std::chrono::seconds>(
          std::chrono::system_clock::now().time_since_epoch());
      if (!actors::jwt::valid_user_id(inv.token_user)) {
        std::fprintf(stderr, "chorusd: token: '%s' is not a valid user id\n", inv.token_user.c_str());
        return 2;
      }
      std::printf(
          "%s\n",
          actors::jwt::mint(inv.cfg.jwt_secret, inv.token_user, now.count(), inv.token_ttl_seconds).c_str());
      return 0;
    }
    case config::command::serve:
      return serve(inv.cfg);
  }
  return 0;
}
