// The history reader actor: one PostgreSQL connection answering history pages.
#include "actors/history_reader.hpp"

#include <spdlog/spdlog.h>

#include <limits>

#include "actors/stored_message.hpp"

namespace chorus::actors {

history_reader_actor::behavior_type history_reader(
    history_reader_actor::stateful_pointer<history_reader_state> self, std::string database_url) {
  self->state.store = std::make_unique<storage::message_store>(std::move(database_url));
  return {
      [self](atom::history, const history_query& q) -> caf::result<std::vector<protocol::chat_message>> {
        auto& st = self->state;
        auto dir = q.newer ? storage::direction::newer : storage::direction::older;
        // "Older than nothing" is the newest page: start just past the newest delivered message.
        std::uint64_t from = !q.newer && (q.from == 0 || q.from > q.max_seq) ? q.max_seq + 1 : q.from;
        auto rows = st.store->page(q.room, from, dir, q.limit);
        if (auto* err = std::get_if<storage::db_error>(&rows)) {
          if (st.database_up)
            spdlog::warn("history reader: PostgreSQL {}; reads fail until it answers", describe(*err));
          st.database_up = false;
          return make_error(protocol::error_code::unavailable);
        }
        if (!st.database_up) spdlog::info("history reader: PostgreSQL answers again");
        st.database_up = true;
        std::vector<protocol::chat_message> page;
        for (auto& row : std::get<std::vector<storage::message_row>>(rows))
          if (row.seq <= q.max_seq) page.push_back(to_message(std::move(row)));
        return page;
      },
  };
}

}  // namespace chorus::actors
