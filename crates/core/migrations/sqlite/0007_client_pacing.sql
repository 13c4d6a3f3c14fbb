-- Each rate-limited client's pacing state (backchannel_logout_rate_limit), shared by every
-- process on the database file. Times are INTEGER microseconds since the Unix epoch.
-- interval_us and burst are the limit the state was kept with (a changed limit starts
-- afresh); tat_us is the GCRA theoretical arrival time; queued_until_us is where the place
-- of the next row sent back to the outbox begins at the earliest.
CREATE TABLE client_pacing (
    client_id        TEXT PRIMARY KEY NOT NULL,
    interval_us      INTEGER NOT NULL,
    burst            INTEGER NOT NULL,
    tat_us           INTEGER NOT NULL,
    queued_until_us  INTEGER NOT NULL
) WITHOUT ROWID;
