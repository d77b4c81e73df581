// Every message exchanged between Chorus actors, their typed interfaces, and their one CAF type-ID block.
//
// Anything here may cross nodes, so every type has an `inspect` overload and is announced in the
// `chorus` ID block below; a node registers the block with `cfg.add_message_types<caf::id_block::chorus>()`.
#pragma once

#include <caf/all.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "actors/http_port.hpp"
#include "actors/protocol.hpp"
#include "actors/room_notice.hpp"
#include "actors/session_port.hpp"
#include "storage/account_store.hpp"
#include "storage/message_store.hpp"

// Atoms tag messages. (In CAF 0.17 they take no type ID, so they can precede the types that use them.)
CAF_ADD_ATOM(chorus, chorus::atom, join, "join")
CAF_ADD_ATOM(chorus, chorus::atom, leave, "leave")
CAF_ADD_ATOM(chorus, chorus::atom, post, "post")
CAF_ADD_ATOM(chorus, chorus::atom, typing, "typing")
CAF_ADD_ATOM(chorus, chorus::atom, presence, "presence")
CAF_ADD_ATOM(chorus, chorus::atom, deliver, "deliver")
CAF_ADD_ATOM(chorus, chorus::atom, lookup, "lookup")
CAF_ADD_ATOM(chorus, chorus::atom, connected, "connected")
CAF_ADD_ATOM(chorus, chorus::atom, gone, "gone")
CAF_ADD_ATOM(chorus, chorus::atom, frame, "frame")
CAF_ADD_ATOM(chorus, chorus::atom, binary, "binary")
CAF_ADD_ATOM(chorus, chorus::atom, closed, "closed")
CAF_ADD_ATOM(chorus, chorus::atom, auth_due, "auth_due")
CAF_ADD_ATOM(chorus, chorus::atom, store, "store")
CAF_ADD_ATOM(chorus, chorus::atom, activate, "activate")
CAF_ADD_ATOM(chorus, chorus::atom, flush, "flush")
CAF_ADD_ATOM(chorus, chorus::atom, history, "history")
CAF_ADD_ATOM(chorus, chorus::atom, api, "api")
CAF_ADD_ATOM(chorus, chorus::atom, notice, "notice")
CAF_ADD_ATOM(chorus, chorus::atom, access, "access")
CAF_ADD_ATOM(chorus, chorus::atom, limit, "limit")
CAF_ADD_ATOM(chorus, chorus::atom, heartbeat, "heartbeat")
CAF_ADD_ATOM(chorus, chorus::atom, hello, "hello")
CAF_ADD_ATOM(chorus, chorus::atom, relay, "relay")
CAF_ADD_ATOM(chorus, chorus::atom, members, "members")
CAF_ADD_ATOM(chorus, chorus::atom, claim, "claim")
CAF_ADD_ATOM(chorus, chorus::atom, nodes, "nodes")
CAF_ADD_ATOM(chorus, chorus::atom, handover, "handover")
CAF_ADD_ATOM(chorus, chorus::atom, unlisted, "unlisted")

