//! Tenants, API keys, idempotent POSTs and rate limits, driven over HTTP.

use std::time::Duration;

use nova_core::TenantId;
use nova_server::ratelimit::{RateLimit, RedisLimiter};
use nova_server::{Limiter, ServerConfig};
use nova_store::testing::Backend;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{dev_file, error_code, Options, TestApp};

nova_store::conformance!(no_tenant_sees_or_touches_another_tenant_s_resources);

const CRONUS: &str = "facturx/mustang__103767-Invoice-2026-03-24-1";

/// One request with `key` as its bearer token, if any: status, JSON body (`null` when there is none) and
/// headers.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value, HeaderMap) {
    let mut request = app.client.request(method, app.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, value, headers)
}

async fn get(app: &TestApp, path: &str, key: Option<&str>) -> (u16, Value) {
    let (status, body, _) = call(app, Method::GET, path, key, None).await;
    (status, body)
}

async fn upload(app: &TestApp, key: &str, bytes: Vec<u8>) -> (u16, Value) {
    let r = app.client.post(app.url("/v1/documents")).bearer_auth(key).body(bytes).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn idle() -> Options {
    Options { workers: 0, ..Options::default() }
}

#[tokio::test]
async fn without_keys_a_request_forwarded_by_a_proxy_is_not_a_loopback_client() {
    // Behind a reverse proxy on the same host every client is a loopback peer: the proxy's headers say who
    // it is not.
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), idle()).await;
    for (header, value) in
        [("x-forwarded-for", "203.0.113.9"), ("forwarded", "for=203.0.113.9"), ("x-real-ip", "203.0.113.9")]
    {
        for path in ["/v1/documents", "/metrics"] {
            let response = app.client.get(app.url(path)).header(header, value).send().await.unwrap();
            assert_eq!(response.status(), 403, "{header} on {path}");
            assert_eq!(error_code(&response.json::<Value>().await.unwrap()), "loopback_only", "{header} on {path}");
        }
    }
    assert_eq!(get(&app, "/v1/documents", None).await.0, 200, "a direct loopback client is still served");
}

