//! NOVA's configuration, in one place: defaults in code, then an optional TOML file (`--config FILE`, or
//! `NOVA_CONFIG`), then the `NOVA_*` environment variables, then flags. It is read here, once, in the binary,
//! and passed down as values: no library crate reads the environment (`library_crates_read_no_environment`
//! below checks it).
//!
//! The file's keys are the settings' variables without `NOVA_`, in lower case (`NOVA_EXTRACT_MEMORY_MB` is
//! `extract_memory_mb`, `NOVA_LLM_API_KEY` is `llm_api_key`); [`SETTINGS`] lists them with their defaults. An
//! unknown key is an error that names it. [`load`] runs first thing in `main`, before the command line is
//! parsed: it reads the secrets that `*_FILE` variables name, then sets the variable of each key of the file
//! that the environment leaves unset, so clap's `env` gives flags over the environment over the file over the
//! defaults. [`Settings`] then reads the settings that have no flag (the model, OCR and rendering, the
//! sandbox's Python, S3), once. `nova config show` prints the result with its origins, secrets masked.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use nova_app::engines::pdftoppm::PdftoppmConfig;
use nova_app::engines::tesseract::TesseractConfig;
use nova_app::extraction::EngineConfig;
use serde::Deserialize;

/// The variable that names the configuration file when `--config` does not.
pub const CONFIG_VAR: &str = "NOVA_CONFIG";

/// The secrets that may also come from a file, named by the variable with `_FILE` appended (as container
/// platforms mount secrets): `NOVA_DATABASE_URL_FILE=/run/secrets/db`.
pub const SECRET_VARS: &[&str] = &[
    "NOVA_DATABASE_URL",
    "NOVA_REDIS_URL",
    "NOVA_LLM_API_KEY",
    "NOVA_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// A setting's default: a value, or what leaving it unset means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    Value(&'static str),
    Unset(&'static str),
}

/// How `nova config show` prints a setting's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    Plain,
    /// `***`.
    Secret,
    /// Scheme, user, host, port and path, with the password and the query masked.
    SecretUrl,
}

/// One setting of the file and the environment.
pub struct Setting {
    /// Its key in the file: `var` without `NOVA_`, in lower case.
    pub key: &'static str,
    pub var: &'static str,
    pub default: Fallback,
    pub shown: Shown,
    /// The variable's text as a TOML value of the setting's type.
    render: fn(&str) -> String,
}

/// A type a setting may have in the file, and its text in the environment.
trait FileValue {
    fn to_var(&self) -> String;
    fn render(var: &str) -> String;
}

impl FileValue for String {
    fn to_var(&self) -> String {
        self.clone()
    }

    fn render(var: &str) -> String {
        toml::Value::String(var.to_string()).to_string()
    }
}

impl FileValue for u64 {
    fn to_var(&self) -> String {
        self.to_string()
    }

    fn render(var: &str) -> String {
        var.trim().parse::<u64>().map_or_else(|_| String::render(var), |n| n.to_string())
    }
}

impl FileValue for f64 {
    fn to_var(&self) -> String {
        self.to_string()
    }

    fn render(var: &str) -> String {
        var.trim().parse::<f64>().map_or_else(|_| String::render(var), |x| toml::Value::Float(x).to_string())
    }
}

/// Declares every setting once: the file's typed keys ([`FileConfig`], which refuses unknown ones) and the
/// table [`SETTINGS`] that `nova config show` and the checks walk.
macro_rules! settings {
    ($($key:ident: $ty:ty = $var:literal, $default:expr, $shown:ident;)*) => {
        /// The configuration file. Every key is optional; an unknown one is an error.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FileConfig {
            $($key: Option<$ty>,)*
        }

        impl FileConfig {
            /// The settings the file gives, as their variables' text.
            fn vars(&self) -> Vec<(&'static str, String)> {
                let mut vars = Vec::new();
                $(
                    if let Some(value) = &self.$key {
                        vars.push(($var, FileValue::to_var(value)));
                    }
                )*
                vars
            }
        }

        /// Every setting of the file and the environment, in the order `nova config show` prints them.
        pub const SETTINGS: &[Setting] = &[$(
            Setting {
                key: stringify!($key),
                var: $var,
                default: $default,
                shown: Shown::$shown,
                render: <$ty as FileValue>::render,
            },
        )*];
    };
}

use Fallback::{Unset, Value};

