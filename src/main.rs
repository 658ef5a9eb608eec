//! The `vigil` command line: `run` (the operator), `scan` (offline detection), `check` (validate rules) and `crd`.
//!
//! Exit codes, shared by every subcommand: 0 success (whether or not anything matched), 1 an invalid rule or
//! query, 2 a usage error, 3 unreadable input.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use vigil::crd::{DetectionRule, Language, Severity};
use vigil::engine::{self, Input};
use vigil::eql::CompiledQuery;
use vigil::rules::{self, RuleFileError};
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

fn run(_args: RunArgs) -> Result<(), Failure> {
    Err(Failure::Usage(anyhow::anyhow!(
        "the operator loop is not part of this build yet (tracked in issue #5); use `vigil scan`"
    )))
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
