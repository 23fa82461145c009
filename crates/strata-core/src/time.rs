//! Recorded time: microseconds since the Unix epoch, UTC. Reading the clock is the engine's business
//! (through an injectable clock); this module only represents and formats.

use std::fmt;

/// A point in time, in microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const UNIX_EPOCH: Self = Self(0);

    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }
}

/// Why a text is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an RFC 3339 time like 2026-11-26T08:07:55.123456Z: {reason}")]
pub struct TimestampParseError {
    pub text: String,
    pub reason: &'static str,
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampParseError;

    /// Parses RFC 3339 (`2026-11-26T08:07:55Z`, with up to 9 fraction digits — kept to the microsecond,
    /// truncated — and `Z` or a `+hh:mm` / `-hh:mm` offset). A lowercase `t`/`z` or a space for `T` is
    /// accepted, as RFC 3339 allows.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| TimestampParseError { text: text.to_owned(), reason };
        let bytes = text.as_bytes();
        let digits = |range: std::ops::Range<usize>| -> Option<i64> {
            let part = bytes.get(range)?;
            part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
        };
        if bytes.len() < 19 {
            return Err(fail("too short"));
        }
        let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) else {
            return Err(fail("the date must be YYYY-MM-DD"));
        };
        if bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(fail("the date must be YYYY-MM-DD"));
        }
        if !matches!(bytes[10], b'T' | b't' | b' ') {
            return Err(fail("the date and the time must be separated by T"));
        }
        let (Some(hour), Some(minute), Some(second)) = (digits(11..13), digits(14..16), digits(17..19)) else {
            return Err(fail("the time must be hh:mm:ss"));
        };
        if bytes[13] != b':' || bytes[16] != b':' {
            return Err(fail("the time must be hh:mm:ss"));
        }
        let leap_year = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let month_days = [31, if leap_year { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        if !(1..=12).contains(&month) || day < 1 || day > month_days[month as usize - 1] {
            return Err(fail("no such date"));
        }
        // A leap second (:60) is accepted and counted as :59.999999, keeping times ordered.
        if hour > 23 || minute > 59 || second > 60 {
            return Err(fail("no such time of day"));
        }
        let mut at = 19;
        let mut micros = 0;
        if bytes.get(at) == Some(&b'.') {
            at += 1;
            let start = at;
            while at < bytes.len() && bytes[at].is_ascii_digit() {
                if at - start < 6 {
                    micros = micros * 10 + i64::from(bytes[at] - b'0');
                }
                at += 1;
            }
            let count = at - start;
            if count == 0 || count > 9 {
                return Err(fail("the fraction of a second must have 1 to 9 digits"));
            }
            micros *= 10_i64.pow(6_u32.saturating_sub(count as u32));
        }
        let offset_seconds = match &bytes[at..] {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (Some(hours), Some(minutes)) = (digits(at + 1..at + 3), digits(at + 4..at + 6)) else {
                    return Err(fail("the offset must be Z or +hh:mm / -hh:mm"));
                };
                if hours > 23 || minutes > 59 {
                    return Err(fail("the offset must be Z or +hh:mm / -hh:mm"));
                }
                let seconds = hours * 3600 + minutes * 60;
                if *sign == b'+' { seconds } else { -seconds }
            }
            _ => return Err(fail("the time must end with Z or an offset like +01:00")),
        };
        let (second, micros) = if second == 60 { (59, 999_999) } else { (second, micros) };
        let days = days_from_civil(year, month as u32, day as u32);
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
        Ok(Timestamp(seconds * 1_000_000 + micros))
    }
}

/// A civil date to days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_index = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let day_of_year = (153 * month_index + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Days since 1970-01-01 to a (year, month, day) civil date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Length of [`Timestamp::to_rfc3339_bytes`]'s text.
pub const RFC3339_BYTES: usize = 27;