settings! {
    // Where the data lives (`serve`, `worker`, `keys`, `extract`).
    data_dir: String = "NOVA_DATA_DIR", Value("nova-data"), Plain;
    database_url: String = "NOVA_DATABASE_URL", Unset("the SQLite database in data_dir"), SecretUrl;
    blob_url: String = "NOVA_BLOB_URL", Unset("documents' bytes under data_dir"), Plain;
    // The API (`serve`).
    listen: String = "NOVA_LISTEN", Value("127.0.0.1:8080"), Plain;
    api_key: String = "NOVA_API_KEY", Unset("none: listening beyond loopback, serve makes one at first start"), Secret;
    max_upload_mb: u64 = "NOVA_MAX_UPLOAD_MB", Value("50"), Plain;
    rate_limit: String = "NOVA_RATE_LIMIT", Value("50/s,burst=100"), Plain;
    redis_url: String = "NOVA_REDIS_URL", Unset("request rates counted in memory"), SecretUrl;
    max_unfinished_jobs: u64 = "NOVA_MAX_UNFINISHED_JOBS", Unset("no limit"), Plain;
    webhook_allow: String = "NOVA_WEBHOOK_ALLOW", Value(""), Plain;
    webhook_retry_hours: u64 = "NOVA_WEBHOOK_RETRY_HOURS", Value("24"), Plain;
    document_retention_days: u64 = "NOVA_DOCUMENT_RETENTION_DAYS", Value("0"), Plain;
    sandbox_max: u64 = "NOVA_SANDBOX_MAX", Value("100"), Plain;
    sandbox_max_per_tenant: u64 = "NOVA_SANDBOX_MAX_PER_TENANT", Value("20"), Plain;
    sandbox_timeout_secs: u64 = "NOVA_SANDBOX_TIMEOUT_SECS", Value("300"), Plain;
    sandbox_max_timeout_secs: u64 = "NOVA_SANDBOX_MAX_TIMEOUT_SECS", Value("3600"), Plain;
    e2b_listen: String = "NOVA_E2B_LISTEN", Unset("no E2B listener"), Plain;
    // Workers (`serve`, `worker`).
    workers: u64 = "NOVA_WORKERS", Unset("the number of cores"), Plain;
    workflow_concurrency: String = "NOVA_WORKFLOW_CONCURRENCY", Unset("every workflow gets `workers` slots"), Plain;
    tenant_max_running: u64 = "NOVA_TENANT_MAX_RUNNING", Unset("no limit (tenants share the workers by weight)"), Plain;
    shutdown_grace: u64 = "NOVA_SHUTDOWN_GRACE", Value("30"), Plain;
    lease_secs: u64 = "NOVA_LEASE_SECS", Value("30"), Plain;
    retention_days: u64 = "NOVA_RETENTION_DAYS", Value("30"), Plain;
    sandbox_pool: u64 = "NOVA_SANDBOX_POOL", Value("2"), Plain;
    sandbox_python: String = "NOVA_SANDBOX_PYTHON", Value("python3"), Plain;
    metrics_listen: String = "NOVA_METRICS_LISTEN", Unset("no metrics listener of `nova worker`'s own"), Plain;
    templates_dir: String = "NOVA_TEMPLATES_DIR", Unset("no vendor templates"), Plain;
    // Logs.
    log: String = "NOVA_LOG", Value("info"), Plain;
    log_format: String = "NOVA_LOG_FORMAT", Value("text"), Plain;
    // Reading documents (`serve`, `worker`, `extract`, `eval`).
    extract_memory_mb: u64 = "NOVA_EXTRACT_MEMORY_MB", Value("1024"), Plain;
    extract_cpu_secs: u64 = "NOVA_EXTRACT_CPU_SECS", Value("120"), Plain;
    extract_timeout_secs: u64 = "NOVA_EXTRACT_TIMEOUT_SECS", Value("600"), Plain;
    pdf_max_pages: u64 = "NOVA_PDF_MAX_PAGES", Value("5000"), Plain;
    pdf_max_stream_mb: u64 = "NOVA_PDF_MAX_STREAM_MB", Value("64"), Plain;
    pdf_max_decoded_mb: u64 = "NOVA_PDF_MAX_DECODED_MB", Value("256"), Plain;
    pdf_max_operators: u64 = "NOVA_PDF_MAX_OPERATORS", Value("2000000"), Plain;
    pdf_max_nesting: u64 = "NOVA_PDF_MAX_NESTING", Value("24"), Plain;
    tesseract: String = "NOVA_TESSERACT", Value("tesseract"), Plain;
    ocr_languages: String = "NOVA_OCR_LANGUAGES", Value(nova_app::engines::tesseract::DEFAULT_LANGUAGES), Plain;
    ocr_timeout_secs: u64 = "NOVA_OCR_TIMEOUT_SECS", Value("60"), Plain;
    pdftoppm: String = "NOVA_PDFTOPPM", Value("pdftoppm"), Plain;
    render_timeout_secs: u64 = "NOVA_RENDER_TIMEOUT_SECS", Value("20"), Plain;
    // The model (the AI path).
    llm_base_url: String = "NOVA_LLM_BASE_URL", Unset("no model"), Plain;
    llm_model: String = "NOVA_LLM_MODEL", Unset("no model: the AI path is off"), Plain;
    llm_api_key: String = "NOVA_LLM_API_KEY", Unset("no key sent"), Secret;
    llm_timeout_secs: u64 = "NOVA_LLM_TIMEOUT_SECS", Value("120"), Plain;
    llm_max_retries: u64 = "NOVA_LLM_MAX_RETRIES", Value("4"), Plain;
    llm_max_repair_rounds: u64 = "NOVA_LLM_MAX_REPAIR_ROUNDS", Value("3"), Plain;
    llm_program_timeout_ms: u64 = "NOVA_LLM_PROGRAM_TIMEOUT_MS", Value("5000"), Plain;
    llm_task_timeout_secs: u64 = "NOVA_LLM_TASK_TIMEOUT_SECS", Value("60"), Plain;
    llm_auto_threshold: f64 = "NOVA_LLM_AUTO_THRESHOLD", Value("0.8"), Plain;
    llm_context_tokens: u64 = "NOVA_LLM_CONTEXT_TOKENS", Value("32000"), Plain;
    llm_prices: String = "NOVA_LLM_PRICES", Unset("no prices (tokens are counted, not costed)"), Plain;
}

