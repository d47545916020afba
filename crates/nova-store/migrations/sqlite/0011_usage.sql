-- What each tenant used, per day (UTC) and workflow: model calls, tokens and their cost, and sandbox time.
-- Rows are added to as work is done (an attempt's model calls and sandbox runs, a synchronous execution), so
-- the sums outlive the jobs themselves. `cost_nanos` is the cost in billionths of the price table's unit.
CREATE TABLE usage_daily (
    tenant_id       TEXT NOT NULL,
    day             TEXT NOT NULL,
    workflow        TEXT NOT NULL,
    runs            INTEGER NOT NULL DEFAULT 0,
    model_calls     INTEGER NOT NULL DEFAULT 0,
    input_tokens    INTEGER NOT NULL DEFAULT 0,
    output_tokens   INTEGER NOT NULL DEFAULT 0,
    cost_nanos      INTEGER NOT NULL DEFAULT 0,
    sandbox_runs    INTEGER NOT NULL DEFAULT 0,
    sandbox_cpu_ms  INTEGER NOT NULL DEFAULT 0,
    sandbox_wall_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, workflow)
);
