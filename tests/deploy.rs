//! The Azure deployment, checked offline: every Bicep file parses (pycep-parser, from PyPI); the
//! Bicep agrees with function.json, local.settings.json.example, the lake's layers, the built-in
//! role ids docs/azure.md lists, azure.yaml and docs/azure.md; and the package `scripts/package`
//! makes holds host.json, every function.json and a statically linked executable where host.json
//! says. What needs a subscription is listed in docs/azure.md.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use boxoffice_lake::Layer;
use common::{run_err, run_ok};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The Python with pycep-parser that ./scripts/test installs.
fn python() -> String {
    std::env::var("BOXOFFICE_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Every .bicep file of the deployment.
fn bicep_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["infra", "bicep"] {
        for entry in std::fs::read_dir(root().join(dir)).expect(dir) {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "bicep") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The quoted strings of a Bicep array literal `var <name> = [ ... ]`.
fn bicep_array(path: &str, name: &str) -> BTreeSet<String> {
    let text = read(path);
    let start = text
        .find(&format!("var {name} = ["))
        .unwrap_or_else(|| panic!("{path} has no `var {name} = [`"));
    let body = &text[start..];
    let body = &body[..body.find(']').expect("array end")];
    quoted(body)
}

/// Every '...' string in a piece of Bicep.
fn quoted(text: &str) -> BTreeSet<String> {
    text.split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The keys of the function app's app settings: each `'KEY':` line of functionapp.bicep.
fn app_settings() -> BTreeSet<String> {
    read("bicep/functionapp.bicep")
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix('\'')?;
            let (key, after) = rest.split_once('\'')?;
            after.trim_start().starts_with(':').then(|| key.to_string())
        })
        .collect()
}

/// Every binding of every function.json.
fn bindings() -> Vec<Value> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(root()).expect("root") {
        let function = entry.expect("entry").path().join("function.json");
        if function.exists() {
            let value: Value =
                serde_json::from_str(&std::fs::read_to_string(&function).expect("read"))
                    .expect("function.json is JSON");
            all.extend(
                value["bindings"]
                    .as_array()
                    .expect("bindings")
                    .iter()
                    .cloned(),
            );
        }
    }
    assert!(!all.is_empty(), "no function.json found");
    all
}

fn binding_values(key: &str) -> BTreeSet<String> {
    bindings()
        .iter()
        .filter_map(|b| b[key].as_str().map(str::to_string))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_bicep_file_parses() {
    let files = bicep_files();
    assert!(
        files.len() >= 6,
        "infra/main.bicep and the bicep/ modules: {files:?}"
    );
    let out = Command::new(python())
        .arg("-c")
        .arg(
            "import sys\nfrom pathlib import Path\nfrom pycep import BicepParser\n\
             for p in sys.argv[1:]:\n    BicepParser().parse(file_path=Path(p))\n    print('parsed', p)",
        )
        .args(&files)
        .output()
        .expect("python runs (./scripts/test installs pycep-parser into its virtualenv)");
    assert!(
        out.status.success(),
        "a Bicep file does not parse:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        files.len(),
        "every file was parsed"
    );
}

#[test]
fn hubs_and_consumer_groups_are_those_the_functions_use() {
    let hubs = bicep_array("bicep/eventhubs.bicep", "hubs");
    assert_eq!(hubs, binding_values("eventHubName"));
    assert_eq!(hubs, set(&["bookings", "payments"]));
    let groups = bicep_array("bicep/eventhubs.bicep", "consumerGroups");
    assert_eq!(groups, set(&["bronze-archiver", "analytics"]));
    for used in binding_values("consumerGroup") {
        assert!(
            groups.contains(&used),
            "function.json uses consumer group {used}"
        );
    }
    let eventhubs = read("bicep/eventhubs.bicep");
    assert!(
        eventhubs.contains("param partitionCount int = 2")
            && eventhubs.contains("partitionCount: partitionCount")
            && eventhubs.contains("output partitionCount int = partitionCount"),
        "2 partitions per hub by default, the same on both, given to the app"
    );
}

/// The function app's app settings as `(key, value)`: literal values as they are, the few
/// expressions replaced by what Azure would put there.
fn app_setting_values() -> Vec<(String, String)> {
    let expressions = [
        (
            "eventHubFullyQualifiedNamespace",
            "evhns-test.servicebus.windows.net",
        ),
        (
            "identity.properties.clientId",
            "5e29463d-71da-4fe0-8e69-999b57db23b0",
        ),
        ("string(eventHubPartitionCount)", "2"),
    ];
    read("bicep/functionapp.bicep")
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix('\'')?;
            let (key, after) = rest.split_once('\'')?;
            let expr = after.trim_start().strip_prefix(':')?.trim();
            let value = match expr.strip_prefix('\'') {
                Some(literal) => literal.trim_end_matches('\'').to_string(),
                None => expressions
                    .iter()
                    .find(|(e, _)| *e == expr)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_else(|| format!("<{expr}>")),
            };
            Some((key.to_string(), value))
        })
        .collect()
}