/// Where a variable that [`load`] set came from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    /// The configuration file.
    File,
    /// The file that this `*_FILE` variable names.
    SecretFile(String),
}

/// What [`load`] found and set.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The configuration file, and what named it (`--config` or `NOVA_CONFIG`).
    file: Option<(PathBuf, &'static str)>,
    /// The variables to set, with their values and where they came from.
    set: Vec<(String, String, Origin)>,
}

impl Loaded {
    fn origin(&self, var: &str) -> Option<&Origin> {
        self.set.iter().find(|(name, ..)| name == var).map(|(.., origin)| origin)
    }
}

/// Reads the configuration file and the secrets' files, and sets the variables they give that the environment
/// does not. `args` is the whole command line, for `--config`.
pub fn load(args: &[OsString]) -> anyhow::Result<Loaded> {
    let loaded = resolve(args, &|name| std::env::var_os(name).filter(|v| !v.is_empty()))?;
    for (var, value, _) in &loaded.set {
        // Changing the process's environment is sound only while no other thread can read it: `main` calls
        // this before clap parses, before any runtime, pool or helper thread exists. It is what lets clap's
        // `env` see the file's values below the environment's and the flags'.
        std::env::set_var(var, value);
    }
    Ok(loaded)
}

/// [`load`]'s work against the environment `env` (a variable's value, `None` when unset or empty), setting
/// nothing.
fn resolve(args: &[OsString], env: &dyn Fn(&str) -> Option<OsString>) -> anyhow::Result<Loaded> {
    let text = |name: &str| env(name).map(|v| v.to_string_lossy().into_owned());
    let mut loaded = Loaded::default();
    for &var in SECRET_VARS {
        let file_var = format!("{var}_FILE");
        let Some(path) = env(&file_var) else { continue };
        if env(var).is_some() {
            bail!("both {var} and {file_var} are set: set one of them");
        }
        let path = PathBuf::from(path);
        let secret = std::fs::read_to_string(&path)
            .with_context(|| format!("{file_var}: cannot read the secret file {}", path.display()))?;
        let secret = secret.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&secret);
        loaded.set.push((var.to_string(), secret.to_string(), Origin::SecretFile(file_var)));
    }
    loaded.file = match config_flag(args) {
        Some(path) => Some((path, "--config")),
        None => env(CONFIG_VAR).map(|path| (PathBuf::from(path), CONFIG_VAR)),
    };
    if let Some((path, _)) = &loaded.file {
        let file = read_file(path)?;
        for (var, value) in file.vars() {
            let set_here = loaded.set.iter().any(|(name, ..)| name == var);
            if text(var).is_none() && !set_here {
                loaded.set.push((var.to_string(), value, Origin::File));
            }
        }
    }
    Ok(loaded)
}

/// The file that `--config FILE` or `--config=FILE` names, before clap has parsed anything.
fn config_flag(args: &[OsString]) -> Option<PathBuf> {
    let mut args = args.iter().skip(1).take_while(|arg| *arg != "--");
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(path));
        }
    }
    None
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    parse_file(&text).with_context(|| format!("the configuration file {}", path.display()))
}

fn parse_file(text: &str) -> anyhow::Result<FileConfig> {
    let table: toml::Table = toml::from_str(text)?;
    for key in table.keys() {
        if !SETTINGS.iter().any(|s| s.key == key) {
            let nearest = SETTINGS
                .iter()
                .map(|s| (strsim::jaro_winkler(key, s.key), s.key))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .filter(|(score, _)| *score > 0.8);
            let hint = nearest.map(|(_, near)| format!(" (did you mean `{near}`?)")).unwrap_or_default();
            bail!("unknown key `{key}`{hint}; `nova config show` lists every key");
        }
    }
    Ok(toml::from_str(text)?)
}

