//! Documents: metadata rows over content-addressed blobs.

use bytes::Bytes;
use chrono::Utc;
use nova_core::{DocumentId, DocumentKind, DocumentMeta, ExtractionFailure, Sha256Hex, TenantId};
use sqlx::Row;

use crate::{from_millis, parse_stored, to_millis, Dialect, Store, StoreError};

/// A document to store. Its kind and page count were established by the caller (the upload edge).
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub bytes: Bytes,
    pub filename: Option<String>,
    pub kind: DocumentKind,
    pub page_count: Option<u32>,
}

/// The tenant's row of a blob, new unless the tenant has one: `$1` id, `$2` sha256, ... `$9` tenant.
macro_rules! insert_document_sql {
    () => {
        "INSERT INTO documents (id, sha256, filename, kind, content_type, size_bytes, page_count, created_at,
                                tenant_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant_id, sha256) DO NOTHING"
    };
}
const INSERT_DOCUMENT_SQL: &str = insert_document_sql!();

/// On SQLite, the insert and, in the same query (SQLite binds `$N` by number across its statements), the
/// tenant's row with whether a deletion of its blob is marked. The read is a statement of its own, after the
/// insert committed, as [`Store::restore_if_deleted`] needs: a mark written before it is seen, and a
/// deletion that checks after it sees the row.
const DOCUMENT_ROW_SQLITE_SQL: &str = concat!(
    insert_document_sql!(),
    ";
     SELECT d.*, EXISTS (SELECT 1 FROM blob_deletions WHERE sha256 = $2) AS deletion_marked
     FROM documents d WHERE d.tenant_id = $9 AND d.sha256 = $2"
);

impl Store {
    /// Stores a document of the default tenant; see [`crate::TenantStore::put_document`].
    pub async fn put_document(&self, doc: NewDocument) -> Result<(DocumentMeta, bool), StoreError> {
        self.put_document_of(TenantId::DEFAULT, doc).await
    }

    /// Stores a document of `tenant`. The same bytes twice give one blob and the tenant's first document back
    /// (`created` false). Blobs are shared across tenants (content-addressed), rows are not: another tenant's
    /// upload of the same bytes makes a row of its own, so no tenant learns what another stored.
    pub(crate) async fn put_document_of(
        &self,
        tenant: TenantId,
        doc: NewDocument,
    ) -> Result<(DocumentMeta, bool), StoreError> {
        // Bytes first, row second: a crash in between leaves only an unreferenced blob.
        let sha = self.blobs().put(doc.bytes.clone()).await?;
        self.document_row(tenant, &sha, doc).await
    }

    /// The second half of [`Store::put_document_of`], once the bytes are stored under `sha`: the tenant's row
    /// (new, or the one it has), then the bytes again if a retention run deleted them meanwhile.
    pub(crate) async fn document_row(
        &self,
        tenant: TenantId,
        sha: &Sha256Hex,
        doc: NewDocument,
    ) -> Result<(DocumentMeta, bool), StoreError> {
        let size = doc.bytes.len() as i64;
        let id = DocumentId::new().to_string();
        let sqlite = self.dialect == Dialect::Sqlite;
        let turn = self.write_turn().await;
        let query = sqlx::query(if sqlite { DOCUMENT_ROW_SQLITE_SQL } else { INSERT_DOCUMENT_SQL })
            .bind(&id)
            .bind(sha.as_str())
            .bind(&doc.filename)
            .bind(doc.kind.as_str())
            .bind(doc.kind.content_type())
            .bind(size)
            .bind(doc.page_count.map(i64::from))
            .bind(to_millis(Utc::now()))
            .bind(tenant.to_string());
        let (row, marked) = if sqlite {
            // The insert, then the tenant's row and the mark, in one query (one round trip).
            let row = query.fetch_all(&self.pool).await?.into_iter().next().ok_or(sqlx::Error::RowNotFound)?;
            drop(turn);
            let marked = row.try_get::<i64, _>("deletion_marked")? != 0;
            (row, marked)
        } else {
            query.execute(&self.pool).await?;
            drop(turn);
            let row = sqlx::query("SELECT * FROM documents WHERE tenant_id = $1 AND sha256 = $2")
                .bind(tenant.to_string())
                .bind(sha.as_str())
                .fetch_one(&self.pool)
                .await?;
            (row, true)
        };
        // Ours when it has the id just made (the bytes may have been the tenant's before).
        let inserted = row.try_get::<String, _>("id")? == id;
        // A retention run may have deleted these bytes between the put and the row (see `retention`).
        if marked {
            self.restore_if_deleted(sha, doc.bytes).await?;
        }
        Ok((document_from_row(&row)?, inserted))
    }

    /// A document of any tenant, for workers (whose jobs were checked at submission); requests read through
    /// [`crate::TenantStore::get_document`].
    pub async fn get_document(&self, id: DocumentId) -> Result<Option<DocumentMeta>, StoreError> {
        let row = sqlx::query("SELECT * FROM documents WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(document_from_row).transpose()
    }

    /// Marks a document as one that took extraction down with `code` (see
    /// [`DocumentMeta::extraction_failure`]); `None` clears the mark (a forced job read it after all).
    pub async fn set_extraction_failure(&self, id: DocumentId, code: Option<&str>) -> Result<(), StoreError> {
        let at = code.map(|_| to_millis(Utc::now()));
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE documents SET extraction_failure_code = $1, extraction_failure_at = $2 WHERE id = $3")
            .bind(code)
            .bind(at)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The document and its bytes.
    pub async fn document_content(&self, id: DocumentId) -> Result<Option<(DocumentMeta, Bytes)>, StoreError> {
        let Some(meta) = self.get_document(id).await? else { return Ok(None) };
        let bytes = self.blobs().get(&meta.sha256).await?;
        Ok(Some((meta, bytes)))
    }
}

pub(crate) fn document_from_row(row: &sqlx::any::AnyRow) -> Result<DocumentMeta, StoreError> {
    let kind = match row.try_get::<String, _>("kind")?.as_str() {
        "pdf" => DocumentKind::Pdf,
        "xml" => DocumentKind::Xml,
        "text" => DocumentKind::Text,
        other => return Err(StoreError::Corrupt(format!("document kind `{other}`"))),
    };
    let sha: String = row.try_get("sha256")?;
    Ok(DocumentMeta {
        id: parse_stored("document id", &row.try_get::<String, _>("id")?)?,
        filename: row.try_get("filename")?,
        kind,
        content_type: row.try_get("content_type")?,
        size_bytes: row.try_get::<i64, _>("size_bytes")? as u64,
        sha256: Sha256Hex::try_from(sha).map_err(StoreError::Corrupt)?,
        page_count: row.try_get::<Option<i64>, _>("page_count")?.map(|n| n as u32),
        created_at: from_millis(row.try_get("created_at")?)?,
        extraction_failure: match (
            row.try_get::<Option<String>, _>("extraction_failure_code")?,
            row.try_get::<Option<i64>, _>("extraction_failure_at")?,
        ) {
            (Some(code), Some(at)) => Some(ExtractionFailure { code, at: from_millis(at)? }),
            _ => None,
        },
    })
}
