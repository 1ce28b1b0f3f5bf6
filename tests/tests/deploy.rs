//! The deployment files in `deploy/` against the binaries they run: the
//! systemd units and their environment file, the Kubernetes manifests and
//! the Grafana dashboard. Every flag and variable they use must be one that
//! a binary's `--help` lists, and every metric the dashboard queries must be
//! one that the code exports.
//!
//! `systemd-analyze verify` and `kubectl kustomize` run when they are
//! installed and work; the static checks here run either way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

use crate::util::{binary, default_plugin, repo_root, run};

/// Our binaries, with the subcommand that a deployment runs.
const BINARIES: [(&str, Option<&str>); 3] = [
    ("weblog-shipper", None),
    ("weblog-host", Some("run")),
    ("weblog-sink", None),
];

fn deploy_dir(part: &str) -> PathBuf {
    repo_root().join("deploy").join(part)
}

/// Flags and environment variables that one binary accepts, from its help.
#[derive(Debug, Default)]
struct Accepted {
    flags: BTreeSet<String>,
    variables: BTreeSet<String>,
}

/// Reads `--help` of each binary (of its subcommand for the host, plus the
/// host's global options) and collects the `--flags` and `WEBLOG_*` names.
fn accepted_by_binaries() -> BTreeMap<&'static str, Accepted> {
    let mut accepted = BTreeMap::new();
    for (name, subcommand) in BINARIES {
        let mut texts = Vec::new();
        let mut help = |args: &[&str]| {
            let output = run(Command::new(binary(name)).args(args));
            assert!(output.status.success(), "{name} {args:?} failed");
            texts.push(String::from_utf8_lossy(&output.stdout).into_owned());
        };
        help(&["--help"]);
        if let Some(subcommand) = subcommand {
            help(&[subcommand, "--help"]);
        }
        let mut names = Accepted::default();
        for text in &texts {
            for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || "-_".contains(c))) {
                if word.starts_with("--") && word.len() > 2 {
                    names.flags.insert(word.to_string());
                } else if word.starts_with("WEBLOG_") {
                    names.variables.insert(word.to_string());
                }
            }
        }
        accepted.insert(name, names);
    }
    accepted
}

/// Returns the binary name and subcommand of a command line, which must be
/// one of ours.
fn our_binary(program: &str) -> (&'static str, Option<&'static str>) {
    let name = Path::new(program)
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default();
    BINARIES
        .into_iter()
        .find(|(binary, _)| *binary == name)
        .unwrap_or_else(|| panic!("{program} is not a weblog binary"))
}

/// Checks that every `--flag` in `args` is accepted by `binary`.
fn check_flags(accepted: &BTreeMap<&str, Accepted>, binary: &str, args: &[&str], origin: &str) {
    for arg in args {
        let Some(flag) = arg.strip_prefix("--").map(|_| arg.split('=').next()) else {
            continue;
        };
        let flag = flag.unwrap_or_default();
        assert!(
            accepted[binary].flags.contains(flag),
            "{origin}: {binary} has no flag {flag}"
        );
    }
}

/// Checks that variable `name` is accepted by `binary`, or by any of ours
/// when `binary` is `None`.
fn check_variable(
    accepted: &BTreeMap<&str, Accepted>,
    binary: Option<&str>,
    name: &str,
    origin: &str,
) {
    if !name.starts_with("WEBLOG_") {
        assert_eq!(name, "RUST_LOG", "{origin}: unexpected variable {name}");
        return;
    }
    let known = match binary {
        Some(binary) => accepted[binary].variables.contains(name),
        None => accepted
            .values()
            .any(|names| names.variables.contains(name)),
    };
    assert!(known, "{origin}: no weblog binary reads {name}");
}

// --- systemd ------------------------------------------------------------------

const UNITS: [&str; 3] = [
    "weblog-shipper.service",
    "weblog-host.service",
    "weblog-sink.service",
];

