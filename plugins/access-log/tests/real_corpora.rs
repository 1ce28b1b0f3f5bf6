//! Runs the parser over the three real access logs kept beside the
//! repository in `shared/data/real` and pins how many lines each accepts.
//!
//! The logs are not copied into the repository: a missing file fails the
//! test with its path instead of skipping it.

use std::path::PathBuf;

use serde_json::{json, Value};
use weblog_access_log::config::PluginConfig;
use weblog_access_log::output::enrich_line;

/// Keys every emitted record has, whatever the line.
const ALWAYS_PRESENT: [&str; 12] = [
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
];

fn corpus_path(file_name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/real")
        .join(file_name)
}

/// Outcome of parsing one corpus: the emitted records, and the 1-based
/// line numbers and reasons of the rejected lines.
struct CorpusResult {
    records: Vec<Value>,
    rejected: Vec<(usize, String)>,
}

fn parse_corpus(file_name: &str) -> CorpusResult {
    let path = corpus_path(file_name);
    let contents = std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "failed to read the real corpus at {}: {error}. The test needs the shared data \
             folder next to the repository checkout (../shared/data/real from its root)",
            path.display()
        )
    });
    let config = PluginConfig::default();
    let mut result = CorpusResult {
        records: Vec::new(),
        rejected: Vec::new(),
    };
    let lines = contents.strip_suffix(b"\n").unwrap_or(&contents);
    for (index, line) in lines.split(|byte| *byte == b'\n').enumerate() {
        match enrich_line(line, &config) {
            Ok(text) => {
                let record: Value = serde_json::from_str(&text).unwrap_or_else(|error| {
                    panic!("line {}: invalid JSON {text}: {error}", index + 1)
                });
                result.records.push(record);
            }
            Err(rejection) => result.rejected.push((index + 1, rejection.to_string())),
        }
    }
    result
}

fn assert_standard_keys(file_name: &str, records: &[Value]) {
    for record in records {
        let object = record
            .as_object()
            .unwrap_or_else(|| panic!("{file_name}: record is not an object: {record}"));
        for key in ALWAYS_PRESENT {
            assert!(
                object.contains_key(key),
                "{file_name}: no `{key}` in {record}"
            );
        }
    }
}

fn count_where(records: &[Value], predicate: impl Fn(&Value) -> bool) -> usize {
    records.iter().filter(|record| predicate(record)).count()
}

fn timestamps_end_with(records: &[Value], offset: &str) -> usize {
    count_where(records, |record| {
        record["timestamp"]
            .as_str()
            .is_some_and(|timestamp| timestamp.ends_with(offset))
    })
}

#[test]
fn elastic_apache_counts() {
    let result = parse_corpus("elastic-apache.log");
    assert_eq!(result.records.len(), 9999);
    assert_eq!(
        result.rejected,
        vec![(8899, "unterminated quoted field: user agent".to_owned())]
    );
    assert_standard_keys("elastic-apache.log", &result.records);

    let records = &result.records;
    assert_eq!(timestamps_end_with(records, "+00:00"), 9999);
    // No corpus logs a virtual host or a forwarded-for chain.
    assert_eq!(
        count_where(records, |record| record.get("vhost").is_some()
            || record.get("forwarded_for").is_some()),
        0
    );
    assert_eq!(
        count_where(records, |record| record["bytes"].is_null()),
        669
    );
    assert_eq!(
        count_where(records, |record| record["ip"].is_string()),
        9999
    );
    // 190 lines log the user agent as `-`.
    assert_eq!(
        count_where(records, |record| record["user_agent"].is_string()),
        9809
    );
    assert_eq!(
        count_where(records, |record| record.get("extra").is_some()),
        0
    );
}

#[test]
fn nasa_counts() {
    let result = parse_corpus("nasa-jul-aug95-random-sample.log");
    assert_eq!(result.records.len(), 10000);
    assert_eq!(result.rejected, Vec::<(usize, String)>::new());
    assert_standard_keys("nasa-jul-aug95-random-sample.log", &result.records);

    let records = &result.records;
    assert_eq!(timestamps_end_with(records, "-04:00"), 10000);
    // No corpus logs a virtual host or a forwarded-for chain.
    assert_eq!(
        count_where(records, |record| record.get("vhost").is_some()
            || record.get("forwarded_for").is_some()),
        0
    );
    assert_eq!(
        count_where(records, |record| record.get("host").is_some()),
        7591
    );
    assert_eq!(count_where(records, |record| record["ip"].is_null()), 7591);
    assert_eq!(
        count_where(records, |record| record["bytes"].is_null()),
        101
    );
    // 13 requests without a protocol and 3 with text glued onto it.
    assert_eq!(
        count_where(records, |record| record["protocol"].is_null()),
        16
    );
    assert_eq!(count_where(records, |record| record["method"].is_null()), 0);
    assert_eq!(
        count_where(records, |record| record["referer"].is_null()),
        10000
    );
    assert_eq!(
        count_where(records, |record| record["user_agent"].is_null()),
        10000
    );
}

