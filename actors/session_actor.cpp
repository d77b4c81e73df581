// The session actor: decodes client requests, enforces auth and rate limits, and relays between client and
// rooms.
#include "actors/session_actor.hpp"

#include <algorithm>
#include <chrono>

#include "actors/jwt.hpp"

namespace chorus::actors {

namespace {

using protocol::error_code;

std::int64_t wall_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::int64_t steady_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

std::chrono::milliseconds timeout(session_pointer self) {
  return std::chrono::milliseconds(self->state.ctx->cfg.request_timeout_ms);
}

void push(session_pointer self, std::string bytes) {
  auto& st = self->state;
  if (st.closing || !st.link) return;
  st.link->push(std::make_shared<const std::string>(std::move(bytes)), traffic::essential);
}

void reply_error(session_pointer self, std::optional<std::int64_t> re, error_code code,
                 std::string_view message, std::optional<std::uint32_t> retry_after_ms = std::nullopt) {
  if (re)
    push(self, protocol::encode_error_reply(*re, code, message, retry_after_ms));
  else
    push(self, protocol::encode_error_event(code, message, retry_after_ms));
}

/// Ends the connection: nothing the client sent runs from now on, though its close handshake may take a
/// while (a request waiting for a join, say, would otherwise run after the token it came with expired).
void close_link(session_pointer self, std::uint16_t code, std::string reason) {
  auto& st = self->state;
  if (st.closing || !st.link) return;
  st.link->close(code, std::move(reason));
  st.closing = true;
}

member_ref me(session_pointer self) {
  return {self->state.user, caf::actor_cast<event_sink>(self), self->state.ctx->relay};
}

/// Verifies `token`; on success the session is authenticated. On failure the client gets the reason and
/// close code 4001, since no request it could send would succeed.
void on_frame(session_pointer self, std::string_view text);
void limit_checked(session_pointer self);
void join_answered(session_pointer self, const std::string& room_id);

/// Runs the frames held back while the account was checked, in the order they came.
void release_held(session_pointer self) {
  auto held = std::move(self->state.held);
  self->state.held.clear();
  for (auto& frame : held) on_frame(self, frame);
}

void authenticated(session_pointer self, std::optional<std::int64_t> re, std::string user,
                   std::string_view status) {
  auto& st = self->state;
  st.verifying = false;
  st.user = std::move(user);
  st.send_key = send_limit_key(st.user);
  st.invisible = status == "invisible";
  self->request(st.ctx->presence, timeout(self), atom::connected_v, st.user)
      .then([](bool) {}, [](caf::error&) {});
  if (re) push(self, protocol::encode_auth_ok(*re, st.user));
  if (st.ctx->relay) {
    // Clustered: where else this client may connect when this node goes away.
    self->request(st.ctx->directory, timeout(self), atom::nodes_v)
        .then(
            [self](const std::vector<peer_node>& nodes) {
              std::vector<protocol::node_address> addresses;
              for (const auto& n : nodes) addresses.push_back({n.id, n.host, n.client_port});
              push(self, protocol::encode_nodes(addresses));
            },
            [](caf::error&) {});  // only a hint: the client still knows the node it used
  }
  release_held(self);
}

/// The connection lives as long as its token (until a fresh one renews it): a revoked session or a deleted
/// account keeps no socket open past the token's lifetime.
void expire_at(session_pointer self, std::int64_t expires_at) {
  if (expires_at == self->state.expires_at) return;  // its timer is set already (a renewal with the same exp)
  self->state.expires_at = expires_at;
  const auto due = std::chrono::milliseconds(std::max<std::int64_t>(0, expires_at * 1000 - wall_ms()));
  self->delayed_send(self, due, atom::auth_due_v, expires_at);
}

/// A second `auth`: a fresh token for the same user renews the connection; a bad one, or another user's,
/// changes nothing (the connection keeps the token it has).
void renew(session_pointer self, std::int64_t re, const std::string& token) {
  auto& st = self->state;
  auto verdict = jwt::verify(token, st.ctx->cfg.jwt_secret, wall_ms() / 1000);
  if (auto* failure = std::get_if<jwt::failure>(&verdict)) {
    auto code = *failure == jwt::failure::expired ? error_code::token_expired : error_code::invalid_token;
    reply_error(self, re, code, std::string(jwt::describe(*failure)) + "; the connection keeps its token");
    return;
  }
  auto claims = std::get<jwt::claims>(std::move(verdict));
  if (claims.subject != st.user) {
    reply_error(self, re, error_code::already_authenticated,
                "this connection is authenticated as another user");
    return;
  }
  if (!st.ctx->accounts) {
    expire_at(self, std::max(st.expires_at, claims.expires_at));
    push(self, protocol::encode_auth_ok(re, st.user));
    return;
  }
  // As at the first auth: a token may outlive its account.
  self->request(st.ctx->accounts, timeout(self), atom::lookup_v, st.user)
      .then(
          [self, re, expires = claims.expires_at](std::string&) {
            expire_at(self, std::max(self->state.expires_at, expires));
            push(self, protocol::encode_auth_ok(re, self->state.user));
          },
          [self, re](caf::error& err) {
            if (to_protocol_error(err) == error_code::not_found) {
              reply_error(self, re, error_code::invalid_token, "the token's account no longer exists");
              close_link(self, protocol::close_code::unauthorized, "account no longer exists");
              return;
            }
            reply_error(self, re, error_code::unavailable, "cannot check the account now; try again");
          });
}

bool authenticate(session_pointer self, std::optional<std::int64_t> re, const std::string& token) {
  auto& st = self->state;
  auto now_s = wall_ms() / 1000;
  auto verdict = jwt::verify(token, st.ctx->cfg.jwt_secret, now_s);
  if (auto* failure = std::get_if<jwt::failure>(&verdict)) {
    auto code = *failure == jwt::failure::expired ? error_code::token_expired : error_code::invalid_token;
    reply_error(self, re, code, jwt::describe(*failure));
    close_link(self, protocol::close_code::unauthorized, std::string(jwt::describe(*failure)));
    return false;
  }
  auto subject = std::get<jwt::claims>(verdict).subject;
  expire_at(self, std::get<jwt::claims>(verdict).expires_at);
  if (!st.ctx->accounts) {
    authenticated(self, re, std::move(subject), "online");
    return true;
  }
  // A signed token may outlive its account: ask before trusting it. Frames that arrive meanwhile wait.
  st.verifying = true;
  self->request(st.ctx->accounts, timeout(self), atom::lookup_v, subject)
      .then([self, re, subject](std::string& status) { authenticated(self, re, subject, status); },
            [self, re](caf::error& err) {
              auto& st = self->state;
              st.verifying = false;
              if (to_protocol_error(err) == error_code::not_found) {
                reply_error(self, re, error_code::invalid_token, "the token's account no longer exists");
                close_link(self, protocol::close_code::unauthorized, "account no longer exists");
                return;
              }
              reply_error(self, re, error_code::unavailable,
                          "cannot check the account now; authenticate again");
              release_held(self);
            });
  return true;
}

/// The room this connection joined under `room`, or null after replying `not_joined` ("... before `doing`").
const room_actor* joined(session_pointer self, std::int64_t re, const std::string& room,
                         std::string_view doing) {
  auto& rooms = self->state.rooms;
  if (auto it = rooms.find(room); it != rooms.end()) return &it->second;
  if (self->state.rejoining.count(room)) {
    reply_error(self, re, error_code::unavailable, "room '" + room + "' is moving to another node; retry");
    return nullptr;
  }
  reply_error(self, re, error_code::not_joined, "join room '" + room + "' before " + std::string(doing));
  return nullptr;
}

void handle(session_pointer self, std::int64_t re, protocol::auth_op& op) {
  if (!self->state.user.empty()) {
    renew(self, re, op.token);
    return;
  }
  authenticate(self, re, op.token);
}

/// The session is in `room_id` now: watch its actor (it stops when the room moves to another node or that
/// node dies) and resume from `last_seq` if it has to join again.
void joined_room(session_pointer self, const std::string& room_id, const room_actor& room,
                 std::uint64_t last_seq) {
  auto& st = self->state;
  if (!st.rooms.emplace(room_id, room).second) return;
  self->monitor(room);
  st.seen[room_id] = last_seq;
}

/// Requests about the room that came while it was being joined wait for the join's answer (run_after_join).
void handle(session_pointer self, std::int64_t re, protocol::join_op& op) {
  auto& st = self->state;
  auto room_id = op.room;
  st.joining.try_emplace(room_id);
  join_request req{me(self), op.last_seq.has_value(), op.last_seq.value_or(0), st.invisible};
  self->request(st.ctx->directory, timeout(self), atom::lookup_v, op.room)
      .then(
          [self, re, room_id, req](room_actor& room) {
            self->request(room, timeout(self), atom::join_v, req)
                .then(
                    [self, re, room_id, room](join_result& joined) {
                      joined_room(self, room_id, room, joined.last_seq);
                      push(self, protocol::encode_join_ok(
                                     re, room_id, joined.last_seq,
                                     {joined.members, joined.member_count, joined.member_events},
                                     joined.replay.size(), joined.complete));
                      // The missed messages follow the reply, before any live event the room sends later.
                      for (const auto& msg : joined.replay) push(self, protocol::encode_message_event(msg));
                      join_answered(self, room_id);
                    },
                    [self, re, room_id, room](caf::error& err) {
                      // A join that timed out here may still reach the room (a node that stalled, say), which
                      // would then count this connection in and send it the room's events. A leave after it
                      // undoes that; it changes nothing when the join never went through.
                      if (!self->state.rooms.count(room_id)) caf::anon_send(room, atom::leave_v, me(self));
                      reply_error(self, re, to_protocol_error(err), "could not join the room");
                      join_answered(self, room_id);
                    });
          },
          [self, re, room_id](caf::error& err) {
            reply_error(self, re, to_protocol_error(err), "room directory unavailable");
            join_answered(self, room_id);
          });
}

void handle(session_pointer self, std::int64_t re, protocol::leave_op& op) {
  auto* found = joined(self, re, op.room, "leaving it");
  if (found == nullptr) return;
  auto room = *found;
  self->state.rooms.erase(op.room);
  self->state.seen.erase(op.room);
  self->demonitor(room.address());
  auto room_id = op.room;
  self->request(room, timeout(self), atom::leave_v, me(self))
      .then([self, re, room_id](bool) { push(self, protocol::encode_leave_ok(re, room_id)); },
            [self, re](caf::error& err) {
              reply_error(self, re, to_protocol_error(err), "could not leave the room");
            });
}

void post_to(session_pointer self, std::int64_t re, const std::string& room_id, room_actor room,
             post_request req) {
  if (room.node() != self->node()) {
    // A room on another node answers every post too, unless that node dies: then its room's down message
    // fails what is still listed here, and the timeout covers a post sent just as the room went away. (Only
    // here: a timer per send costs CPU, see below, and a cross-node send already costs more.)
    auto& st = self->state;
    if (auto it = st.rooms.find(room_id); it == st.rooms.end() || it->second != room) {
      // The room stopped while the send was being rate-checked: it would never answer.
      reply_error(self, re, error_code::unavailable, "the room moved; send again");
      return;
    }
    auto token = ++st.next_post;
    st.remote_posts.emplace(token, std::make_pair(room_id, re));
    self->request(room, timeout(self), atom::post_v, std::move(req))
        .then(
            [self, re, token](protocol::chat_message& msg) {
              if (self->state.remote_posts.erase(token)) push(self, protocol::encode_send_ok(re, msg));
            },
            [self, re, token](caf::error& err) {
              if (self->state.remote_posts.erase(token))
                reply_error(self, re, to_protocol_error(err), "message not sent");
            });
    return;
  }
  // No timer per send: the room answers every post, after the commit or with an error, and fails what its
  // writer leaves unanswered after request_timeout_ms itself (its watchdog). A timer here cost the node about
  // a tenth of its CPU at 20,000 sends/s (BENCHMARKS.md, durable sends).
  self->request(room, caf::infinite, atom::post_v, std::move(req))
      .then(
          [self, re](protocol::chat_message& msg) { push(self, protocol::encode_send_ok(re, msg)); },
          [self, re](caf::error& err) { reply_error(self, re, to_protocol_error(err), "message not sent"); });
}

void handle(session_pointer self, std::int64_t re, protocol::send_op& op) {
  auto& st = self->state;
  auto* room = joined(self, re, op.room, "sending to it");
  if (room == nullptr) return;
  post_request req{st.user, std::move(op.text), std::move(op.client_msg_id)};
  const auto& limits = st.ctx->sends;
  if (limits.local) {
    const auto verdict = limits.local->take(st.send_key, limits.shape);
    if (verdict.allowed)
      post_to(self, re, op.room, *room, std::move(req));
    else
      reply_error(self, re, error_code::rate_limited, "too many messages",
                  std::max<std::uint32_t>(verdict.retry_after_ms, 1));
    return;
  }
  if (!limits.shared) {
    post_to(self, re, op.room, *room, std::move(req));
    return;
  }
  // The user's rate across every node first; answers come back in the order asked, so sends stay in order.
  // No timeout: the limiter answers every request (Redis calls are bounded inside it) and a request to it
  // after it stopped fails at once, so a per-send timer would only cost time on the hot path.
  ++st.limit_checks;
  self->request(limits.shared, caf::infinite, atom::limit_v, st.user)
      .then(
          [self, re, room_id = op.room, room = *room,
           req = std::move(req)](std::uint32_t retry_after_ms) mutable {
            if (retry_after_ms > 0)
              reply_error(self, re, error_code::rate_limited, "too many messages", retry_after_ms);
            else
              post_to(self, re, room_id, room, std::move(req));
            limit_checked(self);
          },
          [self, re](caf::error& err) {
            reply_error(self, re, to_protocol_error(err), "message not sent");
            limit_checked(self);
          });
}

void handle(session_pointer self, std::int64_t re, protocol::typing_op& op) {
  auto* room = joined(self, re, op.room, "typing in it");
  if (room == nullptr) return;
  self->send(*room, atom::typing_v, me(self));
  push(self, protocol::encode_empty_ok(re));
}

void handle(session_pointer self, std::int64_t re, protocol::history_op& op) {
  auto* room = joined(self, re, op.room, "reading its history");
  if (room == nullptr) return;
  bool newer = op.dir == protocol::history_direction::newer;
  if (!newer && op.from == 0u) {
    // Nothing comes before seq 1. (The room reads `from` 0 as "the newest", which here it must not.)
    push(self, protocol::encode_history_ok(re, op.room, {}, std::nullopt));
    return;
  }
  history_query q{op.room, op.from.value_or(0), newer, op.limit, 0};
  auto room_id = op.room;
  auto limit = op.limit;
  self->request(*room, timeout(self), atom::history_v, std::move(q))
      .then(
          [self, re, room_id, newer, limit](std::vector<protocol::chat_message>& page) {
            // A full page may have more behind it; a short one, or one that reached seq 1, has not.
            std::optional<std::string> next;
            if (page.size() == limit && !(!newer && page.back().seq <= 1))
              next = protocol::make_cursor(
                  newer ? protocol::history_direction::newer : protocol::history_direction::older,
                  page.back().seq);
            push(self, protocol::encode_history_ok(re, room_id, page, std::move(next)));
          },
          [self, re](caf::error& err) {
            reply_error(self, re, to_protocol_error(err), "history unavailable");
          });
}

void handle(session_pointer self, std::int64_t re, protocol::members_op& op) {
  auto* room = joined(self, re, op.room, "listing its members");
  if (room == nullptr) return;
  auto room_id = op.room;
  self->request(*room, timeout(self), atom::members_v, members_query{std::move(op.after), op.limit})
      .then(
          [self, re, room_id](members_page& page) {
            push(self, protocol::encode_members_ok(re, room_id, page.count, page.members, page.more));
          },
          [self, re](caf::error& err) {
            reply_error(self, re, to_protocol_error(err), "members unavailable");
          });
}

void handle(session_pointer self, std::int64_t re, protocol::ping_op&) {
  push(self, protocol::encode_pong(re, wall_ms()));
}

void run(session_pointer self, protocol::request& req) {
  std::visit([self, &req](auto& op) { handle(self, req.id, op); }, req.op);
}

/// The room `req` is about; null for auth and ping.
const std::string* room_of(const protocol::request& req) {
  return std::visit(
      [](const auto& op) -> const std::string* {
        if constexpr (requires { op.room; })
          return &op.room;
        else
          return nullptr;
      },
      req.op);
}

/// Runs `req`, unless its room is being joined: then it waits for the join's answer.
void run_after_join(session_pointer self, protocol::request& req) {
  auto& st = self->state;
  if (const auto* room = room_of(req)) {
    if (auto it = st.joining.find(*room); it != st.joining.end()) {
      if (it->second.size() >= st.ctx->cfg.ops_burst) {
        reply_error(self, req.id, error_code::rate_limited, "too many operations waiting for a join",
                    std::uint32_t{100});
        return;
      }
      it->second.push_back(std::move(req));
      return;
    }
  }
  run(self, req);
}

/// Runs `req` after everything that came before it and is still waiting: sends whose limit is being checked,
/// and the join of its room.
void dispatch(session_pointer self, protocol::request& req) {
  auto& st = self->state;
  const bool is_send = std::holds_alternative<protocol::send_op>(req.op);
  if (!st.after_limits.empty() || (st.limit_checks > 0 && !is_send)) {
    // Behind sends whose limit is being checked. Bounded like the rate limit: a slow Redis must not let a
    // client pile up requests here without end.
    if (st.after_limits.size() >= st.ctx->cfg.ops_burst) {
      reply_error(self, req.id, error_code::rate_limited, "too many operations waiting for earlier sends",
                  std::uint32_t{100});
      return;
    }
    st.after_limits.push_back(std::move(req));
    return;
  }
  run_after_join(self, req);
}

/// The join of `room_id` is answered (either way): the requests about the room that waited for it run now,
/// in order. One of them may be another join, which the rest then wait for in turn.
void join_answered(session_pointer self, const std::string& room_id) {
  auto& st = self->state;
  auto it = st.joining.find(room_id);
  if (it == st.joining.end()) return;
  auto waiting = std::move(it->second);
  st.joining.erase(it);
  for (auto& req : waiting) {
    if (st.closing) return;
    dispatch(self, req);
  }
}

/// A send's limit check is answered (and the send is on its way to its room): once none is left, the
/// requests that waited behind them run, until one of them is a send that waits in turn.
void limit_checked(session_pointer self) {
  auto& st = self->state;
  --st.limit_checks;
  while (st.limit_checks == 0 && !st.after_limits.empty() && !st.closing) {
    auto req = std::move(st.after_limits.front());
    st.after_limits.pop_front();
    run_after_join(self, req);
  }
}

void on_frame(session_pointer self, std::string_view text) {
  auto& st = self->state;
  if (st.closing) return;
  if (st.verifying) {
    // Bounded like the rate limit: more than a burst of frames before the account check ends is refused.
    if (st.held.size() >= st.ctx->cfg.ops_burst) {
      // Answered like any refused request: by its id when it has one.
      auto decoded = protocol::decode_request(text, {.max_message_chars = st.ctx->cfg.max_message_chars,
                                                     .max_history_limit = st.ctx->cfg.history_limit});
      std::optional<std::int64_t> re;
      if (auto* req = std::get_if<protocol::request>(&decoded))
        re = req->id;
      else
        re = std::get<protocol::decode_error>(decoded).id;
      reply_error(self, re, error_code::rate_limited, "too many operations before authentication ended",
                  std::uint32_t{100});
      return;
    }
    st.held.emplace_back(text);
    return;
  }
  auto retry_ms = st.bucket.take(steady_ms());
  auto decoded = protocol::decode_request(text, {.max_message_chars = st.ctx->cfg.max_message_chars,
                                                 .max_history_limit = st.ctx->cfg.history_limit});
  if (auto* err = std::get_if<protocol::decode_error>(&decoded)) {
    if (retry_ms > 0)
      reply_error(self, err->id, error_code::rate_limited, "too many operations", retry_ms);
    else
      reply_error(self, err->id, err->code, err->message);
    return;
  }
  auto& req = std::get<protocol::request>(decoded);
  if (retry_ms > 0) {
    reply_error(self, req.id, error_code::rate_limited, "too many operations", retry_ms);
    return;
  }
  bool open_op =
      std::holds_alternative<protocol::auth_op>(req.op) || std::holds_alternative<protocol::ping_op>(req.op);
  if (st.user.empty() && !open_op) {
    reply_error(self, req.id, error_code::auth_required, "authenticate first");
    return;
  }
  dispatch(self, req);
}

/// One frame less waiting. The connection stopped reading when the backlog reached receive_queue_limit
/// (actor_session::on_text); it reads again once the backlog is down to half of that, not at once, so that
/// a node working at its limit does not stop and start every connection for each frame.
void frame_handled(session_pointer self) {
  auto& st = self->state;
  const auto before = st.backlog->fetch_sub(1, std::memory_order_acq_rel);
  if (before == st.ctx->cfg.receive_queue_limit / 2 + 1 && st.link) st.link->resume_reading();
}

constexpr std::uint32_t max_rejoin_attempts = 20;

void deliver(session_pointer self, const outbound_event& ev);

/// Joins `room_id` again after its actor stopped, resuming after the last seq the client has: the missed
/// messages arrive as ordinary message events. Retried with backoff while the cluster settles on the room's
/// new owner (about max_rejoin_attempts × 1 s at most); then the client is told to join again itself.
void rejoin(session_pointer self, const std::string& room_id) {
  auto& st = self->state;
  auto attempt = st.rejoining.find(room_id);
  if (st.closing || attempt == st.rejoining.end()) return;
  auto retry = [self, room_id](caf::error& err) {
    auto& st = self->state;
    auto it = st.rejoining.find(room_id);
    if (it == st.rejoining.end()) return;
    auto code = to_protocol_error(err);
    if (code != error_code::unavailable || ++it->second >= max_rejoin_attempts) {
      st.rejoining.erase(it);
      st.held_events.erase(room_id);
      st.seen.erase(room_id);
      reply_error(self, std::nullopt, code, "lost room '" + room_id + "'; join it again");
      return;
    }
    auto delay = std::chrono::milliseconds(std::min<std::uint32_t>(1000, 50u << std::min(it->second, 5u)));
    self->delayed_send(self, delay, atom::join_v, room_id);
  };
  join_request req{me(self), true, st.seen[room_id], st.invisible};
  self->request(st.ctx->directory, timeout(self), atom::lookup_v, room_id)
      .then(
          [self, room_id, req, retry](room_actor& room) {
            self->request(room, timeout(self), atom::join_v, req)
                .then(
                    [self, room_id, room](join_result& joined) {
                      auto& st = self->state;
                      if (!st.rejoining.erase(room_id) || st.closing) {
                        caf::anon_send(room, atom::leave_v, me(self));  // the client left meanwhile
                        return;
                      }
                      auto held = std::move(st.held_events[room_id]);
                      st.held_events.erase(room_id);
                      auto& seen = st.seen[room_id];
                      for (const auto& msg : joined.replay) {
                        if (msg.seq <= seen) continue;  // relayed by the previous owner while rejoining
                        push(self, protocol::encode_message_event(msg));
                        seen = msg.seq;
                      }
                      if (!joined.complete) {
                        // More was missed than one resume replays: the client pages the rest, as after a
                        // join.
                        auto from = joined.replay.empty() ? st.seen[room_id] : joined.replay.back().seq;
                        reply_error(self, std::nullopt, error_code::unavailable,
                                    "room '" + room_id + "' moved; read its history after seq " +
                                        std::to_string(from) + " up to " + std::to_string(joined.last_seq));
                      }
                      st.rooms.erase(room_id);
                      joined_room(self, room_id, room, std::max(joined.last_seq, seen));
                      // What arrived meanwhile and the replay did not cover (sent after the join) follows.
                      for (const auto& ev : held) deliver(self, ev);
                    },
                    retry);
          },
          retry);
}

/// Pushes a room's event to the client. A chat message arrives once, in order, even across a room's move: one
/// the client has (relayed by the room's previous owner after the resume replayed it) is dropped, and one
/// for a room being joined again waits for the replay.
void deliver(session_pointer self, const outbound_event& ev) {
  auto& st = self->state;
  if (st.closing || !st.link) return;
  if (ev.seq != 0 && ev.room) {
    if (auto it = st.seen.find(*ev.room); it != st.seen.end()) {
      if (ev.seq <= it->second) return;
      if (st.rejoining.count(*ev.room)) {
        auto& held = st.held_events[*ev.room];
        if (held.size() < st.ctx->cfg.send_queue_limit) {
          held.push_back(ev);
          return;
        }
        // Too much traffic to hold while the room moves: the client resumes by itself from what it has.
        st.rejoining.erase(*ev.room);
        st.held_events.erase(*ev.room);
        auto room_id = *ev.room;
        reply_error(self, std::nullopt, error_code::unavailable,
                    "lost room '" + room_id + "' while it moved; join it again with last_seq " +
                        std::to_string(it->second));
        st.seen.erase(it);
        return;
      }
      it->second = ev.seq;
    }
  }
  st.link->push(ev.bytes, ev.kind);
}

/// A room's actor stopped: posts it left unanswered fail, and the session joins the room again wherever it
/// lives now.
void on_room_down(session_pointer self, const caf::down_msg& msg) {
  auto& st = self->state;
  auto it = std::find_if(st.rooms.begin(), st.rooms.end(),
                         [&](const auto& entry) { return entry.second.address() == msg.source; });
  if (it == st.rooms.end()) return;
  auto room_id = it->first;
  st.rooms.erase(it);
  for (auto post = st.remote_posts.begin(); post != st.remote_posts.end();) {
    if (post->second.first != room_id) {
      ++post;
      continue;
    }
    reply_error(self, post->second.second, error_code::unavailable, "the room moved; send again");
    post = st.remote_posts.erase(post);
  }
  if (st.closing) return;
  st.rejoining[room_id] = 0;
  rejoin(self, room_id);
}

/// The connection is gone: presence goes offline if this was the user's last connection, rooms forget
/// this session, and the actor quits once they have.
void on_closed(session_pointer self) {
  auto& st = self->state;
  st.closing = true;
  st.link.reset();
  if (st.user.empty()) {
    self->quit();
    return;
  }
  auto leave_all = [self](bool last_connection) {
    auto& st = self->state;
    auto ref = me(self);
    if (last_connection && st.ctx->accounts) caf::anon_send(st.ctx->accounts, atom::gone_v, st.user);
    // The session ends once every room has answered its leave (or the timeout passed): were it to quit at
    // once, the down message rooms get (which CAF delivers ahead of ordinary messages) could overtake the
    // presence update, and members would see "left" before "offline".
    auto waiting = std::make_shared<std::size_t>(st.rooms.size());
    auto answered = [self, waiting] {
      if (--*waiting == 0) self->quit();
    };
    for (auto& [id, room] : st.rooms) {
      if (last_connection && !st.invisible) self->send(room, atom::presence_v, st.user, false);
      self->request(room, timeout(self), atom::leave_v, ref)
          .then([answered](bool) { answered(); }, [answered](caf::error&) { answered(); });
    }
    st.rooms.clear();
    if (*waiting == 0) self->quit();
  };
  self->request(st.ctx->presence, timeout(self), atom::gone_v, st.user)
      .then([leave_all](bool last) { leave_all(last); }, [leave_all](caf::error&) { leave_all(false); });
}

}  // namespace

caf::behavior session(session_pointer self, std::shared_ptr<const session_context> ctx,
                      std::shared_ptr<client_link> link, connection_info info,
                      std::shared_ptr<input_backlog> backlog) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.link = std::move(link);
  st.info = std::move(info);
  st.backlog = std::move(backlog);
  const auto& cfg = st.ctx->cfg;
  st.bucket = token_bucket{cfg.ops_per_second, cfg.ops_burst};
  self->set_down_handler([self](caf::down_msg& msg) { on_room_down(self, msg); });
  if (auto counters = st.ctx->counters) {
    counters->connections.fetch_add(1, std::memory_order_relaxed);
    self->attach_functor(
        [counters](const caf::error&) { counters->connections.fetch_sub(1, std::memory_order_relaxed); });
  }
  st.link->push(st.ctx->hello, traffic::essential);
  // Also with a token in the upgrade request: if its account cannot be checked now, the client must
  // authenticate again, within the same time.
  self->delayed_send(self, std::chrono::milliseconds(cfg.auth_timeout_ms), atom::auth_due_v);
  if (st.info.bearer_token) authenticate(self, std::nullopt, *st.info.bearer_token);
  return {
      [self](atom::frame, const std::string& text) {
        on_frame(self, text);
        frame_handled(self);
      },
      [self](atom::binary) {
        // Rate-limited like any frame, so that a flood of them is answered no faster than requests.
        if (auto retry_ms = self->state.bucket.take(steady_ms()); retry_ms > 0)
          reply_error(self, std::nullopt, error_code::rate_limited, "too many operations", retry_ms);
        else
          reply_error(self, std::nullopt, error_code::unsupported_frame,
                      "binary frames are not supported; send JSON text");
        frame_handled(self);
      },
      [self](atom::deliver, const outbound_event& ev) { deliver(self, ev); },
      [self](atom::deliver, const std::vector<outbound_event>& events) {
        for (const auto& ev : events) deliver(self, ev);
      },
      [self](atom::join, const std::string& room_id) { rejoin(self, room_id); },
      [self](atom::auth_due) {
        if (!self->state.user.empty()) return;
        reply_error(self, std::nullopt, error_code::auth_required,
                    "no authentication within the time allowed");
        close_link(self, protocol::close_code::auth_timeout, "authentication timeout");
      },
      [self](atom::auth_due, std::int64_t expires_at) {
        // A renewed connection ignores its old token's end; a refused or unfinished auth has its own answer.
        if (self->state.user.empty() || self->state.closing || expires_at != self->state.expires_at) return;
        reply_error(self, std::nullopt, error_code::token_expired,
                    "the access token expired at " + std::to_string(expires_at) +
                        "; connect again with a new one and resume with last_seq");
        close_link(self, protocol::close_code::unauthorized, "token expired");
      },
      [self](atom::closed, const std::string&) { on_closed(self); },
  };
}

