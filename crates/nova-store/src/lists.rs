//! Lists of jobs and documents, newest first, a page at a time.
//!
//! Pagination is by key, never by offset: ids are UUIDv7, so id order is creation order, and a page starts
//! below the last id of the page before. Every page reads index ranges in id order, however long the
//! history grows (`jobs_by_workflow` or `jobs_by_tenant`; see migrations 0005 and 0006), and a row added or deleted
//! between two pages neither repeats nor hides another.

use nova_core::{DocumentId, DocumentMeta, Job, JobId, JobStatus, ReviewState, TenantId, Workflow};
use sqlx::Row;

use crate::documents::document_from_row;
use crate::jobs::job_from_row;
use crate::{Dialect, Store, StoreError};

/// The most items one page holds.
pub const MAX_PAGE_SIZE: u32 = 200;

/// Which jobs a list shows; `None` shows all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub workflow: Option<Workflow>,
    /// Only jobs whose result waits for review, or has had one (the review queue, `jobs_by_review`).
    pub review: Option<ReviewState>,
}

/// One page of a list, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Whether older items follow the last one: ask for the next page from its id.
    pub more: bool,
}

impl Store {
    /// Up to `limit` jobs of `tenant` (at most [`MAX_PAGE_SIZE`]) that match `filter`, newest first, created
    /// before job `before` when given, each with its attempts.
    pub(crate) async fn list_jobs_of(
        &self,
        tenant: TenantId,
        filter: JobFilter,
        before: Option<JobId>,
        limit: u32,
    ) -> Result<Page<Job>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let (sql, binds) = list_jobs_sql(tenant, filter, before.map(|id| id.to_string()));
        // One more than asked says whether another page follows.
        let mut query = sqlx::query(&sql).bind(i64::from(limit) + 1);
        for value in binds {
            query = query.bind(value);
        }
        let mut rows = query.fetch_all(&self.pool).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        // The jobs are read before their attempts, as `get_job` does: a finished job never shows without
        // the attempt that finished it.
        let ids = rows
            .iter()
            .map(|row| crate::parse_stored("job id", &row.try_get::<String, _>("id")?))
            .collect::<Result<Vec<JobId>, StoreError>>()?;
        let mut attempts = if ids.is_empty() { Default::default() } else { self.attempts_of(&ids).await? };
        let items = rows
            .iter()
            .zip(&ids)
            .map(|(row, id)| job_from_row(row, attempts.remove(&id.to_string()).unwrap_or_default()))
            .collect::<Result<Vec<Job>, StoreError>>()?;
        Ok(Page { items, more })
    }

    /// Up to `limit` documents of `tenant` (at most [`MAX_PAGE_SIZE`]), newest first, created before document
    /// `before` when given.
    pub(crate) async fn list_documents_of(
        &self,
        tenant: TenantId,
        before: Option<DocumentId>,
        limit: u32,
    ) -> Result<Page<DocumentMeta>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let sql = list_documents_sql(before.is_some());
        let mut query = sqlx::query(&sql).bind(i64::from(limit) + 1).bind(tenant.to_string());
        if let Some(before) = before {
            query = query.bind(before.to_string());
        }
        let mut rows = query.fetch_all(&self.pool).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let items = rows.iter().map(document_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, more })
    }

    /// Adds `n` document rows (without bytes: they are never read) created long ago, then refreshes the
    /// planner's statistics: the history that query-plan tests need.
    #[doc(hidden)]
    pub async fn insert_document_history(&self, n: u64) -> Result<(), StoreError> {
        let (rows, suffix) = match self.dialect {
            Dialect::Sqlite => {
                ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)", "printf('%031d', i)")
            }
            Dialect::Postgres => ("WITH n(i) AS (SELECT generate_series(1, $1::BIGINT))", "lpad(i::TEXT, 31, '0')"),
        };
        let sql = format!(
            "{rows} INSERT INTO documents (id, sha256, kind, content_type, size_bytes, created_at)
             SELECT 'doc_h' || {suffix}, 'h' || {suffix}, 'text', 'text/plain', 1, i FROM n"
        );
        let _turn = self.write_turn().await;
        sqlx::query(&sql).bind(i64::try_from(n).unwrap_or(i64::MAX)).execute(&self.pool).await?;
        sqlx::query("ANALYZE").execute(&self.pool).await?;
        Ok(())
    }

    /// The database's plans for the list statements, each with a cursor (no filter, a status, a workflow,
    /// both, the review queue, then documents), one line per plan step and `--` after each statement, so a test can check
    /// that they read indexes. The filters are bound with rare values (`failed`, `code.run`), where a scan
    /// would hurt most.
    #[doc(hidden)]
    pub async fn explain_list_queries(&self) -> Result<String, StoreError> {
        let explain = self.explain_prefix();
        // The histories' ids (`job_h...`, `doc_h...`) sort above every real one: these cursors lie above
        // them all.
        let cursor = "job_z";
        let filters = [
            JobFilter::default(),
            JobFilter { status: Some(JobStatus::Failed), ..JobFilter::default() },
            JobFilter { workflow: Some(Workflow::CodeRun), ..JobFilter::default() },
            JobFilter { status: Some(JobStatus::Failed), workflow: Some(Workflow::CodeRun), review: None },
            JobFilter { review: Some(ReviewState::Needed), ..JobFilter::default() },
        ];
        let mut statements: Vec<(String, Vec<String>)> = filters
            .into_iter()
            .map(|filter| list_jobs_sql(TenantId::DEFAULT, filter, Some(cursor.to_string())))
            .collect();
        statements.push((list_documents_sql(true), vec![TenantId::DEFAULT.to_string(), "doc_z".to_string()]));
        let mut out = String::new();
        for (statement, binds) in statements {
            let sql = format!("{explain}{statement}");
            let mut query = sqlx::query(&sql).bind(51_i64);
            for value in binds {
                query = query.bind(value);
            }
            self.append_plan(query, &mut out).await?;
        }
        Ok(out)
    }
}

