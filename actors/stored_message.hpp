// Conversions between a chat message as clients see it and the row PostgreSQL stores.
#pragma once

#include "actors/protocol.hpp"
#include "storage/message_store.hpp"

namespace chorus::actors {

inline storage::message_row to_row(const protocol::chat_message& m) {
  return {m.id, m.room, m.seq, m.user, m.text, m.client_msg_id, m.ts_ms};
}

inline protocol::chat_message to_message(storage::message_row r) {
  return {std::move(r.id), std::move(r.room),         r.seq, std::move(r.author), std::move(r.text),
          r.created_at_ms, std::move(r.client_msg_id)};
}

}  // namespace chorus::actors
