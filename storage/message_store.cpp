// PostgreSQL access for messages and rooms: batch appends, room activation, history pages.
#include "storage/message_store.hpp"
#include "storage/pg_conninfo.hpp"

#include <spdlog/spdlog.h>
#include <pqxx/pqxx>
#include <pqxx/tablewriter>  // not in pqxx/pqxx: see advance_by_copy

#include <algorithm>
#include <charconv>
#include <chrono>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>
#include <utility>

namespace chorus::storage {
namespace {

// Every query that returns messages selects these, in this order (see read_row). created_at leaves as
// milliseconds since the epoch so neither side parses a timestamp text.
#define CHORUS_MESSAGE_COLUMNS                                                   \
  "m.id::text, m.room, m.seq, m.author, m.text, coalesce(m.client_msg_id, ''), " \
  "floor(extract(epoch FROM m.created_at) * 1000)::bigint, m.epoch"

// Advances last_seq of each room in $1 whose first new seq ($2) continues it, to $3, if the room is still
// under the epoch $4; returns the rooms that advanced. `r.id = ANY ($1)` gives the batch's rooms a lookup by
// key (sequential scans are off on this connection, see connect): joined on `r.id = v.id` alone, the cached
// plan could be a hash join over a scan of every room, with thousands of rooms not yet analyzed (0.33 ms a
// statement at 2,500 rooms against 0.12 ms; BENCHMARKS.md, durable sends).
#define CHORUS_ADVANCE_ROOMS                                                                             \
  " UPDATE rooms r SET last_seq = v.hi"                                                                  \
  " FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS v (id, lo, hi, epoch)"          \
  " WHERE r.id = ANY ($1::text[]) AND r.id = v.id AND r.last_seq = v.lo - 1 AND r.owner_epoch = v.epoch" \
  " RETURNING r.id"

// Prepared on every new connection. The two append statements take arrays so a batch of any size is one
// statement each, with every value a bound parameter rather than SQL text.
const std::pair<const char*, const char*> statements[] = {
    // One index probe per key, whatever the table's statistics say. A plain join was planned (and the plan
    // cached) while `messages` was still small: a hash join over a sequential scan, which then read the whole
    // growing table once per batch (38 ms for 500 keys at 200k rows, against 2 ms for the probes). LIMIT
    // keeps the planner from flattening the subquery back into a join; the unique key allows one row anyway.
    {"chorus_duplicates",
     "SELECT m.* FROM unnest($1::text[], $2::text[]) AS k (author, client_msg_id)"
     " CROSS JOIN LATERAL (SELECT " CHORUS_MESSAGE_COLUMNS
     " FROM messages m WHERE m.author = k.author AND m.client_msg_id = k.client_msg_id LIMIT 1) m"},
    // A room advances only if its first new seq continues last_seq and its rows were written under its
    // current ownership epoch; the rows of exactly the rooms that advanced go in with it, in one statement
    // (for a small batch, one round trip where a COPY takes four; large ones, see advance_by_copy). Under
    // READ COMMITTED a concurrent writer or activation of the same room blocks on the row lock and then
    // re-checks against the committed row, so a batch that passes commits before any later activation reads
    // last_seq, and a batch behind an activation is refused. created_at travels as epoch milliseconds and is
    // added as an interval: exact up to year 2255 (the product is a double of microseconds), unlike a float
    // division.
    {"chorus_advance",
     "WITH advanced AS (" CHORUS_ADVANCE_ROOMS "),"
     " stored AS ("
     " INSERT INTO messages (id, room, seq, author, text, client_msg_id, created_at, epoch)"
     " SELECT m.id, m.room, m.seq, m.author, m.text, nullif(m.client_msg_id, ''),"
     " timestamptz 'epoch' + m.created_ms * interval '1 millisecond', m.epoch"
     " FROM unnest($5::uuid[], $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::bigint[],"
     " $12::bigint[]) AS m (id, room, seq, author, text, client_msg_id, created_ms, epoch)"
     " WHERE m.room IN (SELECT id FROM advanced))"
     " SELECT id FROM advanced"},
    // The same advance for a large batch, whose rows then follow by COPY in the same transaction.
    {"chorus_advance_rooms", CHORUS_ADVANCE_ROOMS},
    // Only after a room was refused: its current epoch tells a fenced writer from one out of sequence.
    {"chorus_owner_epochs", "SELECT id, owner_epoch FROM rooms WHERE id = ANY ($1::text[])"},
    {"chorus_create_room", "INSERT INTO rooms (id) VALUES ($1) ON CONFLICT (id) DO NOTHING"},
    // Every activation takes a fresh epoch, which fences out whoever held the previous one.
    {"chorus_claim",
     "UPDATE rooms SET owner_epoch = owner_epoch + 1, owner_node = nullif($2, '') WHERE id = $1"
     " RETURNING owner_epoch, last_seq"},
    {"chorus_tail",
     "SELECT " CHORUS_MESSAGE_COLUMNS " FROM messages m WHERE m.room = $1 ORDER BY m.seq DESC LIMIT $2"},
    {"chorus_older", "SELECT " CHORUS_MESSAGE_COLUMNS
                     " FROM messages m WHERE m.room = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3"},
    {"chorus_newer", "SELECT " CHORUS_MESSAGE_COLUMNS
                     " FROM messages m WHERE m.room = $1 AND m.seq > $2 ORDER BY m.seq ASC LIMIT $3"},
    {"chorus_find",
     "SELECT " CHORUS_MESSAGE_COLUMNS " FROM messages m WHERE m.author = $1 AND m.client_msg_id = $2"},
};

#undef CHORUS_MESSAGE_COLUMNS
#undef CHORUS_ADVANCE_ROOMS

constexpr std::uint64_t max_seq = std::numeric_limits<std::int64_t>::max();

/// SQLSTATE of a lock wait that reached lock_timeout.
constexpr std::string_view lock_not_available = "55P03";

message_row read_row(const pqxx::row& r) {
  message_row m;
  m.id = r[0].as<std::string>();
  m.room = r[1].as<std::string>();
  m.seq = static_cast<std::uint64_t>(r[2].as<long long>());
  m.author = r[3].as<std::string>();
  m.text = r[4].as<std::string>();
  m.client_msg_id = r[5].as<std::string>();
  m.created_at_ms = r[6].as<long long>();
  m.epoch = static_cast<std::uint64_t>(r[7].as<long long>());
  return m;
}

std::vector<message_row> read_rows(const pqxx::result& res) {
  std::vector<message_row> out;
  out.reserve(res.size());
  for (const auto& r : res) out.push_back(read_row(r));
  return out;
}

// A PostgreSQL array literal, passed as a text parameter: only '"' and '\' need escaping inside quotes.
class array_literal {
 public:
  void add(std::string_view value) {
    text_ += text_.size() == 1 ? "\"" : ",\"";
    // Runs between specials are appended whole; a special goes out with a backslash before it.
    const char* run = value.data();
    const char* const end = run + value.size();
    for (const char* p = run; p != end; ++p) {
      if (*p != '"' && *p != '\\') continue;
      text_.append(run, p);
      text_ += '\\';
      run = p;
    }
    text_.append(run, end);
    text_ += '"';
  }
  void add(std::uint64_t value) { add_number(static_cast<long long>(std::min(value, max_seq))); }
  void add(std::int64_t value) { add_number(value); }
  bool empty() const { return text_.size() == 1; }
  /// The literal; the builder is spent (the text moves out).
  std::string str() {
    text_ += '}';
    return std::move(text_);
  }

