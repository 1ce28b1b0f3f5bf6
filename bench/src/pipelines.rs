//! The pipelines under test and the commands that start their stages.

use std::path::{Path, PathBuf};
use std::process::Command;

/// How a pipeline enriches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Enricher {
    /// `weblog-bench passthrough`: copies records, no plugin.
    Passthrough,
    /// `weblog-host run` with the default plugin.
    Host { native: bool, exactly_once: bool },
    /// The seed reconstruction's `enricher.py`.
    Seed,
}

/// One pipeline of the comparison.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pipeline {
    /// Short name used in topic names and result rows.
    pub(crate) name: &'static str,
    /// Name in the result tables.
    pub(crate) label: &'static str,
    pub(crate) enricher: Enricher,
}

impl Pipeline {
    /// Whether dead letters go to a topic of their own.
    pub(crate) fn has_dlq(&self) -> bool {
        matches!(self.enricher, Enricher::Host { .. })
    }

    pub(crate) fn is_seed(&self) -> bool {
        self.enricher == Enricher::Seed
    }
}

/// Every pipeline, in the order they run.
pub(crate) const PIPELINES: [Pipeline; 5] = [
    Pipeline {
        name: "passthrough",
        label: "passthrough: rdkafka consume-produce, no plugin",
        enricher: Enricher::Passthrough,
    },
    Pipeline {
        name: "weblog-wasm",
        label: "weblog-host, WASM plugin, at-least-once",
        enricher: Enricher::Host {
            native: false,
            exactly_once: false,
        },
    },
    Pipeline {
        name: "weblog-native",
        label: "weblog-host, native parser, at-least-once",
        enricher: Enricher::Host {
            native: true,
            exactly_once: false,
        },
    },
    Pipeline {
        name: "weblog-wasm-eos",
        label: "weblog-host, WASM plugin, --exactly-once",
        enricher: Enricher::Host {
            native: false,
            exactly_once: true,
        },
    },
    Pipeline {
        name: "seed",
        label: "seed reconstruction: Python, confluent-kafka, re",
        enricher: Enricher::Seed,
    },
];

/// Topics of one pipeline run.
#[derive(Clone, Debug)]
pub(crate) struct Topics {
    pub(crate) raw: String,
    pub(crate) enriched: String,
    pub(crate) dlq: String,
    /// Where the sink puts records that are not valid JSON; stays empty.
    pub(crate) sink_dlq: String,
}

impl Topics {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            raw: format!("{prefix}-raw"),
            enriched: format!("{prefix}-enriched"),
            dlq: format!("{prefix}-dlq"),
            sink_dlq: format!("{prefix}-sink-dlq"),
        }
    }

    pub(crate) fn all(&self) -> [&str; 4] {
        [&self.raw, &self.enriched, &self.dlq, &self.sink_dlq]
    }

    /// Topics where every input of the enrichment stage ends up.
    pub(crate) fn outputs(&self, pipeline: &Pipeline) -> Vec<&str> {
        if pipeline.has_dlq() {
            vec![&self.enriched, &self.dlq]
        } else {
            vec![&self.enriched]
        }
    }
}

/// Programs and files the stages need.
#[derive(Clone, Debug)]
pub(crate) struct Programs {
    pub(crate) bootstrap: String,
    /// Directory of the release binaries.
    pub(crate) bin_dir: PathBuf,
    /// The default plugin component.
    pub(crate) plugin: PathBuf,
    /// Python of the venv with confluent-kafka.
    pub(crate) python: PathBuf,
    /// Directory of shipper.py, enricher.py and sink.py.
    pub(crate) seed_dir: PathBuf,
    /// Compiled component cache of the host runs.
    pub(crate) component_cache: PathBuf,
}

