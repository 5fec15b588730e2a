//! UTC calendar fields from epoch milliseconds (for S3 partitions and index-name dates), without
//! a date-time dependency.

/// A UTC date and hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UtcHour {
    /// Year, e.g. 2026.
    pub year: i64,
    /// Month, 1..=12.
    pub month: u32,
    /// Day of month, 1..=31.
    pub day: u32,
    /// Hour, 0..=23.
    pub hour: u32,
}

impl UtcHour {
    /// The UTC date and hour of `ms` milliseconds since the Unix epoch (negative is before 1970).
    pub(crate) fn from_epoch_ms(ms: i64) -> Self {
        let secs = ms.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let hour = (secs.rem_euclid(86_400) / 3600) as u32;
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour,
        }
    }

    /// `YYYY-MM-DD`.
    pub(crate) fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let t = UtcHour::from_epoch_ms(0);
        assert_eq!((t.year, t.month, t.day, t.hour), (1970, 1, 1, 0));
        // 2023-11-14T22:13:20Z
        let t = UtcHour::from_epoch_ms(1_700_000_000_000);
        assert_eq!((t.year, t.month, t.day, t.hour), (2023, 11, 14, 22));
        assert_eq!(t.date(), "2023-11-14");
        // 2024-02-29T23:59:59.999Z (leap day)
        let t = UtcHour::from_epoch_ms(1_709_251_199_999);
        assert_eq!((t.year, t.month, t.day, t.hour), (2024, 2, 29, 23));
        // 1969-12-31T23:00:00Z
        let t = UtcHour::from_epoch_ms(-3_600_000);
        assert_eq!((t.year, t.month, t.day, t.hour), (1969, 12, 31, 23));
        // 2000-03-01T00:00:00Z
        let t = UtcHour::from_epoch_ms(951_868_800_000);
        assert_eq!((t.year, t.month, t.day, t.hour), (2000, 3, 1, 0));
    }
}