/// The settings that have no flag, read once from the environment (the file's values included, see [`load`])
/// and passed to the commands that use them.
pub struct Settings {
    /// The model of the AI path (`NOVA_LLM_*`): none when `NOVA_LLM_MODEL` is unset, an error when the settings
    /// cannot be used (the rules still run; `llm` is refused with the reason).
    pub model: Result<Option<nova_llm::LlmConfig>, nova_llm::ConfigError>,
    /// OCR and page rendering.
    pub engines: EngineConfig,
    /// The sandbox's interpreter (`python3` from `PATH` when unset).
    pub sandbox_python: Option<PathBuf>,
    /// The workers' vendor templates (`nova extract` has `--templates`, which reads the same variable).
    pub templates_dir: Option<PathBuf>,
    /// The log filter (`info` when unset).
    pub log: Option<String>,
    /// The S3 settings of the blob store: the `AWS_*` variables that name one.
    pub s3: Vec<(String, String)>,
    /// An API key for the default tenant that `nova serve` adds at start (`NOVA_API_KEY`, a deployment's
    /// secret), and the key `nova extract --server` sends; never a flag, so it does not show in the process
    /// list.
    pub api_key: Option<String>,
    /// The environment of an extraction process: what its OCR and rendering programs need, and the log
    /// filter. Nothing else (no database URL, no model key) reaches the process that parses untrusted bytes.
    pub extraction_env: Vec<(OsString, OsString)>,
}

/// The variables an extraction process keeps.
const EXTRACTION_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "TESSDATA_PREFIX", "NOVA_LOG"];

impl Settings {
    pub fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok();
        let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Settings {
            model: nova_llm::LlmConfig::from_lookup(var),
            engines: engines(&var, std::env::var_os("PATH")),
            sandbox_python: set("NOVA_SANDBOX_PYTHON").map(PathBuf::from),
            templates_dir: set("NOVA_TEMPLATES_DIR").map(PathBuf::from),
            log: var("NOVA_LOG"),
            s3: nova_store::BlobStore::s3_settings(
                std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
            ),
            api_key: var("NOVA_API_KEY").filter(|v| !v.is_empty()),
            extraction_env: EXTRACTION_ENV
                .iter()
                .filter_map(|&k| std::env::var_os(k).map(|v| (OsString::from(k), v)))
                .collect(),
        }
    }
}

/// OCR and rendering as `NOVA_TESSERACT`, `NOVA_OCR_LANGUAGES`, `NOVA_OCR_TIMEOUT_SECS`, `NOVA_PDFTOPPM` and
/// `NOVA_RENDER_TIMEOUT_SECS` say (an empty or unreadable value is the default; a time limit is at least a
/// second), the renderer with the search path `path`.
fn engines(get: &dyn Fn(&str) -> Option<String>, path: Option<OsString>) -> EngineConfig {
    let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let secs =
        |name: &str| var(name).and_then(|s| s.trim().parse::<u64>().ok()).map(|secs| Duration::from_secs(secs.max(1)));
    let ocr = TesseractConfig::default();
    let renderer = PdftoppmConfig::default();
    EngineConfig {
        ocr: TesseractConfig {
            binary: var("NOVA_TESSERACT").map_or(ocr.binary, PathBuf::from),
            languages: var("NOVA_OCR_LANGUAGES").unwrap_or(ocr.languages),
            timeout: secs("NOVA_OCR_TIMEOUT_SECS").unwrap_or(ocr.timeout),
        },
        renderer: PdftoppmConfig {
            binary: var("NOVA_PDFTOPPM").map_or(renderer.binary, PathBuf::from),
            timeout: secs("NOVA_RENDER_TIMEOUT_SECS").unwrap_or(renderer.timeout),
            search_path: path,
        },
    }
}

#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration as TOML: every setting, its value and where it came from (default,
    /// file, env), secrets masked.
    Show,
}

pub fn run(args: ConfigArgs, loaded: &Loaded, settings: &Settings) -> ExitCode {
    match args.command {
        ConfigCommand::Show => {
            let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            let aws = std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .filter(|(k, _)| k.starts_with("AWS_"))
                .collect();
            let mut shown = show(loaded, &env, aws);
            if let Err(e) = &settings.model {
                // What a job asking for the model would fail with (`llm_misconfigured`).
                writeln!(shown, "# the model's settings cannot be used: {e}").ok();
            }
            crate::serve::say(shown.trim_end());
            ExitCode::SUCCESS
        }
    }
}

