-- The storefront's own data: accounts and sessions, and the read models it keeps from events
-- (the catalog from inventory, the orders from the saga).
CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    password_hash text NOT NULL, -- Argon2id (libsodium crypto_pwhash_str)
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY, -- SHA-256 of the bearer token; the token itself is never stored
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Catalog view: applied from inventory.pet_listed / pet_status_changed, newest version wins.
CREATE TABLE pets (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    species     text NOT NULL,
    price_cents bigint NOT NULL,
    status      text NOT NULL,
    version     int NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pets_species_id ON pets (species, id);

-- Orders: written PENDING at the front door, then moved by saga.order_status_changed.
CREATE TABLE orders (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id),
    status      text NOT NULL,
    reason      text,
    total_cents bigint NOT NULL,
    pet_ids     uuid[] NOT NULL,
    card_last4  text NOT NULL,
    version     int NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_user_created ON orders (user_id, created_at DESC, id DESC);

CREATE TABLE order_history (
    order_id uuid NOT NULL REFERENCES orders (id),
    version  int NOT NULL,
    status   text NOT NULL,
    reason   text,
    at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, version)
);

-- One row per (user, Idempotency-Key): the request's fingerprint and the answer it got.
CREATE TABLE idempotency_keys (
    user_id      uuid NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    order_id     uuid,
    status_code  int,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
