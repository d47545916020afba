//! Who is asking. Every `/v1` request passes [`authenticate`] first, which finds the caller's tenant and
//! puts a [`Caller`] in the request; handlers reach the store only through [`Tenant`], the store as that
//! tenant sees it.
//!
//! - As soon as one API key exists (made by `nova keys create`, in any process), every request needs a valid
//!   one as `Authorization: Bearer nova_...`. Keys are looked up in the store on every request (one lookup
//!   of a unique index), so a key made or revoked while the server runs counts from the next request; there
//!   is no cache to go stale. Revoked keys still count as existing: revoking every key does not open the
//!   server.
//! - With no key at all, the server answers loopback clients only, as the default tenant, and refuses every
//!   other peer (`403 loopback_only`). It refuses per request rather than refusing to listen on other
//!   addresses, so a server started on `0.0.0.0` becomes usable from elsewhere the moment a key exists,
//!   without a restart. A request that came through a proxy (it carries `Forwarded`, `X-Forwarded-For` or
//!   `X-Real-IP`) is not a loopback client, whatever its connection's peer: behind a reverse proxy on the
//!   same host, every client would be one.
//!
//! Keys are never logged: the key's id names it in logs and lists.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nova_core::{ApiKeyId, TenantId};
use nova_store::{QueueStats, Store, StoreError, TenantStore};

use crate::error::ApiError;
use crate::AppState;

/// The caller of a request, as [`authenticate`] found it. Only this module makes one, so a [`TenantStore`]
/// made from a caller ([`ServerStore::of`]) is always the authenticated tenant's.
#[derive(Debug, Clone)]
pub struct Caller {
    tenant: TenantId,
    key: Option<ApiKeyId>,
    rate_limit: Option<String>,
}

impl Caller {
    /// Whose request this is.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The key it came with; `None` on a server without keys (a loopback client, as the default tenant).
    pub fn key(&self) -> Option<ApiKeyId> {
        self.key
    }

    /// The tenant's own request rate, when it has one.
    pub fn rate_limit(&self) -> Option<&str> {
        self.rate_limit.as_deref()
    }
}

/// The store as the server's own machinery holds it. The [`Store`] inside is private to this module: route
/// handlers reach data only through [`Tenant`] (the [`TenantStore`] of the authenticated [`Caller`]), and
/// what belongs to no tenant (readiness, the queue's gauges, whether keys exist) has its own method here.
#[derive(Clone)]
pub struct ServerStore(Store);

impl From<Store> for ServerStore {
    fn from(store: Store) -> Self {
        ServerStore(store)
    }
}

impl ServerStore {
    /// The store as `caller`'s tenant sees it.
    pub fn of(&self, caller: &Caller) -> TenantStore {
        self.0.tenant(caller.tenant)
    }

    /// Whether the database answers (`GET /readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.0.ping().await
    }

    /// The whole queue's counts, for the metrics' gauges (no tenant's in particular).
    pub async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        self.0.queue_stats().await
    }

    /// Whether any API key was ever made (revoked ones count).
    pub async fn keys_exist(&self) -> Result<bool, StoreError> {
        self.0.keys_exist().await
    }
}

/// The middleware: finds the [`Caller`] or answers `401`/`403` itself.
pub async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let authorization = req.headers().get(AUTHORIZATION).cloned();
    let peer = direct_peer(&req);
    match identify(&app, authorization.as_ref(), peer).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// The peer of a request that came straight from it: `None` when the request says it was forwarded by a
/// proxy (the peer is then the proxy, not the client) or when the router was served without `ConnectInfo`.
pub(crate) fn direct_peer(req: &Request) -> Option<SocketAddr> {
    const PROXY_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];
    if PROXY_HEADERS.iter().any(|name| req.headers().contains_key(*name)) {
        return None;
    }
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0)
}

/// The caller of a request with this `Authorization` header (if any) from `peer` (if known).
async fn identify(
    app: &AppState,
    authorization: Option<&HeaderValue>,
    peer: Option<SocketAddr>,
) -> Result<Caller, ApiError> {
    let secret = authorization.map(bearer).transpose()?;
    identify_key(app, secret, peer).await
}

