//! `KEY=VALUE` settings and comma-separated lists of them, as
//! `--kafka-option` and `--plugin-config` take them.

/// Splits `key=value` at its first `=`. The error never quotes the text,
/// since a value without its key may be a secret.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err("expected KEY=VALUE, but there is no '='".to_string());
    };
    let key = key.trim();
    if key.is_empty() {
        return Err("expected KEY=VALUE, but the key before '=' is empty".to_string());
    }
    Ok((key.to_string(), value.to_string()))
}

/// Splits a list of settings at its commas. A part without `=` belongs to
/// the value before it, so that a list value such as `debug=msg,broker`
/// stays one setting. The error never quotes the text.
pub fn parse_list(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut settings: Vec<(String, String)> = Vec::new();
    for part in text.split(',') {
        match (parse_key_value(part), settings.last_mut()) {
            (Ok(setting), _) => settings.push(setting),
            (Err(_), Some((_, value))) if !part.contains('=') => {
                value.push(',');
                value.push_str(part);
            }
            (Err(reason), _) => return Err(reason),
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_keeps_list_values() {
        let cases: [(&str, &[(&str, &str)]); 4] = [
            ("debug=msg,broker", &[("debug", "msg,broker")]),
            (
                "security.protocol=SSL,debug=msg,topic,linger.ms=5",
                &[
                    ("security.protocol", "SSL"),
                    ("debug", "msg,topic"),
                    ("linger.ms", "5"),
                ],
            ),
            ("a=x=y", &[("a", "x=y")]),
            (" key =value ", &[("key", "value ")]),
        ];
        for (text, expected) in cases {
            let settings = parse_list(text).expect("valid list");
            let expected: Vec<(String, String)> = expected
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect();
            assert_eq!(settings, expected, "{text}");
        }
    }

    #[test]
    fn list_without_key_first_is_an_error() {
        let error = parse_list("broker,debug=msg").expect_err("no key first");
        assert!(error.contains("no '='"), "{error}");
        let error = parse_list("a=1,=2").expect_err("empty key");
        assert!(error.contains("key before '=' is empty"), "{error}");
    }
}