 private:
  void add_number(long long value) {
    if (text_.size() > 1) text_ += ',';
    char buf[24];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
    text_.append(buf, end);
  }
  std::string text_ = "{";
};

long long clamp_to_bigint(std::uint64_t v) {
  return static_cast<long long>(std::min(v, max_seq));
}

// One room's share of an append batch.
struct room_part {
  std::string_view id;
  std::vector<std::size_t> rows;  // indexes into the batch, in batch order
  std::uint64_t epoch = 0;        // of its first row
  bool mixed_epochs = false;      // some row carries another epoch than the first: one of them is stale
  bool duplicate = false;
  bool out_of_sequence = false;
  bool fenced = false;
  bool advanced = false;
};

// A batch split by room.
struct batch_rooms {
  std::vector<room_part> parts;
  std::unordered_map<std::string_view, std::size_t> part_of_room;
  std::vector<std::size_t> part_of_row;
};

batch_rooms split_by_room(std::span<const message_row> rows) {
  batch_rooms b;
  b.part_of_row.resize(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& row = rows[i];
    auto [it, fresh] = b.part_of_room.try_emplace(row.room, b.parts.size());
    if (fresh) b.parts.push_back(room_part{row.room, {}, row.epoch});
    auto& part = b.parts[it->second];
    if (row.epoch != part.epoch) part.mixed_epochs = true;
    b.part_of_row[i] = it->second;
    // bigint holds the seqs; a batch that is not consecutive within itself cannot continue anything.
    if (row.seq == 0 || row.seq > max_seq) part.out_of_sequence = true;
    if (!part.rows.empty() && row.seq != rows[part.rows.back()].seq + 1) part.out_of_sequence = true;
    part.rows.push_back(i);
  }
  return b;
}

// The room arrays of chorus_advance and chorus_advance_rooms ($1 to $4) for `candidates`, which must be
// sorted by id, so that two writers with overlapping rooms lock them in the same order instead of
// deadlocking. `is_candidate` gets one flag per part of `b`.
struct advance_rooms {
  std::string ids, firsts, lasts, epochs;
  std::vector<char> is_candidate;
};

advance_rooms rooms_to_advance(std::span<const message_row> rows, const batch_rooms& b,
                               const std::vector<room_part*>& candidates) {
  array_literal ids, firsts, lasts, epochs;
  advance_rooms out;
  out.is_candidate.resize(b.parts.size(), 0);
  for (const room_part* part : candidates) {
    ids.add(part->id);
    firsts.add(rows[part->rows.front()].seq);
    lasts.add(rows[part->rows.back()].seq);
    epochs.add(part->epoch);  // clamped to bigint: owner_epoch never gets near it, so it stays refused
    out.is_candidate[static_cast<std::size_t>(part - b.parts.data())] = 1;
  }
  out.ids = ids.str();
  out.firsts = firsts.str();
  out.lasts = lasts.str();
  out.epochs = epochs.str();
  return out;
}

void mark_advanced(const pqxx::result& advanced, batch_rooms& b) {
  for (const auto& r : advanced) {
    auto it = b.part_of_room.find(r[0].as<std::string>());
    if (it != b.part_of_room.end()) b.parts[it->second].advanced = true;
  }
}

// Runs chorus_advance for `candidates` (sorted by id) and marks the parts that advanced; their rows are in.
void advance(pqxx::transaction_base& tx, std::span<const message_row> rows, batch_rooms& b,
             const std::vector<room_part*>& candidates) {
  auto rooms = rooms_to_advance(rows, b, candidates);
  // The rows of every candidate room; the statement keeps those of the rooms that advance. Every row of a
  // candidate carries its room's epoch (no mixed epochs), which the UPDATE checks, so it fits a bigint.
  array_literal msg_ids, msg_rooms, msg_seqs, msg_authors, msg_texts, msg_client_ids, msg_created, msg_epochs;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (!rooms.is_candidate[b.part_of_row[i]]) continue;
    const auto& row = rows[i];
    msg_ids.add(row.id);
    msg_rooms.add(row.room);
    msg_seqs.add(row.seq);
    msg_authors.add(row.author);
    msg_texts.add(row.text);
    msg_client_ids.add(row.client_msg_id);
    msg_created.add(row.created_at_ms);
    msg_epochs.add(row.epoch);
  }
  mark_advanced(tx.exec_prepared("chorus_advance", std::move(rooms.ids), std::move(rooms.firsts),
                                 std::move(rooms.lasts), std::move(rooms.epochs), msg_ids.str(),
                                 msg_rooms.str(), msg_seqs.str(), msg_authors.str(), msg_texts.str(),
                                 msg_client_ids.str(), msg_created.str(), msg_epochs.str()),
                b);
}

// COPY's text format for one field: backslash, and the characters that end a field or a row, escaped.
void append_copy_field(std::string& out, std::string_view value) {
  const char* run = value.data();
  const char* const end = run + value.size();
  for (const char* p = run; p != end; ++p) {
    const char c = *p;
    const char escaped = c == '\\' ? '\\' : c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : '\0';
    if (escaped == '\0') continue;
    out.append(run, p);
    out += '\\';
    out += escaped;
    run = p + 1;
  }
  out.append(run, end);
}

void append_copy_number(std::string& out, long long value) {
  char buf[24];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, end);
}