/// The caller of a request that came with the API key `secret` (if any) from `peer` (if known), by the rules
/// above: also for protocols that carry the key in another header (E2B's `X-API-Key`).
pub(crate) async fn identify_key(
    app: &AppState,
    secret: Option<&str>,
    peer: Option<SocketAddr>,
) -> Result<Caller, ApiError> {
    if let Some(secret) = secret {
        let owner = app.store.0.authenticate(secret).await?.ok_or_else(|| ApiError::Unauthorized {
            code: "invalid_api_key",
            message: "the API key is not valid (unknown or revoked)".into(),
        })?;
        return Ok(Caller { tenant: owner.tenant, key: Some(owner.key), rate_limit: owner.rate_limit });
    }
    if app.store.keys_exist().await? {
        return Err(ApiError::Unauthorized {
            code: "missing_api_key",
            message: "this server requires an API key: send it as `Authorization: Bearer nova_...`".into(),
        });
    }
    // An unknown peer (a router served without ConnectInfo) counts as not loopback: refuse rather than guess.
    if peer.is_some_and(|peer| peer.ip().to_canonical().is_loopback()) {
        return Ok(Caller { tenant: TenantId::DEFAULT, key: None, rate_limit: None });
    }
    Err(ApiError::Forbidden {
        code: "loopback_only",
        message: "this server has no API key yet, so it answers loopback clients only (not requests forwarded \
                  by a proxy); create a key with `nova keys create --tenant NAME` and send it as \
                  `Authorization: Bearer ...`"
            .into(),
    })
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(value: &HeaderValue) -> Result<&str, ApiError> {
    let malformed = || ApiError::Unauthorized {
        code: "invalid_authorization",
        message: "the Authorization header must be `Bearer ` followed by an API key".into(),
    };
    let text = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = text.split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(malformed());
    }
    Ok(token)
}

/// The store as the caller's tenant sees it: the only way handlers reach documents and jobs.
pub struct Tenant(pub TenantStore);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let caller = parts.extensions.get::<Caller>().ok_or_else(|| {
            tracing::error!("a /v1 route was reached without passing authentication");
            ApiError::Internal("identifying the caller".into())
        })?;
        Ok(Tenant(app.store.of(caller)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_server_without_keys_answers_loopback_peers_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = nova_store::Store::open(dir.path()).await.unwrap();
        let app = AppState::from(crate::AppParts {
            store: store.clone().into(),
            config: Arc::new(crate::ServerConfig::default()),
            wake_workers: Arc::default(),
            sandbox: Err("none".into()),
            sandboxes: Err("none".into()),
            limiter: crate::Limiter::Off,
            extractor: nova_app::extraction::Extractor::default(),
        });
        for loopback in ["127.0.0.1:5000", "[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
            let caller = identify(&app, None, Some(loopback.parse().unwrap())).await.unwrap();
            assert_eq!((caller.tenant, caller.key), (TenantId::DEFAULT, None), "{loopback}");
        }
        for remote in [Some("10.0.0.7:5000"), Some("[2001:db8::1]:443"), None] {
            let refused = identify(&app, None, remote.map(|r| r.parse().unwrap())).await.unwrap_err();
            assert!(matches!(refused, ApiError::Forbidden { code: "loopback_only", .. }), "{remote:?}");
        }
        // Once a key exists, a remote peer with it is served as its tenant, and loopback needs one too.
        let key = store.create_key("acme").await.unwrap();
        let bearer = HeaderValue::from_str(&format!("Bearer {}", key.secret)).unwrap();
        let caller = identify(&app, Some(&bearer), Some("10.0.0.7:5000".parse().unwrap())).await.unwrap();
        assert_eq!((caller.tenant, caller.key), (key.tenant, Some(key.id)));
        let refused = identify(&app, None, Some("127.0.0.1:5000".parse().unwrap())).await.unwrap_err();
        assert!(matches!(refused, ApiError::Unauthorized { code: "missing_api_key", .. }));
    }

    #[test]
    fn bearer_tokens_are_read_and_other_schemes_refused() {
        let ok = |text: &str| bearer(&HeaderValue::from_str(text).unwrap()).ok().map(str::to_string);
        assert_eq!(ok("Bearer nova_abc").as_deref(), Some("nova_abc"));
        assert_eq!(ok("bearer  nova_abc ").as_deref(), Some("nova_abc"));
        for bad in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "nova_abc"] {
            assert_eq!(ok(bad), None, "{bad}");
        }
    }
}