#[test]
fn the_deployed_app_sends_co_partitioned_over_rest_with_its_managed_identity() {
    // The namespace takes no keys: the app's identity, a Data Sender, is the only way in.
    assert!(read("bicep/eventhubs.bicep").contains("disableLocalAuth: true"));
    let rbac = read("bicep/rbac.bicep");
    assert!(rbac.contains("roles.eventHubsDataSender") && rbac.contains("scope: namespace"));
    // main.bicep hands the hubs' partition count to the app.
    assert!(
        read("infra/main.bicep")
            .contains("eventHubPartitionCount: eventhubs.outputs.partitionCount")
    );
    // The settings the Bicep gives, in the binary: inside Azure (an identity endpoint) serve
    // sends over REST with the identity and the given partition count; nothing else decides.
    let settings: Vec<(String, String)> = app_setting_values()
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with("EventHubConnection")
                || k == "BOXOFFICE_SEND_VIA"
                || k == "EventHubPartitionCount"
        })
        .collect();
    assert_eq!(settings.len(), 5, "{settings:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("serve.log");
    let mut env: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.push(("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token"));
    env.push(("IDENTITY_HEADER", "set-by-app-service"));
    let server = common::functions_host::serve_logging(
        &["--lake", lake.to_str().expect("utf-8")],
        &env,
        Some(&log),
    );
    drop(server);
    let started = std::fs::read_to_string(&log).expect("log");
    assert!(
        started.contains(
            "send over REST as managed identity 5e29463d-71da-4fe0-8e69-999b57db23b0, each order to partition CRC-32(order_id) mod P of both hubs, P = 2"
        ),
        "{started}"
    );
}

#[test]
fn connection_settings_match_function_json_and_local_settings() {
    let settings = app_settings();
    let local = json("local.settings.json.example");
    let local: BTreeSet<String> = local["Values"]
        .as_object()
        .expect("Values")
        .keys()
        .cloned()
        .collect();
    // Every connection a binding names, and the host's own storage: identity-based in Azure
    // (`<name>__...`), a connection string locally.
    let mut connections = binding_values("connection");
    connections.insert("AzureWebJobsStorage".to_string());
    for name in &connections {
        assert!(
            local.contains(name),
            "local.settings.json.example lacks {name}"
        );
        for suffix in ["credential", "clientId"] {
            assert!(
                settings.contains(&format!("{name}__{suffix}")),
                "functionapp.bicep lacks {name}__{suffix}: {settings:?}"
            );
        }
    }
    for name in binding_values("connection") {
        assert!(
            settings.contains(&format!("{name}__fullyQualifiedNamespace")),
            "functionapp.bicep lacks {name}__fullyQualifiedNamespace"
        );
    }
    assert!(settings.contains("AzureWebJobsStorage__accountName"));
    // boxoffice's own settings go to Azure too, with Azure values; the emulator switch does not,
    // and Flex Consumption sets the worker runtime itself.
    for key in &local {
        if connections.contains(key)
            || ["FUNCTIONS_WORKER_RUNTIME", "AZURE_STORAGE_USE_EMULATOR"].contains(&key.as_str())
        {
            continue;
        }
        assert!(
            settings.contains(key),
            "functionapp.bicep lacks app setting {key}"
        );
    }
    assert!(
        settings.contains("BUNDLE_VAR_storage_account"),
        "the bundle's azure target needs it"
    );
}

