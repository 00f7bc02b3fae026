//! The report's SQL over `case_facts` and its per-day rollup `case_fact_days`, written once for both backends (each gives its
//! placeholder spelling), and the decoding of its rows. Every query groups in the database and
//! returns at most a few rows per category, place, type or channel: no CRDT is loaded and no
//! per-case row leaves the database except the capped lists of overdue and supervised cases.

use std::collections::BTreeMap;

use gridcase_core::model::{CaseType, Channel, Millis};

use super::hotspots::{BaselinePeriod, Cell, CellCounts};
use super::period::Period;
use crate::db::{FactQuery, FactRow, Placeholder};
use crate::fact_days::{self, LATE_HANDLING, day_of, summed, where_days};
use crate::rates::{Cond, FactFilter, counted_conditions};

/// The filter of `base` (area, unit, category) over `from..to`.
fn over(base: &FactFilter, from: Millis, to: Millis) -> FactFilter {
    FactFilter {
        from,
        to,
        ..base.clone()
    }
}

/// Over `period`, from the per-day rollup (`crate::fact_days`): the number of cases, the
/// counts of `crate::rates::counted_conditions` once every clock has run out (add
/// [`running_deltas`] for `now`), then the cases of each `CaseType::ALL` and `Channel::ALL`.
pub fn totals(base: &FactFilter, period: &Period) -> impl Fn(Placeholder) -> FactQuery {
    let filter = base.clone();
    let days = (day_of(period.from), day_of(period.to));
    move |ph| {
        let is =
            |col: &str, value: &str| format!("CASE WHEN {col} = '{value}' THEN cases ELSE 0 END");
        let columns = summed(
            std::iter::once("cases".to_owned())
                .chain(fact_days::slots())
                .chain(CaseType::ALL.iter().map(|t| is("case_type", t.as_str())))
                .chain(Channel::ALL.iter().map(|c| is("channel", c.as_str()))),
        );
        let (where_sql, params) = where_days(&filter, days, ph);
        FactQuery {
            sql: format!(
                "SELECT {} FROM case_fact_days WHERE {where_sql}",
                columns.join(", ")
            ),
            params,
            texts: 0,
        }
    }
}

/// What [`totals`]' condition counts are off by at `now`: the cases of `period` whose stages
/// still run (`crate::fact_days::running_deltas`).
pub fn running_deltas(
    base: &FactFilter,
    period: &Period,
    now: Millis,
) -> impl Fn(Placeholder) -> FactQuery {
    let filter = over(base, period.from, period.to);
    move |ph| {
        let (sql, params) = fact_days::running_deltas(&filter, now, ph);
        FactQuery {
            sql,
            params,
            texts: 0,
        }
    }
}

/// The totals of one period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub cases: i64,
    /// `counted_conditions` counts.
    pub counts: Vec<i64>,
    /// Cases per stored case type (`CaseType::as_str`); others under "".
    pub by_type: BTreeMap<String, i64>,
    /// Cases per stored channel.
    pub by_channel: BTreeMap<String, i64>,
}

pub fn decode_totals(rows: &[FactRow]) -> Totals {
    let numbers: Vec<i64> = rows
        .first()
        .map(|r| r.numbers.iter().map(|n| n.unwrap_or(0)).collect())
        .unwrap_or_default();
    let mut next = numbers.into_iter();
    let cases = next.next().unwrap_or(0);
    let counts: Vec<i64> = counted_conditions()
        .iter()
        .map(|_| next.next().unwrap_or(0))
        .collect();
    let mut split = |keys: Vec<&str>| -> BTreeMap<String, i64> {
        let mut map: BTreeMap<String, i64> = keys
            .iter()
            .map(|k| ((*k).to_owned(), next.next().unwrap_or(0)))
            .collect();
        let known: i64 = map.values().sum();
        if cases > known {
            map.insert(String::new(), cases - known);
        }
        map
    };
    let by_type = split(CaseType::ALL.iter().map(|t| t.as_str()).collect());
    let by_channel = split(Channel::ALL.iter().map(|c| c.as_str()).collect());
    Totals {
        cases,
        counts,
        by_type,
        by_channel,
    }
}

impl Totals {
    /// Adds the row of [`running_deltas`] to the condition counts.
    pub fn add_deltas(&mut self, rows: &[FactRow]) {
        let Some(row) = rows.first() else { return };
        for (count, delta) in self.counts.iter_mut().zip(&row.numbers) {
            *count += delta.unwrap_or(0);
        }
    }
}

