// The room actor: ordering, membership and fan-out of one room.
#include "actors/room_actor.hpp"

#include <chrono>
#include <cstdio>
#include <random>

namespace chorus::actors {

namespace {

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

/// A UUIDv7-shaped id: time-ordered, so ids sort roughly by creation, and unique without coordination.
std::string make_message_id(std::int64_t ts_ms, std::uint64_t entropy, std::uint64_t seq) {
  std::uint64_t hi = (static_cast<std::uint64_t>(ts_ms) << 16) | 0x7000u | ((entropy >> 52) & 0x0fffu);
  std::uint64_t lo = (entropy ^ (seq * 0x9e3779b97f4a7c15ull)) & 0x3fffffffffffffffull;
  lo |= 0x8000000000000000ull;  // RFC 9562 variant bits
  char buf[37];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48), static_cast<unsigned long long>(lo & 0xffffffffffffull));
  return buf;
}

void fan_out(room_pointer self, const outbound_event& ev, const std::string* except_user = nullptr) {
  for (const auto& [addr, member] : self->state.sessions)
    if (except_user == nullptr || member.user != *except_user) self->send(member.session, atom::deliver_v, ev);
}

outbound_event shared(std::string bytes, traffic kind) {
  return {std::make_shared<const std::string>(std::move(bytes)), kind};
}

std::vector<protocol::member_info> member_list(const room_state& st) {
  std::vector<protocol::member_info> out;
  out.reserve(st.sessions_per_user.size());
  // Everyone with a session in the room is connected, hence online.
  for (const auto& [user, count] : st.sessions_per_user) out.push_back({user, true});
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.user < b.user; });
  return out;
}

/// Removes a session; tells the others when it was the user's last one. Returns whether it was a member.
bool remove_session(room_pointer self, const caf::actor_addr& addr) {
  auto& st = self->state;
  auto it = st.sessions.find(addr);
  if (it == st.sessions.end()) return false;
  std::string user = std::move(it->second.user);
  self->demonitor(it->second.session.address());
  st.sessions.erase(it);
  auto count = st.sessions_per_user.find(user);
  if (--count->second == 0) {
    st.sessions_per_user.erase(count);
    fan_out(self, shared(protocol::encode_member_left(st.id, user), traffic::essential));
  }
  return true;
}

}  // namespace

room_actor::behavior_type room(room_pointer self, std::string id) {
  self->state.id = std::move(id);
  self->state.id_entropy = std::random_device{}() ^ (static_cast<std::uint64_t>(std::random_device{}()) << 32);
  self->set_down_handler([self](const caf::down_msg& msg) { remove_session(self, msg.source); });
  return {
      [self](atom::join, member_ref& ref) -> join_result {
        auto& st = self->state;
        auto addr = ref.session.address();
        if (!st.sessions.count(addr)) {
          bool first_of_user = st.sessions_per_user[ref.user]++ == 0;
          if (first_of_user) {
            fan_out(self, shared(protocol::encode_member_joined(st.id, ref.user), traffic::essential));
            fan_out(self, shared(protocol::encode_presence(ref.user, protocol::presence_status::online),
                                 traffic::droppable));
          }
          self->monitor(ref.session);
          st.sessions.emplace(addr, std::move(ref));
        }
        return {st.last_seq, member_list(st)};
      },
      [self](atom::leave, const member_ref& ref) -> bool { return remove_session(self, ref.session.address()); },
      [self](atom::post, post_request& req) -> caf::result<protocol::chat_message> {
        auto& st = self->state;
        auto sender = st.sessions.find(caf::actor_cast<caf::actor_addr>(self->current_sender()));
        if (sender == st.sessions.end() || sender->second.user != req.user)
          return make_error(protocol::error_code::not_joined);
        protocol::chat_message msg;
        msg.seq = ++st.last_seq;
        msg.ts_ms = now_ms();
        msg.id = make_message_id(msg.ts_ms, st.id_entropy, msg.seq);
        msg.room = st.id;
        msg.user = std::move(req.user);
        msg.text = std::move(req.text);
        msg.client_msg_id = std::move(req.client_msg_id);
        auto event = shared(protocol::encode_message_event(msg), traffic::essential);
        // The sender must see its reply before its own message event: answer first, then fan out.
        auto rp = self->make_response_promise<protocol::chat_message>();
        rp.deliver(msg);
        fan_out(self, event);
        return rp;
      },
      [self](atom::typing, const member_ref& ref) {
        if (!self->state.sessions.count(ref.session.address())) return;
        fan_out(self, shared(protocol::encode_typing(self->state.id, ref.user), traffic::droppable), &ref.user);
      },
      [self](atom::presence, const std::string& user, bool online) {
        auto status = online ? protocol::presence_status::online : protocol::presence_status::offline;
        fan_out(self, shared(protocol::encode_presence(user, status), traffic::droppable), &user);
      },
  };
}

}  // namespace chorus::actors
