// The room actor: gives each message the room's next sequence number, has it stored, then fans it out.
//
// Phases: loading (reading last seq and recent messages from the writer) → ready ⇄ resyncing (after a
// failed write: reload what is really stored, then carry on) — and unavailable when loading fails
// (retried with backoff; sends fail at once, live events and cached history still work). Requests that
// arrive while loading or resyncing wait and run, in order, once the room is ready.
//
// Write path: post → seq assigned → row queued in `unsent` → at the end of the mailbox drain every queued
// row goes to the writer as one `store` → the writer answers once, after the commit → each sender gets its
// message, then every member gets the event. The room's `activate` to itself marks the end of a drain
// (and carries the writer watchdog and load retries).
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include <boost/unordered/unordered_flat_map.hpp>

#include "actors/messages.hpp"
#include "actors/node_counters.hpp"
#include "actors/room_access.hpp"

namespace chorus::actors {

/// What a room needs from the node.
struct room_services {
  batch_writer_actor writer;    ///< the same writer for every message of the room, so rows stay in order
  history_reader_actor reader;  ///< for history older than the tail cache
  /// Where the room's access rules come from (kind, public flag, members). Null: every joiner may read and
  /// post (unit tests).
  account_worker_actor accounts;
  /// dev_mode: a room the database does not know is made on first join, public, open to everyone. Otherwise
  /// it is not_found and the actor stops.
  bool create_unknown = false;
  std::size_t tail_cache_size = 256;
  std::uint32_t history_limit = 100;
  std::chrono::milliseconds request_timeout{5000};
  std::shared_ptr<node_counters> counters;  ///< messages stored and their ack times go here; may be null
  /// A room with more users connected than this is crowded: see room_state::crowded.
  std::uint32_t member_events_limit = 1000;
  /// While a `store` of the room has waited this long for the writer, new sends are refused with
  /// `unavailable` instead of queued behind it (zero: never). At request_timeout or more it never acts: the
  /// watchdog fails the waiting sends and resyncs first.
  std::chrono::milliseconds shed_after{0};
};

/// A send's (user, client_msg_id) → the seq it got, keyed by a 64-bit hash of the pair: no key strings and no
/// node per entry. A hit is checked against the message itself, so two sends whose keys collide only lose
/// this shortcut (the database's unique index still finds the duplicate).
using send_id_index = boost::unordered_flat_map<std::uint64_t, std::uint64_t>;

/// A message handed to the writer and not yet answered, with every request waiting for it (a resend of
/// the same client_msg_id waits on the original instead of being stored twice).
struct in_flight_message {
  protocol::chat_message msg;
  std::vector<caf::typed_response_promise<protocol::chat_message>> waiting;
  std::chrono::steady_clock::time_point taken;  ///< when it got its seq (node_counters::send_ack)
};

/// State of one room. Lives only inside the room actor.
///
/// Membership is per session: a user with two connections in the room has two entries, but the
/// room's other members see one `member_joined` (when the first joins) and one `member_left`
/// (when the last leaves). The room monitors every member session, so a session that dies without
/// leaving is removed as if it had left.
struct room_state {
  std::string id;
  room_services services;
  std::unordered_map<caf::actor_addr, member_ref> sessions;
  std::size_t remote_sessions = 0;  ///< sessions on other nodes: their events go through their node's relay
  frame_ptr shared_id;              ///< `id`, shared by every message event (outbound_event::room)
  std::uint64_t epoch = 0;          ///< the ownership epoch this activation holds; every row carries it
  bool handing_over = false;        ///< another node owns the room now: finish what is in flight, then stop
  /// Visible sessions per user, in user order: a join lists the first ones. Sessions of invisible users are
  /// not counted: they get the room's events, but nobody sees them join, leave, or in lists and counts.
  std::map<std::string, std::size_t> sessions_per_user;
  std::unordered_set<caf::actor_addr> hidden;  ///< the sessions of `sessions` whose user is invisible
  /// More users connected than services.member_events_limit. Per-user events (member_joined, member_left,
  /// presence, typing) would cost every member a frame for each of them, so a crowded room sends none:
  /// member_count events go out instead, at most one a second. The room sends them again, after a `members`
  /// event with the whole list, once it is down to half the limit (not at the limit, so that a room at the
  /// edge does not send that list with every join and leave).
  bool crowded = false;
  std::size_t announced_count = 0;                        ///< what the last member_count event said
  std::optional<caf::actor_clock::time_point> count_due;  ///< when the next member_count event goes
  std::uint64_t id_entropy = 0;  ///< mixed into message ids so two rooms never mint the same one
  room_access access = room_access::open_room();
  bool access_loaded = false;  ///< `access` holds the stored rules (loaded once; notices keep it current)
  bool gone = false;           ///< the room does not exist or was deleted: everything is not_found

  bool loaded = false;              ///< the stored sequence is known
  bool syncing = false;             ///< a load is in flight; requests wait in `deferred`
  bool ever_loaded = false;         ///< later loads announce stored messages members have not seen
  std::uint32_t generation = 0;     ///< bumped on every resync; answers for older generations are ignored
  std::uint64_t committed_seq = 0;  ///< last seq stored and fanned out
  std::uint64_t assigned_seq = 0;   ///< last seq handed to the writer
  std::map<std::uint64_t, in_flight_message> in_flight;
  send_id_index in_flight_ids;
  std::deque<protocol::chat_message> tail;  ///< last committed messages, oldest first
  send_id_index tail_ids;
  std::deque<std::function<void()>> deferred;
  std::chrono::milliseconds load_backoff{0};
  /// When a client's resume last made the room read whether another activation stored more than it has.
  std::optional<caf::actor_clock::time_point> behind_checked_at;

  // The write path: rows assigned while draining the mailbox go to the writer together, as one `store`.
  std::vector<storage::message_row> unsent;  ///< assigned (and in `in_flight`), not yet sent to the writer
  bool drain_end_queued = false;             ///< an `activate` to itself is queued behind the mailbox
  bool replaying = false;                    ///< running `deferred`: send once they all have run
  /// Every `store` the writer has not answered (oldest first): its last seq and when it was sent. One
  /// watchdog per room, not a timeout per request, resyncs the room if the oldest goes unanswered.
  std::deque<std::pair<std::uint64_t, caf::actor_clock::time_point>> stores;
  std::optional<caf::actor_clock::time_point> watchdog_at;  ///< when the pending watchdog fires

  static inline const char* name = "room";
};

using room_pointer = room_actor::stateful_pointer<room_state>;

/// Behaviour of the room `id`; it starts by loading its state through `services.writer`.
room_actor::behavior_type room(room_pointer self, std::string id, room_services services);

}  // namespace chorus::actors
