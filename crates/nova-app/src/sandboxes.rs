//! Sandbox sessions as the API serves them: each tenant's live sessions (`nova_sandbox::session`), their
//! timeouts, the caps on how many run, and what they used. The HTTP surfaces (NOVA's `/v1/sandboxes` and the
//! E2B-compatible listener) hold a [`Sandboxes`] and call it with the caller's tenant: a session of another
//! tenant is `NotFound`, never told apart from one that does not exist.
//!
//! A session lives until it is killed, its timeout passes (the reaper, [`Sandboxes::spawn_reaper`], checks
//! twice a second), or its agent ends; then it is closed, and its use (seconds alive and CPU time) is added to
//! the tenant's usage under the workflow name `sandbox`. Sessions live in this process's memory: a restart
//! ends them all.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nova_core::{error_chain, SandboxId, TenantId};
use nova_sandbox::jail::JailSandbox;
use nova_sandbox::session::{Command, Event, Session, SessionError, SessionSpec, MAX_BUFFERED};
use nova_sandbox::Limits;
use nova_store::{Store, UsageDelta};
use tokio_util::sync::CancellationToken;

/// How sessions are served.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The timeout of a session created without one.
    pub default_timeout: Duration,
    /// The longest timeout a session may be given (at creation or later).
    pub max_timeout: Duration,
    /// Sessions alive at once per tenant.
    pub max_per_tenant: usize,
    /// Sessions alive at once on this server, all tenants together.
    pub max_total: usize,
    /// Each session's limits (memory, processes, file system sizes, CPU per process); `wall_ms` is set to
    /// the longest timeout.
    pub limits: Limits,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            default_timeout: Duration::from_secs(300),
            max_timeout: Duration::from_secs(3600),
            max_per_tenant: 20,
            max_total: 100,
            limits: SessionSpec::default_limits(),
        }
    }
}

/// What a new session is given.
#[derive(Debug, Clone, Default)]
pub struct NewSandbox {
    /// `None`: [`SandboxConfig::default_timeout`].
    pub timeout: Option<Duration>,
    pub metadata: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub network: bool,
}

/// Why a sandbox call was refused.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No such session for this tenant (none, another tenant's, or ended).
    #[error("no sandbox {0} (it does not exist, or it has ended)")]
    NotFound(String),
    /// A cap on live sessions is reached.
    #[error("{0}")]
    TooMany(String),
    /// A timeout longer than the longest allowed, or zero.
    #[error("{0}")]
    InvalidTimeout(String),
    /// The session could not be opened; the message says why.
    #[error("the sandbox could not start: {0}")]
    Start(String),
    /// A call to a live session failed.
    #[error(transparent)]
    Session(#[from] nova_sandbox::session::SessionError),
}

/// Checks a session's labels and variables: few, short, and no `=` or NUL where they break the environment.
pub fn check_labels(metadata: &BTreeMap<String, String>, env: &BTreeMap<String, String>) -> Result<(), String> {
    if metadata.len() > 32 || metadata.iter().any(|(k, v)| k.len() > 256 || v.len() > 256) {
        return Err("metadata holds at most 32 labels of at most 256 bytes each".into());
    }
    check_env(env.iter())
}

/// Checks environment variables: at most 256, each at most 32 KiB, with a name and no `=` or NUL in it.
pub fn check_env<'a>(env: impl ExactSizeIterator<Item = (&'a String, &'a String)>) -> Result<(), String> {
    if env.len() > 256 {
        return Err("at most 256 environment variables".into());
    }
    for (key, value) in env {
        if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') || key.len() + value.len() > 32 << 10 {
            return Err(format!("environment variable {:?} is not valid", key.chars().take(80).collect::<String>()));
        }
    }
    Ok(())
}

/// One live session.
pub struct SandboxEntry {
    pub id: SandboxId,
    pub tenant: TenantId,
    pub session: Session,
    pub created_at: DateTime<Utc>,
    pub metadata: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub network: bool,
    pub limits: Limits,
    /// A secret of this session, for protocols that authenticate calls into it by a token of its own (E2B's
    /// `X-Access-Token`).
    pub access_token: String,
    expires_at: Mutex<DateTime<Utc>>,
}

