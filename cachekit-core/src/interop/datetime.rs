//! Datetimes as cachekit-py stores them in values: the sentinel map
//! `{"__datetime__": true, "value": "<isoformat>"}`.
//!
//! Use it on a [`SystemTime`] field with
//! `#[serde(with = "cachekit::interop::datetime")]`. Writing gives Python's
//! `datetime.isoformat()` of the UTC instant (`2024-01-15T12:30:00+00:00`,
//! with `.ffffff` only when the microseconds are not 0), so
//! [`to_msgpack`](super::to_msgpack) writes Python's exact bytes. Reading
//! accepts any UTC offset (`+00:00`, `-05:30`) or a trailing `Z`, and a
//! fraction of 1 to 6 digits. Dates (`__date__`) and times (`__time__`) are
//! not read here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::InteropError;
use super::value::DATETIME_NAME;

/// The marker key of a datetime sentinel map.
pub(crate) const MARKER: &str = "__datetime__";
/// The key of the sentinel map's ISO text.
pub(crate) const VALUE: &str = "value";

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Writes `time` as the sentinel map of its UTC isoformat, under a
/// private newtype name: other serializers see the map alone, and
/// [`InteropValue::from_serde`](super::InteropValue::from_serde) sees a
/// datetime, so that a field of a struct argument hashes as Python hashes a
/// datetime (float seconds), not as the map.
pub fn serialize<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    let value = system_time_micros(*time)
        .and_then(isoformat)
        .map_err(S::Error::custom)?;
    serializer.serialize_newtype_struct(
        DATETIME_NAME,
        &Sentinel {
            marker: true,
            value,
        },
    )
}

/// Reads a sentinel map back into the instant it names.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
    let sentinel = Sentinel::deserialize(deserializer)?;
    if !sentinel.marker {
        return Err(D::Error::custom(
            "a datetime sentinel map has `__datetime__: true`; this one says false",
        ));
    }
    parse_iso(&sentinel.value)
        .and_then(micros_to_system_time)
        .map_err(D::Error::custom)
}

/// The sentinel map as stored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sentinel {
    #[serde(rename = "__datetime__")]
    pub(crate) marker: bool,
    pub(crate) value: String,
}

/// Microseconds since the Unix epoch of `time`, floored toward −∞.
pub(crate) fn system_time_micros(time: SystemTime) -> Result<i64, InteropError> {
    let micros = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_micros()).unwrap_or(i128::MAX),
        Err(before) => {
            let before = before.duration();
            let partial = before.subsec_nanos() % 1000 != 0;
            let whole = i128::try_from(before.as_micros()).unwrap_or(i128::MAX - 1);
            -(whole + i128::from(partial))
        }
    };
    i64::try_from(micros)
        .map_err(|_| InteropError::new("the time is too far from 1970 for 64-bit microseconds"))
}

/// The instant `unix_micros` after the epoch.
pub(crate) fn micros_to_system_time(unix_micros: i64) -> Result<SystemTime, InteropError> {
    let span = Duration::from_micros(unix_micros.unsigned_abs());
    let time = if unix_micros >= 0 {
        UNIX_EPOCH.checked_add(span)
    } else {
        UNIX_EPOCH.checked_sub(span)
    };
    time.ok_or_else(|| InteropError::new("the datetime does not fit in this platform's SystemTime"))
}

/// Python's `datetime.isoformat()` of the UTC instant `unix_micros`.
pub(crate) fn isoformat(unix_micros: i64) -> Result<String, InteropError> {
    let days = unix_micros.div_euclid(MICROS_PER_DAY);
    let in_day = unix_micros.rem_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if !(1..=9999).contains(&year) {
        return Err(InteropError::new(format!(
            "the datetime's year {year} is outside 1..=9999, the range of Python's datetime"
        )));
    }
    let micros = in_day % 1_000_000;
    let secs = in_day / 1_000_000;
    let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
    if micros != 0 {
        text.push_str(&format!(".{micros:06}"));
    }
    text.push_str("+00:00");
    Ok(text)
}

