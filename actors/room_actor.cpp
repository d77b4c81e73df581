// The room actor: ordering, membership, ack-after-commit, idempotent sends, resume and fan-out of one room.
#include "actors/room_actor.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <optional>
#include <random>
#include <span>

#include "actors/stored_message.hpp"

namespace chorus::actors {

namespace {

using protocol::chat_message;
using protocol::error_code;

constexpr std::chrono::milliseconds max_load_backoff{5000};
/// Most rows one `store` request carries; a longer drain sends several.
constexpr std::size_t max_rows_per_store = 1000;
/// How often a crowded room tells its members how many users it has, at most.
constexpr std::chrono::seconds member_count_interval{1};

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

/// A UUIDv7-shaped id: time-ordered, so ids sort roughly by creation, and unique without coordination.
std::string make_message_id(std::int64_t ts_ms, std::uint64_t entropy, std::uint64_t seq) {
  std::uint64_t hi = (static_cast<std::uint64_t>(ts_ms) << 16) | 0x7000u | ((entropy >> 52) & 0x0fffu);
  std::uint64_t lo = (entropy ^ (seq * 0x9e3779b97f4a7c15ull)) & 0x3fffffffffffffffull;
  lo |= 0x8000000000000000ull;  // RFC 9562 variant bits
  // By hand rather than snprintf, which was about 1 % of the node's samples: one id per send.
  std::string id(36, '-');
  auto hex = [&id](std::size_t at, std::uint64_t v, std::size_t digits) {
    for (std::size_t i = digits; i-- > 0; v >>= 4) id[at + i] = "0123456789abcdef"[v & 0xf];
  };
  hex(0, hi >> 32, 8);
  hex(9, hi >> 16, 4);
  hex(14, hi, 4);
  hex(19, lo >> 48, 4);
  hex(24, lo, 12);
  return id;
}

/// The send_id_index key of a send.
std::uint64_t send_key(const std::string& user, const std::string& client_msg_id) {
  const std::uint64_t a = std::hash<std::string_view>{}(user);
  const std::uint64_t b = std::hash<std::string_view>{}(client_msg_id);
  return a ^ (b + 0x9e3779b97f4a7c15ull + (a << 6) + (a >> 2));
}

bool same_send(const chat_message& msg, const std::string& user, const std::string& client_msg_id) {
  return msg.client_msg_id == client_msg_id && msg.user == user;
}

/// Removes the entry of `msg`, unless its slot was taken over by another send with the same key.
void forget_id(send_id_index& index, const chat_message& msg) {
  if (msg.client_msg_id.empty()) return;
  if (auto it = index.find(send_key(msg.user, msg.client_msg_id)); it != index.end() && it->second == msg.seq)
    index.erase(it);
}

/// Whether events for this member go through its node's relay rather than straight to the session.
bool relayed(room_pointer self, const member_ref& member) {
  return member.relay && member.session.node() != self->node();
}

/// Sends events to every member (but `except_user`), in order: straight to sessions on this node, and one
/// relay_batch per other node with members here, never one cross-node message per remote session. Several
/// events (the messages of one commit) go as one message to each session and each node.
void fan_out(room_pointer self, std::span<const outbound_event> events,
             const std::string* except_user = nullptr) {
  if (events.empty()) return;
  auto& st = self->state;
  // A handful of nodes at most have members in one room: a vector searched linearly beats a map.
  std::vector<std::pair<relay_sink, std::vector<event_sink>>> batches;
  std::optional<std::vector<outbound_event>> together;
  for (const auto& [addr, member] : st.sessions) {
    if (except_user != nullptr && member.user == *except_user) continue;
    if (st.remote_sessions == 0 || !relayed(self, member)) {
      if (events.size() == 1) {
        self->send(member.session, atom::deliver_v, events.front());
        continue;
      }
      if (!together) together.emplace(events.begin(), events.end());
      self->send(member.session, atom::deliver_v, *together);
      continue;
    }
    auto it = std::find_if(batches.begin(), batches.end(),
                           [&](const auto& b) { return b.first.address() == member.relay.address(); });
    if (it == batches.end()) it = batches.insert(batches.end(), {member.relay, {}});
    it->second.push_back(member.session);
  }
  for (auto& [relay, sessions] : batches)
    self->send(relay, atom::relay_v, relay_batch{std::move(sessions), {events.begin(), events.end()}});
}

void fan_out(room_pointer self, const outbound_event& ev, const std::string* except_user = nullptr) {
  fan_out(self, std::span(&ev, 1), except_user);
}

/// The event of a committed message, tagged with its seq so that sessions know where to resume from.
outbound_event message_event(const room_state& st, const chat_message& msg) {
  return {std::make_shared<const std::string>(protocol::encode_message_event(msg)), traffic::essential,
          msg.seq, st.shared_id};
}

outbound_event shared(std::string bytes, traffic kind) {
  return {std::make_shared<const std::string>(std::move(bytes)), kind, 0, nullptr};
}

/// The first `most` users of the room, by user id.
std::vector<protocol::member_info> member_list(const room_state& st, std::size_t most) {
  std::vector<protocol::member_info> out;
  out.reserve(std::min(most, st.sessions_per_user.size()));
  // Everyone with a session in the room is connected, hence online.
  for (const auto& [user, count] : st.sessions_per_user) {
    if (out.size() == most) break;
    out.push_back({user, true});
  }
  return out;
}

void announce_count(room_pointer self) {
  auto& st = self->state;
  st.count_due.reset();
  st.announced_count = st.sessions_per_user.size();
  fan_out(self, shared(protocol::encode_member_count(st.id, st.announced_count), traffic::essential));
}

/// After users came or went: the room becomes crowded (its members hear the count at once, which tells them
/// the per-user events stop), stops being crowded (everyone gets the whole list), or, while crowded, has a
/// member_count event due within a second.
void users_changed(room_pointer self) {
  auto& st = self->state;
  const auto users = st.sessions_per_user.size();
  const auto limit = st.services.member_events_limit;
  if (!st.crowded) {
    if (users > limit) {
      st.crowded = true;
      announce_count(self);
    }
    return;
  }
  if (users <= limit / 2) {
    st.crowded = false;
    st.count_due.reset();
    fan_out(self, shared(protocol::encode_members_event(st.id, member_list(st, users)), traffic::essential));
    return;
  }
  if (!st.count_due) {
    st.count_due = self->clock().now() + member_count_interval;
    self->delayed_send(caf::actor_cast<room_actor>(self), member_count_interval, atom::activate_v);
  }
}

/// From the `activate` handler: the member_count event that users_changed scheduled, if it is due and the
/// count moved since the last one.
void check_count(room_pointer self) {
  auto& st = self->state;
  if (!st.count_due || self->clock().now() < *st.count_due) return;
  st.count_due.reset();
  if (st.crowded && st.sessions_per_user.size() != st.announced_count) announce_count(self);
}

/// Removes a session; tells the others when it was the user's last one. Returns whether it was a member.
bool remove_session(room_pointer self, const caf::actor_addr& addr) {
  auto& st = self->state;
  auto it = st.sessions.find(addr);
  if (it == st.sessions.end()) return false;
  std::string user = std::move(it->second.user);
  self->demonitor(it->second.session.address());
  if (relayed(self, it->second)) --st.remote_sessions;
  const bool hidden = st.hidden.erase(addr) > 0;
  st.sessions.erase(it);
  if (hidden) return true;  // nobody saw it come
  auto count = st.sessions_per_user.find(user);
  if (--count->second == 0) {
    st.sessions_per_user.erase(count);
    if (!st.crowded) fan_out(self, shared(protocol::encode_member_left(st.id, user), traffic::essential));
    users_changed(self);
  }
  return true;
}

// ---- the tail cache: the last committed messages, consecutive by seq ----

const chat_message* cached(const room_state& st, std::uint64_t seq) {
  if (st.tail.empty() || seq < st.tail.front().seq || seq > st.tail.back().seq) return nullptr;
  return &st.tail[seq - st.tail.front().seq];
}

void remember(room_pointer self, chat_message msg) {
  auto& st = self->state;
  if (st.services.tail_cache_size == 0) return;
  if (!msg.client_msg_id.empty()) st.tail_ids[send_key(msg.user, msg.client_msg_id)] = msg.seq;
  st.tail.push_back(std::move(msg));
  while (st.tail.size() > st.services.tail_cache_size) {
    forget_id(st.tail_ids, st.tail.front());
    st.tail.pop_front();
  }
}

/// A stored message becomes real: its senders get their answer, and its event joins `events`, which the
/// caller sends to every member once the commit's messages are all answered.
void deliver_committed(room_pointer self, chat_message&& msg,
                       std::vector<caf::typed_response_promise<chat_message>>& waiting,
                       std::vector<outbound_event>& events) {
  self->state.committed_seq = msg.seq;
  for (auto& rp : waiting) rp.deliver(msg);
  events.push_back(message_event(self->state, msg));
  remember(self, std::move(msg));
}

// ---- loading and resyncing ----

void send_unsent(room_pointer self);

void run_deferred(room_pointer self) {
  auto deferred = std::move(self->state.deferred);
  self->state.deferred.clear();
  // Sends waiting for the load go to the writer together, not one `store` each.
  self->state.replaying = true;
  for (auto& run : deferred) run();
  self->state.replaying = false;
  send_unsent(self);
}

void load(room_pointer self);
void on_load_failed(room_pointer self, const caf::error& err);
void catch_up(room_pointer self, std::uint32_t generation, storage::room_snapshot snapshot);

/// The first seq of the snapshot's tail, or the one after its last_seq when it holds none.
std::uint64_t first_in_tail(const storage::room_snapshot& snapshot) {
  return snapshot.tail.empty() ? snapshot.last_seq + 1 : snapshot.tail.front().seq;
}

void on_loaded(room_pointer self, storage::room_snapshot& snapshot, std::uint32_t generation) {
  auto& st = self->state;
  // More messages committed in doubt than the tail holds: members get the ones before it first.
  if (st.ever_loaded && st.services.reader && snapshot.last_seq > st.committed_seq &&
      first_in_tail(snapshot) > st.committed_seq + 1) {
    catch_up(self, generation, std::move(snapshot));
    return;
  }
  if (!st.loaded && st.load_backoff.count() > 0) spdlog::info("room {}: loaded from PostgreSQL again", st.id);
  // The cache must stay consecutive: if the stored tail does not continue it, start it afresh.
  if (!snapshot.tail.empty() && !st.tail.empty() && snapshot.tail.front().seq > st.tail.back().seq + 1) {
    st.tail.clear();
    st.tail_ids.clear();
  }
  for (auto& row : snapshot.tail) {
    if (!st.tail.empty() && row.seq <= st.tail.back().seq) continue;
    auto msg = to_message(std::move(row));
    // Stored but never announced: its write was answered as failed (the commit was in doubt), yet it
    // committed. Members get it now, so their sequence has no gap.
    if (st.ever_loaded && msg.seq > st.committed_seq) fan_out(self, message_event(st, msg));
    remember(self, std::move(msg));
  }
  st.committed_seq = st.assigned_seq = snapshot.last_seq;
  st.epoch = snapshot.epoch;
  st.loaded = st.ever_loaded = true;
  st.syncing = false;
  st.load_backoff = std::chrono::milliseconds(0);
  run_deferred(self);
}

/// Reads the stored messages between the last one members got and the snapshot's tail, a page at a time,
/// and sends them in order; then loads the snapshot as usual. The room stays syncing meanwhile.
void catch_up(room_pointer self, std::uint32_t generation, storage::room_snapshot snapshot) {
  auto& st = self->state;
  spdlog::warn("room {}: {} stored messages before its tail were never delivered here; sending them", st.id,
               first_in_tail(snapshot) - 1 - st.committed_seq);
  history_query page{st.id, st.committed_seq, true, st.services.history_limit, first_in_tail(snapshot) - 1};
  self->request(st.services.reader, st.services.request_timeout, atom::history_v, std::move(page))
      .then(
          [self, generation, snapshot = std::move(snapshot)](std::vector<chat_message>& rows) mutable {
            auto& st = self->state;
            if (generation != st.generation) return;
            // A page that does not continue the room would leave a gap: load again later instead.
            if (rows.empty() || rows.front().seq != st.committed_seq + 1) {
              on_load_failed(self, make_error(error_code::unavailable));
              return;
            }
            for (auto& msg : rows) {
              if (msg.seq != st.committed_seq + 1) break;
              fan_out(self, message_event(st, msg));
              st.committed_seq = msg.seq;
              remember(self, std::move(msg));
            }
            on_loaded(self, snapshot, generation);
          },
          [self, generation](caf::error& err) {
            if (generation == self->state.generation) on_load_failed(self, err);
          });
}

void on_load_failed(room_pointer self, const caf::error& err) {
  auto& st = self->state;
  if (st.load_backoff.count() == 0)
    spdlog::warn("room {}: cannot load its state ({}); sends fail with `unavailable` until it can", st.id,
                 protocol::to_string(to_protocol_error(err)));
  st.loaded = false;
  st.syncing = false;
  st.load_backoff = std::min(max_load_backoff, std::max(std::chrono::milliseconds(100), st.load_backoff * 2));
  self->delayed_send(caf::actor_cast<room_actor>(self), st.load_backoff, atom::activate_v);
  run_deferred(self);
}

/// Reads the room's stored sequence and recent messages. Answers from before this call no longer count.
void load_messages(room_pointer self, std::uint32_t generation);
void on_gone(room_pointer self);

/// Loads the room's access rules (once), then its messages.
void load(room_pointer self) {
  auto& st = self->state;
  st.syncing = true;
  auto generation = ++st.generation;
  if (!st.services.accounts || st.access_loaded) {
    load_messages(self, generation);
    return;
  }
  self->request(st.services.accounts, st.services.request_timeout, atom::access_v, st.id)
      .then(
          [self, generation](storage::room_access_row& row) {
            auto& st = self->state;
            if (generation != st.generation) return;
            // dev_mode: a room that the message path made on a first join has no members; it stays open.
            bool made_on_join = st.services.create_unknown && row.members.empty();
            st.access = made_on_join ? room_access::open_room() : room_access::from(row);
            st.access_loaded = true;
            if (st.access.deleted())
              on_gone(self);
            else
              load_messages(self, generation);
          },
          [self, generation](caf::error& err) {
            auto& st = self->state;
            if (generation != st.generation) return;
            if (to_protocol_error(err) != error_code::not_found) {
              on_load_failed(self, err);
            } else if (st.services.create_unknown) {
              st.access = room_access::open_room();  // dev_mode: made on first join
              st.access_loaded = true;
              load_messages(self, generation);
            } else {
              on_gone(self);
            }
          });
}

/// Refuses everything that waits with `code` and stops the actor, so that the directory forgets it and the
/// sessions in it (which monitor it) hear of it. Senders wait on the room without a timer of their own
/// (it answers every post): they are answered here.
void stop_room(room_pointer self, error_code code) {
  auto& st = self->state;
  st.handing_over = !st.gone;  // joins and posts still queued are refused (`unavailable`) from now on
  st.syncing = false;
  st.loaded = false;
  for (auto& [seq, entry] : st.in_flight)
    for (auto& rp : entry.waiting) rp.deliver(make_error(code));
  st.in_flight.clear();
  st.in_flight_ids.clear();
  st.unsent.clear();
  run_deferred(self);
  self->quit();
}

/// The room does not exist (or no longer does): whatever waits is not_found.
void on_gone(room_pointer self) {
  self->state.gone = true;
  stop_room(self, error_code::not_found);
}

/// Handing over: once the writer has answered every row in flight (their senders got their acks), stop;
/// the sessions join the room again on its new owner, which loads the stored sequence.
void finish_handover(room_pointer self) {
  auto& st = self->state;
  if (!st.handing_over || !st.in_flight.empty() || !st.unsent.empty()) return;
  spdlog::info("room {}: handed over at seq {}", st.id, st.committed_seq);
  stop_room(self, error_code::unavailable);
}

void load_messages(room_pointer self, std::uint32_t generation) {
  auto& st = self->state;
  self->request(st.services.writer, st.services.request_timeout, atom::activate_v, st.id)
      .then(
          [self, generation](storage::room_snapshot& snapshot) {
            if (generation == self->state.generation) on_loaded(self, snapshot, generation);
          },
          [self, generation](caf::error& err) {
            if (generation == self->state.generation) on_load_failed(self, err);
          });
}

using post_promises = std::vector<caf::typed_response_promise<chat_message>>;

void answer(post_promises& waiting, const chat_message& msg) {
  for (auto& rp : waiting) rp.deliver(msg);
}

void answer(post_promises& waiting, error_code code) {
  for (auto& rp : waiting) rp.deliver(make_error(code));
}

void post(room_pointer self, post_request req, post_promises waiting);

/// A write failed: nothing in flight can be trusted to follow on. Reload what is really stored. The sends in
/// flight fail (clients retry them safely: client_msg_id makes retries idempotent), unless `take_again`:
/// then none of them was written, and they are taken again, in order, ahead of what came during the load.
void resync(room_pointer self, bool take_again = false) {
  auto& st = self->state;
  if (st.handing_over) {
    stop_room(self, error_code::unavailable);  // the new owner reloads; these senders retry there
    return;
  }
  std::vector<in_flight_message> again;
  for (auto& [seq, entry] : st.in_flight) {
    if (take_again)
      again.push_back(std::move(entry));
    else
      answer(entry.waiting, error_code::unavailable);
  }
  st.in_flight.clear();
  st.in_flight_ids.clear();
  st.unsent.clear();
  st.stores.clear();
  st.assigned_seq = st.committed_seq;
  load(self);
  for (auto it = again.rbegin(); it != again.rend(); ++it) {
    post_request req{std::move(it->msg.user), std::move(it->msg.text), std::move(it->msg.client_msg_id)};
    st.deferred.push_front([self, req = std::move(req), waiting = std::move(it->waiting)]() mutable {
      post(self, std::move(req), std::move(waiting));
    });
  }
}

// ---- the write path: one `store` per mailbox drain, one answer per `store`, a watchdog per room ----

/// Makes sure a watchdog message is on its way for the oldest unanswered `store`.
void arm_watchdog(room_pointer self) {
  auto& st = self->state;
  if (st.watchdog_at || st.stores.empty()) return;
  auto due = st.stores.front().second + st.services.request_timeout;
  st.watchdog_at = due;
  auto delay = std::max(caf::actor_clock::duration_type::zero(), due - self->clock().now());
  self->delayed_send(caf::actor_cast<room_actor>(self), delay, atom::activate_v);
}

/// On every `activate`: when the watchdog is due, a `store` the writer left unanswered for
/// request_timeout resyncs the room (its senders get `unavailable`; retries are idempotent).
void check_watchdog(room_pointer self) {
  auto& st = self->state;
  auto now = self->clock().now();
  if (!st.watchdog_at || now < *st.watchdog_at) return;  // not the watchdog (or no longer needed)
  st.watchdog_at.reset();
  if (st.stores.empty()) return;
  if (now - st.stores.front().second >= st.services.request_timeout) {
    spdlog::warn("room {}: the writer left seqs up to {} unanswered; resyncing", st.id,
                 st.stores.front().first);
    resync(self);
    return;
  }
  arm_watchdog(self);
}

/// The writer answered the `store` of seqs [first, first + count): all committed, or none.
void on_stored(room_pointer self, std::uint64_t first, std::size_t count,
               std::vector<store_result>& results) {
  auto& st = self->state;
  auto last = first + count - 1;
  while (!st.stores.empty() && st.stores.front().first <= last) st.stores.pop_front();
  if (results.size() != count) {
    spdlog::error("room {}: writer answered {} rows for {}; resyncing", st.id, results.size(), count);
    resync(self);
    return;
  }
  auto take = [&](std::uint64_t seq) {
    auto node = st.in_flight.extract(seq);
    if (!node.empty()) forget_id(st.in_flight_ids, node.mapped().msg);
    return node;
  };
  bool all_stored = true;
  for (std::size_t i = 0; i < count; ++i) {
    if (results[i].status == store_status::stored) continue;
    if (results[i].status == store_status::fenced) {
      // Another node activated the room since (this node was paused or cut off, and was declared down):
      // it owns the room now. Nothing of this room was written; stop so that sessions go to the owner.
      spdlog::warn("room {}: another node took the room over (epoch {} is stale); stopping here", st.id,
                   st.epoch);
      stop_room(self, error_code::unavailable);
      return;
    }
    all_stored = false;
    if (results[i].status != store_status::duplicate) continue;
    // Sent before (through another room actor, before a restart, on another node, or longer ago than the
    // tail cache reaches): the sender gets the original.
    auto node = take(first + i);
    if (node.empty()) continue;
    answer(node.mapped().waiting, to_message(std::move(results[i].original)));
  }
  if (!all_stored) {
    // The rest was refused: certainly not written, as the writer commits a room's rows all or none. A
    // duplicate in this store, or in another store of the room that the writer committed with it, is the
    // usual reason; rows that did not follow on from what is stored the other. Either way those sends, and
    // those of the room's later stores (refused in turn for not following on), are taken again once the
    // room has reloaded: one client's retry costs nobody else a failed send.
    resync(self, true);
    return;
  }
  const auto committed_at = std::chrono::steady_clock::now();
  std::vector<outbound_event> events;
  events.reserve(count);
  for (auto seq = first; seq <= last; ++seq) {
    auto node = take(seq);
    if (node.empty() || seq != st.committed_seq + 1) {
      spdlog::error("room {}: writer acknowledged seq {} after {}; resyncing", st.id, seq, st.committed_seq);
      if (!node.empty())
        for (auto& rp : node.mapped().waiting) rp.deliver(make_error(error_code::unavailable));
      fan_out(self, events);
      resync(self);
      return;
    }
    if (st.services.counters) st.services.counters->send_ack.observe(committed_at - node.mapped().taken);
    deliver_committed(self, std::move(node.mapped().msg), node.mapped().waiting, events);
  }
  fan_out(self, events);
  if (st.services.counters) st.services.counters->messages_stored.fetch_add(count, std::memory_order_relaxed);
  finish_handover(self);
}

/// Hands every row assigned since the last call to the writer, as one request answered once.
void send_unsent(room_pointer self) {
  auto& st = self->state;
  if (st.unsent.empty()) return;
  auto rows = std::move(st.unsent);
  st.unsent.clear();
  auto first = rows.front().seq;
  auto count = rows.size();
  auto generation = st.generation;
  st.stores.emplace_back(rows.back().seq, self->clock().now());
  arm_watchdog(self);
  // No timeout per request (each would cost the actor clock an insertion and a cancellation): the
  // writer answers every store, and the watchdog covers one that never answers.
  self->request(st.services.writer, caf::infinite, atom::store_v, std::move(rows))
      .then(
          [self, generation, first, count](std::vector<store_result>& results) {
            if (generation == self->state.generation) on_stored(self, first, count, results);
          },
          [self, generation](caf::error&) {
            if (generation == self->state.generation) resync(self);
          });
}

/// The oldest `store` still unanswered has waited shed_after or longer: the writer is not keeping up (or
/// PostgreSQL stalls), and a send taken now would wait behind all of it. Refusing it at once bounds both
/// the wait of the sends already taken and what the room holds; the client retries with its client_msg_id.
bool writes_behind(room_pointer self) {
  const auto& st = self->state;
  return st.services.shed_after.count() > 0 && !st.stores.empty() &&
         self->clock().now() - st.stores.front().second >= st.services.shed_after;
}

/// A row was assigned: send at the end of this mailbox drain, so that every send that arrived together
/// travels in one `store` (an `activate` to itself marks the end when more messages are queued).
void queue_for_writer(room_pointer self, storage::message_row row) {
  auto& st = self->state;
  st.unsent.push_back(std::move(row));
  if (st.replaying) return;
  if (st.unsent.size() >= max_rows_per_store || self->mailbox().empty()) {
    send_unsent(self);
  } else if (!st.drain_end_queued) {
    st.drain_end_queued = true;
    self->send(caf::actor_cast<room_actor>(self), atom::activate_v);
  }
}

// ---- requests ----

/// Takes a send: every promise in `waiting` gets its answer (more than one for a send taken again after a
/// resync, with the retries of it that waited on it).
void post(room_pointer self, post_request req, post_promises waiting) {
  auto& st = self->state;
  if (st.syncing) {
    st.deferred.push_back([self, req = std::move(req), waiting = std::move(waiting)]() mutable {
      post(self, std::move(req), std::move(waiting));
    });
    return;
  }
  if (st.gone) {
    answer(waiting, error_code::not_found);
    return;
  }
  if (!st.access.check(req.user, action::post)) {
    answer(waiting, error_code::forbidden);
    return;
  }
  const auto key = req.client_msg_id.empty() ? 0 : send_key(req.user, req.client_msg_id);
  if (!req.client_msg_id.empty()) {
    if (auto it = st.tail_ids.find(key); it != st.tail_ids.end()) {
      if (const auto* original = cached(st, it->second);
          original != nullptr && same_send(*original, req.user, req.client_msg_id)) {
        answer(waiting, *original);
        return;
      }
    }
    if (auto it = st.in_flight_ids.find(key); it != st.in_flight_ids.end()) {
      if (auto sent = st.in_flight.find(it->second);
          sent != st.in_flight.end() && same_send(sent->second.msg, req.user, req.client_msg_id)) {
        auto& others = sent->second.waiting;
        others.insert(others.end(), waiting.begin(), waiting.end());
        return;
      }
    }
  }
  if (!st.loaded || st.handing_over) {
    answer(waiting, error_code::unavailable);
    return;
  }
  if (writes_behind(self)) {
    if (st.services.counters) st.services.counters->sends_shed.fetch_add(1, std::memory_order_relaxed);
    answer(waiting, error_code::unavailable);
    return;
  }
  chat_message msg;
  msg.seq = ++st.assigned_seq;
  msg.ts_ms = now_ms();
  msg.id = make_message_id(msg.ts_ms, st.id_entropy, msg.seq);
  msg.room = st.id;
  msg.user = std::move(req.user);
  msg.text = std::move(req.text);
  msg.client_msg_id = std::move(req.client_msg_id);
  auto seq = msg.seq;
  if (!msg.client_msg_id.empty()) st.in_flight_ids[key] = seq;
  auto row = to_row(msg);
  row.epoch = st.epoch;
  st.in_flight.emplace(
      seq, in_flight_message{std::move(msg), std::move(waiting), std::chrono::steady_clock::now()});
  queue_for_writer(self, std::move(row));
}

/// A client resumes from a seq this room never committed: it saw messages of another activation of the room.
/// That happens when this node was cut off while another ran the room, and that one went away without
/// handing it back (or the client is wrong). Reads what is stored after this room's last message: if
/// another activation wrote it, the room reloads (and sends its members what they missed). Requests wait
/// meanwhile. At most once a second, so that a client with a wrong last_seq costs one small read a second.
bool check_behind(room_pointer self) {
  auto& st = self->state;
  const auto now = self->clock().now();
  if (!st.services.reader || (st.behind_checked_at && now - *st.behind_checked_at < std::chrono::seconds(1)))
    return false;
  st.behind_checked_at = now;
  st.syncing = true;
  const auto generation = st.generation;
  history_query next{st.id, st.committed_seq, true, 1, std::numeric_limits<std::uint64_t>::max()};
  self->request(st.services.reader, st.services.request_timeout, atom::history_v, std::move(next))
      .then(
          [self, generation](std::vector<chat_message>& rows) {
            auto& st = self->state;
            if (generation != st.generation) return;
            st.syncing = false;
            if (!rows.empty()) {
              // This room's own write, committed and not yet answered, is no news.
              auto mine = st.in_flight.find(rows.front().seq);
              if (mine == st.in_flight.end() || mine->second.msg.id != rows.front().id) {
                spdlog::warn("room {}: seq {} was stored by another activation of the room; reloading", st.id,
                             rows.front().seq);
                resync(self, true);  // the sends in flight cannot be written under this epoch either
                return;
              }
            }
            run_deferred(self);
          },
          [self, generation](caf::error&) {
            auto& st = self->state;
            if (generation != st.generation) return;
            st.syncing = false;
            run_deferred(self);
          });
  return true;
}

/// A leave waits behind whatever waits for a load (or for a check that a resume started): a join from the
/// same session may be among those, and the leave must not overtake it, or the join would let the session
/// in after it left (a session leaves a join that timed out).
void leave(room_pointer self, caf::actor_addr addr, caf::typed_response_promise<bool> rp) {
  auto& st = self->state;
  if (st.syncing || !st.deferred.empty()) {
    st.deferred.push_back([self, addr, rp]() mutable { leave(self, addr, rp); });
    return;
  }
  rp.deliver(remove_session(self, addr));
}

void join(room_pointer self, join_request req, caf::typed_response_promise<join_result> rp) {
  auto& st = self->state;
  if (st.syncing) {
    st.deferred.push_back([self, req = std::move(req), rp]() mutable { join(self, std::move(req), rp); });
    return;
  }
  auto& ref = req.member;
  if (st.handing_over) {
    rp.deliver(make_error(error_code::unavailable));  // the directory sends the next join to the new owner
    return;
  }
  // A private room the user is not in does not exist for it; so does a room that is gone.
  if (st.gone || !st.access.check(ref.user, action::read)) {
    rp.deliver(make_error(error_code::not_found));
    return;
  }
  // Until its rules and its stored sequence have loaded once, the room could let in a user its rules keep
  // out, or look empty (seq 0) to the joiner and never send what it missed: the client retries.
  if (!st.ever_loaded || (st.services.accounts && !st.access_loaded)) {
    rp.deliver(make_error(error_code::unavailable));
    return;
  }
  if (req.resume && !st.loaded) {
    // Without its stored sequence the room cannot say what was missed (its seq may read 0): the client
    // retries the resume rather than being told to page from nowhere.
    rp.deliver(make_error(error_code::unavailable));
    return;
  }
  if (req.resume && req.last_seen > st.committed_seq && check_behind(self)) {
    st.deferred.push_back([self, req = std::move(req), rp]() mutable { join(self, std::move(req), rp); });
    return;
  }
  auto addr = ref.session.address();
  if (!st.sessions.count(addr)) {
    // An invisible user looks offline to everyone else: no member_joined, and no place in lists or counts.
    bool first_of_user = !req.invisible && st.sessions_per_user[ref.user]++ == 0;
    if (req.invisible) st.hidden.insert(addr);
    if (first_of_user) {
      users_changed(self);  // the joiner may make the room crowded: then the count replaces member_joined
      if (!st.crowded) {
        fan_out(self, shared(protocol::encode_member_joined(st.id, ref.user), traffic::essential));
        fan_out(self, shared(protocol::encode_presence(ref.user, protocol::presence_status::online),
                             traffic::droppable));
      }
    }
    self->monitor(ref.session);
    if (relayed(self, ref)) ++st.remote_sessions;
    st.sessions.emplace(addr, ref);
  }
  join_result result{st.committed_seq,
                     member_list(st, st.services.member_events_limit),
                     {},
                     true,
                     st.sessions_per_user.size(),
                     !st.crowded};
  if (req.resume && req.last_seen < st.committed_seq) {
    auto first = req.last_seen + 1;
    if (cached(st, first) != nullptr) {
      for (auto seq = first; seq <= st.committed_seq && result.replay.size() < st.services.history_limit;
           ++seq)
        result.replay.push_back(*cached(st, seq));
    }
    result.complete = !result.replay.empty() && result.replay.back().seq == st.committed_seq;
  }
  rp.deliver(std::move(result));
}

/// A page from the tail cache when it holds the whole page, else from the history reader.
void history(room_pointer self, history_query q, caf::typed_response_promise<std::vector<chat_message>> rp) {
  auto& st = self->state;
  if (st.syncing) {
    st.deferred.push_back([self, q = std::move(q), rp]() mutable { history(self, std::move(q), rp); });
    return;
  }
  if (st.gone) {
    rp.deliver(make_error(error_code::not_found));
    return;
  }
  q.room = st.id;
  q.limit = std::min(q.limit, st.services.history_limit);
  q.max_seq = st.committed_seq;
  std::vector<chat_message> page;
  bool from_cache = false;
  if (q.newer) {
    auto lo = q.from + 1;
    auto hi = std::min<std::uint64_t>(st.committed_seq, q.from + q.limit);
    from_cache = lo > st.committed_seq || cached(st, lo) != nullptr;
    for (auto seq = lo; from_cache && seq <= hi; ++seq) page.push_back(*cached(st, seq));
  } else {
    auto hi = q.from == 0 || q.from > st.committed_seq ? st.committed_seq : q.from - 1;
    auto lo = hi >= q.limit ? hi - q.limit + 1 : 1;
    from_cache = hi == 0 || cached(st, lo) != nullptr;
    for (auto seq = hi; from_cache && seq >= lo && seq > 0; --seq) page.push_back(*cached(st, seq));
  }
  if (from_cache) {
    rp.deliver(std::move(page));
    return;
  }
  self->request(st.services.reader, st.services.request_timeout, atom::history_v, std::move(q))
      .then([rp](std::vector<chat_message>& rows) mutable { rp.deliver(std::move(rows)); },
            [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
}

/// Drops every session of the users `keep` refuses; they are told nothing more (they got the event that
/// explains it) and later sends, typing and history from them are not_joined.
template <class Keep>
void drop_sessions(room_pointer self, Keep keep, const std::string* announced = nullptr) {
  auto& st = self->state;
  std::vector<std::string> gone;
  for (auto it = st.sessions.begin(); it != st.sessions.end();) {
    if (keep(it->second.user)) {
      ++it;
      continue;
    }
    self->demonitor(it->second.session.address());
    if (relayed(self, it->second)) --st.remote_sessions;
    if (st.hidden.erase(it->first) == 0) {
      auto count = st.sessions_per_user.find(it->second.user);
      if (count != st.sessions_per_user.end() && --count->second == 0) {
        st.sessions_per_user.erase(count);
        if (announced == nullptr || *announced != it->second.user) gone.push_back(it->second.user);
      }
    }
    it = st.sessions.erase(it);
  }
  // The others saw them come (member_joined): they see them go, as when they leave.
  if (!st.crowded)
    for (const auto& user : gone)
      fan_out(self, shared(protocol::encode_member_left(st.id, user), traffic::essential));
  users_changed(self);
}

/// Another node ran this room at `epoch` and has handed it to this node. An activation here older than that
/// one was kept while the two nodes could not see each other (neither was declared down): what the other
/// stored meanwhile is missing from it, and it would serve joins, resumes and history as if nothing had been
/// said. Reload now, so members get those messages without waiting for a send to be fenced.
void on_handed_back(room_pointer self, std::uint64_t epoch) {
  auto& st = self->state;
  if (st.syncing) {
    st.deferred.push_back([self, epoch] { on_handed_back(self, epoch); });
    return;
  }
  // Not loaded yet: its next load reads what is stored now.
  if (!st.ever_loaded || st.handing_over || epoch <= st.epoch) return;
  spdlog::warn(
      "room {}: another node ran it at epoch {} while this node (epoch {}) could not reach it; "
      "reloading",
      st.id, epoch, st.epoch);
  resync(self);
}

/// A change the HTTP API committed: the rules change first, then every connection hears of it, then those
/// who may no longer be here are dropped. Or word that another node handed the room back.
void apply_notice(room_pointer self, room_notice& n) {
  auto& st = self->state;
  if (st.gone) return;
  switch (n.what) {
    case room_notice::handed_over:
      on_handed_back(self, n.epoch);
      return;
    case room_notice::member_joined:
    case room_notice::member_updated:
      st.access.put_member(n.member);
      break;
    case room_notice::member_left:
      st.access.remove_member(n.user);
      break;
    case room_notice::room_updated:
      st.access.update_room(n.access);
      break;
    case room_notice::room_deleted:
      st.access.mark_deleted();
      break;
  }
  fan_out(self, shared(std::move(n.frame), traffic::essential));
  if (n.what == room_notice::room_deleted) {
    drop_sessions(self, [](const std::string&) { return false; });
    on_gone(self);
    return;
  }
  drop_sessions(
      self, [self](const std::string& user) { return self->state.access.check(user, action::read).allowed; },
      n.what == room_notice::member_left ? &n.user : nullptr);
}

}  // namespace

room_actor::behavior_type room(room_pointer self, std::string id, room_services services) {
  auto& st = self->state;
  st.id = std::move(id);
  st.shared_id = std::make_shared<const std::string>(st.id);
  st.services = std::move(services);
  st.id_entropy = std::random_device{}() ^ (static_cast<std::uint64_t>(std::random_device{}()) << 32);
  self->set_down_handler([self](const caf::down_msg& msg) { remove_session(self, msg.source); });
  load(self);
  return {
      [self](atom::join, join_request& req) -> caf::result<join_result> {
        auto rp = self->make_response_promise<join_result>();
        join(self, std::move(req), rp);
        return rp;
      },
      [self](atom::leave, const member_ref& ref) -> caf::result<bool> {
        auto rp = self->make_response_promise<bool>();
        leave(self, ref.session.address(), rp);
        return rp;
      },
      [self](atom::post, post_request& req) -> caf::result<chat_message> {
        auto& st = self->state;
        auto sender = st.sessions.find(caf::actor_cast<caf::actor_addr>(self->current_sender()));
        if (sender == st.sessions.end() || sender->second.user != req.user)
          return make_error(error_code::not_joined);
        auto rp = self->make_response_promise<chat_message>();
        post(self, std::move(req), post_promises{rp});
        return rp;
      },
      [self](atom::typing, const member_ref& ref) {
        if (!self->state.sessions.count(ref.session.address())) return;
        if (self->state.hidden.count(ref.session.address())) return;    // an invisible user types unseen
        if (!self->state.access.check(ref.user, action::post)) return;  // readers do not type
        if (self->state.crowded) return;
        fan_out(self, shared(protocol::encode_typing(self->state.id, ref.user), traffic::droppable),
                &ref.user);
      },
      [self](atom::presence, const std::string& user, bool online) {
        auto& st = self->state;
        if (st.crowded) return;
        // Only about users here, and not "offline" while another connection of the user is still in the
        // room: the user's last connection elsewhere may have closed just as a new one came here.
        auto here = st.sessions_per_user.find(user);
        if (here == st.sessions_per_user.end() || (!online && here->second > 1)) return;
        auto status = online ? protocol::presence_status::online : protocol::presence_status::offline;
        fan_out(self, shared(protocol::encode_presence(user, status), traffic::droppable), &user);
      },
      [self](atom::history, history_query& q) -> caf::result<std::vector<chat_message>> {
        // Only connections in the room read it: a member removed from a private room reads no more.
        if (!self->state.sessions.count(caf::actor_cast<caf::actor_addr>(self->current_sender())))
          return make_error(error_code::not_joined);
        auto rp = self->make_response_promise<std::vector<chat_message>>();
        history(self, std::move(q), rp);
        return rp;
      },
      [self](atom::members, const members_query& q) -> caf::result<members_page> {
        const auto& st = self->state;
        if (!st.sessions.count(caf::actor_cast<caf::actor_addr>(self->current_sender())))
          return make_error(error_code::not_joined);
        members_page page{{}, st.sessions_per_user.size(), false};
        auto it = q.after.empty() ? st.sessions_per_user.begin() : st.sessions_per_user.upper_bound(q.after);
        for (; it != st.sessions_per_user.end() && page.members.size() < q.limit; ++it)
          page.members.push_back({it->first, true});
        page.more = it != st.sessions_per_user.end();
        return page;
      },
      // To itself: the end of a mailbox drain (send what was assigned), the writer watchdog, or a retry of
      // a failed load. Any of them may find the others' work; each does only what is due.
      [self](atom::activate) {
        self->state.drain_end_queued = false;
        send_unsent(self);
        check_watchdog(self);
        check_count(self);
        if (!self->state.loaded && !self->state.syncing && !self->state.gone) load(self);
      },
      [self](atom::notice, room_notice& notice) { apply_notice(self, notice); },
      [self](atom::handover) -> caf::result<std::uint64_t> {
        auto& st = self->state;
        // Answered before the room stops, for the new owner to compare with its own activation.
        auto rp = self->make_response_promise<std::uint64_t>();
        rp.deliver(st.ever_loaded ? st.epoch : std::uint64_t{0});
        if (st.handing_over) return rp;
        st.handing_over = true;
        send_unsent(self);
        if (st.syncing) {
          stop_room(self, error_code::unavailable);  // nothing of this activation was written yet
          return rp;
        }
        finish_handover(self);
        return rp;
      },
  };
}

}  // namespace chorus::actors
