//! Reporting periods of the seeds' cadence (日交办、周汇总、半月研判、月通报) in China time, and
//! the period before each (the report's change and the hot spots' baseline).

use chrono::{Datelike, Duration, NaiveDate};
use gridcase_core::model::Millis;
use serde::Serialize;

/// China Standard Time (no daylight saving): periods start at local midnight.
pub const CST_OFFSET_MS: Millis = 8 * 3_600_000;

/// One day in milliseconds (China time has no daylight saving, so every day is this long).
pub const DAY_MS: Millis = 86_400_000;

/// Which cadence a period belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    Day,
    Week,
    HalfMonth,
    Month,
}

/// A reporting period: `2026-11` (month), `2026-11-30` (day), `2026-W48` (ISO week),
/// `2026-11-H1` / `2026-11-H2` (1st–15th / 16th–end of month).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    pub label: String,
    pub kind: PeriodKind,
    /// Inclusive start, UTC millis.
    pub from: Millis,
    /// Exclusive end, UTC millis.
    pub to: Millis,
}

pub(crate) fn midnight(date: NaiveDate) -> Millis {
    date.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp_millis()
        - CST_OFFSET_MS
}

/// The China-time date and time of `at`, as reports print it (`2026-11-28 10:00`).
pub fn china_time(at: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(at + CST_OFFSET_MS)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

fn next_month(date: NaiveDate) -> Option<NaiveDate> {
    let (y, m) = if date.month() == 12 {
        (date.year() + 1, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
}

fn previous_month(date: NaiveDate) -> Option<NaiveDate> {
    let (y, m) = if date.month() == 1 {
        (date.year() - 1, 12)
    } else {
        (date.year(), date.month() - 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
}

impl Period {
    /// Parses the period forms above; anything else is refused with the forms it accepts.
    pub fn parse(text: &str) -> Result<Period, String> {
        let bad = || {
            format!("period {text:?}: use 2026-11, 2026-11-30, 2026-W48, 2026-11-H1 or 2026-11-H2")
        };
        let (kind, start, end) = Self::bounds(text).ok_or_else(bad)?;
        Ok(Period {
            label: text.to_owned(),
            kind,
            from: midnight(start),
            to: midnight(end),
        })
    }

    fn bounds(text: &str) -> Option<(PeriodKind, NaiveDate, NaiveDate)> {
        if let Some((year, week)) = text.split_once("-W") {
            let week: u32 = week.parse().ok().filter(|_| week.len() == 2)?;
            let start = NaiveDate::from_isoywd_opt(year.parse().ok()?, week, chrono::Weekday::Mon)?;
            return Some((PeriodKind::Week, start, start + Duration::days(7)));
        }
        if let Some(month) = text.strip_suffix("-H1") {
            let start = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok()?;
            return Some((PeriodKind::HalfMonth, start, start.with_day(16)?));
        }
        if let Some(month) = text.strip_suffix("-H2") {
            let start = NaiveDate::parse_from_str(&format!("{month}-16"), "%Y-%m-%d").ok()?;
            return Some((PeriodKind::HalfMonth, start, next_month(start)?));
        }
        match text.len() {
            7 => {
                let start = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").ok()?;
                Some((PeriodKind::Month, start, next_month(start)?))
            }
            10 => {
                let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
                Some((PeriodKind::Day, day, day + Duration::days(1)))
            }
            _ => None,
        }
    }

    /// The period of the same kind just before this one (it ends where this one starts).
    pub fn previous(&self) -> Option<Period> {
        let (_, start, _) = Self::bounds(&self.label)?;
        let label = match self.kind {
            PeriodKind::Day => (start - Duration::days(1)).format("%Y-%m-%d").to_string(),
            PeriodKind::Week => (start - Duration::days(7)).format("%G-W%V").to_string(),
            PeriodKind::Month => previous_month(start)?.format("%Y-%m").to_string(),
            PeriodKind::HalfMonth if start.day() == 16 => start.format("%Y-%m-H1").to_string(),
            PeriodKind::HalfMonth => previous_month(start)?.format("%Y-%m-H2").to_string(),
        };
        Period::parse(&label).ok()
    }

    /// This period and the `n` before it, newest first (fewer at the calendar's start).
    pub fn with_previous(&self, n: u32) -> Vec<Period> {
        let mut periods = vec![self.clone()];
        for _ in 0..n {
            match periods.last().and_then(Period::previous) {
                Some(p) => periods.push(p),
                None => break,
            }
        }
        periods
    }

    /// Whole days in the period.
    pub fn days(&self) -> i64 {
        (self.to - self.from) / DAY_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> Millis {
        midnight(NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap())
    }

    #[test]
    fn periods_in_china_time() {
        let m = Period::parse("2026-11").unwrap();
        assert_eq!((m.from, m.to), (day("2026-11-01"), day("2026-12-01")));
        // 2026-11-01 00:00 CST is 2026-10-31 16:00 UTC.
        assert_eq!(m.from, 1_793_462_400_000);
        let d = Period::parse("2026-12-31").unwrap();
        assert_eq!(d.to, day("2027-01-01"));
        let w = Period::parse("2026-W48").unwrap();
        assert_eq!((w.from, w.to), (day("2026-11-23"), day("2026-11-30")));
        let h1 = Period::parse("2026-11-H1").unwrap();
        let h2 = Period::parse("2026-11-H2").unwrap();
        assert_eq!((h1.from, h1.to, h2.to), (m.from, day("2026-11-16"), m.to));
        assert_eq!(h2.from, h1.to);
        assert_eq!(china_time(m.from + 10 * 3_600_000), "2026-11-01 10:00");
    }

    #[test]
    fn bad_periods_are_refused() {
        for bad in [
            "",
            "2026",
            "2026-13",
            "2026-11-31",
            "2026-W54",
            "2026-W4",
            "2026-11-H3",
            "11-2026",
            "2026-11-30T00",
            "２０２６-11",
        ] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_previous_period_is_of_the_same_kind_and_adjacent() {
        for (label, previous) in [
            ("2026-11", "2026-10"),
            ("2026-01", "2025-12"),
            ("2026-11-30", "2026-11-29"),
            ("2026-03-01", "2026-02-28"),
            ("2026-W48", "2026-W47"),
            ("2026-W01", "2025-W52"),
            ("2026-11-H2", "2026-11-H1"),
            ("2026-11-H1", "2026-10-H2"),
            ("2026-01-H1", "2025-12-H2"),
        ] {
            let p = Period::parse(label).unwrap();
            let q = p.previous().unwrap();
            assert_eq!(q.label, previous);
            assert_eq!((q.kind, q.to), (p.kind, p.from), "{label}");
        }
        let six = Period::parse("2026-11").unwrap().with_previous(6);
        let labels: Vec<&str> = six.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "2026-11", "2026-10", "2026-09", "2026-08", "2026-07", "2026-06", "2026-05"
            ]
        );
        assert_eq!(six[1].days(), 31);
    }
}
