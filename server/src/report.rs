//! Reports of the assessment rates (`crate::rates`) for a period of the seeds' cadence (日、周、
//! 半月、月) and an area prefix, as JSON or as CSV with Chinese headers.

use chrono::{Datelike, Duration, NaiveDate};
use gridcase_core::model::Millis;
use serde::Serialize;

use crate::rates::{FactFilter, Rate, rates_from_counts};
use crate::store::{Result, Store, StoreError};

/// China Standard Time (no daylight saving): periods start at local midnight.
const CST_OFFSET_MS: Millis = 8 * 3_600_000;

/// A reporting period: `2026-11` (month), `2026-11-30` (day), `2026-W48` (ISO week),
/// `2026-11-H1` / `2026-11-H2` (1st–15th / 16th–end of month).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    pub label: String,
    /// Inclusive start, UTC millis.
    pub from: Millis,
    /// Exclusive end, UTC millis.
    pub to: Millis,
}

fn midnight(date: NaiveDate) -> Millis {
    date.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp_millis()
        - CST_OFFSET_MS
}

fn next_month(date: NaiveDate) -> Option<NaiveDate> {
    let (y, m) = if date.month() == 12 {
        (date.year() + 1, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
}

impl Period {
    /// Parses the period forms above; anything else is refused with the forms it accepts.
    pub fn parse(text: &str) -> Result<Period, String> {
        let bad = || {
            format!("period {text:?}: use 2026-11, 2026-11-30, 2026-W48, 2026-11-H1 or 2026-11-H2")
        };
        let (start, end) = Self::bounds(text).ok_or_else(bad)?;
        Ok(Period {
            label: text.to_owned(),
            from: midnight(start),
            to: midnight(end),
        })
    }

    fn bounds(text: &str) -> Option<(NaiveDate, NaiveDate)> {
        if let Some((year, week)) = text.split_once("-W") {
            let week: u32 = week.parse().ok().filter(|_| week.len() == 2)?;
            let start = NaiveDate::from_isoywd_opt(year.parse().ok()?, week, chrono::Weekday::Mon)?;
            return Some((start, start + Duration::days(7)));
        }
        if let Some(month) = text.strip_suffix("-H1") {
            let start = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok()?;
            return Some((start, start.with_day(16)?));
        }
        if let Some(month) = text.strip_suffix("-H2") {
            let start = NaiveDate::parse_from_str(&format!("{month}-16"), "%Y-%m-%d").ok()?;
            return Some((start, next_month(start)?));
        }
        match text.len() {
            7 => {
                let start = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").ok()?;
                Some((start, next_month(start)?))
            }
            10 => {
                let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
                Some((day, day + Duration::days(1)))
            }
            _ => None,
        }
    }
}

/// A report: what it covers and its rates, each with numerator and denominator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub period: Period,
    pub area: String,
    pub unit: Option<String>,
    pub category: Option<String>,
    /// The instant stages' clocks were judged at.
    pub now: Millis,
    /// Cases registered in the period and area.
    pub cases: i64,
    pub rates: Vec<Rate>,
}

/// What to report on.
#[derive(Debug, Clone, Default)]
pub struct ReportQuery {
    pub period: String,
    pub area: String,
    pub unit: Option<String>,
    pub category: Option<String>,
}

impl Store {
    /// The rates for `query` at `now`, counted in the database.
    pub fn report(&self, query: &ReportQuery, now: Millis) -> Result<Report> {
        let period = Period::parse(&query.period).map_err(StoreError::Invalid)?;
        let filter = FactFilter {
            from: period.from,
            to: period.to,
            area: query.area.clone(),
            unit: query.unit.clone(),
            category: query.category.clone(),
        };
        filter.check().map_err(StoreError::Invalid)?;
        let counts = self.db().rate_counts(&filter, now)?;
        let rates = rates_from_counts(&counts, self.policy());
        let cases = rates
            .iter()
            .find(|r| r.key == "duplicate")
            .map_or(0, |r| r.denominator);
        Ok(Report {
            period,
            area: query.area.clone(),
            unit: query.unit.clone(),
            category: query.category.clone(),
            now,
            cases,
            rates,
        })
    }
}

impl Store {
    /// Writes the facts row of every case committed before `case_facts` existed (one pass over
    /// those documents, once after the upgrade; later commits keep the rows current). Returns
    /// how many rows were written.
    pub fn backfill_facts(&self) -> Result<u64> {
        let (mut after, mut written) = (String::new(), 0u64);
        loop {
            let ids = self.db().cases_without_facts(&after, 500)?;
            let Some(last) = ids.last() else {
                return Ok(written);
            };
            after = last.clone();
            for id in &ids {
                let Some(doc) = self.load_doc(id)? else {
                    continue;
                };
                let case = gridcase_core::doc::CaseDoc::from_automerge(doc)
                    .and_then(|d| d.read())
                    .map_err(|e| StoreError::Invalid(format!("case {id}: {e}")))?;
                let trusted = self.trusted_times(id)?;
                let facts =
                    crate::rates::CaseFacts::of(&case, &trusted, self.policy(), self.calendar());
                written += u64::from(self.db().fill_facts(&facts)?);
            }
        }
    }
}

/// The CSV header row.
pub const CSV_HEADER: &str = "统计周期,区域,承办单位,类别,指标,分子,分母,比率";

/// The report as CSV: one row per rate, Chinese headers, the rate in percent with two
/// decimals (empty when the denominator is 0).
pub fn to_csv(report: &Report) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for r in &report.rates {
        let rate = r
            .rate
            .map(|x| format!("{:.2}%", x * 100.0))
            .unwrap_or_default();
        let fields = [
            report.period.label.as_str(),
            if report.area.is_empty() {
                "全部"
            } else {
                &report.area
            },
            report.unit.as_deref().unwrap_or("全部"),
            report.category.as_deref().unwrap_or("全部"),
            r.name,
            &trim_number(r.numerator),
            &r.denominator.to_string(),
            &rate,
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out += &line.join(",");
        out.push('\n');
    }
    out
}

fn trim_number(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

/// Quotes a field that needs it, and defuses spreadsheet formulas (a unit named `=cmd|...`).
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
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
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=1+1"), "'=1+1");
        assert_eq!(csv_field("区水务集团"), "区水务集团");
    }
}