// The created_at range that COPY gets as a plain ISO text, years 1 to 9999 (PostgreSQL writes earlier years
// as BC). A batch with a time outside it goes by statement, which takes any bigint of milliseconds.
constexpr std::int64_t first_copy_timestamp_ms = -62'135'596'800'000;  // 0001-01-01 00:00:00.000 UTC
constexpr std::int64_t last_copy_timestamp_ms = 253'402'300'799'999;   // 9999-12-31 23:59:59.999 UTC

// created_at_ms as "YYYY-MM-DD HH:MM:SS.mmm+00", within [first_copy_timestamp_ms, last_copy_timestamp_ms].
void append_copy_timestamp(std::string& out, std::int64_t ms) {
  using namespace std::chrono;
  const sys_time<milliseconds> t{milliseconds{ms}};
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss<milliseconds> time{t - day};
  // By hand rather than snprintf: this runs for every row of a large batch.
  char buf[] = "0000-00-00 00:00:00.000+00";
  const auto digits = [&buf](std::size_t at, std::size_t width, unsigned value) {
    for (std::size_t k = width; k-- > 0; value /= 10) buf[at + k] = static_cast<char>('0' + value % 10);
  };
  digits(0, 4, static_cast<unsigned>(static_cast<int>(ymd.year())));
  digits(5, 2, static_cast<unsigned>(ymd.month()));
  digits(8, 2, static_cast<unsigned>(ymd.day()));
  digits(11, 2, static_cast<unsigned>(time.hours().count()));
  digits(14, 2, static_cast<unsigned>(time.minutes().count()));
  digits(17, 2, static_cast<unsigned>(time.seconds().count()));
  digits(20, 3, static_cast<unsigned>(time.subseconds().count()));
  out.append(buf, sizeof buf - 1);
}

