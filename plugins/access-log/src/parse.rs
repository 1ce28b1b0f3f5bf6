//! Parsing of one Common or Combined Log Format line into an [`AccessRecord`],
//! and the [`Rejection`] reasons for lines that cannot be parsed.
//!
//! The layout is Apache's `%h %l %u %t "%r" %>s %b`, optionally preceded by
//! a virtual host (`%v` or `%v:%p`) and optionally followed by
//! `"%{Referer}i" "%{User-Agent}i"` and by further fields, which are kept
//! unparsed in `extra`. Fields may be separated by any run of spaces and
//! tabs. The parser scans the line forward, looking a few fields ahead only
//! to tell a virtual host from a client and to end a user agent. It borrows
//! every field from the line and allocates nothing except the text of a
//! rejection.

use std::fmt;

use crate::client::{self, Client};
use crate::request::{split_request, RequestParts};
use crate::timestamp::{self, Timestamp};

/// The fields of one access-log line, borrowed from the line.
///
/// `None` in a field that is always written becomes JSON `null`. The fields
/// marked "only when" are left out of the JSON object when `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord<'a> {
    /// Client address: an IP literal, a host name or a forwarded-for chain.
    pub client: Client<'a>,
    /// Virtual host and port (`%v` or `%v:%p`) that precede the client,
    /// only when the line has one.
    pub vhost: Option<&'a str>,
    /// Identity from identd (`%l`), or `None` for `-`.
    pub ident: Option<&'a str>,
    /// Authenticated user (`%u`), unquoted if the server quoted it, or `None`
    /// for `-`.
    pub user: Option<&'a str>,
    /// Request time with its logged offset.
    pub timestamp: Timestamp<'a>,
    /// Method, target and protocol of the request line, or the whole line
    /// when it cannot be split.
    pub request: RequestParts<'a>,
    /// Final HTTP status (`%>s`).
    pub status: u16,
    /// Response size in bytes (`%b`), or `None` for `-`.
    pub bytes: Option<u64>,
    /// `Referer` header, or `None` for `-` and in a Common Log Format line.
    pub referer: Option<&'a str>,
    /// `User-Agent` header, or `None` for `-` and in a Common Log Format line.
    pub user_agent: Option<&'a str>,
    /// Everything after the last standard field, trimmed, only when present.
    pub extra: Option<&'a str>,
}

/// Reason a line was not turned into a record. `Display` gives the sentence
/// that the host sends to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The line is empty or contains only whitespace.
    EmptyLine,
    /// The line ends before the named field.
    MissingField(&'static str),
    /// No `[` preceded by whitespace follows the ident field.
    MissingTimestamp,
    /// A `[` opens the timestamp but no `]` closes it.
    UnterminatedTimestamp,
    /// The timestamp, as logged, has no UTC offset.
    TimestampWithoutOffset(String),
    /// The timestamp, as logged, is not `dd/Mon/yyyy:hh:mm:ss +hhmm`.
    InvalidTimestamp(String),
    /// The timestamp, as logged, has the right layout but a date, time or
    /// offset out of range.
    InvalidDate(String),
    /// The named field, which must be quoted, does not start with `"`.
    UnquotedField(&'static str),
    /// The named quoted field has no closing `"`: the line is truncated.
    UnterminatedQuote(&'static str),
    /// The status field, as logged, is not three ASCII digits.
    InvalidStatus(String),
    /// The bytes field, as logged, is neither an integer nor `-`.
    InvalidBytes(String),
}

/// Max characters of a logged value quoted in a rejection reason.
const MAX_QUOTED_VALUE_CHARS: usize = 64;

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyLine => write!(f, "empty line: no log record"),
            Self::MissingField(field) => write!(f, "missing {field} field: the line ends early"),
            Self::MissingTimestamp => {
                write!(f, "missing timestamp: no `[` follows the ident field")
            }
            Self::UnterminatedTimestamp => {
                write!(f, "unterminated timestamp: no `]` closes it")
            }
            Self::TimestampWithoutOffset(logged) => write!(
                f,
                "timestamp `{}` has no UTC offset, so its time zone is unknown",
                shorten(logged)
            ),
            Self::InvalidTimestamp(logged) => write!(
                f,
                "invalid timestamp `{}`: expected dd/Mon/yyyy:hh:mm:ss +hhmm",
                shorten(logged)
            ),
            Self::InvalidDate(logged) => write!(
                f,
                "invalid date, time or offset in timestamp `{}`",
                shorten(logged)
            ),
            Self::UnquotedField(field) => write!(f, "{field} is not enclosed in quotes"),
            Self::UnterminatedQuote(field) => write!(f, "unterminated quoted field: {field}"),
            Self::InvalidStatus(logged) => write!(
                f,
                "invalid status `{}`: expected a three-digit integer",
                shorten(logged)
            ),
            Self::InvalidBytes(logged) => write!(
                f,
                "invalid bytes `{}`: expected an integer or `-`",
                shorten(logged)
            ),
        }
    }
}

impl std::error::Error for Rejection {}

