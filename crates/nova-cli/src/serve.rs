//! `nova serve`: the API and in-process workers over the data directory, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use nova_app::sandboxes::Sandboxes;
use nova_app::WorkerConfig;
use nova_core::Workflow;
use nova_server::{AppState, Limiter, RateLimit, ServerConfig};
use nova_store::{BlobStore, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Settings;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "NOVA_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
    /// Jobs of each workflow run at once by the in-process workers; 0 serves the API only (unless
    /// --workflow-concurrency gives a workflow slots). Default: the number of cores.
    #[arg(long, env = "NOVA_WORKERS")]
    workers: Option<usize>,
    #[command(flatten)]
    pool: PoolArgs,
    /// Largest accepted upload, in MiB.
    #[arg(long, env = "NOVA_MAX_UPLOAD_MB", default_value_t = 50)]
    max_upload_mb: u64,
    /// Requests per API key (N/s, N/min or N/h, with ,burst=M), unless the key's tenant has its own rate
    /// (`nova keys limit`); `off` lifts the limits.
    #[arg(long, env = "NOVA_RATE_LIMIT", default_value = "50/s,burst=100", value_parser = parse_rate_limit)]
    rate_limit: RateSetting,
    /// Count request rates in this Redis (`redis://HOST:PORT`), shared by every API process that names it,
    /// rather than in each process's memory.
    #[arg(long, env = "NOVA_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    #[command(flatten)]
    pub background: BackgroundArgs,
    #[command(flatten)]
    sandboxes: SandboxArgs,
    #[command(flatten)]
    log: LogArgs,
}

/// Sandbox sessions (`/v1/sandboxes`): how many, and how long they live.
#[derive(Args)]
pub struct SandboxArgs {
    /// Sandboxes running at once on this server, all tenants together.
    #[arg(long, env = "NOVA_SANDBOX_MAX", default_value_t = 100)]
    sandbox_max: usize,
    /// Sandboxes running at once per tenant.
    #[arg(long, env = "NOVA_SANDBOX_MAX_PER_TENANT", default_value_t = 20)]
    sandbox_max_per_tenant: usize,
    /// Seconds a sandbox lives when its creator names no timeout.
    #[arg(long, env = "NOVA_SANDBOX_TIMEOUT_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    sandbox_timeout_secs: u64,
    /// Serve E2B's API on this address too (off by default), so that E2B's SDKs reach NOVA's sandboxes
    /// with E2B_API_URL and E2B_SANDBOX_URL set to `http://ADDR` and a NOVA API key as E2B_API_KEY.
    #[arg(long, env = "NOVA_E2B_LISTEN")]
    e2b_listen: Option<SocketAddr>,
    /// The longest timeout a sandbox may be given, in seconds.
    #[arg(long, env = "NOVA_SANDBOX_MAX_TIMEOUT_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    sandbox_max_timeout_secs: u64,
}

impl SandboxArgs {
    fn config(&self) -> nova_app::sandboxes::SandboxConfig {
        nova_app::sandboxes::SandboxConfig {
            default_timeout: Duration::from_secs(self.sandbox_timeout_secs.min(self.sandbox_max_timeout_secs)),
            max_timeout: Duration::from_secs(self.sandbox_max_timeout_secs),
            max_per_tenant: self.sandbox_max_per_tenant,
            max_total: self.sandbox_max,
            ..nova_app::sandboxes::SandboxConfig::default()
        }
    }
}

/// How log lines are written (on stderr; `NOVA_LOG` picks which, e.g. `info,nova_app=debug`).
#[derive(Args)]
pub struct LogArgs {
    /// `text` for people, `json` for log pipelines: one object a line, with the fields of its spans (the
    /// request's `request_id`, which a job's lines carry too).
    #[arg(long, env = "NOVA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// See [`LogArgs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A rate, or none (`off`).
#[derive(Clone, Copy)]
struct RateSetting(Option<RateLimit>);

fn parse_rate_limit(arg: &str) -> Result<RateSetting, String> {
    if arg.trim() == "off" {
        return Ok(RateSetting(None));
    }
    arg.parse().map(|rate| RateSetting(Some(rate)))
}

/// Where the data lives.
#[derive(Args)]
pub struct StoreArgs {
    /// Folder of the embedded database and the stored documents; created if missing.
    #[arg(long, env = "NOVA_DATA_DIR", default_value = "nova-data")]
    data_dir: PathBuf,
    /// The database, when not the embedded SQLite file: `postgres://USER@HOST/DB`, or `sqlite:PATH`.
    #[arg(long, env = "NOVA_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Where documents' bytes are kept, when not in the data directory: `s3://BUCKET/PREFIX` (S3 or an
    /// S3-compatible server, set up by the `AWS_*` variables: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`), or `file:///PATH`.
    #[arg(long, env = "NOVA_BLOB_URL")]
    blob_url: Option<String>,
}

impl StoreArgs {
    /// The database and the blob store; `s3` are the S3 settings of an `s3://` blob URL (`AWS_*`).
    pub async fn open(&self, s3: &[(String, String)]) -> anyhow::Result<Store> {
        let store = self.open_database().await?;
        match &self.blob_url {
            None => Ok(store),
            Some(url) => {
                let s3 = s3.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                let blobs = BlobStore::from_url_with(url, s3).with_context(|| format!("the blob store {url}"))?;
                blobs.ping().await.with_context(|| format!("reaching the blob store {url}"))?;
                Ok(store.with_blobs(blobs))
            }
        }
    }

