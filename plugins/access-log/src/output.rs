//! Turning one raw Kafka record value into the JSON text of an enriched
//! record: decoding, parsing, enrichment and writing the JSON object.

use std::borrow::Cow;

use base64::Engine as _;

use crate::client;
use crate::config::PluginConfig;
use crate::json::ObjectWriter;
use crate::key;
use crate::parse::{parse_line, AccessRecord, Rejection};
use crate::request::{route_path, split_query, write_route_json};
use crate::user_agent;

/// Keys of the parsed fields that every record has, in output order.
pub const PARSED_KEYS: [&str; 11] = [
    "ip",
    "ident",
    "user",
    "timestamp",
    "method",
    "path",
    "protocol",
    "status",
    "bytes",
    "referer",
    "user_agent",
];

/// Keys of the enrichment that every record has, in output order, after
/// the parsed fields.
pub const ENRICHMENT_KEYS: [&str; 8] = [
    "service",
    "status_class",
    "route",
    "path_only",
    "query",
    "client_class",
    "user_agent_class",
    "timestamp_ms",
];

/// Bytes of JSON output besides the logged values: keys, punctuation and
/// the enrichment values, rounded up so that one allocation usually fits
/// a record.
const OUTPUT_OVERHEAD_BYTES: usize = 384;

/// Parses one raw log line and returns the compact JSON text of its record.
///
/// Bytes that are not valid UTF-8 are replaced by U+FFFD in the values
/// instead of rejecting the line, and the raw line is kept, base64-encoded,
/// in `line_base64`. Such a line costs one allocation more than the
/// output, for its decoded copy.
pub fn enrich_line(raw: &[u8], config: &PluginConfig) -> Result<String, Rejection> {
    // `from_utf8` validates faster than `from_utf8_lossy` on valid input.
    let line = match std::str::from_utf8(raw) {
        Ok(line) => Cow::Borrowed(line),
        Err(_) => String::from_utf8_lossy(raw),
    };
    let record = parse_line(&line)?;
    let raw_if_lossy = match line {
        Cow::Borrowed(_) => None,
        Cow::Owned(_) => Some(raw),
    };

    // The path is written up to three times: as logged, without its query
    // and as a route.
    let path_length = record.request.path.map_or(0, str::len);
    let mut out = String::with_capacity(raw.len() + 2 * path_length + OUTPUT_OVERHEAD_BYTES);
    write_record(&record, config, raw_if_lossy, &mut out);
    Ok(out)
}

/// Writes the JSON object of a parsed record: the parsed fields in a fixed
/// order, the keys that apply only to some lines, then the enrichment.
fn write_record(
    record: &AccessRecord<'_>,
    config: &PluginConfig,
    raw_if_lossy: Option<&[u8]>,
    out: &mut String,
) {
    let mut object = ObjectWriter::begin(out);
    let request = &record.request;

    // `ip`, `method` and `protocol` were checked to be an IP literal, an
    // upper-case token and `HTTP/<version>`, so they need no escaping.
    object.optional_plain_string(key!("ip"), record.client.ip);
    if let Some(host) = record.client.host {
        object.string(key!("host"), host);
    }
    if let Some(chain) = record.client.forwarded_for {
        object.strings(key!("forwarded_for"), chain.entries());
    }
    if let Some(vhost) = record.vhost {
        object.string(key!("vhost"), vhost);
    }
    object.optional_string(key!("ident"), record.ident);
    object.optional_string(key!("user"), record.user);
    let timestamp = object.key(key!("timestamp"));
    timestamp.push('"');
    record.timestamp.write_rfc3339(timestamp);
    timestamp.push('"');
    object.optional_plain_string(key!("method"), request.method);
    object.optional_string(key!("path"), request.path);
    object.optional_plain_string(key!("protocol"), request.protocol);
    object.integer(key!("status"), record.status);
    object.optional_integer(key!("bytes"), record.bytes);
    object.optional_string(key!("referer"), record.referer);
    object.optional_string(key!("user_agent"), record.user_agent);
    if let Some(unsplit) = request.unsplit {
        object.optional_string(key!("request"), unsplit);
    }
    if let Some(extra) = record.extra {
        object.string(key!("extra"), extra);
    }

    object.string(key!("service"), config.services.service_for(request.path));
    object.optional_plain_string(key!("status_class"), status_class(record.status));
    match request.path.and_then(route_path) {
        Some(path) => write_route_json(path, config.hex_id_min_length, object.key(key!("route"))),
        None => object.null(key!("route")),
    }
    let (path_only, query) = match request.path.map(split_query) {
        Some((path_only, query)) => (Some(path_only), query),
        None => (None, None),
    };
    object.optional_string(key!("path_only"), path_only);
    object.optional_string(key!("query"), query);
    let client_class = record.client.address.map(client::classify);
    object.optional_plain_string(
        key!("client_class"),
        client_class.map(client::AddressClass::as_str),
    );
    let user_agent_class = user_agent::classify(record.user_agent);
    object.plain_string(key!("user_agent_class"), user_agent_class.as_str());
    object.integer(key!("timestamp_ms"), record.timestamp.epoch_millis());
    if let Some(raw) = raw_if_lossy {
        let value = object.key(key!("line_base64"));
        value.push('"');
        base64::engine::general_purpose::STANDARD.encode_string(raw, value);
        value.push('"');
    }
    object.end();
}