impl SandboxEntry {
    pub fn expires_at(&self) -> DateTime<Utc> {
        *self.expires_at.lock().expect("expiry lock")
    }

    /// Runs a blocking call of the session on a blocking thread.
    pub async fn blocking<T: Send + 'static>(self: &Arc<Self>, call: impl FnOnce(&Session) -> T + Send + 'static) -> T {
        let entry = self.clone();
        tokio::task::spawn_blocking(move || call(&entry.session)).await.expect("a session call panicked")
    }
}

#[derive(Default)]
struct State {
    live: HashMap<SandboxId, Arc<SandboxEntry>>,
    /// Sessions being opened, per tenant: counted against the caps before they exist.
    opening: HashMap<TenantId, usize>,
}

impl State {
    fn count(&self, tenant: TenantId) -> usize {
        self.live.values().filter(|e| e.tenant == tenant).count() + self.opening.get(&tenant).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.live.len() + self.opening.values().sum::<usize>()
    }
}

/// A session being opened, counted against the caps until it is dropped.
struct Opening<'a> {
    sandboxes: &'a Sandboxes,
    tenant: TenantId,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        let mut state = self.sandboxes.state.lock().expect("sandboxes lock");
        if let Some(n) = state.opening.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                state.opening.remove(&self.tenant);
            }
        }
    }
}

/// The live sessions of this process.
pub struct Sandboxes {
    jail: Arc<JailSandbox>,
    store: Store,
    config: SandboxConfig,
    state: Mutex<State>,
}

