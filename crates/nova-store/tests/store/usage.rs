//! Usage sums: each record adds to its tenant's row of the day and workflow; reads are per tenant and
//! range. Every test runs on SQLite and on PostgreSQL.

use chrono::{NaiveDate, TimeZone, Utc};
use nova_core::TenantId;
use nova_store::testing::{Backend, TestStore};
use nova_store::UsageDelta;

nova_store::conformance!(usage_adds_up_per_tenant_day_and_workflow);

async fn usage_adds_up_per_tenant_day_and_workflow(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let other = f.store.create_key("other").await.unwrap().tenant;
    let day1 = Utc.with_ymd_and_hms(2026, 11, 2, 23, 59, 0).unwrap();
    let day2 = Utc.with_ymd_and_hms(2026, 11, 3, 0, 1, 0).unwrap();
    let call = UsageDelta {
        model_calls: 1,
        input_tokens: 1200,
        output_tokens: 300,
        cost_nanos: 450_000,
        ..Default::default()
    };
    let run = UsageDelta { sandbox_runs: 1, sandbox_cpu_ms: 40, sandbox_wall_ms: 55, ..Default::default() };
    for (tenant, workflow, at, delta) in [
        (TenantId::DEFAULT, "invoice.extract", day1, call),
        (TenantId::DEFAULT, "invoice.extract", day1, call),
        (TenantId::DEFAULT, "code.run", day1, run),
        (TenantId::DEFAULT, "code.run", day2, run),
        (other, "code.run", day1, run),
    ] {
        f.store.record_usage(tenant, workflow, at, delta).await.unwrap();
    }
    let d = |day| NaiveDate::from_ymd_opt(2026, 11, day).unwrap();
    let mine = f.store.tenant(TenantId::DEFAULT).usage(d(1), d(30), None).await.unwrap();
    let summary: Vec<(u32, &str, u64)> =
        mine.iter().map(|r| (chrono::Datelike::day(&r.day), r.workflow.as_str(), r.runs)).collect();
    assert_eq!(summary, [(2, "code.run", 1), (2, "invoice.extract", 2), (3, "code.run", 1)]);
    let extract = &mine[1].usage;
    assert_eq!(
        (extract.model_calls, extract.input_tokens, extract.output_tokens, extract.cost_nanos),
        (2, 2400, 600, 900_000)
    );
    assert_eq!((mine[0].usage.sandbox_cpu_ms, mine[0].usage.sandbox_wall_ms), (40, 55));

    // A range and a workflow narrow it; another tenant's rows never show.
    let one_day = f.store.tenant(TenantId::DEFAULT).usage(d(3), d(3), None).await.unwrap();
    assert_eq!(one_day.len(), 1);
    let runs = f.store.tenant(TenantId::DEFAULT).usage(d(1), d(30), Some("code.run")).await.unwrap();
    assert_eq!(runs.len(), 2);
    let theirs = f.store.tenant(other).usage(d(1), d(30), None).await.unwrap();
    assert_eq!(theirs.iter().map(|r| r.runs).sum::<u64>(), 1);
}
