//! `tandem user add|passwd|del|list|token`: manage who may use a store's API,
//! directly in its index (the NVR may be running; a change reaches it within
//! seconds). Passwords are prompted for, or read from an environment
//! variable for scripts, never taken on the command line where `ps` shows them.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use tandem::auth::audit_log::{self, Action, Entry};
use tandem::auth::{credentials, users, Role};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: UserCmd,
}

/// Where the store is: its directory, or the configuration naming it.
#[derive(clap::Args, Clone)]
pub struct StoreArg {
    /// The store's directory.
    #[arg(long, conflicts_with = "config")]
    data: Option<PathBuf>,
    /// A configuration file; its `[storage] dir` is used.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl StoreArg {
    pub fn dir(&self) -> Result<PathBuf> {
        super::store_of(self.data.as_deref(), self.config.as_deref()).map(|s| s.dir)
    }
}

#[derive(clap::Subcommand)]
enum UserCmd {
    /// Create a user.
    Add {
        name: String,
        /// admin, operator or viewer.
        #[arg(long)]
        role: Role,
        /// Channels a non-admin may see, e.g. `1,2`; all when omitted.
        #[arg(long)]
        channels: Option<String>,
        /// Read the password from this environment variable instead of prompting.
        #[arg(long)]
        password_env: Option<String>,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Set a user's password (ends their sessions).
    Passwd {
        name: String,
        #[arg(long)]
        password_env: Option<String>,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Delete a user with their sessions and tokens.
    Del {
        name: String,
        #[command(flatten)]
        store: StoreArg,
    },
    /// List users.
    List {
        #[command(flatten)]
        store: StoreArg,
    },
    /// Create an API token for a user and print it (shown once).
    Token {
        name: String,
        /// What the token is for, e.g. the script or VMS using it.
        #[arg(long = "token-name", default_value = "cli")]
        token_name: String,
        /// At most the user's role; the user's when omitted.
        #[arg(long)]
        role: Option<Role>,
        #[arg(long)]
        channels: Option<String>,
        /// Lifetime, e.g. `30d`; no expiry when omitted.
        #[arg(long)]
        expires_in: Option<String>,
        #[command(flatten)]
        store: StoreArg,
    },
}

fn actor() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

fn read_password(env: Option<&str>, confirm: bool) -> Result<String> {
    if let Some(var) = env {
        return std::env::var(var).with_context(|| format!("--password-env: environment variable {var} is not set"));
    }
    let stdin = std::io::stdin();
    let read = |prompt: &str| -> Result<String> {
        eprint!("{prompt}");
        std::io::stderr().flush()?;
        let mut l = String::new();
        stdin.lock().read_line(&mut l)?;
        Ok(l.trim_end_matches(['\r', '\n']).to_string())
    };
    if stdin.is_terminal() {
        // Best effort: hide what is typed where `stty` exists.
        let _ = std::process::Command::new("stty").arg("-echo").status();
    }
    let pw = read("password: ");
    let again = if confirm && pw.is_ok() {
        read("\nagain: ")
    } else {
        Ok(String::new())
    };
    if stdin.is_terminal() {
        let _ = std::process::Command::new("stty").arg("echo").status();
        eprintln!();
    }
    let pw = pw?;
    if confirm && again? != pw {
        bail!("the passwords differ");
    }
    Ok(pw)
}

fn channels(s: Option<&str>) -> Result<Option<std::collections::BTreeSet<u32>>> {
    s.map(|s| users::parse_channels(s).map_err(|e| anyhow::anyhow!("--channels: {e}")))
        .transpose()
}

fn now_ms() -> i64 {
    tandem::web::access::now_ms()
}

pub fn run(a: Args) -> Result<ExitCode> {
    let store = match &a.cmd {
        UserCmd::Add { store, .. }
        | UserCmd::Passwd { store, .. }
        | UserCmd::Del { store, .. }
        | UserCmd::List { store }
        | UserCmd::Token { store, .. } => store.dir()?,
    };
    let conn = tandem::store::db::open_dir(&store).map_err(anyhow::Error::msg)?;
    let audit = |target: String| {
        audit_log::append(&conn, now_ms(), &Entry::new(actor(), None, Action::UserChange, target))
            .context("writing the audit log")
    };
    match a.cmd {
        UserCmd::Add {
            name,
            role,
            channels: ch,
            password_env,
            ..
        } => {
            users::check_name(&name)?;
            let ch = channels(ch.as_deref())?;
            let pw = read_password(password_env.as_deref(), true)?;
            users::add(&conn, &name, role, ch, &pw, now_ms())?;
            audit(format!("user {name}: added as {role}"))?;
            println!("added {role} {name}");
        }
        UserCmd::Passwd { name, password_env, .. } => {
            let pw = read_password(password_env.as_deref(), true)?;
            users::set_password(&conn, &name, &pw, now_ms())?;
            audit(format!("user {name}: changed password"))?;
            println!("password of {name} changed; their sessions ended");
        }
        UserCmd::Del { name, .. } => {
            users::delete(&conn, &name)?;
            audit(format!("user {name}: deleted"))?;
            println!("deleted {name}");
        }
        UserCmd::List { .. } => {
            for u in users::list(&conn)? {
                let ch = match &u.channels {
                    None => "all".to_string(),
                    Some(c) => c.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
                };
                println!("{:<24} {:<8} channels: {ch}", u.name, u.role.as_str());
            }
        }
        UserCmd::Token {
            name,
            token_name,
            role,
            channels: ch,
            expires_in,
            ..
        } => {
            let (u, _) = users::get(&conn, &name)?.with_context(|| format!("no user `{name}`"))?;
            let role = role.unwrap_or(u.role);
            if role > u.role {
                bail!("--role: a token of {name} cannot be more than {}", u.role);
            }
            let ch = channels(ch.as_deref())?.or(u.channels);
            let expires = expires_in
                .map(|e| tandem::config::units::parse_duration(&e).map_err(|m| anyhow::anyhow!("--expires-in: {m}")))
                .transpose()?
                .map(|d| now_ms() + d.as_millis() as i64);
            let (id, secret) = credentials::create_token(&conn, &name, &token_name, role, ch, expires, now_ms())?;
            audit_log::append(
                &conn,
                now_ms(),
                &Entry::new(
                    actor(),
                    None,
                    Action::TokenChange,
                    format!("token {id} ({token_name}) for {name}: created as {role}"),
                ),
            )?;
            println!("{secret}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
