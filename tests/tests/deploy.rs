//! The deployment files (deploy/) stay true to the binary: Docker is not available where
//! the tests run, so instead every command line in them is checked against what
//! `guildhall serve --help` accepts, every configuration they set against the keys
//! `guildhall config defaults` prints (and files against `guildhall config check`), and
//! the configuration reference against the same keys.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use guildhall_e2e::binary;
use serde::Deserialize;
use serde_yaml::Value;

fn repo() -> PathBuf {
    guildhall_e2e::repo_root()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn run(args: &[&str]) -> String {
    let out = Command::new(binary()).args(args).output().expect("run guildhall");
    assert!(out.status.success(), "guildhall {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The long flags `guildhall serve` accepts.
fn serve_flags() -> BTreeSet<String> {
    let help = run(&["serve", "--help"]);
    let flags: BTreeSet<String> = help
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-').to_owned())
        .filter(|w| !w.is_empty())
        .collect();
    assert!(flags.contains("cluster") && flags.contains("storage"), "{help}");
    flags
}

/// Every configuration key path (`gateway.max_connections`, `listen`, ...).
fn config_keys() -> BTreeSet<String> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
        for (k, v) in table {
            let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                toml::Value::Table(t) => walk(&path, t, out),
                _ => {
                    out.insert(path);
                }
            }
        }
    }
    let defaults: toml::Table = run(&["config", "defaults"]).parse().expect("defaults are TOML");
    let mut keys = BTreeSet::new();
    walk("", &defaults, &mut keys);
    assert!(keys.contains("cluster.nats") && keys.contains("plugins.pool_instances"), "{keys:?}");
    keys
}

/// `GUILDHALL_A__B` names the key `a.b`.
fn env_key(var: &str) -> String {
    var.strip_prefix("GUILDHALL_").expect("GUILDHALL_ prefix").to_lowercase().replace("__", ".")
}

/// Checks one `guildhall serve` command line; returns its flags with their values.
fn check_serve_args(args: &[String], flags: &BTreeSet<String>, context: &str) -> Vec<(String, String)> {
    assert_eq!(args.first().map(String::as_str), Some("serve"), "{context}: runs `guildhall serve`: {args:?}");
    let mut pairs = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let flag = args[i].strip_prefix("--").unwrap_or_else(|| panic!("{context}: {:?} is not a flag", args[i]));
        let (flag, value) = match flag.split_once('=') {
            Some((f, v)) => (f.to_owned(), v.to_owned()),
            None => {
                i += 1;
                (flag.to_owned(), args.get(i).cloned().unwrap_or_default())
            }
        };
        assert!(flags.contains(&flag), "{context}: `guildhall serve` has no --{flag}");
        pairs.push((flag, value));
        i += 1;
    }
    pairs
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence().expect("a list").iter().map(|s| s.as_str().expect("a string").to_owned()).collect()
}

#[test]
fn compose_runs_three_cluster_nodes_on_scylla_and_jetstream() {
    let (flags, keys) = (serve_flags(), config_keys());
    let mut compose: Value = serde_yaml::from_str(&read("deploy/compose.yaml")).expect("compose.yaml parses");
    compose.apply_merge().expect("merge keys resolve");
    let services = compose["services"].as_mapping().expect("services");
    let mut node_ids = BTreeSet::new();
    let mut hosts = 0;
    for (name, service) in services {
        let name = name.as_str().unwrap();
        if !name.starts_with("guildhall") {
            continue;
        }
        hosts += 1;
        assert_eq!(service["build"]["dockerfile"].as_str(), Some("deploy/Dockerfile"), "{name}");
        let args = check_serve_args(&strings(&service["command"]), &flags, name);
        let value = |flag: &str| args.iter().find(|(f, _)| f == flag).map(|(_, v)| v.clone()).unwrap_or_default();
        assert_eq!(value("cluster"), "nats://nats:4222", "{name} joins the cluster on the nats service");
        assert!(value("storage").starts_with("scylla://scylla:9042/"), "{name} stores in the scylla service");
        for (var, val) in service["environment"].as_mapping().expect("environment") {
            let var = var.as_str().unwrap();
            assert!(keys.contains(&env_key(var)), "{name}: {var} names no configuration key");
            if var == "GUILDHALL_CLUSTER__NODE_ID" {
                assert!(node_ids.insert(val.as_str().unwrap().to_owned()), "{name}: node ids are distinct");
            }
        }
    }
    assert_eq!(hosts, 3, "three guildhall hosts");
    let nats = strings(&services[&Value::from("nats")]["command"]);
    assert!(nats.iter().any(|a| a == "--jetstream"), "NATS runs JetStream: {nats:?}");
    assert!(services.contains_key(Value::from("scylla")));
}