namespace {

/// Forwards a connection's input to its session actor; never blocks the network thread.
class actor_session final : public session_handle {
 public:
  actor_session(caf::actor actor, std::shared_ptr<input_backlog> backlog, std::uint32_t limit)
      : actor_(std::move(actor)), backlog_(std::move(backlog)), limit_(limit) {}
  bool on_text(std::string frame) override {
    const auto waiting = backlog_->fetch_add(1, std::memory_order_acq_rel) + 1;
    caf::anon_send(actor_, atom::frame_v, std::move(frame));
    return waiting < limit_;
  }
  bool on_binary() override {
    const auto waiting = backlog_->fetch_add(1, std::memory_order_acq_rel) + 1;
    caf::anon_send(actor_, atom::binary_v);
    return waiting < limit_;
  }
  void on_closed(std::string reason) override { caf::anon_send(actor_, atom::closed_v, std::move(reason)); }

 private:
  caf::actor actor_;
  std::shared_ptr<input_backlog> backlog_;
  std::uint32_t limit_;
};

}  // namespace

actor_session_factory::actor_session_factory(caf::actor_system& system,
                                             std::shared_ptr<const session_context> ctx)
    : system_(system), ctx_(std::move(ctx)) {}

std::unique_ptr<session_handle> actor_session_factory::open(std::shared_ptr<client_link> link,
                                                            connection_info info) {
  auto backlog = std::make_shared<input_backlog>(0);
  auto actor = system_.spawn(session, ctx_, std::move(link), std::move(info), backlog);
  return std::make_unique<actor_session>(std::move(actor), std::move(backlog), ctx_->cfg.receive_queue_limit);
}

std::shared_ptr<const session_context> make_session_context(room_directory directory, presence_actor presence,
                                                            send_limits sends, account_worker_actor accounts,
                                                            config::node_config cfg, relay_sink relay,
                                                            std::shared_ptr<node_counters> counters) {
  protocol::hello_event hello{cfg.node_id,
                              cfg.idle_timeout_ms / 2,
                              {cfg.max_frame_bytes, cfg.max_message_chars, cfg.ops_per_second, cfg.ops_burst,
                               cfg.send_queue_limit, cfg.history_limit}};
  auto bytes = std::make_shared<const std::string>(protocol::encode_hello(hello));
  return std::make_shared<const session_context>(
      session_context{std::move(directory), std::move(presence), std::move(sends), std::move(accounts),
                      std::move(relay), std::move(counters), std::move(cfg), std::move(bytes)});
}

}  // namespace chorus::actors
