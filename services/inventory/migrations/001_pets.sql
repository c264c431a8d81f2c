-- Pets and reservations. A reservation is a semantic lock: a reserved pet belongs to one order
-- until that order releases it or buys it.
CREATE TABLE pets (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    species     text NOT NULL CHECK (length(species) BETWEEN 1 AND 50),
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    status      text NOT NULL DEFAULT 'available' CHECK (status IN ('available', 'reserved', 'sold')),
    order_id    uuid,
    version     int NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- only an available pet is free of an order
    CHECK ((status = 'available') = (order_id IS NULL))
);
CREATE INDEX pets_order ON pets (order_id) WHERE order_id IS NOT NULL;

-- One row per order that ever asked: its outcome is final, so a late or repeated command is
-- answered the same way. 'released' without pets is a tombstone: the release came first.
CREATE TABLE reservations (
    order_id    uuid PRIMARY KEY,
    status      text NOT NULL CHECK (status IN ('reserved', 'rejected', 'released', 'sold')),
    pet_ids     uuid[] NOT NULL DEFAULT '{}',
    total_cents bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