namespace chorus::actors {

/// The version of what nodes send each other: every type in the `chorus` ID block below and the interfaces
/// of the actors a peer talks to (node_actor, room_actor). Bump it with any change to them. CAF cannot read a
/// message whose layout differs from its own, so nodes of two versions must not peer: each registers its
/// version in Redis, a node refuses to start beside live nodes of another (chorusd), and the room directory
/// never connects to a peer of another that registers in the meantime.
///   1: the first version registered; a relay_batch carries a vector of events.
///   2: a join_result carries the room's member count and whether it sends per-user membership events.
///   3: a room answers `members` (members_query, members_page).
///   4: a room answers `handover` with its epoch; a room_notice carries an epoch (`handed_over`).
///   5: a node actor takes `unlisted` (a peer no longer finds this node's entry in Redis).
inline constexpr std::uint32_t cluster_wire_version = 5;

/// One server frame on its way to a session, with the bytes shared by every recipient.
struct outbound_event {
  frame_ptr bytes;
  traffic kind = traffic::essential;
  /// For a chat message: its seq and room (shared by every recipient), so that a session knows where to
  /// resume the room from if it has to join it again (its owner moved or died). Zero and null otherwise.
  std::uint64_t seq = 0;
  frame_ptr room;
};

/// Where a room sends a member's events: the session actor, seen through the messages it takes from rooms.
/// The messages of one commit go together, in seq order, as one message per session.
using event_sink = caf::typed_actor<caf::reacts_to<atom::deliver, outbound_event>,
                                    caf::reacts_to<atom::deliver, std::vector<outbound_event>>>;

/// Events for several sessions on one node: a room sends one of these per node instead of one message per
/// remote member, and the node actor there fans it out locally. The messages of one commit travel together.
struct relay_batch {
  std::vector<event_sink> sessions;    ///< sessions on the receiving node
  std::vector<outbound_event> events;  ///< in the order the sessions get them
};

/// Where a room sends events for the sessions of one other node: that node's node actor.
using relay_sink = caf::typed_actor<caf::reacts_to<atom::relay, relay_batch>>;

/// A session taking part in a room: whose it is and where its events go.
struct member_ref {
  std::string user;
  event_sink session;
  /// The relay of the session's node; null on a node without a cluster port (events then go straight to
  /// the session, as they do whenever the room runs on the session's own node).
  relay_sink relay;
};

/// A session asking to join, possibly resuming after `last_seen` (the last seq it received in the room).
struct join_request {
  member_ref member;
  bool resume = false;
  std::uint64_t last_seen = 0;
  bool invisible = false;  ///< the user's status is invisible: the room announces no presence for it
};

/// A room's answer to a join: where its sequence stands, who is in it, and what a resuming session missed.
struct join_result {
  std::uint64_t last_seq = 0;
  std::vector<protocol::member_info> members;
  std::vector<protocol::chat_message> replay;  ///< consecutive from last_seen + 1, oldest first
  bool complete = true;  ///< false: more was missed than one resume replays; page the rest with history
  std::uint64_t member_count = 0;  ///< users connected to the room; `members` holds fewer in a crowded room
  bool member_events = true;       ///< false: a crowded room, which sends member_count events instead
};

/// A page of the users connected to a room, in user id order: up to `limit` after `after` ("": the first).
struct members_query {
  std::string after;
  std::uint32_t limit = 0;
};

struct members_page {
  std::vector<protocol::member_info> members;
  std::uint64_t count = 0;  ///< users connected to the room
  bool more = false;        ///< users follow the last of `members`
};

/// A page of a room's history: up to `limit` messages before (`newer` false; newest first) or after
/// (`newer` true; oldest first) seq `from`. `from` 0 with `newer` false means "the newest".
struct history_query {
  std::string room;
  std::uint64_t from = 0;
  bool newer = false;
  std::uint32_t limit = 50;
  std::uint64_t max_seq = 0;  ///< set by the room: nothing newer than what it has committed and delivered
};

/// What became of one row of a `store` request.
enum class store_status : std::uint8_t {
  stored,     ///< committed
  duplicate,  ///< its (author, client_msg_id) was stored before; nothing of its room was written
  refused,    ///< not written: its room's rows did not continue the stored sequence, or one was a duplicate
  fenced,  ///< not written: another activation of the room holds a newer ownership epoch (see room_snapshot)
};

/// What the batch writer says about one row of a `store` request, in the request's order. The rows of one
/// room in one request are committed all together or not at all.
struct store_result {
  store_status status = store_status::stored;
  storage::message_row original;  ///< for a duplicate: the row as stored before; otherwise empty
};

/// A message a user wants posted to a room.
struct post_request {
  std::string user;
  std::string text;
  std::string client_msg_id;
};

/// Who a node actor is: the node's configured id and the incarnation of this run of it, so that a peer can
/// tell a restarted node (same id, new incarnation) from the one it knew.
struct node_hello {
  std::string node_id;
  std::string incarnation;  ///< cluster::new_incarnation(), as registered in Redis
};

/// One live node as the Redis registry lists it (cluster::node_info without its start time).
struct peer_node {
  std::string id;
  std::string incarnation;
  std::string host;
  std::uint16_t client_port = 0;
  std::uint16_t cluster_port = 0;
  std::uint32_t wire_version = 0;  ///< its cluster_wire_version; 0 for a build that registered none
  friend bool operator==(const peer_node&, const peer_node&) = default;
};

/// What the membership actor tells the room directory after each heartbeat: this node's incarnation (a new
/// one means it was declared down meanwhile and its rooms may have been taken over) and every live node.
struct cluster_view {
  std::string incarnation;
  std::vector<peer_node> nodes;
};

/// A room: orders and fans out everything said in it. Replies and errors are protocol-level
/// (see room_error()).
using room_actor = caf::typed_actor<
    caf::replies_to<atom::join, join_request>::with<join_result>,
    caf::replies_to<atom::leave, member_ref>::with<bool>,
    caf::replies_to<atom::post, post_request>::with<protocol::chat_message>,
    caf::reacts_to<atom::typing, member_ref>, caf::reacts_to<atom::presence, std::string, bool>,
    caf::reacts_to<atom::notice, room_notice>,  ///< a change the HTTP API committed (see room_notice)
    caf::replies_to<atom::history, history_query>::with<std::vector<protocol::chat_message>>,
    caf::replies_to<atom::members, members_query>::with<members_page>,
    caf::reacts_to<atom::activate>,  ///< (to itself) try loading its state from the database again
    /// The room now belongs to another node: refuse new work, let the writer answer what is in flight, stop.
    /// The answer is the ownership epoch of this activation (0 before it loaded), for the new owner.
    caf::replies_to<atom::handover>::with<std::uint64_t>>;

}  // namespace chorus::actors

