//! The `vigil` command line: `run` (the operator), `scan` (offline detection), `check` (validate rules) and `crd`.
//!
//! Exit codes, shared by every subcommand: 0 success (whether or not anything matched), 1 an invalid rule or
//! query, 2 a usage error, 3 unreadable input.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;
use vigil::audit::counters::IngestCounters;
use vigil::audit::follow::{self, FollowConfig, FollowError};
use vigil::audit::users::IgnoredUsers;
use vigil::audit::webhook::{Webhook, WebhookConfig};
use vigil::controller::{self, Retention};
use vigil::crd::{DetectionRule, Language, Severity};
use vigil::engine::{self, Input};
use vigil::eql::CompiledQuery;
use vigil::operator::{self, RunConfig};
use vigil::rules::{self, RuleFileError};
use vigil::scan::follow::FollowScanError;
use vigil::scan::{self, RuleInfo, ScanConfig, ScanError};

#[derive(Parser, Debug)]
#[command(
    name = "vigil",
    version,
    about = "Elastic-style threat detection on the Kubernetes API server's audit log",
    long_about = "vigil evaluates detection rules (Elastic EQL) against every Kubernetes audit event and writes each \
                  match as a DetectionAlert and a Kubernetes Event.\n\nExit codes: 0 success (whether or not anything \
                  matched), 1 an invalid rule or query, 2 a usage error, 3 unreadable input."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the operator: watch DetectionRules, follow the audit log, write DetectionAlerts and Events.
    Run(Box<RunArgs>),
    /// Detect offline: evaluate rules over audit log files (or stdin) and print the matches.
    Scan(ScanArgs),
    /// Validate rules: DetectionRule YAML, bare .eql files, or Elastic detection-rules TOML.
    Check(CheckArgs),
    /// Print the CustomResourceDefinitions (DetectionRule, DetectionAlert) as YAML.
    Crd,
}

