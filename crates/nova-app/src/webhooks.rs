//! Webhook delivery: messages from the outbox (`nova_store`'s `webhook_deliveries`) sent to the URLs jobs
//! named, signed per the Standard Webhooks spec, retried with backoff through a retry window, then dead.
//!
//! A delivery never reaches a private, loopback, link-local (cloud metadata) or otherwise non-public
//! address unless the allow-list names it: names are resolved by [`GuardedResolver`], which hands the HTTP
//! client only the addresses that pass, so the address checked is the address connected to (no second
//! lookup an attacker's DNS could answer differently). An address written in the URL itself is checked
//! when the job is submitted, and every redirect target again (a name through the resolver, an address by
//! the redirect policy). No proxy from the environment is used: a proxy would resolve names itself.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use nova_core::error_chain;
use nova_store::{AttemptResult, Delivery, Store};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;
use sha2::Sha256;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The prefix of a signing secret; the rest is the base64 of the key.
const SECRET_PREFIX: &str = "whsec_";
/// The longest webhook URL taken.
pub const MAX_URL_LEN: usize = 2048;

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// How long a message is retried after it was made (or resent) before it is dead.
    pub max_age: Duration,
    /// The wait after each failed attempt: the first after the first failure, the last repeated. Each is
    /// varied by up to a tenth, so receivers that failed together are not retried together.
    pub delays: Vec<Duration>,
    /// How often the outbox is read when it had nothing to send.
    pub poll_interval: Duration,
    /// The longest one attempt may take, connection and answer.
    pub timeout: Duration,
    /// Messages sent at once by this process.
    pub concurrency: usize,
    /// Non-public destinations that deliveries may reach anyway.
    pub allow: AllowList,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        Self {
            max_age: Duration::from_secs(24 * 3600),
            // The schedule Standard Webhooks suggests: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, ...
            delays: vec![Duration::from_secs(5), minutes(5), minutes(30), minutes(120), minutes(300), minutes(600)],
            poll_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(15),
            concurrency: 32,
            allow: AllowList::default(),
        }
    }
}

/// Destinations a delivery may reach although they are not public: host names (exact, any case), and
/// addresses or prefixes (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    hosts: Vec<String>,
    nets: Vec<(IpAddr, u8)>,
}

impl AllowList {
    /// Whether a delivery to `host` may connect to `address`.
    pub fn permits(&self, host: &str, address: IpAddr) -> bool {
        if !nova_core::net::is_refused(address) {
            return true;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
            || self.nets.iter().any(|&(net, len)| match (net, address) {
                (IpAddr::V4(net), IpAddr::V4(a)) => nova_core::net::within_v4(a, net, len),
                (IpAddr::V6(net), IpAddr::V6(a)) => nova_core::net::within_v6(a, net, len),
                _ => false,
            })
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.nets.is_empty()
    }
}

impl FromStr for AllowList {
    type Err = String;

    /// A comma-separated list of host names, addresses and prefixes; empty entries are skipped.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut list = AllowList::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (address, len) = match entry.split_once('/') {
                Some((address, len)) => (address, Some(len)),
                None => (entry, None),
            };
            if let Ok(address) = address.parse::<IpAddr>() {
                let max = if address.is_ipv4() { 32 } else { 128 };
                let len = match len {
                    None => max,
                    Some(len) => len
                        .parse::<u8>()
                        .ok()
                        .filter(|&l| l <= max)
                        .ok_or_else(|| format!("`{entry}`: the prefix length must be a number from 0 to {max}"))?,
                };
                list.nets.push((address, len));
            } else if len.is_none()
                && entry.len() <= 253
                && entry.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                list.hosts.push(entry.to_ascii_lowercase());
            } else {
                return Err(format!("`{entry}` is neither a host name nor an address or prefix (10.0.0.0/8)"));
            }
        }
        Ok(list)
    }
}

/// Checks a webhook URL given with a job: `http` or `https`, a host, no credentials, at most
/// [`MAX_URL_LEN`] bytes, and, when the host is an address, one that `allow` permits. A host name is
/// checked at each delivery, after it is resolved.
pub fn check_url(text: &str, allow: &AllowList) -> Result<Url, String> {
    if text.len() > MAX_URL_LEN {
        return Err(format!("the webhook URL is longer than {MAX_URL_LEN} bytes"));
    }
    let url = Url::parse(text).map_err(|e| format!("the webhook URL is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the webhook URL must be http or https".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the webhook URL must not hold credentials".into());
    }
    literal_permitted(&url, allow)?;
    Ok(url)
}

/// Refuses a URL whose host is an address that is not public and not allowed.
fn literal_permitted(url: &Url, allow: &AllowList) -> Result<(), String> {
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err("the webhook URL has no host".into());
    };
    // The URL parser has already written any address in its canonical form (`0x7f000001` is 127.0.0.1).
    let Ok(address) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() else { return Ok(()) };
    if allow.permits(&address.to_string(), address) {
        Ok(())
    } else {
        Err(format!(
            "{address} is not a public address; webhooks may reach it only when the allow-list (`NOVA_WEBHOOK_ALLOW`) names it"
        ))
    }
}