#[test]
fn basjes_counts() {
    let result = parse_corpus("basjes-hackers-access.log");
    assert_eq!(result.records.len(), 3456);
    assert_eq!(result.rejected, Vec::<(usize, String)>::new());
    assert_standard_keys("basjes-hackers-access.log", &result.records);

    let records = &result.records;
    assert_eq!(timestamps_end_with(records, "+01:00"), 3456);
    // No corpus logs a virtual host or a forwarded-for chain.
    assert_eq!(
        count_where(records, |record| record.get("vhost").is_some()
            || record.get("forwarded_for").is_some()),
        0
    );
    let ipv6_clients = count_where(records, |record| {
        record["ip"].as_str().is_some_and(|ip| ip.contains(':'))
    });
    assert_eq!(ipv6_clients, 12);
    assert_eq!(
        count_where(records, |record| record.get("host").is_some()),
        0
    );
    assert_eq!(
        count_where(records, |record| record["method"] == "POST"),
        1080
    );
}

/// Returns the record of one corpus line, numbered from 1.
fn enrich_corpus_line(file_name: &str, number: usize) -> Value {
    let path = corpus_path(file_name);
    let contents = std::fs::read(&path)
        .unwrap_or_else(|error| panic!("failed to read {}: {error}", path.display()));
    let line = contents
        .split(|byte| *byte == b'\n')
        .nth(number - 1)
        .unwrap_or_else(|| panic!("{file_name} has no line {number}"));
    let text = enrich_line(line, &PluginConfig::default())
        .unwrap_or_else(|rejection| panic!("{file_name}:{number} rejected: {rejection}"));
    serde_json::from_str(&text).expect("output is valid JSON")
}