#[tokio::test]
async fn without_keys_loopback_is_served_and_the_first_key_closes_the_server_at_once() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), idle()).await;
    let (status, page) = get(&app, "/v1/jobs", None).await;
    assert_eq!(status, 200, "a loopback client needs no key while none exists: {page}");

    // Made while the server runs, as `nova keys create` does from another process.
    let key = app.store.create_key("acme").await.unwrap();
    let (status, body, headers) = call(&app, Method::GET, "/v1/jobs", None, None).await;
    assert_eq!((status, error_code(&body)), (401, "missing_api_key"));
    assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"), "{headers:?}");
    let (status, body, headers) = call(&app, Method::GET, "/v1/jobs", Some("nova_not-a-key"), None).await;
    assert_eq!((status, error_code(&body)), (401, "invalid_api_key"));
    assert!(headers["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    let r = app.client.get(app.url("/v1/jobs")).header("authorization", "Basic YTpi").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(&r.json::<Value>().await.unwrap()), "invalid_authorization");
    let (status, _) = get(&app, "/v1/jobs", Some(&key.secret)).await;
    assert_eq!(status, 200);
    // Health stays open: load balancers carry no keys.
    assert_eq!(get(&app, "/healthz", None).await.0, 200);

    // What the key-less loopback client stored belongs to the default tenant, not to the new one.
    assert!(app.store.revoke_key(key.id).await.unwrap());
    let (status, body) = get(&app, "/v1/jobs", Some(&key.secret)).await;
    assert_eq!((status, error_code(&body)), (401, "invalid_api_key"), "revoked keys fail at once");
    let (status, body) = get(&app, "/v1/jobs", None).await;
    assert_eq!((status, error_code(&body)), (401, "missing_api_key"), "revoking every key does not reopen");
    app.stop().await;
}

/// Tenant B tries every endpoint with tenant A's ids, and learns nothing: each answers as for an unknown id.
async fn no_tenant_sees_or_touches_another_tenant_s_resources(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend, idle()).await else { return };
    let a = app.store.create_key("a").await.unwrap().secret;
    let b = app.store.create_key("b").await.unwrap().secret;
    let bytes = dev_file(&format!("{CRONUS}.noxml.pdf"));

    let (status, doc) = upload(&app, &a, bytes.clone()).await;
    assert_eq!(status, 201, "{doc}");
    let doc_id = doc["id"].as_str().unwrap().to_string();
    let extract = json!({"workflow": "invoice.extract", "input": {"document_id": doc_id}});
    let (status, job, _) = call(&app, Method::POST, "/v1/jobs", Some(&a), Some(&extract)).await;
    assert_eq!(status, 202, "{job}");
    let job_id = job["id"].as_str().unwrap().to_string();

    for path in [
        format!("/v1/documents/{doc_id}"),
        format!("/v1/documents/{doc_id}/content"),
        format!("/v1/jobs/{job_id}"),
        format!("/v1/jobs/{job_id}/result"),
        format!("/v1/jobs/{job_id}/events"),
        format!("/v1/jobs/{job_id}/artifacts"),
        format!("/v1/jobs/{job_id}/result/versions"),
        format!("/v1/exports/invoices?jobs={job_id}"),
    ] {
        let (status, body) = get(&app, &path, Some(&b)).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(error_code(&body).ends_with("_not_found"), "{path}: {body}");
        let unfinished = path.contains("/result");
        assert_eq!(get(&app, &path, Some(&a)).await.0, if unfinished { 409 } else { 200 }, "{path}");
    }
    // The queue counts each tenant's own jobs.
    let extract_queue = |page: Value| {
        let row =
            page["data"].as_array().unwrap().iter().find(|w| w["workflow"] == "invoice.extract").cloned().unwrap();
        (row["ready"].as_u64(), row["running"].as_u64())
    };
    assert_eq!(extract_queue(get(&app, "/v1/queue", Some(&a)).await.1), (Some(1), Some(0)));
    assert_eq!(extract_queue(get(&app, "/v1/queue", Some(&b)).await.1), (Some(0), Some(0)));

    let correction = json!({"invoice": {"invoice_number": "X"}});
    let versions = format!("/v1/jobs/{job_id}/result/versions");
    let (status, body, _) = call(&app, Method::POST, &versions, Some(&b), Some(&correction)).await;
    assert_eq!((status, error_code(&body)), (404, "job_not_found"));
    let stream = app
        .client
        .get(app.url(&format!("/v1/jobs/{job_id}/events")))
        .bearer_auth(&b)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 404, "the event stream of another tenant's job");
    let (status, body, _) = call(&app, Method::POST, &format!("/v1/jobs/{job_id}/cancel"), Some(&b), None).await;
    assert_eq!((status, error_code(&body)), (404, "job_not_found"));
    assert_eq!(get(&app, &format!("/v1/jobs/{job_id}"), Some(&a)).await.1["status"], "queued", "untouched");

    let artifact = format!("/v1/jobs/{job_id}/artifacts/totals.csv");
    assert_eq!(error_code(&get(&app, &artifact, Some(&b)).await.1), "job_not_found");
    assert_eq!(error_code(&get(&app, &artifact, Some(&a)).await.1), "artifact_not_found");

    // Another tenant's document cannot be named in a job either.
    let (status, body, _) = call(&app, Method::POST, "/v1/jobs", Some(&b), Some(&extract)).await;
    assert_eq!((status, error_code(&body)), (422, "document_not_found"));
    let task = json!({"workflow": "task.run", "input": {"prompt": "total them", "document_ids": [doc_id]}});
    let (status, body, _) = call(&app, Method::POST, "/v1/jobs", Some(&b), Some(&task)).await;
    assert_eq!((status, error_code(&body)), (422, "document_not_found"));

    for path in ["/v1/jobs", "/v1/jobs?status=queued", "/v1/jobs?workflow=invoice.extract", "/v1/documents"] {
        // (The review queue and exports of everything are lists too: `review.rs` fills them.)
        let (status, page) = get(&app, path, Some(&b)).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert_eq!(page["data"], json!([]), "{path}");
        assert_eq!(get(&app, path, Some(&a)).await.1["data"].as_array().unwrap().len(), 1, "{path}");
    }

    // The same bytes from B: new to B (201, its own id), so B cannot learn that A holds them.
    let (status, theirs) = upload(&app, &b, bytes).await;
    assert_eq!(status, 201, "{theirs}");
    assert_ne!(theirs["id"], doc["id"]);
    assert_eq!(theirs["sha256"], doc["sha256"]);

    // Idempotency keys are per tenant: B's use of A's key is a request of its own.
    let noop = json!({"workflow": "noop"});
    let keyed = |key: &str| {
        app.client.post(app.url("/v1/jobs")).bearer_auth(key).header("idempotency-key", "shared").json(&noop)
    };
    let first = keyed(&a).send().await.unwrap().json::<Value>().await.unwrap();
    let second = keyed(&b).send().await.unwrap().json::<Value>().await.unwrap();
    assert_ne!(first["id"], second["id"]);
    assert_eq!(get(&app, &format!("/v1/jobs/{}", first["id"].as_str().unwrap()), Some(&b)).await.0, 404);
    app.stop().await;
}

