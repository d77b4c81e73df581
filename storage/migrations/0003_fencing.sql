-- Fencing epochs for room ownership: a writer whose room was activated again since (by another node) is refused.

-- Every activation takes owner_epoch + 1; appends advance last_seq only for rows carrying the current value,
-- so a node that still believes it owns the room after another node took it over cannot store anything.
ALTER TABLE rooms
  ADD COLUMN owner_epoch bigint NOT NULL DEFAULT 0,
  -- The node that last activated the room, for operators; nothing decides by it.
  ADD COLUMN owner_node  text;

-- The ownership epoch each row was written under (0 for rows older than this migration).
ALTER TABLE messages ADD COLUMN epoch bigint NOT NULL DEFAULT 0;
