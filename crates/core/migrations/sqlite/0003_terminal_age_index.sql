-- Retention looks rows up by state and age, but only rows in a terminal state are ever pruned.
-- Indexing only those keeps the index out of the way of every claim and retry, which change
-- `updated_at` of live rows.
DROP INDEX deliveries_state_age;
CREATE INDEX deliveries_finished_age ON deliveries (state, updated_at)
    WHERE state NOT IN ('pending', 'in_flight');