#[test]
fn the_lake_containers_are_the_layers() {
    let containers = bicep_array("bicep/storage.bicep", "lakeContainers");
    let layers: BTreeSet<String> = Layer::ALL
        .iter()
        .map(|l| l.container_name().to_string())
        .collect();
    assert_eq!(containers, layers);
    let storage = read("bicep/storage.bicep");
    assert!(
        storage.contains("isHnsEnabled: true"),
        "the lake is ADLS Gen2"
    );
    // The lake URL the app gets names every layer's container.
    let main = read("infra/main.bicep") + &read("bicep/functionapp.bicep");
    assert!(
        main.contains("abfss://{layer}@"),
        "BOXOFFICE_LAKE is abfss://{{layer}}@<account>..."
    );
}

#[test]
fn role_ids_are_those_docs_azure_lists() {
    let ids = ["bicep/rbac.bicep", "bicep/workers.bicep"]
        .iter()
        .flat_map(|f| {
            // The `var roles = { ... }` block, where the ids are (descriptions elsewhere may
            // hold apostrophes).
            let text = read(f);
            let start = text.find("var roles = {").expect("var roles");
            let end = start + text[start..].find('}').expect("end");
            quoted(&text[start..end])
        })
        .filter(|s| s.len() == 36 && s.matches('-').count() == 4)
        .collect::<BTreeSet<_>>();
    // The roles docs/azure.md lists: the app's five, Storage Blob Data Reader for the deploying
    // user (and the workers' scale rules), and AcrPull for the workers.
    let expected = set(&[
        "7f951dca-d3f6-4d6b-a7f5-1c66d4eb5a3b", // AcrPull
        "2b629674-e913-4c01-ae53-ef4638d8f975", // Event Hubs Data Sender
        "a638d3c7-ab3a-418d-83e6-5f17a39d4fde", // Event Hubs Data Receiver
        "ba92f5b4-2d11-453d-a403-e96b0029c9fe", // Storage Blob Data Contributor
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b", // Storage Blob Data Owner
        "3913510d-42f4-4e42-8a64-420c390055eb", // Monitoring Metrics Publisher
        "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1", // Storage Blob Data Reader
    ]);
    assert_eq!(ids, expected);
    let doc = read("docs/azure.md");
    for id in &expected {
        assert!(
            doc.contains(id.as_str()),
            "docs/azure.md does not list role {id}"
        );
    }
}

#[test]
fn main_bicep_outputs_what_azure_yaml_and_the_docs_use() {
    let outputs: BTreeSet<String> = read("infra/main.bicep")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("output "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    // azd's own variables, which azd sets before provisioning.
    let azd = set(&[
        "AZURE_ENV_NAME",
        "AZURE_LOCATION",
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_PRINCIPAL_ID",
    ]);
    for file in ["azure.yaml", "infra/main.parameters.json"] {
        for used in read(file).split("${").skip(1) {
            let name: String = used
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if used[name.len()..].starts_with('=') {
                // A parameter with a default: one a user may set with `azd env set`
                // (BOXOFFICE_WORKERS, ...), or one azd sets itself (SERVICE_<name>_RESOURCE_EXISTS).
                continue;
            }
            assert!(
                outputs.contains(&name) || azd.contains(&name),
                "{file} uses ${{{name}}}, which main.bicep does not output"
            );
        }
    }
    let azure = read("docs/azure.md");
    let deploy = &azure[azure
        .find("## Deploy with `azd up`")
        .expect("docs/azure.md: ## Deploy with `azd up`")..];
    for output in &outputs {
        assert!(
            deploy.contains(output.as_str()),
            "docs/azure.md's Deploy section does not name output {output}"
        );
    }
    for needed in [
        "AZURE_FUNCTION_APP_NAME",
        "LAKE_STORAGE_ACCOUNT",
        "BOXOFFICE_LAKE",
        "EVENTHUB_NAMESPACE",
    ] {
        assert!(outputs.contains(needed), "main.bicep outputs {needed}");
    }
}

/// The names and Unix modes of a zip's entries, and the executable extracted to `exe`.
fn zip_entries(zip: &Path, exe_name: &str, exe: &Path) -> Vec<(String, u32)> {
    let out = run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(
                "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\n\
             for i in z.infolist(): print(oct(i.external_attr >> 16), i.filename)\n\
             open(sys.argv[3], 'wb').write(z.read(sys.argv[2]))",
            )
            .arg(zip)
            .arg(exe_name)
            .arg(exe),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(mode, name)| {
            (
                name.to_string(),
                u32::from_str_radix(mode.trim_start_matches("0o"), 8).unwrap_or(0),
            )
        })
        .collect()
}