CAF_BEGIN_TYPE_ID_BLOCK(chorus, caf::first_custom_type_id)
CAF_ADD_TYPE_ID(chorus, (chorus::actors::outbound_event))
CAF_ADD_TYPE_ID(chorus, (chorus::actors::member_ref))
CAF_ADD_TYPE_ID(chorus, (chorus::actors::join_request))
CAF_ADD_TYPE_ID(chorus, (chorus::actors::join_result))
CAF_ADD_TYPE_ID(chorus, (chorus::actors::history_query))
CAF_ADD_TYPE_ID(chorus, (chorus::actors::store_result))
CAF_ADD_TYPE_ID(chorus, (std::vector<chorus::actors::store_result>))
CAF_ADD_TYPE_ID(chorus, (std::vector<chorus::storage::message_row>))
CAF_ADD_TYPE_ID(chorus, (chorus::storage::message_row))
CAF_ADD_TYPE_ID(chorus, (chorus::storage::room_snapshot))
CAF_ADD_TYPE_ID(chorus, (std::vector<chorus::protocol::chat_message>))
CAF_ADD_TYPE_ID(chorus, (chorus::actors::post_request))
CAF_ADD_TYPE_ID(chorus, (chorus::protocol::chat_message))
CAF_ADD_TYPE_ID(chorus, (chorus::protocol::member_info))
CAF_ADD_TYPE_ID(chorus, (std::vector<chorus::protocol::member_info>))
CAF_ADD_TYPE_ID(chorus, (chorus::actors::http_request))
CAF_ADD_TYPE_ID(chorus, (chorus::actors::http_response))
CAF_ADD_TYPE_ID(chorus, (chorus::actors::room_notice))
CAF_ADD_TYPE_ID(chorus, (chorus::storage::member_row))
CAF_ADD_TYPE_ID(chorus, (chorus::storage::room_access_row))
CAF_ADD_TYPE_ID(chorus, (chorus::actors::node_hello))
CAF_ADD_TYPE_ID(chorus, (chorus::actors::relay_batch))
CAF_ADD_TYPE_ID(chorus, (chorus::actors::peer_node))
CAF_ADD_TYPE_ID(chorus, (chorus::actors::cluster_view))
CAF_ADD_TYPE_ID(chorus, (std::vector<chorus::actors::peer_node>))
CAF_ADD_TYPE_ID(chorus, (chorus::actors::room_actor))  ///< the answer to a `claim` from another node
CAF_ADD_TYPE_ID(chorus, (std::vector<chorus::actors::outbound_event>))
CAF_ADD_TYPE_ID(chorus, (chorus::actors::members_query))
CAF_ADD_TYPE_ID(chorus, (chorus::actors::members_page))
CAF_END_TYPE_ID_BLOCK(chorus)

