-- One delivery for a user-wide end. A client registered with
-- `backchannel_logout_user_wide: per_user` gets one row for every session of the user that a
-- user-wide end ended: its tokens carry `sub` alone. `scope` is 'session' (one session, as
-- before) or 'user'; `sessions_covered` is how many ended sessions the row covers. A 'user'
-- row keeps `session_id` set to the first session it covers, so the foreign key and the
-- session filter still hold. The defaults make every existing row read as before; constant
-- defaults rewrite no rows, and the checks (which the defaults satisfy) are added NOT VALID
-- so that adding them scans no rows either.
ALTER TABLE deliveries ADD COLUMN scope TEXT NOT NULL DEFAULT 'session';
ALTER TABLE deliveries ADD COLUMN sessions_covered INTEGER NOT NULL DEFAULT 1;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_scope
    CHECK (scope IN ('session', 'user')) NOT VALID;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_sessions_covered
    CHECK (sessions_covered >= 1) NOT VALID;