/// Per category, place and bucket: cases per day of `periods[0]` (bucket = day index ≥ 0) and
/// per earlier period (bucket −k for `periods[k]`). `periods` are adjacent, newest first.
pub fn cells(base: &FactFilter, periods: &[Period]) -> impl Fn(Placeholder) -> FactQuery {
    let oldest = periods.last().map_or(periods[0].from, |p| p.from);
    let days = (day_of(oldest), day_of(periods[0].to));
    let current = day_of(periods[0].from);
    let earlier: String = periods
        .iter()
        .enumerate()
        .skip(1)
        .map(|(k, p)| format!(" WHEN day >= {} THEN -{k}", day_of(p.from)))
        .collect();
    let filter = base.clone();
    move |ph| {
        let (where_sql, params) = where_days(&filter, days, ph);
        let sql = format!(
            "SELECT category, area_code,
                 CAST(CASE WHEN day >= {current} THEN day - {current}{earlier} END AS BIGINT),
                 CAST(SUM(cases) AS BIGINT)
             FROM case_fact_days WHERE {where_sql}
             GROUP BY category, area_code, 3 HAVING SUM(cases) > 0"
        );
        FactQuery {
            sql,
            params,
            texts: 2,
        }
    }
}

/// Every cell's counts, and the earlier periods as a baseline (whether anything was registered
/// in each).
pub fn decode_cells(
    rows: &[FactRow],
    periods: &[Period],
) -> (BTreeMap<Cell, CellCounts>, Vec<BaselinePeriod>) {
    let days = periods[0].days() as usize;
    let earlier = periods.len() - 1;
    let mut recorded = vec![false; earlier];
    let mut cells: BTreeMap<Cell, CellCounts> = BTreeMap::new();
    for row in rows {
        let (Some(bucket), Some(count)) = (row.numbers[0], row.numbers[1]) else {
            continue;
        };
        let counts = cells
            .entry((row.texts[0].clone(), row.texts[1].clone()))
            .or_insert_with(|| CellCounts {
                days: vec![0; days],
                baseline: vec![0; earlier],
            });
        if bucket >= 0 {
            if let Some(day) = counts.days.get_mut(bucket as usize) {
                *day += count;
            }
        } else if let Some(slot) = counts.baseline.get_mut((-bucket - 1) as usize) {
            *slot += count;
            recorded[(-bucket - 1) as usize] = true;
        }
    }
    let baseline = periods[1..]
        .iter()
        .zip(recorded)
        .map(|(p, recorded)| BaselinePeriod {
            days: p.days(),
            recorded,
        })
        .collect();
    (cells, baseline)
}

/// Which order a case list is in.
#[derive(Debug, Clone, Copy)]
pub enum ListOrder {
    /// Longest overdue first; only for cases late in handling (`fact_days::LATE_HANDLING`).
    HandleDue,
    /// Earliest registered first.
    Registered,
}

/// Up to `limit` cases of the period meeting `cond`, with their number and status from the
/// `cases` projection (no title, no complainant: nothing personal).
pub fn case_list(
    filter: &FactFilter,
    cond: &'static Cond,
    order: ListOrder,
    limit: u32,
    now: Millis,
) -> impl Fn(Placeholder) -> FactQuery {
    let filter = filter.clone();
    // A list by handle deadline is of cases late in handling (the overdue ones): saying so
    // lets the planner read the partial index of those cases.
    let (order, late) = match order {
        ListOrder::HandleDue => ("handle_due_at, case_id", format!(" AND {LATE_HANDLING}")),
        ListOrder::Registered => ("registered_at, case_id", String::new()),
    };
    move |ph| {
        let (where_sql, params) = filter.sql(ph);
        let sql = format!(
            "SELECT f.case_id, COALESCE(c.number, ''), f.area_code, f.category, f.unit,
                 COALESCE(c.status, ''), f.registered_at, f.handle_due_at, f.replied_at
             FROM (SELECT case_id, area_code, category, unit, registered_at, handle_due_at,
                       replied_at
                   FROM case_facts WHERE {where_sql} AND {}{late}
                   ORDER BY {order} LIMIT {limit}) f
             LEFT JOIN cases c ON c.case_id = f.case_id
             ORDER BY {}",
            cond.sql(now),
            order
                .split(", ")
                .map(|c| format!("f.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        FactQuery {
            sql,
            params,
            texts: 6,
        }
    }
}

/// A case of a report's list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListedCase {
    pub case_id: String,
    pub number: String,
    pub area: String,
    pub category: String,
    pub unit: String,
    pub status: String,
    pub registered_at: Millis,
    pub handle_due_at: Option<Millis>,
    pub replied_at: Option<Millis>,
    /// The complainant's phone, unmasked: only in a report whose admin asked for it with a
    /// reason, each case's reveal audited (`Store::reveal_report_phones`). Reports otherwise
    /// hold no complainant field at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

pub fn decode_list(rows: Vec<FactRow>) -> Vec<ListedCase> {
    rows.into_iter()
        .map(|row| {
            let mut t = row.texts.into_iter();
            let mut text = || t.next().unwrap_or_default();
            ListedCase {
                case_id: text(),
                number: text(),
                area: text(),
                category: text(),
                unit: text(),
                status: text(),
                registered_at: row.numbers[0].unwrap_or(0),
                handle_due_at: row.numbers[1],
                replied_at: row.numbers[2],
                phone: None,
            }
        })
        .collect()
}
