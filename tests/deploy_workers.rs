//! The Container Apps workers of the Azure deployment, checked offline: azure.yaml's `worker`
//! service, docker/worker.Dockerfile and bicep/workers.bicep agree with each other, with
//! main.bicep, the function app and function.json, and with what the binary reads; the image's
//! command is a `boxoffice worker` the CLI accepts and that runs with the container's settings;
//! and run_jobs cannot run beside the workers. tests/azure_workers.rs runs the container's command
//! against a lake reached only with managed identity tokens. What needs a subscription is
//! listed in docs/azure.md.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bicep::{entrypoint, read, root, worker_env, worker_settings};
use common::functions_host::{invoke, serve_with, timer};
use common::{boxoffice, run_ok};
use yaml_rust2::{Yaml, YamlLoader};

fn azure_yaml() -> Yaml {
    YamlLoader::load_from_str(&read("azure.yaml"))
        .expect("azure.yaml is YAML")
        .remove(0)
}

/// A `resource <name> ...` block of a Bicep file, to its closing brace at the line's start.
fn resource(file: &str, name: &str) -> String {
    let text = read(file);
    let start = text
        .find(&format!("\nresource {name} "))
        .unwrap_or_else(|| panic!("{file} has no resource {name}"));
    let block = &text[start + 1..];
    let end = block.find("\n}").expect("the block ends");
    block[..end + 2].to_string()
}

/// The names of the resources of a Bicep file whose type starts with `kind`.
fn resources_of(file: &str, kind: &str) -> Vec<String> {
    read(file)
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("resource ")?;
            let (name, rest) = rest.split_once(' ')?;
            rest.starts_with(&format!("'{kind}"))
                .then(|| name.to_string())
        })
        .collect()
}

/// The value of `key: value` in a block of Bicep (the first such line).
fn field<'a>(block: &'a str, key: &str) -> &'a str {
    block
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{block}"))
}

/// The main.bicep outputs, name to expression.
fn outputs() -> Vec<(String, String, String)> {
    read("infra/main.bicep")
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("output ")?;
            let mut words = rest.splitn(3, ' ');
            let name = words.next()?.to_string();
            let kind = words.next()?.to_string();
            let expr = words.next()?.trim_start_matches("= ").to_string();
            Some((name, kind, expr))
        })
        .collect()
}

#[test]
fn azure_yaml_deploys_the_dockerfile_to_the_container_app_main_bicep_makes() {
    let yaml = azure_yaml();
    let worker = &yaml["services"]["worker"];
    assert_eq!(worker["host"].as_str(), Some("containerapp"));
    assert_eq!(worker["language"].as_str(), Some("docker"));
    assert_eq!(worker["project"].as_str(), Some("."));
    // The Dockerfile exists where the service says, relative to the service folder.
    let docker = &worker["docker"];
    let dockerfile = docker["path"].as_str().expect("docker.path");
    assert!(
        root().join(dockerfile).is_file(),
        "{dockerfile} does not exist"
    );
    assert_eq!(docker["remoteBuild"].as_bool(), Some(true));
    // The build context is what the prepackage hook fills: the executable alone.
    let context = docker["context"].as_str().expect("docker.context");
    let hook = worker["hooks"]["prepackage"]["run"]
        .as_str()
        .expect("prepackage hook");
    let filled = hook
        .split_once("--worker-out ")
        .map(|(_, rest)| rest.split_whitespace().next().unwrap_or_default())
        .expect("the hook passes --worker-out");
    assert_eq!(context.trim_start_matches("./"), filled, "{hook}");
    // The Dockerfile copies that executable to where its ENTRYPOINT runs it.
    let text = read(dockerfile);
    assert!(
        text.lines()
            .any(|l| l.starts_with("FROM gcr.io/distroless/static")),
        "a distroless static base (CA certificates, no libc): {text}"
    );
    let entry = entrypoint();
    assert!(
        text.lines()
            .any(|l| l == format!("COPY boxoffice {}", entry[0])),
        "{text}"
    );

    // Deployed only when main.bicep made the app: the condition is a main.bicep output that is
    // true exactly for workers = 'containerapps'.
    let condition = worker["condition"].as_str().expect("condition");
    let output = condition
        .strip_prefix("${")
        .and_then(|c| c.strip_suffix('}'))
        .expect("condition: ${OUTPUT}");
    let outs = outputs();
    assert!(
        outs.iter().any(|(name, kind, expr)| name == output
            && kind == "bool"
            && expr == "workers == 'containerapps'"),
        "main.bicep: output {output} bool = workers == 'containerapps' ({outs:?})"
    );
    // azd pushes the image to AZURE_CONTAINER_REGISTRY_ENDPOINT, which main.bicep outputs.
    assert!(
        outs.iter().any(
            |(name, _, expr)| name == "AZURE_CONTAINER_REGISTRY_ENDPOINT"
                && expr.contains("registryLoginServer")
        ),
        "{outs:?}"
    );
    // azd finds the app by the service's name in its tag; main makes it only for containerapps.
    let app = resource("bicep/workers.bicep", "app");
    assert!(
        app.contains("union(tags, { 'azd-service-name': 'worker' })"),
        "{app}"
    );
    assert!(read("infra/main.bicep").contains(
        "module workerApps '../bicep/workers.bicep' = if (workers == 'containerapps') {"
    ));
    // The default stays the function app running the jobs.
    assert!(read("infra/main.bicep").contains("param workers string = 'functions'"));
    assert!(
        read("infra/main.parameters.json")
            .contains("\"value\": \"${BOXOFFICE_WORKERS=functions}\"")
    );
}