    /// The database only, with documents' bytes in the data directory: for commands that read no document.
    pub async fn open_database(&self) -> anyhow::Result<Store> {
        match &self.database_url {
            None => Store::open(&self.data_dir)
                .await
                .with_context(|| format!("opening the data directory {}", self.data_dir.display())),
            Some(url) => {
                std::fs::create_dir_all(&self.data_dir)
                    .with_context(|| format!("creating the data directory {}", self.data_dir.display()))?;
                // The URL may hold a password: name only its scheme.
                let scheme = url.split(':').next().unwrap_or_default();
                Store::connect(url, &self.data_dir.join("blobs"))
                    .await
                    .with_context(|| format!("opening the database given by NOVA_DATABASE_URL ({scheme}:...)"))
            }
        }
    }
}

/// The work beside the queue that every process with a store runs, `nova serve` and `nova worker` alike:
/// webhook delivery and retention (`nova_app::housekeeping`).
#[derive(Args)]
pub struct BackgroundArgs {
    /// Destinations that job webhooks may reach although they are not public, comma-separated: host names,
    /// addresses, prefixes (`hooks.internal,10.0.0.0/8`). Everything else private, loopback or link-local
    /// is refused.
    #[arg(long, env = "NOVA_WEBHOOK_ALLOW", default_value = "")]
    webhook_allow: nova_app::webhooks::AllowList,
    /// Hours a webhook message is retried before it is dead (resend it with
    /// `POST /v1/webhooks/deliveries/{id}/resend`).
    #[arg(long, env = "NOVA_WEBHOOK_RETRY_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=720))]
    webhook_retry_hours: u64,
    /// Days that uploaded documents are kept; older ones are deleted with their bytes (unless another
    /// tenant's document holds the same bytes). 0 keeps them forever. Finished jobs and their results follow
    /// `--retention-days`.
    #[arg(long, env = "NOVA_DOCUMENT_RETENTION_DAYS", default_value_t = 0)]
    document_retention_days: u64,
    /// Days that finished jobs (with their attempts and events) are kept; 0 keeps them forever.
    #[arg(long, env = "NOVA_RETENTION_DAYS", default_value_t = 30)]
    retention_days: u64,
    /// The most unfinished jobs (queued, retrying, running) one tenant may have: the API refuses more
    /// submissions (`429 too_many_jobs`) until some finish, and a schedule's time that finds its tenant there
    /// is skipped. Default: no limit.
    #[arg(long, env = "NOVA_MAX_UNFINISHED_JOBS")]
    pub max_unfinished_jobs: Option<u32>,
}

/// Days as a retention, 0 meaning forever.
fn days(n: u64) -> Option<Duration> {
    (n > 0).then(|| Duration::from_secs(n * 24 * 3600))
}

impl BackgroundArgs {
    /// The webhook dispatcher's settings (also the API's check of a job's webhook URL).
    pub fn webhooks(&self) -> nova_app::webhooks::WebhookConfig {
        nova_app::webhooks::WebhookConfig {
            allow: self.webhook_allow.clone(),
            max_age: Duration::from_secs(self.webhook_retry_hours * 3600),
            ..Default::default()
        }
    }