/// The effective configuration as TOML, each value followed by its origin; unset settings without a default
/// and the S3 variables are comments.
fn show(loaded: &Loaded, env: &dyn Fn(&str) -> Option<String>, aws: BTreeMap<String, String>) -> String {
    let mut out = String::from(
        "# NOVA's effective configuration: each setting with its value and where that came from (default, file,\n\
         # env); flags given to a command override these. Secrets are masked.\n",
    );
    match &loaded.file {
        Some((path, named_by)) => writeln!(out, "# configuration file: {} (from {named_by})", path.display()),
        None => writeln!(out, "# configuration file: none (--config FILE or {CONFIG_VAR})"),
    }
    .ok();
    for setting in SETTINGS {
        let origin = |var: &str| match loaded.origin(var) {
            Some(Origin::File) => "file".to_string(),
            Some(Origin::SecretFile(file_var)) => format!("env ({file_var})"),
            None => format!("env ({var})"),
        };
        match (env(setting.var), setting.default) {
            (Some(value), _) => {
                let value = (setting.render)(&mask(setting.shown, &value));
                writeln!(out, "{} = {value} # {}", setting.key, origin(setting.var))
            }
            (None, Value(default)) => writeln!(out, "{} = {} # default", setting.key, (setting.render)(default)),
            (None, Unset(meaning)) => writeln!(out, "# {} is not set: {meaning} # default", setting.key),
        }
        .ok();
    }
    let aws = nova_store::BlobStore::s3_settings(aws);
    if !aws.is_empty() {
        out.push_str("# S3 settings of the environment (for an s3:// blob_url; not keys of the file):\n");
        for (key, value) in aws {
            let var = key.to_ascii_uppercase();
            let shown =
                if ["KEY", "SECRET", "TOKEN"].iter().any(|w| var.contains(w)) { Shown::Secret } else { Shown::Plain };
            let origin = match loaded.origin(&var) {
                Some(Origin::SecretFile(file_var)) => format!("env ({file_var})"),
                _ => format!("env ({var})"),
            };
            writeln!(out, "# {var} = {} # {origin}", String::render(&mask(shown, &value))).ok();
        }
    }
    out
}

/// `value` as `nova config show` may print it.
fn mask(shown: Shown, value: &str) -> String {
    match shown {
        Shown::Plain => value.to_string(),
        Shown::Secret => "***".to_string(),
        Shown::SecretUrl => mask_url(value),
    }
}