impl Sandboxes {
    pub fn new(jail: Arc<JailSandbox>, store: Store, config: SandboxConfig) -> Arc<Sandboxes> {
        Arc::new(Sandboxes { jail, store, config, state: Mutex::default() })
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    fn timeout(&self, asked: Option<Duration>) -> Result<Duration, SandboxError> {
        let timeout = asked.unwrap_or(self.config.default_timeout);
        if timeout.is_zero() || timeout > self.config.max_timeout {
            return Err(SandboxError::InvalidTimeout(format!(
                "a sandbox's timeout must be between 1 and {} seconds",
                self.config.max_timeout.as_secs()
            )));
        }
        Ok(timeout)
    }

    /// Opens a session for `tenant`.
    pub async fn create(&self, tenant: TenantId, new: NewSandbox) -> Result<Arc<SandboxEntry>, SandboxError> {
        let timeout = self.timeout(new.timeout)?;
        {
            let mut state = self.state.lock().expect("sandboxes lock");
            if state.count(tenant) >= self.config.max_per_tenant {
                return Err(SandboxError::TooMany(format!(
                    "this tenant has {} sandboxes running, the most allowed; kill one first",
                    self.config.max_per_tenant
                )));
            }
            if state.total() >= self.config.max_total {
                return Err(SandboxError::TooMany(format!(
                    "this server runs {} sandboxes, the most it allows; try again later",
                    self.config.max_total
                )));
            }
            *state.opening.entry(tenant).or_default() += 1;
        }
        // The count of sessions being opened goes down however this ends, a caller gone mid-way included.
        let opening = Opening { sandboxes: self, tenant };
        // The registry ends sessions at their timeouts, which may be extended; the helper's own deadline is
        // only a backstop, far beyond any.
        let limits = Limits { wall_ms: 30 * 24 * 3_600_000, ..self.config.limits };
        let spec = SessionSpec { limits, env: new.env.clone().into_iter().collect(), network: new.network };
        let jail = self.jail.clone();
        // A session whose caller stopped waiting is dropped with its handle, which closes it.
        let opened = tokio::task::spawn_blocking(move || jail.open_session(&spec)).await;
        drop(opening);
        let mut state = self.state.lock().expect("sandboxes lock");
        let session = match opened {
            Ok(Ok(session)) => session,
            Ok(Err(e)) => return Err(SandboxError::Start(error_chain(&e))),
            Err(e) => return Err(SandboxError::Start(format!("the opening panicked: {e}"))),
        };
        let now = Utc::now();
        let entry = Arc::new(SandboxEntry {
            id: SandboxId::new(),
            tenant,
            session,
            created_at: now,
            metadata: new.metadata,
            env: new.env,
            network: new.network,
            limits,
            access_token: random_token(),
            expires_at: Mutex::new(now + timeout),
        });
        state.live.insert(entry.id, entry.clone());
        metrics::gauge!("nova_sandboxes_live").set(state.live.len() as f64);
        Ok(entry)
    }

    /// `tenant`'s session `id`.
    pub fn get(&self, tenant: TenantId, id: &str) -> Result<Arc<SandboxEntry>, SandboxError> {
        let not_found = || SandboxError::NotFound(id.chars().take(80).collect());
        let id: SandboxId = id.parse().map_err(|_| not_found())?;
        let state = self.state.lock().expect("sandboxes lock");
        match state.live.get(&id) {
            Some(entry) if entry.tenant == tenant && entry.session.end().is_none() => Ok(entry.clone()),
            _ => Err(not_found()),
        }
    }

    /// Session `id`, for a caller that holds its access token (a protocol that authenticates calls into a
    /// sandbox by its token rather than by an API key). A wrong token is `NotFound`, as is another
    /// tenant's session to [`Sandboxes::get`].
    pub fn get_with_token(&self, id: &str, token: &str) -> Result<Arc<SandboxEntry>, SandboxError> {
        let not_found = || SandboxError::NotFound(id.chars().take(80).collect());
        let id: SandboxId = id.parse().map_err(|_| not_found())?;
        let state = self.state.lock().expect("sandboxes lock");
        match state.live.get(&id) {
            Some(entry) if constant_time_eq(entry.access_token.as_bytes(), token.as_bytes()) => {
                if entry.session.end().is_some() {
                    return Err(not_found());
                }
                Ok(entry.clone())
            }
            _ => Err(not_found()),
        }
    }

    /// `tenant`'s live sessions, the oldest first.
    pub fn list(&self, tenant: TenantId) -> Vec<Arc<SandboxEntry>> {
        let state = self.state.lock().expect("sandboxes lock");
        let mut list: Vec<_> =
            state.live.values().filter(|e| e.tenant == tenant && e.session.end().is_none()).cloned().collect();
        list.sort_by_key(|e| (e.created_at, e.id.to_string()));
        list
    }

    /// Gives `tenant`'s session `id` a new timeout, counted from now.
    pub fn set_timeout(
        &self,
        tenant: TenantId,
        id: &str,
        timeout: Duration,
    ) -> Result<Arc<SandboxEntry>, SandboxError> {
        let timeout = self.timeout(Some(timeout))?;
        let entry = self.get(tenant, id)?;
        *entry.expires_at.lock().expect("expiry lock") = Utc::now() + timeout;
        Ok(entry)
    }

    /// Ends `tenant`'s session `id` now.
    pub async fn kill(&self, tenant: TenantId, id: &str) -> Result<(), SandboxError> {
        let entry = self.get(tenant, id)?;
        self.finish(&entry, "killed").await;
        Ok(())
    }

    /// Removes a session, closes it, and records its use once its jail is gone.
    async fn finish(&self, entry: &Arc<SandboxEntry>, why: &'static str) {
        let removed = {
            let mut state = self.state.lock().expect("sandboxes lock");
            let removed = state.live.remove(&entry.id).is_some();
            metrics::gauge!("nova_sandboxes_live").set(state.live.len() as f64);
            removed
        };
        if !removed {
            return;
        }
        let end = entry
            .blocking(|session| {
                session.close();
                session.wait_ended(Duration::from_secs(10))
            })
            .await;
        let alive = (Utc::now() - entry.created_at).to_std().unwrap_or_default();
        let cpu = Duration::from_millis(end.as_ref().map_or(0, |e| e.cpu_ms));
        tracing::info!(sandbox = %entry.id, tenant = %entry.tenant, why, alive_s = alive.as_secs(), "sandbox ended");
        let used = UsageDelta::sandbox_run(cpu, alive);
        if let Err(e) = self.store.record_usage(entry.tenant, "sandbox", Utc::now(), used).await {
            tracing::warn!(error = %error_chain(&e), "recording a sandbox's usage failed");
        }
    }

    /// Ends sessions past their timeout and forgets those whose agent ended, twice a second, until
    /// `shutdown`; then ends every session.
    pub fn spawn_reaper(self: &Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let sandboxes = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = shutdown.cancelled() => break,
                }
                let now = Utc::now();
                let due: Vec<(Arc<SandboxEntry>, &'static str)> = {
                    let state = sandboxes.state.lock().expect("sandboxes lock");
                    state
                        .live
                        .values()
                        .filter_map(|e| {
                            if e.session.end().is_some() {
                                Some((e.clone(), "ended"))
                            } else if e.expires_at() <= now {
                                Some((e.clone(), "timeout"))
                            } else {
                                None
                            }
                        })
                        .collect()
                };
                // Each on a task of its own: a session slow to end holds up no other.
                for (entry, why) in due {
                    let sandboxes = sandboxes.clone();
                    tokio::spawn(async move { sandboxes.finish(&entry, why).await });
                }
            }
            let all: Vec<_> = sandboxes.state.lock().expect("sandboxes lock").live.values().cloned().collect();
            let ending: Vec<_> = all
                .into_iter()
                .map(|entry| {
                    let sandboxes = sandboxes.clone();
                    tokio::spawn(async move { sandboxes.finish(&entry, "shutdown").await })
                })
                .collect();
            for ended in ending {
                let _ = ended.await;
            }
        })
    }
}