/// Returns `value`, cut to [`MAX_QUOTED_VALUE_CHARS`] with `...` appended
/// when it is longer, so that a reason stays short.
fn shorten(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED_VALUE_CHARS) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_owned(),
    }
}

pub(crate) fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// Parses one access-log line, given without its `\n`.
///
/// Leading whitespace and trailing spaces, tabs, `\r` and `\n` are not part
/// of any field. A caller with raw bytes decodes them first, replacing
/// invalid UTF-8 with U+FFFD (see [`crate::output::enrich_line`]).
pub fn parse_line(line: &str) -> Result<AccessRecord<'_>, Rejection> {
    let line = line.trim_matches([' ', '\t', '\r', '\n']);
    if line.is_empty() {
        return Err(Rejection::EmptyLine);
    }
    let mut cursor = Cursor { line, position: 0 };

    let (vhost, client) = cursor.vhost_and_client()?;
    let ident = cursor.token().ok_or(Rejection::MissingField("ident"))?;
    let user = cursor.user()?;
    let timestamp = timestamp::parse(cursor.bracketed()?)?;

    let request_line = cursor.quoted("request line")?;
    let status = parse_status(cursor.token().ok_or(Rejection::MissingField("status"))?)?;
    let bytes = parse_bytes(cursor.token().ok_or(Rejection::MissingField("bytes"))?)?;

    // Combined Log Format adds two quoted fields; anything else that follows
    // (a response time, more quoted headers) goes to `extra`.
    let mut referer = None;
    let mut user_agent = None;
    if cursor.next_is_quote() {
        referer = dash_to_none(cursor.quoted("referer")?);
        if cursor.next_is_quote() {
            user_agent = dash_to_none(cursor.user_agent()?);
        }
    }
    let extra = cursor.extra()?;

    Ok(AccessRecord {
        client: Client::from_field(client),
        vhost,
        ident: dash_to_none(ident),
        user,
        timestamp,
        request: split_request(request_line),
        status,
        bytes,
        referer,
        user_agent,
        extra,
    })
}

pub(crate) fn dash_to_none(value: &str) -> Option<&str> {
    (value != "-").then_some(value)
}

fn parse_status(logged: &str) -> Result<u16, Rejection> {
    match logged.as_bytes() {
        [hundreds @ b'0'..=b'9', tens @ b'0'..=b'9', units @ b'0'..=b'9'] => {
            Ok(u16::from(hundreds - b'0') * 100
                + u16::from(tens - b'0') * 10
                + u16::from(units - b'0'))
        }
        _ => Err(Rejection::InvalidStatus(logged.to_owned())),
    }
}

fn parse_bytes(logged: &str) -> Result<Option<u64>, Rejection> {
    if logged == "-" {
        return Ok(None);
    }
    let invalid = || Rejection::InvalidBytes(logged.to_owned());
    // Only ASCII digits: `%b` never writes a sign, and `u64::from_str`
    // would accept a leading `+`.
    let mut value: u64 = 0;
    for byte in logged.bytes() {
        if !byte.is_ascii_digit() {
            return Err(invalid());
        }
        value = value
            .checked_mul(10)
            .and_then(|value| value.checked_add(u64::from(byte - b'0')))
            .ok_or_else(invalid)?;
    }
    Ok(Some(value))
}

