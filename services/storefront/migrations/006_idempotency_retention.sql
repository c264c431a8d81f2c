-- Idempotency keys are remembered for IDEMPOTENCY_RETENTION_S (default a day), then purged by
-- the storefront's notices worker (services/storefront/notices.c) a batch at a time. Keys are
-- written in time order, so a BRIN index finds the old ones for almost nothing per order.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys USING brin (created_at);
