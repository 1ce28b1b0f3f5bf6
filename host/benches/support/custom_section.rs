//! Appending a custom section to a WebAssembly component, which changes
//! its digest but not its behaviour. The swap bench and the swap tests use
//! it to make new builds of one plugin; both include this file with
//! `#[path]`.

/// Returns `component` with a custom section `name` holding `payload`
/// appended.
pub(crate) fn with_custom_section(component: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut content = leb128(name.len());
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    let mut bytes = component.to_vec();
    bytes.push(0);
    bytes.extend(leb128(content.len()));
    bytes.extend(content);
    bytes
}

/// Encodes `value` as unsigned LEB128, the integer encoding of the
/// WebAssembly binary format.
fn leb128(mut value: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            bytes.push(byte);
            return bytes;
        }
        bytes.push(byte | 0x80);
    }
}