/// The microseconds since the epoch of an ISO datetime with a UTC offset:
/// `YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|±HH:MM)`.
pub(crate) fn parse_iso(text: &str) -> Result<i64, InteropError> {
    let bad = || {
        InteropError::new(format!(
            "{text:?} is not an ISO datetime with an offset \
             (YYYY-MM-DDTHH:MM:SS[.ffffff] then Z or ±HH:MM)"
        ))
    };
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |from: usize, to: usize| digits(&b[from..to]).ok_or_else(bad);
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if year == 0 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(bad());
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(bad());
    }
    let mut at = 19;
    let mut fraction = 0;
    if b[at] == b'.' {
        let len = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if !(1..=6).contains(&len) {
            return Err(bad());
        }
        fraction = num(at + 1, at + 1 + len)? * 10_i64.pow(6 - len as u32);
        at += 1 + len;
    }
    let offset_minutes = match &b[at..] {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(at + 1, at + 3)?, num(at + 4, at + 6)?);
            if h > 23 || m > 59 {
                return Err(bad());
            }
            if *sign == b'-' {
                -(h * 60 + m)
            } else {
                h * 60 + m
            }
        }
        _ => return Err(bad()),
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_minutes * 60;
    Ok(seconds * 1_000_000 + fraction)
}

/// The value of a run of ASCII digits, if they are all digits.
fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0_i64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The days from 1970-01-01 to a proleptic Gregorian date (the inverse of
/// [`civil_from_days`]).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isoformat_is_pythons() {
        assert_eq!(isoformat(0).unwrap(), "1970-01-01T00:00:00+00:00");
        assert_eq!(
            isoformat(1_705_321_800_000_000).unwrap(),
            "2024-01-15T12:30:00+00:00"
        );
        assert_eq!(
            isoformat(1_705_321_800_000_007).unwrap(),
            "2024-01-15T12:30:00.000007+00:00"
        );
        assert_eq!(isoformat(-1).unwrap(), "1969-12-31T23:59:59.999999+00:00");
        assert_eq!(
            isoformat(951_782_400_000_000).unwrap(),
            "2000-02-29T00:00:00+00:00"
        );
        assert!(isoformat(i64::MIN).is_err());
        assert!(isoformat(253_402_300_800_000_000).is_err(), "year 10000");
        assert_eq!(
            isoformat(253_402_300_799_999_999).unwrap(),
            "9999-12-31T23:59:59.999999+00:00"
        );
        assert_eq!(
            isoformat(-62_135_596_800_000_000).unwrap(),
            "0001-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn parse_accepts_offsets_z_and_short_fractions() {
        let noon = 1_705_321_800_000_000;
        assert_eq!(parse_iso("2024-01-15T12:30:00+00:00").unwrap(), noon);
        assert_eq!(parse_iso("2024-01-15T12:30:00Z").unwrap(), noon);
        assert_eq!(parse_iso("2024-01-15T14:00:00+01:30").unwrap(), noon);
        assert_eq!(parse_iso("2024-01-15T07:30:00-05:00").unwrap(), noon);
        assert_eq!(parse_iso("2024-01-15T12:30:00.5Z").unwrap(), noon + 500_000);
        assert_eq!(
            parse_iso("2024-01-15T12:30:00.000007+00:00").unwrap(),
            noon + 7
        );
        assert_eq!(parse_iso("1969-12-31T23:59:59.999999+00:00").unwrap(), -1);
        for bad in [
            "2024-01-15T12:30:00",
            "2024-01-15T12:30:00.Z",
            "2024-01-15T12:30:00.1234567Z",
            "2024-02-30T12:30:00Z",
            "2023-02-29T12:30:00Z",
            "2024-01-15 12:30:00Z",
            "2024-01-15T24:00:00Z",
            "2024-01-15T12:30:00+0000",
            "2024-01-15T12:30:00+00:00\n",
            "0000-01-01T00:00:00Z",
            "2024-1-15T12:30:00Z",
        ] {
            assert!(parse_iso(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn days_round_trip() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn system_time_micros_floor_toward_minus_infinity() {
        let before = UNIX_EPOCH - Duration::from_nanos(1);
        assert_eq!(system_time_micros(before).unwrap(), -1);
        let before = UNIX_EPOCH - Duration::from_micros(3);
        assert_eq!(system_time_micros(before).unwrap(), -3);
        let after = UNIX_EPOCH + Duration::from_nanos(1_999);
        assert_eq!(system_time_micros(after).unwrap(), 1);
        assert_eq!(micros_to_system_time(-3).unwrap(), before);
    }
}