/// Compares the given keys of each pinned line with the values read off
/// the line by hand, and reports every difference at once.
fn assert_pinned(file_name: &str, pinned: &[(usize, Value)]) {
    let mut failures = Vec::new();
    for (number, expected) in pinned {
        let record = enrich_corpus_line(file_name, *number);
        let expected = expected.as_object().expect("pinned values are an object");
        for (key, value) in expected {
            if record.get(key) != Some(value) {
                failures.push(format!(
                    "{file_name}:{number}: `{key}` is {}, expected {value}",
                    record.get(key).unwrap_or(&Value::Null)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const FIREFOX_27: &str = "Mozilla/5.0 (Windows NT 6.1; WOW64; rv:27.0) Gecko/20100101 Firefox/27.0";
const CHROME_32_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 \
                             (KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36";

#[test]
fn elastic_pinned_lines() {
    assert_pinned(
        "elastic-apache.log",
        &[
            (
                1,
                json!({
                    "ip": "83.149.9.216", "ident": null, "user": null,
                    "timestamp": "2015-05-17T10:05:03+00:00", "timestamp_ms": 1_431_857_103_000_i64,
                    "method": "GET",
                    "path": "/presentations/logstash-monitorama-2013/images/kibana-search.png",
                    "protocol": "HTTP/1.1", "status": 200, "bytes": 203_023,
                    "referer": "http://semicomplete.com/presentations/logstash-monitorama-2013/",
                    "user_agent": CHROME_32_MAC, "user_agent_class": "browser",
                    "client_class": "public", "status_class": "2xx", "query": null,
                    "route": "/presentations/logstash-monitorama-2013/images/kibana-search.png",
                }),
            ),
            (
                2,
                json!({
                    "timestamp": "2015-05-17T10:05:43+00:00",
                    "path": "/presentations/logstash-monitorama-2013/images/kibana-dashboard3.png",
                    "bytes": 171_717, "user_agent": CHROME_32_MAC,
                }),
            ),
            (
                25,
                json!({
                    "ip": "93.114.45.13", "timestamp": "2015-05-17T10:05:14+00:00",
                    "path": "/articles/dynamic-dns-with-dhcp/", "bytes": 18_848,
                    "referer": "http://www.google.ro/url?sa=t&rct=j&q=&esrc=s&source=web&cd=2&ved=0CCwQFjAB&url=http%3A%2F%2Fwww.semicomplete.com%2Farticles%2Fdynamic-dns-with-dhcp%2F&ei=W88AU4n9HOq60QXbv4GwBg&usg=AFQjCNEF1X4Rs52UYQyLiySTQxa97ozM4g&bvm=bv.61535280,d.d2k",
                    "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:25.0) Gecko/20100101 Firefox/25.0",
                }),
            ),
            (
                63,
                json!({
                    "ip": "66.249.73.185", "status": 404, "status_class": "4xx", "bytes": 294,
                    "path": "/doc/index.html?org/elasticsearch/action/search/SearchResponse.html",
                    "path_only": "/doc/index.html",
                    "query": "org/elasticsearch/action/search/SearchResponse.html",
                    "route": "/doc/index.html", "referer": null,
                    "user_agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                    "user_agent_class": "crawler",
                }),
            ),
            (
                77,
                json!({
                    "ip": "218.30.103.62", "path": "/robots.txt", "bytes": null,
                    "user_agent": "Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)",
                    "user_agent_class": "crawler",
                }),
            ),
            (
                100,
                json!({
                    "ip": "86.1.76.62", "timestamp": "2015-05-17T11:05:19+00:00",
                    "path": "/style2.css", "bytes": 4_877,
                    "referer": "http://www.semicomplete.com/projects/xdotool/",
                    "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:24.0) Gecko/20140205 Firefox/24.0 Iceweasel/24.3.0",
                }),
            ),
            (
                688,
                json!({
                    "ip": "89.170.74.95", "method": "HEAD", "path": "/projects/xdotool/",
                    "status": 200, "bytes": null, "referer": null,
                }),
            ),
            (
                772,
                json!({
                    "method": "HEAD",
                    "path": "/blog/geekery/freebsd-ports-master-sites-sorting.html",
                    "user_agent": "distilator/0.1 (http://people.freebsd.org/~ehaupt/distilator/)",
                    "user_agent_class": "unknown",
                }),
            ),
            (
                2500,
                json!({
                    "ip": "208.115.111.72", "timestamp": "2015-05-18T07:05:28+00:00",
                    "path": "/files/rubygems615/?C=S;O=A", "path_only": "/files/rubygems615/",
                    "query": "C=S;O=A", "route": "/files/rubygems615/", "bytes": 1_871,
                    "user_agent": "Mozilla/5.0 (compatible; Ezooms/1.0; help@moz.com)",
                }),
            ),
            (
                5851,
                json!({
                    "ip": "201.242.142.135", "protocol": "HTTP/1.0", "path": "/files/logstash/",
                    "referer": "http://\\xe4\\xe5\\xe3\\xf2\\xff\\xf0\\xed\\xee\\xe5-\\xec\\xfb\\xeb\\xee.\\xf0\\xf4/",
                    "user_agent": "Mozilla/5.0 (Windows NT 6.1; rv:11.0) Gecko/20100101 Firefox/11.0",
                }),
            ),
            (
                7777,
                json!({
                    "ip": "217.12.185.5", "timestamp": "2015-05-20T02:05:56+00:00",
                    "path": "/articles/dynamic-dns-with-dhcp/", "bytes": 18_848,
                    "referer": "http://www.google.it/url?sa=t&rct=j&q=&esrc=s&source=web&cd=4&ved=0CEkQFjAD&url=http%3A%2F%2Fwww.semicomplete.com%2Farticles%2Fdynamic-dns-with-dhcp%2F&ei=UCACU--1BaXmywOn14KQDw&usg=AFQjCNEF1X4Rs52UYQyLiySTQxa97ozM4g&bvm=bv.61535280,d.bGQ",
                    "user_agent": FIREFOX_27,
                }),
            ),
            (
                10000,
                json!({
                    "ip": "46.105.14.53", "timestamp": "2015-05-20T21:05:15+00:00",
                    "timestamp_ms": 1_432_155_915_000_i64,
                    "path": "/blog/tags/puppet?flav=rss20", "path_only": "/blog/tags/puppet",
                    "query": "flav=rss20", "route": "/blog/tags/puppet", "bytes": 14_872,
                    "referer": null,
                    "user_agent": "UniversalFeedParser/4.2-pre-314-svn +http://feedparser.org/",
                    "user_agent_class": "unknown",
                }),
            ),
        ],
    );
}

#[test]
fn nasa_pinned_lines() {
    assert_pinned(
        "nasa-jul-aug95-random-sample.log",
        &[
            (
                1,
                json!({
                    "ip": null, "host": "maria-4i.ip.realtime.net", "ident": null, "user": null,
                    "timestamp": "1995-08-31T04:10:56-04:00", "timestamp_ms": 809_856_656_000_i64,
                    "method": "GET", "path": "/icons/blank.xbm", "protocol": "HTTP/1.0",
                    "status": 200, "bytes": 509, "referer": null, "user_agent": null,
                    "client_class": null, "user_agent_class": "unknown",
                }),
            ),
            (
                8,
                json!({
                    "host": "ts35p11.netvision.net.il", "timestamp": "1995-07-14T10:44:33-04:00",
                    "path": "/shuttle/missions/sts-71/sts-71-patch-small.gif",
                    "route": "/shuttle/missions/sts-71/sts-71-patch-small.gif",
                    "status": 304, "status_class": "3xx", "bytes": 0,
                }),
            ),
            (
                10,
                json!({
                    "host": "yf-272.asc-yf.wpafb.af.mil",
                    "path": "/cgi-bin/imagemap/countdown70?291,288",
                    "path_only": "/cgi-bin/imagemap/countdown70", "query": "291,288",
                    "status": 302, "bytes": 85,
                }),
            ),
            (
                50,
                json!({
                    "host": "pool52.maple.net", "timestamp": "1995-08-23T13:29:23-04:00",
                    "path": "/images/launch-logo.gif", "bytes": 1_713,
                }),
            ),
            (
                110,
                json!({
                    "host": "ad09-004.compuserve.com", "path": "/images",
                    "protocol": "HTTP/1.0", "status": 302, "bytes": null,
                }),
            ),
            (
                405,
                json!({
                    "host": "pipe1.nyc.pipeline.com", "method": "GET",
                    "path": "/images/kscmap-tiny.gif", "protocol": null, "bytes": 2_537,
                }),
            ),
            (
                531,
                json!({
                    "host": "ad09-001.compuserve.com", "timestamp": "1995-08-04T13:54:16-04:00",
                    "path": "/ksc.html", "protocol": null, "bytes": 7_034,
                }),
            ),
            (
                664,
                json!({
                    "host": "sw25-126.iol.it", "method": "HEAD",
                    "path": "/history/apollo/images/apollo-logo1.gif", "bytes": 0,
                }),
            ),
            (
                755,
                json!({
                    "host": "zooropa.res.cmu.edu", "method": "GET",
                    "path": "/htbin/cdt_clock.pl HTTP/1.0From:  <berend@blazemonger.pc.cc.cmu.edu>",
                    "protocol": null, "status": 200, "bytes": 751,
                }),
            ),
            (
                1984,
                json!({
                    "ip": null, "host": "webber2146,ucr.edu", "client_class": null,
                    "timestamp": "1995-07-12T19:09:23-04:00",
                    "path": "/history/apollo/images/apollo-logo1.gif", "bytes": 1_173,
                }),
            ),
            (
                4000,
                json!({
                    "ip": "160.205.122.69", "client_class": "public",
                    "timestamp": "1995-07-14T15:06:17-04:00",
                    "path": "/images/NASA-logosmall.gif", "status": 304, "bytes": 0,
                }),
            ),
            (
                9000,
                json!({
                    "host": "robin.vip.best.com",
                    "path": "/shuttle/missions/51-l/images/850128.GIF",
                    "route": "/shuttle/missions/51-l/images/850128.GIF", "bytes": 57_344,
                }),
            ),
            (
                10000,
                json!({
                    "host": "scott.healthspan.edu", "timestamp": "1995-07-24T15:06:12-04:00",
                    "timestamp_ms": 806_612_772_000_i64,
                    "path": "/history/apollo/images/apollo-logo1.gif", "status": 304, "bytes": 0,
                }),
            ),
        ],
    );
}

#[test]
fn basjes_pinned_lines() {
    const FIREFOX_35_XP: &str = "Mozilla/5.0 (Windows NT 5.1; rv:35.0) Gecko/20100101 Firefox/35.0";
    const DRAGON_36: &str = "Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) \
                             Dragon/36.1.1.21 Chrome/36.0.1985.97 Safari/537.36";
    assert_pinned(
        "basjes-hackers-access.log",
        &[
            (
                1,
                json!({
                    "ip": "195.154.46.135", "timestamp": "2015-10-25T04:11:25+01:00",
                    "timestamp_ms": 1_445_742_685_000_i64, "method": "GET",
                    "path": "/linux/doing-pxe-without-dhcp-control", "protocol": "HTTP/1.1",
                    "status": 200, "bytes": 24_323, "referer": "http://howto.basjes.nl/",
                    "user_agent": FIREFOX_35_XP, "user_agent_class": "browser",
                    "client_class": "public",
                }),
            ),
            (
                2,
                json!({
                    "ip": "23.95.237.180", "path": "/join_form", "protocol": "HTTP/1.0",
                    "bytes": 11_114, "user_agent": FIREFOX_35_XP,
                }),
            ),
            (
                3,
                json!({
                    "ip": "23.95.237.180", "method": "POST", "path": "/join_form",
                    "status": 302, "status_class": "3xx", "bytes": 9_093,
                    "referer": "http://howto.basjes.nl/join_form",
                }),
            ),
            (
                6,
                json!({
                    "ip": "158.222.5.157",
                    "path": "/acl_users/credentials_cookie_auth/require_login?came_from=http%3A//howto.basjes.nl/join_form",
                    "path_only": "/acl_users/credentials_cookie_auth/require_login",
                    "query": "came_from=http%3A//howto.basjes.nl/join_form",
                    "user_agent": "Mozilla/5.0 (Windows NT 6.3; WOW64; rv:34.0) Gecko/20100101 Firefox/34.0 AlexaToolbar/alxf-2.21",
                }),
            ),
            (
                119,
                json!({
                    "ip": "23.254.164.173",
                    "path": "/linux/installing-my-new-server/voice-over-ip/RK=0/RS=YTkYTnGaf5QQxT7cm9uJgKS2rl8-",
                    "status": 404, "status_class": "4xx", "bytes": 12_146,
                }),
            ),
            (
                700,
                json!({
                    "ip": "216.244.81.34", "timestamp": "2015-10-26T09:24:15+01:00",
                    "query": "came_from=http%3A//niels.basjes.nl/join_form", "bytes": 11_793,
                    "user_agent": "Mozilla/5.0 (Windows NT 6.0; rv:34.0) Gecko/20100101 Firefox/34.0",
                }),
            ),
            (
                1000,
                json!({
                    "ip": "172.245.225.213", "path": "/join_form", "bytes": 12_191,
                    "referer": "http://niels.basjes.nl",
                    "user_agent": "Mozilla/5.0 (Windows NT 6.3; WOW64; Trident/7.0; rv:11.0) like Gecko",
                }),
            ),
            (
                1500,
                json!({
                    "ip": "216.158.211.172", "protocol": "HTTP/1.0",
                    "path": "/linux/installing-my-new-server/networking", "bytes": 27_448,
                }),
            ),
            (
                2577,
                json!({
                    "ip": "2001:41d0:8:f69::1", "client_class": "public",
                    "timestamp": "2015-10-29T06:47:36+01:00", "path": "/", "route": "/",
                    "bytes": 20_526, "referer": "http://niels.basjes.nl/", "user_agent": DRAGON_36,
                }),
            ),
            (
                2578,
                json!({
                    "ip": "2001:41d0:8:f69::1", "path": "/join_form", "bytes": 12_191,
                }),
            ),
            (
                3000,
                json!({
                    "ip": "195.154.216.59", "timestamp": "2015-10-29T20:26:13+01:00",
                    "path": "/login_form", "bytes": 10_543, "user_agent": DRAGON_36,
                }),
            ),
            (
                3456,
                json!({
                    "ip": "192.161.57.88", "timestamp": "2015-10-30T15:59:39+01:00",
                    "timestamp_ms": 1_446_217_179_000_i64, "method": "POST",
                    "path": "/login_form", "status": 200, "bytes": 18_354,
                    "referer": "http://niels.basjes.nl/login_form",
                    "user_agent": "Mozilla/5.0 (Windows NT 6.1; rv:32.0) Gecko/20100101 Firefox/32.0",
                }),
            ),
        ],
    );
}