/// Keys each section may contain: those the units use and their usual
/// neighbours, so that a misspelt key fails the parse check.
fn known_unit_keys(section: &str) -> &'static [&'static str] {
    match section {
        "Unit" => &[
            "Description",
            "Documentation",
            "After",
            "Before",
            "Wants",
            "Requires",
            "BindsTo",
            "PartOf",
            "Conflicts",
            "StartLimitIntervalSec",
            "StartLimitBurst",
        ],
        "Service" => &[
            "Type",
            "Environment",
            "EnvironmentFile",
            "ExecStart",
            "ExecReload",
            "ExecStop",
            "Restart",
            "RestartSec",
            "RestartPreventExitStatus",
            "KillSignal",
            "KillMode",
            "TimeoutStartSec",
            "TimeoutStopSec",
            "LimitNOFILE",
            "MemoryHigh",
            "MemoryMax",
            "CPUQuota",
            "LoadCredential",
            "DynamicUser",
            "User",
            "Group",
            "SupplementaryGroups",
            "StateDirectory",
            "StateDirectoryMode",
            "CacheDirectory",
            "CacheDirectoryMode",
            "UMask",
            "ProtectSystem",
            "ProtectHome",
            "PrivateTmp",
            "PrivateDevices",
            "NoNewPrivileges",
            "CapabilityBoundingSet",
            "ProtectKernelTunables",
            "ProtectKernelModules",
            "ProtectKernelLogs",
            "ProtectControlGroups",
            "ProtectClock",
            "ProtectHostname",
            "ProtectProc",
            "RestrictAddressFamilies",
            "RestrictNamespaces",
            "RestrictRealtime",
            "RestrictSUIDSGID",
            "LockPersonality",
            "MemoryDenyWriteExecute",
            "SystemCallArchitectures",
            "SystemCallFilter",
            "SystemCallErrorNumber",
        ],
        "Install" => &["WantedBy", "RequiredBy", "Alias"],
        _ => &[],
    }
}

