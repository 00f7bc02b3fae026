//! Hot spots (热点): category × place cells whose count is unusual against their own recent
//! baseline, and bursts of one category in one place within a few days (candidates for a task
//! force, 专班). Pure functions over counts that the database grouped; the parameters are the
//! policy's `[reports]` section (`ReportsPolicy`), so the rule lives here once:
//!
//! - Baseline: the cell's counts in the previous `baseline_periods` periods of the same kind.
//!   Periods in which nothing at all was registered (within the report's filter) are before
//!   the records began and are left out; with none left, nothing is judged.
//! - Hot: count ≥ `hot_min_cases` and (count − mean) ÷ max(stddev, 1) ≥ `hot_threshold`.
//! - Burst: the busiest window of `burst_days` consecutive days (clipped to the period) with
//!   ≥ `burst_min_cases` cases and ≥ `burst_ratio` × the baseline's cases per such window.

use std::collections::BTreeMap;

use gridcase_core::policy::ReportsPolicy;
use serde::Serialize;

/// One cell's counts: in the period per day, and in each baseline period (newest first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CellCounts {
    /// Cases per day of the period (index 0 is the first day).
    pub days: Vec<i64>,
    /// Cases per baseline period, `baseline[0]` the period just before.
    pub baseline: Vec<i64>,
}

impl CellCounts {
    pub fn total(&self) -> i64 {
        self.days.iter().sum()
    }
}

/// What the baseline periods were: their length in days and whether anything was recorded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaselinePeriod {
    pub days: i64,
    /// Any case at all (in the report's filter) was registered in it.
    pub recorded: bool,
}

/// A (category, area code) cell.
pub type Cell = (String, String);

/// A cell counted unusually often.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HotCell {
    pub category: String,
    pub area: String,
    pub count: i64,
    pub baseline_mean: f64,
    pub baseline_stddev: f64,
    /// (count − mean) ÷ max(stddev, 1).
    pub score: f64,
}

/// A burst: the busiest window of a cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Burst {
    pub category: String,
    pub area: String,
    /// Index of the window's first day in the period (0 = the period's first day).
    pub first_day: i64,
    /// Days in the window (the policy's `burst_days`, clipped to the period).
    pub days: i64,
    pub count: i64,
    /// What the baseline predicts for a window this long.
    pub expected: f64,
}

/// The hot spots of a period and how they were judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HotSpots {
    /// Baseline periods that counted (recorded ones among the policy's `baseline_periods`).
    pub baseline_periods: usize,
    pub cells: Vec<HotCell>,
    pub bursts: Vec<Burst>,
}

/// Judges every cell; results are sorted (most unusual first, then by category and area), so
/// the same counts always give the same report.
pub fn judge(
    cells: &BTreeMap<Cell, CellCounts>,
    baseline: &[BaselinePeriod],
    policy: &ReportsPolicy,
) -> HotSpots {
    let used: Vec<usize> = (0..baseline.len())
        .filter(|&i| baseline[i].recorded)
        .collect();
    let mut hot = Vec::new();
    let mut bursts = Vec::new();
    if !used.is_empty() {
        let baseline_days: i64 = used.iter().map(|&i| baseline[i].days).sum();
        for ((category, area), counts) in cells {
            let history: Vec<f64> = used
                .iter()
                .map(|&i| counts.baseline.get(i).copied().unwrap_or(0) as f64)
                .collect();
            if let Some(cell) = hot_cell(counts.total(), &history, policy) {
                hot.push(HotCell {
                    category: category.clone(),
                    area: area.clone(),
                    ..cell
                });
            }
            let per_day = history.iter().sum::<f64>() / baseline_days.max(1) as f64;
            if let Some(burst) = busiest_window(&counts.days, per_day, policy) {
                bursts.push(Burst {
                    category: category.clone(),
                    area: area.clone(),
                    ..burst
                });
            }
        }
    }
    hot.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.count.cmp(&a.count)));
    bursts.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.first_day.cmp(&b.first_day))
            .then_with(|| (&a.category, &a.area).cmp(&(&b.category, &b.area)))
    });
    HotSpots {
        baseline_periods: used.len(),
        cells: hot,
        bursts,
    }
}

fn hot_cell(count: i64, history: &[f64], policy: &ReportsPolicy) -> Option<HotCell> {
    let n = history.len() as f64;
    let mean = history.iter().sum::<f64>() / n;
    let variance = history.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let stddev = variance.sqrt();
    let score = (count as f64 - mean) / stddev.max(1.0);
    (count >= i64::from(policy.hot_min_cases) && score >= policy.hot_threshold).then(|| HotCell {
        category: String::new(),
        area: String::new(),
        count,
        baseline_mean: mean,
        baseline_stddev: stddev,
        score,
    })
}

