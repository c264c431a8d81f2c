-- The cart: pets a customer intends to order. Ordering without pet_ids orders the cart and
-- empties it in the same transaction.
CREATE TABLE cart_items (
    user_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    pet_id   uuid NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, pet_id)
);
