//! Server configuration: command-line flags over environment variables (both through clap) over
//! an optional TOML file over defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gridcase_core::calendar::Calendar;
use gridcase_core::policy::PolicySet;
use gridcase_core::rules::{RulesText, SourcedRules};
use gridcase_core::store::projection::Rules;
use serde::Deserialize;

use crate::blobs::{
    BlobLimits, BlobStore, Blobs, LocalBlobs, S3Blobs, S3Settings, spawn_collector,
};
use crate::db::Location;
use crate::http::quota::QuotaLimits;
use crate::http::serve::serve_until;
use crate::http::{
    AppState, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_HEAVY_REQUESTS,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_REQUEST_TIMEOUT, app, system_clock,
};
use crate::leader::spawn_deadline_leader;
use crate::store::{DEFAULT_POOL_SIZE, Store};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA: &str = "./gridcase-data";
pub const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(60);

/// The optional TOML file (`--config`, `GRIDCASE_CONFIG`). Every key is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data: Option<PathBuf>,
    /// A `postgres://…` URL: the database, instead of SQLite in `data`.
    pub database: Option<String>,
    /// Database connections per server process.
    pub pool_size: Option<u32>,
    /// e.g. "60s", "5m".
    pub check_every: Option<String>,
    /// A deadline policy TOML file (default: the shipped policy).
    pub policy: Option<PathBuf>,
    /// A holiday calendar file (default: the embedded calendar).
    pub calendar: Option<PathBuf>,
    pub max_body_bytes: Option<usize>,
    /// e.g. "120s".
    pub request_timeout: Option<String>,
    /// Time to receive a request's line and headers, e.g. "15s".
    pub header_timeout: Option<String>,
    /// Time to receive a sync request's body once its headers are in, e.g. "90s".
    pub body_timeout: Option<String>,
    /// Heavy sync requests (bodies over 1 MiB) decoded and judged at once.
    pub heavy_requests: Option<usize>,
    /// Per-device quotas: a `[quota]` table.
    pub quota: Option<QuotaFile>,
    /// Mark the console's session cookie `Secure` (when the server is reached over TLS).
    pub secure_cookie: Option<bool>,
    /// Attachment bytes: a `[blobs]` table.
    pub blobs: Option<BlobsFile>,
}

/// `[blobs]` in the config file (`crate::blobs`). Every key is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BlobsFile {
    /// `"local"` (the default) or `"s3"`.
    pub store: Option<BlobStoreKind>,
    /// Where blobs are kept (default: `blobs` in the data directory), for `store = "local"`.
    pub dir: Option<PathBuf>,
    /// The bucket, for `store = "s3"` (required there, like the keys below it only there).
    pub bucket: Option<String>,
    /// An S3-compatible server's URL (default: AWS); `http://` only on loopback.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Key prefix inside the bucket.
    pub prefix: Option<String>,
    /// Credentials; better left to `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` in the
    /// environment than written in the file.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub max_file_bytes: Option<u64>,
    pub device_quota_bytes: Option<u64>,
    pub max_chunk_bytes: Option<u64>,
    /// How long a blob no case references is kept, e.g. "7d".
    pub grace: Option<String>,
}

/// `[blobs] store`: where attachment bytes live.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BlobStoreKind {
    #[default]
    Local,
    S3,
}

/// Where attachment bytes are kept and what devices may store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlobSettings {
    /// `None`: this server keeps no blobs (the blob routes answer 503).
    pub store: Option<BlobBackend>,
    pub limits: BlobLimits,
}

/// The store a server opens for blobs.
#[derive(Debug, Clone, PartialEq)]
pub enum BlobBackend {
    /// A directory of this machine: one server instance.
    Local(PathBuf),
    /// An S3-compatible bucket: any number of instances.
    S3(S3Settings),
}