    /// Starts the webhook dispatcher and the housekeeping until `shutdown`; [`Background::stop`] waits for them.
    pub fn spawn(&self, store: &nova_store::Store, shutdown: &CancellationToken) -> Background {
        let housekeeping = nova_app::housekeeping::HousekeepingConfig {
            job_retention: days(self.retention_days),
            document_retention: days(self.document_retention_days),
            max_unfinished_jobs: self.max_unfinished_jobs,
            ..Default::default()
        };
        Background(nova_app::housekeeping::spawn(store, self.webhooks(), housekeeping, shutdown))
    }
}

/// The running webhook dispatcher and housekeeping.
pub struct Background([tokio::task::JoinHandle<()>; 3]);

impl Background {
    /// Waits (a few seconds at most) for the dispatcher and the housekeeping to see the shutdown and end what
    /// they were writing, so the store is closed under no statement of theirs.
    pub async fn stop(self) {
        let ended = futures::future::join_all(self.0);
        if tokio::time::timeout(Duration::from_secs(10), ended).await.is_err() {
            tracing::warn!("the webhook dispatcher or the housekeeping did not stop within 10 s");
        }
    }
}

/// How workers hold and give back jobs.
#[derive(Args)]
pub struct PoolArgs {
    /// Seconds that running jobs get to finish at shutdown before they are handed back to the queue.
    #[arg(long, env = "NOVA_SHUTDOWN_GRACE", default_value_t = 30)]
    shutdown_grace: u64,
    /// Seconds a claimed job is held without a heartbeat; a crashed worker's jobs run again after this.
    #[arg(long, env = "NOVA_LEASE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    lease_secs: u64,
    /// Jails kept ready, interpreter started, for `POST /v1/executions` and `code.run` jobs.
    #[arg(long, env = "NOVA_SANDBOX_POOL", default_value_t = 2)]
    pub sandbox_pool: usize,
    /// Slots of one workflow, as WORKFLOW=N (repeatable, or comma-separated), when they should differ from
    /// the others': `code.run=1` runs one program at a time; `noop=0` leaves a workflow to other processes.
    #[arg(
        long = "workflow-concurrency",
        env = "NOVA_WORKFLOW_CONCURRENCY",
        value_name = "WORKFLOW=N",
        value_delimiter = ',',
        value_parser = parse_workflow_slots
    )]
    workflow_concurrency: Vec<(Workflow, usize)>,
    /// Jobs of one workflow that a tenant may run at once, across every worker of the queue, unless `nova
    /// tenants set --max-running` gave it a limit of its own. Unset: no limit (a tenant alone uses every
    /// worker; tenants with waiting jobs share the workers by weight anyway). Give every process the same.
    #[arg(long, env = "NOVA_TENANT_MAX_RUNNING", value_name = "N")]
    tenant_max_running: Option<u32>,
    #[command(flatten)]
    pub extraction: crate::isolation::ExtractionArgs,
}

fn parse_workflow_slots(arg: &str) -> Result<(Workflow, usize), String> {
    let (name, n) = arg.split_once('=').ok_or("expected WORKFLOW=N, for example code.run=2")?;
    // The error names the known workflows.
    let workflow = name.trim().parse::<Workflow>().map_err(|e| e.to_string())?;
    let n = n.trim().parse::<usize>().map_err(|_| format!("`{n}` is not a number of jobs"))?;
    Ok((workflow, n))
}

impl PoolArgs {
    /// The workers' configuration; `extractor` reads their documents, `model` is the AI path's.
    pub fn config(
        &self,
        concurrency: Option<usize>,
        sandbox: &SandboxResult,
        extractor: nova_app::extraction::Extractor,
        model: nova_llm::ModelClient,
    ) -> WorkerConfig {
        let lease = Duration::from_secs(self.lease_secs);
        WorkerConfig {
            concurrency: concurrency.unwrap_or_else(|| WorkerConfig::default().concurrency),
            workflow_concurrency: self.workflow_concurrency.iter().copied().collect(),
            tenant_max_running: self.tenant_max_running,
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
            lease,
            // Six beats per lease: a few lost heartbeats do not lose the job.
            heartbeat: lease / 6,
            // Polling is the fallback wake-up, and what finds lapsed leases.
            poll_interval: (lease / 10).clamp(Duration::from_millis(100), Duration::from_secs(1)),
            sandbox: sandbox
                .as_ref()
                .ok()
                .map(|s| nova_app::SandboxHandle(s.clone() as Arc<dyn nova_sandbox::Sandbox>)),
            extractor,
            model,
        }
    }
}