/// Every flag can also be set through the environment variable `VIGIL_<FLAG>`.
#[derive(Args, Debug)]
struct RunArgs {
    /// Audit log to follow: a file, or a directory holding the log and its rotated backups.
    #[arg(long, env = "VIGIL_AUDIT_LOG", value_name = "PATH")]
    audit_log: Option<PathBuf>,
    /// File names to follow when --audit-log is a directory.
    #[arg(long, env = "VIGIL_AUDIT_LOG_GLOB", default_value = "audit*.log*")]
    audit_log_glob: String,
    /// Where to start when there is no checkpoint.
    #[arg(long, env = "VIGIL_START_AT", value_enum, default_value_t = StartAt::End)]
    start_at: StartAt,
    /// File recording how far the audit log has been processed, so a restart resumes there.
    #[arg(long, env = "VIGIL_CHECKPOINT", value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Longer audit lines are skipped and counted.
    #[arg(long, env = "VIGIL_MAX_LINE_BYTES", default_value_t = 8 * 1024 * 1024)]
    max_line_bytes: u64,
    /// Audit events of this user are ignored (repeatable), so vigil never feeds on its own writes.
    #[arg(long, env = "VIGIL_IGNORE_USER", value_delimiter = ',')]
    ignore_user: Vec<String>,
    /// Serve the audit webhook on this address instead of (or besides) following files.
    #[arg(long, env = "VIGIL_WEBHOOK_ADDR", value_name = "ADDR")]
    webhook_addr: Option<String>,
    #[arg(long, env = "VIGIL_WEBHOOK_TLS_CERT", value_name = "FILE")]
    webhook_tls_cert: Option<PathBuf>,
    #[arg(long, env = "VIGIL_WEBHOOK_TLS_KEY", value_name = "FILE")]
    webhook_tls_key: Option<PathBuf>,
    /// CA that signs the API server's client certificate for the webhook.
    #[arg(long, env = "VIGIL_WEBHOOK_CLIENT_CA", value_name = "FILE")]
    webhook_client_ca: Option<PathBuf>,
    /// File holding the static bearer token the API server's webhook presents.
    #[arg(long, env = "VIGIL_WEBHOOK_TOKEN_FILE", value_name = "FILE")]
    webhook_token_file: Option<PathBuf>,
    /// Larger webhook bodies are refused (413); the API server batches up to 400 events per request.
    #[arg(long, env = "VIGIL_WEBHOOK_BODY_LIMIT", default_value_t = 32 * 1024 * 1024)]
    webhook_body_limit: usize,
    /// Address serving /metrics, /healthz and /readyz.
    #[arg(long, env = "VIGIL_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    metrics_addr: String,
    /// Alert writes per second across all rules; beyond it matches are folded into overflow alerts.
    #[arg(long, env = "VIGIL_WRITE_BUDGET", default_value_t = 20)]
    write_budget: u32,
    /// Keep at most this many DetectionAlerts (oldest removed first).
    #[arg(long, env = "VIGIL_ALERT_MAX_COUNT", default_value_t = 10_000)]
    alert_max_count: u32,
    /// Remove DetectionAlerts older than this (e.g. 30d).
    #[arg(long, env = "VIGIL_ALERT_MAX_AGE", default_value = "30d")]
    alert_max_age: String,
    #[arg(long, env = "VIGIL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter in RUST_LOG syntax (also VIGIL_LOG).
    #[arg(long, env = "VIGIL_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// This vigil's name in the status Lease and in Events (the chart passes the node name).
    #[arg(long, env = "VIGIL_NODE_NAME", default_value = "vigil")]
    node_name: String,
    /// Namespace of the Lease that elects the one pod writing rule status.
    #[arg(long, env = "VIGIL_NAMESPACE", default_value = "default")]
    namespace: String,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum StartAt {
    Beginning,
    End,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
struct ScanArgs {
    /// DetectionRule YAML file or directory of them (repeatable); the built-in default rule when none is given.
    #[arg(long, value_name = "FILE_OR_DIR")]
    rules: Vec<PathBuf>,
    /// Evaluate this EQL query instead of rules.
    #[arg(long, value_name = "EQL", conflicts_with = "rules")]
    query: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
    /// What the input lines are: raw audit.k8s.io events, or documents already normalised to ECS.
    #[arg(long, value_enum, default_value_t = InputFormat::Audit)]
    input: InputFormat,
    /// Longer lines are skipped and counted.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    max_line_bytes: usize,
    /// Keep following the audit log as it is written and rotated (like `tail -F`), as the operator does.
    #[arg(long)]
    follow: bool,
    /// With --follow: the audit log, a file or a directory of the log and its backups (or give one FILE).
    #[arg(long, value_name = "PATH", requires = "follow")]
    audit_log: Option<PathBuf>,
    /// With --follow: file names to follow when --audit-log is a directory.
    #[arg(long, default_value = "audit*.log*", requires = "follow")]
    audit_log_glob: String,
    /// With --follow: where to start when there is no checkpoint.
    #[arg(long, value_enum, default_value_t = StartAt::End, requires = "follow")]
    start_at: StartAt,
    /// With --follow: file recording how far the log has been handled, so a restart resumes there.
    #[arg(long, value_name = "FILE", requires = "follow")]
    checkpoint: Option<PathBuf>,
    /// With --follow: audit events of this user are ignored (repeatable).
    #[arg(long, value_delimiter = ',', requires = "follow")]
    ignore_user: Vec<String>,
    /// Audit log files (one Event or EventList per line); `-` or none reads stdin.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum OutputFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum InputFormat {
    Audit,
    Ecs,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// Rule files: DetectionRule YAML (multi-document), .eql, or Elastic detection-rules .toml.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Why a command failed, and so which exit code it ends with.
enum Failure {
    InvalidRule(anyhow::Error),
    Usage(anyhow::Error),
    UnreadableInput(anyhow::Error),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::InvalidRule(_) => 1,
            Failure::Usage(_) => 2,
            Failure::UnreadableInput(_) => 3,
        }
    }

