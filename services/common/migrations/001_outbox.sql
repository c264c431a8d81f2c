-- The transactional outbox: messages written with the business rows, published by the relay.
-- See services/common/outbox.h for the meaning of every column.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    txid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    partition    smallint NOT NULL CHECK (partition BETWEEN 0 AND 15),
    exchange     text NOT NULL,
    routing_key  text NOT NULL,
    message_id   uuid NOT NULL UNIQUE,
    type         text,
    correlation_id text,
    causation_id text,
    traceparent  text,
    app_id       text,
    headers      jsonb NOT NULL DEFAULT '{}',
    body         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    available_at timestamptz NOT NULL DEFAULT now(),
    attempts     int NOT NULL DEFAULT 0,
    last_error   text,
    sent_at      timestamptz
) WITH (fillfactor = 80);

-- What the relay claims: unsent rows per partition in id order.
CREATE INDEX outbox_unsent ON outbox (partition, id) WHERE sent_at IS NULL;
-- What the retention sweep deletes.
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;
