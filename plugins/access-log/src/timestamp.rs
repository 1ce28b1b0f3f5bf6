//! The Apache `%t` timestamp (`16/Aug/2013:15:45:34 +0545`): parsing and
//! validation, RFC 3339 in the logged offset (`2013-08-16T15:45:34+05:45`)
//! and milliseconds since the Unix epoch.
//!
//! The plugin runs without clocks or a time-zone database, and it needs none:
//! the logged offset fixes the instant, so converting it is arithmetic.

use crate::parse::Rejection;

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Max digits of a logged fraction of a second, as in nanoseconds.
const MAX_FRACTION_DIGITS: usize = 9;

/// A validated access-log timestamp with its logged offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp<'a> {
    /// Year, 0 to 9999.
    pub year: u16,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day of the month, 1 to 31 and valid for the month.
    pub day: u8,
    /// Hour, 0 to 23.
    pub hour: u8,
    /// Minute, 0 to 59.
    pub minute: u8,
    /// Second, 0 to 59. A leap second (`:60`) is rejected.
    pub second: u8,
    /// Digits of the fraction of a second as logged, without the `.`, or
    /// empty when none was logged.
    pub fraction: &'a str,
    /// Offset from UTC in minutes, negative west of Greenwich.
    pub offset_minutes: i16,
}

/// Parses the text between `[` and `]` of an access-log line:
/// `d[d]/Mon/yyyy:hh:mm:ss[.fraction]` followed by blanks and an offset
/// `+hhmm` or `+hh:mm`.
///
/// Rejects a timestamp without an offset, one in another layout, and one
/// whose date, time or offset is out of range (for example `31/Apr`).
pub fn parse(logged: &str) -> Result<Timestamp<'_>, Rejection> {
    let invalid = || Rejection::InvalidTimestamp(logged.to_owned());
    let mut scanner = Scanner {
        bytes: logged.as_bytes(),
        position: 0,
    };

    let day = scanner.digits(1, 2).ok_or_else(invalid)?;
    scanner.expect(b'/').ok_or_else(invalid)?;
    let month_name = scanner.take(3).ok_or_else(invalid)?;
    scanner.expect(b'/').ok_or_else(invalid)?;
    let year = scanner.digits(4, 4).ok_or_else(invalid)?;
    scanner.expect(b':').ok_or_else(invalid)?;
    let hour = scanner.digits(2, 2).ok_or_else(invalid)?;
    scanner.expect(b':').ok_or_else(invalid)?;
    let minute = scanner.digits(2, 2).ok_or_else(invalid)?;
    scanner.expect(b':').ok_or_else(invalid)?;
    let second = scanner.digits(2, 2).ok_or_else(invalid)?;

    let mut fraction = "";
    if scanner.expect(b'.').is_some() {
        let start = scanner.position;
        scanner.digits(1, MAX_FRACTION_DIGITS).ok_or_else(invalid)?;
        fraction = &logged[start..scanner.position];
    }
    if !month_name.iter().all(u8::is_ascii_alphabetic) {
        return Err(invalid());
    }
    if scanner.at_end() {
        return Err(Rejection::TimestampWithoutOffset(logged.to_owned()));
    }

    if scanner.skip_blanks() == 0 {
        return Err(invalid());
    }
    let sign: i16 = match scanner.next() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(invalid()),
    };
    let offset_hours = scanner.digits(2, 2).ok_or_else(invalid)?;
    scanner.expect(b':');
    let offset_mins = scanner.digits(2, 2).ok_or_else(invalid)?;
    if !scanner.at_end() {
        return Err(invalid());
    }

    let out_of_range = || Rejection::InvalidDate(logged.to_owned());
    let month = MONTHS
        .iter()
        .position(|name| name.as_slice() == month_name)
        .ok_or_else(out_of_range)?;
    let month = month as u8 + 1;
    let date_valid = day >= 1 && day <= u32::from(days_in_month(year, month));
    let time_valid = hour <= 23 && minute <= 59 && second <= 59;
    let offset_valid = offset_hours <= 23 && offset_mins <= 59;
    if !(date_valid && time_valid && offset_valid) {
        return Err(out_of_range());
    }

    // Every value was range-checked above, so the casts cannot truncate.
    Ok(Timestamp {
        year: year as u16,
        month,
        day: day as u8,
        hour: hour as u8,
        minute: minute as u8,
        second: second as u8,
        fraction,
        offset_minutes: sign * (offset_hours * 60 + offset_mins) as i16,
    })
}

