-- Switchboard demo sales space. Deterministic: the same 120 deals on every machine, generated
-- with arithmetic over a recursive counter (no random()).
--
-- Governance lives in the views, not in application code: `deals` applies a row filter and a
-- column mask per caller through the engine's current_user() / is_member() functions, which the
-- governed SQL executor registers for the principal of each hop. Only the views are exposed;
-- the executor's authorizer refuses direct reads of the base tables.

CREATE TABLE deals_base (
    id          INTEGER PRIMARY KEY,
    region      TEXT    NOT NULL CHECK (region IN ('West', 'East', 'Central')),
    rep         TEXT    NOT NULL,
    account     TEXT    NOT NULL,
    stage       TEXT    NOT NULL
                CHECK (stage IN ('prospecting', 'proposal', 'negotiation', 'won', 'lost')),
    amount      INTEGER NOT NULL,
    margin_pct  REAL    NOT NULL,
    close_date  TEXT    NOT NULL
);

CREATE TABLE sales_reps (
    region_idx  INTEGER NOT NULL,
    rep_idx     INTEGER NOT NULL,
    region      TEXT    NOT NULL,
    rep         TEXT    NOT NULL,
    PRIMARY KEY (region_idx, rep_idx)
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

CREATE TABLE accounts (
    idx      INTEGER PRIMARY KEY,
    account  TEXT NOT NULL
);

INSERT INTO accounts (idx, account) VALUES
    (0, 'Acme Corp'), (1, 'Globex'), (2, 'Initech'), (3, 'Umbrella Health'),
    (4, 'Stark Industries'), (5, 'Wayne Logistics'), (6, 'Hooli'), (7, 'Vandelay Imports'),
    (8, 'Soylent Foods'), (9, 'Cyberdyne'), (10, 'Tyrell Systems'), (11, 'Wonka Confections'),
    (12, 'Pied Piper'), (13, 'Massive Dynamic'), (14, 'Oscorp'), (15, 'Gringotts Bank'),
    (16, 'Monarch Solutions'), (17, 'Blue Sun'), (18, 'Aperture Labs'), (19, 'Black Mesa'),
    (20, 'Nakatomi Trading'), (21, 'Dunder Mifflin'), (22, 'Prestige Worldwide'),
    (23, 'Sterling Cooper');

-- 120 deals: region rotates West/East/Central, three reps per region, 24 accounts, a stage mix of
-- 30% won / 10% lost / 20% each negotiation and proposal / 20% prospecting, amounts from 6,000 to
-- about 150,000 (median about 43,000; a fifth over 100,000), margins from 15% to 41%, close dates
-- spread over 2025.
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
    date('2025-01-01', '+' || ((n.i * 53) % 365) || ' days')
FROM n
JOIN sales_reps AS r ON r.region_idx = n.i % 3 AND r.rep_idx = (n.i / 3) % 3
JOIN accounts AS a ON a.idx = (n.i * 7) % 24;

-- The secured view. Row filter: managers, executive, finance and admin see every region;
-- west_sales sees West, east_sales sees East; anyone else (service principals included) sees
-- nothing. Column mask: margin_pct is real only for executive, finance and admin, NULL (shown as
-- "masked") for everyone else.
CREATE VIEW deals AS
SELECT
    id,
    region,
    rep,
    account,
    stage,
    amount,
    CASE
        WHEN is_member('executive') OR is_member('finance') OR is_member('admin') THEN margin_pct
    END AS margin_pct,
    close_date
FROM deals_base
WHERE is_member('managers') OR is_member('executive') OR is_member('finance')
   OR is_member('admin')
   OR (is_member('west_sales') AND region = 'West')
   OR (is_member('east_sales') AND region = 'East');

-- Discount approval matrix. A rule applies to discounts above min_pct up to and including max_pct
-- on deals above min_amount up to and including max_amount (NULL = no upper bound). Base levels:
-- up to 10% the account rep, up to 20% the sales manager, up to 30% the VP of Sales, above 30% the
-- CFO; deals over 100,000 raise the level one step (the CFO stays the top).
CREATE TABLE discount_rules (
    min_pct     REAL    NOT NULL,
    max_pct     REAL    NOT NULL,
    min_amount  INTEGER NOT NULL,
    max_amount  INTEGER,
    approver    TEXT    NOT NULL,
    level       INTEGER NOT NULL
);

INSERT INTO discount_rules (min_pct, max_pct, min_amount, max_amount, approver, level) VALUES
    (0,  10,  0,      100000, 'account rep',   1),
    (0,  10,  100000, NULL,   'sales manager', 2),
    (10, 20,  0,      100000, 'sales manager', 2),
    (10, 20,  100000, NULL,   'VP of Sales',   3),
    (20, 30,  0,      100000, 'VP of Sales',   3),
    (20, 30,  100000, NULL,   'CFO',           4),
    (30, 100, 0,      100000, 'CFO',           4),
    (30, 100, 100000, NULL,   'CFO',           4);

-- What the deal_desk tool reads: the rules plus a readable description of each. The policy is
-- public inside the company, so there is no row filter.
CREATE VIEW discount_policy AS
SELECT
    min_pct,
    max_pct,
    min_amount,
    max_amount,
    approver,
    level,
    CASE
        WHEN min_pct = 0 THEN 'discounts up to ' || printf('%g', max_pct) || '%'
        ELSE 'discounts above ' || printf('%g', min_pct) || '% up to '
            || printf('%g', max_pct) || '%'
    END
        || ' on deals '
        || CASE
               WHEN max_amount IS NULL THEN 'over ' || printf('%,d', min_amount)
               ELSE 'up to ' || printf('%,d', max_amount)
           END AS rule
FROM discount_rules;