#[test]
fn kubernetes_manifests_hold_a_valid_configuration_and_valid_arguments() {
    let flags = serve_flags();
    let text = read("deploy/k8s/guildhall.yaml");
    let mut kinds = Vec::new();
    let mut config_file = None;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc = Value::deserialize(doc).expect("a YAML document");
        let kind = doc["kind"].as_str().expect("kind").to_owned();
        if kind == "ConfigMap" {
            config_file = Some(doc["data"]["guildhall.toml"].as_str().expect("guildhall.toml").to_owned());
        }
        if kind == "Deployment" {
            let container = &doc["spec"]["template"]["spec"]["containers"][0];
            let args = check_serve_args(&strings(&container["args"]), &flags, "Deployment");
            let config = args.iter().find(|(f, _)| f == "config").expect("--config").1.clone();
            assert_eq!(config, "/etc/guildhall/guildhall.toml");
            assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(8080));
        }
        kinds.push(kind);
    }
    assert_eq!(kinds, ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]);
    // The configuration loads as `serve` would load it.
    let dir = std::env::temp_dir().join(format!("guildhall-deploy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("guildhall.toml");
    std::fs::write(&file, config_file.expect("a ConfigMap with guildhall.toml")).unwrap();
    let out = Command::new(binary())
        .args(["config", "check", "--config"])
        .arg(&file)
        .env_remove("GUILDHALL_CONFIG")
        .output()
        .expect("run guildhall");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "the ConfigMap's configuration: {}", String::from_utf8_lossy(&out.stderr));

    for other in ["deploy/k8s/nats.yaml", "deploy/k8s/scylla.yaml"] {
        for doc in serde_yaml::Deserializer::from_str(&read(other)) {
            let doc = Value::deserialize(doc).expect("a YAML document");
            assert!(doc["kind"].is_string() && doc["apiVersion"].is_string(), "{other}: a Kubernetes object");
        }
    }
    assert!(read("deploy/k8s/nats.yaml").contains("--jetstream"));
}

#[test]
fn a_bad_configuration_is_refused_by_config_check() {
    let dir = std::env::temp_dir().join(format!("guildhall-deploy-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[cluster]\nnats = \"nats://x:4222\"\n").unwrap(); // embedded storage
    let out = Command::new(binary()).args(["config", "check", "--config"]).arg(&file).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("a cluster needs shared storage"));
}

#[test]
fn the_dockerfile_serves_on_the_port_it_exposes() {
    let flags = serve_flags();
    let dockerfile = read("deploy/Dockerfile");
    let cmd = dockerfile.lines().find_map(|l| l.strip_prefix("CMD ")).expect("a CMD");
    let args: Vec<String> = serde_json::from_str(cmd).expect("CMD in exec form");
    let args = check_serve_args(&args, &flags, "Dockerfile");
    let listen = &args.iter().find(|(f, _)| f == "listen").expect("--listen").1;
    let exposed = dockerfile.lines().find_map(|l| l.strip_prefix("EXPOSE ")).expect("EXPOSE").trim();
    assert!(listen.ends_with(&format!(":{exposed}")), "listens on {listen}, exposes {exposed}");
    assert!(dockerfile.contains("cargo build --release --locked -p guildhall"));
}

#[test]
fn the_configuration_reference_lists_every_key() {
    let reference = read("deploy/configuration.md");
    let missing: Vec<String> =
        config_keys().into_iter().filter(|key| !reference.contains(&format!("`{key}`"))).collect();
    assert!(missing.is_empty(), "deploy/configuration.md does not list {missing:?}");
}