/// Settings every unit must have, by key and value.
const REQUIRED_SETTINGS: [(&str, &str); 15] = [
    ("Restart", "on-failure"),
    ("RestartPreventExitStatus", "2"),
    ("DynamicUser", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("NoNewPrivileges", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ("SystemCallFilter", "@system-service"),
    ("KillSignal", "SIGTERM"),
    ("LimitNOFILE", "65536"),
    ("EnvironmentFile", "/etc/weblog/weblog.env"),
    ("Type", "exec"),
    ("WantedBy", "multi-user.target"),
];

/// Parses a unit file into (section, key, value) settings, in file order.
fn parse_unit(name: &str, text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut settings = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let origin = format!("{name}:{}", index + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            assert!(
                ["Unit", "Service", "Install"].contains(&header),
                "{origin}: unknown section [{header}]"
            );
            section = header.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{origin}: neither a section, a comment nor KEY=VALUE"));
        assert!(!section.is_empty(), "{origin}: setting before any section");
        assert!(
            known_unit_keys(&section).contains(&key),
            "{origin}: unknown key {key} in [{section}]"
        );
        settings.push((section.clone(), key.to_string(), value.to_string()));
    }
    settings
}

/// Every line of each unit is a section, a comment or a known key, the
/// hardening settings are there, and ExecStart runs one of our binaries
/// with flags and variables it accepts.
#[test]
fn systemd_units_parse_and_match_binaries() {
    let accepted = accepted_by_binaries();
    for name in UNITS {
        let text = std::fs::read_to_string(deploy_dir("systemd").join(name)).expect("read unit");
        let settings = parse_unit(name, &text);
        let value_of = |key: &str| {
            settings
                .iter()
                .filter(|(_, k, _)| k == key)
                .map(|(_, _, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        for (key, value) in REQUIRED_SETTINGS {
            assert!(
                value_of(key).contains(&value),
                "{name}: missing {key}={value}"
            );
        }
        let stop_timeout = value_of("TimeoutStopSec");
        assert_eq!(stop_timeout.len(), 1, "{name}: one TimeoutStopSec");
        let seconds: u64 = stop_timeout[0]
            .trim_end_matches('s')
            .parse()
            .expect("TimeoutStopSec in seconds");
        assert!(seconds >= 60, "{name}: {seconds} s is short for a drain");
        assert!(
            !value_of("StateDirectory").is_empty() || !value_of("CacheDirectory").is_empty(),
            "{name}: no directory of its own"
        );

        let exec_start = value_of("ExecStart");
        assert_eq!(exec_start.len(), 1, "{name}: one ExecStart");
        let words: Vec<&str> = exec_start[0].split_whitespace().collect();
        let (binary, subcommand) = our_binary(words[0]);
        let mut args = &words[1..];
        if let Some(subcommand) = subcommand {
            assert_eq!(args.first(), Some(&subcommand), "{name}: subcommand");
            args = &args[1..];
        }
        check_flags(&accepted, binary, args, name);
        for assignment in value_of("Environment") {
            let variable = assignment.split('=').next().unwrap_or_default();
            check_variable(&accepted, Some(binary), variable, name);
        }
        if binary == "weblog-host" {
            assert_eq!(value_of("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
            assert!(!value_of("MemoryMax").is_empty(), "{name}: no MemoryMax");
        }
    }
}

/// Runs `systemd-analyze verify` on each unit, with ExecStart pointed at
/// the built binary, and fails on any complaint, warnings included. Where
/// systemd-analyze is missing or cannot verify even a trivial unit, the
/// test prints why on stderr and relies on the parse check above.
#[test]
fn systemd_units_pass_systemd_analyze() {
    let dir = tempfile::tempdir().expect("temp dir");
    let trivial = dir.path().join("weblog-probe.service");
    std::fs::write(&trivial, "[Service]\nExecStart=/bin/true\n").expect("write unit");
    let probe = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&trivial)
        .output();
    match probe {
        Err(error) => {
            eprintln!("systemd-analyze is not available ({error}); only the parse check ran");
            return;
        }
        Ok(output) if !output.status.success() => {
            eprintln!(
                "systemd-analyze cannot verify units here ({}); only the parse check ran",
                String::from_utf8_lossy(&output.stderr).trim()
            );
            return;
        }
        Ok(_) => {}
    }
    for name in UNITS {
        let text = std::fs::read_to_string(deploy_dir("systemd").join(name)).expect("read unit");
        let mut rewritten = text.clone();
        for (binary, _) in BINARIES {
            let built = binary_path(binary);
            rewritten = rewritten.replace(&format!("/usr/local/bin/{binary}"), &built);
        }
        let path = dir.path().join(name);
        std::fs::write(&path, rewritten).expect("write unit copy");
        let output = run(Command::new("systemd-analyze").arg("verify").arg(&path));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{name}: {stderr}");
        assert!(
            !stderr.contains(name),
            "systemd-analyze complains about {name}:\n{stderr}"
        );
    }
}

fn binary_path(name: &str) -> String {
    binary(name).to_str().expect("UTF-8 path").to_string()
}

/// The environment file sets nothing, names only variables a binary reads,
/// and lists every WEBLOG_* variable of every binary.
#[test]
fn environment_file_lists_every_variable() {
    let accepted = accepted_by_binaries();
    let path = deploy_dir("systemd").join("weblog.env");
    let text = std::fs::read_to_string(&path).expect("read weblog.env");
    let mut listed = BTreeSet::new();
    for (index, line) in text.lines().enumerate() {
        let origin = format!("weblog.env:{}", index + 1);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let comment = line
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{origin}: sets a variable; keep every line commented"));
        let Some((name, _)) = comment.split_once('=') else {
            continue;
        };
        if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            check_variable(&accepted, None, name, &origin);
            listed.insert(name.to_string());
        }
    }
    for (binary, names) in &accepted {
        for variable in &names.variables {
            assert!(
                listed.contains(variable),
                "weblog.env does not list {variable} of {binary}"
            );
        }
    }
}

// --- Kubernetes -----------------------------------------------------------------

/// Converts a YAML node to JSON, which is easier to walk. Keys become
/// strings; a YAML 1.2 integer stays a number.
fn to_json(node: &Yaml) -> Value {
    match node {
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(text.clone()), Value::Number),
        Yaml::Integer(number) => Value::from(*number),
        Yaml::String(text) => Value::String(text.clone()),
        Yaml::Boolean(flag) => Value::Bool(*flag),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let key = match key {
                        Yaml::String(text) => text.clone(),
                        Yaml::Integer(number) => number.to_string(),
                        other => panic!("unsupported YAML key {other:?}"),
                    };
                    (key, to_json(value))
                })
                .collect(),
        ),
        Yaml::Null => Value::Null,
        Yaml::Alias(_) | Yaml::BadValue => panic!("unsupported YAML node {node:?}"),
    }
}

/// Parses every document of a YAML stream.
fn parse_yaml(origin: &str, text: &str) -> Vec<Value> {
    let documents = YamlLoader::load_from_str(text)
        .unwrap_or_else(|error| panic!("{origin} is not valid YAML: {error}"));
    documents
        .iter()
        .filter(|document| !matches!(document, Yaml::Null))
        .map(to_json)
        .collect()
}

/// Returns the manifests that kustomization.yaml lists, and the names of
/// the ConfigMaps it generates.
fn kubernetes_objects() -> (Vec<Value>, BTreeSet<String>) {
    let dir = deploy_dir("kubernetes");
    let text = std::fs::read_to_string(dir.join("kustomization.yaml")).expect("read kustomization");
    let kustomization = parse_yaml("kustomization.yaml", &text).remove(0);
    let mut objects = Vec::new();
    for resource in kustomization["resources"].as_array().expect("resources") {
        let file = resource.as_str().expect("resource path");
        let text = std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|error| panic!("failed to read {file}: {error}"));
        objects.extend(parse_yaml(file, &text));
    }
    let generated = kustomization["configMapGenerator"]
        .as_array()
        .expect("configMapGenerator")
        .iter()
        .map(|generator| generator["name"].as_str().expect("name").to_string())
        .collect();
    (objects, generated)
}

