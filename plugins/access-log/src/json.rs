//! A minimal JSON object writer that appends to one `String`, so that a
//! record is written without any allocation besides the output itself.

/// Escape for each byte: 0 for none, `u` for `\u00XX`, else the letter
/// after the backslash. The same escapes as `serde_json` writes.
static ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `text` with the characters JSON requires escaped: `"`, `\` and
/// the control characters below U+0020. The quotes around it are the
/// caller's.
pub fn push_escaped(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut index = 0;
    while index < bytes.len() {
        index += clean_prefix_length(&bytes[index..]);
        let Some(byte) = bytes.get(index) else {
            break;
        };
        let escape = ESCAPES[usize::from(*byte)];
        if escape == 0 {
            index += 1;
            continue;
        }
        // `byte` is ASCII, so `index` is a char boundary.
        out.push_str(&text[start..index]);
        out.push('\\');
        out.push(char::from(escape));
        if escape == b'u' {
            out.push_str("00");
            out.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            out.push(char::from(HEX_DIGITS[usize::from(byte & 0xf)]));
        }
        index += 1;
        start = index;
    }
    out.push_str(&text[start..]);
}

/// Appends `text` as a JSON string, quotes included.
fn push_string(out: &mut String, text: &str) {
    out.push('"');
    push_escaped(out, text);
    out.push('"');
}

/// Returns how many leading whole 8-byte words of `bytes` need no escape,
/// in bytes. It tests eight bytes at once with the "has a zero byte" and
/// "has a byte less than n" tricks from Sean Anderson's Bit Twiddling
/// Hacks. Both may flag a word that needs no escape but never miss one
/// that does, and the caller then checks a flagged word byte by byte.
fn clean_prefix_length(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;

    let mut length = 0;
    for chunk in bytes.chunks_exact(8) {
        let word = u64::from_ne_bytes(chunk.try_into().expect("chunks_exact yields 8 bytes"));
        let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
        let quote = has_zero(word ^ (ONES * u64::from(b'"')));
        let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
        if below_space | quote | backslash != 0 {
            break;
        }
        length += 8;
    }
    length
}

/// A member name of an object, rendered with its leading comma, quotes and
/// colon (`,"name":`), so that writing it is one copy. Made by [`key!`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key(pub &'static str);

/// Renders a member name that needs no escaping as a [`Key`].
#[macro_export]
macro_rules! key {
    ($name:literal) => {
        $crate::json::Key(concat!(",\"", $name, "\":"))
    };
}

/// A JSON object being written to a `String`.
pub struct ObjectWriter<'o> {
    out: &'o mut String,
    empty: bool,
}

impl<'o> ObjectWriter<'o> {
    /// Starts an object at the end of `out`.
    pub fn begin(out: &'o mut String) -> Self {
        out.push('{');
        Self { out, empty: true }
    }

    /// Writes `key` and the colon, and returns the output for the value.
    pub fn key(&mut self, key: Key) -> &mut String {
        // The first member has no comma before it.
        let rendered = if self.empty { &key.0[1..] } else { key.0 };
        self.empty = false;
        self.out.push_str(rendered);
        self.out
    }

    /// Writes `null` as the value of `key`.
    pub fn null(&mut self, key: Key) {
        self.key(key).push_str("null");
    }

    /// Writes a string member whose value the caller knows needs no
    /// escaping: a class name from a fixed list, or text it has checked,
    /// such as an IP literal.
    pub fn plain_string(&mut self, key: Key, value: &str) {
        let out = self.key(key);
        out.push('"');
        out.push_str(value);
        out.push('"');
    }

    /// Writes a string member as [`Self::plain_string`] does, or `null`
    /// for `None`.
    pub fn optional_plain_string(&mut self, key: Key, value: Option<&str>) {
        match value {
            Some(value) => self.plain_string(key, value),
            None => self.null(key),
        }
    }

    /// Writes a string member.
    pub fn string(&mut self, key: Key, value: &str) {
        push_string(self.key(key), value);
    }

    /// Writes a string member, or `null` for `None`.
    pub fn optional_string(&mut self, key: Key, value: Option<&str>) {
        match value {
            Some(value) => self.string(key, value),
            None => self.null(key),
        }
    }

    /// Writes an integer member.
    pub fn integer(&mut self, key: Key, value: impl itoa::Integer) {
        let mut buffer = itoa::Buffer::new();
        self.key(key).push_str(buffer.format(value));
    }

    /// Writes an integer member, or `null` for `None`.
    pub fn optional_integer(&mut self, key: Key, value: Option<impl itoa::Integer>) {
        match value {
            Some(value) => self.integer(key, value),
            None => self.null(key),
        }
    }

    /// Writes an array of strings.
    pub fn strings<'v>(&mut self, key: Key, values: impl Iterator<Item = &'v str>) {
        let out = self.key(key);
        out.push('[');
        for (index, value) in values.enumerate() {
            if index > 0 {
                out.push(',');
            }
            push_string(out, value);
        }
        out.push(']');
    }

    /// Closes the object.
    pub fn end(self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = String::new();
        push_escaped(&mut out, text);
        out
    }

    #[test]
    fn escapes_like_serde_json() {
        for text in [
            "plain",
            "quote \" and backslash \\",
            "\\x16\\x03 as logged",
            "controls \u{0}\u{8}\t\n\u{b}\u{c}\r\u{1f} end",
            "del \u{7f} and non-ASCII über \u{FFFD} 😀",
            "",
        ] {
            let expected = serde_json::to_string(text).expect("serde_json encodes strings");
            assert_eq!(format!("\"{}\"", escaped(text)), expected, "{text:?}");
        }
    }

    #[test]
    fn object_members_in_order() {
        let mut out = String::new();
        let mut object = ObjectWriter::begin(&mut out);
        object.string(key!("a"), "x\"y");
        object.optional_string(key!("b"), None);
        object.integer(key!("c"), 18_446_744_073_709_551_615_u64);
        object.optional_integer(key!("d"), None::<u64>);
        object.integer(key!("e"), -1_000_i64);
        object.strings(key!("f"), ["1", "2"].into_iter());
        object.strings(key!("g"), std::iter::empty());
        object.plain_string(key!("h"), "2xx");
        object.optional_plain_string(key!("i"), None);
        object.end();
        assert_eq!(
            out,
            "{\"a\":\"x\\\"y\",\"b\":null,\"c\":18446744073709551615,\"d\":null,\
             \"e\":-1000,\"f\":[\"1\",\"2\"],\"g\":[],\"h\":\"2xx\",\"i\":null}"
        );
    }
}
