-- Accounts, refresh tokens, room metadata and membership (issue 5); see storage/account_store.hpp.

-- Constraint and index names matter: account_store reports a violated one by name ("username", "email",
-- "direct_pair", …), so renaming one here means renaming it in account_store.cpp too.

CREATE TABLE users (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  username      text NOT NULL CONSTRAINT users_username_check CHECK (username ~ '^[A-Za-z0-9_.-]{3,32}$'),
  email         text NOT NULL
                CONSTRAINT users_email_check CHECK (char_length(email) <= 254 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
  password_hash text NOT NULL,
  display_name  text NOT NULL DEFAULT '' CONSTRAINT users_display_name_check CHECK (char_length(display_name) <= 100),
  about         text NOT NULL DEFAULT '' CONSTRAINT users_about_check CHECK (char_length(about) <= 2000),
  status        text NOT NULL DEFAULT 'online'
                CONSTRAINT users_status_check CHECK (status IN ('online', 'away', 'busy', 'invisible')),
  avatar_url    text NOT NULL DEFAULT '' CONSTRAINT users_avatar_url_check CHECK (char_length(avatar_url) <= 2048),
  last_seen     timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  -- Soft delete: the row stays (messages and memberships name it) and its username and email stay taken.
  deleted_at    timestamptz
);

-- Case-insensitive uniqueness. text_pattern_ops compares bytes, so the username index also serves prefix
-- search (range scans with ~>=~ / ~<~) and its keyset order whatever the database collation is.
CREATE UNIQUE INDEX users_username_key ON users (lower(username) text_pattern_ops);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE refresh_tokens (
  -- The caller's hash of the token (the token itself is never stored).
  token_hash text PRIMARY KEY,
  user_id    uuid NOT NULL CONSTRAINT refresh_tokens_user_fkey REFERENCES users (id),
  -- All tokens rotated from one login; presenting a used token revokes the whole family.
  family     text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  used_at    timestamptz,
  revoked_at timestamptz
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- Rooms made by the message path (activate) keep their plain text ids and get the defaults below.
ALTER TABLE rooms
  ALTER COLUMN id SET DEFAULT gen_random_uuid()::text,
  ADD COLUMN name        text NOT NULL DEFAULT '' CONSTRAINT rooms_name_check CHECK (char_length(name) <= 100),
  ADD COLUMN description text NOT NULL DEFAULT ''
                         CONSTRAINT rooms_description_check CHECK (char_length(description) <= 4000),
  ADD COLUMN topic       text NOT NULL DEFAULT '' CONSTRAINT rooms_topic_check CHECK (char_length(topic) <= 1000),
  ADD COLUMN is_public   boolean NOT NULL DEFAULT false,
  ADD COLUMN category    text NOT NULL DEFAULT '' CONSTRAINT rooms_category_check CHECK (char_length(category) <= 64),
  ADD COLUMN created_by  uuid CONSTRAINT rooms_created_by_fkey REFERENCES users (id),
  ADD COLUMN deleted_at  timestamptz,
  -- "<smaller user id>:<larger user id>" for a live direct room, NULL otherwise: one direct room per pair.
  -- Cleared on soft delete so the pair can open a new one.
  ADD COLUMN direct_key  text CONSTRAINT rooms_direct_pair_key UNIQUE,
  ADD CONSTRAINT rooms_direct_key_check CHECK (direct_key IS NULL OR kind = 'direct'),
  ADD CONSTRAINT rooms_is_public_check CHECK (NOT (is_public AND kind = 'direct'));

-- Public room search by name prefix, in keyset order (lower(name), id).
CREATE INDEX rooms_public_name_idx ON rooms (lower(name) text_pattern_ops, id)
  WHERE is_public AND deleted_at IS NULL;

CREATE TABLE room_members (
  room_id       text NOT NULL CONSTRAINT room_members_room_fkey REFERENCES rooms (id),
  user_id       uuid NOT NULL CONSTRAINT room_members_user_fkey REFERENCES users (id),
  role          text NOT NULL DEFAULT 'member'
                CONSTRAINT room_members_role_check CHECK (role IN ('owner', 'admin', 'moderator', 'member')),
  -- Permission overrides as bit masks; bit i is chorus::storage::permission value i (account_store.hpp).
  granted       integer NOT NULL DEFAULT 0 CONSTRAINT room_members_granted_check CHECK (granted >= 0),
  revoked       integer NOT NULL DEFAULT 0 CONSTRAINT room_members_revoked_check CHECK (revoked >= 0),
  muted         boolean NOT NULL DEFAULT false,
  archived      boolean NOT NULL DEFAULT false,
  pinned        boolean NOT NULL DEFAULT false,
  -- Read receipts: unread = rooms.last_seq - last_read_seq.
  last_read_seq bigint NOT NULL DEFAULT 0 CONSTRAINT room_members_last_read_seq_check CHECK (last_read_seq >= 0),
  joined_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT room_members_pkey PRIMARY KEY (room_id, user_id)
);
-- "My rooms", in keyset order (room id).
CREATE INDEX room_members_user_idx ON room_members (user_id, room_id);