/// A new signing secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut key = [0_u8; 32];
    // Without randomness from the OS nothing can be signed safely; this is not recoverable.
    getrandom::fill(&mut key).expect("the operating system gives no random bytes");
    format!("{SECRET_PREFIX}{}", BASE64.encode(key))
}

/// The `webhook-signature` header of a message: `v1,` and the base64 of the HMAC-SHA256, keyed with the
/// secret's key, of `{id}.{timestamp}.{body}`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<String, String> {
    let key = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let key = BASE64.decode(key).map_err(|e| format!("the signing secret is not base64: {e}"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    Ok(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

/// Resolves a delivery's host names and keeps only the addresses the allow-list permits.
#[derive(Debug, Clone)]
struct GuardedResolver {
    allow: Arc<AllowList>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = found.iter().copied().filter(|a| allow.permits(&host, a.ip())).collect();
            if permitted.is_empty() {
                let shown: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!(
                    "{host} resolves to no public address ({}); the allow-list (`NOVA_WEBHOOK_ALLOW`) does not name it",
                    shown.join(", ")
                )
                .into());
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client of deliveries: names through [`GuardedResolver`], redirects checked, no proxy.
pub fn client(config: &WebhookConfig) -> reqwest::Result<reqwest::Client> {
    const MAX_REDIRECTS: usize = 3;
    let allow = Arc::new(config.allow.clone());
    let redirect_allow = allow.clone();
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let url = attempt.url();
        let refused = if !matches!(url.scheme(), "http" | "https") {
            Some("a redirect to a scheme other than http or https".to_string())
        } else {
            literal_permitted(url, &redirect_allow)
                .err()
                .map(|e| format!("a redirect to {}: {e}", url.host_str().unwrap_or("")))
        };
        match refused {
            None => attempt.follow(),
            Some(e) => attempt.error(e),
        }
    });
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { allow }))
        .redirect(policy)
        .no_proxy()
        .timeout(config.timeout)
        .user_agent(concat!("NOVA-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends the outbox's messages until `shutdown`: moves job events into the outbox, takes the due messages
/// and sends each (at most `config.concurrency` at once). A message whose sender stops with the process is
/// taken again when its lease ends.
pub async fn run(store: Store, config: WebhookConfig, shutdown: CancellationToken) {
    let client = match client(&config) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "the webhook client cannot be built; no webhooks are sent");
            return;
        }
    };
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    // Longer than an attempt can take, so a live sender never loses its message to another.
    let lease = config.timeout + Duration::from_secs(30);
    loop {
        let mut busy = false;
        // Batches whose every job is final get their `batch.completed` message first, so it leaves with
        // the last job's own.
        match store.settle_batches(100).await {
            Ok(settled) => busy |= settled > 0,
            Err(e) => tracing::warn!(error = %error_chain(&e), "settling finished batches failed"),
        }
        match store.fill_outbox(500).await {
            Ok(made) => busy |= made > 0,
            Err(e) => tracing::warn!(error = %error_chain(&e), "moving job events to the webhook outbox failed"),
        }
        let free = slots.available_permits().min(64) as u32;
        if free > 0 {
            match store.claim_deliveries(free, lease).await {
                Ok(taken) => {
                    busy |= !taken.is_empty();
                    for delivery in taken {
                        let Ok(permit) = slots.clone().acquire_owned().await else { return };
                        let (store, client, config) = (store.clone(), client.clone(), config.clone());
                        tokio::spawn(async move {
                            deliver(&store, &client, &config, delivery).await;
                            drop(permit);
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %error_chain(&e), "taking due webhook messages failed"),
            }
        }
        if busy {
            if shutdown.is_cancelled() {
                return;
            }
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.poll_interval) => {}
        }
    }
}

/// One attempt at one message, and its record.
async fn deliver(store: &Store, client: &reqwest::Client, config: &WebhookConfig, delivery: Delivery) {
    let result = attempt(store, client, &delivery).await;
    let retry_in = retry_delay(&config.delays, delivery.attempts, delivery.id.to_string().as_bytes());
    let outcome = if matches!(result, AttemptResult::Delivered { .. }) { "delivered" } else { "failed" };
    metrics::counter!("nova_webhook_attempts_total", "outcome" => outcome).increment(1);
    match &result {
        AttemptResult::Delivered { status } => {
            tracing::info!(message = %delivery.id, job = ?delivery.job_id, batch = ?delivery.batch_id, status, "webhook delivered")
        }
        AttemptResult::Failed { status, error } => tracing::warn!(
            message = %delivery.id, job = ?delivery.job_id, batch = ?delivery.batch_id, attempt = delivery.attempts, status, error = %error,
            "webhook attempt failed"
        ),
    }
    if let Err(e) = store.record_delivery(&delivery, &result, retry_in, config.max_age).await {
        tracing::warn!(message = %delivery.id, error = %error_chain(&e), "recording a webhook attempt failed");
    }
}

async fn attempt(store: &Store, client: &reqwest::Client, delivery: &Delivery) -> AttemptResult {
    let failed = |error: String| AttemptResult::Failed { status: None, error };
    let secret = match store.webhook_secret(delivery.tenant, new_secret).await {
        Ok(secret) => secret,
        Err(e) => return failed(format!("reading the signing secret: {}", error_chain(&e))),
    };
    let id = delivery.id.to_string();
    let timestamp = chrono::Utc::now().timestamp();
    let signature = match sign(&secret, &id, timestamp, &delivery.payload) {
        Ok(signature) => signature,
        Err(e) => return failed(e),
    };
    let sent = client
        .post(&delivery.url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(delivery.payload.clone())
        .send()
        .await;
    match sent {
        Ok(answer) if answer.status().is_success() => AttemptResult::Delivered { status: answer.status().as_u16() },
        Ok(answer) => AttemptResult::Failed {
            status: Some(answer.status().as_u16()),
            error: format!("the receiver answered {}", answer.status()),
        },
        Err(e) => failed(error_chain(&e)),
    }
}

/// The wait after failed attempt number `attempt` (1 for the first): the schedule's entry, the last one
/// repeated, varied by up to a tenth either way by `seed`.
fn retry_delay(delays: &[Duration], attempt: u32, seed: &[u8]) -> Duration {
    let Some(&last) = delays.last() else { return Duration::ZERO };
    let base = delays.get(attempt.saturating_sub(1) as usize).copied().unwrap_or(last);
    let hash = seed.iter().fold(u64::from(attempt).wrapping_mul(0x9e37_79b9_7f4a_7c15), |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    // A factor from 0.9 to 1.1.
    base.mul_f64(0.9 + (hash % 2001) as f64 / 10_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_reference_implementation() {
        // Computed with the `standardwebhooks` package from PyPI (the spec's reference library).
        let signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let other = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265331,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_ne!(signature, other, "the timestamp is signed");
    }

    #[test]
    fn new_secrets_are_fresh_and_usable() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("whsec_"));
        assert!(sign(&a, "msg_x", 1, "{}").is_ok());
    }

    #[test]
    fn urls_with_refused_addresses_are_refused_unless_allowed() {
        let none = AllowList::default();
        for url in [
            "http://127.0.0.1/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:8080/",
            "http://10.0.0.5/",
            "http://[::ffff:192.168.1.1]/",
            "http://0x7f000001/",
            "http://2130706433/",
        ] {
            assert!(check_url(url, &none).is_err(), "{url} must be refused");
        }
        for url in ["ftp://example.com/", "http://user:pw@example.com/", "not a url", "http://"] {
            assert!(check_url(url, &none).is_err(), "{url} must be refused");
        }
        assert!(check_url("https://example.com/hook", &none).is_ok());
        assert!(check_url("http://93.184.216.34/hook", &none).is_ok());
        let allow: AllowList = "127.0.0.1, 10.0.0.0/8, hooks.internal".parse().unwrap();
        assert!(check_url("http://127.0.0.1:9000/hook", &allow).is_ok());
        assert!(check_url("http://10.9.8.7/", &allow).is_ok());
        assert!(check_url("http://127.0.0.2/", &allow).is_err());
        assert!(allow.permits("HOOKS.internal", "192.168.1.1".parse().unwrap()));
        assert!(!allow.permits("other.internal", "192.168.1.1".parse().unwrap()));
    }

    #[test]
    fn allow_lists_refuse_what_they_cannot_read() {
        assert!("10.0.0.0/33".parse::<AllowList>().is_err());
        assert!("exa mple.com".parse::<AllowList>().is_err());
        assert!("".parse::<AllowList>().unwrap().is_empty());
    }

    #[test]
    fn retries_follow_the_schedule_within_a_tenth() {
        let delays = WebhookConfig::default().delays;
        for (attempt, expected) in [(1, 5.0), (2, 300.0), (6, 36_000.0), (40, 36_000.0)] {
            let got = retry_delay(&delays, attempt, b"msg_a").as_secs_f64();
            assert!((expected * 0.9..=expected * 1.1).contains(&got), "attempt {attempt}: {got}");
        }
        assert_ne!(retry_delay(&delays, 3, b"msg_a"), retry_delay(&delays, 3, b"msg_b"));
    }
}
