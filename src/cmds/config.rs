//! `tandem config export|import|versions|rollback|push`: the parameter file
//! from the command line, against a running Tandem (`--server URL` with an
//! API token, over `/api/v1/config`) or a configuration file and its store
//! (`--config FILE`, no NVR running).
//!
//! Owns argument handling and printing only: a running NVR applies through
//! its API (`parfile::apply`), and `--config` never writes a secret in clear
//! to a file it did not already hold. Exit status 2 means the configuration
//! has errors (all printed) and nothing was applied.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tandem::parfile;

/// Configuration errors: nothing applied.
const CONFIG_ERRORS: u8 = 2;
/// An NVR answers a configuration request within this long.
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where the configuration is: a running Tandem or a configuration file.
#[derive(clap::Args, Clone)]
pub struct Target {
    /// A running Tandem, e.g. http://127.0.0.1:8080.
    #[arg(long, conflicts_with = "config", required_unless_present = "config")]
    server: Option<String>,
    /// An admin's API token for `--server`.
    #[arg(long, env = "TANDEM_TOKEN", hide_env_values = true, requires = "server")]
    token: Option<String>,
    /// A configuration file (its store holds the accounts and versions).
    #[arg(long)]
    config: Option<PathBuf>,
    /// For an `https://` server: trust the CA certificates in this PEM file.
    #[arg(long, conflicts_with = "fingerprint")]
    cacert: Option<PathBuf>,
    /// For an `https://` server: accept exactly the certificate with this SHA-256.
    #[arg(long)]
    fingerprint: Option<String>,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Write everything this NVR runs to one parameter file.
    Export {
        #[command(flatten)]
        target: Target,
        /// The file to write.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Leave the secrets out (an import keeps the running ones).
        #[arg(long, conflicts_with = "passphrase_env", required_unless_present = "passphrase_env")]
        no_secrets: bool,
        /// Seal the secrets with the passphrase in this environment variable.
        #[arg(long)]
        passphrase_env: Option<String>,
    },
    /// Validate a parameter file, print the diff, and apply it live.
    Import {
        file: PathBuf,
        #[command(flatten)]
        target: Target,
        /// Print the diff, apply nothing.
        #[arg(long)]
        dry_run: bool,
        /// Take a file whose checksum does not match (edited by hand on purpose).
        #[arg(long)]
        accept_edited: bool,
        /// Open the sealed secrets with the passphrase in this environment variable.
        #[arg(long)]
        passphrase_env: Option<String>,
    },
    /// The configurations applied (the last 50), newest first.
    Versions {
        #[command(flatten)]
        target: Target,
    },
    /// Apply a stored version again (default: the one before the current one).
    Rollback {
        version: Option<i64>,
        #[command(flatten)]
        target: Target,
    },
    /// Apply one file to several NVRs, each with its `[[override]]`; or,
    /// with --pool, store it in the pool's etcd for every member to apply.
    Push {
        file: PathBuf,
        /// A Tandem to configure: `URL`, or `NAME=URL` to pick the override
        /// without asking the NVR its `[nvr] name`. Repeat for each.
        #[arg(long = "to", required_unless_present = "pool")]
        to: Vec<String>,
        /// Store the file in the recorder pool's etcd: every member applies it
        /// live (with its own `[[override]]`, keeping its own `[pool]` and the
        /// tables the file lacks); prints each member's result.
        #[arg(long, conflicts_with_all = ["to", "dry_run"], requires = "etcd")]
        pool: bool,
        /// The pool's etcd endpoints (`[pool] etcd`), comma-separated.
        #[arg(long, value_delimiter = ',', requires = "pool")]
        etcd: Vec<String>,
        /// The pool's key prefix (`[pool] prefix`).
        #[arg(long, default_value = "/tandem/", requires = "pool")]
        prefix: String,
        /// Seconds to wait for every member's result.
        #[arg(long, default_value_t = 15.0, requires = "pool")]
        wait: f64,
        /// API tokens: one for every target, or one per `--to` in order.
        #[arg(long, env = "TANDEM_TOKEN", hide_env_values = true, value_delimiter = ',')]
        token: Vec<String>,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        accept_edited: bool,
        #[arg(long)]
        passphrase_env: Option<String>,
    },
}

