//! Turning one raw Kafka record value into the JSON text of an enriched
//! record: decoding, parsing, service routing and serialization.

use serde::Serialize;

use crate::config::ServiceRules;
use crate::parse::{parse_line, AccessRecord, Rejection};

/// The JSON object the plugin emits: the parsed fields, then `service`.
#[derive(Serialize)]
struct EnrichedRecord<'a> {
    #[serde(flatten)]
    record: AccessRecord<'a>,
    service: &'a str,
}

/// Parses one raw log line and returns the compact JSON text of its record.
///
/// Bytes that are not valid UTF-8 are replaced by U+FFFD instead of
/// rejecting the line.
pub fn enrich_line(raw: &[u8], rules: &ServiceRules) -> Result<String, Rejection> {
    let line = String::from_utf8_lossy(raw);
    let record = parse_line(&line)?;
    let service = rules.service_for(record.path);
    serde_json::to_string(&EnrichedRecord { record, service })
        .map_err(|error| Rejection::Serialization(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn enrich(raw: &[u8]) -> Value {
        let text = match enrich_line(raw, &ServiceRules::default()) {
            Ok(text) => text,
            Err(rejection) => panic!("line rejected: {rejection}"),
        };
        serde_json::from_str(&text).expect("output is valid JSON")
    }

    #[test]
    fn combined_line_keys_in_order() {
        let text = enrich_line(
            b"198.51.100.61 - - [16/Aug/2013:15:45:34 +0545] \"GET /docs/ HTTP/1.1\" 200 3050 \"-\" \"ExampleCrawler/0.3\"",
            &ServiceRules::default(),
        )
        .expect("line is valid");
        assert_eq!(
            text,
            "{\"ip\":\"198.51.100.61\",\"ident\":null,\"user\":null,\
             \"timestamp\":\"2013-08-16T15:45:34+05:45\",\"method\":\"GET\",\"path\":\"/docs/\",\
             \"protocol\":\"HTTP/1.1\",\"status\":200,\"bytes\":3050,\"referer\":null,\
             \"user_agent\":\"ExampleCrawler/0.3\",\"service\":\"web\"}"
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
        for key in ["host", "request", "extra"] {
            assert!(!object.contains_key(key), "unexpected key {key}");
        }
        for key in [
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
            "service",
        ] {
            assert!(object.contains_key(key), "missing key {key}");
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
    }

    #[test]
    fn service_from_rules() {
        let rules = ServiceRules::from_config(&[
            (
                "service.route./api/orders".to_owned(),
                "orders-api".to_owned(),
            ),
            ("service.default".to_owned(), "shop".to_owned()),
        ])
        .expect("valid config");
        let orders = enrich_line(
            b"198.51.100.23 - - [16/Apr/2018:16:19:20 +0000] \"POST /api/orders HTTP/1.1\" 201 73",
            &rules,
        )
        .expect("valid line");
        assert!(orders.ends_with(",\"service\":\"orders-api\"}"), "{orders}");
        let other = enrich_line(
            b"198.51.100.23 - - [16/Apr/2018:16:19:20 +0000] \"GET /cart HTTP/1.1\" 200 73",
            &rules,
        )
        .expect("valid line");
        assert!(other.ends_with(",\"service\":\"shop\"}"), "{other}");
    }

    #[test]
    fn rejection_passes_through() {
        assert_eq!(
            enrich_line(b"  \r", &ServiceRules::default()),
            Err(Rejection::EmptyLine)
        );
    }
}