impl Timestamp<'_> {
    /// Appends the RFC 3339 form in the logged offset, written `+hh:mm`
    /// (never `Z`), with the logged fraction of a second if there is one.
    pub fn write_rfc3339(&self, out: &mut String) {
        push_digits(out, u32::from(self.year), 4);
        out.push('-');
        push_digits(out, u32::from(self.month), 2);
        out.push('-');
        push_digits(out, u32::from(self.day), 2);
        out.push('T');
        push_digits(out, u32::from(self.hour), 2);
        out.push(':');
        push_digits(out, u32::from(self.minute), 2);
        out.push(':');
        push_digits(out, u32::from(self.second), 2);
        if !self.fraction.is_empty() {
            out.push('.');
            out.push_str(self.fraction);
        }
        out.push(if self.offset_minutes < 0 { '-' } else { '+' });
        let offset = u32::from(self.offset_minutes.unsigned_abs());
        push_digits(out, offset / 60, 2);
        out.push(':');
        push_digits(out, offset % 60, 2);
    }

    /// Returns the instant as milliseconds since 1970-01-01T00:00:00Z.
    /// Digits of the fraction past milliseconds are dropped, not rounded.
    pub fn epoch_millis(&self) -> i64 {
        let days = days_from_civil(
            i64::from(self.year),
            i64::from(self.month),
            i64::from(self.day),
        );
        let seconds = days * 86_400
            + i64::from(self.hour) * 3_600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.offset_minutes) * 60;
        seconds * 1_000 + self.fraction_millis()
    }

    fn fraction_millis(&self) -> i64 {
        let mut millis = 0;
        let mut digits = self.fraction.bytes();
        for _ in 0..3 {
            millis = millis * 10 + digits.next().map_or(0, |digit| i64::from(digit - b'0'));
        }
        millis
    }
}

/// Returns the days from 1970-01-01 to the given proleptic Gregorian date,
/// after Howard Hinnant's `days_from_civil` algorithm.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Appends `value` as exactly `width` decimal digits, zero-padded.
fn push_digits(out: &mut String, value: u32, width: u32) {
    let mut divisor = 10u32.pow(width - 1);
    while divisor > 0 {
        out.push(char::from(b'0' + (value / divisor % 10) as u8));
        divisor /= 10;
    }
}