/// A position in a line that has been trimmed of surrounding whitespace.
struct Cursor<'a> {
    line: &'a str,
    position: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.line[self.position..]
    }

    fn skip_blanks(&mut self) {
        let rest = self.rest().as_bytes();
        self.position += rest.iter().take_while(|byte| is_blank(**byte)).count();
    }

    fn next_is_quote(&mut self) -> bool {
        self.skip_blanks();
        self.rest().starts_with('"')
    }

    /// Returns the next run of non-blank characters, or `None` at the end of
    /// the line.
    fn token(&mut self) -> Option<&'a str> {
        self.skip_blanks();
        let rest = self.rest();
        let length = rest.bytes().take_while(|byte| !is_blank(*byte)).count();
        self.position += length;
        (length > 0).then(|| &rest[..length])
    }

    /// Returns the next client field: one token, or a forwarded-for chain
    /// written with blanks after its commas (`a, b, c`), as logged.
    ///
    /// A token that ends in `,` continues with the next token only when that
    /// one is a chain entry (an IP literal or `unknown`), so that the ident
    /// `-` never joins.
    fn client_field(&mut self) -> Option<&'a str> {
        self.skip_blanks();
        let start = self.position;
        let mut token = self.token()?;
        let mut end = self.position;
        while token.ends_with(',') {
            let before_next = self.position;
            match self.token() {
                Some(next) if client::is_chain_entry(next.trim_end_matches(',')) => {
                    token = next;
                    end = self.position;
                }
                _ => {
                    self.position = before_next;
                    break;
                }
            }
        }
        Some(&self.line[start..end])
    }

    /// Returns the virtual host, if the line starts with one, and the
    /// client field.
    ///
    /// The first field is taken as `%v` or `%v:%p` only when all of these
    /// hold, because otherwise it is the client of a plain line:
    /// - it is one server name (a host name or IP literal) with an optional
    ///   `:port`;
    /// - the second field is a client address (IP literal, forwarded-for
    ///   chain or host name);
    /// - an ident and a user field follow before the timestamp;
    /// - the first field has a port, or the ident is `-`.
    fn vhost_and_client(&mut self) -> Result<(Option<&'a str>, &'a str), Rejection> {
        let first = self.client_field().ok_or(Rejection::EmptyLine)?;
        let after_first = self.position;

        // Most lines have the ident `-` here, which is no client, so the
        // cheap test goes first.
        let second = self
            .client_field()
            .filter(|second| *second != "-" && client::is_client_field(second));
        let has_port = second.and_then(|_| client::server_name_port(first));
        if let (Some(second), Some(has_port)) = (second, has_port) {
            let after_second = self.position;
            let ident_fits = self.token().is_some_and(|ident| has_port || ident == "-");
            if ident_fits && self.user_follows() {
                self.position = after_second;
                return Ok((Some(first), second));
            }
        }
        self.position = after_first;
        Ok((None, first))
    }

    /// Returns whether a user field comes next: text other than the `[`
    /// that opens the timestamp, followed by a blank and a `[`.
    fn user_follows(&mut self) -> bool {
        self.skip_blanks();
        let rest = self.rest().as_bytes();
        !rest.starts_with(b"[") && find_timestamp_opening(rest).is_some()
    }

    /// Returns the user field: all text before the blank and `[` that open
    /// the timestamp, so it may contain spaces. A value the server wrapped in
    /// quotes is unquoted, and `-` becomes `None`.
    fn user(&mut self) -> Result<Option<&'a str>, Rejection> {
        let rest = self.rest();
        let opening = find_timestamp_opening(rest.as_bytes()).ok_or(Rejection::MissingTimestamp)?;
        self.position += opening + 1;

        let user = rest[..opening].trim_matches([' ', '\t']);
        if user.is_empty() {
            return Err(Rejection::MissingField("user"));
        }
        let user = match user
            .strip_prefix('"')
            .and_then(|inner| inner.strip_suffix('"'))
        {
            Some(unquoted) => Some(unquoted),
            None => dash_to_none(user),
        };
        Ok(user)
    }

    /// Returns the text between the `[` at the cursor and the next `]`.
    fn bracketed(&mut self) -> Result<&'a str, Rejection> {
        let rest = self.rest();
        let inner = rest.strip_prefix('[').ok_or(Rejection::MissingTimestamp)?;
        let closing =
            memchr::memchr(b']', inner.as_bytes()).ok_or(Rejection::UnterminatedTimestamp)?;
        self.position += 1 + closing + 1;
        Ok(&inner[..closing])
    }

    /// Returns the content of the quoted field at the cursor, as logged.
    ///
    /// A backslash escapes the next byte, as Apache writes `\"` and `\\`.
    /// An unescaped `"` closes the field only when a blank or the end of the
    /// line follows it, so that the unescaped quotes some non-Apache loggers
    /// leave inside a user agent stay part of it.
    fn quoted(&mut self, field: &'static str) -> Result<&'a str, Rejection> {
        self.skip_blanks();
        let rest = self.rest();
        if rest.is_empty() {
            return Err(Rejection::MissingField(field));
        }
        if !rest.starts_with('"') {
            return Err(Rejection::UnquotedField(field));
        }

        let bytes = rest.as_bytes();
        let mut index = 1;
        while index < bytes.len() {
            let Some(found) = memchr::memchr2(b'"', b'\\', &bytes[index..]) else {
                break;
            };
            index += found;
            if bytes[index] == b'\\' {
                index += 2;
                continue;
            }
            if bytes.get(index + 1).is_none_or(|next| is_blank(*next)) {
                self.position += index + 1;
                return Ok(&rest[1..index]);
            }
            index += 1;
        }
        Err(Rejection::UnterminatedQuote(field))
    }

    /// Returns the user agent field.
    ///
    /// It closes like any quoted field, unless what follows contains a
    /// token with a `"` inside it. Then the user agent itself contained
    /// unescaped quotes, and it runs to the last `"` on the line.
    fn user_agent(&mut self) -> Result<&'a str, Rejection> {
        self.skip_blanks();
        let start = self.position;
        let user_agent = self.quoted("user agent")?;
        let after = self.position;
        let rest_is_fields = self.scan_fields()?;
        if rest_is_fields {
            self.position = after;
            return Ok(user_agent);
        }

        let from_quote = &self.line[start..];
        let last_quote = memchr::memrchr(b'"', from_quote.as_bytes())
            .expect("the user agent's closing quote is in this slice");
        self.position = start + last_quote + 1;
        Ok(&from_quote[1..last_quote])
    }

    /// Scans the rest of the line as blank-separated fields and returns
    /// whether each is a closed quoted field or a token without `"`. A
    /// quoted field that never closes means the line was cut short, so it is
    /// rejected like any other unterminated field.
    fn scan_fields(&mut self) -> Result<bool, Rejection> {
        loop {
            if self.next_is_quote() {
                self.quoted("field after the user agent")?;
                continue;
            }
            match self.token() {
                None => return Ok(true),
                Some(token) if token.contains('"') => return Ok(false),
                Some(_) => {}
            }
        }
    }

    /// Returns the rest of the line, or `None` when nothing is left.
    ///
    /// A quoted field in the rest that never closes means the line was cut
    /// short, so it is rejected like any other unterminated field.
    fn extra(&mut self) -> Result<Option<&'a str>, Rejection> {
        self.skip_blanks();
        let extra = self.rest();
        if extra.is_empty() {
            return Ok(None);
        }
        self.scan_fields()?;
        Ok(Some(extra))
    }
}