fn labels_match(selector: &Value, labels: &Value, origin: &str) {
    let selector = selector.as_object().expect("matchLabels is a map");
    assert!(!selector.is_empty(), "{origin}: empty selector");
    for (key, value) in selector {
        assert_eq!(&labels[key], value, "{origin}: label {key}");
    }
}

/// Checks one workload's pod template: security context, probes on a named
/// container port, resources, mounts, and flags and variables our binaries
/// accept. Returns the template's labels.
fn check_workload(
    workload: &Value,
    accepted: &BTreeMap<&str, Accepted>,
    config_maps: &BTreeSet<String>,
) -> Value {
    let name = workload["metadata"]["name"].as_str().expect("name");
    let spec = &workload["spec"];
    let template = &spec["template"];
    labels_match(
        &spec["selector"]["matchLabels"],
        &template["metadata"]["labels"],
        name,
    );
    let replicas = spec["replicas"].as_u64().expect("replicas");
    assert!((1..=3).contains(&replicas), "{name}: {replicas} replicas");

    let pod = &template["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
    let volumes: BTreeSet<&str> = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|volume| {
            if let Some(map) = volume["configMap"]["name"].as_str() {
                assert!(config_maps.contains(map), "{name}: no ConfigMap {map}");
            }
            volume["name"].as_str().expect("volume name")
        })
        .chain(
            spec["volumeClaimTemplates"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|claim| claim["metadata"]["name"].as_str().expect("claim name")),
        )
        .collect();

    for container in pod["containers"].as_array().expect("containers") {
        let origin = format!("{name}/{}", container["name"].as_str().expect("name"));
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{origin}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{origin}");
        assert_eq!(
            security["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{origin}"
        );
        for kind in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    container["resources"][kind][resource].is_string(),
                    "{origin}: no {kind}.{resource}"
                );
            }
        }

        let ports = container["ports"].as_array().expect("ports");
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            let http = &container[probe]["httpGet"];
            assert_eq!(http["path"], path, "{origin}: {probe} path");
            let port = &http["port"];
            let found = ports
                .iter()
                .any(|candidate| &candidate["name"] == port || &candidate["containerPort"] == port);
            assert!(
                found,
                "{origin}: {probe} port {port} is not a container port"
            );
        }
        for mount in container["volumeMounts"].as_array().into_iter().flatten() {
            let volume = mount["name"].as_str().expect("mount name");
            assert!(volumes.contains(volume), "{origin}: no volume {volume}");
        }

        let command: Vec<&str> = container["command"]
            .as_array()
            .expect("command")
            .iter()
            .map(|word| word.as_str().expect("string"))
            .collect();
        let (binary, subcommand) = our_binary(command[0]);
        assert_eq!(command.get(1).copied(), subcommand, "{origin}: subcommand");
        let args: Vec<&str> = container["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|word| word.as_str().expect("string"))
            .collect();
        check_flags(accepted, binary, &args, &origin);
        for variable in container["env"].as_array().into_iter().flatten() {
            let variable = variable["name"].as_str().expect("env name");
            check_variable(accepted, Some(binary), variable, &origin);
        }
    }
    template["metadata"]["labels"].clone()
}

