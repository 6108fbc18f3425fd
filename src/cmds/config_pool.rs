//! `tandem config push FILE --pool --etcd URL`: the parameter file stored in
//! the recorder pool's etcd (`pool::shared_config`) for every member to
//! apply live, then each member's result as it reports it.
//!
//! Owns the checks before the write and the wait for the reports; the
//! members apply (`nvr::pool`). Must never store a file the pool refuses
//! (secrets, a `[pool]` table) or one whose checksum fails unaccepted.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use etcd_client::{Client, ConnectOptions, GetOptions};
use tandem::parfile;
use tandem::pool::records::{self, Keys};
use tandem::pool::shared_config::{self, AppliedDoc, PoolConfigDoc};

/// Configuration errors: nothing stored.
const CONFIG_ERRORS: u8 = 2;

pub struct PoolPush<'a> {
    pub text: &'a str,
    pub name: &'a str,
    pub accept_edited: bool,
    pub etcd: &'a [String],
    pub prefix: &'a str,
    pub wait: Duration,
}

pub fn push(p: PoolPush<'_>) -> Result<ExitCode> {
    // Checked once here, as for `--to`: header, checksum, then what only
    // the pool refuses.
    let whole = parfile::ReadOptions {
        passphrase: None,
        accept_edited: p.accept_edited,
    };
    if let Err(e) = parfile::read(p.text, p.name, &whole).and_then(|_| shared_config::check_pushable(p.text, p.name)) {
        eprintln!("{e}");
        return Ok(ExitCode::from(CONFIG_ERRORS));
    }
    let keys = Keys::new(p.prefix);
    let now = tandem::time::Time90k::from_system(std::time::SystemTime::now()).to_rfc3339();
    let doc = PoolConfigDoc::new(p.name, p.text, &now);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10));
        let mut client = Client::connect(p.etcd, Some(options))
            .await
            .with_context(|| format!("connecting to etcd at {}", p.etcd.join(", ")))?;
        client
            .put(keys.config(), records::encode(&doc), None)
            .await
            .context("storing the file in etcd")?;
        println!("stored {} at {} as push {}", p.name, keys.config(), doc.id());
        let deadline = Instant::now() + p.wait;
        let rows = loop {
            let rows = reports(&mut client, &keys, &doc.id()).await?;
            if Instant::now() >= deadline || rows.values().all(Option::is_some) {
                break rows;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if rows.is_empty() {
            println!("no member is registered now: each NVR applies the file when it joins");
            return Ok(ExitCode::SUCCESS);
        }
        print!("{}", table(&rows));
        let all_ok = rows.values().all(|r| r.as_ref().is_some_and(|r| r.ok));
        Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}

/// Member → its report of this push (`None`: not reported yet).
async fn reports(client: &mut Client, keys: &Keys, id: &str) -> Result<BTreeMap<String, Option<AppliedDoc>>> {
    let members = client
        .get(keys.members(), Some(GetOptions::new().with_prefix().with_keys_only()))
        .await
        .context("reading the pool's members")?;
    let mut rows: BTreeMap<String, Option<AppliedDoc>> = members
        .kvs()
        .iter()
        .filter_map(|kv| keys.member_name(kv.key_str().ok()?).map(|n| (n.to_string(), None)))
        .collect();
    let applied = client
        .get(keys.applied(""), Some(GetOptions::new().with_prefix()))
        .await
        .context("reading the members' reports")?;
    for kv in applied.kvs() {
        let Some(name) = kv.key_str().ok().and_then(|k| keys.applied_name(k)) else {
            continue;
        };
        let report: Option<AppliedDoc> = serde_json::from_slice(kv.value()).ok();
        if let (Some(row), Some(r)) = (rows.get_mut(name), report.filter(|r| r.id == id)) {
            *row = Some(r);
        }
    }
    Ok(rows)
}

fn table(rows: &BTreeMap<String, Option<AppliedDoc>>) -> String {
    let w = rows.keys().map(String::len).max().unwrap_or(0).max(6);
    let mut s = format!("{:<w$}  result\n", "member");
    for (name, r) in rows {
        let result = match r {
            Some(r) if r.ok => r.result.clone(),
            Some(r) => format!("failed: {}", r.result),
            None => "no report yet (not applied, or etcd unreachable from it)".into(),
        };
        s.push_str(&format!("{name:<w$}  {result}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_every_member_and_what_it_did() {
        let mut rows = BTreeMap::new();
        let ok = |ok, result: &str| {
            Some(AppliedDoc {
                id: "x".into(),
                ok,
                result: result.into(),
            })
        };
        rows.insert("nvr-a".to_string(), ok(true, "unchanged"));
        rows.insert("nvr-b".to_string(), ok(false, "channel[2].camera: no such camera"));
        rows.insert("nvr-c".to_string(), None);
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[1].starts_with("nvr-a") && lines[1].ends_with("unchanged"));
        assert!(lines[2].contains("failed: channel[2].camera"));
        assert!(lines[3].contains("no report yet"));
    }
}
