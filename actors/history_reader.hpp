// The history reader actor: serves history pages from PostgreSQL when a room's tail cache cannot.
#pragma once

#include <memory>
#include <string>

#include "actors/messages.hpp"

namespace chorus::actors {

struct history_reader_state {
  std::unique_ptr<storage::message_store> store;
  bool database_up = true;  ///< as last seen; a change is logged once
  static inline const char* name = "history_reader";
};

/// Behaviour of a reader with its own connection. Spawn it `caf::detached`: its handlers block on
/// PostgreSQL. A failed read answers `unavailable`; the next one reconnects.
history_reader_actor::behavior_type history_reader(
    history_reader_actor::stateful_pointer<history_reader_state> self, std::string database_url);

}  // namespace chorus::actors