#[tokio::test]
async fn a_post_with_an_idempotency_key_is_answered_once() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), idle()).await;
    let post = |path: &str, key: &str, body: Value| {
        app.client.post(app.url(path)).header("idempotency-key", key).json(&body).send()
    };
    let job = json!({"workflow": "noop", "input": {"sleep_ms": 1}});
    let first = post("/v1/jobs", "k1", job.clone()).await.unwrap();
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = post("/v1/jobs", "k1", job.clone()).await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["content-type"], "application/json");
    assert_eq!(again.json::<Value>().await.unwrap(), first, "the first answer, byte for byte");

    // The same key on another body, or another path, is refused.
    let other = post("/v1/jobs", "k1", json!({"workflow": "noop", "input": {"sleep_ms": 2}})).await.unwrap();
    assert_eq!(other.status(), 409);
    assert_eq!(error_code(&other.json().await.unwrap()), "idempotency_key_reused");
    let cancel = post(&format!("/v1/jobs/{}/cancel", first["id"].as_str().unwrap()), "k1", json!({})).await.unwrap();
    assert_eq!(cancel.status(), 409);

    // An upload: the replay answers 201 as the first did, where a plain repeat is a 200.
    let bytes = dev_file(&format!("{CRONUS}.noxml.pdf"));
    let upload = |key: &'static str| {
        app.client.post(app.url("/v1/documents")).header("idempotency-key", key).body(bytes.clone()).send()
    };
    assert_eq!(upload("u1").await.unwrap().status(), 201);
    assert_eq!(upload("u1").await.unwrap().status(), 201, "replayed");
    assert_eq!(upload("u2").await.unwrap().status(), 200, "a new key runs the upload again");

    // A request whose first use is still running.
    let body = serde_json::to_vec(&job).unwrap();
    let fingerprint = nova_server::idempotency::fingerprint(&Method::POST, "/v1/jobs", &body);
    let claimed = app
        .store
        .begin_idempotent(TenantId::DEFAULT, "busy", &fingerprint, nova_server::idempotency::KEEP_FOR)
        .await
        .unwrap();
    assert_eq!(claimed, nova_store::Idempotent::Run);
    let busy = app
        .client
        .post(app.url("/v1/jobs"))
        .header("idempotency-key", "busy")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 409);
    assert_eq!(error_code(&busy.json().await.unwrap()), "idempotency_request_in_flight");

    // A server error is not kept: the retry runs (here, with another body, and is not refused as reused).
    let exec = post("/v1/executions", "e1", json!({"language": "python", "code": "print(1)"})).await.unwrap();
    assert_eq!(exec.status(), 503);
    let exec = post("/v1/executions", "e1", json!({"language": "python", "code": "print(2)"})).await.unwrap();
    assert_eq!(exec.status(), 503, "not 409: the failed first use was forgotten");
    app.stop().await;
}

fn limited(rate: RateLimit, limiter: Limiter) -> Options {
    Options {
        workers: 0,
        config: ServerConfig { rate_limit: Some(rate), ..ServerConfig::default() },
        limiter,
        ..Options::default()
    }
}

fn header(headers: &HeaderMap, name: &str) -> u64 {
    headers[name].to_str().unwrap().parse().unwrap()
}

/// Three requests pass, the fourth is refused until the budget refills (one an hour: not within the test).
async fn check_a_key_s_budget(app: &TestApp, key: &str) {
    for remaining in [2, 1, 0] {
        let (status, _, headers) = call(app, Method::GET, "/v1/jobs", Some(key), None).await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "ratelimit-limit"), 3);
        assert_eq!(header(&headers, "ratelimit-remaining"), remaining);
        assert!(header(&headers, "ratelimit-reset") > 0);
    }
    let (status, body, headers) = call(app, Method::GET, "/v1/jobs", Some(key), None).await;
    assert_eq!((status, error_code(&body)), (429, "rate_limited"));
    let retry = header(&headers, "retry-after");
    assert!((3000..=3600).contains(&retry), "{retry}");
    assert_eq!(header(&headers, "ratelimit-remaining"), 0);
}

