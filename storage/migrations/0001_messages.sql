-- Rooms and their messages: the system of record for chat history and per-room sequence numbers.

CREATE TABLE rooms (
  id         text PRIMARY KEY,
  kind       text NOT NULL DEFAULT 'group' CHECK (kind IN ('direct', 'group', 'channel')),
  created_at timestamptz NOT NULL DEFAULT now(),
  -- The highest seq stored for the room; appends advance it in the same transaction as their rows, so a
  -- writer whose rows do not continue it is refused instead of leaving a gap or a duplicate.
  last_seq   bigint NOT NULL DEFAULT 0
);

CREATE TABLE messages (
  id            uuid PRIMARY KEY,
  room          text NOT NULL REFERENCES rooms (id),
  seq           bigint NOT NULL,
  author        text NOT NULL,
  text          text NOT NULL,
  client_msg_id text,
  created_at    timestamptz NOT NULL,
  -- Serves history pages in both directions (an index scan runs either way) and the activation tail.
  CONSTRAINT messages_room_seq_key UNIQUE (room, seq),
  -- Idempotent sends; NULLs are distinct, so messages without a client id never collide.
  CONSTRAINT messages_author_client_msg_id_key UNIQUE (author, client_msg_id)
);
