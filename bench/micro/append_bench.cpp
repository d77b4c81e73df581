// The durable write path alone: message_store::append against a real PostgreSQL, rows per second by batch
// size.
//
// Needs CHORUS_DATABASE_URL (bench/append.sh starts a throwaway PostgreSQL and sets it); the database is
// migrated and gets rooms of its own, named per run. Each iteration appends one batch spread over `rooms`
// rooms, each room's rows continuing its sequence, as writers do under load; the counters report rows per
// second and the time per batch (one commit with fsync).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "storage/message_store.hpp"

namespace {

namespace storage = chorus::storage;

/// Time-ordered like the room's ids (UUIDv7-shaped), so the primary key grows at its end as it does in a
/// node.
std::string uuid(std::uint64_t run, std::uint64_t n) {
  char buf[37];
  std::snprintf(buf, sizeof buf, "%08x-%04x-7%03x-8%03x-%012llx", static_cast<unsigned>(run >> 16),
                static_cast<unsigned>(run & 0xffff), static_cast<unsigned>((n >> 60) & 0xfff), 0u,
                static_cast<unsigned long long>(n & 0xffffffffffffull));
  return buf;
}

/// Args: rows per batch, rooms per batch, and 1 to send every batch by COPY or 0 to send it as one statement
/// (message_store's copy_from_rows).
void append_batches(benchmark::State& state) {
  const char* url = std::getenv("CHORUS_DATABASE_URL");
  if (url == nullptr) {
    state.SkipWithError("CHORUS_DATABASE_URL is not set (run bench/append.sh)");
    return;
  }
  storage::migrate(url);
  const std::size_t copy_from_rows = state.range(2) != 0 ? 1 : std::numeric_limits<std::size_t>::max();
  storage::message_store store{url, copy_from_rows};
  const auto batch = static_cast<std::size_t>(state.range(0));
  const auto room_count = static_cast<std::size_t>(state.range(1));
  std::mt19937_64 rng{std::random_device{}()};
  const std::uint64_t run = rng() & 0xffffffffffffull;
  const std::string prefix = "bench-" + std::to_string(run) + "-";
  std::vector<std::string> rooms;
  std::vector<std::uint64_t> last_seq(room_count, 0);
  std::vector<std::uint64_t> epoch(room_count, 0);
  for (std::size_t r = 0; r < room_count; ++r) {
    rooms.push_back(prefix + std::to_string(r));
    auto snap = store.activate(rooms.back(), 0, "bench");
    if (auto* s = std::get_if<storage::room_snapshot>(&snap)) {
      epoch[r] = s->epoch;
    } else {
      state.SkipWithError("cannot activate a room");
      return;
    }
  }
  const std::string text(100, 'x');
  std::uint64_t sent = 0;
  std::vector<storage::message_row> rows(batch);
  for (auto _ : state) {
    state.PauseTiming();
    for (std::size_t i = 0; i < batch; ++i) {
      const auto r = i % room_count;
      rows[i] = storage::message_row{uuid(run, sent + 1),         rooms[r], ++last_seq[r],
                                     "user-" + std::to_string(r), text,     prefix + std::to_string(++sent),
                                     1'700'000'000'000,           epoch[r]};
    }
    // Rows of a room must be consecutive and in order within the batch: sort by room, keeping seq order.
    std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.room < b.room; });
    state.ResumeTiming();
    auto out = store.append(rows);
    if (auto* err = std::get_if<storage::db_error>(&out)) {
      state.SkipWithError(std::string(storage::describe(*err)).c_str());
      return;
    }
    if (!std::get<storage::append_outcome>(out).unwritten.empty()) {
      state.SkipWithError(
          ("a room was refused: " + std::get<storage::append_outcome>(out).unwritten.front()).c_str());
      return;
    }
  }
  state.counters["rows_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * batch), benchmark::Counter::kIsRate);
}

BENCHMARK(append_batches)
    ->ArgsProduct({{50, 200, 500, 1000, 4000}, {50}, {0, 1}})
    ->ArgNames({"rows", "rooms", "copy"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);

}  // namespace
