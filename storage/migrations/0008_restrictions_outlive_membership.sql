-- Permissions taken from a member outlive the membership, so that leaving a room and joining it again
-- (anyone may join a public room) does not give back what a moderator took away.

-- The revoked overrides of users who are no longer members, kept from the moment they leave or are removed
-- until they are members again (their new membership starts with them). Rows with nothing revoked are not
-- kept.
CREATE TABLE room_restrictions (
  room_id text COLLATE "C" NOT NULL CONSTRAINT room_restrictions_room_fkey REFERENCES rooms (id),
  user_id uuid NOT NULL CONSTRAINT room_restrictions_user_fkey REFERENCES users (id),
  revoked integer NOT NULL CONSTRAINT room_restrictions_revoked_check CHECK (revoked > 0),
  CONSTRAINT room_restrictions_pkey PRIMARY KEY (room_id, user_id)
);