/// Returns the index of the first blank that is followed by `[`.
fn find_timestamp_opening(bytes: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'[', bytes)
        .find(|&index| index > 0 && is_blank(bytes[index - 1]))
        .map(|index| index - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> AccessRecord<'_> {
        match parse_line(line) {
            Ok(record) => record,
            Err(rejection) => panic!("line rejected ({rejection}): {line}"),
        }
    }

    fn rfc3339(record: &AccessRecord<'_>) -> String {
        let mut text = String::new();
        record.timestamp.write_rfc3339(&mut text);
        text
    }

    fn reject(line: &str) -> Rejection {
        match parse_line(line) {
            Ok(record) => panic!("line accepted as {record:?}: {line}"),
            Err(rejection) => rejection,
        }
    }

    // Real lines from the NASA Kennedy Space Center trace of July and August
    // 1995 (Common Log Format, hostnames as clients).

    #[test]
    fn nasa_hostname_client() {
        let record = parse(
            "maria-4i.ip.realtime.net - - [31/Aug/1995:04:10:56 -0400] \
             \"GET /icons/blank.xbm HTTP/1.0\" 200 509",
        );
        assert_eq!(record.client.ip, None);
        assert_eq!(record.client.host, Some("maria-4i.ip.realtime.net"));
        assert_eq!(record.client.forwarded_for, None);
        assert_eq!(record.vhost, None);
        assert_eq!(record.ident, None);
        assert_eq!(record.user, None);
        assert_eq!(rfc3339(&record), "1995-08-31T04:10:56-04:00");
        assert_eq!(
            record.request,
            RequestParts {
                method: Some("GET"),
                path: Some("/icons/blank.xbm"),
                protocol: Some("HTTP/1.0"),
                unsplit: None,
            }
        );
        assert_eq!(record.status, 200);
        assert_eq!(record.bytes, Some(509));
        assert_eq!(record.referer, None);
        assert_eq!(record.user_agent, None);
        assert_eq!(record.extra, None);
    }

    #[test]
    fn nasa_http09_request() {
        let record = parse(
            "ad09-001.compuserve.com - - [04/Aug/1995:13:54:16 -0400] \
             \"GET /ksc.html\" 200 7034",
        );
        assert_eq!(record.client.host, Some("ad09-001.compuserve.com"));
        assert_eq!(record.request.method, Some("GET"));
        assert_eq!(record.request.path, Some("/ksc.html"));
        assert_eq!(record.request.protocol, None);
        assert_eq!(record.request.unsplit, None);
        assert_eq!(record.status, 200);
        assert_eq!(record.bytes, Some(7034));
    }

    #[test]
    fn nasa_space_in_path() {
        let record = parse(
            "132.208.99.97 - - [16/Jul/1995:18:09:25 -0400] \
             \"GET /shuttle missions HTTP/1.0\" 302 -",
        );
        assert_eq!(record.client.ip, Some("132.208.99.97"));
        assert_eq!(record.client.host, None);
        assert_eq!(rfc3339(&record), "1995-07-16T18:09:25-04:00");
        assert_eq!(record.request.method, Some("GET"));
        assert_eq!(record.request.path, Some("/shuttle missions"));
        assert_eq!(record.request.protocol, Some("HTTP/1.0"));
        assert_eq!(record.status, 302);
        assert_eq!(record.bytes, None);
    }

    #[test]
    fn nasa_junk_after_protocol() {
        let record = parse(
            "zooropa.res.cmu.edu - - [30/Aug/1995:19:53:33 -0400] \
             \"GET /htbin/cdt_clock.pl HTTP/1.0From:  <berend@blazemonger.pc.cc.cmu.edu>\" 200 751",
        );
        assert_eq!(record.request.method, Some("GET"));
        assert_eq!(
            record.request.path,
            Some("/htbin/cdt_clock.pl HTTP/1.0From:  <berend@blazemonger.pc.cc.cmu.edu>")
        );
        assert_eq!(record.request.protocol, None);
        assert_eq!(record.request.unsplit, None);
    }

    #[test]
    fn nasa_trailing_space_in_request() {
        let record = parse(
            "pl01266.ksc.nasa.gov - - [29/Aug/1995:07:39:48 -0400] \
             \"GET /elv/new01.gif> \" 404 -",
        );
        assert_eq!(record.request.method, Some("GET"));
        assert_eq!(record.request.path, Some("/elv/new01.gif>"));
        assert_eq!(record.request.protocol, None);
        assert_eq!(record.status, 404);
        assert_eq!(record.bytes, None);
    }

    #[test]
    fn nasa_trailing_space_after_protocol() {
        let record = parse(
            "ix-sac6-20.ix.netcom.com - - [08/Aug/1995:14:45:46 -0400] \
             \"GET /cgi-bin/imagemap/countdown69?293,287 HTTP/1.0 \" 302 85",
        );
        assert_eq!(record.request.method, Some("GET"));
        assert_eq!(
            record.request.path,
            Some("/cgi-bin/imagemap/countdown69?293,287")
        );
        assert_eq!(record.request.protocol, Some("HTTP/1.0"));
        assert_eq!(record.bytes, Some(85));
    }

    #[test]
    fn blanks_around_request_target() {
        let record =
            parse("192.0.2.1 - - [17/Feb/2023:02:50:10 -0500] \"GET  /a b \tHTTP/1.1\" 200 1");
        assert_eq!(record.request.method, Some("GET"));
        assert_eq!(record.request.path, Some("/a b"));
        assert_eq!(record.request.protocol, Some("HTTP/1.1"));
    }

    // Real lines from a personal web server's log published with
    // nielsbasjes/logparser (Combined Log Format, IPv4 and IPv6 clients).

    #[test]
    fn basjes_ipv6_client() {
        let record = parse(
            "2001:41d0:8:f69::1 - - [29/Oct/2015:06:47:38 +0100] \"POST /join_form HTTP/1.1\" \
             302 10170 \"http://niels.basjes.nl/join_form\" \"Mozilla/5.0 (Windows NT 6.1) \
             AppleWebKit/537.36 (KHTML, like Gecko) Dragon/36.1.1.21 Chrome/36.0.1985.97 \
             Safari/537.36\"",
        );

        assert_eq!(record.client.ip, Some("2001:41d0:8:f69::1"));
        assert_eq!(record.client.host, None);
        assert_eq!(record.ident, None);
        assert_eq!(record.user, None);
        assert_eq!(rfc3339(&record), "2015-10-29T06:47:38+01:00");

        assert_eq!(
            record.request,
            RequestParts {
                method: Some("POST"),
                path: Some("/join_form"),
                protocol: Some("HTTP/1.1"),
                unsplit: None,
            }
        );
        assert_eq!(record.status, 302);
        assert_eq!(record.bytes, Some(10170));

        assert_eq!(record.referer, Some("http://niels.basjes.nl/join_form"));
        assert_eq!(
            record.user_agent,
            Some(
                "Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Dragon/36.1.1.21 Chrome/36.0.1985.97 Safari/537.36"
            )
        );
        assert_eq!(record.extra, None);
    }

    // Real lines from the Apache sample log in elastic/examples
    // (Combined Log Format, semicomplete.com, May 2015).

    #[test]
    fn elastic_bytes_dash() {
        let record = parse(
            "218.30.103.62 - - [17/May/2015:11:05:11 +0000] \"GET /robots.txt HTTP/1.1\" 200 - \
             \"-\" \"Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)\"",
        );
        assert_eq!(record.client.ip, Some("218.30.103.62"));
        assert_eq!(rfc3339(&record), "2015-05-17T11:05:11+00:00");
        assert_eq!(record.request.path, Some("/robots.txt"));
        assert_eq!(record.request.protocol, Some("HTTP/1.1"));
        assert_eq!(record.status, 200);
        assert_eq!(record.bytes, None);
        assert_eq!(record.referer, None);
        assert_eq!(
            record.user_agent,
            Some("Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)")
        );
    }

    #[test]
    fn elastic_escaped_bytes_in_referer() {
        let record = parse(
            "201.242.142.135 - - [19/May/2015:11:05:10 +0000] \"GET /files/logstash/ HTTP/1.0\" \
             200 13316 \"http://\\xe4\\xe5\\xe3\\xf2\\xff\\xf0\\xed\\xee\\xe5-\\xec\\xfb\\xeb\\xee.\
             \\xf0\\xf4/\" \"Mozilla/5.0 (Windows NT 6.1; rv:11.0) Gecko/20100101 Firefox/11.0\"",
        );
        assert_eq!(
            record.referer,
            Some(
                "http://\\xe4\\xe5\\xe3\\xf2\\xff\\xf0\\xed\\xee\\xe5-\\xec\\xfb\\xeb\\xee.\
                 \\xf0\\xf4/"
            )
        );
        assert_eq!(
            record.user_agent,
            Some("Mozilla/5.0 (Windows NT 6.1; rv:11.0) Gecko/20100101 Firefox/11.0")
        );
    }

    #[test]
    fn elastic_truncated_user_agent() {
        let rejection = reject(
            "46.118.127.106 - - [20/May/2015:12:05:17 +0000] \
             \"GET /scripts/grok-py-test/configlib.py HTTP/1.1\" 200 235 \"-\" \
             \"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html",
        );
        assert_eq!(rejection, Rejection::UnterminatedQuote("user agent"));
        assert_eq!(
            rejection.to_string(),
            "unterminated quoted field: user agent"
        );
    }

    // Constructed lines for the rules the real corpora do not exercise.

    #[test]
    fn ident_and_user_values() {
        let record = parse(
            "192.0.2.5 ident1 alice@example.com [07/Apr/2016:18:42:24 +0000] \"GET / HTTP/1.1\" 200 1",
        );
        assert_eq!(record.ident, Some("ident1"));
        assert_eq!(record.user, Some("alice@example.com"));
    }

    #[test]
    fn user_with_spaces_and_quotes() {
        let spaced =
            parse("192.0.2.5 - John Smith [07/Apr/2016:18:42:24 +0000] \"GET / HTTP/1.1\" 200 1");
        assert_eq!(spaced.user, Some("John Smith"));
        let quoted =
            parse("192.0.2.5 - \"bob \" [07/Apr/2016:18:42:24 +0000] \"GET / HTTP/1.1\" 200 1");
        assert_eq!(quoted.user, Some("bob "));
        let empty = parse("192.0.2.5 - \"\" [07/Apr/2016:18:42:24 +0000] \"GET / HTTP/1.1\" 200 1");
        assert_eq!(empty.user, Some(""));
    }

    #[test]
    fn empty_quoted_fields_stay_empty() {
        let record = parse(
            "203.0.113.61 - - [15/Nov/2013:06:27:33 +0000] \"GET /feed.xml HTTP/1.1\" 200 5120 \"\" \"\"",
        );
        assert_eq!(record.referer, Some(""));
        assert_eq!(record.user_agent, Some(""));
    }

    #[test]
    fn dash_user_agent_is_none() {
        let record = parse("192.0.2.1 - - [15/Nov/2013:06:27:33 +0000] \"GET / HTTP/1.1\" 200 1 \"https://example.com/\" \"-\"");
        assert_eq!(record.referer, Some("https://example.com/"));
        assert_eq!(record.user_agent, None);
    }

    #[test]
    fn http2_protocol() {
        let record = parse(
            "192.0.2.1 - - [30/Aug/2015:17:59:34 +1000] \"GET /favicon.ico HTTP/2\" 200 34066",
        );
        assert_eq!(record.request.protocol, Some("HTTP/2"));
        assert_eq!(rfc3339(&record), "2015-08-30T17:59:34+10:00");
    }

    #[test]
    fn escaped_quote_in_request() {
        let record = parse(
            "203.0.113.50 - - [19/Sep/2014:08:12:44 +0000] \
             \"GET /search?q=<script>alert(\\\"x\\\")</script> HTTP/1.1\" 404 209 \"-\" \"ExampleScanner/1.0\"",
        );
        assert_eq!(
            record.request.path,
            Some("/search?q=<script>alert(\\\"x\\\")</script>")
        );
        assert_eq!(record.request.protocol, Some("HTTP/1.1"));
        assert_eq!(record.user_agent, Some("ExampleScanner/1.0"));
    }

    #[test]
    fn unescaped_quotes_in_user_agent() {
        let record = parse(
            "203.0.113.18 - - [16/Mar/2017:15:39:18 +0000] \"GET / HTTP/1.1\" 200 233 \"-\" \"Example\"Agent\"/1.0\"",
        );
        assert_eq!(record.user_agent, Some("Example\"Agent\"/1.0"));
        assert_eq!(record.extra, None);
    }

    #[test]
    fn request_dash_kept_as_null() {
        let record = parse("192.0.2.129 - - [18/Jul/2016:02:28:21 -0400] \"-\" 408 - \"-\" \"-\"");
        assert_eq!(record.request.method, None);
        assert_eq!(record.request.path, None);
        assert_eq!(record.request.protocol, None);
        assert_eq!(record.request.unsplit, Some(None));
        assert_eq!(record.status, 408);
    }

    #[test]
    fn request_without_target() {
        for request_line in [
            "",
            "GET",
            "GET ",
            "GET HTTP/1.1",
            "GET  HTTP/1.1",
            "MGLNDD_198.51.100.4_80",
        ] {
            let line = format!(
                "192.0.2.1 - - [17/Feb/2023:02:50:10 -0500] \"{request_line}\" 400 150 \"-\" \"-\""
            );
            let record = parse(&line);
            assert_eq!(record.request.method, None, "{line}");
            assert_eq!(record.request.path, None, "{line}");
            assert_eq!(record.request.protocol, None, "{line}");
            assert_eq!(record.request.unsplit, Some(Some(request_line)), "{line}");
        }
    }

    #[test]
    fn request_with_lower_case_method() {
        let record = parse("192.0.2.1 - - [17/Feb/2023:02:50:10 -0500] \"get / HTTP/1.1\" 400 150");
        assert_eq!(record.request.method, None);
        assert_eq!(record.request.unsplit, Some(Some("get / HTTP/1.1")));
    }

    #[test]
    fn request_with_tls_bytes() {
        let request_line = "\\x16\\x03\\x01\\x00\\xC8\\x01\\x00\\x00\\xC4\\x03\\x03Z\\x91k\\x0F";
        let line = format!(
            "198.51.100.9 - - [04/Oct/2022:08:09:08 +0200] \"{request_line}\" 400 150 \"-\" \"-\""
        );
        let record = parse(&line);
        assert_eq!(record.request.method, None);
        assert_eq!(record.request.unsplit, Some(Some(request_line)));
    }

    #[test]
    fn connect_and_options_targets() {
        let connect = parse("203.0.113.90 - - [06/Aug/2021:11:02:10 +0000] \"CONNECT example.com:443 HTTP/1.1\" 400 150");
        assert_eq!(connect.request.method, Some("CONNECT"));
        assert_eq!(connect.request.path, Some("example.com:443"));
        let options =
            parse("203.0.113.90 - - [06/Aug/2021:11:02:10 +0000] \"OPTIONS * HTTP/1.0\" 200 0");
        assert_eq!(options.request.method, Some("OPTIONS"));
        assert_eq!(options.request.path, Some("*"));
    }

    #[test]
    fn extra_after_user_agent() {
        let record = parse(
            "198.51.100.8 - - [01/Jun/2020:10:00:00 +0000] \"GET /api/orders/123 HTTP/1.1\" 200 512 \
             \"https://app.example.com/orders\" \"ExampleClient/2.0\" \"-\" \"0.012\" \"0.004\"  ",
        );
        assert_eq!(record.user_agent, Some("ExampleClient/2.0"));
        assert_eq!(record.extra, Some("\"-\" \"0.012\" \"0.004\""));
    }

    #[test]
    fn extra_after_tab() {
        let record = parse(
            "192.0.2.64 - - [20/Mar/2015:13:45:10 +0000] \"GET /static/app.js HTTP/1.1\" 200 10240 \
             \"https://www.example.com/\" \"ExampleBrowser/40.0\"\t0.005",
        );
        assert_eq!(record.user_agent, Some("ExampleBrowser/40.0"));
        assert_eq!(record.extra, Some("0.005"));
    }

    #[test]
    fn extra_after_bytes() {
        let record = parse(
            "192.0.2.64 - - [20/Mar/2015:13:45:10 +0000] \"GET / HTTP/1.1\" 200 10 0.005 www",
        );
        assert_eq!(record.referer, None);
        assert_eq!(record.user_agent, None);
        assert_eq!(record.extra, Some("0.005 www"));
    }

    #[test]
    fn extra_after_referer() {
        let record = parse(
            "192.0.2.64 - - [20/Mar/2015:13:45:10 +0000] \"GET / HTTP/1.1\" 200 10 \"-\" 0.005",
        );
        assert_eq!(record.referer, None);
        assert_eq!(record.user_agent, None);
        assert_eq!(record.extra, Some("0.005"));
    }

    #[test]
    fn blanks_between_and_around_fields() {
        let record = parse(
            "  192.0.2.1\t-  -\t[20/Mar/2015:13:45:10 +0000]  \"GET / HTTP/1.1\"\t200  10 \"-\"\t\"agent\" \t\r",
        );
        assert_eq!(record.client.ip, Some("192.0.2.1"));
        assert_eq!(record.ident, None);
        assert_eq!(record.user, None);
        assert_eq!(record.status, 200);
        assert_eq!(record.bytes, Some(10));
        assert_eq!(record.user_agent, Some("agent"));
        assert_eq!(record.extra, None);
    }

    #[test]
    fn crlf_line_ending() {
        let record = parse(
            "192.0.2.201 - - [28/Feb/2019:11:20:31 +0000] \"GET /index.html HTTP/1.1\" 200 1043\r",
        );
        assert_eq!(record.bytes, Some(1043));
        assert_eq!(record.extra, None);
    }

    #[test]
    fn ipv4_mapped_ipv6_client() {
        let record =
            parse("::ffff:192.0.2.1 - - [28/Feb/2019:11:20:31 +0000] \"GET / HTTP/1.1\" 200 1");
        assert_eq!(record.client.ip, Some("::ffff:192.0.2.1"));
        assert_eq!(record.client.host, None);
    }

    #[test]
    fn rejects_empty_lines() {
        for line in ["", "   ", "\t", "\r", " \t \r"] {
            assert_eq!(reject(line), Rejection::EmptyLine, "{line:?}");
        }
        assert_eq!(
            Rejection::EmptyLine.to_string(),
            "empty line: no log record"
        );
    }

    #[test]
    fn rejects_missing_fields() {
        let cases = [
            ("192.0.2.1", "ident"),
            (
                "192.0.2.1 - [20/Mar/2015:13:45:10 +0000] \"GET / HTTP/1.1\" 200 1",
                "user",
            ),
            ("192.0.2.1 - - [20/Mar/2015:13:45:10 +0000]", "request line"),
            (
                "192.0.2.1 - - [20/Mar/2015:13:45:10 +0000] \"GET / HTTP/1.1\"",
                "status",
            ),
            (
                "192.0.2.1 - - [20/Mar/2015:13:45:10 +0000] \"GET / HTTP/1.1\" 200",
                "bytes",
            ),
        ];
        for (line, field) in cases {
            assert_eq!(reject(line), Rejection::MissingField(field), "{line}");
        }
        assert_eq!(
            Rejection::MissingField("bytes").to_string(),
            "missing bytes field: the line ends early"
        );
    }

    #[test]
    fn rejects_missing_timestamp() {
        let rejection = reject("192.0.2.1 - - \"GET / HTTP/1.1\" 200 1");
        assert_eq!(rejection, Rejection::MissingTimestamp);
        assert_eq!(
            rejection.to_string(),
            "missing timestamp: no `[` follows the ident field"
        );
    }

    #[test]
    fn rejects_unterminated_timestamp() {
        let rejection =
            reject("192.0.2.1 - - [20/Mar/2015:13:45:10 +0000 \"GET / HTTP/1.1\" 200 1");
        assert_eq!(rejection, Rejection::UnterminatedTimestamp);
        assert_eq!(
            rejection.to_string(),
            "unterminated timestamp: no `]` closes it"
        );
    }

    #[test]
    fn rejects_timestamp_without_offset() {
        let rejection = reject("192.0.2.126 - - [21/Jun/2012:23:49:36] \"GET / HTTP/1.1\" 200 3355 \"\" \"ExampleBrowser/6.0\"");
        assert_eq!(
            rejection,
            Rejection::TimestampWithoutOffset("21/Jun/2012:23:49:36".to_owned())
        );
        assert_eq!(
            rejection.to_string(),
            "timestamp `21/Jun/2012:23:49:36` has no UTC offset, so its time zone is unknown"
        );
    }

    #[test]
    fn rejects_invalid_timestamp() {
        let rejection = reject("192.0.2.1 - - [2015-03-20T13:45:10Z] \"GET / HTTP/1.1\" 200 1");
        assert_eq!(
            rejection,
            Rejection::InvalidTimestamp("2015-03-20T13:45:10Z".to_owned())
        );
        assert_eq!(
            rejection.to_string(),
            "invalid timestamp `2015-03-20T13:45:10Z`: expected dd/Mon/yyyy:hh:mm:ss +hhmm"
        );
    }

    #[test]
    fn rejects_invalid_date() {
        let rejection =
            reject("192.0.2.1 - - [30/Feb/2015:13:45:10 +0000] \"GET / HTTP/1.1\" 200 1");
        assert_eq!(
            rejection,
            Rejection::InvalidDate("30/Feb/2015:13:45:10 +0000".to_owned())
        );
        assert_eq!(
            rejection.to_string(),
            "invalid date, time or offset in timestamp `30/Feb/2015:13:45:10 +0000`"
        );
    }

    #[test]
    fn rejects_unquoted_request() {
        let rejection = reject("192.0.2.1 - - [20/Mar/2015:13:45:10 +0000] GET / HTTP/1.1 200 1");
        assert_eq!(rejection, Rejection::UnquotedField("request line"));
        assert_eq!(
            rejection.to_string(),
            "request line is not enclosed in quotes"
        );
    }

    #[test]
    fn rejects_unterminated_quotes() {
        let cases = [
            ("192.0.2.1 - - [20/Mar/2015:13:45:10 +0000] \"GET / HTTP/1.1 200 1", "request line"),
            ("192.0.2.1 - - [20/Mar/2015:13:45:10 +0000] \"GET / HTTP/1.1\" 200 1 \"http://exa", "referer"),
            ("192.0.2.1 - - [20/Mar/2015:13:45:10 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"Mozilla/5.0 (", "user agent"),
            ("192.0.2.1 - - [20/Mar/2015:13:45:10 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\" \"0.01", "field after the user agent"),
            ("192.0.2.1 - - [20/Mar/2015:13:45:10 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"ends in escape\\\"", "user agent"),
        ];
        for (line, field) in cases {
            assert_eq!(reject(line), Rejection::UnterminatedQuote(field), "{line}");
        }
    }

    #[test]
    fn rejects_invalid_status() {
        for status in ["-", "20", "2000", "2x0", "+20", "２００"] {
            let line =
                format!("192.0.2.1 - - [20/Mar/2015:13:45:10 +0000] \"GET / HTTP/1.1\" {status} 1");
            assert_eq!(
                reject(&line),
                Rejection::InvalidStatus(status.to_owned()),
                "{line}"
            );
        }
        assert_eq!(
            Rejection::InvalidStatus("-".to_owned()).to_string(),
            "invalid status `-`: expected a three-digit integer"
        );
    }

    #[test]
    fn rejects_invalid_bytes() {
        for bytes in ["1.5", "-1", "+1", "abc", "18446744073709551616"] {
            let line = format!(
                "192.0.2.1 - - [20/Mar/2015:13:45:10 +0000] \"GET / HTTP/1.1\" 200 {bytes}"
            );
            assert_eq!(
                reject(&line),
                Rejection::InvalidBytes(bytes.to_owned()),
                "{line}"
            );
        }
        assert_eq!(
            Rejection::InvalidBytes("abc".to_owned()).to_string(),
            "invalid bytes `abc`: expected an integer or `-`"
        );
    }

    #[test]
    fn rejection_shortens_long_values() {
        let long_value = "x".repeat(100);
        let reason = Rejection::InvalidBytes(long_value).to_string();
        assert_eq!(
            reason,
            format!(
                "invalid bytes `{}...`: expected an integer or `-`",
                "x".repeat(64)
            )
        );
    }
}
