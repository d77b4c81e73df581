// The batch writer actor: one PostgreSQL connection, one transaction per batch, answers after commit.
#include "actors/batch_writer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_map>
#include <utility>

namespace chorus::actors {

namespace {

using writer_pointer = batch_writer_actor::stateful_pointer<batch_writer_state>;
using clock = std::chrono::steady_clock;

/// PostgreSQL failed: log the change once, and wait a growing while before trying it again, so a dead
/// server costs each send one quick `unavailable` instead of a connection attempt. Only when the connection
/// is gone, though: a statement that failed on a live server (an activation that waited too long for a
/// lock, a deadlock) fails its own callers and no one else, and the next request is tried at once.
void note_failure(writer_pointer self, storage::db_error err) {
  auto& st = self->state;
  if (st.store->connected()) {
    spdlog::debug("batch writer: a statement failed on a live connection: {}", st.store->last_error());
    return;
  }
  if (st.database_up)
    spdlog::warn("batch writer: PostgreSQL {}; sends fail with `unavailable` until it is back",
                 describe(err));
  st.database_up = false;
  st.backoff = std::min(st.settings.max_backoff, std::max(std::chrono::milliseconds(50), st.backoff * 2));
  st.retry_at = clock::now() + st.backoff;
}

void note_success(writer_pointer self) {
  auto& st = self->state;
  if (!st.database_up) spdlog::info("batch writer: PostgreSQL is back; writing again");
  st.database_up = true;
  st.backoff = std::chrono::milliseconds(0);
}

bool backing_off(writer_pointer self) {
  return !self->state.database_up && clock::now() < self->state.retry_at;
}

/// Says once per batch which rooms were fenced: each means two nodes believed they owned it, which an
/// operator may want to see, but one refused batch is the whole of it (the room stops), so not a warning.
void log_fenced(const storage::append_outcome& out, const std::vector<storage::message_row>& rows) {
  for (const auto& room : out.fenced) {
    auto row = std::find_if(rows.begin(), rows.end(), [&](const auto& r) { return r.room == room; });
    spdlog::info("batch writer: room {}: write refused, another node activated it (epoch {} is stale)", room,
                 row == rows.end() ? 0 : row->epoch);
  }
}

/// A commit that held its senders up for long, usually a disk busy with other writes (docs/postgresql.md):
/// worth an operator's attention, but under load it repeats every batch, so one line per interval, which
/// counts the slow commits it did not report one by one.
void note_commit_time(writer_pointer self, clock::duration took, std::size_t rows) {
  auto& st = self->state;
  if (st.settings.slow_commit.count() == 0 || took < st.settings.slow_commit) return;
  const auto now = clock::now();
  if (st.slow_logged_at != clock::time_point{} &&
      now - st.slow_logged_at < st.settings.slow_commit_log_interval) {
    ++st.slow_unlogged;
    return;
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(took).count();
  if (st.slow_unlogged == 0)
    spdlog::warn(
        "batch writer: a commit of {} messages took {} ms; its senders waited that long for their acks", rows,
        ms);
  else
    spdlog::warn(
        "batch writer: a commit of {} messages took {} ms; its senders waited that long for their acks "
        "({} more commits took over {} ms since the last report)",
        rows, ms, st.slow_unlogged, st.settings.slow_commit.count());
  st.slow_logged_at = now;
  st.slow_unlogged = 0;
}

/// Counts a batch for GET /metrics: failed ones (tried, or refused during the backoff) apart from answered.
void count_batch(writer_pointer self, clock::duration took, std::size_t rows, bool failed) {
  auto* c = self->state.settings.counters.get();
  if (c == nullptr) return;
  constexpr auto relaxed = std::memory_order_relaxed;
  c->write_busy_us.fetch_add(
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(took).count()),
      relaxed);
  if (failed) {
    c->write_failures.fetch_add(1, relaxed);
    return;
  }
  c->write_batches.fetch_add(1, relaxed);
  c->write_rows.fetch_add(rows, relaxed);
}

/// Commits the gathered batch and answers every request in it, once each.
void flush(writer_pointer self) {
  auto& st = self->state;
  if (st.rows.empty()) return;
  auto rows = std::move(st.rows);
  auto waiting = std::move(st.waiting);
  st.rows.clear();
  st.waiting.clear();
  auto fail_all = [&] {
    for (auto& w : waiting) w.promise.deliver(make_error(protocol::error_code::unavailable));
  };
  if (backing_off(self)) {
    count_batch(self, clock::duration::zero(), rows.size(), true);
    fail_all();
    return;
  }
  const auto started = clock::now();
  auto outcome = st.store->append(rows);
  const auto took = clock::now() - started;
  const auto* err = std::get_if<storage::db_error>(&outcome);
  count_batch(self, took, rows.size(), err != nullptr);
  if (err != nullptr) {
    note_failure(self, *err);
    fail_all();
    return;
  }
  note_success(self);
  note_commit_time(self, took, rows.size());
  auto& out = std::get<storage::append_outcome>(outcome);
  log_fenced(out, rows);
  std::unordered_map<std::size_t, storage::message_row*> originals;
  for (auto& [index, original] : out.duplicates) originals.emplace(index, &original);
  auto fenced = [&](const std::string& room) {
    return std::find(out.fenced.begin(), out.fenced.end(), room) != out.fenced.end();
  };
  for (auto& w : waiting) {
    std::vector<store_result> results(w.count);
    for (std::size_t k = 0; k < w.count; ++k) {
      auto i = w.first + k;
      // Fenced first, even over a duplicate: the room's owner must stop, whatever else it would hear.
      if (!out.fenced.empty() && fenced(rows[i].room))
        results[k].status = store_status::fenced;
      else if (auto it = originals.find(i); it != originals.end())
        results[k] = store_result{store_status::duplicate, std::move(*it->second)};
      else if (!out.unwritten.empty() && !out.written(rows[i].room))
        results[k].status = store_status::refused;
    }
    w.promise.deliver(std::move(results));
  }
}

}  // namespace

batch_writer_actor::behavior_type batch_writer(writer_pointer self, std::string database_url,
                                               batch_settings settings) {
  self->state.store = std::make_unique<storage::message_store>(std::move(database_url));
  self->state.settings = std::move(settings);
  return {
      [self](atom::store, std::vector<storage::message_row>& rows) -> caf::result<std::vector<store_result>> {
        auto& st = self->state;
        if (rows.empty()) return std::vector<store_result>{};
        auto now = clock::now();
        if (st.rows.empty()) st.oldest = now;
        auto rp = self->make_response_promise<std::vector<store_result>>();
        st.waiting.push_back(pending_store{st.rows.size(), rows.size(), rp});
        st.rows.insert(st.rows.end(), std::make_move_iterator(rows.begin()),
                       std::make_move_iterator(rows.end()));
        // Commit once nothing else is queued: everything that arrived during the previous commit goes into
        // this one. (Only store, activate and flush can follow, and the latter two commit too.)
        if (self->mailbox().empty() || st.rows.size() >= st.settings.max_rows ||
            now - st.oldest >= st.settings.max_delay)
          flush(self);
        return rp;
      },
      [self](atom::flush) { flush(self); },
      [self](atom::activate, const std::string& room) -> caf::result<storage::room_snapshot> {
        // Rows this room sent earlier must be stored (or refused) before its state is read back.
        flush(self);
        if (backing_off(self)) return make_error(protocol::error_code::unavailable);
        auto snapshot =
            self->state.store->activate(room, self->state.settings.tail_limit, self->state.settings.node_id);
        if (auto* err = std::get_if<storage::db_error>(&snapshot)) {
          note_failure(self, *err);
          return make_error(protocol::error_code::unavailable);
        }
        note_success(self);
        return std::move(std::get<storage::room_snapshot>(snapshot));
      },
  };
}

}  // namespace chorus::actors