/// A call's events, for async code: the session's reader thread hands them over as they come, and no thread
/// waits for them. Output the receiver has not taken is capped at `MAX_BUFFERED` bytes (more is dropped, and
/// `Done` then says `output_truncated`); dropping the stream drops the call's later events (the request goes
/// on in the session).
pub struct EventStream {
    events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    buffered: Arc<AtomicUsize>,
}

impl EventStream {
    /// The next event; `None` once the call has ended (or the session has).
    pub async fn recv(&mut self) -> Option<Event> {
        let event = self.events.recv().await?;
        self.buffered.fetch_sub(event.size(), Ordering::Relaxed);
        Some(event)
    }

    /// A stream and the sink that feeds it.
    fn new() -> (impl FnMut(Event) -> bool + Send + 'static, EventStream) {
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let buffered = Arc::new(AtomicUsize::new(0));
        let counted = buffered.clone();
        let mut dropped = false;
        let sink = move |mut event: Event| {
            let size = event.size();
            match &mut event {
                Event::Done(fields) if dropped => {
                    fields.insert("output_truncated".into(), serde_json::Value::Bool(true));
                }
                Event::Done(_) | Event::Fail(_) => {}
                _ if counted.load(Ordering::Relaxed) + size > MAX_BUFFERED => {
                    dropped = true;
                    return !tx.is_closed();
                }
                _ => {}
            }
            counted.fetch_add(size, Ordering::Relaxed);
            tx.send(event).is_ok()
        };
        (sink, EventStream { events, buffered })
    }
}

impl SandboxEntry {
    /// Runs code in the session; returns the run's id (for an interrupt) and its events.
    pub async fn run_code(
        self: &Arc<Self>,
        code: String,
        context: Option<String>,
        env: HashMap<String, String>,
    ) -> Result<(u64, EventStream), SessionError> {
        let (sink, stream) = EventStream::new();
        let id = self.blocking(move |s| s.run_code_into(&code, context.as_deref(), &env, sink)).await?;
        Ok((id, stream))
    }

    /// Starts a command in the session; returns its events (`Started` first, when it started).
    pub async fn spawn(self: &Arc<Self>, command: Command) -> Result<EventStream, SessionError> {
        let (sink, stream) = EventStream::new();
        self.blocking(move |s| s.spawn_into(&command, sink)).await?;
        Ok(stream)
    }
}

/// Compares two secrets in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the OS's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
