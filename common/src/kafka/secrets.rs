//! Secrets in Kafka client settings: which librdkafka keys hold one, how
//! their values are shown in errors, and the option file that keeps them
//! off the command line.
//!
//! A value is shown as [`REDACTED`] when its key names a secret. librdkafka
//! echoes a rejected value in its own error, so every setting is checked
//! here first, and an error about a secret or an unknown key (perhaps a
//! misspelt secret) leaves the value out.

use std::ffi::OsStr;
use std::path::Path;

use crate::usage::usage_error;
use anyhow::Context;
use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaConfRes;
use rdkafka::ClientConfig;

/// Text shown in place of a secret value.
pub const REDACTED: &str = "[redacted]";

/// Parts of librdkafka keys whose values are secrets or lead to one:
/// `sasl.password`, `ssl.key.pem`, `ssl.keystore.password`,
/// `sasl.oauthbearer.client.secret`, `sasl.kerberos.keytab` and the like.
/// `sasl.jaas.config` is the Java client's name, which librdkafka rejects
/// as unknown, with the password inside.
const SENSITIVE_KEY_PARTS: &[&str] = &[
    "password",
    "secret",
    "key",
    "token",
    "sasl.jaas.config",
    "sasl.oauthbearer.",
];

/// Tells whether the value of librdkafka setting `key` is a secret that must
/// not appear in logs, errors or help text.
pub fn is_sensitive_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SENSITIVE_KEY_PARTS.iter().any(|part| key.contains(part))
}

/// Returns `value` as it may be shown for setting `key`: [`REDACTED`] for a
/// secret, else the value itself.
pub fn shown_value<'a>(key: &str, value: &'a str) -> &'a str {
    if is_sensitive_key(key) {
        REDACTED
    } else {
        value
    }
}

/// Passes every setting of `config` to librdkafka once, so that a rejected
/// key or value fails here, with an error that shows no secret, instead of
/// when a client is created, with librdkafka's error that shows the value.
pub(super) fn check_settings(config: &ClientConfig) -> anyhow::Result<()> {
    let error = match config.create_native_config() {
        Ok(_) => return Ok(()),
        Err(error) => error,
    };
    let KafkaError::ClientConfig(code, description, key, value) = error else {
        return Err(error).context("failed to check the Kafka client settings");
    };
    let hide = is_sensitive_key(&key) || code == RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN;
    if !hide {
        return Err(usage_error(format!(
            "invalid kafka option {key}={value}: {description}"
        )));
    }
    // librdkafka quotes a rejected value in its description.
    let description = if !value.is_empty() && description.contains(&value) {
        "librdkafka rejected the value".to_string()
    } else {
        description
    };
    Err(usage_error(format!(
        "invalid kafka option {key}={REDACTED}: {description}"
    )))
}

/// Reads librdkafka settings from the file at `path`: one `KEY=VALUE` per
/// line, with blank lines and lines starting with `#` ignored.
pub(super) fn read_option_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read kafka option file {path:?}"))?;
    let options = parse_option_lines(&text)
        .with_context(|| format!("failed to parse kafka option file {path:?}"))?;
    warn_if_world_readable(path, &options);
    Ok(options)
}

/// Parses the lines of an option file. Whitespace around keys and values
/// is dropped, so a CRLF file reads like an LF one. Errors name the line
/// number, never its text, which may contain a secret.
fn parse_option_lines(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut options = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match crate::key_value::parse_key_value(line) {
            Ok((key, value)) => options.push((key, value.trim().to_string())),
            Err(reason) => {
                return Err(usage_error(format!("invalid line {}: {reason}", index + 1)));
            }
        }
    }
    Ok(options)
}

/// Logs a warning when a file with a secret setting can be read by every
/// user on the machine.
fn warn_if_world_readable(path: &Path, options: &[(String, String)]) {
    use std::os::unix::fs::PermissionsExt;

    let Ok(metadata) = std::fs::metadata(path) else {
        return;
    };
    let has_secret = options.iter().any(|(key, _)| is_sensitive_key(key));
    if has_secret && metadata.permissions().mode() & 0o004 != 0 {
        tracing::warn!(
            ?path,
            "kafka option file contains a secret and is readable by every user; \
             restrict it with chmod o-r"
        );
    }
}

