-- The relay claims unsent rows in id order, from the partitions it holds (outbox/relay.c). An
-- index led by the partition cannot hand them over in id order when the relay holds several
-- partitions, so every claim read and sorted the whole unsent backlog to take its batch, and a
-- relay catching up (the broker back after an outage, a pre-filled outbox) slowed as its
-- backlog grew. Led by the id, the index gives the rows in claim order and the claim stops once
-- its batch is full, skipping the rows of partitions other relays hold.
DROP INDEX outbox_unsent;
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL AND parked_at IS NULL;
