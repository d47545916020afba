//! A job's artifacts: the files its program wrote (a `task.run`'s CSV), listed and downloaded.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use nova_core::{Artifact, JobId};
use serde::Serialize;

use super::{not_found, parse_id, IdPath};
use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/jobs/{id}/artifacts", get(list)).route("/jobs/{id}/artifacts/{*name}", get(download))
}

/// A job's artifacts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ArtifactList {
    /// By name.
    data: Vec<Artifact>,
}

/// `GET /v1/jobs/{id}/artifacts`: what the job's program wrote, by name.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/artifacts",
    tag = "jobs",
    summary = "List a job's artifacts",
    description = "The files a `task.run` job's program wrote, once the job has succeeded; empty before, and \
        for workflows that write none.",
    params(("id" = JobId, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "The artifacts, by name.", body = ArtifactList),
        (status = 404, description = "No such job of this tenant (`job_not_found`).", body = ErrorBody),
    )
)]
async fn list(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<Json<ArtifactList>, ApiError> {
    let id: JobId = parse_id(&id, "job")?;
    let data = tenant.list_artifacts(id).await?.ok_or_else(|| not_found("job", &id.to_string()))?;
    Ok(Json(ArtifactList { data }))
}

/// A job id and an artifact name from the path. Never rejects: a part that is not UTF-8 reads as a name
/// no artifact has, so it answers the API's `404`.
struct ArtifactPath(String, String);

impl<S: Send + Sync> FromRequestParts<S> for ArtifactPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<(String, String)>::from_request_parts(parts, state).await {
            Ok(Path((id, name))) => Ok(ArtifactPath(id, name)),
            Err(_) => Ok(ArtifactPath("(not UTF-8)".into(), "(not UTF-8)".into())),
        }
    }
}

/// `GET /v1/jobs/{id}/artifacts/{name}`: one artifact's bytes, as an attachment.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/artifacts/{name}",
    tag = "jobs",
    summary = "Download an artifact",
    description = "The bytes, with the content type guessed from the name and `Content-Disposition: \
        attachment`. A name with folders (`by_vendor/acme.csv`) is given as is.",
    params(
        ("id" = JobId, Path, description = "The job's id."),
        ("name" = String, Path, description = "The artifact's name, as listed."),
    ),
    responses(
        (status = 200, description = "The file's bytes.", content(
            (crate::schemas::Binary = "application/octet-stream"),
            (String = "text/csv"),
        )),
        (status = 404, description = "No such job of this tenant (`job_not_found`), or no such artifact of the \
            job (`artifact_not_found`).", body = ErrorBody),
    )
)]
async fn download(Tenant(tenant): Tenant, ArtifactPath(id, name): ArtifactPath) -> Result<Response, ApiError> {
    let id: JobId = parse_id(&id, "job")?;
    let Some((artifact, bytes)) = tenant.artifact(id, &name).await? else {
        if tenant.get_job(id).await?.is_none() {
            return Err(not_found("job", &id.to_string()));
        }
        let shown: String = name.chars().take(200).collect();
        return Err(ApiError::NotFound {
            code: "artifact_not_found",
            message: format!("job {id} has no artifact `{shown}`; GET /v1/jobs/{id}/artifacts lists them"),
        });
    };
    let content_type =
        HeaderValue::from_str(&artifact.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_DISPOSITION, attachment(&artifact.name)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        // What a program wrote is never run by a browser as this origin's page.
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'")),
    ];
    Ok((StatusCode::OK, headers, bytes).into_response())
}

/// `attachment; filename="..."` with the name's last part, reduced to characters safe in a header.
fn attachment(name: &str) -> HeaderValue {
    let base = name.rsplit('/').next().unwrap_or(name);
    let safe: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .take(120)
        .collect();
    HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")).unwrap_or(HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_are_safe_in_a_header() {
        assert_eq!(attachment("by_vendor/acme.csv"), "attachment; filename=\"acme.csv\"");
        assert_eq!(attachment("a\"b\r\n.csv"), "attachment; filename=\"a_b__.csv\"");
        assert_eq!(attachment("Übersicht.csv"), "attachment; filename=\"_bersicht.csv\"");
    }
}
