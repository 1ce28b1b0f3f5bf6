//! Conversion of the Apache `%t` timestamp (`16/Aug/2013:15:45:34 +0545`) to
//! RFC 3339 in the logged offset (`2013-08-16T15:45:34+05:45`).
//!
//! The plugin runs without clocks or a time-zone database, and it needs none:
//! the conversion only validates the calendar date and reformats the fields.

use std::fmt::Write as _;
use std::sync::OnceLock;

use regex::Regex;

use crate::parse::Rejection;

/// Matches `dd/Mon/yyyy:hh:mm:ss[.fraction]` with an optional offset
/// `+hhmm` or `+hh:mm`. The offset is optional here so that a timestamp
/// without one gets its own rejection reason.
fn timestamp_regex() -> &'static Regex {
    static REGEX: OnceLock<Regex> = OnceLock::new();
    REGEX.get_or_init(|| {
        Regex::new(
            r"^([0-9]{1,2})/([A-Za-z]{3})/([0-9]{4}):([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?(?:[ \t]+([+-])([0-9]{2}):?([0-9]{2}))?$",
        )
        .expect("the timestamp pattern is a valid regex")
    })
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Converts the text between `[` and `]` of an access-log line to RFC 3339,
/// keeping the logged offset and any fraction of a second.
///
/// Rejects a timestamp without an offset, one in another layout, and one
/// whose date, time or offset is out of range (for example `31/Apr`).
pub fn to_rfc3339(logged: &str) -> Result<String, Rejection> {
    let Some(captures) = timestamp_regex().captures(logged) else {
        return Err(Rejection::InvalidTimestamp(logged.to_owned()));
    };
    let field = |index: usize| captures.get(index).map_or("", |m| m.as_str());

    let (Some(sign), Some(offset_hours), Some(offset_minutes)) =
        (captures.get(8), captures.get(9), captures.get(10))
    else {
        return Err(Rejection::TimestampWithoutOffset(logged.to_owned()));
    };

    let day = parse_digits(field(1));
    let year = parse_digits(field(3));
    let hour = parse_digits(field(4));
    let minute = parse_digits(field(5));
    let second = parse_digits(field(6));
    let offset_hours = parse_digits(offset_hours.as_str());
    let offset_minutes = parse_digits(offset_minutes.as_str());
    let Some(month) = MONTHS.iter().position(|name| *name == field(2)) else {
        return Err(Rejection::InvalidDate(logged.to_owned()));
    };
    let month = month as u32 + 1;

    let date_valid = day >= 1 && day <= days_in_month(year, month);
    let time_valid = hour <= 23 && minute <= 59 && second <= 59;
    let offset_valid = offset_hours <= 23 && offset_minutes <= 59;
    if !(date_valid && time_valid && offset_valid) {
        return Err(Rejection::InvalidDate(logged.to_owned()));
    }

    let mut rfc3339 = String::with_capacity(32);
    // Writing to a String cannot fail.
    let _ = write!(
        rfc3339,
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{sign}{offset_hours:02}:{offset_minutes:02}",
        fraction = field(7),
        sign = sign.as_str(),
    );
    Ok(rfc3339)
}

/// Returns the value of a string of at most nine ASCII digits, as matched by
/// the timestamp regex.
fn parse_digits(digits: &str) -> u32 {
    digits
        .bytes()
        .fold(0, |value, digit| value * 10 + u32::from(digit - b'0'))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

fn is_leap_year(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_offset_with_minutes() {
        assert_eq!(
            to_rfc3339("16/Aug/2013:15:45:34 +0545").as_deref(),
            Ok("2013-08-16T15:45:34+05:45")
        );
    }

    #[test]
    fn keeps_zero_offset_not_z() {
        assert_eq!(
            to_rfc3339("17/May/2015:10:05:03 +0000").as_deref(),
            Ok("2015-05-17T10:05:03+00:00")
        );
    }

    #[test]
    fn keeps_negative_offset() {
        assert_eq!(
            to_rfc3339("31/Aug/1995:04:10:56 -0400").as_deref(),
            Ok("1995-08-31T04:10:56-04:00")
        );
    }

    #[test]
    fn keeps_fraction_of_second() {
        assert_eq!(
            to_rfc3339("01/Jun/2020:10:00:00.123 +0200").as_deref(),
            Ok("2020-06-01T10:00:00.123+02:00")
        );
    }

    #[test]
    fn accepts_offset_with_colon() {
        assert_eq!(
            to_rfc3339("01/Jun/2020:10:00:00 +02:00").as_deref(),
            Ok("2020-06-01T10:00:00+02:00")
        );
    }

    #[test]
    fn pads_single_digit_day() {
        assert_eq!(
            to_rfc3339("1/Jun/2020:10:00:00 +0000").as_deref(),
            Ok("2020-06-01T10:00:00+00:00")
        );
    }

    #[test]
    fn accepts_leap_days() {
        assert!(to_rfc3339("29/Feb/2016:00:00:00 +0000").is_ok());
        assert!(to_rfc3339("29/Feb/2000:00:00:00 +0000").is_ok());
    }

    #[test]
    fn rejects_missing_offset() {
        assert_eq!(
            to_rfc3339("21/Jun/2012:23:49:36"),
            Err(Rejection::TimestampWithoutOffset(
                "21/Jun/2012:23:49:36".to_owned()
            ))
        );
    }

    #[test]
    fn rejects_invalid_dates() {
        for logged in [
            "29/Feb/2015:00:00:00 +0000",
            "29/Feb/1900:00:00:00 +0000",
            "31/Apr/2015:00:00:00 +0000",
            "00/May/2015:00:00:00 +0000",
            "17/Foo/2015:00:00:00 +0000",
            "17/may/2015:00:00:00 +0000",
            "17/May/2015:24:00:00 +0000",
            "17/May/2015:23:60:00 +0000",
            "17/May/2015:23:00:60 +0000",
            "17/May/2015:23:00:00 +2400",
            "17/May/2015:23:00:00 +0060",
        ] {
            assert_eq!(
                to_rfc3339(logged),
                Err(Rejection::InvalidDate(logged.to_owned())),
                "{logged}"
            );
        }
    }

    #[test]
    fn rejects_other_layouts() {
        for logged in [
            "",
            "2015-05-17T10:05:03+00:00",
            "17/May/2015 10:05:03 +0000",
            "17/May/15:10:05:03 +0000",
            "17/May/2015:10:05:03 UTC",
            "17/May/2015:10:05:03 +000",
        ] {
            assert_eq!(
                to_rfc3339(logged),
                Err(Rejection::InvalidTimestamp(logged.to_owned())),
                "{logged}"
            );
        }
    }
}