// What a large batch costs PostgreSQL less as: the rooms advance by chorus_advance_rooms, then the rows of
// the rooms that advanced stream in by COPY, in the caller's transaction. COPY inserts a page's worth of rows
// at a time and parses plain fields, where the statement unpacks eight arrays and inserts row by row: about
// a third less of the server's time per row, for four round trips instead of one: worth it from about a
// thousand rows (BENCHMARKS.md, durable sends). That is a writer that fell behind, and it catches up sooner.
void advance_by_copy(pqxx::work& tx, std::span<const message_row> rows, batch_rooms& b,
                     const std::vector<room_part*>& candidates) {
  auto rooms = rooms_to_advance(rows, b, candidates);
  mark_advanced(tx.exec_prepared("chorus_advance_rooms", std::move(rooms.ids), std::move(rooms.firsts),
                                 std::move(rooms.lasts), std::move(rooms.epochs)),
                b);
  static const std::vector<std::string> columns{"id",   "room",          "seq",        "author",
                                                "text", "client_msg_id", "created_at", "epoch"};
  // libpqxx 6.4 sends COPY text it did not format itself only through tablewriter, deprecated in favour of
  // stream_to. stream_to builds a string per field of every row and escapes it separately: the writer's path
  // of 2026-11-30 used it, and cost the node about three times the CPU per batch of the array statement.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  pqxx::tablewriter copy{tx, "messages", columns.begin(), columns.end()};
#pragma GCC diagnostic pop
  // Rows go in chunks of about 64 kB, so the server parses one while the next is formatted. COPY reads a
  // stream, not lines: a chunk holds many rows, and write_raw_line ends it with the last one's newline.
  constexpr std::size_t chunk_bytes = 64 * 1024;
  std::string chunk;
  chunk.reserve(chunk_bytes + 4096);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (!b.parts[b.part_of_row[i]].advanced) continue;
    const auto& row = rows[i];
    if (!chunk.empty()) chunk += '\n';
    append_copy_field(chunk, row.id);
    chunk += '\t';
    append_copy_field(chunk, row.room);
    chunk += '\t';
    append_copy_number(chunk, clamp_to_bigint(row.seq));
    chunk += '\t';
    append_copy_field(chunk, row.author);
    chunk += '\t';
    append_copy_field(chunk, row.text);
    chunk += '\t';
    if (row.client_msg_id.empty()) {
      chunk += "\\N";
    } else {
      append_copy_field(chunk, row.client_msg_id);
    }
    chunk += '\t';
    append_copy_timestamp(chunk, row.created_at_ms);
    chunk += '\t';
    append_copy_number(chunk, clamp_to_bigint(row.epoch));
    if (chunk.size() >= chunk_bytes) {
      copy.write_raw_line(chunk);
      chunk.clear();
    }
  }
  if (!chunk.empty()) copy.write_raw_line(chunk);
  copy.complete();
}

