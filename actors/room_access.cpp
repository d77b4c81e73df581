// What one room allows whom: a room's membership table in front of decide().
#include "actors/room_access.hpp"

namespace chorus::actors {

namespace {

subject subject_of(const storage::member_row& m) {
  return subject{m.role, m.granted, m.revoked};
}

}  // namespace

room_access room_access::open_room() {
  room_access a;
  a.open_ = true;
  a.is_public_ = true;
  return a;
}

room_access room_access::from(const storage::room_access_row& row) {
  room_access a;
  a.deleted_ = row.deleted;
  a.kind_ = row.kind;
  a.is_public_ = row.is_public;
  for (const auto& m : row.members) a.members_.emplace(m.user_id, subject_of(m));
  return a;
}

decision room_access::check(std::string_view user, action what) const {
  if (deleted_) return decision::deny(deny_reason::not_member);
  if (open_) return decision::allow();
  auto it = members_.find(std::string(user));
  static const subject outsider{};
  return decide(it == members_.end() ? outsider : it->second, kind_, is_public_, what);
}

bool room_access::is_member(std::string_view user) const {
  return open_ || members_.count(std::string(user)) > 0;
}

void room_access::put_member(const storage::member_row& m) {
  members_[m.user_id] = subject_of(m);
}

void room_access::remove_member(std::string_view user) {
  members_.erase(std::string(user));
}

void room_access::update_room(const storage::room_access_row& row) {
  kind_ = row.kind;
  is_public_ = row.is_public;
}

}  // namespace chorus::actors
