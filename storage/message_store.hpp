// PostgreSQL access for messages and rooms: batch appends, room activation, history pages. No CAF here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace chorus::storage {

/// Why a database call did not succeed. Callers treat every value as "try again later" except where noted.
enum class db_error {
  unavailable,  ///< no connection, or the server failed the statement; nothing is known to be written
  in_doubt,     ///< the connection broke during COMMIT: the batch may or may not be stored
};

std::string_view describe(db_error e);

/// A value or the reason there is none. The hot path returns these instead of throwing.
template <class T>
using result = std::variant<T, db_error>;

/// One stored chat message, as the `messages` table holds it.
struct message_row {
  std::string id;  ///< UUID text, assigned by the room
  std::string room;
  std::uint64_t seq = 0;
  std::string author;
  std::string text;
  std::string client_msg_id;  ///< empty is stored as NULL
  std::int64_t created_at_ms = 0;
  /// The ownership epoch of the room activation that wrote it (room_snapshot::epoch): append() stores a
  /// room's rows only while this is the room's current epoch, so a node that lost the room cannot write.
  std::uint64_t epoch = 0;
};

/// What happened to one append() batch.
struct append_outcome {
  /// Rows (by index into the batch) whose (author, client_msg_id) was already stored, with the stored
  /// original. Every row of a room that has a duplicate in this batch was left unwritten. A key repeated
  /// within the batch leaves the rooms of its later rows unwritten too; those rows are listed here, with
  /// the batch's first row of that key as original, only if that first row was committed by this call.
  std::vector<std::pair<std::size_t, message_row>> duplicates;
  /// Rooms whose rows were not written because their seqs do not continue the stored sequence
  /// (rooms.last_seq + 1, consecutive) — a room that must reload its last seq before writing again.
  /// Only rooms whose rows all carried the room's current epoch are listed here (the others are `fenced`),
  /// and rooms that do not exist (never activated).
  std::vector<std::string> out_of_sequence;
  /// Rooms whose rows were not written because one of them carries an epoch other than the room's current
  /// owner_epoch: the room was activated again since (by another node), so this writer's owner must stop
  /// writing for it rather than reload and retry. Takes precedence over out_of_sequence; rows of a fenced
  /// room may still be listed in `duplicates`, whose originals are stored whoever owns the room.
  std::vector<std::string> fenced;
  /// Rooms left unwritten for a reason above (or a repeated key); rows of every other room are committed.
  bool written(std::string_view room) const;
  /// The rooms written() is false for, in the order they first appear in the batch.
  std::vector<std::string> unwritten;
};

/// Which way a history page goes from its starting seq.
enum class direction {
  older,  ///< seq < from, newest first
  newer,  ///< seq > from, oldest first
};

/// A room as activation finds it: where its sequence stands and its most recent messages.
struct room_snapshot {
  std::uint64_t last_seq = 0;
  std::vector<message_row> tail;  ///< up to `tail_limit` most recent messages, oldest first
  /// The ownership epoch this activation took; rows written for the room must carry it (message_row::epoch).
  std::uint64_t epoch = 0;
};

/// From this many rows a batch costs the server less by COPY than as one statement, despite the round trips
/// COPY adds (`bench/append.sh`; BENCHMARKS.md, durable sends).
inline constexpr std::size_t default_copy_from_rows = 1000;

/// One PostgreSQL connection and the statements Chorus runs on it. Not thread-safe: each owner (one
/// actor) has its own. Reconnects lazily: any call on a broken connection tries to reconnect first.
/// libpqxx exceptions never leave this class; they become db_error values.
class message_store {
 public:
  /// `copy_from_rows`: appends of at least this many rows send them by COPY (see append()).
  explicit message_store(std::string url, std::size_t copy_from_rows = default_copy_from_rows);
  ~message_store();
  message_store(const message_store&) = delete;
  message_store& operator=(const message_store&) = delete;

  /// True while a connection is open (it may still turn out broken on the next call).
  bool connected() const;

  /// Connects if not connected. Returns nullopt on success.
  std::optional<db_error> ensure_connected();

  /// What libpqxx or the server said about the most recent failure, for a log line; empty before any.
  const std::string& last_error() const;

  /// Writes a batch, never one row per round trip, each room all or nothing. Usually one statement that
  /// commits by itself: it advances rooms.last_seq of every room and inserts the rows of the rooms that
  /// advanced, refusing rooms whose seqs do not continue their stored sequence or whose rows do not carry
  /// the room's current owner_epoch. A batch of `copy_from_rows` or more does the same in one transaction:
  /// the rooms' update, then the rows of the rooms that advanced by COPY. When the unique index finds an
  /// (author, client_msg_id) already stored, or the batch repeats one, or a room's rows are not consecutive,
  /// nothing of that statement is written and the batch goes through one transaction that first finds the
  /// duplicates (returned with their originals); rooms the statement held back go through that transaction
  /// too, so the outcome tells fenced rooms, out of sequence ones and duplicates apart. Rows of one room
  /// appear in seq order. Every room must exist (activate()). A connection lost during the write is
  /// `in_doubt`: the statement may have committed.
  result<append_outcome> append(std::span<const message_row> rows);

  /// Claims the room for `owner_node`, in one transaction: creates the room if it does not exist, takes the
  /// next ownership epoch (fencing out every writer that holds an older one) and returns it with the room's
  /// last seq and up to `tail_limit` latest messages. `owner_node` is recorded for operators (empty: NULL).
  result<room_snapshot> activate(std::string_view room, std::size_t tail_limit, std::string_view owner_node);

  /// Up to `limit` messages of `room` after or before seq `from` (exclusive).
  result<std::vector<message_row>> page(std::string_view room, std::uint64_t from, direction dir,
                                        std::size_t limit);

  /// The stored message with this (author, client_msg_id), if any.
  result<std::optional<message_row>> find_by_client_id(std::string_view author,
                                                       std::string_view client_msg_id);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Applies every migration in storage/migrations/ that the database lacks, in order, each in its own
/// transaction, under a PostgreSQL advisory lock so two nodes starting at once do not both apply one.
/// Start-up code: throws std::runtime_error with a clear message on failure, including when the database
/// is at a newer version than this binary knows. Returns the schema version afterwards.
int migrate(const std::string& url);

/// The highest migration version compiled into this binary.
int known_schema_version();

}  // namespace chorus::storage
