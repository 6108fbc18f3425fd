//! Pool membership through a real etcd (issue 13): three memberships in this
//! process against an `etcd` started on loopback with short timings and a
//! 1 s lease. Proves: one scheduler is elected and assigns every camera
//! within capacity; a member that stops renewing loses its cameras to the
//! others within the lease time + 1 s; so does the scheduler itself, and
//! another member is elected; with etcd stopped every member keeps its
//! cameras; with etcd back they register again. Prints the measured times
//! (docs/pool.md, "Membership").

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{free_port, have_program, prerequisite, Proc};
use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use tandem::failover::capacity::Priority;
use tandem::pool::membership::{MemberConfig, Membership};
use tandem::pool::records::{self, AssignmentDoc, Keys, MemberRecord};
use tandem::pool::Camera;

const TTL: Duration = Duration::from_secs(1);
const CAMERAS: usize = 9;
const CHANNELS: u32 = 5;
const PREFIX: &str = "/lab/";

/// etcd on loopback; killed when dropped. The lab's fields drop in order:
/// members, then etcd, then the temporary directory.
struct Lab {
    members: BTreeMap<String, Membership>,
    etcd: Option<Proc>,
    client_port: u16,
    peer_port: u16,
    tmp: tempfile::TempDir,
}

impl Lab {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn start_etcd(&mut self) {
        self.etcd = Some(common::start_etcd(self.tmp.path(), self.client_port, self.peer_port));
    }

    fn stop_etcd(&mut self) {
        if let Some(mut p) = self.etcd.take() {
            p.kill();
        }
    }

    async fn client(&self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Ok(mut c)) =
                tokio::time::timeout(Duration::from_secs(1), Client::connect([self.endpoint()], None)).await
            {
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), c.get("probe", None)).await {
                    return c;
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.tmp.path().join("etcd.stderr")).unwrap_or_default();
                panic!("etcd did not answer within 20 s; its log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn join(&mut self, name: &str) {
        let config = MemberConfig {
            endpoints: vec![self.endpoint()],
            name: name.into(),
            record: MemberRecord {
                channels: CHANNELS,
                kbps: 100_000,
                address: format!("http://{name}.lab:8080"),
                version: "test".into(),
                cameras: Default::default(),
            },
            lease_ttl: TTL,
            keys: Keys::new(PREFIX),
            // Fixed inputs: their senders are gone, so they never change.
            cameras: tokio::sync::watch::channel(cameras()).1,
            recording: tokio::sync::watch::channel(tandem::pool::records::RecordingList::default()).1,
            applied: tokio::sync::watch::channel(None).1,
            last_assignment: None,
            channels_of: tokio::sync::watch::channel(BTreeMap::new()).1,
        };
        self.members.insert(name.into(), Membership::start(config));
    }

    fn assigned(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.members
            .iter()
            .map(|(n, m)| (n.clone(), m.assigned().borrow().clone()))
            .collect()
    }

    fn schedulers(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, m)| m.status().borrow().scheduler)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

fn cameras() -> Vec<Camera> {
    (0..CAMERAS)
        .map(|i| Camera {
            id: format!("cam-{i:02}"),
            kbps: 2000,
            priority: Priority::Medium,
        })
        .collect()
}

/// Every camera on exactly one of `members`, none over capacity.
fn complete(assigned: &BTreeMap<String, BTreeSet<String>>, members: &[&str]) -> bool {
    let mut seen = BTreeSet::new();
    for (name, cams) in assigned {
        if !members.contains(&name.as_str()) {
            continue;
        }
        if cams.len() > CHANNELS as usize {
            return false;
        }
        for c in cams {
            if !seen.insert(c.clone()) {
                return false;
            }
        }
    }
    seen.len() == CAMERAS
}