    fn error(&self) -> &anyhow::Error {
        match self {
            Failure::InvalidRule(error)
            | Failure::Usage(error)
            | Failure::UnreadableInput(error) => error,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Crd => print_crds(),
        Command::Run(args) => run(*args),
        Command::Scan(args) => scan(args),
        Command::Check(args) => check(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("vigil: {:#}", failure.error());
            ExitCode::from(failure.exit_code())
        }
    }
}

fn print_crds() -> Result<(), Failure> {
    let yaml = vigil::crd::crds_yaml().map_err(|e| Failure::Usage(e.into()))?;
    std::io::stdout()
        .write_all(yaml.as_bytes())
        .map_err(|e| Failure::UnreadableInput(e.into()))
}

fn run(args: RunArgs) -> Result<(), Failure> {
    init_tracing(args.log_format, &args.log_level).map_err(Failure::Usage)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(e.into()))?;
    runtime.block_on(run_operator(args))
}

/// Logs through tracing: `VIGIL_LOG` (RUST_LOG syntax) wins over `--log-level`.
fn init_tracing(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("VIGIL_LOG") {
        Ok(directives) => EnvFilter::try_new(directives)?,
        Err(_) => EnvFilter::try_new(level)?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))
}

async fn run_operator(args: RunArgs) -> Result<(), Failure> {
    let usage = |message: String| Failure::Usage(anyhow::anyhow!(message));
    if args.audit_log.is_none() && args.webhook_addr.is_none() {
        return Err(usage(
            "nothing to read: give --audit-log (VIGIL_AUDIT_LOG), --webhook-addr (VIGIL_WEBHOOK_ADDR), or both"
                .to_string(),
        ));
    }
    let metrics_addr: SocketAddr = args
        .metrics_addr
        .parse()
        .map_err(|e| usage(format!("--metrics-addr {}: {e}", args.metrics_addr)))?;
    let max_age = controller::parse_duration(&args.alert_max_age).ok_or_else(|| {
        usage(format!(
            "--alert-max-age {:?} is not a duration like 30d",
            args.alert_max_age
        ))
    })?;
    let client = kube::Client::try_default().await.map_err(|e| {
        usage(format!(
            "cannot configure a Kubernetes client (in-cluster or kubeconfig): {e}"
        ))
    })?;
    // vigil's own requests are audited too: never let a rule feed on them.
    let own_user = operator::own_username(&client).await;
    let ignored = IgnoredUsers::new(args.ignore_user.iter().cloned().chain(own_user));
    let config = RunConfig {
        metrics_addr,
        write_budget: args.write_budget,
        retention: Retention {
            max_count: args.alert_max_count as usize,
            max_age,
        },
        ignored: ignored.clone(),
        identity: args.node_name.clone(),
        namespace: args.namespace.clone(),
        status_interval: Duration::from_secs(2),
    };

    let counters = Arc::new(IngestCounters::default());
    let (batches, source) = operator::source_channel();
    let open = Arc::new(AtomicBool::new(false));
    let (stop_webhook, webhook_stopped) = tokio::sync::watch::channel(false);
    if let Some(addr) = &args.webhook_addr {
        let webhook_config = WebhookConfig {
            addr: addr
                .parse()
                .map_err(|e| usage(format!("--webhook-addr {addr}: {e}")))?,
            tls_cert: args
                .webhook_tls_cert
                .clone()
                .ok_or_else(|| usage("the webhook needs --webhook-tls-cert".to_string()))?,
            tls_key: args
                .webhook_tls_key
                .clone()
                .ok_or_else(|| usage("the webhook needs --webhook-tls-key".to_string()))?,
            client_ca: args.webhook_client_ca.clone(),
            token_file: args.webhook_token_file.clone(),
            body_limit: args.webhook_body_limit,
        };
        let (posted, received) = tokio::sync::mpsc::channel(operator::WEBHOOK_QUEUE);
        let webhook = Webhook::bind(webhook_config, posted, ignored, counters.clone())
            .await
            .map_err(|e| usage(e.to_string()))?;
        tokio::spawn(operator::forward_webhook_batches(received, batches.clone()));
        let mut stopped = webhook_stopped.clone();
        tokio::spawn(webhook.run(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }));
        open.store(
            args.audit_log.is_none(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    let mut reader = match args.audit_log.clone() {
        Some(path) => {
            let mut follow = FollowConfig::new(path);
            follow.glob = args.audit_log_glob.clone();
            follow.start_at = match args.start_at {
                StartAt::Beginning => vigil::audit::follow::StartAt::Beginning,
                StartAt::End => vigil::audit::follow::StartAt::End,
            };
            follow.checkpoint = args.checkpoint.clone();
            follow.max_line_bytes = usize::try_from(args.max_line_bytes).unwrap_or(usize::MAX);
            let reader =
                operator::spawn_file_source(follow, counters.clone(), batches, open.clone());
            Some(tokio::task::spawn_blocking(move || reader.join()))
        }
        None => {
            drop(batches);
            None
        }
    };
    let mut reader_result = None;
    let stop = async {
        match reader.as_mut() {
            Some(reader) => tokio::select! {
                () = shutdown_signal() => tracing::info!("signal received"),
                joined = reader => reader_result = Some(joined),
            },
            None => shutdown_signal().await,
        }
    };
    operator::run(client, config, source, open, counters, stop)
        .await
        .map_err(|e| Failure::Usage(e.into()))?;
    let _ = stop_webhook.send(true);
    let joined = match (reader_result, reader) {
        (Some(joined), _) => joined,
        (None, Some(reader)) => reader.await,
        (None, None) => return Ok(()),
    };
    match joined {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(error))) => Err(Failure::UnreadableInput(error.into())),
        _ => Err(Failure::UnreadableInput(anyhow::anyhow!(
            "the audit log reader stopped abnormally"
        ))),
    }
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// A rule compiled for scanning, or why it cannot be.
fn compile_rule(
    rule: &DetectionRule,
    input: Input,
) -> Result<(RuleInfo, CompiledQuery), anyhow::Error> {
    let name = rule.metadata.name.clone().unwrap_or_default();
    if rule.spec.language != Language::Eql {
        anyhow::bail!(
            "rule {name}: language `{}` is not supported yet (vigil evaluates eql)",
            rule.spec.language.as_str()
        );
    }
    let query = engine::compile_query(&rule.spec.query, input)
        .map_err(|e| anyhow::anyhow!("rule {name}: {e}"))?;
    let info = RuleInfo {
        name,
        display_name: rule.spec.display_name.clone(),
        severity: rule.spec.severity,
    };
    Ok((info, query))
}

fn scan(args: ScanArgs) -> Result<(), Failure> {
    let input = match args.input {
        InputFormat::Audit => Input::Audit,
        InputFormat::Ecs => Input::Ecs,
    };
    let rules = if let Some(query) = &args.query {
        let compiled = engine::compile_query(query, input)
            .map_err(|e| Failure::InvalidRule(anyhow::anyhow!("{e}")))?;
        let info = RuleInfo {
            name: "query".to_string(),
            display_name: None,
            severity: Severity::default(),
        };
        vec![(info, compiled)]
    } else {
        let definitions = if args.rules.is_empty() {
            vec![rules::default_rule().map_err(|e| Failure::InvalidRule(e.into()))?]
        } else {
            rules::load_rule_paths(&args.rules).map_err(rule_file_failure)?
        };
        let mut compiled = Vec::new();
        for rule in definitions.iter().filter(|rule| rule.spec.enabled) {
            compiled.push(compile_rule(rule, input).map_err(Failure::InvalidRule)?);
        }
        if compiled.is_empty() {
            return Err(Failure::InvalidRule(anyhow::anyhow!(
                "no enabled rule to scan with"
            )));
        }
        compiled
    };
    let config = ScanConfig {
        input,
        output: match args.output {
            OutputFormat::Text => scan::OutputFormat::Text,
            OutputFormat::Json => scan::OutputFormat::Json,
        },
        max_line_bytes: args.max_line_bytes,
    };
    if args.follow {
        return scan_follow(rules, &args, &config);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary = scan::scan(
        rules,
        &args.files,
        &config,
        &mut out,
        &mut std::io::stderr(),
    )
    .and_then(|summary| out.flush().map(|()| summary).map_err(ScanError::Output))
    .map_err(|e| match e {
        ScanError::Unreadable { .. } => Failure::UnreadableInput(e.into()),
        ScanError::Output(_) => Failure::Usage(e.into()),
    })?;
    eprintln!("vigil scan: {summary}");
    Ok(())
}

/// `vigil scan --follow`: runs until killed or an error.
fn scan_follow(
    rules: Vec<(RuleInfo, CompiledQuery)>,
    args: &ScanArgs,
    config: &ScanConfig,
) -> Result<(), Failure> {
    let path = match (&args.audit_log, args.files.as_slice()) {
        (Some(path), []) => path.clone(),
        (None, [path]) if path.as_os_str() != "-" => path.clone(),
        _ => {
            return Err(Failure::Usage(anyhow::anyhow!(
                "--follow follows one audit log: give --audit-log PATH or one FILE"
            )));
        }
    };
    let follow = FollowConfig {
        glob: args.audit_log_glob.clone(),
        start_at: match args.start_at {
            StartAt::Beginning => follow::StartAt::Beginning,
            StartAt::End => follow::StartAt::End,
        },
        checkpoint: args.checkpoint.clone(),
        max_line_bytes: args.max_line_bytes,
        ..FollowConfig::new(path)
    };
    let ignored = IgnoredUsers::new(args.ignore_user.iter().cloned());
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let error = match scan::follow::follow(
        rules,
        follow,
        &ignored,
        config,
        &mut out,
        &mut std::io::stderr(),
    ) {
        Ok(never) => match never {},
        Err(error) => error,
    };
    Err(match error {
        FollowScanError::NotStreamable { .. } => Failure::InvalidRule(error.into()),
        FollowScanError::Follow(FollowError::Io { .. }) => Failure::UnreadableInput(error.into()),
        FollowScanError::Scan(ScanError::Unreadable { .. }) => {
            Failure::UnreadableInput(error.into())
        }
        FollowScanError::Follow(FollowError::Checkpoint(_))
        | FollowScanError::Scan(ScanError::Output(_)) => Failure::Usage(error.into()),
    })
}

fn rule_file_failure(error: RuleFileError) -> Failure {
    if error.is_unreadable() {
        Failure::UnreadableInput(error.into())
    } else {
        Failure::InvalidRule(error.into())
    }
}

fn check(args: CheckArgs) -> Result<(), Failure> {
    let mut invalid = 0usize;
    let mut unreadable = 0usize;
    let mut valid = 0usize;
    for path in &args.files {
        let definitions = match rules::load_rule_file(path) {
            Ok(definitions) => definitions,
            Err(error) => {
                if error.is_unreadable() {
                    unreadable += 1;
                } else {
                    invalid += 1;
                }
                eprintln!("{error}");
                continue;
            }
        };
        for rule in &definitions {
            match compile_rule(rule, Input::Audit) {
                Ok(_) => {
                    valid += 1;
                    println!(
                        "ok: {}: {}",
                        path.display(),
                        rule.metadata.name.as_deref().unwrap_or_default()
                    );
                }
                Err(error) => {
                    invalid += 1;
                    eprintln!("{}: {error}", path.display());
                }
            }
        }
    }
    let total = valid + invalid + unreadable;
    if unreadable > 0 {
        return Err(Failure::UnreadableInput(anyhow::anyhow!(
            "{unreadable} of {total} rule files unreadable"
        )));
    }
    if invalid > 0 {
        return Err(Failure::InvalidRule(anyhow::anyhow!(
            "{invalid} of {total} rules invalid"
        )));
    }
    Ok(())
}
