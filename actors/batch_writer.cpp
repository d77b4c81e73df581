// The batch writer actor: one PostgreSQL connection, one transaction per batch, answers after commit.
#include "actors/batch_writer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_map>

namespace chorus::actors {

namespace {

using writer_pointer = batch_writer_actor::stateful_pointer<batch_writer_state>;
using clock = std::chrono::steady_clock;

/// PostgreSQL failed: log the change once, and wait a growing while before trying it again, so a dead
/// server costs each send one quick `unavailable` instead of a connection attempt.
void note_failure(writer_pointer self, storage::db_error err) {
  auto& st = self->state;
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

void flush(writer_pointer self) {
  auto& st = self->state;
  st.flush_scheduled = false;
  if (st.rows.empty()) return;
  auto rows = std::move(st.rows);
  auto waiting = std::move(st.waiting);
  st.rows.clear();
  st.waiting.clear();
  auto fail_all = [&] {
    for (auto& rp : waiting) rp.deliver(make_error(protocol::error_code::unavailable));
  };
  if (backing_off(self)) {
    fail_all();
    return;
  }
  auto outcome = st.store->append(rows);
  if (auto* err = std::get_if<storage::db_error>(&outcome)) {
    note_failure(self, *err);
    fail_all();
    return;
  }
  note_success(self);
  auto& out = std::get<storage::append_outcome>(outcome);
  std::unordered_map<std::size_t, storage::message_row*> originals;
  for (auto& [index, original] : out.duplicates) originals.emplace(index, &original);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (auto it = originals.find(i); it != originals.end())
      waiting[i].deliver(store_result{true, std::move(*it->second)});
    else if (!out.written(rows[i].room))
      waiting[i].deliver(make_error(protocol::error_code::unavailable));
    else
      waiting[i].deliver(store_result{false, std::move(rows[i])});
  }
}

}  // namespace

batch_writer_actor::behavior_type batch_writer(writer_pointer self, std::string database_url,
                                               batch_settings settings) {
  self->state.store = std::make_unique<storage::message_store>(std::move(database_url));
  self->state.settings = settings;
  return {
      [self](atom::store, storage::message_row& row) -> caf::result<store_result> {
        auto& st = self->state;
        st.rows.push_back(std::move(row));
        auto rp = self->make_response_promise<store_result>();
        st.waiting.push_back(rp);
        if (st.rows.size() >= st.settings.max_rows) {
          flush(self);
        } else if (!st.flush_scheduled) {
          st.flush_scheduled = true;
          auto me = caf::actor_cast<batch_writer_actor>(self);
          // With no delay the flush queues behind whatever is already in the mailbox, so a busy writer
          // still batches everything that arrived while it was committing the previous batch.
          if (st.settings.max_delay.count() == 0)
            self->send(me, atom::flush_v);
          else
            self->delayed_send(me, st.settings.max_delay, atom::flush_v);
        }
        return rp;
      },
      [self](atom::flush) { flush(self); },
      [self](atom::activate, const std::string& room) -> caf::result<storage::room_snapshot> {
        // Rows this room sent earlier must be stored (or refused) before its state is read back.
        flush(self);
        if (backing_off(self)) return make_error(protocol::error_code::unavailable);
        auto snapshot = self->state.store->activate(room, self->state.settings.tail_limit);
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
