//! The worker container of the Azure deployment, run offline: the real binary, started the way
//! docker/worker.Dockerfile starts it, with the environment bicep/workers.bicep gives it and the
//! two variables Container Apps adds for a managed identity (`IDENTITY_ENDPOINT`,
//! `IDENTITY_HEADER`), on a lake it can reach only with that identity's Microsoft Entra tokens.
//!
//! The stand-ins: the identity endpoint (tests/common/fake_identity.rs, the protocol Container
//! Apps and App Service document) and a storage account that takes bearer tokens and nothing
//! else from the workers (Azurite over HTTPS with `--oauth basic`, behind the front of
//! tests/common/blob_proxy.rs for List Blobs' `startFrom`). The front is the only thing the test
//! adds to the container's environment: `AZURE_STORAGE_ENDPOINT` and `AZURE_ALLOW_HTTP` point
//! object_store at it instead of `<account>.blob.core.windows.net`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use boxoffice_testkit::{Azurite, localhost_certificate};
use common::bicep::{entrypoint, read, worker_settings};
use common::blob_proxy::{BlobProxy, list_from, query_value};
use common::boxoffice;
use common::fake_identity::{FakeIdentity, STORAGE_RESOURCE};

/// Azurite's account: the "storage account" of the lake here.
const ACCOUNT: &str = "devstoreaccount1";
const CLIENT_ID: &str = "0d1c2b3a-4f5e-4d6c-8b7a-9f8e7d6c5b4a";
const IDENTITY_HEADER: &str = "7b0f2f7e-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
const PARTITIONS: u32 = 2;

/// A storage account reached only with tokens, an identity endpoint, and the environment of
/// the worker container pointed at them.
struct Cloud {
    dir: tempfile::TempDir,
    _azurite: Azurite,
    identity: FakeIdentity,
    front: BlobProxy,
    env: Vec<(String, String)>,
}

impl Cloud {
    fn new() -> Cloud {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = localhost_certificate(dir.path());
        let azurite = Azurite::start_with_tokens(&cert, &key);
        let identity = FakeIdentity::start(IDENTITY_HEADER, CLIENT_ID, 3600);
        let front = BlobProxy::start(
            &azurite.endpoint(),
            &std::fs::read(&cert).expect("certificate"),
        );
        // The deployment makes the lake's containers (storage.bicep); here with a token.
        let (token, _) = identity.state.issue(STORAGE_RESOURCE);
        for container in containers() {
            let status = front.create_container(ACCOUNT, &container, &token);
            assert_eq!(status, 201, "creating container {container}");
        }
        let mut env = worker_settings(ACCOUNT, CLIENT_ID, PARTITIONS);
        env.extend([
            ("IDENTITY_ENDPOINT".to_string(), identity.endpoint()),
            ("IDENTITY_HEADER".to_string(), IDENTITY_HEADER.to_string()),
            (
                "AZURE_STORAGE_ENDPOINT".to_string(),
                front.account_endpoint(ACCOUNT),
            ),
            ("AZURE_ALLOW_HTTP".to_string(), "true".to_string()),
        ]);
        Cloud {
            dir,
            _azurite: azurite,
            identity,
            front,
            env,
        }
    }

    /// The binary with the container's environment, in a scratch working directory.
    fn cmd(&self) -> Command {
        let mut cmd = boxoffice();
        cmd.current_dir(self.dir.path()).envs(self.env.clone());
        cmd
    }

    /// The image's command, as Container Apps starts it, with `more` arguments.
    fn worker(&self, name: &str, more: &[&str]) -> Child {
        let entry = entrypoint();
        let log = std::fs::File::create(self.log(name)).expect("log");
        self.cmd()
            .args(&entry[1..])
            .args(["--name", name, "--interval", "300ms"])
            .args(more)
            .stdout(log)
            .stderr(Stdio::piped())
            .spawn()
            .expect("worker starts")
    }