pub fn run(args: ServeArgs, settings: &Settings) -> anyhow::Result<()> {
    init_logging(args.log.log_format, settings.log.as_deref());
    runtime()?.block_on(serve(args, settings))
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

async fn serve(args: ServeArgs, settings: &Settings) -> anyhow::Result<()> {
    let store = args.store.open(&settings.s3).await?;
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;

    let shutdown = CancellationToken::new();
    tokio::spawn(on_signal(shutdown.clone()));

    let wake = Arc::new(Notify::new());
    let sandbox = start_sandbox(args.pool.sandbox_pool, settings.sandbox_python.clone()).await;
    // Documents (uploads checked by the API, and jobs' documents) are read in extraction processes.
    let templates = templates_dir(settings.templates_dir.as_deref());
    let extractor = args.pool.extraction.extractor(templates.as_deref(), 1, settings)?;
    let model = nova_llm::model_client(&settings.model);
    let worker_config = args.pool.config(args.workers, &sandbox, extractor.clone(), model);
    let workers = (worker_config.total_slots() > 0).then(|| {
        tokio::spawn(nova_app::run(
            store.clone(),
            worker_config.clone(),
            wake.clone(),
            shutdown.clone().cancelled_owned(),
        ))
    });

    let limiter = match &args.redis_url {
        // The URL may hold a password: name only its scheme.
        Some(url) => Limiter::redis(url).await.with_context(|| {
            format!(
                "connecting to the rate limit store given by NOVA_REDIS_URL ({}:...)",
                url.split(':').next().unwrap_or("")
            )
        })?,
        None => Limiter::memory(),
    };
    match (args.rate_limit.0, &args.redis_url) {
        (None, _) => info!("request rate limits are off"),
        (Some(rate), Some(_)) => info!(%rate, "request rate limit per API key, counted in Redis"),
        (Some(rate), None) => info!(%rate, "request rate limit per API key, counted in memory"),
    }
    let sandboxes = sandbox.clone().map(|jail| Sandboxes::new(jail, store.clone(), args.sandboxes.config()));
    let reaper = sandboxes.as_ref().ok().map(|s| s.spawn_reaper(shutdown.clone()));
    let state = AppState::from(nova_server::AppParts {
        // Submissions share transactions (the committer writes every enqueue waiting since its last commit),
        // and the key lookups of concurrent requests share a query.
        store: store.clone().with_group_commit().with_grouped_key_lookups().into(),
        config: std::sync::Arc::new(ServerConfig {
            max_upload_bytes: args.max_upload_mb * 1024 * 1024,
            rate_limit: args.rate_limit.0,
            max_unfinished_jobs: args.background.max_unfinished_jobs,
            webhook_allow: args.background.webhook_allow.clone(),
            renderer: settings.engines.renderer.clone(),
            ..ServerConfig::default()
        }),
        wake_workers: wake,
        sandbox: sandbox.clone().map(|jail| jail as Arc<dyn nova_sandbox::Sandbox>),
        sandboxes: sandboxes.clone(),
        limiter,
        extractor,
    });
    let e2b = match args.sandboxes.e2b_listen {
        Some(listen) => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening for E2B's API on {listen}"))?;
            let e2b_addr = listener.local_addr().context("reading the E2B listener's address")?;
            info!(%e2b_addr, "serving E2B's API: E2B_API_URL and E2B_SANDBOX_URL may point here");
            let served = nova_server::e2b::serve(listener, state.clone(), shutdown.clone().cancelled_owned());
            Some((e2b_addr, tokio::spawn(served)))
        }
        None => None,
    };
    let background = args.background.spawn(&store, &shutdown);
    let first_key = api_key(&store, settings.api_key.as_deref(), addr).await?;
    info!(data_dir = %args.store.data_dir.display(), workers = worker_config.total_slots(), "NOVA serving");
    // The one line a script can wait for, on stdout.
    say(&format!("nova: listening on http://{addr}"));
    if let Some((e2b_addr, _)) = &e2b {
        say(&format!("nova: E2B API on http://{e2b_addr}"));
    }
    if let Some(key) = first_key {
        // On stdout, once, never through the log.
        say(&format!(
            "nova: no API key existed and this server listens beyond loopback, so it made one for the tenant \
             `default` ({}); it is shown only this once:\n{}",
            key.id, key.secret
        ));
    }
    nova_server::serve(listener, state, shutdown.clone().cancelled_owned()).await.context("serving HTTP")?;
    if let Some(workers) = workers {
        workers.await.context("the worker pool panicked")?;
    }
    shutdown.cancel();
    if let Some((_, e2b)) = e2b {
        e2b.await.context("the E2B listener panicked")?.context("serving E2B's API")?;
    }
    if let Some(reaper) = reaper {
        // Every sandbox ends with the server; their use is recorded before the store closes.
        let _ = reaper.await;
    }
    background.stop().await;
    store.close().await;
    info!("NOVA stopped");
    Ok(())
}