impl Timestamp {
    /// The [`Display`](fmt::Display) text as bytes, without the formatting machinery — for renderers
    /// of many events. `None` outside the years 0000–9999 (use `Display` there).
    pub fn to_rfc3339_bytes(self) -> Option<[u8; RFC3339_BYTES]> {
        let seconds = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000) as u32;
        let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
        if !(0..=9999).contains(&year) {
            return None;
        }
        let second_of_day = seconds.rem_euclid(86_400) as u32;
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, value: u32, digits: usize| {
            let mut value = value;
            for index in (at..at + digits).rev() {
                out[index] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, year as u32, 4);
        put(5, month, 2);
        put(8, day, 2);
        put(11, second_of_day / 3600, 2);
        put(14, second_of_day % 3600 / 60, 2);
        put(17, second_of_day % 60, 2);
        put(20, micros, 6);
        Some(out)
    }
}

/// RFC 3339 in UTC with microseconds: `2026-11-26T08:07:55.123456Z`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
        let second_of_day = seconds.rem_euclid(86_400);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            second_of_day / 3600,
            second_of_day % 3600 / 60,
            second_of_day % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_microseconds() {
        assert_eq!(Timestamp::UNIX_EPOCH.to_string(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(Timestamp::from_micros(1_795_680_475_123_456).to_string(), "2026-11-26T08:07:55.123456Z");
        assert_eq!(Timestamp::from_micros(951_782_400_000_001).to_string(), "2000-02-29T00:00:00.000001Z");
        assert_eq!(Timestamp::from_micros(-1).to_string(), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn byte_form_equals_display() {
        for micros in [0, 1, -1, 1_795_680_475_123_456, 951_782_400_000_001, 253_402_300_799_999_999] {
            let time = Timestamp::from_micros(micros);
            let bytes = time.to_rfc3339_bytes().unwrap();
            assert_eq!(std::str::from_utf8(&bytes).unwrap(), time.to_string());
        }
        assert_eq!(Timestamp::from_micros(i64::MAX).to_rfc3339_bytes(), None);
        assert_eq!(Timestamp::from_micros(-62_167_219_200_000_001).to_rfc3339_bytes(), None);
    }

    #[test]
    fn parses_what_it_formats_and_rfc3339_variants() {
        for micros in [0, 1, -1, 1_795_680_475_123_456, 951_782_400_000_001, 253_402_300_799_999_999] {
            let time = Timestamp::from_micros(micros);
            assert_eq!(time.to_string().parse::<Timestamp>(), Ok(time));
        }
        let expected = Timestamp::from_micros(1_795_680_475_000_000);
        assert_eq!("2026-11-26T08:07:55Z".parse(), Ok(expected));
        assert_eq!("2026-11-26t08:07:55z".parse(), Ok(expected));
        assert_eq!("2026-11-26 09:07:55+01:00".parse(), Ok(expected));
        assert_eq!("2026-11-26T07:37:55-00:30".parse(), Ok(expected));
        assert_eq!("2026-11-26T08:07:55.1Z".parse(), Ok(Timestamp::from_micros(1_795_680_475_100_000)));
        assert_eq!("2026-11-26T08:07:55.123456789Z".parse(), Ok(Timestamp::from_micros(1_795_680_475_123_456)));
        assert_eq!("2026-11-26T08:07:60Z".parse(), Ok(Timestamp::from_micros(1_795_680_479_999_999)));
    }

    #[test]
    fn refuses_what_is_not_rfc3339() {
        for text in [
            "",
            "2026-11-26",
            "2026-11-26T08:07:55",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T08:07:55.Z",
            "2026-11-26T08:07:55.1234567890Z",
            "2026-11-26T08:07:55+0100",
            "2026-11-26T08:07:55Zjunk",
            "２026-11-26T08:07:55Z",
            "1764144475",
        ] {
            let error = text.parse::<Timestamp>().expect_err(text);
            assert!(error.to_string().contains("RFC 3339"), "{error}");
        }
    }
}