fn days_in_month(year: u32, month: u8) -> u8 {
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

/// A position in the timestamp text.
struct Scanner<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Scanner<'a> {
    fn at_end(&self) -> bool {
        self.position == self.bytes.len()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.position)?;
        self.position += 1;
        Some(byte)
    }

    fn expect(&mut self, wanted: u8) -> Option<()> {
        (self.bytes.get(self.position) == Some(&wanted)).then(|| self.position += 1)
    }

    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let taken = self.bytes.get(self.position..self.position + count)?;
        self.position += count;
        Some(taken)
    }

    fn skip_blanks(&mut self) -> usize {
        let start = self.position;
        while matches!(self.bytes.get(self.position), Some(b' ' | b'\t')) {
            self.position += 1;
        }
        self.position - start
    }

    /// Returns the value of `min` to `max` ASCII digits at the position.
    /// `max` is at most 9, so the value fits in a `u32`.
    fn digits(&mut self, min: usize, max: usize) -> Option<u32> {
        let mut value = 0;
        let mut count = 0;
        while count < max {
            match self.bytes.get(self.position) {
                Some(digit @ b'0'..=b'9') => {
                    value = value * 10 + u32::from(digit - b'0');
                    self.position += 1;
                    count += 1;
                }
                _ => break,
            }
        }
        (count >= min).then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc3339(logged: &str) -> Result<String, Rejection> {
        let timestamp = parse(logged)?;
        let mut text = String::new();
        timestamp.write_rfc3339(&mut text);
        Ok(text)
    }

    fn millis(logged: &str) -> i64 {
        parse(logged).expect("valid timestamp").epoch_millis()
    }

    #[test]
    fn keeps_offset_with_minutes() {
        assert_eq!(
            rfc3339("16/Aug/2013:15:45:34 +0545").as_deref(),
            Ok("2013-08-16T15:45:34+05:45")
        );
    }

    #[test]
    fn keeps_zero_offset_not_z() {
        assert_eq!(
            rfc3339("17/May/2015:10:05:03 +0000").as_deref(),
            Ok("2015-05-17T10:05:03+00:00")
        );
    }

    #[test]
    fn keeps_negative_offset() {
        assert_eq!(
            rfc3339("31/Aug/1995:04:10:56 -0400").as_deref(),
            Ok("1995-08-31T04:10:56-04:00")
        );
        assert_eq!(
            rfc3339("01/Jan/2020:00:00:00 -0930").as_deref(),
            Ok("2020-01-01T00:00:00-09:30")
        );
    }

    #[test]
    fn keeps_fraction_of_second() {
        assert_eq!(
            rfc3339("01/Jun/2020:10:00:00.123 +0200").as_deref(),
            Ok("2020-06-01T10:00:00.123+02:00")
        );
        assert_eq!(
            rfc3339("01/Jun/2020:10:00:00.123456789 +0200").as_deref(),
            Ok("2020-06-01T10:00:00.123456789+02:00")
        );
    }

    #[test]
    fn accepts_offset_with_colon_and_tab() {
        assert_eq!(
            rfc3339("01/Jun/2020:10:00:00 +02:00").as_deref(),
            Ok("2020-06-01T10:00:00+02:00")
        );
        assert_eq!(
            rfc3339("01/Jun/2020:10:00:00\t+0200").as_deref(),
            Ok("2020-06-01T10:00:00+02:00")
        );
    }

    #[test]
    fn pads_single_digit_day() {
        assert_eq!(
            rfc3339("1/Jun/2020:10:00:00 +0000").as_deref(),
            Ok("2020-06-01T10:00:00+00:00")
        );
    }

    #[test]
    fn accepts_leap_days() {
        assert!(parse("29/Feb/2016:00:00:00 +0000").is_ok());
        assert!(parse("29/Feb/2000:00:00:00 +0000").is_ok());
    }

    #[test]
    fn epoch_millis_at_known_instants() {
        assert_eq!(millis("01/Jan/1970:00:00:00 +0000"), 0);
        // 2015-05-17T10:05:03Z, as `date -u -d 2015-05-17T10:05:03Z +%s`.
        assert_eq!(millis("17/May/2015:10:05:03 +0000"), 1_431_857_103_000);
        // The same instant logged five hours and 45 minutes east.
        assert_eq!(millis("17/May/2015:15:50:03 +0545"), 1_431_857_103_000);
        assert_eq!(millis("17/May/2015:06:05:03 -0400"), 1_431_857_103_000);
        assert_eq!(millis("29/Feb/2000:23:59:59 +0000"), 951_868_799_000);
        assert_eq!(millis("31/Dec/1969:23:59:59 +0000"), -1_000);
    }

    #[test]
    fn epoch_millis_truncates_fraction() {
        assert_eq!(millis("01/Jan/1970:00:00:01.5 +0000"), 1_500);
        assert_eq!(millis("01/Jan/1970:00:00:01.0429 +0000"), 1_042);
        assert_eq!(millis("01/Jan/1970:00:00:01.999999 +0000"), 1_999);
    }

    #[test]
    fn rejects_missing_offset() {
        for logged in ["21/Jun/2012:23:49:36", "21/Jun/2012:23:49:36.250"] {
            assert_eq!(
                parse(logged),
                Err(Rejection::TimestampWithoutOffset(logged.to_owned()))
            );
        }
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
                parse(logged),
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
            "17/May/2015:10:05:03+0000",
            "17/May/2015:10:05:03 +0000 ",
            "17/May/2015:10:05:03. +0000",
            "17/May/2015:10:05:03.1234567890 +0000",
            "17/M1y/2015:10:05:03 +0000",
            "117/May/2015:10:05:03 +0000",
            "17/Ma",
        ] {
            assert_eq!(
                parse(logged),
                Err(Rejection::InvalidTimestamp(logged.to_owned())),
                "{logged}"
            );
        }
    }
}
