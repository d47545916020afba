//! E2B's control plane: sandboxes created, listed, read, killed, given a new timeout and connected to,
//! each call authenticated by the NOVA API key in `X-API-Key` and scoped to its tenant.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{SecondsFormat, Utc};
use nova_app::sandboxes::{NewSandbox, SandboxEntry};
use nova_core::TenantId;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{registry, RestError, ENVD_VERSION};
use crate::AppState;

/// The templates NOVA answers for: E2B's default ones, each served by NOVA's one Python sandbox.
const TEMPLATES: [&str; 4] = ["code-interpreter-v1", "code-interpreter", "base", "python"];

/// The tenant of the key in `X-API-Key` (or, on a server without keys, of a loopback client).
async fn tenant(app: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> Result<TenantId, RestError> {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|k| !k.is_empty());
    let forwarded = ["forwarded", "x-forwarded-for", "x-real-ip"].iter().any(|h| headers.contains_key(*h));
    let peer = if forwarded { None } else { peer };
    match crate::auth::identify_key(app, key, peer).await {
        Ok(caller) => Ok(caller.tenant()),
        Err(_) => Err(RestError::new(StatusCode::UNAUTHORIZED, "Invalid API key: E2B_API_KEY must be a NOVA API key")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateBody {
    #[serde(rename = "templateID", default)]
    template_id: Option<String>,
    timeout: Option<u64>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    env_vars: Option<BTreeMap<String, String>>,
    #[serde(rename = "allow_internet_access", default)]
    allow_internet_access: Option<bool>,
    #[serde(default)]
    auto_pause: Option<bool>,
    #[serde(default)]
    volume_mounts: Option<Vec<Value>>,
}

/// What E2B's create and connect answer.
fn created(entry: &SandboxEntry, template: &str) -> Value {
    json!({
        "templateID": template,
        "alias": template,
        "sandboxID": entry.id.to_string(),
        "clientID": "nova",
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": entry.access_token,
        "trafficAccessToken": entry.access_token,
        "domain": null,
    })
}

/// What E2B's list and get answer for a sandbox.
fn listed(entry: &SandboxEntry) -> Value {
    let template = entry.metadata.get("nova.template").cloned().unwrap_or_else(|| TEMPLATES[0].into());
    let metadata: BTreeMap<&String, &String> = entry.metadata.iter().filter(|(k, _)| !k.starts_with("nova.")).collect();
    json!({
        "templateID": template,
        "alias": template,
        "sandboxID": entry.id.to_string(),
        "clientID": "nova",
        "startedAt": entry.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "endAt": entry.expires_at().to_rfc3339_opts(SecondsFormat::Micros, true),
        "cpuCount": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "memoryMB": entry.limits.memory_bytes >> 20,
        "diskSizeMB": entry.limits.work_bytes >> 20,
        "metadata": metadata,
        "state": "running",
        "envdVersion": ENVD_VERSION,
    })
}

/// `POST /v2/sandboxes`.
pub(super) async fn create(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, RestError> {
    let tenant = tenant(&app, &headers, Some(peer)).await?;
    let Json(body) = body.map_err(|e| RestError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let template = body.template_id.unwrap_or_else(|| TEMPLATES[0].into());
    if !TEMPLATES.contains(&template.as_str()) {
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            format!("template '{template}' is not available: NOVA serves the default Python template only"),
        ));
    }
    if body.auto_pause == Some(true) {
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "autoPause is not supported: a NOVA sandbox ends at its timeout",
        ));
    }
    if body.volume_mounts.is_some_and(|v| !v.is_empty()) {
        return Err(RestError::new(StatusCode::BAD_REQUEST, "volumes are not supported"));
    }
    let mut metadata = body.metadata.unwrap_or_default();
    metadata.retain(|k, _| !k.starts_with("nova."));
    let env = body.env_vars.unwrap_or_default();
    nova_app::sandboxes::check_labels(&metadata, &env).map_err(|m| RestError::new(StatusCode::BAD_REQUEST, m))?;
    metadata.insert("nova.template".into(), template.clone());
    let new = NewSandbox {
        timeout: body.timeout.map(Duration::from_secs),
        metadata,
        env,
        network: body.allow_internet_access.unwrap_or(false),
    };
    let entry = registry(&app)?.create(tenant, new).await?;
    Ok((StatusCode::CREATED, Json(created(&entry, &template))).into_response())
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    /// `k=v&k2=v2`, URL-encoded once more.
    metadata: Option<String>,
    /// `running`, `paused`, or both, comma-separated.
    state: Option<String>,
}

/// `GET /v2/sandboxes`: the tenant's running sandboxes (one page: no `x-next-token`).
pub(super) async fn list(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Value>>, RestError> {
    let tenant = tenant(&app, &headers, Some(peer)).await?;
    if query.state.as_deref().is_some_and(|s| !s.split(',').any(|s| s.trim() == "running")) {
        return Ok(Json(Vec::new()));
    }
    let wanted: Vec<(String, String)> = query
        .metadata
        .as_deref()
        .map(|m| form_urlencoded::parse(m.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let entries = registry(&app)?.list(tenant);
    let matching = entries.iter().filter(|e| wanted.iter().all(|(k, v)| e.metadata.get(k) == Some(v)));
    Ok(Json(matching.map(|e| listed(e)).collect()))
}

async fn entry_of(
    app: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    id: &str,
) -> Result<Arc<SandboxEntry>, RestError> {
    let tenant = tenant(app, headers, Some(peer)).await?;
    registry(app)?.get(tenant, id).map_err(|_| {
        RestError::new(StatusCode::NOT_FOUND, format!("sandbox \"{id}\" doesn't exist or you don't have access to it"))
    })
}

/// `GET /sandboxes/{id}`.
pub(super) async fn show(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, RestError> {
    let entry = entry_of(&app, &headers, peer, &id).await?;
    let mut detail = listed(&entry);
    detail["envdAccessToken"] = json!(entry.access_token);
    detail["allowInternetAccess"] = json!(entry.network);
    detail["domain"] = Value::Null;
    Ok(Json(detail))
}

/// `DELETE /sandboxes/{id}`.
pub(super) async fn kill(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, RestError> {
    let entry = entry_of(&app, &headers, peer, &id).await?;
    registry(&app)?.kill(entry.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(super) struct TimeoutBody {
    timeout: u64,
}

/// `POST /sandboxes/{id}/timeout`: the sandbox now ends `timeout` seconds from now.
pub(super) async fn set_timeout(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<TimeoutBody>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, RestError> {
    let entry = entry_of(&app, &headers, peer, &id).await?;
    let Json(body) = body.map_err(|e| RestError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    registry(&app)?.set_timeout(entry.tenant, &id, Duration::from_secs(body.timeout))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
pub(super) struct ConnectBody {
    timeout: Option<u64>,
}

/// `POST /v2/sandboxes/{id}/connect`: a running sandbox's tokens again (and a new timeout, when given).
pub(super) async fn connect(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<ConnectBody>>,
) -> Result<Json<Value>, RestError> {
    let entry = entry_of(&app, &headers, peer, &id).await?;
    if let Some(timeout) = body.and_then(|b| b.0.timeout) {
        // A timeout never shortens a sandbox that connecting finds running.
        let left = (entry.expires_at() - Utc::now()).num_seconds().max(0) as u64;
        if timeout > left {
            registry(&app)?.set_timeout(entry.tenant, &id, Duration::from_secs(timeout))?;
        }
    }
    let template = entry.metadata.get("nova.template").cloned().unwrap_or_else(|| TEMPLATES[0].into());
    Ok(Json(created(&entry, &template)))
}

/// `GET /sandboxes/{id}/metrics`: one sample, now.
pub(super) async fn metrics(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Vec<Value>>, RestError> {
    let entry = entry_of(&app, &headers, peer, &id).await?;
    let memory = entry.blocking(|s| s.memory()).await.unwrap_or(0);
    let now = Utc::now();
    Ok(Json(vec![json!({
        "timestamp": now.to_rfc3339_opts(SecondsFormat::Micros, true),
        "timestampUnix": now.timestamp(),
        "cpuCount": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpuUsedPct": 0.0,
        "memUsed": memory,
        "memTotal": entry.limits.memory_bytes,
        "memCache": 0,
        "diskUsed": 0,
        "diskTotal": entry.limits.work_bytes,
    })]))
}