impl BlobBackend {
    fn open(&self) -> Result<Arc<dyn BlobStore>, BoxError> {
        Ok(match self {
            BlobBackend::Local(dir) => Arc::new(
                LocalBlobs::open(dir).map_err(|e| format!("blobs in {}: {e}", dir.display()))?,
            ),
            BlobBackend::S3(s3) => Arc::new(
                S3Blobs::open(s3).map_err(|e| format!("blobs in bucket {}: {e}", s3.bucket))?,
            ),
        })
    }
}

/// `[quota]` in the config file: per device and period. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QuotaFile {
    /// e.g. "60s".
    pub period: Option<String>,
    pub requests: Option<u64>,
    pub bytes: Option<u64>,
    pub changes: Option<u64>,
}

/// What one device, connection or request may cost (issue 8.4).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub heavy_requests: usize,
    pub quota: QuotaLimits,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            heavy_requests: DEFAULT_HEAVY_REQUESTS,
            quota: QuotaLimits::default(),
        }
    }
}

/// What the command line (or the environment) gave, before the file and defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data: Option<PathBuf>,
    pub database: Option<String>,
    pub check_every: Option<String>,
    pub policy: Option<PathBuf>,
    pub calendar: Option<PathBuf>,
}

/// The resolved configuration of `serve`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Where the database lives: SQLite in the data directory, or PostgreSQL.
    pub database: Location,
    pub pool_size: u32,
    pub check_every: Duration,
    pub policy: Option<PathBuf>,
    pub calendar: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub limits: RequestLimits,
    /// The console's session cookie is `Secure`.
    pub secure_cookie: bool,
    pub blobs: BlobSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Parses "250ms", "60s", "5m", "1h", "1d" or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, ConfigError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| ConfigError::Invalid(format!("`{text}` is not a duration like 60s or 5m")))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => {
            return Err(ConfigError::Invalid(format!(
                "`{text}` is not a duration like 60s or 5m"
            )));
        }
    };
    if d.is_zero() {
        return Err(ConfigError::Invalid("a duration must be positive".into()));
    }
    Ok(d)
}

pub fn read_file_config(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Flags and environment (already merged by clap) over the file over the defaults.
pub fn resolve(overrides: Overrides, file: FileConfig) -> Result<ServeConfig, ConfigError> {
    let limits = resolve_limits(&file)?;
    let listen = overrides
        .listen
        .or(file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| ConfigError::Invalid(format!("listen address `{listen}` is not host:port")))?;
    let check_every = match overrides.check_every.or(file.check_every) {
        Some(text) => parse_duration(&text)?,
        None => DEFAULT_CHECK_EVERY,
    };
    let request_timeout = match file.request_timeout {
        Some(text) => parse_duration(&text)?,
        None => DEFAULT_REQUEST_TIMEOUT,
    };
    let data = overrides
        .data
        .or(file.data)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA));
    let blobs = resolve_blobs(file.blobs.clone().unwrap_or_default(), &data)?;
    let database = Location::from_args(data, overrides.database.or(file.database).as_deref())
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let pool_size = file.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
    if !(2..=1000).contains(&pool_size) {
        return Err(ConfigError::Invalid(
            "pool_size must be from 2 to 1000".into(),
        ));
    }
    Ok(ServeConfig {
        limits,
        listen,
        database,
        pool_size,
        check_every,
        policy: overrides.policy.or(file.policy),
        calendar: overrides.calendar.or(file.calendar),
        max_body_bytes: file.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        request_timeout,
        secure_cookie: file.secure_cookie.unwrap_or(false),
        blobs,
    })
}

fn resolve_blobs(file: BlobsFile, data: &Path) -> Result<BlobSettings, ConfigError> {
    let defaults = BlobLimits::default();
    let limits = BlobLimits {
        max_file_bytes: file.max_file_bytes.unwrap_or(defaults.max_file_bytes),
        device_quota_bytes: file
            .device_quota_bytes
            .unwrap_or(defaults.device_quota_bytes),
        max_chunk_bytes: file.max_chunk_bytes.unwrap_or(defaults.max_chunk_bytes),
        grace_ms: match &file.grace {
            Some(text) => parse_duration(text)?.as_millis() as i64,
            None => defaults.grace_ms,
        },
    };
    if limits.max_file_bytes == 0 || limits.max_chunk_bytes == 0 {
        return Err(ConfigError::Invalid(
            "blobs max_file_bytes and max_chunk_bytes must be positive".into(),
        ));
    }
    Ok(BlobSettings {
        store: Some(resolve_blob_backend(file, data)?),
        limits,
    })
}

