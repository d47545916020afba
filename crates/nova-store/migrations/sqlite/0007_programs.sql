-- Programs a model wrote for one document layout, kept so that the next document of that layout runs the
-- program with no model call. `scope` is the tenant the program was learned for (programs never cross
-- tenants; '' before tenants), `layout_key` the seller's VAT id (or 'novat'), `labels` the page's
-- normalised label words, compared by similarity among the programs of one key. A program that fails
-- `failures` times in a row is retired (status 'retired'), never run again, and kept for inspection.
CREATE TABLE programs (
    id           TEXT PRIMARY KEY,
    scope        TEXT NOT NULL DEFAULT '',
    kind         TEXT NOT NULL,
    layout_key   TEXT NOT NULL,
    labels       TEXT NOT NULL,
    code         TEXT NOT NULL,
    model        TEXT,
    status       TEXT NOT NULL DEFAULT 'active',
    successes    INTEGER NOT NULL DEFAULT 0,
    failures     INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX programs_by_layout ON programs (scope, kind, layout_key, status, id);