/// Whether an ELF executable names a program interpreter (is dynamically linked).
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF", "an ELF file");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().expect("8 bytes")) as usize;
    let (size, count) = (u16_at(54), u16_at(56));
    (0..count).any(|i| {
        let at = phoff + i * size;
        u32::from_le_bytes(elf[at..at + 4].try_into().expect("4 bytes")) == 3 // PT_INTERP
    })
}

#[test]
fn the_package_holds_the_host_the_functions_and_a_static_executable() {
    let binary = std::env::var("BOXOFFICE_STATIC_BINARY").expect(
        "BOXOFFICE_STATIC_BINARY: ./scripts/test builds the static executable with scripts/package and sets it",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let zip = dir.path().join("package.zip");
    run_ok(
        Command::new(root().join("scripts/package"))
            .args(["--binary", &binary, "--out"])
            .arg(dir.path().join("functions"))
            .arg("--zip")
            .arg(&zip),
    );

    let host = json("host.json");
    let exe_name = host["customHandler"]["description"]["defaultExecutablePath"]
        .as_str()
        .expect("defaultExecutablePath");
    let exe = dir.path().join("extracted");
    let entries = zip_entries(&zip, exe_name, &exe);
    let names: BTreeSet<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains("host.json"), "{names:?}");
    for entry in std::fs::read_dir(root()).expect("root") {
        let path = entry.expect("entry").path();
        if path.join("function.json").exists() {
            let name = format!(
                "{}/function.json",
                path.file_name().expect("name").to_string_lossy()
            );
            assert!(
                names.contains(name.as_str()),
                "the package lacks {name}: {names:?}"
            );
        }
    }
    let mode = entries
        .iter()
        .find(|(n, _)| n == exe_name)
        .map(|(_, m)| *m)
        .expect("the executable is in the package");
    assert!(
        mode & 0o111 != 0,
        "{exe_name} is executable in the zip (mode {mode:o})"
    );
    let elf = std::fs::read(&exe).expect("extracted executable");
    assert!(!has_interpreter(&elf), "{exe_name} is statically linked");
    // And it runs on its own.
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let help = Command::new(&exe)
        .arg("--help")
        .output()
        .expect("the packaged executable runs");
    assert!(help.status.success() && String::from_utf8_lossy(&help.stdout).contains("serve"));
}

#[test]
fn a_dynamically_linked_executable_is_refused() {
    // The test build links statically, as the package does (one build serves both): any
    // dynamically linked program of the system stands in for a wrong build.
    let dynamic = ["/usr/bin/env", "/bin/sh", "/bin/ls"]
        .into_iter()
        .find(|p| std::fs::read(p).is_ok_and(|elf| has_interpreter(&elf)))
        .expect("a dynamically linked program in /usr/bin or /bin");
    let dir = tempfile::tempdir().expect("tempdir");
    let stderr = run_err(
        Command::new(root().join("scripts/package"))
            .args(["--binary", dynamic, "--out"])
            .arg(dir.path().join("functions"))
            .arg("--zip")
            .arg(dir.path().join("package.zip")),
    );
    assert!(stderr.contains("dynamically linked"), "{stderr}");
    assert!(
        !dir.path().join("package.zip").exists(),
        "no package is made"
    );
}