/// `(name, has a default)` for each `param` of a Bicep file.
fn params(file: &str) -> Vec<(String, bool)> {
    read(file)
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("param ")?;
            let name = rest.split_whitespace().next()?.to_string();
            Some((name, rest.contains(" = ")))
        })
        .collect()
}

#[test]
fn main_bicep_gives_the_workers_module_exactly_parameters_it_declares() {
    let main = read("infra/main.bicep");
    let start = main.find("module workerApps").expect("module workerApps");
    let block = &main[start..];
    let block = &block[block.find("  params: {").expect("params")..];
    let block = &block[..block.find("\n  }").expect("end of params")];
    let given: BTreeSet<String> = block
        .lines()
        .skip(1)
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.to_string()))
        .collect();
    let declared = params("bicep/workers.bicep");
    for name in &given {
        assert!(
            declared.iter().any(|(n, _)| n == name),
            "main.bicep passes {name}, which workers.bicep does not declare"
        );
    }
    for (name, has_default) in &declared {
        assert!(
            *has_default || given.contains(name),
            "workers.bicep needs {name}, which main.bicep does not pass"
        );
    }
    // The image module gets what it declares too.
    let image = params("bicep/workers-image.bicep");
    assert_eq!(
        image,
        vec![
            ("exists".to_string(), false),
            ("appName".to_string(), false)
        ]
    );
    assert!(read("bicep/workers.bicep").contains("    exists: exists\n    appName: appName\n"));
}

#[test]
fn the_image_command_is_a_worker_that_runs_with_the_container_settings() {
    let entry = entrypoint();
    assert_eq!(entry[1..], ["worker"], "the image runs `boxoffice worker`");
    // The CLI accepts it.
    let help = run_ok(boxoffice().args(&entry[1..]).arg("--help"));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--drain"));

    // With the container's settings (the lake moved to a local folder: tests/azure_workers.rs
    // runs the Azure one), the worker takes the split from them: 4 partitions, one shard each.
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let settings = worker_settings("stlakeexample", "5e29463d-71da-4fe0-8e69-999b57db23b0", 4);
    let names: BTreeSet<&str> = settings.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "BOXOFFICE_LAKE",
            "AZURE_CLIENT_ID",
            "BOXOFFICE_JOBS_PARTITIONS_PER_HUB",
            "BOXOFFICE_JOBS_SHARDS"
        ])
    );
    let out = run_ok(
        boxoffice()
            .current_dir(dir.path())
            .envs(settings)
            .env("BOXOFFICE_LAKE", &lake)
            .args(&entry[1..])
            .args([
                "--name",
                "replica-0",
                "--interval",
                "200ms",
                "--duration",
                "2s",
            ]),
    );
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("(4 shards over 4 partitions per hub"),
        "the split is not the container's: {log}"
    );
    for shard in 0..4 {
        assert!(log.contains(&format!("took shard {shard}")), "{log}");
    }
    // The Bicep gives the lake main.bicep builds, and the identity object_store asks for.
    let env = worker_env();
    assert!(env.contains(&("BOXOFFICE_LAKE".into(), "lakeUrl".into())));
    assert!(
        read("infra/main.bicep").contains("    lakeUrl: lakeUrl\n    hostAccountName:"),
        "main.bicep passes its lake URL to the workers"
    );
    assert!(env.contains(&(
        "AZURE_CLIENT_ID".into(),
        "identity.properties.clientId".into()
    )));
}