/// The earliest of the windows with the most cases, if it is a burst.
fn busiest_window(days: &[i64], per_day: f64, policy: &ReportsPolicy) -> Option<Burst> {
    let width = (policy.burst_days as usize).min(days.len()).max(1);
    let (first_day, count) = days
        .windows(width)
        .map(|w| w.iter().sum::<i64>())
        .enumerate()
        .fold(
            (0, i64::MIN),
            |best, (i, sum)| {
                if sum > best.1 { (i, sum) } else { best }
            },
        );
    let expected = per_day * width as f64;
    let burst =
        count >= i64::from(policy.burst_min_cases) && count as f64 >= policy.burst_ratio * expected;
    burst.then(|| Burst {
        category: String::new(),
        area: String::new(),
        first_day: first_day as i64,
        days: width as i64,
        count,
        expected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn month(recorded: bool) -> BaselinePeriod {
        BaselinePeriod { days: 30, recorded }
    }

    fn cell(category: &str, area: &str) -> Cell {
        (category.into(), area.into())
    }

    /// `per_day` cases every day of a 30-day period, plus `extra` on the given days.
    fn counts(per_day: i64, extra: &[(usize, i64)], baseline: &[i64]) -> CellCounts {
        let mut days = vec![per_day; 30];
        for &(d, n) in extra {
            days[d] += n;
        }
        CellCounts {
            days,
            baseline: baseline.to_vec(),
        }
    }

    #[test]
    fn a_cell_far_above_its_own_baseline_is_hot_and_a_busy_steady_one_is_not() {
        let policy = ReportsPolicy::default();
        let mut cells = BTreeMap::new();
        // Steadily busy: 60 a month, every month. Not hot however large.
        cells.insert(cell("供水", "330604101001"), counts(2, &[], &[60, 58, 62]));
        // Usually ~10, now 40 spread over the month: hot, but no burst.
        let spread: Vec<(usize, i64)> = (0..30).step_by(3).map(|d| (d, 3)).collect();
        cells.insert(
            cell("噪音", "330604101002"),
            counts(0, &spread, &[9, 11, 10]),
        );
        // Few cases: below hot_min_cases even against an empty baseline.
        cells.insert(
            cell("绿化", "330604101003"),
            counts(0, &[(4, 4)], &[0, 0, 0]),
        );
        let spots = judge(&cells, &[month(true); 3], &policy);
        let hot: Vec<&str> = spots.cells.iter().map(|c| c.area.as_str()).collect();
        assert_eq!(hot, ["330604101002"]);
        let noise = &spots.cells[0];
        assert_eq!((noise.count, noise.baseline_mean), (30, 10.0));
        assert!(spots.bursts.is_empty(), "{:?}", spots.bursts);
        assert_eq!(spots.baseline_periods, 3);
    }

    #[test]
    fn a_few_days_of_one_category_in_one_place_is_a_burst() {
        let policy = ReportsPolicy::default();
        let mut cells = BTreeMap::new();
        // About one case every three days as usual, then 7 on days 10-12 (停车 on one street).
        let quiet: Vec<(usize, i64)> = (0..30).step_by(3).map(|d| (d, 1)).collect();
        let mut busy = counts(0, &quiet, &[10, 10]);
        busy.days[11] += 3;
        busy.days[12] += 3;
        cells.insert(cell("停车", "330604101004"), busy);
        // The same seven cases spread over the month: no burst.
        let spread: Vec<(usize, i64)> = (0..28).step_by(4).map(|d| (d, 1)).collect();
        cells.insert(cell("停车", "330604101005"), counts(0, &spread, &[10, 10]));
        let spots = judge(&cells, &[month(true); 2], &policy);
        assert_eq!(spots.bursts.len(), 1, "{:?}", spots.bursts);
        let burst = &spots.bursts[0];
        assert_eq!(burst.area, "330604101004");
        // Days 10..=12 hold 0 + 3 + 4 (day 12 had its usual one); 11..=13 as many, later.
        assert_eq!((burst.first_day, burst.days, burst.count), (10, 3, 7));
        assert!((burst.expected - 1.0).abs() < 1e-9);
    }

    #[test]
    fn periods_before_the_records_began_are_not_a_baseline() {
        let policy = ReportsPolicy::default();
        let mut cells = BTreeMap::new();
        cells.insert(cell("供水", "330604101001"), counts(1, &[], &[0, 0]));
        // Nothing was recorded before: nothing is judged.
        let spots = judge(&cells, &[month(false), month(false)], &policy);
        assert_eq!(
            spots,
            HotSpots {
                baseline_periods: 0,
                cells: vec![],
                bursts: vec![]
            }
        );
        // One recorded period in which this cell had nothing: 30 against 0 is hot.
        let spots = judge(&cells, &[month(true), month(false)], &policy);
        assert_eq!((spots.baseline_periods, spots.cells.len()), (1, 1));
    }

    #[test]
    fn the_parameters_come_from_the_policy() {
        let mut cells = BTreeMap::new();
        cells.insert(cell("噪音", "330604101002"), counts(0, &[(3, 6)], &[2, 2]));
        let strict = ReportsPolicy {
            hot_threshold: 5.0,
            burst_min_cases: 7,
            ..ReportsPolicy::default()
        };
        let spots = judge(&cells, &[month(true); 2], &ReportsPolicy::default());
        assert_eq!((spots.cells.len(), spots.bursts.len()), (1, 1));
        let spots = judge(&cells, &[month(true); 2], &strict);
        assert_eq!((spots.cells.len(), spots.bursts.len()), (0, 0));
    }

    #[test]
    fn a_window_longer_than_the_period_is_clipped() {
        let policy = ReportsPolicy::default();
        let burst = busiest_window(&[6], 0.1, &policy).unwrap();
        assert_eq!((burst.first_day, burst.days, burst.count), (0, 1, 6));
    }
}
