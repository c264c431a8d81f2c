-- Remember which pets made a reservation fail, so a repeated or late reserve of the order is
-- answered with the same unavailable pets as the first; and state two invariants the handlers
-- rely on (a pet's version starts at 1, a total is never negative).
ALTER TABLE reservations ADD COLUMN unavailable_pet_ids uuid[] NOT NULL DEFAULT '{}';
ALTER TABLE reservations ADD CONSTRAINT reservations_total_not_negative CHECK (total_cents >= 0);
ALTER TABLE pets ADD CONSTRAINT pets_version_positive CHECK (version >= 1);