namespace chorus::actors {

// Every Chorus actor takes at least one spawn argument: CAF 0.17 dereferences a null argument tuple
// when a function-based actor is spawned with none, which UndefinedBehaviorSanitizer (rightly) stops.

/// Persists messages in batches, one PostgreSQL transaction per batch, and answers each `store` only after
/// its batch committed. A `store` carries consecutive rows of one room (what the room assigned during one
/// drain of its mailbox) and is answered once, one store_result per row; a batch holds every `store` that
/// arrived while the writer was busy. `activate` first writes everything queued, so a room reloading its
/// state sees all it sent before. Every room always uses the same writer, which keeps its rows in order.
using batch_writer_actor = caf::typed_actor<
    caf::replies_to<atom::store, std::vector<storage::message_row>>::with<std::vector<store_result>>,
    caf::replies_to<atom::activate, std::string>::with<storage::room_snapshot>,
    caf::reacts_to<atom::flush>>;  ///< write what is queued now

/// Serves history pages that a room's in-memory tail cannot.
using history_reader_actor = caf::typed_actor<
    caf::replies_to<atom::history, history_query>::with<std::vector<protocol::chat_message>>>;

/// Serves the HTTP API (api_routes) and the access rules rooms load on activation, on connections of its own
/// to PostgreSQL and Redis. `access` answers not_found for a room that does not exist.
using account_worker_actor =
    caf::typed_actor<caf::replies_to<atom::api, http_request>::with<http_response>,
                     caf::replies_to<atom::access, std::string>::with<storage::room_access_row>,
                     /// A connection authenticated as this user: not_found if the account is gone, else its
                     /// status ("online", "away", "busy", "invisible"); last seen becomes now.
                     caf::replies_to<atom::lookup, std::string>::with<std::string>,
                     caf::reacts_to<atom::gone, std::string>>;  ///< the user's last connection closed

/// Per-user message rate across the cluster: `limit` answers 0 (send now) or the milliseconds to wait.
using send_limiter_actor = caf::typed_actor<caf::replies_to<atom::limit, std::string>::with<std::uint32_t>,
                                            caf::reacts_to<atom::flush>>;

/// Keeps this node registered in Redis and the directory's view of the cluster current
/// (cluster/membership.hpp); `heartbeat` is its own timer.
using membership_actor = caf::typed_actor<caf::reacts_to<atom::heartbeat>>;

/// Finds the actor of a room by its id, on whichever node owns the room (cluster/room_directory.hpp).
/// `lookup` comes from this node's sessions; `claim` from a peer's directory that believes this node owns
/// the room (refused with `unavailable` when this node disagrees). `notice` passes a committed change on to
/// the room's actor, if the room is active (else there is nobody to tell: the room loads the change with
/// its rules when it next starts), or to the directory of the room's owner; `relay` is such a notice from a
/// peer, applied here only. `nodes` is the membership actor's latest view of the cluster. `handover` drains
/// the node: nothing is placed here any more, every room is handed over, and the answer (how many rooms)
/// comes once they have all stopped. A `nodes` request answers the nodes of the current view (clients are
/// told where else they may connect). `hello` answers who this node is now: its id and the incarnation it
/// registered last (the node actor asks on behalf of peers; `unavailable` before the first registration);
/// `hello` with a peer's id is the directory's own timer to dial that peer again. `unlisted` with an
/// incarnation: a peer that reaches Redis no longer finds that incarnation of this node there.
using room_directory =
    caf::typed_actor<caf::replies_to<atom::lookup, std::string>::with<room_actor>,
                     caf::replies_to<atom::hello>::with<node_hello>, caf::reacts_to<atom::hello, std::string>,
                     caf::replies_to<atom::claim, std::string>::with<room_actor>,
                     caf::reacts_to<atom::notice, room_notice>, caf::reacts_to<atom::relay, room_notice>,
                     caf::reacts_to<atom::nodes, cluster_view>, caf::reacts_to<atom::unlisted, std::string>,
                     caf::replies_to<atom::handover>::with<std::uint64_t>,
                     caf::replies_to<atom::nodes>::with<std::vector<peer_node>>>;

/// Counts each user's connections: `connected` answers whether this is the user's first in the cluster,
/// `gone` whether it was the last (actors/presence_actor.hpp). `heartbeat` is its own timer, refreshing this
/// node's presence entry in Redis.
using presence_actor =
    caf::typed_actor<caf::replies_to<atom::connected, std::string>::with<bool>,
                     caf::replies_to<atom::gone, std::string>::with<bool>, caf::reacts_to<atom::heartbeat>>;

/// A node's one actor published through the middleman on its cluster port: what other nodes connect to and
/// monitor (cluster/peering). `hello` says who the node is; `relay` hands one event to sessions on this node;
/// `notice` passes a committed room change on to this node's room directory; `claim` asks that directory for
/// a room this node owns; `unlisted` tells that directory that a peer no longer finds this incarnation of the
/// node in Redis.
using node_actor =
    caf::typed_actor<caf::replies_to<atom::hello>::with<node_hello>, caf::reacts_to<atom::relay, relay_batch>,
                     caf::reacts_to<atom::notice, room_notice>, caf::reacts_to<atom::unlisted, std::string>,
                     caf::replies_to<atom::claim, std::string>::with<room_actor>>;

/// The CAF error category of Chorus errors; the code is a protocol::error_code.
inline constexpr caf::atom_value error_category = caf::atom("chorus");

inline caf::error make_error(protocol::error_code code) {
  return caf::error(static_cast<std::uint8_t>(code), error_category);
}

/// The protocol error an actor error stands for: its own code for Chorus errors, `unavailable` for
/// anything else (a timeout, a dead peer), since the client may simply retry.
inline protocol::error_code to_protocol_error(const caf::error& err) {
  if (err.category() == error_category) return static_cast<protocol::error_code>(err.code());
  return protocol::error_code::unavailable;
}

// -- inspection: how each message is (de)serialised when it crosses nodes --

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, outbound_event& x) {
  // The shared bytes travel as a plain string and become a fresh shared frame on arrival.
  std::string bytes = x.bytes ? *x.bytes : std::string{};
  auto kind = static_cast<std::uint8_t>(x.kind);
  std::string room = x.room ? *x.room : std::string{};
  return f(caf::meta::type_name("outbound_event"), bytes, kind, x.seq, room,
           caf::meta::load_callback([&]() -> caf::error {
             x.bytes = std::make_shared<const std::string>(std::move(bytes));
             x.kind = static_cast<traffic>(kind);
             x.room = room.empty() ? nullptr : std::make_shared<const std::string>(std::move(room));
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, member_ref& x) {
  return f(caf::meta::type_name("member_ref"), x.user, x.session, x.relay);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, join_request& x) {
  return f(caf::meta::type_name("join_request"), x.member, x.resume, x.last_seen, x.invisible);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, members_query& x) {
  return f(caf::meta::type_name("members_query"), x.after, x.limit);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, members_page& x) {
  return f(caf::meta::type_name("members_page"), x.members, x.count, x.more);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, join_result& x) {
  return f(caf::meta::type_name("join_result"), x.last_seq, x.members, x.replay, x.complete, x.member_count,
           x.member_events);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, history_query& x) {
  return f(caf::meta::type_name("history_query"), x.room, x.from, x.newer, x.limit, x.max_seq);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, store_result& x) {
  auto status = static_cast<std::uint8_t>(x.status);
  return f(caf::meta::type_name("store_result"), status, x.original,
           caf::meta::load_callback([&]() -> caf::error {
             x.status = static_cast<store_status>(status);
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, post_request& x) {
  return f(caf::meta::type_name("post_request"), x.user, x.text, x.client_msg_id);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_hello& x) {
  return f(caf::meta::type_name("node_hello"), x.node_id, x.incarnation);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, relay_batch& x) {
  return f(caf::meta::type_name("relay_batch"), x.sessions, x.events);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, peer_node& x) {
  return f(caf::meta::type_name("peer_node"), x.id, x.incarnation, x.host, x.client_port, x.cluster_port,
           x.wire_version);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cluster_view& x) {
  return f(caf::meta::type_name("cluster_view"), x.incarnation, x.nodes);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, http_request& x) {
  // CAF 0.17 cannot inspect std::optional: the token travels as a flag and a string.
  bool has_token = x.bearer_token.has_value();
  std::string token = x.bearer_token.value_or(std::string{});
  return f(caf::meta::type_name("http_request"), x.method, x.path, x.query, x.body, x.content_type, has_token,
           token, x.remote_ip, caf::meta::load_callback([&]() -> caf::error {
             x.bearer_token = has_token ? std::optional<std::string>(std::move(token)) : std::nullopt;
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, http_response& x) {
  return f(caf::meta::type_name("http_response"), x.status, x.body, x.headers);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, room_notice& x) {
  auto what = static_cast<std::uint8_t>(x.what);
  return f(caf::meta::type_name("room_notice"), what, x.room, x.user, x.frame, x.member, x.access, x.epoch,
           caf::meta::load_callback([&]() -> caf::error {
             x.what = static_cast<room_notice::kind>(what);
             return caf::none;
           }));
}

}  // namespace chorus::actors

namespace chorus::protocol {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chat_message& x) {
  return f(caf::meta::type_name("chat_message"), x.id, x.room, x.seq, x.user, x.text, x.ts_ms,
           x.client_msg_id);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, member_info& x) {
  return f(caf::meta::type_name("member_info"), x.user, x.online);
}

}  // namespace chorus::protocol

namespace chorus::storage {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, message_row& x) {
  return f(caf::meta::type_name("message_row"), x.id, x.room, x.seq, x.author, x.text, x.client_msg_id,
           x.created_at_ms, x.epoch);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, member_row& x) {
  auto role = static_cast<std::uint8_t>(x.role);
  return f(caf::meta::type_name("member_row"), x.room_id, x.user_id, role, x.granted, x.revoked, x.muted,
           x.archived, x.pinned, x.last_read_seq, x.joined_at_ms,
           caf::meta::load_callback([&]() -> caf::error {
             x.role = static_cast<member_role>(role);
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, room_access_row& x) {
  auto kind = static_cast<std::uint8_t>(x.kind);
  return f(caf::meta::type_name("room_access_row"), x.room_id, kind, x.is_public, x.deleted, x.last_seq,
           x.members, caf::meta::load_callback([&]() -> caf::error {
             x.kind = static_cast<room_kind>(kind);
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, room_snapshot& x) {
  return f(caf::meta::type_name("room_snapshot"), x.last_seq, x.tail, x.epoch);
}

}  // namespace chorus::storage