std::vector<room_part*> sorted_by_id(std::vector<room_part*> parts) {
  std::sort(parts.begin(), parts.end(), [](const room_part* a, const room_part* b) { return a->id < b->id; });
  return parts;
}

// The full path, in one transaction: finds stored duplicates and repeats first, so that it can say which
// rows are duplicates (with their originals) and why each held-back room was held back.
append_outcome append_in(pqxx::work& tx, std::span<const message_row> rows) {
  append_outcome out;
  auto b = split_by_room(rows);
  auto& parts = b.parts;
  auto& part_of_room = b.part_of_room;
  auto& part_of_row = b.part_of_row;

  // Idempotency: every row whose (author, client_msg_id) is stored, or repeated earlier in the batch.
  std::map<std::pair<std::string_view, std::string_view>, std::vector<std::size_t>> rows_of_key;
  std::vector<std::pair<std::size_t, std::size_t>> repeats;  // (later row, first row) with the same key
  array_literal authors, client_ids;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].client_msg_id.empty()) continue;
    auto& indexes = rows_of_key[{rows[i].author, rows[i].client_msg_id}];
    if (indexes.empty()) {
      authors.add(rows[i].author);
      client_ids.add(rows[i].client_msg_id);
    }
    indexes.push_back(i);
  }
  if (!rows_of_key.empty()) {
    const auto stored = tx.exec_prepared("chorus_duplicates", authors.str(), client_ids.str());
    std::set<std::pair<std::string_view, std::string_view>> stored_keys;
    for (const auto& r : stored) {
      message_row original = read_row(r);
      auto it = rows_of_key.find({original.author, original.client_msg_id});
      if (it == rows_of_key.end()) continue;
      stored_keys.insert(it->first);
      for (std::size_t i : it->second) {
        parts[part_of_row[i]].duplicate = true;
        out.duplicates.emplace_back(i, original);
      }
    }
    for (const auto& [key, indexes] : rows_of_key) {
      if (indexes.size() < 2 || stored_keys.contains(key)) continue;
      for (std::size_t k = 1; k < indexes.size(); ++k) {
        parts[part_of_row[indexes[k]]].duplicate = true;
        repeats.emplace_back(indexes[k], indexes[0]);
      }
    }
  }

  // Advance last_seq of every remaining room, and write its rows, in one statement.
  std::vector<room_part*> candidates;
  for (auto& part : parts) {
    if (!part.duplicate && !part.out_of_sequence && !part.mixed_epochs) candidates.push_back(&part);
  }
  candidates = sorted_by_id(std::move(candidates));
  if (!candidates.empty()) {
    advance(tx, rows, b, candidates);
    // Not advanced: last_seq or owner_epoch did not match, or the room does not exist (never activated).
    for (room_part* part : candidates) part->out_of_sequence = !part->advanced;
  }

  // Whatever else kept a room back, a stale epoch is what its owner must hear: reloading and retrying would
  // only be refused again, or worse, fence the node that took the room over. One query for every such room;
  // a batch where every room advanced never gets here. Read after the UPDATE, so under READ COMMITTED it
  // sees any activation that committed meanwhile (epochs only grow, so such a room is fenced either way).
  array_literal held_back;
  for (const auto& part : parts) {
    if (!part.advanced) held_back.add(part.id);
  }
  if (!held_back.empty()) {
    for (const auto& r : tx.exec_prepared("chorus_owner_epochs", held_back.str())) {
      auto it = part_of_room.find(r[0].as<std::string>());
      if (it == part_of_room.end()) continue;
      auto& part = parts[it->second];
      if (part.mixed_epochs || part.epoch != static_cast<std::uint64_t>(r[1].as<long long>())) {
        part.fenced = true;
        part.out_of_sequence = false;
      }
    }
  }

  // A repeat counts as a duplicate only if its first row is committed now: reporting an original that was
  // never stored would let the caller acknowledge a message that is not in the database.
  for (const auto& [later, first] : repeats) {
    if (parts[part_of_row[first]].advanced) out.duplicates.emplace_back(later, rows[first]);
  }
  std::sort(out.duplicates.begin(), out.duplicates.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });

  for (const auto& part : parts) {
    if (part.out_of_sequence) out.out_of_sequence.emplace_back(part.id);
    if (part.fenced) out.fenced.emplace_back(part.id);
    if (!part.advanced) out.unwritten.emplace_back(part.id);
  }

  tx.commit();
  return out;
}