/// The statement of one page of jobs and the text values it binds from `$2` on; `$1` is the row limit.
///
/// A filtered list reads `jobs_by_workflow` in id order, one range per (workflow, status) pair: the filter's
/// values, and every value of the dimension it leaves open. Each range stops at the limit and the ranges
/// are merged, so a page reads at most `limit` rows per range, however long the history.
fn list_jobs_sql(tenant: TenantId, filter: JobFilter, before: Option<String>) -> (String, Vec<String>) {
    let mut binds = Vec::new();
    let mut bind = |value: String| {
        binds.push(value);
        format!("${}", binds.len() + 1)
    };
    let owner = format!("tenant_id = {}", bind(tenant.to_string()));
    // Values of this code (`Workflow::ALL`, `JobStatus::ALL`) go into the text as literals; the client's are
    // bound.
    let workflows: Vec<String> = match filter.workflow {
        Some(workflow) => vec![bind(workflow.as_str().to_string())],
        None => Workflow::ALL.iter().map(|w| format!("'{}'", w.as_str())).collect(),
    };
    let statuses: Vec<String> = match filter.status {
        Some(status) => vec![bind(status.as_str().to_string())],
        None => JobStatus::ALL.iter().map(|s| format!("'{}'", s.as_str())).collect(),
    };
    let below = before.map(|id| format!("id < {}", bind(id)));
    let page = |conditions: Vec<String>| {
        let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
        format!("SELECT * FROM jobs{filter} ORDER BY id DESC LIMIT $1")
    };
    let sql = if let Some(review) = filter.review {
        // The review queue: one range of `jobs_by_review`; its jobs all succeeded, so the other filters
        // rarely drop a row.
        let mut conditions = vec![owner, format!("review = {}", bind(review.as_str().to_string()))];
        if filter.workflow.is_some() {
            conditions.push(format!("workflow = {}", workflows[0]));
        }
        if filter.status.is_some() {
            conditions.push(format!("status = {}", statuses[0]));
        }
        page(conditions.into_iter().chain(below).collect())
    } else if filter == JobFilter::default() {
        page([owner].into_iter().chain(below).collect())
    } else if workflows.len() == 1 && statuses.len() == 1 {
        page(
            [owner, format!("workflow = {}", workflows[0]), format!("status = {}", statuses[0])]
                .into_iter()
                .chain(below)
                .collect(),
        )
    } else {
        let ranges: Vec<String> = workflows
            .iter()
            .flat_map(|w| statuses.iter().map(move |s| (w, s)))
            .enumerate()
            .map(|(i, (w, s))| {
                let range = page(
                    [owner.clone(), format!("workflow = {w}"), format!("status = {s}")]
                        .into_iter()
                        .chain(below.clone())
                        .collect(),
                );
                format!("SELECT * FROM ({range}) AS r{i}")
            })
            .collect();
        format!("{} ORDER BY id DESC LIMIT $1", ranges.join(" UNION ALL "))
    };
    (sql, binds)
}

/// One page of a tenant's documents: `$1` is the row limit, `$2` the tenant, `$3` the cursor when there is one.
fn list_documents_sql(from_cursor: bool) -> String {
    let below = if from_cursor { " AND id < $3" } else { "" };
    format!("SELECT * FROM documents WHERE tenant_id = $2{below} ORDER BY id DESC LIMIT $1")
}
