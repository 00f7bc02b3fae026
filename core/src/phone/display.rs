//! Times as people read them. Grid workers and township staff read China Standard Time
//! (UTC+8, no daylight saving), whatever zone the machine showing it is set to; stored and
//! synced times stay milliseconds since the epoch.

use chrono::{DateTime, FixedOffset};

use crate::model::Millis;

/// UTC+8.
pub fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// `2025-01-06 08:00` in China time; `-` for an instant chrono cannot represent.
pub fn china_time(at: Millis) -> String {
    DateTime::from_timestamp_millis(at)
        .map(|t| {
            t.with_timezone(&china())
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_read_as_china_time() {
        // 2025-01-06T00:00:00Z is 08:00 in Beijing.
        assert_eq!(china_time(1_736_121_600_000), "2025-01-06 08:00");
        // Late evening UTC is the next morning in China.
        assert_eq!(
            china_time(1_736_121_600_000 - 3_600_000),
            "2025-01-06 07:00"
        );
        assert_eq!(
            china_time(1_736_121_600_000 + 16 * 3_600_000),
            "2025-01-07 00:00"
        );
        assert_eq!(china_time(i64::MAX), "-");
    }
}
