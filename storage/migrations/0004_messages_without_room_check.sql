-- Drops the per-row foreign key from messages to rooms: the append already proves every written room exists.

-- An append writes a room's rows only after its UPDATE of that room's row matched (last_seq and owner_epoch),
-- in the same transaction, and rooms are never deleted (a deleted room is marked, its row stays). So the check
-- could never fail, yet PostgreSQL ran it once per row: an index probe and a row lock on `rooms` for every
-- message, which was a large part of the database's CPU per durable send (BENCHMARKS.md, durable sends).
ALTER TABLE messages DROP CONSTRAINT messages_room_fkey;