impl Programs {
    /// Returns the program and arguments that ship `file` to `topics.raw`.
    pub(crate) fn shipper(
        &self,
        pipeline: &Pipeline,
        topics: &Topics,
        file: &Path,
    ) -> (PathBuf, Vec<String>) {
        let file = file.display().to_string();
        if pipeline.is_seed() {
            let args = vec![
                self.seed_script("shipper.py"),
                "--bootstrap-servers".into(),
                self.bootstrap.clone(),
                "--topic".into(),
                topics.raw.clone(),
                "--file".into(),
                file,
            ];
            return (self.python.clone(), args);
        }
        let args = vec![
            "--bootstrap-servers".into(),
            self.bootstrap.clone(),
            "--topic".into(),
            topics.raw.clone(),
            "--dlq-topic".into(),
            topics.dlq.clone(),
            "--file".into(),
            file,
        ];
        (self.bin_dir.join("weblog-shipper"), args)
    }

    /// Returns the command of the enrichment stage, consuming as `group`.
    pub(crate) fn enricher(
        &self,
        pipeline: &Pipeline,
        topics: &Topics,
        group: &str,
    ) -> anyhow::Result<Command> {
        let mut command;
        match pipeline.enricher {
            Enricher::Passthrough => {
                command = Command::new(std::env::current_exe()?);
                command.arg("passthrough");
                command.args(["--input-topic", &topics.raw]);
            }
            Enricher::Host {
                native,
                exactly_once,
            } => {
                command = Command::new(self.bin_dir.join("weblog-host"));
                command.arg("run").arg("--plugin").arg(&self.plugin);
                command.args(["--input-topic", &topics.raw, "--dlq-topic", &topics.dlq]);
                command.arg("--component-cache").arg(&self.component_cache);
                if native {
                    command.arg("--native-plugin");
                }
                if exactly_once {
                    command.args(["--exactly-once", "--transactional-id", group]);
                }
            }
            Enricher::Seed => {
                command = Command::new(&self.python);
                command.arg(self.seed_script("enricher.py"));
                command.args(["--input-topic", &topics.raw]);
            }
        }
        command.args([
            "--bootstrap-servers",
            &self.bootstrap,
            "--output-topic",
            &topics.enriched,
            "--group-id",
            group,
        ]);
        Ok(command)
    }

    /// Returns the command of the sink, appending to `output` as `group`.
    pub(crate) fn sink(
        &self,
        pipeline: &Pipeline,
        topics: &Topics,
        group: &str,
        output: &Path,
    ) -> Command {
        let mut command = if pipeline.is_seed() {
            let mut command = Command::new(&self.python);
            command.arg(self.seed_script("sink.py"));
            command
        } else {
            let mut command = Command::new(self.bin_dir.join("weblog-sink"));
            command.args(["--dlq-topic", &topics.sink_dlq]);
            command
        };
        command
            .args(["--bootstrap-servers", &self.bootstrap])
            .args(["--topic", &topics.enriched, "--group-id", group])
            .arg("--output")
            .arg(output);
        command
    }

    fn seed_script(&self, name: &str) -> String {
        self.seed_dir.join(name).display().to_string()
    }
}

pub(crate) fn stage_program(pipeline: &Pipeline) -> String {
    match pipeline.enricher {
        Enricher::Passthrough => "weblog-bench passthrough".into(),
        Enricher::Host {
            native,
            exactly_once,
        } => {
            let mut program = "weblog-host run".to_string();
            if native {
                program.push_str(" --native-plugin");
            }
            if exactly_once {
                program.push_str(" --exactly-once");
            }
            program
        }
        Enricher::Seed => "python3 enricher.py".into(),
    }
}

pub(crate) fn sink_program(pipeline: &Pipeline) -> String {
    match pipeline.is_seed() {
        true => "python3 sink.py".into(),
        false => "weblog-sink".into(),
    }
}

/// Returns a short name of a shipper command for the tables.
pub(crate) fn program_name(program: &Path, args: &[String]) -> String {
    let file = |path: &Path| {
        path.file_name()
            .map_or(String::new(), |name| name.to_string_lossy().into_owned())
    };
    match file(program).starts_with("python") {
        true => format!(
            "python3 {}",
            args.first().map_or(String::new(), |a| file(Path::new(a)))
        ),
        false => file(program),
    }
}