/// The settings of one `--kafka-option` flag or of the variable.
#[derive(Clone, Debug)]
pub(super) struct OptionList(pub(super) Vec<(String, String)>);

/// Value parser of `--kafka-option`. clap's own error for a failed parser
/// quotes the value, so this parser builds its error without it.
#[derive(Clone, Copy, Debug)]
pub(super) struct KeyValueParser;

impl TypedValueParser for KeyValueParser {
    type Value = OptionList;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let flag = arg.map_or_else(|| "--kafka-option".to_string(), ToString::to_string);
        let invalid = |reason: &str| {
            let message = format!("invalid value for '{flag}': {reason}\n");
            clap::Error::raw(ErrorKind::ValueValidation, message).with_cmd(command)
        };
        let text = value.to_str().ok_or_else(|| invalid("not UTF-8"))?;
        crate::key_value::parse_list(text)
            .map(OptionList)
            .map_err(|reason| invalid(&reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_sensitive() {
        let secrets = [
            "sasl.password",
            "ssl.key.password",
            "ssl.key.pem",
            "ssl.key.location",
            "ssl.keystore.password",
            "ssl.truststore.password",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.token.endpoint.url",
            "sasl.jaas.config",
            "sasl.kerberos.keytab",
            "SASL.PASSWORD",
        ];
        for key in secrets {
            assert!(is_sensitive_key(key), "{key} is a secret");
            assert_eq!(shown_value(key, "hunter2"), REDACTED, "{key}");
        }
    }

    #[test]
    fn plain_keys_are_shown() {
        let plain = [
            "security.protocol",
            "sasl.mechanism",
            "sasl.username",
            "ssl.ca.location",
            "ssl.certificate.location",
            "client.id",
            "message.max.bytes",
        ];
        for key in plain {
            assert!(!is_sensitive_key(key), "{key} is not a secret");
            assert_eq!(shown_value(key, "value"), "value", "{key}");
        }
    }

    #[test]
    fn option_lines_skip_comments() {
        let text = "# SASL\n\nsasl.username = weblog\r\nsasl.password=p=w d \n";
        let options = parse_option_lines(text).expect("valid lines");
        let expected = [
            ("sasl.username".to_string(), "weblog".to_string()),
            ("sasl.password".to_string(), "p=w d".to_string()),
        ];
        assert_eq!(options, expected);
    }

    #[test]
    fn bad_option_line_hides_text() {
        let error = parse_option_lines("a=b\nhunter2\n").expect_err("no '='");
        let message = format!("{error:#}");
        assert!(message.contains("invalid line 2"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn unknown_key_hides_value() {
        let mut config = ClientConfig::new();
        config.set("sasl.pasword", "hunter2");
        let message = check_settings(&config).expect_err("misspelt").to_string();
        assert!(message.contains("sasl.pasword=[redacted]"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn rejected_secret_value_is_hidden() {
        // An enum-typed key under a sensitive prefix: librdkafka quotes the
        // rejected value in its description.
        let mut config = ClientConfig::new();
        config.set("sasl.oauthbearer.method", "hunter2");
        let message = check_settings(&config)
            .expect_err("not a method")
            .to_string();
        assert!(message.contains("sasl.oauthbearer.method"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn rejected_plain_value_is_shown() {
        let mut config = ClientConfig::new();
        config.set("security.protocol", "carrier-pigeon");
        let message = check_settings(&config)
            .expect_err("no such protocol")
            .to_string();
        assert!(
            message.contains("security.protocol=carrier-pigeon"),
            "{message}"
        );
    }

    #[test]
    fn tls_and_scram_settings_are_accepted() {
        let mut config = ClientConfig::new();
        config
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", "weblog")
            .set("sasl.password", "hunter2")
            .set("ssl.ca.location", "/etc/ssl/certs/ca.pem");
        check_settings(&config).expect("librdkafka is built with OpenSSL");
    }
}