/// Returns `1xx` to `5xx` by the first digit of the status, or `None` for a
/// status outside 100 to 599 (some servers log `000` or `999`).
fn status_class(status: u16) -> Option<&'static str> {
    match status / 100 {
        1 => Some("1xx"),
        2 => Some("2xx"),
        3 => Some("3xx"),
        4 => Some("4xx"),
        5 => Some("5xx"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn enrich(raw: &[u8]) -> Value {
        let text = match enrich_line(raw, &PluginConfig::default()) {
            Ok(text) => text,
            Err(rejection) => panic!("line rejected: {rejection}"),
        };
        serde_json::from_str(&text).expect("output is valid JSON")
    }

    #[test]
    fn combined_line_keys_in_order() {
        let text = enrich_line(
            b"198.51.100.61 - - [16/Aug/2013:15:45:34 +0545] \"GET /docs/ HTTP/1.1\" 200 3050 \"-\" \"ExampleCrawler/0.3\"",
            &PluginConfig::default(),
        )
        .expect("line is valid");
        assert_eq!(
            text,
            "{\"ip\":\"198.51.100.61\",\"ident\":null,\"user\":null,\
             \"timestamp\":\"2013-08-16T15:45:34+05:45\",\"method\":\"GET\",\"path\":\"/docs/\",\
             \"protocol\":\"HTTP/1.1\",\"status\":200,\"bytes\":3050,\"referer\":null,\
             \"user_agent\":\"ExampleCrawler/0.3\",\"service\":\"web\",\"status_class\":\"2xx\",\
             \"route\":\"/docs/\",\"path_only\":\"/docs/\",\"query\":null,\
             \"client_class\":\"documentation\",\"user_agent_class\":\"crawler\",\
             \"timestamp_ms\":1376647234000}"
        );
    }

    #[test]
    fn hostname_adds_host_key() {
        let record = enrich(
            b"ix-den14-15.ix.netcom.com - - [01/Jul/1995:00:00:01 -0400] \"GET /history/apollo/ HTTP/1.0\" 200 6245",
        );
        assert_eq!(record["ip"], Value::Null);
        assert_eq!(record["host"], json!("ix-den14-15.ix.netcom.com"));
        assert_eq!(record["referer"], Value::Null);
        assert_eq!(record["user_agent"], Value::Null);
    }

    #[test]
    fn optional_keys_absent_when_unused() {
        let record = enrich(b"192.0.2.1 - - [01/Jul/1995:00:00:01 -0400] \"GET / HTTP/1.0\" 200 1");
        let object = record.as_object().expect("record is an object");
        for key in [
            "host",
            "forwarded_for",
            "vhost",
            "request",
            "extra",
            "line_base64",
        ] {
            assert!(!object.contains_key(key), "unexpected key {key}");
        }
        for key in PARSED_KEYS.iter().chain(&ENRICHMENT_KEYS) {
            assert!(object.contains_key(*key), "missing key {key}");
        }
    }

    #[test]
    fn request_key_null_for_dash() {
        let record =
            enrich(b"192.0.2.129 - - [18/Jul/2016:02:28:21 -0400] \"-\" 408 - \"-\" \"-\"");
        assert_eq!(record["request"], Value::Null);
        assert!(record.as_object().expect("object").contains_key("request"));
        assert_eq!(record["path"], Value::Null);
        assert_eq!(record["service"], json!("web"));
    }

    #[test]
    fn request_and_extra_keys() {
        let record =
            enrich(b"198.51.100.167 - - [01/Mar/2021:03:25:25 +0800] \"\" 400 0 \"-\" \"-\" \"-\"");
        assert_eq!(record["request"], json!(""));
        assert_eq!(record["extra"], json!("\"-\""));
        assert_eq!(record["bytes"], json!(0));
    }

    #[test]
    fn invalid_utf8_becomes_replacement() {
        let record = enrich(
            b"192.0.2.150 - - [12/Jul/1995:10:15:00 -0400] \"GET /shuttle/resources/orbiters/\xdcb HTTP/1.0\" 404 -",
        );
        assert_eq!(
            record["path"],
            json!("/shuttle/resources/orbiters/\u{FFFD}b")
        );
        assert_eq!(record["protocol"], json!("HTTP/1.0"));
        // "192.0.2.150 - - [12/Jul/1995:10:15:00 -0400] \"GET /shuttle/reso"
        // "urces/orbiters/\xdcb HTTP/1.0\" 404 -", encoded by Python's
        // base64.b64encode.
        assert_eq!(
            record["line_base64"],
            json!(
                "MTkyLjAuMi4xNTAgLSAtIFsxMi9KdWwvMTk5NToxMDoxNTowMCAtMDQwMF0gIkdFVCAvc2h1dHRsZS9y\
                 ZXNvdXJjZXMvb3JiaXRlcnMv3GIgSFRUUC8xLjAiIDQwNCAt"
            )
        );
    }

    #[test]
    fn valid_utf8_has_no_line_base64() {
        let record = enrich(
            "192.0.2.5 - t.smith [03/Jan/2016:10:39:06 +0100] \"GET /Download/Bericht über.pdf HTTP/1.1\" 200 96063"
                .as_bytes(),
        );
        assert_eq!(record["path"], json!("/Download/Bericht über.pdf"));
        assert!(record.get("line_base64").is_none(), "{record}");
    }

    #[test]
    fn service_from_rules() {
        let config = PluginConfig::from_config(&[
            (
                "service.route./api/orders".to_owned(),
                "orders-api".to_owned(),
            ),
            ("service.default".to_owned(), "shop".to_owned()),
        ])
        .expect("valid config");
        let service = |line: &[u8]| -> Value {
            let text = enrich_line(line, &config).expect("valid line");
            let record: Value = serde_json::from_str(&text).expect("output is valid JSON");
            record["service"].clone()
        };
        assert_eq!(
            service(b"198.51.100.23 - - [16/Apr/2018:16:19:20 +0000] \"POST /api/orders HTTP/1.1\" 201 73"),
            json!("orders-api")
        );
        assert_eq!(
            service(
                b"198.51.100.23 - - [16/Apr/2018:16:19:20 +0000] \"GET /cart HTTP/1.1\" 200 73"
            ),
            json!("shop")
        );
    }

    #[test]
    fn rejection_passes_through() {
        assert_eq!(
            enrich_line(b"  \r", &PluginConfig::default()),
            Err(Rejection::EmptyLine)
        );
    }

    #[test]
    fn enrichment_of_orders_request() {
        let record = enrich(
            b"10.1.2.3 - - [01/Jun/2020:10:00:00.250 +0200] \"GET /api/orders/123/items/3f2504e0-4f89-11d3-9a0c-0305e82c3301?expand=1&x=%20 HTTP/1.1\" 503 12 \"-\" \"curl/8.5.0\"",
        );
        assert_eq!(record["service"], json!("orders-api"));
        assert_eq!(record["status_class"], json!("5xx"));
        assert_eq!(record["route"], json!("/api/orders/{id}/items/{id}"));
        assert_eq!(
            record["path_only"],
            json!("/api/orders/123/items/3f2504e0-4f89-11d3-9a0c-0305e82c3301")
        );
        assert_eq!(record["query"], json!("expand=1&x=%20"));
        assert_eq!(record["client_class"], json!("private"));
        assert_eq!(record["user_agent_class"], json!("tool"));
        // 2020-06-01T08:00:00.250Z
        assert_eq!(record["timestamp_ms"], json!(1_590_998_400_250_i64));
    }

    #[test]
    fn enrichment_without_request_target() {
        let record =
            enrich(b"192.0.2.129 - - [18/Jul/2016:02:28:21 -0400] \"-\" 408 - \"-\" \"-\"");
        assert_eq!(record["status_class"], json!("4xx"));
        assert_eq!(record["route"], Value::Null);
        assert_eq!(record["path_only"], Value::Null);
        assert_eq!(record["query"], Value::Null);
        assert_eq!(record["user_agent_class"], json!("unknown"));
    }

    #[test]
    fn enrichment_of_hostname_and_connect() {
        let record = enrich(
            b"crawl.example.com - - [06/Aug/2021:11:02:10 +0000] \"CONNECT example.com:443 HTTP/1.1\" 000 150",
        );
        assert_eq!(record["client_class"], Value::Null);
        assert_eq!(record["status_class"], Value::Null);
        assert_eq!(record["route"], Value::Null);
        assert_eq!(record["path_only"], json!("example.com:443"));
        assert_eq!(record["query"], Value::Null);
    }

    #[test]
    fn vhost_and_forwarded_for_keys() {
        let record = enrich(
            b"www.example.com:443 192.0.2.10, 10.0.0.7 - - [06/Sep/2024:00:00:40 +0000] \"GET / HTTP/1.1\" 200 1",
        );
        assert_eq!(record["vhost"], json!("www.example.com:443"));
        assert_eq!(record["ip"], json!("192.0.2.10"));
        assert_eq!(record["forwarded_for"], json!(["192.0.2.10", "10.0.0.7"]));
        assert_eq!(record["client_class"], json!("documentation"));
        assert!(record.get("host").is_none(), "{record}");
    }

    #[test]
    fn route_uses_configured_hex_length() {
        let config =
            PluginConfig::from_config(&[("route.hex_id_min_length".to_owned(), "4".to_owned())])
                .expect("valid config");
        let text = enrich_line(
            b"192.0.2.1 - - [01/Jun/2020:10:00:00 +0000] \"GET /blob/a1b2/raw HTTP/1.1\" 200 1",
            &config,
        )
        .expect("valid line");
        let record: Value = serde_json::from_str(&text).expect("output is valid JSON");
        assert_eq!(record["route"], json!("/blob/{id}/raw"));
        assert_eq!(
            enrich(
                b"192.0.2.1 - - [01/Jun/2020:10:00:00 +0000] \"GET /blob/a1b2/raw HTTP/1.1\" 200 1"
            )["route"],
            json!("/blob/a1b2/raw")
        );
    }

    #[test]
    fn control_characters_escaped() {
        let record = enrich(
            b"192.0.2.1 - - [01/Jun/2020:10:00:00 +0000] \"GET /a\x01\"b HTTP/1.1\" 200 1 \"-\" \"x\x7f\ty\"",
        );
        assert_eq!(record["path"], json!("/a\u{1}\"b"));
        assert_eq!(record["user_agent"], json!("x\u{7f}\ty"));
    }
}
