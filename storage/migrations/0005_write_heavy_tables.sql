-- Storage settings for the two tables every durable send writes, so that their upkeep stays small under load.

-- Every batch moves `last_seq` of each room it writes. With free space on the row's page the new version
-- stays there (a HOT update): no new entries in the room indexes, and nothing for VACUUM to clean out of them.
-- On pages packed full when the rooms were made, each update went to another page, with a new entry in
-- every index of `rooms`. The setting applies to pages filled from now on: existing rooms are not rewritten.
ALTER TABLE rooms SET (fillfactor = 50);

-- ANALYZE sorts its sample of every column that keeps statistics, and on the busy `messages` table it runs
-- as often as every minute under load: a burst of PostgreSQL CPU that holds up the writers' commits
-- (BENCHMARKS.md, durable sends). Reads find messages by (room, seq) and (author, client_msg_id) through
-- unique indexes, so the planner needs statistics on `room` and `seq` only; the other columns keep none.
ALTER TABLE messages
  ALTER COLUMN id SET STATISTICS 0,
  ALTER COLUMN author SET STATISTICS 0,
  ALTER COLUMN text SET STATISTICS 0,
  ALTER COLUMN client_msg_id SET STATISTICS 0,
  ALTER COLUMN created_at SET STATISTICS 0,
  ALTER COLUMN epoch SET STATISTICS 0;
