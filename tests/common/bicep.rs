//! What the Azure deployment gives the worker container, read from the repository's files:
//! the container's environment in bicep/workers.bicep, the lake URL main.bicep builds, and the
//! image's ENTRYPOINT in docker/worker.Dockerfile. Tests run the real binary with exactly these.

use std::path::PathBuf;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the repository, as text.
pub fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The worker container's environment: `(name, Bicep expression)` for each
/// `{ name: '...', value: ... }` line of bicep/workers.bicep.
pub fn worker_env() -> Vec<(String, String)> {
    read("bicep/workers.bicep")
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("{ name: '")?;
            let (name, rest) = rest.split_once('\'')?;
            let value = rest.trim().strip_prefix(", value: ")?.strip_suffix('}')?;
            Some((name.to_string(), value.trim().to_string()))
        })
        .collect()
}

/// The lake URL main.bicep gives the apps (`var lakeUrl`), for lake account `account` in Azure's
/// public cloud.
pub fn lake_url(account: &str) -> String {
    let main = read("infra/main.bicep");
    let line = main
        .lines()
        .find(|l| l.starts_with("var lakeUrl = '"))
        .expect("infra/main.bicep: var lakeUrl = '...'");
    let template = line
        .trim_start_matches("var lakeUrl = '")
        .trim_end_matches('\'');
    template
        .replace("${lakeAccountName}", account)
        .replace("${environment().suffixes.storage}", "core.windows.net")
}

/// The worker container's environment as Azure would fill it: the lake of `account`, the
/// identity `client_id`, and `partitions` per hub. An expression this does not know fails the
/// test, so that a new setting is looked at here.
pub fn worker_settings(account: &str, client_id: &str, partitions: u32) -> Vec<(String, String)> {
    worker_env()
        .into_iter()
        .map(|(name, expr)| {
            let value = match expr.as_str() {
                "lakeUrl" => lake_url(account),
                "identity.properties.clientId" => client_id.to_string(),
                "string(partitionCount)" => partitions.to_string(),
                other => match other.strip_prefix('\'') {
                    Some(literal) => literal.trim_end_matches('\'').to_string(),
                    None => panic!("bicep/workers.bicep: {name} = {other}: unknown to the tests"),
                },
            };
            (name, value)
        })
        .collect()
}

/// The worker image's ENTRYPOINT (docker/worker.Dockerfile, exec form).
pub fn entrypoint() -> Vec<String> {
    let dockerfile = read("docker/worker.Dockerfile");
    let line = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("docker/worker.Dockerfile has an ENTRYPOINT");
    serde_json::from_str(line).expect("ENTRYPOINT in exec form, a JSON array")
}