/// The manifests are valid YAML and wired together: selectors match pod
/// labels, probes use container ports, every flag and variable is one the
/// binary accepts, and the host runs one replica per raw partition.
#[test]
fn kubernetes_manifests_are_wired() {
    let accepted = accepted_by_binaries();
    let (objects, generated) = kubernetes_objects();
    let by_kind = |kind: &str| -> Vec<&Value> {
        objects
            .iter()
            .filter(|object| object["kind"] == kind)
            .collect()
    };
    let mut config_maps = generated.clone();
    for map in by_kind("ConfigMap") {
        config_maps.insert(map["metadata"]["name"].as_str().expect("name").to_string());
    }

    let mut pod_labels = BTreeMap::new();
    for kind in ["Deployment", "StatefulSet"] {
        for workload in by_kind(kind) {
            let name = workload["metadata"]["name"].as_str().expect("name");
            pod_labels.insert(name, check_workload(workload, &accepted, &config_maps));
        }
    }
    let host = by_kind("Deployment")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "weblog-host")
        .expect("host Deployment");
    assert_eq!(host["spec"]["replicas"], 3, "one host per raw partition");
    let sink = by_kind("StatefulSet")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "weblog-sink")
        .expect("sink StatefulSet");
    assert_eq!(sink["spec"]["replicas"], 1, "one sink per output file");
    assert!(sink["spec"]["volumeClaimTemplates"].is_array());

    for service in by_kind("Service") {
        let name = service["metadata"]["name"].as_str().expect("name");
        let selector = &service["spec"]["selector"];
        let matched = pod_labels.values().any(|labels| {
            let selector = selector.as_object().expect("selector is a map");
            selector.iter().all(|(key, value)| &labels[key] == value)
        });
        assert!(matched, "Service {name} selects no pod template");
        assert_eq!(
            service["metadata"]["annotations"]["prometheus.io/scrape"],
            "true"
        );
        for port in service["spec"]["ports"].as_array().expect("ports") {
            assert_eq!(port["targetPort"], "admin", "Service {name}");
        }
    }

    let budgets = by_kind("PodDisruptionBudget");
    assert_eq!(budgets.len(), 1);
    assert_eq!(budgets[0]["spec"]["maxUnavailable"], 1);
    labels_match(
        &budgets[0]["spec"]["selector"]["matchLabels"],
        &pod_labels["weblog-host"],
        "PodDisruptionBudget",
    );
    let policies = by_kind("NetworkPolicy");
    assert_eq!(policies.len(), 1, "the admin port needs a NetworkPolicy");
    for labels in pod_labels.values() {
        labels_match(
            &policies[0]["spec"]["podSelector"]["matchLabels"],
            labels,
            "NetworkPolicy",
        );
    }
}