// The common case in one statement that commits by itself (one round trip instead of four, and no duplicate
// probe): every room consecutive under one epoch and no client_msg_id twice in the batch. A stored duplicate
// makes the unique index refuse the whole statement, and nothing is written: nullopt, take the full path.
// Rooms that did not advance (out of sequence, fenced) go through the full path afterwards, alone, so that
// the outcome says what it would have said; the rows of the other rooms are committed by then. A batch of at
// least `copy_from_rows` rows goes in by COPY instead (advance_by_copy), in a transaction of its own, with
// the same outcomes.
std::optional<append_outcome> append_fast(pqxx::connection& conn, std::span<const message_row> rows,
                                          std::size_t copy_from_rows) {
  auto b = split_by_room(rows);
  std::vector<room_part*> candidates;
  for (auto& part : b.parts) {
    if (part.out_of_sequence || part.mixed_epochs) return std::nullopt;
    candidates.push_back(&part);
  }
  std::vector<std::pair<std::string_view, std::string_view>> keys;
  bool by_copy = rows.size() >= copy_from_rows;
  for (const auto& row : rows) {
    if (!row.client_msg_id.empty()) keys.emplace_back(row.author, row.client_msg_id);
    if (row.created_at_ms < first_copy_timestamp_ms || row.created_at_ms > last_copy_timestamp_ms)
      by_copy = false;
  }
  std::sort(keys.begin(), keys.end());
  if (std::adjacent_find(keys.begin(), keys.end()) != keys.end()) return std::nullopt;

  try {
    if (by_copy) {
      pqxx::work tx{conn};
      advance_by_copy(tx, rows, b, sorted_by_id(std::move(candidates)));
      tx.commit();
    } else {
      pqxx::nontransaction tx{conn};
      advance(tx, rows, b, sorted_by_id(std::move(candidates)));
    }
  } catch (const pqxx::unique_violation&) {
    return std::nullopt;
  } catch (const pqxx::broken_connection& e) {
    // The statement may have reached the server and committed before the connection went. (A COPY's
    // transaction cannot have, but it resyncs its rooms the same way: that costs a read, not a wrong answer.)
    throw pqxx::in_doubt_error(e.what());
  }

  std::vector<message_row> held;
  std::vector<std::size_t> held_index;  // index in `rows` of each row of `held`
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (b.parts[b.part_of_row[i]].advanced) continue;
    held.push_back(rows[i]);
    held_index.push_back(i);
  }
  if (held.empty()) return append_outcome{};
  // The other rooms' rows are committed by now. If this part fails, the batch is neither written nor
  // unwritten: in doubt, which tells the caller to reload what is stored rather than take it for nothing.
  try {
    pqxx::work tx{conn};
    auto out = append_in(tx, held);
    for (auto& [index, original] : out.duplicates) index = held_index[index];
    return out;
  } catch (const pqxx::in_doubt_error&) {
    throw;
  } catch (const std::exception& e) {
    throw pqxx::in_doubt_error(std::string("after other rooms of the batch committed: ") + e.what());
  }
}

}  // namespace

