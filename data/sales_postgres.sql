-- Switchboard demo sales space on PostgreSQL: the same 120 deals as data/sales.sql, with the
-- governance enforced by PostgreSQL itself. Installed by `switchboard init --postgres URL` into
-- one schema (search_path set to it); `{schema}` stands for the quoted schema name.
--
-- Identity arrives per transaction: each hop sets `switchboard.user` and `switchboard.groups`
-- with set_config(..., true) and switches to `switchboard_reader` with SET LOCAL ROLE.
-- - Row filter: a row-level security policy on deals_base (managers, executive, finance and
--   admin see every region; west_sales sees West, east_sales sees East; anyone else nothing).
-- - Column mask: the `deals` view returns margin_pct only to executive, finance and admin.
-- The view is owned by `switchboard_sales_owner`, which is neither superuser nor table owner,
-- so the policy applies to reads through the view; `switchboard_reader` may read the view and
-- nothing else in the schema.

-- Roles are cluster-wide; the advisory lock keeps concurrent installs from racing on them.
SELECT pg_advisory_xact_lock(7274016);
DO $$ BEGIN
    CREATE ROLE switchboard_reader NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$ BEGIN
    CREATE ROLE switchboard_sales_owner NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$ BEGIN
    IF NOT pg_has_role(current_user, 'switchboard_reader', 'MEMBER') THEN
        EXECUTE format('GRANT switchboard_reader TO %I', current_user);
    END IF;
    IF NOT pg_has_role(current_user, 'switchboard_sales_owner', 'MEMBER') THEN
        EXECUTE format('GRANT switchboard_sales_owner TO %I', current_user);
    END IF;
END $$;

CREATE TABLE deals_base (
    id          INTEGER PRIMARY KEY,
    region      TEXT    NOT NULL CHECK (region IN ('West', 'East', 'Central')),
    rep         TEXT    NOT NULL,
    account     TEXT    NOT NULL,
    stage       TEXT    NOT NULL
                CHECK (stage IN ('prospecting', 'proposal', 'negotiation', 'won', 'lost')),
    amount      INTEGER NOT NULL,
    margin_pct  NUMERIC(5, 1) NOT NULL,
    close_date  TEXT    NOT NULL
);

CREATE TABLE sales_reps (
    region_idx  INTEGER NOT NULL,
    rep_idx     INTEGER NOT NULL,
    region      TEXT    NOT NULL,
    rep         TEXT    NOT NULL,
    PRIMARY KEY (region_idx, rep_idx)
);

CREATE TABLE accounts (
    idx      INTEGER PRIMARY KEY,
    account  TEXT NOT NULL
);

INSERT INTO sales_reps (region_idx, rep_idx, region, rep) VALUES
    (0, 0, 'West', 'Maria Lopez'),
    (0, 1, 'West', 'Jake Turner'),
    (0, 2, 'West', 'Priya Shah'),
    (1, 0, 'East', 'Daniel Kim'),
    (1, 1, 'East', 'Sofia Rossi'),
    (1, 2, 'East', 'Liam Walsh'),
    (2, 0, 'Central', 'Grace Chen'),
    (2, 1, 'Central', 'Omar Haddad'),
    (2, 2, 'Central', 'Nina Petrov');

INSERT INTO accounts (idx, account) VALUES
    (0, 'Acme Corp'), (1, 'Globex'), (2, 'Initech'), (3, 'Umbrella Health'),
    (4, 'Stark Industries'), (5, 'Wayne Logistics'), (6, 'Hooli'), (7, 'Vandelay Imports'),
    (8, 'Soylent Foods'), (9, 'Cyberdyne'), (10, 'Tyrell Systems'), (11, 'Wonka Confections'),
    (12, 'Pied Piper'), (13, 'Massive Dynamic'), (14, 'Oscorp'), (15, 'Gringotts Bank'),
    (16, 'Monarch Solutions'), (17, 'Blue Sun'), (18, 'Aperture Labs'), (19, 'Black Mesa'),
    (20, 'Nakatomi Trading'), (21, 'Dunder Mifflin'), (22, 'Prestige Worldwide'),
    (23, 'Sterling Cooper');

INSERT INTO deals_base (id, region, rep, account, stage, amount, margin_pct, close_date)
WITH RECURSIVE n(i) AS (
    SELECT 1
    UNION ALL
    SELECT i + 1 FROM n WHERE i < 120
)
SELECT
    n.i,
    r.region,
    r.rep,
    a.account,
    CASE (n.i * 13) % 10
        WHEN 0 THEN 'won' WHEN 1 THEN 'won' WHEN 2 THEN 'won'
        WHEN 3 THEN 'lost'
        WHEN 4 THEN 'negotiation' WHEN 5 THEN 'negotiation'
        WHEN 6 THEN 'proposal' WHEN 7 THEN 'proposal'
        ELSE 'prospecting'
    END,
    -- x = a scrambled 0..292; x*x/293 skews amounts toward smaller deals; the last term
    -- breaks ties.
    6000 + (((n.i * 7919 + n.i * n.i * 31) % 293) * ((n.i * 7919 + n.i * n.i * 31) % 293) / 293)
        * 500 + ((n.i * 37) % 10) * 100,
    15 + ((n.i * n.i * 13 + n.i * 29) % 53) * 0.5,
    to_char(DATE '2025-01-01' + (n.i * 53) % 365, 'YYYY-MM-DD')
FROM n
JOIN sales_reps AS r ON r.region_idx = n.i % 3 AND r.rep_idx = (n.i / 3) % 3
JOIN accounts AS a ON a.idx = (n.i * 7) % 24;

-- The caller's groups, as the hop bound them; none when nothing is bound.
CREATE FUNCTION switchboard_groups() RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT coalesce(string_to_array(nullif(current_setting('switchboard.groups', true), ''), ','), '{}')
$$;

CREATE FUNCTION is_member(grp text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT grp = ANY ({schema}.switchboard_groups())
$$;

ALTER TABLE deals_base ENABLE ROW LEVEL SECURITY;
CREATE POLICY deals_by_region ON deals_base FOR SELECT USING (
    {schema}.is_member('managers') OR {schema}.is_member('executive')
    OR {schema}.is_member('finance') OR {schema}.is_member('admin')
    OR ({schema}.is_member('west_sales') AND region = 'West')
    OR ({schema}.is_member('east_sales') AND region = 'East')
);

-- The secured view: every column, margin_pct masked (NULL) except for executive, finance and
-- admin. Rows are left to the policy.
CREATE VIEW deals AS
SELECT
    id,
    region,
    rep,
    account,
    stage,
    amount,
    CASE
        WHEN {schema}.is_member('executive') OR {schema}.is_member('finance')
            OR {schema}.is_member('admin') THEN margin_pct
    END AS margin_pct,
    close_date
FROM deals_base;

ALTER VIEW deals OWNER TO switchboard_sales_owner;
GRANT USAGE ON SCHEMA {schema} TO switchboard_reader, switchboard_sales_owner;
GRANT SELECT ON deals_base TO switchboard_sales_owner;
GRANT SELECT ON deals TO switchboard_reader;
