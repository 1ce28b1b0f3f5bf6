//! Kafka secrets given to the binaries: a password in `--kafka-option`, in
//! `WEBLOG_KAFKA_OPTIONS` or in `--kafka-option-file` never appears in
//! `--help`, in an error or in the logs. Every run here fails on its
//! settings before connecting, so no broker is needed.
//!
//! NOTE: no test connects to a broker over TLS or SASL; these runs check
//! only that librdkafka accepts the settings and that secrets stay hidden.

use std::process::{Command, Output};
use std::time::Duration;

use crate::util::{binary, default_plugin, run, run_bounded};

const SECRET: &str = "hunter2-do-not-print";

/// Returns each binary's command with the flags it needs to reach the
/// Kafka settings, and an unreachable broker.
fn commands(dir: &std::path::Path) -> Vec<(&'static str, Command)> {
    let log = dir.join("access.log");
    std::fs::write(&log, "line\n").expect("write log");
    let mut shipper = Command::new(binary("weblog-shipper"));
    shipper.arg("--file").arg(&log);
    let mut sink = Command::new(binary("weblog-sink"));
    sink.arg("--output").arg(dir.join("out.jsonl"));
    let mut host = Command::new(binary("weblog-host"));
    host.arg("run").arg("--plugin").arg(default_plugin());
    let mut commands = vec![
        ("weblog-shipper", shipper),
        ("weblog-sink", sink),
        ("weblog-host", host),
    ];
    for (_, command) in &mut commands {
        command
            .args(["--bootstrap-servers", "127.0.0.1:1"])
            // Warnings must show whatever RUST_LOG the caller's shell sets.
            .env("RUST_LOG", "warn")
            .env_remove("WEBLOG_KAFKA_OPTIONS")
            .env_remove("WEBLOG_KAFKA_OPTION_FILE");
    }
    commands
}

/// Runs `command`, checks that it exits with status 2 as for an invalid
/// flag, and returns its stdout and stderr.
fn run_failing(name: &str, command: &mut Command) -> String {
    let output: Output = run_bounded(command, Duration::from_secs(60));
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{name}: {text}");
    text
}

/// `--help` lists the variables but not their values when they are set.
#[test]
fn help_hides_option_values() {
    for name in ["weblog-shipper", "weblog-sink", "weblog-host"] {
        let mut command = Command::new(binary(name));
        if name == "weblog-host" {
            command.arg("run");
        }
        let options = format!("security.protocol=SASL_SSL,sasl.password={SECRET}");
        command.arg("--help").env("WEBLOG_KAFKA_OPTIONS", options);
        let output = run(&mut command);
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{name} --help failed");
        assert!(help.contains("WEBLOG_KAFKA_OPTIONS"), "{name}: {help}");
        assert!(help.contains("--kafka-option-file"), "{name}: {help}");
        assert!(!help.contains(SECRET), "{name} --help shows the secret");
    }
}

/// A misspelt secret key in the variable is rejected by name, and its
/// value is not echoed.
#[test]
fn misspelt_secret_is_not_echoed() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, mut command) in commands(dir.path()) {
        let option = format!("sasl.pasword={SECRET}");
        command.env("WEBLOG_KAFKA_OPTIONS", option);
        let text = run_failing(name, &mut command);
        assert!(
            text.contains("invalid kafka option sasl.pasword"),
            "{name}: {text}"
        );
        assert!(!text.contains(SECRET), "{name} printed the secret: {text}");
    }
}

/// A flag value without `=` is rejected without quoting it, since it may
/// be a password that lost its key.
#[test]
fn option_without_key_is_not_echoed() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, mut command) in commands(dir.path()) {
        command.args(["--kafka-option", SECRET]);
        let output = run_bounded(&mut command, Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains("expected KEY=VALUE"), "{name}: {stderr}");
        assert!(
            !stderr.contains(SECRET),
            "{name} printed the secret: {stderr}"
        );
    }
}

/// Settings from the option file reach librdkafka: a file with a SCRAM
/// password and a bad protocol fails on the protocol, which is shown, and
/// the password is not.
#[test]
fn option_file_reaches_librdkafka() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("client.properties");
    let content = format!(
        "# SASL/SCRAM over TLS\nsasl.mechanism=SCRAM-SHA-512\nsasl.username=weblog\n\
         sasl.password={SECRET}\nsecurity.protocol=carrier-pigeon\n"
    );
    std::fs::write(&file, content).expect("write option file");
    for (name, mut command) in commands(dir.path()) {
        command.arg("--kafka-option-file").arg(&file);
        let text = run_failing(name, &mut command);
        assert!(
            text.contains("invalid kafka option security.protocol=carrier-pigeon"),
            "{name}: {text}"
        );
        assert!(!text.contains(SECRET), "{name} printed the secret: {text}");
    }
}

/// A key given both as a flag and in the file is an error that names the
/// key and shows neither value.
#[test]
fn key_set_twice_is_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("client.properties");
    std::fs::write(&file, format!("sasl.password={SECRET}\n")).expect("write option file");
    for (name, mut command) in commands(dir.path()) {
        command
            .arg("--kafka-option-file")
            .arg(&file)
            .args(["--kafka-option", "sasl.password=other-secret"]);
        let text = run_failing(name, &mut command);
        assert!(text.contains("sasl.password"), "{name}: {text}");
        assert!(text.contains("set both"), "{name}: {text}");
        assert!(!text.contains(SECRET), "{name} printed the secret: {text}");
        assert!(!text.contains("other-secret"), "{name}: {text}");
    }
}

/// An option file with a secret that every user can read gets a warning
/// that names it; the same file with mode 0600 gets none.
#[test]
fn readable_option_file_warns() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("client.properties");
    let content = format!("sasl.password={SECRET}\nsecurity.protocol=carrier-pigeon\n");
    std::fs::write(&file, content).expect("write option file");
    let warning = "kafka option file contains a secret and is readable by every user";
    for (mode, warns) in [(0o644, true), (0o600, false)] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("set mode");
        for (name, mut command) in commands(dir.path()) {
            command.arg("--kafka-option-file").arg(&file);
            let text = run_failing(name, &mut command);
            assert_eq!(
                text.contains(warning),
                warns,
                "{name} with {mode:o}: {text}"
            );
            assert!(!text.contains(SECRET), "{name} printed the secret: {text}");
        }
    }
}
