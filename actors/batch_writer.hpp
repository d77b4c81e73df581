// The batch writer actor: gathers messages from rooms and commits them to PostgreSQL a batch at a time.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "actors/messages.hpp"
#include "actors/node_counters.hpp"

namespace chorus::actors {

struct batch_settings {
  std::size_t max_rows = 4000;                  ///< flush once a batch holds this many rows (see node_config)
  std::chrono::milliseconds max_delay{2};       ///< or once its first row has waited this long
  std::size_t tail_limit = 256;                 ///< messages an activation returns
  std::chrono::milliseconds max_backoff{2000};  ///< longest pause between reconnection attempts
  std::string node_id;                          ///< recorded as the owner of every room this writer activates
  /// A commit that takes this long is logged (zero: never), at most once per `slow_commit_log_interval`.
  std::chrono::milliseconds slow_commit{250};
  std::chrono::milliseconds slow_commit_log_interval{10000};
  /// Where every batch is counted (write_batches, write_rows, write_busy_us, write_failures); may be null.
  std::shared_ptr<node_counters> counters;
};

/// One `store` request in the batch being gathered: its rows are `rows[first, first + count)`.
struct pending_store {
  std::size_t first = 0;
  std::size_t count = 0;
  caf::typed_response_promise<std::vector<store_result>> promise;
};

struct batch_writer_state {
  std::unique_ptr<storage::message_store> store;
  batch_settings settings;
  std::vector<storage::message_row>
      rows;  ///< the batch being gathered, every request's rows in arrival order
  std::vector<pending_store> waiting;
  std::chrono::steady_clock::time_point oldest{};  ///< when the batch's first row arrived
  bool database_up = true;                         ///< as last seen; a change is logged once
  std::chrono::steady_clock::time_point retry_at{};
  std::chrono::milliseconds backoff{0};
  std::chrono::steady_clock::time_point slow_logged_at{};  ///< when a slow commit was last logged
  std::uint64_t slow_unlogged = 0;  ///< slow commits since then, reported with the next one logged

  static inline const char* name = "batch_writer";
};

/// Behaviour of one writer with its own connection to `database_url`. Spawn it `caf::detached`: its
/// handlers block on PostgreSQL.
///
/// Batching: the writer commits as soon as its mailbox is drained, so a batch holds every `store` that
/// arrived while the previous commit ran: batches stay small (and latency low) when idle and grow with
/// load, with no timer. It commits earlier when a batch reaches `max_rows`, or when its first row has
/// waited `max_delay` (checked as further requests arrive, so a mailbox that never drains cannot hold
/// rows back for long).
///
/// Fencing: an activation takes the room's next ownership epoch. Rows carrying an older one (their room was
/// activated again since, by another node) are answered `fenced`, with every row of their room in the batch.
///
/// While PostgreSQL is unreachable every store and activation fails at once with `unavailable`, and a
/// reconnection is tried no more often than an exponential backoff allows.
batch_writer_actor::behavior_type batch_writer(batch_writer_actor::stateful_pointer<batch_writer_state> self,
                                               std::string database_url, batch_settings settings);

}  // namespace chorus::actors