pub fn run(a: Args) -> Result<ExitCode> {
    match a.cmd {
        Cmd::Export {
            target,
            output,
            no_secrets,
            passphrase_env,
        } => {
            let passphrase = match (no_secrets, passphrase_env) {
                (true, _) => None,
                (false, Some(var)) => Some(passphrase(&var)?),
                (false, None) => bail!("give --no-secrets or --passphrase-env VAR"),
            };
            let text = match &target.config {
                Some(c) => export_local(c, passphrase)?,
                None => {
                    let s = Server::of(&target)?;
                    let mut h = Vec::new();
                    if let Some(p) = &passphrase {
                        h.push(("Tandem-Passphrase", p.as_str()));
                    }
                    let r = s.call("GET", "/api/v1/config", &h, b"")?;
                    s.ok(&r)?;
                    String::from_utf8(r.body).context("the server's answer is not text")?
                }
            };
            write_file(&output, &text)?;
            println!("wrote {} ({} bytes)", output.display(), text.len());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Import {
            file,
            target,
            dry_run,
            accept_edited,
            passphrase_env,
        } => {
            let text = read_text(&file)?;
            let passphrase = passphrase_env.as_deref().map(passphrase).transpose()?;
            let name = file_name(&file);
            match &target.config {
                Some(c) => import_local(c, &text, &name, passphrase, accept_edited, dry_run),
                None => {
                    let s = Server::of(&target)?;
                    let r = s.put_config(&text, &name, passphrase.as_deref(), accept_edited, dry_run)?;
                    Ok(print_outcome(&r, &mut std::io::stdout()))
                }
            }
        }
        Cmd::Versions { target } => {
            let list = match &target.config {
                Some(c) => {
                    let (_, conn) = local_store(c)?;
                    let l = tandem::store::config_versions::list(&conn)?;
                    serde_json::to_value(l)?
                }
                None => {
                    let s = Server::of(&target)?;
                    let r = s.call("GET", "/api/v1/config/versions", &[], b"")?;
                    s.ok(&r)?;
                    r.json()?["versions"].clone()
                }
            };
            print!("{}", versions_table(&list));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Rollback { version, target } => match &target.config {
            Some(c) => rollback_local(c, version),
            None => {
                let s = Server::of(&target)?;
                let body = match version {
                    Some(v) => serde_json::json!({ "version": v }).to_string(),
                    None => String::new(),
                };
                let r = s.call(
                    "POST",
                    "/api/v1/config/rollback",
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                )?;
                Ok(print_outcome(&r, &mut std::io::stdout()))
            }
        },
        Cmd::Push {
            file,
            pool: true,
            etcd,
            prefix,
            wait,
            accept_edited,
            passphrase_env,
            ..
        } => {
            if passphrase_env.is_some() {
                bail!("--pool takes no passphrase: a file for the whole pool carries no secrets (export it with --no-secrets)");
            }
            let text = read_text(&file)?;
            super::config_pool::push(super::config_pool::PoolPush {
                text: &text,
                name: &file_name(&file),
                accept_edited,
                etcd: &etcd,
                prefix: &prefix,
                wait: Duration::from_secs_f64(wait.clamp(0.0, 600.0)),
            })
        }
        Cmd::Push {
            file,
            to,
            token,
            dry_run,
            accept_edited,
            passphrase_env,
            ..
        } => {
            let text = read_text(&file)?;
            let passphrase = passphrase_env.as_deref().map(passphrase).transpose()?;
            let targets = push_targets(&to, &token)?;
            let name = file_name(&file);
            // The whole file's header, checksum and secrets are checked once
            // here: what each NVR receives is the file with its overrides
            // merged, which no longer carries the checksum.
            let whole = parfile::ReadOptions {
                passphrase: passphrase.clone(),
                accept_edited,
            };
            if let Err(e) = parfile::read(&text, &name, &whole) {
                eprintln!("{e}");
                return Ok(ExitCode::from(2));
            }
            let mut rows = Vec::new();
            for t in &targets {
                let (nvr, result) = push_one(t, &text, &name, passphrase.as_deref(), accept_edited, dry_run);
                rows.push((t.url.clone(), nvr, result));
            }
            print!("{}", push_table(&rows));
            let failed = rows.iter().any(|(_, _, r)| r.starts_with("failed"));
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
    }
}

fn passphrase(var: &str) -> Result<String> {
    match std::env::var(var) {
        Ok(p) if !p.is_empty() => Ok(p),
        Ok(_) => bail!("--passphrase-env: the environment variable {var} is empty"),
        Err(_) => bail!("--passphrase-env: the environment variable {var} is not set"),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

fn read_text(p: &Path) -> Result<String> {
    tandem::config::source::read_bounded_at_most(p, tandem::config::source::MAX_CONFIG_FILE)
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
}

/// Writes `text` to `path` whole or not at all (a temporary file renamed),
/// readable by its owner only: it holds password hashes.
fn write_file(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp-tandem");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A running Tandem's API.
struct Server {
    base: String,
    token: Option<String>,
    tls: Option<tandem::httpc::PeerTls>,
}

impl Server {
    fn of(t: &Target) -> Result<Server> {
        use tandem::httpc::{PeerTls, PeerTrust};
        let base = t.server.clone().context("give --server URL or --config FILE")?;
        let trust = match (&t.cacert, &t.fingerprint) {
            (Some(p), _) => Some(PeerTrust::Ca {
                path: p.clone(),
                roots: tandem::web::tls::load_certs(p).map_err(|e| anyhow::anyhow!("--cacert: {e}"))?,
            }),
            (None, Some(f)) => Some(PeerTrust::Fingerprint(
                tandem::web::tls::parse_fingerprint(f).map_err(|e| anyhow::anyhow!("--fingerprint: {e}"))?,
            )),
            (None, None) => None,
        };
        let tls = trust
            .map(|t| PeerTls::new(&t).map_err(anyhow::Error::msg))
            .transpose()?;
        if base.starts_with("https://") && tls.is_none() {
            bail!("an https:// server needs --cacert or --fingerprint to check its certificate");
        }
        Ok(Server {
            base: base.trim_end_matches('/').to_string(),
            token: t.token.clone(),
            tls,
        })
    }

    fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<tandem::httpc::Response> {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            h.push(("Authorization", a));
        }
        let url = format!("{}{path}", self.base);
        tandem::httpc::request_via(method, &url, &h, body, TIMEOUT, self.tls.as_ref())
            .with_context(|| format!("{method} {url}"))
    }

    /// Fails with the server's own error message unless the answer is 2xx.
    fn ok(&self, r: &tandem::httpc::Response) -> Result<()> {
        if (200..300).contains(&r.status) {
            return Ok(());
        }
        bail!("{} answered {}: {}", self.base, r.status, error_of(r))
    }

    fn put_config(
        &self,
        text: &str,
        name: &str,
        passphrase: Option<&str>,
        accept_edited: bool,
        dry_run: bool,
    ) -> Result<tandem::httpc::Response> {
        let path = format!(
            "/api/v1/config?dry_run={}&accept_edited={}",
            u8::from(dry_run),
            u8::from(accept_edited)
        );
        let mut h = vec![("Content-Type", "application/toml"), ("Tandem-File-Name", name)];
        if let Some(p) = passphrase {
            h.push(("Tandem-Passphrase", p));
        }
        self.call("PUT", &path, &h, text.as_bytes())
    }
}

/// The `error` of an API error body, or the body itself.
fn error_of(r: &tandem::httpc::Response) -> String {
    r.json()
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| tandem::excerpt::short(&String::from_utf8_lossy(&r.body)))
}

/// Prints an apply's answer (PUT or rollback) and gives the exit status.
fn print_outcome(r: &tandem::httpc::Response, out: &mut dyn Write) -> ExitCode {
    let body = r.json().unwrap_or_default();
    if r.status == 422 {
        let _ = writeln!(out, "the configuration has errors; nothing was applied:");
        for e in body["errors"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  {}", e.as_str().unwrap_or_default());
        }
        return ExitCode::from(CONFIG_ERRORS);
    }
    if !(200..300).contains(&r.status) {
        let _ = writeln!(out, "refused ({}): {}", r.status, error_of(r));
        return ExitCode::FAILURE;
    }
    print_applied(&body, out);
    ExitCode::SUCCESS
}

fn print_applied(body: &serde_json::Value, out: &mut dyn Write) {
    for n in body["notes"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "note: {}", n.as_str().unwrap_or_default());
    }
    let _ = write!(out, "{}", body["diff_text"].as_str().unwrap_or_default());
    if body["dry_run"].as_bool() == Some(true) {
        let _ = writeln!(out, "dry run: nothing applied");
        return;
    }
    if body["unchanged"].as_bool() == Some(true) {
        let _ = writeln!(out, "unchanged: nothing to apply");
        return;
    }
    for a in body["accounts"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "accounts: {}", a.as_str().unwrap_or_default());
    }
    for s in body["report"]["steps"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "applied: {}", s.as_str().unwrap_or_default());
    }
    let _ = writeln!(
        out,
        "applied as version {} in {} ms",
        body["version"],
        body["report"]["elapsed_ms"].as_u64().unwrap_or(0)
    );
}

fn versions_table(list: &serde_json::Value) -> String {
    let mut s = format!(
        "{:>7}  {:<30}  {:<16}  {:<16}  {:<24}  {}\n",
        "version", "applied", "by", "from", "file", "changes"
    );
    for v in list.as_array().into_iter().flatten() {
        let ms = v["applied_ms"].as_i64().unwrap_or(0);
        let at = tandem::time::Time90k(ms * 90).to_rfc3339();
        let changes = v["diff"]["changes"].as_array().map_or(0, Vec::len);
        s += &format!(
            "{:>7}  {:<30}  {:<16}  {:<16}  {:<24}  {}\n",
            // A JSON value ignores widths: its text does not.
            v["id"].to_string(),
            at,
            v["actor"].as_str().unwrap_or_default(),
            v["origin"].as_str().unwrap_or_default(),
            v["source"].as_str().unwrap_or_default(),
            changes
        );
    }
    s
}

/// One NVR to push to.
#[derive(Debug, PartialEq)]
struct PushTarget {
    /// Given as `NAME=URL`; otherwise asked of the NVR.
    name: Option<String>,
    url: String,
    token: Option<String>,
}

fn push_targets(to: &[String], tokens: &[String]) -> Result<Vec<PushTarget>> {
    if tokens.len() > 1 && tokens.len() != to.len() {
        bail!(
            "--token: give one token for every NVR or one per --to ({} --to, {} tokens)",
            to.len(),
            tokens.len()
        );
    }
    to.iter()
        .enumerate()
        .map(|(i, t)| {
            let (name, url) = match t.split_once('=') {
                Some((n, u)) if !n.contains('/') && !n.contains(':') => (Some(n.trim().to_string()), u.trim()),
                _ => (None, t.trim()),
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("--to `{t}`: give URL or NAME=URL with an http:// or https:// URL");
            }
            if name.as_deref() == Some("") {
                bail!("--to `{t}`: the NVR name before `=` is empty");
            }
            let token = match tokens.len() {
                0 => None,
                1 => Some(tokens[0].clone()),
                _ => Some(tokens[i].clone()),
            };
            Ok(PushTarget {
                name,
                url: url.trim_end_matches('/').to_string(),
                token,
            })
        })
        .collect()
}

/// The `[nvr] name` of a configuration document.
fn nvr_name(text: &str) -> Option<String> {
    let t: toml::Table = text.parse().ok()?;
    t.get("nvr")?.get("name")?.as_str().map(str::to_string)
}

/// Pushes to one NVR: (its name, "applied …" / "unchanged" / "failed: why").
fn push_one(
    t: &PushTarget,
    text: &str,
    file: &str,
    passphrase: Option<&str>,
    accept_edited: bool,
    dry_run: bool,
) -> (String, String) {
    let s = Server {
        base: t.url.clone(),
        token: t.token.clone(),
        tls: None,
    };
    let name = match &t.name {
        Some(n) => n.clone(),
        None => {
            let current = s.call("GET", "/api/v1/config", &[], b"").and_then(|r| {
                s.ok(&r)?;
                Ok(String::from_utf8_lossy(&r.body).into_owned())
            });
            match current {
                Ok(c) => nvr_name(&c).unwrap_or_default(),
                Err(e) => return ("?".into(), format!("failed: {e:#}")),
            }
        }
    };
    let mine = match parfile::for_nvr(text, file, &name) {
        Ok(m) => m,
        Err(e) => return (name, format!("failed: {}", e.to_string().replace('\n', "; "))),
    };
    // The overrides change the content: the checksum is the file's, not this NVR's.
    let accept_edited = accept_edited || !parfile::override_names(text).is_empty();
    let r = match s.put_config(&mine, file, passphrase, accept_edited, dry_run) {
        Ok(r) => r,
        Err(e) => return (name, format!("failed: {e:#}")),
    };
    let body = r.json().unwrap_or_default();
    let result = match r.status {
        200 if body["dry_run"].as_bool() == Some(true) => {
            format!(
                "dry run: {} change(s)",
                body["diff"]["changes"].as_array().map_or(0, Vec::len)
            )
        }
        200 if body["unchanged"].as_bool() == Some(true) => "unchanged".into(),
        200 => format!("applied (version {})", body["version"]),
        422 => {
            let errors: Vec<&str> = body["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e.as_str())
                .collect();
            format!("failed: {}", errors.join("; "))
        }
        status => format!("failed: {status} {}", error_of(&r)),
    };
    (if name.is_empty() { "(unnamed)".into() } else { name }, result)
}

fn push_table(rows: &[(String, String, String)]) -> String {
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(3);
    let n = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(3);
    let mut s = format!("{:<w$}  {:<n$}  result\n", "url", "nvr");
    for (url, name, result) in rows {
        s += &format!("{url:<w$}  {name:<n$}  {result}\n");
    }
    s
}

/// The configuration in `path` (a configuration or parameter file) and the
/// index of its store.
fn local_store(path: &Path) -> Result<(tandem::config::Config, rusqlite::Connection)> {
    let config = tandem::config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let conn = tandem::store::db::open_dir(&config.storage.dir).map_err(anyhow::Error::msg)?;
    Ok((config, conn))
}

fn export_local(path: &Path, passphrase: Option<String>) -> Result<String> {
    let (mut config, conn) = local_store(path)?;
    config.accounts = Some(tandem::auth::accounts::read(&conn)?);
    let opts = parfile::ExportOptions {
        secrets: match passphrase {
            Some(p) => parfile::Secrets::Seal(p),
            None => parfile::Secrets::Omit,
        },
        nvr_id: tandem::store::db::nvr_id(&conn)?,
        now_ms: tandem::web::access::now_ms(),
    };
    Ok(parfile::export(&config, &opts)?)
}

/// `import --config`: checks the file against the configuration file, prints
/// the diff, then (not a dry run) rewrites the configuration file and the
/// store's accounts and stores a version; a running `serve --config` picks
/// the file up on SIGHUP.
fn import_local(
    path: &Path,
    text: &str,
    name: &str,
    passphrase: Option<String>,
    accept_edited: bool,
    dry_run: bool,
) -> Result<ExitCode> {
    let (running, conn) = local_store(path)?;
    let opts = parfile::ReadOptions {
        passphrase,
        accept_edited,
    };
    let base = std::env::current_dir().unwrap_or_default();
    let (desired, notes) = match parfile::apply::prepare(text, name, &opts, &running, &base) {
        Ok(d) => d,
        Err(e) => {
            println!("the configuration has errors; nothing was applied:");
            for line in e.errors() {
                println!("  {line}");
            }
            return Ok(ExitCode::from(CONFIG_ERRORS));
        }
    };
    for n in &notes {
        println!("note: {n}");
    }
    let mut before = running.clone();
    if desired.accounts.is_some() {
        before.accounts = Some(tandem::auth::accounts::read(&conn)?);
    }
    let diff = parfile::diff(&before, &desired);
    print!("{diff}");
    if dry_run {
        println!("dry run: nothing applied");
        return Ok(ExitCode::SUCCESS);
    }
    if diff.is_empty() {
        println!("unchanged: nothing to apply");
        return Ok(ExitCode::SUCCESS);
    }
    write_local(path, &conn, &desired, name, &diff)
}

fn config_errors(e: &tandem::config::ConfigErrors) -> ExitCode {
    println!("the configuration has errors; nothing was applied:");
    for e in &e.0 {
        println!("  {e}");
    }
    ExitCode::from(CONFIG_ERRORS)
}

/// Makes `desired` the configuration of `path` and its store: accounts,
/// the file, a version (origin "cli") and an audit entry.
fn write_local(
    path: &Path,
    conn: &rusqlite::Connection,
    desired: &tandem::config::Config,
    source: &str,
    diff: &parfile::Diff,
) -> Result<ExitCode> {
    let document = parfile::apply::document_text(desired).map_err(anyhow::Error::msg)?;
    let now = tandem::web::access::now_ms();
    if let Some(a) = &desired.accounts {
        for line in tandem::auth::accounts::replace(conn, a, now)? {
            println!("accounts: {line}");
        }
    }
    // The file keeps no accounts of its own: the store holds them.
    let mut file = desired.clone();
    file.accounts = None;
    write_file(path, &parfile::apply::document_text(&file).map_err(anyhow::Error::msg)?)?;
    let actor = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
    let version = tandem::store::config_versions::insert(
        conn,
        &tandem::store::config_versions::NewVersion {
            applied_ms: now,
            actor: &actor,
            origin: "cli",
            source,
            document: &document,
            diff: &serde_json::to_string(diff)?,
        },
    )?;
    tandem::auth::audit_log::append(
        conn,
        now,
        &tandem::auth::audit_log::Entry::new(
            actor,
            None,
            tandem::auth::audit_log::Action::ConfigChange,
            format!("version {version} from {source}: {}", parfile::apply::summary(diff)),
        ),
    )?;
    println!(
        "wrote {} as version {version}; a running `tandem serve --config {}` applies it on SIGHUP",
        path.display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn rollback_local(path: &Path, version: Option<i64>) -> Result<ExitCode> {
    let (running, conn) = local_store(path)?;
    let v = match version {
        Some(id) => tandem::store::config_versions::get(&conn, id)?,
        None => tandem::store::config_versions::previous(&conn)?,
    };
    let Some(v) = v else {
        bail!(match version {
            Some(id) => format!("no stored configuration version {id}"),
            None => "no earlier configuration version to roll back to".into(),
        });
    };
    let name = format!("version {}", v.summary.id);
    let incoming = match parfile::read(
        &v.document,
        &name,
        &parfile::ReadOptions {
            passphrase: None,
            accept_edited: true,
        },
    ) {
        Ok(i) => i,
        Err(e) => return Ok(config_errors(&e)),
    };
    let base = std::env::current_dir().unwrap_or_default();
    let desired = match parfile::parse(&incoming, &name, &base) {
        Ok(d) => d,
        Err(e) => return Ok(config_errors(&e)),
    };
    let diff = parfile::diff(&running, &desired);
    print!("{diff}");
    write_local(path, &conn, &desired, &name, &diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_targets_take_names_urls_and_tokens() {
        let to = vec!["http://a:1".to_string(), "nvr-b=http://b:2/".to_string()];
        let t = push_targets(&to, &[]).unwrap();
        assert_eq!(
            t[0],
            PushTarget {
                name: None,
                url: "http://a:1".into(),
                token: None
            }
        );
        assert_eq!(t[1].name.as_deref(), Some("nvr-b"));
        assert_eq!(t[1].url, "http://b:2");
        let one = push_targets(&to, &["x".into()]).unwrap();
        assert!(one.iter().all(|t| t.token.as_deref() == Some("x")));
        let each = push_targets(&to, &["x".into(), "y".into()]).unwrap();
        assert_eq!(each[1].token.as_deref(), Some("y"));
        assert!(push_targets(&to, &["x".into(), "y".into(), "z".into()]).is_err());
        assert!(push_targets(&["ftp://x".into()], &[]).is_err());
        assert!(push_targets(&["=http://x".into()], &[]).is_err());
    }

    #[test]
    fn nvr_name_is_read_from_the_document() {
        assert_eq!(nvr_name("[nvr]\nname = \"nvr-b\"\n").as_deref(), Some("nvr-b"));
        assert_eq!(nvr_name("[storage]\ndir = \"/x\"\n"), None);
        assert_eq!(nvr_name("not toml ["), None);
    }

    #[test]
    fn outcomes_print_and_give_the_exit_status() {
        let resp = |status, body: serde_json::Value| tandem::httpc::Response {
            status,
            headers: vec![],
            body: body.to_string().into_bytes(),
        };
        let mut out = Vec::new();
        let code = print_outcome(
            &resp(
                422,
                serde_json::json!({"error": "2 errors", "errors": ["f:3: a: bad", "f:9: b: bad"]}),
            ),
            &mut out,
        );
        assert_eq!(code, ExitCode::from(CONFIG_ERRORS));
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("f:3: a: bad") && s.contains("f:9: b: bad"), "{s}");

        let mut out = Vec::new();
        let code = print_outcome(
            &resp(
                200,
                serde_json::json!({"diff_text": "~ channel 1\n", "version": 4, "report": {"steps": ["channel 1: renamed"], "elapsed_ms": 3}}),
            ),
            &mut out,
        );
        assert_eq!(code, ExitCode::SUCCESS);
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.contains("~ channel 1") && s.contains("version 4") && s.contains("renamed"),
            "{s}"
        );

        let mut out = Vec::new();
        let code = print_outcome(&resp(412, serde_json::json!({"error": "stale"})), &mut out);
        assert_eq!(code, ExitCode::FAILURE);
        assert!(String::from_utf8(out).unwrap().contains("stale"));
    }

    #[test]
    fn tables_list_every_row() {
        let t = push_table(&[
            ("http://a".into(), "nvr-a".into(), "applied (version 3)".into()),
            ("http://b".into(), "?".into(), "failed: connection refused".into()),
        ]);
        assert_eq!(t.lines().count(), 3);
        assert!(t.contains("failed: connection refused"));
        let v = versions_table(
            &serde_json::json!([{"id": 2, "applied_ms": 0, "actor": "ann", "origin": "start", "source": "x", "diff": {"changes": [1, 2]}}]),
        );
        assert!(v.lines().nth(1).unwrap().contains("ann"), "{v}");
    }
}