/// The tenant that a key given by `NOVA_API_KEY`, or made at first start, belongs to: the one a keyless
/// loopback client is served as.
const FIRST_TENANT: &str = "default";

/// Makes sure the API never runs open beyond loopback: adds the key `given` (`NOVA_API_KEY`) when there is
/// one; else, when the server listens on a non-loopback address and no key was ever made, makes a key for
/// the default tenant and returns it to be printed once.
async fn api_key(store: &Store, given: Option<&str>, addr: SocketAddr) -> anyhow::Result<Option<nova_store::NewKey>> {
    if let Some(secret) = given {
        let (id, added) = store.add_key(FIRST_TENANT, secret).await.context("NOVA_API_KEY")?;
        match added {
            nova_store::AddedKey::Added => {
                info!(key = %id, "the key of NOVA_API_KEY was added for the tenant `default`")
            }
            nova_store::AddedKey::Present => info!(key = %id, "the key of NOVA_API_KEY is in place"),
            nova_store::AddedKey::Revoked => anyhow::bail!(
                "NOVA_API_KEY is a revoked key ({id}): it opens nothing; give a new one (or none, and make keys with \
                 `nova keys create`)"
            ),
        }
        return Ok(None);
    }
    if addr.ip().to_canonical().is_loopback() || store.keys_exist().await.context("checking for API keys")? {
        return Ok(None);
    }
    Ok(Some(store.create_key(FIRST_TENANT).await.context("making the first API key")?))
}

/// The vendor templates' folder of the workers (`NOVA_TEMPLATES_DIR`, [`Settings::templates_dir`]), when it
/// can be read. Its files are loaded once here, to report the ones that do not load.
pub fn templates_dir(dir: Option<&Path>) -> Option<PathBuf> {
    let dir = dir?.to_path_buf();
    match nova_extract::TemplateSet::load_dir(&dir) {
        Ok(loaded) => {
            for e in &loaded.errors {
                tracing::warn!(error = %nova_core::error_chain(e), "a template was not loaded");
            }
            info!(templates = loaded.set.len(), failed = loaded.errors.len(), "vendor templates loaded");
        }
        Err(e) => {
            tracing::error!(error = %nova_core::error_chain(&e), "NOVA_TEMPLATES_DIR cannot be read; no vendor templates");
            return None;
        }
    }
    Some(dir)
}

/// A started sandbox, or why there is none.
pub type SandboxResult = Result<Arc<nova_sandbox::jail::JailSandbox>, Arc<str>>;

/// The jail sandbox with its warm pool and the interpreter `python` (`python3` when `None`), or why this host
/// cannot run one (the server still serves everything else, and says so at start).
pub async fn start_sandbox(pool: usize, python: Option<PathBuf>) -> SandboxResult {
    let started = tokio::task::spawn_blocking(move || {
        let config = crate::exec::jail_config(pool, python.as_deref()).map_err(|e| format!("{e:#}"))?;
        let jail = nova_sandbox::jail::JailSandbox::new(config);
        jail.check()?;
        Ok::<_, String>(jail)
    })
    .await
    .unwrap_or_else(|e| Err(format!("the sandbox check panicked: {e}")));
    match started {
        Ok(jail) => Ok(Arc::new(jail)),
        Err(reason) => {
            tracing::warn!(%reason, "no sandbox on this host: POST /v1/executions and /v1/sandboxes answer 503");
            Err(reason.into())
        }
    }
}

/// Cancels `token` on the first SIGINT or SIGTERM.
pub async fn on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    info!("shutdown requested: no new requests or jobs; finishing what is running");
    token.cancel();
}

/// Logs to stderr in `format`, at the levels `filter` names (`NOVA_LOG`; `info` when unset or invalid).
pub fn init_logging(format: LogFormat, filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = filter.and_then(|f| EnvFilter::try_new(f).ok()).unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            builder.with_ansi(ansi).init();
        }
        // The event's fields at the top level, and every enclosing span's (request, job) under `spans`.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(true).init(),
    }
}

/// A line on stdout for scripts that wait for it (`nova serve`'s address, `nova worker`'s start); a reader
/// that went away (a closed pipe) is no reason to stop.
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}