const HOURLY: RateLimit = RateLimit { count: 1, period: Duration::from_secs(3600), burst: 3 };

#[tokio::test]
async fn each_key_has_its_own_request_budget_and_a_tenant_may_have_its_own_rate() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), limited(HOURLY, Limiter::memory())).await;
    let a = app.store.create_key("a").await.unwrap().secret;
    let b = app.store.create_key("b").await.unwrap().secret;
    check_a_key_s_budget(&app, &a).await;
    // Another key of another tenant is untouched by the first's spending.
    let (status, _, headers) = call(&app, Method::GET, "/v1/jobs", Some(&b), None).await;
    assert_eq!((status, header(&headers, "ratelimit-remaining")), (200, 2));

    assert!(app.store.set_tenant_rate_limit("b", Some("1/h,burst=1")).await.unwrap());
    let c = app.store.create_key("b").await.unwrap().secret;
    let (status, _, headers) = call(&app, Method::GET, "/v1/jobs", Some(&c), None).await;
    assert_eq!((status, header(&headers, "ratelimit-limit")), (200, 1));
    assert_eq!(call(&app, Method::GET, "/v1/jobs", Some(&c), None).await.0, 429);
    app.stop().await;
}

/// The Redis for the rate limit tests: NOVA_TEST_REDIS_URL, else the local server. Missing, the tests skip,
/// except under CI=true, where they fail.
async fn redis_limiter(prefix: &str) -> Option<RedisLimiter> {
    let url = std::env::var("NOVA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    match RedisLimiter::connect(&url, prefix).await {
        Ok(limiter) => Some(limiter),
        Err(e) if nova_core::testing::in_ci() => panic!("Redis at {url} is needed in CI: {e}"),
        Err(e) => {
            eprintln!("no Redis at {url} ({e}): skipping");
            None
        }
    }
}

#[tokio::test]
async fn two_limiters_on_one_redis_share_a_key_s_budget() {
    // A fresh prefix: runs do not see each other's budgets.
    let prefix = format!("nova-test:{}:", TenantId::new());
    let Some(one) = redis_limiter(&prefix).await else { return };
    let Some(two) = redis_limiter(&prefix).await else { return };
    let rate = RateLimit { count: 1, period: Duration::from_secs(3600), burst: 5 };
    let mut remaining = Vec::new();
    for limiter in [&one, &two, &one, &two, &one] {
        let decision = limiter.check("key_a", rate).await.unwrap();
        assert!(decision.allowed);
        remaining.push(decision.remaining);
    }
    assert_eq!(remaining, [4, 3, 2, 1, 0], "one budget, spent from both");
    for limiter in [&one, &two] {
        let refused = limiter.check("key_a", rate).await.unwrap();
        assert!(!refused.allowed);
        assert!(refused.retry_after > Duration::from_secs(3500), "{refused:?}");
    }
    assert!(two.check("key_b", rate).await.unwrap().allowed, "budgets are per key");

    // A fast rate refills: after one interval, one more request passes.
    let fast = RateLimit { count: 20, period: Duration::from_secs(1), burst: 1 };
    assert!(one.check("key_c", fast).await.unwrap().allowed);
    let refused = two.check("key_c", fast).await.unwrap();
    assert!(!refused.allowed);
    tokio::time::sleep(refused.retry_after + Duration::from_millis(5)).await;
    assert!(two.check("key_c", fast).await.unwrap().allowed);
}

#[tokio::test]
async fn the_api_counts_rates_in_redis_when_given_one() {
    let prefix = format!("nova-test:{}:", TenantId::new());
    let Some(limiter) = redis_limiter(&prefix).await else { return };
    let limiter = Limiter::Redis(std::sync::Arc::new(limiter));
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), limited(HOURLY, limiter)).await;
    let a = app.store.create_key("a").await.unwrap().secret;
    check_a_key_s_budget(&app, &a).await;
    app.stop().await;
}