    fn log(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn sql(&self, query: &str) -> Vec<String> {
        let out = run(self.cmd().args(["sql", "--format", "csv", query]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect()
    }
}

/// The lake's containers, as bicep/storage.bicep declares them.
fn containers() -> Vec<String> {
    let storage = read("bicep/storage.bicep");
    let start = storage
        .find("var lakeContainers = [")
        .expect("storage.bicep: var lakeContainers");
    let body = &storage[start..];
    let body = &body[..body.find(']').expect("array end")];
    body.split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn wait(mut child: Child, within: Duration, log: &Path) -> String {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
            }
            let out = std::fs::read_to_string(log).unwrap_or_default();
            assert!(status.success(), "worker failed ({status}):\n{out}\n{err}");
            return out;
        }
        if started.elapsed() > within {
            let _ = child.kill();
            panic!(
                "a worker did not finish within {within:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_worker_container_joins_a_lake_it_reaches_only_with_its_managed_identity() {
    let cloud = Cloud::new();

    // Events land in Bronze (what the Functions archive triggers do in Azure), with the same
    // identity: `up` writes through the same lake client.
    run(cloud.cmd().args([
        "up",
        "--no-jobs",
        "--no-dashboard",
        "--speed",
        "10",
        "--duration",
        "5s",
    ]));
    let landed: u64 = cloud.sql("select count(*) from bronze.bookings_raw")[0]
        .parse()
        .expect("count");
    assert!(landed > 50, "bookings landed: {landed}");

    // Two replicas of the container, one shard each, draining what landed.
    let started: Vec<(String, Child)> = ["replica-a", "replica-b"]
        .iter()
        .map(|name| {
            let child = cloud.worker(name, &["--drain", "--min-workers", "2"]);
            (name.to_string(), child)
        })
        .collect();
    let logs: Vec<String> = started
        .into_iter()
        .map(|(name, child)| wait(child, Duration::from_secs(240), &cloud.log(&name)))
        .collect();
    let all = logs.join("\n");
    // The split came from the container's environment, the lake from its BOXOFFICE_LAKE.
    assert!(
        all.contains(&format!(
            "started on Azure az://bronze/ (account {ACCOUNT}) (2 shards over 2 partitions per hub"
        )),
        "{all}"
    );
    for (log, name) in logs.iter().zip(["replica-a", "replica-b"]) {
        assert!(log.contains("took shard"), "{name} took no shard:\n{log}");
    }
    assert!(all.contains("drained: every shard"), "{all}");

    // Every booking is in Silver (paid or unpaid) and Gold was refreshed.
    let joined: u64 = cloud.sql(
        "select (select count(distinct booking_event_uid) from silver.bookings_fact) \
         + (select count(*) from silver.unpaid_bookings)",
    )[0]
    .parse()
    .expect("count");
    assert!(joined > 50, "bookings joined: {joined}");
    let gold: u64 = cloud.sql("select count(*) from gold.event_performance")[0]
        .parse()
        .expect("count");
    assert!(gold > 0, "Gold is empty");

    // How the lake was reached: every token asked of the identity endpoint was for storage, for
    // the container's identity, with the platform's header; every request to the account
    // carried a bearer token, and the account refused none.
    let requests = cloud.identity.requests();
    assert!(!requests.is_empty(), "no token was asked for");
    for request in &requests {
        assert_eq!(request.answered, 200, "{request:?}");
        assert_eq!(request.query["resource"], STORAGE_RESOURCE, "{request:?}");
        assert_eq!(request.query["client_id"], CLIENT_ID, "{request:?}");
    }
    let forwarded = cloud.front.forwarded();
    let schemes: BTreeSet<&str> = forwarded.iter().map(|f| f.scheme.as_str()).collect();
    assert_eq!(schemes, BTreeSet::from(["Bearer"]), "{forwarded:?}");
    let refused: Vec<_> = forwarded
        .iter()
        .filter(|f| f.status == 401 || f.status == 403)
        .collect();
    assert!(refused.is_empty(), "refused requests: {refused:?}");
}

#[test]
fn the_front_lists_from_the_name_given_as_azure_does() {
    let xml = "<?xml?><EnumerationResults><Prefix>t/_delta_log/</Prefix><Blobs>\
               <Blob><Name>t/_delta_log/00.json</Name><Properties/></Blob>\
               <Blob><Name>t/_delta_log/01.json</Name><Properties/></Blob>\
               <Blob><Name>t/_delta_log/02.json</Name><Properties/></Blob>\
               </Blobs><NextMarker/></EnumerationResults>";
    let listed = list_from(xml, "t/_delta_log/01.json");
    assert!(!listed.contains("00.json"), "{listed}");
    assert!(
        listed.contains("01.json") && listed.contains("02.json"),
        "{listed}"
    );
    assert!(listed.ends_with("</Blobs><NextMarker/></EnumerationResults>"));
    assert_eq!(
        query_value(
            "restype=container&comp=list&startFrom=a%2Fb%2F01",
            "startFrom"
        )
        .as_deref(),
        Some("a/b/01")
    );
}