std::string_view describe(db_error e) {
  switch (e) {
    case db_error::unavailable:
      return "database unavailable";
    case db_error::in_doubt:
      return "database connection lost during commit; the batch may or may not be stored";
  }
  return "unknown database error";
}

bool append_outcome::written(std::string_view room) const {
  return std::find(unwritten.begin(), unwritten.end(), room) == unwritten.end();
}

struct message_store::impl {
  std::string url;
  std::size_t copy_from_rows = default_copy_from_rows;
  std::unique_ptr<pqxx::connection> conn;
  std::string last_error;

  std::optional<db_error> connect() {
    if (conn) return std::nullopt;
    try {
      auto fresh = std::make_unique<pqxx::connection>(with_network_timeouts(url));
      {
        // Timestamps travel as epoch milliseconds or 'Z' texts, so nothing depends on it; UTC is for
        // whoever reads this session's output or logs.
        pqxx::nontransaction tx{*fresh};
        tx.exec("SET TimeZone = 'UTC'");
        // A node paused (SIGSTOP) or cut off in the middle of a batch holds its rooms' rows locked: the
        // server ends such a transaction after a second, so that the node taking those rooms over is not
        // stuck behind it (its activation waits at most lock_timeout below). A batch's statements follow
        // each other within milliseconds, so a live writer never comes near it.
        tx.exec("SET idle_in_transaction_session_timeout = '1s'");
        // Every statement here finds its rows by key, so a batch should cost the same at any table size.
        // The planner disagreed for `rooms` (thousands of rows it had not analyzed looked cheaper to scan
        // than to probe) and the prepared plan kept its scan; without scans a key lookup is what is left.
        tx.exec("SET enable_seqscan = off");
      }
      for (const auto& [name, sql] : statements) fresh->prepare(name, sql);
      conn = std::move(fresh);
      return std::nullopt;
    } catch (const std::exception& e) {
      last_error = e.what();
      return db_error::unavailable;
    }
  }

  // Runs one operation on the connection and turns every exception into a db_error. A connection that
  // broke is dropped so the next call reconnects; other failures leave it for reuse.
  template <class T, class F>
  result<T> guard(F&& operation) {
    if (auto e = connect()) return *e;
    try {
      return operation(*conn);
    } catch (const pqxx::in_doubt_error& e) {
      last_error = e.what();
      conn.reset();
      return db_error::in_doubt;
    } catch (const pqxx::broken_connection& e) {
      last_error = e.what();
      conn.reset();
      return db_error::unavailable;
    } catch (const std::exception& e) {
      last_error = e.what();
    } catch (...) {
      last_error = "unknown exception";
    }
    if (!conn->is_open()) conn.reset();
    return db_error::unavailable;
  }
};

message_store::message_store(std::string url, std::size_t copy_from_rows) : impl_{std::make_unique<impl>()} {
  impl_->url = std::move(url);
  impl_->copy_from_rows = copy_from_rows;
}

message_store::~message_store() = default;

bool message_store::connected() const {
  return impl_->conn && impl_->conn->is_open();
}

std::optional<db_error> message_store::ensure_connected() {
  return impl_->connect();
}

const std::string& message_store::last_error() const {
  return impl_->last_error;
}

result<append_outcome> message_store::append(std::span<const message_row> rows) {
  if (rows.empty()) return append_outcome{};
  return impl_->guard<append_outcome>([&](pqxx::connection& conn) {
    if (auto done = append_fast(conn, rows, impl_->copy_from_rows)) return std::move(*done);
    pqxx::work tx{conn};
    return append_in(tx, rows);
  });
}