/// The store `[blobs]` names, with only the keys that store uses.
fn resolve_blob_backend(file: BlobsFile, data: &Path) -> Result<BlobBackend, ConfigError> {
    let s3_keys = [&file.bucket, &file.endpoint, &file.region, &file.prefix]
        .iter()
        .any(|k| k.is_some())
        || file.access_key_id.is_some()
        || file.secret_access_key.is_some();
    match file.store.unwrap_or_default() {
        BlobStoreKind::Local if s3_keys => Err(ConfigError::Invalid(
            "blobs bucket, endpoint, region, prefix and keys need store = \"s3\"".into(),
        )),
        BlobStoreKind::Local => Ok(BlobBackend::Local(
            file.dir.unwrap_or_else(|| data.join("blobs")),
        )),
        BlobStoreKind::S3 if file.dir.is_some() => Err(ConfigError::Invalid(
            "blobs dir is for store = \"local\"".into(),
        )),
        BlobStoreKind::S3 => {
            let s3 = S3Settings {
                bucket: file.bucket.unwrap_or_default(),
                endpoint: file.endpoint,
                region: file.region,
                prefix: file.prefix.unwrap_or_default(),
                access_key_id: file.access_key_id,
                secret_access_key: file.secret_access_key,
            };
            s3.check().map_err(ConfigError::Invalid)?;
            Ok(BlobBackend::S3(s3))
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn resolve_limits(file: &FileConfig) -> Result<RequestLimits, ConfigError> {
    let duration = |text: &Option<String>, default: Duration| match text {
        Some(text) => parse_duration(text),
        None => Ok(default),
    };
    let quota_file = file.quota.clone().unwrap_or_default();
    let defaults = QuotaLimits::default();
    let period = duration(
        &quota_file.period,
        Duration::from_millis(defaults.period_ms),
    )?;
    let quota = QuotaLimits {
        period_ms: period.as_millis() as u64,
        requests: quota_file.requests.unwrap_or(defaults.requests),
        bytes: quota_file.bytes.unwrap_or(defaults.bytes),
        changes: quota_file.changes.unwrap_or(defaults.changes),
    };
    if quota.requests == 0 || quota.bytes == 0 || quota.changes == 0 {
        return Err(ConfigError::Invalid(
            "quota requests, bytes and changes must be positive".into(),
        ));
    }
    let heavy_requests = file.heavy_requests.unwrap_or(DEFAULT_HEAVY_REQUESTS);
    if !(1..=1000).contains(&heavy_requests) {
        return Err(ConfigError::Invalid(
            "heavy_requests must be from 1 to 1000".into(),
        ));
    }
    Ok(RequestLimits {
        header_timeout: duration(&file.header_timeout, DEFAULT_HEADER_TIMEOUT)?,
        body_timeout: duration(&file.body_timeout, DEFAULT_BODY_TIMEOUT)?,
        heavy_requests,
        quota,
    })
}

/// Opens the store at `database` with the policy and calendar files, if any.
pub fn open_store(
    database: &Location,
    pool_size: u32,
    policy: Option<&Path>,
    calendar: Option<&Path>,
) -> Result<Store, Box<dyn std::error::Error + Send + Sync>> {
    Ok(Store::connect(
        database,
        pool_size,
        read_rules(policy, calendar)?,
    )?)
}

/// The policy and calendar files (the shipped texts where none is given), parsed; errors name
/// the file and line.
fn read_rules(
    policy: Option<&Path>,
    calendar: Option<&Path>,
) -> Result<SourcedRules, Box<dyn std::error::Error + Send + Sync>> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let shipped = RulesText::shipped();
    let text = RulesText {
        policy_toml: policy.map(read).transpose()?.unwrap_or(shipped.policy_toml),
        calendar: calendar.map(read).transpose()?.unwrap_or(shipped.calendar),
    };
    let named = |path: Option<&Path>, e: &dyn std::fmt::Display| match path {
        Some(path) => format!("{}: {e}", path.display()),
        None => format!("shipped rules: {e}"),
    };
    let rules = Rules {
        policy: PolicySet::from_toml(&text.policy_toml).map_err(|e| named(policy, &e))?,
        calendar: Calendar::parse(&text.calendar).map_err(|e| named(calendar, &e))?,
    };
    Ok(SourcedRules { text, rules })
}

/// Runs the server until Ctrl-C or SIGTERM: the HTTP API and the periodic deadline check.
pub async fn serve(config: ServeConfig) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Opening connects and migrates: blocking work, off the async threads.
    let open = config.clone();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || -> Result<Store, BoxError> {
            let mut store = open_store(
                &open.database,
                open.pool_size,
                open.policy.as_deref(),
                open.calendar.as_deref(),
            )?;
            let version = store.publish_rules()?;
            tracing::info!(version, "deadline rules published to phones");
            Ok(store)
        })
        .await??,
    );
    let limits = &config.limits;
    let mut state = AppState::new(store.clone())
        .with_quotas(limits.quota)
        .with_heavy_requests(limits.heavy_requests);
    state.max_body_bytes = config.max_body_bytes;
    state.request_timeout = config.request_timeout;
    state.body_timeout = limits.body_timeout;
    state.secure_cookie = config.secure_cookie;
    let collector = match &config.blobs.store {
        Some(backend) => {
            let blobs = Blobs::new(backend.open()?, config.blobs.limits);
            state = state.with_blobs(blobs.clone());
            let every = crate::blobs::COLLECT_EVERY;
            Some(spawn_collector(store.clone(), blobs, every, system_clock()))
        }
        None => None,
    };
    let checker = spawn_deadline_leader(
        store,
        config.check_every,
        system_clock(),
        state.metrics.clone(),
    );
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(
        listen = %listener.local_addr()?,
        database = %config.database.describe(),
        "serving"
    );
    let drain = config.request_timeout;
    let header_timeout = limits.header_timeout;
    serve_until(
        listener,
        app(state),
        header_timeout,
        shutdown_signal(),
        drain,
    )
    .await?;
    checker.abort();
    if let Some(collector) = collector {
        collector.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn flags_beat_file_beats_defaults() {
        let file: FileConfig = toml::from_str(
            "listen = \"0.0.0.0:9000\"\ndata = \"/srv/gc\"\ncheck_every = \"5m\"\nmax_body_bytes = 1024",
        )
        .unwrap();
        let c = resolve(Overrides::default(), file.clone()).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.database, Location::Sqlite("/srv/gc".into()));
        assert_eq!(c.check_every, Duration::from_secs(300));
        assert_eq!(c.max_body_bytes, 1024);
        let c = resolve(
            Overrides {
                listen: Some("127.0.0.1:1".into()),
                check_every: Some("10s".into()),
                ..Default::default()
            },
            file,
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(c.check_every, Duration::from_secs(10));
        let d = resolve(Overrides::default(), FileConfig::default()).unwrap();
        assert_eq!(d.limits, RequestLimits::default());
        assert_eq!(d.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(d.database, Location::Sqlite(DEFAULT_DATA.into()));
        assert_eq!(d.pool_size, DEFAULT_POOL_SIZE);
        // The database: a flag beats the file; only PostgreSQL URLs.
        let file: FileConfig =
            toml::from_str("database = \"postgres://gc@db/gc\"\npool_size = 8").unwrap();
        let c = resolve(Overrides::default(), file.clone()).unwrap();
        assert_eq!(c.database, Location::Postgres("postgres://gc@db/gc".into()));
        assert_eq!(c.pool_size, 8);
        let c = resolve(
            Overrides {
                database: Some("postgresql://other/x".into()),
                ..Default::default()
            },
            file,
        )
        .unwrap();
        assert_eq!(
            c.database,
            Location::Postgres("postgresql://other/x".into())
        );
        let bad: FileConfig = toml::from_str("database = \"/var/lib/gc\"").unwrap();
        assert!(resolve(Overrides::default(), bad).is_err());
        let bad: FileConfig = toml::from_str("pool_size = 1").unwrap();
        assert!(resolve(Overrides::default(), bad).is_err());
        assert_eq!(d.check_every, DEFAULT_CHECK_EVERY);
        assert!(toml::from_str::<FileConfig>("typo = 1").is_err());
    }

    #[test]
    fn quotas_and_timeouts_come_from_the_file_with_sane_defaults() {
        let file: FileConfig = toml::from_str(
            "header_timeout = \"5s\"\nbody_timeout = \"30s\"\nheavy_requests = 3\n\
             [quota]\nperiod = \"10m\"\nrequests = 50",
        )
        .unwrap();
        let limits = resolve(Overrides::default(), file).unwrap().limits;
        assert_eq!(limits.header_timeout, Duration::from_secs(5));
        assert_eq!(limits.body_timeout, Duration::from_secs(30));
        assert_eq!(limits.heavy_requests, 3);
        assert_eq!(limits.quota.period_ms, 600_000);
        assert_eq!(limits.quota.requests, 50);
        assert_eq!(limits.quota.changes, QuotaLimits::default().changes);
        for bad in [
            "[quota]\nrequests = 0",
            "[quota]\nperiod = \"0s\"",
            "heavy_requests = 0",
            "header_timeout = \"soon\"",
        ] {
            let file: FileConfig = toml::from_str(bad).unwrap();
            assert!(resolve(Overrides::default(), file).is_err(), "{bad}");
        }
        assert!(toml::from_str::<FileConfig>("[quota]\nrequest = 5").is_err());
    }

    #[test]
    fn blob_limits_come_from_the_file_and_blobs_live_in_the_data_directory() {
        let d = resolve(Overrides::default(), FileConfig::default()).unwrap();
        assert_eq!(d.blobs.limits, BlobLimits::default());
        let local = |dir: PathBuf| Some(BlobBackend::Local(dir));
        assert_eq!(
            d.blobs.store,
            local(PathBuf::from(DEFAULT_DATA).join("blobs"))
        );
        let file: FileConfig = toml::from_str(
            "data = \"/srv/gc\"\n[blobs]\nmax_file_bytes = 1000\ndevice_quota_bytes = 5000\n\
             max_chunk_bytes = 100\ngrace = \"1d\"",
        )
        .unwrap();
        let b = resolve(Overrides::default(), file).unwrap().blobs;
        assert_eq!(b.store, local("/srv/gc/blobs".into()));
        assert_eq!(
            b.limits,
            BlobLimits {
                max_file_bytes: 1000,
                device_quota_bytes: 5000,
                max_chunk_bytes: 100,
                grace_ms: 86_400_000,
            }
        );
        let file: FileConfig = toml::from_str("[blobs]\ndir = \"/mnt/blobs\"").unwrap();
        let b = resolve(Overrides::default(), file).unwrap().blobs;
        assert_eq!(b.store, local("/mnt/blobs".into()));
        for bad in ["[blobs]\nmax_chunk_bytes = 0", "[blobs]\ngrace = \"soon\""] {
            let file: FileConfig = toml::from_str(bad).unwrap();
            assert!(resolve(Overrides::default(), file).is_err(), "{bad}");
        }
        assert!(toml::from_str::<FileConfig>("[blobs]\nquota = 5").is_err());
    }

    #[test]
    fn an_s3_store_takes_its_bucket_and_refuses_clear_text_off_loopback() {
        let file: FileConfig = toml::from_str(
            "[blobs]\nstore = \"s3\"\nbucket = \"gc\"\nendpoint = \"http://127.0.0.1:9000\"\n\
             region = \"cn-east-1\"\nprefix = \"county/\"",
        )
        .unwrap();
        let b = resolve(Overrides::default(), file).unwrap().blobs;
        let Some(BlobBackend::S3(s3)) = b.store else {
            panic!("{:?}", b.store);
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str(), s3.access_key_id),
            ("gc", "county/", None)
        );
        for ok in [
            "https://oss.example.cn",
            "http://localhost:9000",
            "http://[::1]:9000/",
        ] {
            let text = format!("[blobs]\nstore = \"s3\"\nbucket = \"gc\"\nendpoint = \"{ok}\"");
            let file: FileConfig = toml::from_str(&text).unwrap();
            assert!(resolve(Overrides::default(), file).is_ok(), "{ok}");
        }
        for bad in [
            "store = \"s3\"",
            "store = \"s3\"\nbucket = \"gc\"\nendpoint = \"http://oss.example.cn\"",
            "store = \"s3\"\nbucket = \"gc\"\nendpoint = \"http://127.0.0.1.example.cn\"",
            "store = \"s3\"\nbucket = \"gc\"\nendpoint = \"http://u@127.0.0.1/\"",
            "store = \"s3\"\nbucket = \"gc\"\nendpoint = \"ftp://127.0.0.1\"",
            "store = \"s3\"\nbucket = \"gc\"\ndir = \"/mnt\"",
            "bucket = \"gc\"",
        ] {
            let file: FileConfig = toml::from_str(&format!("[blobs]\n{bad}")).unwrap();
            assert!(resolve(Overrides::default(), file).is_err(), "{bad}");
        }
        assert!(toml::from_str::<FileConfig>("[blobs]\nstore = \"ftp\"").is_err());
    }

    #[test]
    fn a_typo_in_a_policy_or_calendar_file_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Location::Sqlite(dir.path().join("data"));
        let policy = dir.path().join("policy.toml");
        // Line 3 misspells `working_day_close`.
        std::fs::write(
            &policy,
            "due_soon_fraction = 0.8\npause_during_extension = false\nworking_day_clos = \"17:30\"\n",
        )
        .unwrap();
        let err = open_store(&sqlite, 4, Some(&policy), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("policy.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        // A value out of range, on line 2.
        std::fs::write(&policy, "# comment\ndue_soon_fraction = 7\n").unwrap();
        let err = open_store(&sqlite, 4, Some(&policy), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("due_soon_fraction"),
            "{err}"
        );
        // Not TOML at all.
        std::fs::write(&policy, [0xff, 0xfe, 0x00]).unwrap();
        assert!(open_store(&sqlite, 4, Some(&policy), None).is_err());
        // A missing file names the path.
        let missing = dir.path().join("nope.toml");
        let err = open_store(&sqlite, 4, Some(&missing), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.toml"), "{err}");

        let calendar = dir.path().join("holidays.txt");
        std::fs::write(
            &calendar,
            "source test\nyear 2025\n2025-01-01 off 元旦\n2025-13-01 off typo\n",
        )
        .unwrap();
        let err = open_store(&sqlite, 4, None, Some(&calendar))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("holidays.txt") && err.contains("line 4"),
            "{err}"
        );
        std::fs::write(&calendar, "year 2025\n2025-01-01 of 元旦\n").unwrap();
        let err = open_store(&sqlite, 4, None, Some(&calendar))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        // A config file with an unknown key names it.
        let config = dir.path().join("server.toml");
        std::fs::write(&config, "listen = \"127.0.0.1:1\"\nmax_body = 5\n").unwrap();
        let err = read_file_config(&config).unwrap_err().to_string();
        assert!(
            err.contains("server.toml") && err.contains("max_body"),
            "{err}"
        );
        // Nothing half-opened: the good files still work.
        assert!(open_store(&sqlite, 4, None, None).is_ok());
    }
}