async fn wait_for(limit: Duration, mut ok: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() <= limit {
        if ok() {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

async fn stored(client: &mut Client) -> Option<AssignmentDoc> {
    let got = client.get(Keys::new(PREFIX).assignment(), None).await.ok()?;
    records::decode_assignment(got.kvs().first()?.value()).ok()
}

/// When etcd announced each member key's deletion and each new assignment.
#[derive(Default)]
struct Timeline {
    deleted: BTreeMap<String, Instant>,
    assignments: Vec<(Instant, AssignmentDoc)>,
}

async fn watch_timeline(mut client: Client, timeline: std::sync::Arc<std::sync::Mutex<Timeline>>) {
    let keys = Keys::new(PREFIX);
    let Ok(mut stream) = client.watch(PREFIX, Some(WatchOptions::new().with_prefix())).await else {
        return;
    };
    while let Ok(Some(resp)) = stream.message().await {
        let now = Instant::now();
        let mut t = timeline.lock().unwrap();
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            if let (EventType::Delete, Some(name)) = (ev.event_type(), keys.member_name(&key)) {
                t.deleted.insert(name.to_string(), now);
            } else if ev.event_type() == EventType::Put && key == keys.assignment() {
                if let Ok(doc) = records::decode_assignment(kv.value()) {
                    t.assignments.push((now, doc));
                }
            }
        }
    }
}

/// From a member's drop: when its lease expired (etcd deleted its key) and
/// when the first assignment without it was stored.
fn lease_loss_figures(t: &Timeline, name: &str, dropped: Instant) -> (Duration, Duration) {
    let deleted = *t.deleted.get(name).expect("member key deleted");
    let assigned = t
        .assignments
        .iter()
        .find(|(at, doc)| *at >= deleted && !doc.cameras.values().any(|m| m == name))
        .expect("an assignment without the dropped member")
        .0;
    (deleted - dropped, assigned - deleted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_membership_through_etcd() {
    if !prerequisite(have_program("etcd"), "etcd (Debian package etcd-server)") {
        return;
    }
    let mut lab = Lab {
        members: BTreeMap::new(),
        etcd: None,
        client_port: free_port(),
        peer_port: free_port(),
        tmp: tempfile::tempdir().unwrap(),
    };
    lab.start_etcd();
    let mut client = lab.client().await;
    let timeline = std::sync::Arc::new(std::sync::Mutex::new(Timeline::default()));
    let watcher = tokio::spawn(watch_timeline(client.clone(), timeline.clone()));
    // The watch is in place before anything is written.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Three members: one scheduler, every camera placed within capacity.
    for n in ["nvr-a", "nvr-b", "nvr-c"] {
        lab.join(n);
    }
    let all = ["nvr-a", "nvr-b", "nvr-c"];
    let t = wait_for(Duration::from_secs(10), || {
        complete(&lab.assigned(), &all) && lab.schedulers().len() == 1
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "no complete assignment: {:?}, schedulers {:?}",
            lab.assigned(),
            lab.schedulers()
        )
    });
    eprintln!(
        "initial: every camera assigned {} ms after the members started",
        t.as_millis()
    );
    let first = lab.schedulers()[0].clone();
    let doc = stored(&mut client).await.expect("assignment stored");
    assert_eq!(doc.scheduler, first);
    assert!(
        lab.assigned().values().all(|c| !c.is_empty()),
        "spread over all: {:?}",
        lab.assigned()
    );

    // A member that is not the scheduler stops (no revoke: like a crash).
    let victim = all.iter().find(|n| **n != first).unwrap().to_string();
    let victims_cameras = lab.assigned()[&victim].clone();
    let dropped = Instant::now();
    lab.members.remove(&victim).unwrap().stop();
    let rest: Vec<&str> = all.iter().copied().filter(|n| *n != victim).collect();
    let took = wait_for(TTL + Duration::from_secs(3), || {
        let a = lab.assigned();
        complete(&a, &rest) && victims_cameras.iter().all(|c| rest.iter().any(|m| a[*m].contains(c)))
    })
    .await
    .unwrap_or_else(|| panic!("{victim}'s cameras not reassigned: {:?}", lab.assigned()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (expiry, react) = lease_loss_figures(&timeline.lock().unwrap(), &victim, dropped);
    eprintln!(
        "member {victim} dropped: lease expired after {} ms, assignment stored {} ms later, \
         its {} cameras assigned to the others {} ms after the drop",
        expiry.as_millis(),
        react.as_millis(),
        victims_cameras.len(),
        took.as_millis()
    );
    assert!(took <= TTL + Duration::from_secs(1), "reassigned after {took:?}");

    // It comes back: it registers, and the join rebalances toward it —
    // cameras move only to it, nothing else moves, none is left out.
    let before = lab.assigned();
    lab.join(&victim);
    wait_for(Duration::from_secs(5), || {
        lab.members[&victim].status().borrow().registered && !lab.assigned()[&victim].is_empty()
    })
    .await
    .unwrap_or_else(|| panic!("{victim} rejoined and took no camera: {:?}", lab.assigned()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = lab.assigned();
    for m in &rest {
        assert!(
            after[*m].is_subset(&before[*m]),
            "only moves to {victim}: {before:?} → {after:?}"
        );
    }
    assert!(complete(&after, &all), "every camera still assigned: {after:?}");

    // The scheduler itself stops: another is elected and reassigns.
    let sched_cameras = lab.assigned()[&first].clone();
    let dropped = Instant::now();
    lab.members.remove(&first).unwrap().stop();
    let rest: Vec<&str> = all.iter().copied().filter(|n| *n != first).collect();
    let took = wait_for(TTL + Duration::from_secs(3), || {
        complete(&lab.assigned(), &rest) && lab.schedulers().len() == 1
    })
    .await
    .unwrap_or_else(|| panic!("{first}'s cameras not reassigned: {:?}", lab.assigned()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = lab.schedulers()[0].clone();
    assert_ne!(second, first);
    let (expiry, react) = lease_loss_figures(&timeline.lock().unwrap(), &first, dropped);
    eprintln!(
        "scheduler {first} dropped: lease expired after {} ms, {second} elected and stored the assignment \
         {} ms later, its {} cameras assigned to the others {} ms after the drop",
        expiry.as_millis(),
        react.as_millis(),
        sched_cameras.len(),
        took.as_millis()
    );
    assert!(took <= TTL + Duration::from_secs(1), "reassigned after {took:?}");
    assert_eq!(stored(&mut client).await.unwrap().scheduler, second);

    // etcd stops: every member keeps its cameras.
    watcher.abort();
    let kept = lab.assigned();
    lab.stop_etcd();
    let lost = wait_for(Duration::from_secs(10), || {
        lab.members.values().all(|m| !m.status().borrow().registered)
    })
    .await
    .expect("members notice that etcd is gone");
    tokio::time::sleep(TTL * 3).await;
    assert_eq!(lab.assigned(), kept, "cameras kept while etcd is down");
    eprintln!(
        "etcd stopped: members noticed after {} ms and kept all {} cameras for {} s",
        lost.as_millis(),
        kept.values().map(|c| c.len()).sum::<usize>(),
        (lost + TTL * 3).as_secs()
    );

    // etcd restarts: they register again, one scheduler, the same cameras.
    let restarted = Instant::now();
    lab.start_etcd();
    let mut client = lab.client().await;
    wait_for(Duration::from_secs(15), || {
        lab.members.values().all(|m| m.status().borrow().registered) && lab.schedulers().len() == 1
    })
    .await
    .unwrap_or_else(|| panic!("members did not register again after etcd restarted"));
    let back_after = restarted.elapsed();
    let registered = client
        .get(
            Keys::new(PREFIX).members(),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .unwrap()
        .kvs()
        .len();
    assert_eq!(registered, lab.members.len(), "one record per member");
    eprintln!(
        "etcd restarted: all members registered again and one scheduler elected {} ms after it was started",
        back_after.as_millis()
    );
    let names: Vec<&str> = lab.members.keys().map(String::as_str).collect();
    wait_for(Duration::from_secs(5), || complete(&lab.assigned(), &names))
        .await
        .expect("every camera still assigned");
    for (m, cams) in &kept {
        assert_eq!(
            &lab.assigned()[m],
            cams,
            "{m}: the same cameras after the restart (no churn)"
        );
    }
    drop(lab);
}