/// `kubectl kustomize` renders the folder with the built plugin in place,
/// and the rendered workloads refer to the generated, hash-suffixed
/// ConfigMaps. Without kubectl the test prints why on stderr and relies
/// on the static check above.
#[test]
fn kustomization_renders() {
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("kubernetes");
    copy_dir(&deploy_dir("kubernetes"), &copy);
    let plugin_bytes = std::fs::read(default_plugin()).expect("read plugin");
    std::fs::write(copy.join("plugin/weblog_access_log.wasm"), &plugin_bytes).expect("copy plugin");
    let output = match Command::new("kubectl").arg("kustomize").arg(&copy).output() {
        Ok(output) => output,
        Err(error) => {
            eprintln!("kubectl is not available ({error}); only the static check ran");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kubectl kustomize failed: {stderr}"
    );
    let rendered = parse_yaml("rendered", &String::from_utf8_lossy(&output.stdout));

    let maps: BTreeMap<&str, &Value> = rendered
        .iter()
        .filter(|object| object["kind"] == "ConfigMap")
        .map(|map| (map["metadata"]["name"].as_str().expect("name"), map))
        .collect();
    let plugin = maps
        .iter()
        .find(|(name, _)| name.starts_with("weblog-plugin-"))
        .map(|(_, map)| *map)
        .expect("a hash-suffixed plugin ConfigMap");
    let encoded: String = plugin["binaryData"]["weblog_access_log.wasm"]
        .as_str()
        .expect("the plugin as binaryData")
        .split_whitespace()
        .collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("binaryData is base64");
    assert!(
        decoded == plugin_bytes,
        "binaryData differs from the plugin file"
    );
    for object in &rendered {
        if object["kind"] == "Namespace" {
            continue;
        }
        assert_eq!(
            object["metadata"]["namespace"], "weblog",
            "{}",
            object["metadata"]
        );
        let pod = &object["spec"]["template"]["spec"];
        for volume in pod["volumes"].as_array().into_iter().flatten() {
            if let Some(name) = volume["configMap"]["name"].as_str() {
                assert!(maps.contains_key(name), "volume refers to missing {name}");
            }
        }
        for container in pod["containers"].as_array().into_iter().flatten() {
            for source in container["envFrom"].as_array().into_iter().flatten() {
                let name = source["configMapRef"]["name"].as_str().expect("name");
                assert!(maps.contains_key(name), "envFrom refers to missing {name}");
            }
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.path().extension().is_none_or(|ext| ext != "wasm") {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

// --- Grafana ------------------------------------------------------------------

/// Suffixes that Prometheus adds to a histogram's name.
const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

/// Returns every metric name the code registers: the `"weblog_…"` string
/// literals in the sources of the four crates.
pub fn exported_metric_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for krate in ["common", "host", "shipper", "sink"] {
        collect_literals(&repo_root().join(krate).join("src"), &mut names);
    }
    names
}

fn collect_literals(dir: &Path, names: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("read source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            collect_literals(&path, names);
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        for piece in text.split("\"weblog_").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if piece[name.len()..].starts_with('"') && !name.is_empty() {
                names.insert(format!("weblog_{name}"));
            }
        }
    }
}

/// Returns the dashboard as JSON.
fn dashboard() -> Value {
    let text =
        std::fs::read_to_string(deploy_dir("grafana").join("weblog.json")).expect("read dashboard");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Returns the metric names in the dashboard's PromQL expressions and
/// variable queries, with histogram suffixes removed when the base name is
/// in `exported`.
pub fn dashboard_metric_names(exported: &BTreeSet<String>) -> BTreeSet<String> {
    let dashboard = dashboard();
    let mut expressions = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            expressions.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if let Some(query) = variable["definition"].as_str() {
            expressions.push(query.to_string());
        }
    }
    let mut names = BTreeSet::new();
    for expression in &expressions {
        for piece in expression.split("weblog_").skip(1) {
            let rest: String = piece
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let name = format!("weblog_{rest}");
            let base = HISTOGRAM_SUFFIXES
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| exported.contains(*base));
            names.insert(base.map_or(name.clone(), str::to_string));
        }
    }
    names
}

/// The dashboard takes its data source from a variable, and every query
/// uses it.
#[test]
fn dashboard_uses_datasource_variable() {
    let dashboard = dashboard();
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let source = variables
        .iter()
        .find(|variable| variable["type"] == "datasource")
        .expect("a data source variable");
    assert_eq!(source["query"], "prometheus");
    let reference = format!("${{{}}}", source["name"].as_str().expect("name"));
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().expect("title");
        assert_eq!(panel["datasource"]["uid"], reference.as_str(), "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], reference.as_str(), "{title}");
        }
    }
}

/// Every metric the dashboard queries is registered in the code, and every
/// metric the code registers has a panel.
#[test]
fn dashboard_metrics_are_exported() {
    let exported = exported_metric_names();
    assert!(exported.len() >= 30, "found only {exported:?}");
    let used = dashboard_metric_names(&exported);
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "the code exports no {unknown:?}");
    let unused: Vec<&String> = exported.difference(&used).collect();
    assert!(unused.is_empty(), "no panel shows {unused:?}");
}