namespace {

/// Takes `room` over for `owner_node` (a new epoch) and reads its sequence and tail, in one transaction.
room_snapshot claim(pqxx::connection& conn, std::string_view room, std::size_t tail_limit,
                    std::string_view owner_node) {
  const std::string id{room};
  room_snapshot snapshot;
  pqxx::work tx{conn};
  // Behind a lock held longer than this (a paused node's open batch), activation fails rather than the
  // room waiting without end.
  tx.exec("SET LOCAL lock_timeout = '1s'");
  tx.exec_prepared("chorus_create_room", id);
  // The claim locks the room's row until commit: a batch still being written under the previous epoch
  // commits first (and the tail below includes it), or waits and is then refused.
  const auto claimed = tx.exec_prepared("chorus_claim", id, std::string{owner_node});
  snapshot.epoch = static_cast<std::uint64_t>(claimed.at(0).at(0).as<long long>());
  snapshot.last_seq = static_cast<std::uint64_t>(claimed.at(0).at(1).as<long long>());
  if (tail_limit > 0 && snapshot.last_seq > 0) {
    snapshot.tail = read_rows(tx.exec_prepared("chorus_tail", id, clamp_to_bigint(tail_limit)));
    std::reverse(snapshot.tail.begin(), snapshot.tail.end());
  }
  tx.commit();
  return snapshot;
}

}  // namespace

result<room_snapshot> message_store::activate(std::string_view room, std::size_t tail_limit,
                                              std::string_view owner_node) {
  return impl_->guard<room_snapshot>([&](pqxx::connection& conn) {
    try {
      return claim(conn, room, tail_limit, owner_node);
    } catch (const pqxx::sql_error& e) {
      if (e.sqlstate() != lock_not_available) throw;
    }
    // Still locked after lock_timeout: the previous owner stopped in the middle of a batch. A writer paused
    // between statements is "idle in transaction" and the server ends it after a second. One paused in the
    // middle of a COPY (a large batch) waits for data ("active", so no server timeout ends it) and keeps the
    // room's row locked for as long as the process is stopped. A live writer sends a COPY's rows as fast as
    // it formats them and never leaves it unfinished for a second: end such backends (a role may end its
    // own) and try once more. The stalled node's batch rolls back; it was fenced anyway.
    long long ended = 0;
    {
      pqxx::nontransaction tx{conn};
      // The timeout makes pg_terminate_backend wait until the backend has gone (and its locks with it).
      ended = tx.exec(
                    "SELECT count(pg_terminate_backend(pid, 2000)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active' "
                    "AND wait_event = 'ClientRead' AND query LIKE 'COPY messages %' "
                    "AND state_change < now() - interval '1 second'")
                  .at(0)
                  .at(0)
                  .as<long long>();
    }
    spdlog::warn("room {}: activation waited on a stalled writer; ended {} stalled PostgreSQL sessions", room,
                 ended);
    return claim(conn, room, tail_limit, owner_node);
  });
}

result<std::vector<message_row>> message_store::page(std::string_view room, std::uint64_t from, direction dir,
                                                     std::size_t limit) {
  if (limit == 0) return std::vector<message_row>{};
  return impl_->guard<std::vector<message_row>>([&](pqxx::connection& conn) {
    pqxx::nontransaction tx{conn};
    return read_rows(tx.exec_prepared(dir == direction::older ? "chorus_older" : "chorus_newer",
                                      std::string{room}, clamp_to_bigint(from), clamp_to_bigint(limit)));
  });
}

result<std::optional<message_row>> message_store::find_by_client_id(std::string_view author,
                                                                    std::string_view client_msg_id) {
  // Rows without a client id are stored with NULL, which nothing matches.
  if (client_msg_id.empty()) return std::optional<message_row>{};
  return impl_->guard<std::optional<message_row>>([&](pqxx::connection& conn) {
    pqxx::nontransaction tx{conn};
    const auto res = tx.exec_prepared("chorus_find", std::string{author}, std::string{client_msg_id});
    return res.empty() ? std::optional<message_row>{} : std::optional<message_row>{read_row(res[0])};
  });
}

}  // namespace chorus::storage

#if defined(__SANITIZE_ADDRESS__)
// libpqxx 6.4 leaks the PGresult of a statement that fails because the connection broke (make_result asks
// the dead connection for its encoding before the result owns the PGresult): about 2 KB per broken
// connection, which LeakSanitizer would report at exit of every test or chorusd that saw PostgreSQL go away.
// Chorus never calls libpq itself, so every allocation made inside libpq belongs to libpqxx.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libpq.so\n";
}
#endif