#[tokio::test]
async fn a_tenant_s_unfinished_jobs_are_capped() {
    let config = ServerConfig { rate_limit: None, max_unfinished_jobs: Some(2), ..ServerConfig::default() };
    let app =
        TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 0, config, ..Options::default() }).await;
    let a = app.store.create_key("a").await.unwrap().secret;
    let b = app.store.create_key("b").await.unwrap().secret;
    let noop = json!({"workflow": "noop"});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, job, _) = call(&app, Method::POST, "/v1/jobs", Some(&a), Some(&noop)).await;
        assert_eq!(status, 202, "{job}");
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    let (status, body, _) = call(&app, Method::POST, "/v1/jobs", Some(&a), Some(&noop)).await;
    assert_eq!((status, error_code(&body)), (429, "too_many_jobs"));
    assert_eq!(call(&app, Method::POST, "/v1/jobs", Some(&b), Some(&noop)).await.0, 202, "another tenant's quota");
    // A finished job frees its place.
    let (status, _, _) = call(&app, Method::POST, &format!("/v1/jobs/{}/cancel", ids[0]), Some(&a), None).await;
    assert_eq!(status, 200);
    assert_eq!(call(&app, Method::POST, "/v1/jobs", Some(&a), Some(&noop)).await.0, 202);
    app.stop().await;
}

/// A Redis that speaks TLS only, on a free loopback port, with a certificate for `localhost` from a CA of its
/// own (made with `openssl`); killed on drop. `None` (a skip) outside CI when redis-server or openssl is
/// missing.
struct TlsRedis {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsRedis {
    fn start() -> Option<TlsRedis> {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=localhost"];
        let made = |name: &str, args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(dir.path()).output();
            match out {
                Ok(out) if out.status.success() => Ok(()),
                Ok(out) => Err(format!("openssl {name}: {}", String::from_utf8_lossy(&out.stderr))),
                Err(e) => Err(format!("openssl: {e}")),
            }
        };
        std::fs::write(dir.path().join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
        let certificates = made("ca", &[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem"]].concat())
            .and_then(|()| {
                made("other ca", &[&["req", "-x509"][..], &ec, &["-keyout", "other.key", "-out", "other.pem"]].concat())
            })
            .and_then(|()| made("csr", &[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr"]].concat()))
            .and_then(|()| {
                made(
                    "sign",
                    &["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"]
                        .into_iter()
                        .chain(["-days", "1", "-extfile", "san.ext", "-out", "server.pem"])
                        .collect::<Vec<_>>(),
                )
            });
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let started = certificates.and_then(|()| {
            Command::new("redis-server")
                .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
                .args(["--tls-cert-file", "server.pem", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.pem"])
                .args(["--tls-auth-clients", "no"])
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| format!("redis-server: {e}"))
        });
        let child = match started {
            Ok(child) => child,
            Err(e) if nova_core::testing::in_ci() => panic!("a TLS Redis is needed in CI: {e}"),
            Err(e) => {
                eprintln!("skipping: {e}");
                return None;
            }
        };
        let redis = TlsRedis { child, port, dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }
}

#[tokio::test]
async fn rate_limits_reach_a_redis_over_tls_and_check_its_certificate() {
    let Some(redis) = TlsRedis::start() else { return };
    let url = format!("rediss://localhost:{}", redis.port);
    let prefix = format!("nova-test:{}:", TenantId::new());
    // The client trusts the system's roots; SSL_CERT_FILE replaces them, as it does for every rustls client
    // using them. This test's process runs alone (nextest), so changing its environment is safe here.
    std::env::set_var("SSL_CERT_FILE", redis.dir.path().join("other.pem"));
    let refused = tokio::time::timeout(Duration::from_secs(20), RedisLimiter::connect(&url, &prefix)).await;
    let refused = refused.expect("a refused certificate fails at once").err().expect("refused");
    assert!(refused.to_string().contains("certificate"), "{refused}");
    std::env::set_var("SSL_CERT_FILE", redis.dir.path().join("ca.pem"));
    let limiter = RedisLimiter::connect(&url, &prefix).await.expect("connecting over TLS");
    let rate = RateLimit { count: 1, period: Duration::from_secs(3600), burst: 2 };
    let decisions: Vec<bool> = [
        limiter.check("key_tls", rate).await.unwrap().allowed,
        limiter.check("key_tls", rate).await.unwrap().allowed,
        limiter.check("key_tls", rate).await.unwrap().allowed,
    ]
    .into();
    assert_eq!(decisions, [true, true, false], "the budget is counted in the TLS Redis");
}