/// Counters are read through `rate` or `increase`, and histogram
/// quantiles aggregate their buckets by `le`.
#[test]
fn dashboard_queries_fit_metric_types() {
    let dashboard = dashboard();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expression = target["expr"].as_str().expect("expr");
            for (position, _) in expression.match_indices("weblog_") {
                let name: String = expression[position..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name.ends_with("_total") || name.ends_with("_bucket") {
                    let before = &expression[..position];
                    let counted = before.ends_with("rate(") || before.ends_with("increase(");
                    assert!(counted, "{name} without rate or increase: {expression}");
                }
            }
            if expression.contains("histogram_quantile(") {
                assert!(
                    expression.contains("by (le"),
                    "quantile without le: {expression}"
                );
                assert!(
                    expression.contains("_bucket"),
                    "quantile without buckets: {expression}"
                );
            }
        }
    }
}

/// The dashboard's metrics in the `/metrics` output of a running pipeline.
#[cfg(feature = "kafka-tests")]
mod live {
    use std::collections::BTreeSet;
    use std::io::{Read, Write};
    use std::process::Command;
    use std::time::Duration;

    use super::{dashboard_metric_names, exported_metric_names, HISTOGRAM_SUFFIXES};
    use crate::util::kafka::{bootstrap, host_run_command, produce, unique_name, TestTopics};
    use crate::util::{binary, corpus, default_plugin, split_lines, wait_until, ChildProcess};

    /// Metrics that appear only after an event this run does not cause,
    /// each with the event. The static test checks that the code exports
    /// them.
    const EVENT_ONLY: [(&str, &str); 1] = [(
        "weblog_host_produce_errors_total",
        "a failed delivery to Kafka",
    )];

    /// Lines of `elastic-apache.log` shipped, from its end.
    const SLICE_LINES: usize = 500;

    fn with_admin(mut command: Command) -> Command {
        command.args(["--admin-addr", "127.0.0.1:0", "--stats-interval-ms", "500"]);
        command
    }

