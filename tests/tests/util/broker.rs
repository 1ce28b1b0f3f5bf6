//! A single-node Kafka broker of a test's own, started with
//! `scripts/kafka.sh` in a temporary run directory, for tests that stop or
//! kill their broker. It is stopped when dropped.
//!
//! The broker listens on `WEBLOG_TEST_BROKER_PORT` plus 2 per slot (its
//! controller on the next port), or on a free port pair the test picks.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::{repo_root, run, wait_until};

/// A private broker and its run directory.
pub struct PrivateBroker {
    run_dir: tempfile::TempDir,
    port: u16,
}

impl PrivateBroker {
    /// Starts a broker. `slot` keeps the tests' ports apart when
    /// `WEBLOG_TEST_BROKER_PORT` sets the ports.
    pub fn start(slot: u16) -> Self {
        let port = match std::env::var("WEBLOG_TEST_BROKER_PORT") {
            Ok(text) => {
                let base: u16 = text.parse().unwrap_or_else(|error| {
                    panic!("invalid WEBLOG_TEST_BROKER_PORT {text:?}: {error}")
                });
                base + 2 * slot
            }
            Err(_) => free_port_pair(),
        };
        let broker = Self {
            run_dir: tempfile::tempdir().expect("temp dir"),
            port,
        };
        broker.up();
        broker
    }

    /// Returns the broker's bootstrap address.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs `scripts/kafka.sh up`, which starts the broker on the data in
    /// the run directory (formatting it the first time) and waits until it
    /// serves requests.
    pub fn up(&self) {
        let output = self.kafka_sh(&["up"]);
        assert!(
            output.status.success(),
            "failed to start the broker on port {}:\n{}",
            self.port,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Stops the broker with `scripts/kafka.sh down`.
    pub fn down(&self) {
        let output = self.kafka_sh(&["down"]);
        assert!(
            output.status.success(),
            "failed to stop the broker:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Sends SIGKILL to the broker's JVM and waits until it is gone.
    pub fn kill_hard(&self) {
        let pid_file = self.run_dir.path().join("broker.pid");
        let pid = std::fs::read_to_string(&pid_file).expect("broker pid file");
        let pid = pid.trim();
        let killed = Command::new("kill").args(["-KILL", pid]).status();
        assert!(
            killed.is_ok_and(|status| status.success()),
            "failed to kill broker {pid}"
        );
        let gone = wait_until(Duration::from_secs(30), || {
            !Path::new(&format!("/proc/{pid}")).exists()
        });
        assert!(gone, "broker {pid} still runs after SIGKILL");
    }

    /// Creates topics with the broker's defaults.
    pub fn create_topics(&self, names: &[&str]) {
        for name in names {
            let output = self.kafka_sh(&["tool", "topics", "--create", "--topic", name]);
            assert!(
                output.status.success(),
                "failed to create topic {name}:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    fn kafka_sh(&self, args: &[&str]) -> Output {
        run(Command::new(repo_root().join("scripts/kafka.sh"))
            .args(args)
            .env_remove("KAFKA_BOOTSTRAP")
            .env_remove("KAFKA_CONTROLLER_PORT")
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_HEAP_OPTS", "-Xms128m -Xmx512m")
            .env("WEBLOG_KAFKA_RUN_DIR", self.run_dir.path()))
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.kafka_sh(&["down"]);
    }
}

/// Returns a port that is free on 127.0.0.1 and whose next port is free
/// too, for the broker and its controller.
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().expect("local address").port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("found no two free consecutive ports on 127.0.0.1");
}
