-- The idempotency fingerprint is a SHA-256 digest: keep it as the 32 bytes it is.
ALTER TABLE idempotency_keys
    ALTER COLUMN request_hash TYPE bytea USING decode(request_hash, 'hex');
ALTER TABLE idempotency_keys
    ADD CONSTRAINT idempotency_keys_request_hash_sha256 CHECK (octet_length(request_hash) = 32);
