-- Identifier columns compare as bytes (COLLATE "C"), so that their indexes neither pay for the locale nor depend on it.

-- Room ids, authors and client message ids are opaque keys that nothing sorts for people to read. Under a
-- database's usual collation every comparison in their B-trees goes through the C library's strcoll. With
-- en_US.UTF-8 that held the write path to 35,000-52,000 rows/s in batches of 500, against 70,000-77,000 in
-- byte order, where a comparison is a memcmp (bench/append.sh, BENCHMARKS.md, durable sends); with C.UTF-8
-- it cost little.
-- Byte order also keeps these indexes valid across a C library upgrade that changes the locale's sort
-- order, which would silently leave them misordered. UTF-8 in byte order is code point order, the order
-- C.UTF-8 gave.
-- The table data stays as it is; the indexes on these columns are rebuilt, under a lock, once.
ALTER TABLE room_members ALTER COLUMN room_id TYPE text COLLATE "C";
ALTER TABLE rooms ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE messages
  ALTER COLUMN room TYPE text COLLATE "C",
  ALTER COLUMN author TYPE text COLLATE "C",
  ALTER COLUMN client_msg_id TYPE text COLLATE "C";
