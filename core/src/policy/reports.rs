//! The `[reports]` section: how long the report's lists are and when a category × area cell is
//! a hot spot (热点) or a burst (a candidate for a task force, 专班). Local practice varies and
//! domain.md gives no numbers, so these are policy with defaults a township can start from.

use serde::Deserialize;

/// The report's sizes and the hot-spot rule's parameters (server `report::hotspots`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsPolicy {
    /// How many categories and places the top lists show.
    pub top: u32,
    /// How many overdue and supervised cases the report lists (their totals are always given).
    pub listed_cases: u32,
    /// The baseline of a cell: its counts in this many previous periods of the same kind.
    pub baseline_periods: u32,
    /// A cell is hot only with at least this many cases in the period.
    pub hot_min_cases: u32,
    /// ... and when its count exceeds the baseline mean by this many standard deviations (a
    /// deviation under 1 counts as 1, so a flat baseline needs a real jump).
    pub hot_threshold: f64,
    /// A burst is counted in windows of this many consecutive days.
    pub burst_days: u32,
    /// A burst has at least this many cases of one category in one place within the window.
    pub burst_min_cases: u32,
    /// ... and at least this many times what the cell's baseline predicts for such a window.
    pub burst_ratio: f64,
}

impl Default for ReportsPolicy {
    fn default() -> Self {
        ReportsPolicy {
            top: 10,
            listed_cases: 100,
            baseline_periods: 6,
            hot_min_cases: 5,
            hot_threshold: 3.0,
            burst_days: 3,
            burst_min_cases: 5,
            burst_ratio: 3.0,
        }
    }
}

impl ReportsPolicy {
    /// Refuses values that would make the report empty, unbounded or meaningless.
    pub fn check(&self) -> Result<(), String> {
        let ranges: [(&str, u32, u32, u32); 6] = [
            ("top", self.top, 1, 1000),
            ("listed_cases", self.listed_cases, 0, 10_000),
            ("baseline_periods", self.baseline_periods, 1, 24),
            ("hot_min_cases", self.hot_min_cases, 1, 1_000_000),
            ("burst_days", self.burst_days, 1, 31),
            ("burst_min_cases", self.burst_min_cases, 2, 1_000_000),
        ];
        for (name, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                return Err(format!("{name} must be in {low}..={high}, got {value}"));
            }
        }
        for (name, value) in [
            ("hot_threshold", self.hot_threshold),
            ("burst_ratio", self.burst_ratio),
        ] {
            if !(value.is_finite() && (0.0..=100.0).contains(&value)) {
                return Err(format!("{name} must be in 0..=100, got {value}"));
            }
        }
        Ok(())
    }
}
