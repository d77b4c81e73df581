// Micro-benchmarks of room fan-out: the real room actor delivering to N local sessions, and encode-once.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "actors/protocol.hpp"
#include "actors/room_actor.hpp"

namespace chorus::actors {
namespace {

/// Where the sinks report to the benchmark thread. Sinks count locally and touch these atomics once
/// per round each, so the measurement does not turn every delivery into a contended write.
struct round_sync {
  std::atomic<std::uint64_t> target{0};  ///< message events every sink must have seen by the end of the round
  std::atomic<std::int64_t> pending{0};  ///< sinks that have not yet seen `target`
  std::atomic<bool> failed{false};

  void reached() {
    if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) pending.notify_all();
  }

  void fail() {
    failed.store(true);
    pending.store(0, std::memory_order_release);
    pending.notify_all();
  }

  void wait() {
    for (auto left = pending.load(std::memory_order_acquire); left > 0;
         left = pending.load(std::memory_order_acquire))
      pending.wait(left, std::memory_order_acquire);
  }
};

struct sink_state {
  std::uint64_t seen = 0;
  static inline const char* name = "bench_sink";
};

/// What a session does with a delivered frame, minus the socket: look at it and count it.
/// Membership events from the setup joins also arrive here; only chat messages count towards a round.
void count(sink_state& st, round_sync& sync, const outbound_event& ev) {
  if (!ev.bytes->starts_with(R"({"ev":"message")")) return;
  if (++st.seen == sync.target.load(std::memory_order_relaxed)) sync.reached();
}

event_sink::behavior_type counting_sink(event_sink::stateful_pointer<sink_state> self,
                                        std::shared_ptr<round_sync> sync) {
  return {
      [self, sync](atom::deliver, const outbound_event& ev) { count(self->state, *sync, ev); },
      [self, sync](atom::deliver, const std::vector<outbound_event>& events) {
        for (const auto& ev : events) count(self->state, *sync, ev);
      },
  };
}

/// The one member that talks: on `post, n` it sends n messages to the room, all in flight at once,
/// and counts its own message events like every other member. Dynamically typed because it must
/// also take the room's replies, which an event_sink cannot.
caf::behavior poster(caf::stateful_actor<sink_state>* self, room_actor room, std::string user,
                     std::shared_ptr<round_sync> sync) {
  return {
      [self, sync](atom::deliver, const outbound_event& ev) { count(self->state, *sync, ev); },
      [self, sync](atom::deliver, const std::vector<outbound_event>& events) {
        for (const auto& ev : events) count(self->state, *sync, ev);
      },
      [self, room, user, sync](atom::post, std::uint32_t n) {
        for (std::uint32_t i = 0; i < n; ++i) {
          self->request(room, caf::infinite, atom::post_v, post_request{user, "hey, lunch at noon?", {}})
              .then([](const protocol::chat_message&) {}, [sync](caf::error&) { sync->fail(); });
        }
      },
  };
}

caf::actor_system_config& configure(caf::actor_system_config& cfg, std::size_t threads) {
  cfg.set("scheduler.max-threads", threads);
  cfg.set("logger.file-verbosity", caf::atom("quiet"));
  cfg.set("logger.console-verbosity", caf::atom("quiet"));
  cfg.add_message_types<caf::id_block::chorus>();
  return cfg;
}

/// A writer that stores nothing and acknowledges at once, so the benchmark measures the room, not PostgreSQL
/// (the batch writer has its own numbers in BENCHMARKS.md).
batch_writer_actor::behavior_type instant_writer(batch_writer_actor::pointer, std::string /*label*/) {
  return {
      [](atom::store, const std::vector<storage::message_row>& rows) {
        return std::vector<store_result>(rows.size(), store_result{store_status::stored, {}});
      },
      [](atom::activate, const std::string&) { return storage::room_snapshot{}; },
      [](atom::flush) {},
  };
}

/// Args: members N, messages per round M, scheduler threads. One round = M posts, M×N deliveries.
void bm_room_fanout(benchmark::State& state) {
  const auto members = static_cast<std::size_t>(state.range(0));
  const auto messages = static_cast<std::uint32_t>(state.range(1));
  caf::actor_system_config cfg;
  caf::actor_system sys{configure(cfg, static_cast<std::size_t>(state.range(2)))};
  auto sync = std::make_shared<round_sync>();
  auto writer = sys.spawn(instant_writer, std::string("bench"));
  auto room_handle =
      sys.spawn(room, std::string("general"),
                room_services{writer, {}, {}, false, 256, 100, std::chrono::milliseconds(10000), {}});

  // Distinct users, as in a real room; their join announcements are not counted.
  std::vector<caf::actor> sessions;
  sessions.push_back(sys.spawn(poster, room_handle, std::string("user-0"), sync));
  for (std::size_t i = 1; i < members; ++i)
    sessions.push_back(caf::actor_cast<caf::actor>(sys.spawn(counting_sink, sync)));
  {
    caf::scoped_actor self{sys};
    for (std::size_t i = 0; i < members; ++i) {
      member_ref ref{"user-" + std::to_string(i), caf::actor_cast<event_sink>(sessions[i]), {}};
      self->request(room_handle, caf::infinite, atom::join_v, join_request{std::move(ref), false, 0})
          .receive([](const join_result&) {}, [&](caf::error&) { sync->failed = true; });
    }
  }

  for (auto _ : state) {
    if (sync->failed) {
      state.SkipWithError("a join or post failed");
      break;
    }
    sync->pending.store(static_cast<std::int64_t>(members));
    sync->target.fetch_add(messages);
    caf::anon_send(sessions[0], atom::post_v, messages);
    sync->wait();
  }

  const auto deliveries = static_cast<std::int64_t>(messages) * static_cast<std::int64_t>(members);
  state.SetItemsProcessed(state.iterations() * deliveries);
  state.counters["posts/s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * messages), benchmark::Counter::kIsRate);

  // Stop the room before its members: killed members would each make it announce a departure to all
  // the others, N² work the benchmark does not care about.
  {
    caf::scoped_actor self{sys};
    self->monitor(room_handle);
    self->send_exit(room_handle, caf::exit_reason::user_shutdown);
    self->receive([](const caf::down_msg&) {});
  }
  for (auto& s : sessions) caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(writer, caf::exit_reason::user_shutdown);
}

// The work happens on CAF's threads, not the benchmark's, so only wall time means anything.
BENCHMARK(bm_room_fanout)
    ->ArgNames({"members", "msgs", "threads"})
    ->Args({10, 1000, 1})
    ->Args({100, 1000, 1})
    ->Args({1000, 100, 1})
    ->Args({10, 1000, 2})
    ->Args({100, 1000, 2})
    ->Args({1000, 100, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---- serialise once, share the bytes ----

protocol::chat_message sample_message(std::size_t text_chars) {
  std::string text;
  while (text.size() < text_chars) text += "hey, lunch at noon? ";
  text.resize(text_chars);
  return protocol::chat_message{
      "0190d5c2-7a1b-7c3d-8e4f-5a6b7c8d9e0f", "general", 42, "alice", text, 1763780645123, "c-1712345678-42"};
}

/// What the room does: one encode, then one reference-count increment per recipient.
void bm_encode_once_share(benchmark::State& state) {
  const auto recipients = static_cast<std::size_t>(state.range(0));
  const auto msg = sample_message(static_cast<std::size_t>(state.range(1)));
  std::vector<frame_ptr> queues;
  queues.reserve(recipients);
  for (auto _ : state) {
    auto frame = std::make_shared<const std::string>(protocol::encode_message_event(msg));
    for (std::size_t i = 0; i < recipients; ++i) queues.push_back(frame);
    benchmark::DoNotOptimize(queues.data());
    queues.clear();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(recipients));
}

/// The habit the room avoids: every recipient gets its own encode and its own buffer.
void bm_encode_per_recipient(benchmark::State& state) {
  const auto recipients = static_cast<std::size_t>(state.range(0));
  const auto msg = sample_message(static_cast<std::size_t>(state.range(1)));
  std::vector<frame_ptr> queues;
  queues.reserve(recipients);
  for (auto _ : state) {
    for (std::size_t i = 0; i < recipients; ++i)
      queues.push_back(std::make_shared<const std::string>(protocol::encode_message_event(msg)));
    benchmark::DoNotOptimize(queues.data());
    queues.clear();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(recipients));
}

// Items are recipients served; the text sizes are a typical line and the 4000-character maximum.
BENCHMARK(bm_encode_once_share)->ArgNames({"recipients", "text"})->ArgsProduct({{10, 100, 1000}, {20, 4000}});
BENCHMARK(bm_encode_per_recipient)
    ->ArgNames({"recipients", "text"})
    ->ArgsProduct({{10, 100, 1000}, {20, 4000}});

}  // namespace
}  // namespace chorus::actors