/// A URL with its password and query masked: `postgres://nova:***@db.internal:5432/nova`.
fn mask_url(url: &str) -> String {
    let mask_query = |rest: &str| match rest.split_once('?') {
        Some((before, _)) => format!("{before}?***"),
        None => rest.to_string(),
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        // `sqlite:PATH` and the like name no host and hold no password, but for a query.
        return mask_query(url);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    format!("{scheme}://{authority}{}", mask_query(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment of `vars` only.
    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: BTreeMap<String, OsString> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        move |name| vars.get(name).cloned().filter(|v| !v.is_empty())
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("nova").chain(list.iter().copied()).map(OsString::from).collect()
    }

    /// A configuration file in a fresh folder; the folder goes with the guard.
    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("nova.toml");
        std::fs::write(&path, text).expect("the file is written");
        (dir, path)
    }

    fn set(loaded: &Loaded) -> BTreeMap<&str, (&str, &Origin)> {
        loaded.set.iter().map(|(k, v, o)| (k.as_str(), (v.as_str(), o))).collect()
    }

    /// Only this test changes the process's environment, under this lock (nextest runs each test in a process
    /// of its own; `cargo test` runs them on threads).
    static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn precedence_is_default_then_file_then_env_then_flag() {
        let (_dir, path) = file(
            "listen = \"127.0.0.1:7001\"\ndata_dir = \"/from-file\"\nworkers = 2\nmax_upload_mb = 7\n\
             ocr_languages = \"deu\"\nllm_model = \"file-model\"\nllm_base_url = \"http://127.0.0.1:1/v1\"\n",
        );
        let path = path.to_str().expect("a UTF-8 path");
        let env = [("NOVA_DATA_DIR", "/from-env"), ("NOVA_WORKERS", "5"), ("NOVA_LLM_MODEL", "env-model")];
        let command_line = ["serve", "--config", path, "--workers", "9"];
        let loaded = resolve(&args(&command_line), &env_of(&env)).expect("the file loads");
        let set = set(&loaded);
        // The file fills what the environment leaves unset, and nothing else.
        assert_eq!(set.get("NOVA_LISTEN"), Some(&("127.0.0.1:7001", &Origin::File)));
        assert_eq!(set.get("NOVA_OCR_LANGUAGES"), Some(&("deu", &Origin::File)));
        assert!(!set.contains_key("NOVA_DATA_DIR") && !set.contains_key("NOVA_WORKERS"), "{set:?}");
        assert!(!set.contains_key("NOVA_LLM_MODEL"), "{set:?}");

        // What clap makes of it, with the process's environment as `load` leaves it.
        let _lock = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let saved: Vec<(&str, Option<OsString>)> = SETTINGS.iter().map(|s| (s.var, std::env::var_os(s.var))).collect();
        for s in SETTINGS {
            std::env::remove_var(s.var);
        }
        for (var, value) in env
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .chain(loaded.set.iter().map(|(k, v, _)| (k.as_str(), v.clone())))
        {
            std::env::set_var(var, value);
        }
        let matches = <crate::Cli as clap::CommandFactory>::command().try_get_matches_from(args(&command_line));
        let settings = Settings::from_env();
        for (var, value) in saved {
            match value {
                Some(value) => std::env::set_var(var, value),
                None => std::env::remove_var(var),
            }
        }
        let matches = matches.expect("the command line parses");
        let serve = matches.subcommand_matches("serve").expect("serve");
        use clap::parser::ValueSource;
        let listen = serve.get_one::<std::net::SocketAddr>("listen").expect("listen");
        assert_eq!(listen.to_string(), "127.0.0.1:7001", "the file's over the default");
        assert_eq!(serve.value_source("listen"), Some(ValueSource::EnvVariable));
        assert_eq!(
            serve.get_one::<PathBuf>("data_dir"),
            Some(&PathBuf::from("/from-env")),
            "the env's over the file's"
        );
        assert_eq!(serve.get_one::<usize>("workers"), Some(&9), "the flag's over the env's and the file's");
        assert_eq!(serve.value_source("workers"), Some(ValueSource::CommandLine));
        assert_eq!(serve.get_one::<u64>("max_upload_mb"), Some(&7));
        assert_eq!(serve.get_one::<u64>("shutdown_grace"), Some(&30), "the default where nothing else says");
        assert_eq!(serve.value_source("shutdown_grace"), Some(ValueSource::DefaultValue));
        // Settings without a flag follow the same order.
        assert_eq!(settings.engines.ocr.languages, "deu");
        assert_eq!(settings.engines.renderer.timeout, nova_app::engines::pdftoppm::DEFAULT_TIMEOUT);
        let model = settings.model.expect("valid").expect("a model");
        assert_eq!((model.model.as_str(), model.base_url.as_str()), ("env-model", "http://127.0.0.1:1/v1"));
    }

    #[test]
    fn config_names_the_file_by_flag_before_the_variable() {
        let (_dir, path) = file("listen = \"127.0.0.1:1\"\n");
        let path = path.to_str().expect("a UTF-8 path");
        let by_env = resolve(&args(&["serve"]), &env_of(&[(CONFIG_VAR, path)])).expect("loads");
        assert_eq!(by_env.file.as_ref().map(|(_, by)| *by), Some(CONFIG_VAR));
        let flag = format!("--config={path}");
        let by_flag = resolve(&args(&["serve", &flag]), &env_of(&[(CONFIG_VAR, "/nonexistent.toml")])).expect("loads");
        assert_eq!(by_flag.file.as_ref().map(|(_, by)| *by), Some("--config"));
        // Arguments after `--` are not options.
        assert!(config_flag(&args(&["exec", "--", "--config", "x"])).is_none());
        let missing = resolve(&args(&["--config", "/nonexistent/nova.toml", "serve"]), &env_of(&[])).unwrap_err();
        assert!(format!("{missing:#}").contains("/nonexistent/nova.toml"), "{missing:#}");
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let err = parse_file("listen = \"127.0.0.1:1\"\nlisten_addr = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("unknown key `listen_addr`"), "{err}");
        assert!(err.contains("did you mean `listen`?"), "{err}");
        let err = parse_file("[llm]\nmodel = \"m\"\n").unwrap_err().to_string();
        assert!(err.contains("unknown key `llm`"), "{err}");
        // Through `load`, the message names the file too.
        let (_dir, path) = file("wrkers = 3\n");
        let err = resolve(&args(&["--config", path.to_str().expect("UTF-8"), "serve"]), &env_of(&[])).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("unknown key `wrkers`") && err.contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error_that_names_its_key() {
        let err = parse_file("workers = \"many\"\n").unwrap_err().to_string();
        assert!(err.contains("workers"), "{err}");
        let config = parse_file("workers = 4\nllm_auto_threshold = 0.5\nrate_limit = \"off\"\n").expect("parses");
        let vars = config.vars();
        assert!(vars.contains(&("NOVA_WORKERS", "4".into())), "{vars:?}");
        assert!(vars.contains(&("NOVA_LLM_AUTO_THRESHOLD", "0.5".into())), "{vars:?}");
        assert!(vars.contains(&("NOVA_RATE_LIMIT", "off".into())), "{vars:?}");
    }

    #[test]
    fn secrets_come_from_the_files_their_file_variables_name() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let db = dir.path().join("db");
        std::fs::write(&db, "postgres://nova:pw@db/nova\n").expect("written");
        let key = dir.path().join("key");
        std::fs::write(&key, "sk-line\r\n\n").expect("written");
        let (db, key) = (db.to_str().expect("UTF-8"), key.to_str().expect("UTF-8"));
        let (_file_dir, path) = file("database_url = \"postgres://from-file\"\nredis_url = \"redis://from-file\"\n");
        let env = env_of(&[
            ("NOVA_DATABASE_URL_FILE", db),
            ("NOVA_LLM_API_KEY_FILE", key),
            (CONFIG_VAR, path.to_str().expect("UTF-8")),
        ]);
        let loaded = resolve(&args(&["serve"]), &env).expect("loads");
        let set = set(&loaded);
        let from = |var: &str| Origin::SecretFile(var.to_string());
        assert_eq!(set["NOVA_DATABASE_URL"], ("postgres://nova:pw@db/nova", &from("NOVA_DATABASE_URL_FILE")));
        // One line ending is trimmed, no more.
        assert_eq!(set["NOVA_LLM_API_KEY"], ("sk-line\r\n", &from("NOVA_LLM_API_KEY_FILE")));
        // The file's value is below the secret file's, and fills in where there is none.
        assert_eq!(set["NOVA_REDIS_URL"], ("redis://from-file", &Origin::File));
    }

    #[test]
    fn a_secret_and_its_file_together_are_an_error() {
        let env = env_of(&[("NOVA_LLM_API_KEY", "sk"), ("NOVA_LLM_API_KEY_FILE", "/run/secrets/key")]);
        let err = format!("{:#}", resolve(&args(&["serve"]), &env).unwrap_err());
        assert!(err.contains("NOVA_LLM_API_KEY and NOVA_LLM_API_KEY_FILE"), "{err}");
        let env = env_of(&[("AWS_SECRET_ACCESS_KEY_FILE", "/nonexistent/secret")]);
        let err = format!("{:#}", resolve(&args(&["serve"]), &env).unwrap_err());
        assert!(err.contains("AWS_SECRET_ACCESS_KEY_FILE") && err.contains("/nonexistent/secret"), "{err}");
    }

    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            mask_url("postgres://nova:s3cret@db.internal:5432/nova"),
            "postgres://nova:***@db.internal:5432/nova"
        );
        assert_eq!(mask_url("postgres://nova@db/nova?password=s3cret"), "postgres://nova@db/nova?***");
        assert_eq!(mask_url("redis://:s3cret@cache:6379"), "redis://:***@cache:6379");
        assert_eq!(mask_url("rediss://user:p@ss:w@cache"), "rediss://user:***@cache");
        assert_eq!(mask_url("sqlite:/data/nova.db"), "sqlite:/data/nova.db");
        assert_eq!(mask(Shown::Secret, "sk-123"), "***");
        let loaded = Loaded {
            file: None,
            set: vec![("NOVA_LLM_API_KEY".into(), "sk-123".into(), Origin::SecretFile("NOVA_LLM_API_KEY_FILE".into()))],
        };
        let env = |name: &str| match name {
            "NOVA_LLM_API_KEY" => Some("sk-123".to_string()),
            "NOVA_REDIS_URL" => Some("redis://:hunter2@cache:6379".to_string()),
            _ => None,
        };
        let aws = BTreeMap::from([
            ("AWS_SECRET_ACCESS_KEY".to_string(), "aws-secret".to_string()),
            ("AWS_REGION".to_string(), "eu-central-1".to_string()),
        ]);
        let shown = show(&loaded, &env, aws);
        for secret in ["sk-123", "hunter2", "aws-secret"] {
            assert!(!shown.contains(secret), "{secret} shows:\n{shown}");
        }
        assert!(shown.contains("llm_api_key = \"***\" # env (NOVA_LLM_API_KEY_FILE)"), "{shown}");
        assert!(shown.contains("redis_url = \"redis://:***@cache:6379\" # env (NOVA_REDIS_URL)"), "{shown}");
        assert!(shown.contains("# AWS_REGION = \"eu-central-1\""), "{shown}");
        assert!(shown.contains("listen = \"127.0.0.1:8080\" # default"), "{shown}");
        assert!(shown.contains("# workers is not set: the number of cores # default"), "{shown}");
        // Everything but the comments is a configuration file that loads.
        parse_file(&shown).expect("the output is a configuration file");
    }

    #[test]
    fn keys_are_their_variables_without_nova() {
        for s in SETTINGS {
            assert_eq!(format!("NOVA_{}", s.key.to_uppercase()), s.var);
        }
        for var in SECRET_VARS {
            let setting = SETTINGS.iter().find(|s| s.var == *var);
            assert!(setting.is_none_or(|s| s.shown != Shown::Plain), "{var} is shown in clear");
        }
    }

    /// Every flag that a variable sets is a key of the file with the flag's default, so the file can say
    /// everything the environment can (the benchmarks' flags aside).
    #[test]
    fn every_flag_with_a_variable_is_a_key_with_its_default() {
        fn walk(command: &clap::Command, found: &mut Vec<(String, String, Option<String>)>) {
            if command.get_name() == "bench" {
                return;
            }
            for arg in command.get_arguments() {
                let Some(var) = arg.get_env().and_then(|v| v.to_str()) else { continue };
                let default = arg.get_default_values().first().map(|v| v.to_string_lossy().into_owned());
                found.push((command.get_name().to_string(), var.to_string(), default));
            }
            for sub in command.get_subcommands() {
                walk(sub, found);
            }
        }
        let mut found = Vec::new();
        walk(&<crate::Cli as clap::CommandFactory>::command(), &mut found);
        assert!(found.len() > 30, "{found:?}");
        for (command, var, default) in found {
            if var == CONFIG_VAR {
                continue;
            }
            let setting = SETTINGS.iter().find(|s| s.var == var);
            let setting = setting.unwrap_or_else(|| panic!("{var} (nova {command}) is no key of the file"));
            if let Some(default) = default {
                assert!(matches!(setting.default, Value(v) if v == default), "{var} (nova {command}): {default:?}");
            }
        }
    }

    /// The defaults of the settings without a flag are the libraries' own.
    #[test]
    fn the_defaults_shown_are_the_libraries() {
        let default = |key: &str| match SETTINGS.iter().find(|s| s.key == key).map(|s| s.default) {
            Some(Value(v)) => v,
            other => panic!("{key}: {other:?}"),
        };
        let engines = engines(&|_| None, None);
        assert_eq!(engines, EngineConfig::default());
        assert_eq!(default("tesseract"), engines.ocr.binary.to_str().unwrap_or_default());
        assert_eq!(default("ocr_languages"), engines.ocr.languages);
        assert_eq!(default("ocr_timeout_secs"), engines.ocr.timeout.as_secs().to_string());
        assert_eq!(default("pdftoppm"), engines.renderer.binary.to_str().unwrap_or_default());
        assert_eq!(default("render_timeout_secs"), engines.renderer.timeout.as_secs().to_string());
        let llm = nova_llm::LlmConfig::new("http://x", "m");
        assert_eq!(default("llm_timeout_secs"), llm.request_timeout.as_secs().to_string());
        assert_eq!(default("llm_max_retries"), llm.max_retries.to_string());
        assert_eq!(default("llm_max_repair_rounds"), llm.max_repair_rounds.to_string());
        assert_eq!(default("llm_program_timeout_ms"), llm.program_timeout.as_millis().to_string());
        assert_eq!(default("llm_task_timeout_secs"), llm.task_timeout.as_secs().to_string());
        assert_eq!(default("llm_auto_threshold"), llm.auto_threshold.to_string());
        assert_eq!(default("llm_context_tokens"), llm.context_tokens.to_string());
        // Bad or empty values are the defaults, and a time limit is at least a second, as before.
        let odd = |name: &str| match name {
            "NOVA_OCR_TIMEOUT_SECS" => Some("0".to_string()),
            "NOVA_RENDER_TIMEOUT_SECS" => Some("soon".to_string()),
            "NOVA_TESSERACT" => Some(" ".to_string()),
            _ => None,
        };
        let engines = super::engines(&odd, Some("/opt/bin".into()));
        assert_eq!(engines.ocr.timeout, Duration::from_secs(1));
        assert_eq!(engines.renderer.timeout, nova_app::engines::pdftoppm::DEFAULT_TIMEOUT);
        assert_eq!(engines.ocr.binary, PathBuf::from("tesseract"));
        assert_eq!(engines.renderer.search_path, Some("/opt/bin".into()));
    }

    /// Only the binary reads the environment: a library crate's code (its tests and `testing` modules aside)
    /// takes its configuration as values.
    #[test]
    fn library_crates_read_no_environment() {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut offenders = Vec::new();
        let mut checked = 0;
        for entry in std::fs::read_dir(&crates).expect("the crates folder") {
            let dir = entry.expect("an entry").path();
            if dir.file_name().is_some_and(|n| n == "nova-cli") || !dir.join("src").is_dir() {
                continue;
            }
            let mut stack = vec![dir.join("src")];
            while let Some(path) = stack.pop() {
                if path.is_dir() {
                    stack.extend(std::fs::read_dir(&path).expect("a folder").map(|e| e.expect("an entry").path()));
                    continue;
                }
                let testing = path.file_stem().is_some_and(|s| s == "testing")
                    || path.components().any(|c| c.as_os_str() == "testing");
                if path.extension().is_none_or(|e| e != "rs") || testing {
                    continue;
                }
                checked += 1;
                let text = std::fs::read_to_string(&path).expect("a source file");
                // The code before the file's unit tests.
                let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
                for needle in ["std::env::var", "env::var_os", "env::var(", "env::vars", "from_env()"] {
                    if code.contains(needle) {
                        offenders.push(format!("{}: {needle}", path.display()));
                    }
                }
            }
        }
        assert!(checked > 50, "only {checked} files found under {}", crates.display());
        assert!(offenders.is_empty(), "library crates read the environment: {offenders:#?}");
    }
}