    /// Returns the address in the process's `admin endpoint listening` line.
    fn admin_addr(process: &mut ChildProcess) -> String {
        let mut addr = None;
        let found = wait_until(Duration::from_secs(60), || {
            process.assert_running();
            let log = process.stderr();
            addr = log
                .lines()
                .find(|line| line.contains("admin endpoint listening"))
                .and_then(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .and_then(|event| event["addr"].as_str().map(str::to_string));
            addr.is_some()
        });
        assert!(found, "no admin endpoint: {}", process.stderr());
        addr.expect("found above")
    }

    /// Returns the body of `GET /metrics`, or an empty string while the
    /// endpoint cannot be reached.
    fn scrape(addr: &str) -> String {
        let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
            return String::new();
        };
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("send request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read response");
        response
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, body)| body.to_string())
    }

    /// Returns the metric names with at least one sample in `text`, with
    /// histogram suffixes removed.
    fn sampled_names(text: &str) -> BTreeSet<String> {
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                let base = HISTOGRAM_SUFFIXES
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(name);
                base.to_string()
            })
            .collect()
    }

    fn json_logs(mut command: Command) -> Command {
        command.env("WEBLOG_LOG_FORMAT", "json");
        command
    }

    /// Shipper, host and sink run with their admin endpoints. A line too
    /// large for Kafka, a line that is not an access-log line and a record
    /// that is not JSON cause dead letters at the shipper, the host and the
    /// sink. A plugin file that is not a component causes a refused swap. Then every metric the dashboard queries
    /// has a sample in some binary's /metrics, except those in
    /// [`EVENT_ONLY`].
    #[test]
    fn dashboard_metrics_are_served() {
        let topics = TestTopics::create("dashboard", 3);
        let dir = tempfile::tempdir().expect("temp dir");
        let content = std::fs::read(corpus("elastic-apache.log")).expect("read corpus");
        let lines = split_lines(&content);
        let mut log_bytes = lines[lines.len() - SLICE_LINES..].join(&b'\n');
        log_bytes.extend(b"\nthis is not an access log line\n");
        // librdkafka's default message.max.bytes is 1,000,000.
        log_bytes.extend(std::iter::repeat_n(b'a', 1_200_000));
        log_bytes.push(b'\n');
        let log = dir.path().join("access.log");
        std::fs::write(&log, &log_bytes).expect("write log");
        produce(&topics.enriched, &[(None, b"not json".as_slice())]);

        // A copy of the plugin, so that the test can replace it.
        let plugin = dir.path().join("plugin.wasm");
        std::fs::copy(default_plugin(), &plugin).expect("copy plugin");
        let host_command = host_run_command(&topics, &unique_name("dash-host"), &plugin);
        let mut host = ChildProcess::spawn("host", with_admin(json_logs(host_command)), dir.path());
        let mut sink_command = Command::new(binary("weblog-sink"));
        sink_command
            .args(["--bootstrap-servers", &bootstrap()])
            .args(["--topic", &topics.enriched, "--dlq-topic", &topics.dlq])
            .args(["--group-id", &unique_name("dash-sink")])
            .arg("--output")
            .arg(dir.path().join("out.jsonl"));
        let mut sink = ChildProcess::spawn("sink", with_admin(json_logs(sink_command)), dir.path());
        let mut shipper_command = Command::new(binary("weblog-shipper"));
        shipper_command
            .args(["--bootstrap-servers", &bootstrap()])
            .args([
                "--topic",
                &topics.raw,
                "--dlq-topic",
                &topics.dlq,
                "--follow",
            ])
            .arg("--file")
            .arg(&log)
            .arg("--checkpoint")
            .arg(dir.path().join("shipper.checkpoint"));
        let mut shipper = ChildProcess::spawn(
            "shipper",
            with_admin(json_logs(shipper_command)),
            dir.path(),
        );
        let addrs = [
            admin_addr(&mut host),
            admin_addr(&mut sink),
            admin_addr(&mut shipper),
        ];

        // A file that is not a component: the swap is attempted and refused.
        let candidate = dir.path().join("plugin.wasm.tmp");
        std::fs::write(&candidate, b"not a component").expect("write candidate");
        std::fs::rename(&candidate, &plugin).expect("replace plugin");
        host.signal("HUP");

        let exported = exported_metric_names();
        let wanted: BTreeSet<String> = dashboard_metric_names(&exported)
            .into_iter()
            .filter(|name| !EVENT_ONLY.iter().any(|(event_only, _)| event_only == name))
            .collect();
        let mut served = BTreeSet::new();
        let complete = wait_until(Duration::from_secs(120), || {
            served = addrs
                .iter()
                .flat_map(|addr| sampled_names(&scrape(addr)))
                .collect();
            wanted.is_subset(&served)
        });
        let missing: Vec<&String> = wanted.difference(&served).collect();
        assert!(complete, "no sample of {missing:?} in /metrics");
        for (name, event) in EVENT_ONLY {
            assert!(
                exported.contains(name),
                "{name}, shown after {event}, is not exported"
            );
        }
        for (process, name) in [
            (&mut host, "host"),
            (&mut sink, "sink"),
            (&mut shipper, "shipper"),
        ] {
            let (status, _) = process.terminate(Duration::from_secs(60));
            assert!(
                status.success(),
                "{name} exit {status}: {}",
                process.stderr()
            );
        }
    }
}