#[test]
fn scripts_package_leaves_the_static_executable_alone_in_the_worker_context() {
    let binary = std::env::var("BOXOFFICE_STATIC_BINARY").expect(
        "BOXOFFICE_STATIC_BINARY: ./scripts/test builds the static executable with scripts/package and sets it",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let context = dir.path().join("worker");
    std::fs::create_dir_all(&context).expect("mkdir");
    std::fs::write(context.join("stale"), "from an earlier run").expect("write");
    run_ok(
        Command::new(root().join("scripts/package"))
            .args(["--binary", &binary, "--out"])
            .arg(dir.path().join("functions"))
            .arg("--zip")
            .arg(dir.path().join("package.zip"))
            .arg("--worker-out")
            .arg(&context),
    );
    let files: Vec<String> = std::fs::read_dir(&context)
        .expect("context")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files,
        ["boxoffice"],
        "the context holds the executable alone"
    );
    let exe = context.join("boxoffice");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&exe).expect("metadata").permissions(),
    );
    assert!(mode & 0o111 != 0, "executable (mode {mode:o})");
    let help = run_ok(Command::new(&exe).args(["worker", "--help"]));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--drain"));
}

#[test]
fn the_worker_identity_has_a_role_for_everything_the_worker_and_its_scale_rules_touch() {
    let file = "bicep/workers.bicep";
    let mut granted = BTreeSet::new();
    for name in resources_of(file, "Microsoft.Authorization/roleAssignments") {
        let block = resource(file, &name);
        assert_eq!(
            field(&block, "principalId"),
            "identity.properties.principalId",
            "{block}"
        );
        let role = field(&block, "roleDefinitionId");
        let role = role
            .split("roles.")
            .nth(1)
            .and_then(|r| r.strip_suffix(')'))
            .expect("roles.<name>");
        granted.insert((field(&block, "scope").to_string(), role.to_string()));
    }
    let expected: BTreeSet<(String, String)> = [
        ("registry", "acrPull"),                  // pull the image
        ("lake", "storageBlobDataContributor"),   // read Bronze, write the rest
        ("hostAccount", "storageBlobDataReader"), // the scale rules: the archive's checkpoints
        ("namespace", "eventHubsDataReceiver"),   // the scale rules: the partitions' positions
    ]
    .iter()
    .map(|(s, r)| (s.to_string(), r.to_string()))
    .collect();
    assert_eq!(granted, expected);
    // The same role ids as the function app's roles of the same name.
    let roles = |f: &str| -> Vec<(String, String)> {
        let text = read(f);
        let start = text.find("var roles = {").expect("var roles");
        let body = &text[start..start + text[start..].find('}').expect("end")];
        body.lines()
            .filter_map(|l| {
                let (k, v) = l.trim().split_once(": '")?;
                Some((k.to_string(), v.trim_end_matches('\'').to_string()))
            })
            .collect()
    };
    let ours = roles(file);
    for (name, id) in roles("bicep/rbac.bicep") {
        if let Some((_, other)) = ours.iter().find(|(n, _)| *n == name) {
            assert_eq!(*other, id, "{name}");
        }
    }
    assert!(ours.contains(&(
        "acrPull".into(),
        "7f951dca-d3f6-4d6b-a7f5-1c66d4eb5a3b".into()
    )));
    // Those resources are the ones the workers use: the lake and host accounts main.bicep made.
    assert_eq!(
        field(&resource(file, "lake"), "name"),
        "lakeAccountName",
        "the lake account"
    );
    let main = read("infra/main.bicep");
    let module = &main[main.find("module workerApps").expect("module")..];
    assert!(module.contains("lakeAccountName: storage.outputs.lakeAccountName"));
    assert!(module.contains("hostAccountName: storage.outputs.hostAccountName"));
    assert!(module.contains("eventHubNamespaceName: eventhubs.outputs.namespaceName"));
    // The app pulls with the identity, and the scale rules read with it.
    let app = resource(file, "app");
    assert!(app.contains("identity: identity.id"), "{app}");
    assert!(
        read(file).contains("    type: 'azure-eventhub'\n    identity: identity.id\n"),
        "the lag rules use the identity"
    );
}

