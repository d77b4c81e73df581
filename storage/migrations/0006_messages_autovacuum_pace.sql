-- Paces autovacuum on `messages`, so that its visits under load do not take the CPU the writers' commits need.

-- Under a steady stream of sends autovacuum visits `messages` about once a minute: a vacuum that sets the
-- visibility map of every page written since, then an analyze. At PostgreSQL's default pace (a 2 ms sleep per
-- 200 cost units) that was about 0.4 s of CPU within a second, next to the writers' backends, and it held up
-- their commits for up to 1.8 s when the machine was near its limit (BENCHMARKS.md, durable sends). Sleeping
-- 10 ms instead spreads the same work over about five times as long. A visit still covers far more pages than
-- the table gains in between: the pages it reads cost 1 each, 20,000 pages a second at this pace.
ALTER TABLE messages SET (autovacuum_vacuum_cost_delay = 10);
