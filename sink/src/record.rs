//! Checking that a record value can be written as one line of the JSON
//! Lines file.
//!
//! A value qualifies when it is one valid JSON value in UTF-8. A value that
//! spreads over several lines is made compact by dropping the whitespace
//! between tokens, which keeps every other byte, so numbers and string
//! escapes stay exactly as the producer wrote them.

use std::borrow::Cow;

use serde_json::value::RawValue;

/// Returns the line to write for `value`, without a `\n`, or the reason it
/// cannot be written.
pub(crate) fn check_value(value: Option<&[u8]>) -> Result<Cow<'_, [u8]>, String> {
    let Some(bytes) = value else {
        return Err("record value is null (a tombstone), not JSON".to_string());
    };
    serde_json::from_slice::<&RawValue>(bytes).map_err(|error| error.to_string())?;
    // Valid JSON escapes line breaks inside strings, so a raw '\n' or '\r'
    // can only be whitespace between tokens.
    if bytes.iter().any(|&byte| byte == b'\n' || byte == b'\r') {
        Ok(Cow::Owned(compact_json(bytes)))
    } else {
        Ok(Cow::Borrowed(bytes))
    }
}

/// Removes the whitespace between the tokens of `json`, which must already
/// be valid JSON.
fn compact_json(json: &[u8]) -> Vec<u8> {
    let mut compact = Vec::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            compact.push(byte);
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            in_string = byte == b'"';
            compact.push(byte);
        }
    }
    compact
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(value: &[u8]) -> Vec<u8> {
        check_value(Some(value))
            .expect("value is valid JSON")
            .into_owned()
    }

    fn reason(value: Option<&[u8]>) -> String {
        check_value(value).expect_err("value is rejected")
    }

    #[test]
    fn one_line_object_is_kept_as_is() {
        let value = br#"{"status": 200, "path": "/a b"}"#;
        assert!(matches!(check_value(Some(value)), Ok(Cow::Borrowed(_))));
        assert_eq!(line(value), value);
    }

    #[test]
    fn scalars_and_arrays_are_valid() {
        assert_eq!(line(b"42"), b"42");
        assert_eq!(line(b"\"text\""), b"\"text\"");
        assert_eq!(line(b"[1,null,true]"), b"[1,null,true]");
    }

    #[test]
    fn multiline_value_is_compacted() {
        let value = b"{\n  \"a\": 1,\r\n  \"b\": [1, 2]\n}\n";
        assert_eq!(line(value), br#"{"a":1,"b":[1,2]}"#);
    }

    #[test]
    fn compaction_keeps_string_content() {
        let value = b"{\"msg\": \"a \\\"quoted\\\" \\\\ b\\n\",\n \"t\": \"\\\\\"}";
        assert_eq!(line(value), br#"{"msg":"a \"quoted\" \\ b\n","t":"\\"}"#);
    }

    #[test]
    fn compaction_keeps_number_text() {
        let value = b"[12345678901234567890123,\n 1.50, 1e400]";
        assert_eq!(line(value), b"[12345678901234567890123,1.50,1e400]");
    }

    #[test]
    fn escaped_newline_in_string_is_one_line() {
        let value = br#"{"a":"x\ny"}"#;
        assert!(matches!(check_value(Some(value)), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn invalid_json_is_rejected() {
        let text = reason(Some(b"GET / HTTP/1.1"));
        assert!(text.contains("expected value"), "{text}");
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let text = reason(Some(b"{\"a\":1} {\"b\":2}"));
        assert!(text.contains("trailing characters"), "{text}");
    }

    #[test]
    fn empty_value_is_rejected() {
        let text = reason(Some(b""));
        assert!(text.contains("EOF"), "{text}");
    }

    #[test]
    fn non_utf8_value_is_rejected() {
        let text = reason(Some(b"\"\xff\""));
        assert!(text.contains("invalid unicode"), "{text}");
    }

    #[test]
    fn tombstone_is_rejected() {
        assert!(reason(None).contains("tombstone"));
    }
}