#[test]
fn the_scale_rules_read_the_lag_of_the_archive_triggers_and_stop_at_one_replica_per_shard() {
    let file = read("bicep/workers.bicep");
    let start = file
        .find("var lagRules = [for hub in hubNames: {")
        .expect("one lag rule per hub");
    let rule = &file[start..start + file[start..].find("}]").expect("end")];
    let metadata = &rule[rule.find("metadata: {").expect("metadata")..];
    let keys: BTreeSet<&str> = metadata
        .lines()
        .skip(1)
        .filter_map(|l| l.trim().split_once(": ").map(|(k, _)| k))
        .collect();
    // KEDA's azure-eventhub scaler with an identity (no connection strings): these names.
    assert_eq!(
        keys,
        BTreeSet::from([
            "eventHubNamespace",
            "eventHubName",
            "consumerGroup",
            "storageAccountName",
            "blobContainer",
            "checkpointStrategy",
            "unprocessedEventThreshold"
        ])
    );
    // Where the Functions Event Hubs extension keeps its checkpoints: blob metadata in
    // azure-webjobs-eventhub of the host's storage account.
    assert!(
        rule.contains("checkpointStrategy: 'blobMetadata'"),
        "{rule}"
    );
    assert!(
        rule.contains("blobContainer: 'azure-webjobs-eventhub'"),
        "{rule}"
    );
    assert!(
        rule.contains("storageAccountName: hostAccountName"),
        "{rule}"
    );
    assert!(rule.contains("eventHubName: hub"), "{rule}");
    assert!(
        rule.contains("consumerGroup: archiveConsumerGroup"),
        "{rule}"
    );
    assert!(file.contains("param archiveConsumerGroup string = 'bronze-archiver'"));
    for function in ["archive_bookings", "archive_payments"] {
        let json: serde_json::Value =
            serde_json::from_str(&read(&format!("{function}/function.json"))).expect("JSON");
        assert_eq!(
            json["bindings"][0]["consumerGroup"], "bronze-archiver",
            "{function} reads the group the rules watch"
        );
    }
    assert!(
        read("bicep/functionapp.bicep")
            .contains("'AzureWebJobsStorage__accountName': hostAccount.name"),
        "the host account is the Functions host's storage"
    );
    assert!(read("infra/main.bicep").contains("hubNames: eventhubs.outputs.hubNames"));
    // At least one replica (the lake jobs' leases), at most one per shard.
    assert!(file.contains("minReplicas: min(minReplicas, partitionCount)"));
    assert!(file.contains(
        "maxReplicas: max(min(maxReplicas, partitionCount), min(minReplicas, partitionCount))"
    ));
    assert!(file.contains("@minValue(1)\nparam minReplicas int = 1"));
    assert!(file.contains("rules: lagRules"));
}

#[test]
fn the_function_app_and_the_workers_share_the_split_and_run_jobs_is_off_under_workers() {
    let functions = read("bicep/functionapp.bicep");
    for key in ["BOXOFFICE_JOBS_PARTITIONS_PER_HUB", "BOXOFFICE_JOBS_SHARDS"] {
        assert!(
            functions.contains(&format!("'{key}': string(eventHubPartitionCount)")),
            "functionapp.bicep sets {key} to the partition count"
        );
        assert!(
            worker_env().contains(&(key.to_string(), "string(partitionCount)".to_string())),
            "workers.bicep sets {key} to the partition count"
        );
    }
    assert!(root().join("run_jobs/function.json").is_file());
    assert!(functions.contains("'AzureWebJobs.run_jobs.Disabled': runJobs ? 'false' : 'true'"));
    assert!(read("infra/main.bicep").contains("runJobs: workers == 'functions'"));
}

#[test]
fn run_jobs_beside_a_worker_is_refused_naming_it_and_runs_once_the_worker_is_gone() {
    // Leases keep the function app's run_jobs from running beside the workers even if it were
    // left on: the same split for both, as the Bicep gives them.
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let split = [
        ("BOXOFFICE_JOBS_PARTITIONS_PER_HUB", "2"),
        ("BOXOFFICE_JOBS_SHARDS", "2"),
    ];
    let mut worker = boxoffice()
        .current_dir(dir.path())
        .envs(split)
        .env("BOXOFFICE_LAKE", &lake)
        .args(["worker", "--name", "replica-0", "--interval", "200ms"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("worker starts");
    let lines = BufReader::new(worker.stdout.take().expect("stdout"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut taken = BTreeSet::new();
    while taken.len() < 2 {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the worker takes both shards within 60 s");
        if let Some(shard) = line.split("took shard ").nth(1) {
            taken.insert(
                shard
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    let lake_arg = lake.to_str().expect("utf-8");
    let server = serve_with(&["--lake", lake_arg], &split);
    let (status, reply) = invoke(&server, "run_jobs", &timer());
    assert_ne!(status, 200, "run_jobs ran beside a worker: {reply}");
    let said = reply.to_string();
    assert!(said.contains("boxoffice worker replica-0"), "{said}");

    // The worker stops as on a scale-in (SIGTERM): it hands its shards back, run_jobs runs.
    run_ok(Command::new("kill").args(["-TERM", &worker.id().to_string()]));
    assert!(worker.wait().expect("worker exits").success());
    let (status, reply) = invoke(&server, "run_jobs", &timer());
    assert_eq!(status, 200, "{reply}");
}
