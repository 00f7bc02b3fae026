//! The report's SQL over `case_facts`, written once for both backends (each gives its
//! placeholder spelling), and the decoding of its rows. Every query groups in the database and
//! returns at most a few rows per category, place, type or channel: no CRDT is loaded and no
//! per-case row leaves the database except the capped lists of overdue and supervised cases.

use std::collections::BTreeMap;

use gridcase_core::model::Millis;

use super::hotspots::{Cell, CellCounts};
use super::period::{DAY_MS, Period};
use crate::db::{FactQuery, FactRow, Placeholder};
use crate::rates::{Cond, FactFilter, count_columns, counted_conditions};

/// The filter of `base` (area, unit, category) over `from..to`.
fn over(base: &FactFilter, from: Millis, to: Millis) -> FactFilter {
    FactFilter {
        from,
        to,
        ..base.clone()
    }
}

/// Per case type, channel and period (0: this one, 1: the one before): the number of cases and
/// the counts of `crate::rates::counted_conditions`.
pub fn totals(
    base: &FactFilter,
    periods: &[Period; 2],
    now: Millis,
) -> impl Fn(Placeholder) -> FactQuery {
    let filter = over(base, periods[1].from, periods[0].to);
    let current_from = periods[0].from;
    move |ph| {
        let (where_sql, params) = filter.sql(ph);
        let sql = format!(
            "SELECT case_type, channel,
                 CAST(CASE WHEN registered_at >= {current_from} THEN 0 ELSE 1 END AS BIGINT),
                 CAST(COUNT(*) AS BIGINT), {}
             FROM case_facts WHERE {where_sql} GROUP BY case_type, channel, 3",
            count_columns(now).join(", ")
        );
        FactQuery {
            sql,
            params,
            texts: 2,
        }
    }
}

/// Totals of one period and the one before, per type and channel, with the rates' counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Cases per period ([this, previous]).
    pub cases: [i64; 2],
    pub by_type: BTreeMap<String, [i64; 2]>,
    pub by_channel: BTreeMap<String, [i64; 2]>,
    /// `counted_conditions` counts per period.
    pub counts: [Vec<i64>; 2],
}

pub fn decode_totals(rows: &[FactRow]) -> Totals {
    let n = counted_conditions().len();
    let mut totals = Totals {
        counts: [vec![0; n], vec![0; n]],
        ..Totals::default()
    };
    for row in rows {
        let number = |i: usize| row.numbers.get(i).copied().flatten().unwrap_or(0);
        let period = usize::from(number(0) != 0);
        let cases = number(1);
        totals.cases[period] += cases;
        totals.by_type.entry(row.texts[0].clone()).or_default()[period] += cases;
        totals.by_channel.entry(row.texts[1].clone()).or_default()[period] += cases;
        for (i, count) in totals.counts[period].iter_mut().enumerate() {
            *count += number(2 + i);
        }
    }
    totals
}

/// Per category, place and bucket: cases per day of `periods[0]` (bucket = day index ≥ 0) and
/// per earlier period (bucket −k for `periods[k]`). `periods` are adjacent, newest first.
pub fn cells(base: &FactFilter, periods: &[Period]) -> impl Fn(Placeholder) -> FactQuery {
    let oldest = periods.last().map_or(periods[0].from, |p| p.from);
    let filter = over(base, oldest, periods[0].to);
    let current = periods[0].from;
    let earlier: String = periods
        .iter()
        .enumerate()
        .skip(1)
        .map(|(k, p)| format!(" WHEN registered_at >= {} THEN -{k}", p.from))
        .collect();
    move |ph| {
        let (where_sql, params) = filter.sql(ph);
        let sql = format!(
            "SELECT category, area_code,
                 CAST(CASE WHEN registered_at >= {current}
                     THEN (registered_at - {current}) / {DAY_MS}{earlier} END AS BIGINT),
                 CAST(COUNT(*) AS BIGINT)
             FROM case_facts WHERE {where_sql} GROUP BY category, area_code, 3"
        );
        FactQuery {
            sql,
            params,
            texts: 2,
        }
    }
}

/// Every cell's counts, and per earlier period whether anything was registered in it.
pub fn decode_cells(
    rows: &[FactRow],
    periods: &[Period],
) -> (BTreeMap<Cell, CellCounts>, Vec<bool>) {
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
    (cells, recorded)
}

/// Which order a case list is in.
#[derive(Debug, Clone, Copy)]
pub enum ListOrder {
    /// Longest overdue first.
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
    let order = match order {
        ListOrder::HandleDue => "handle_due_at, case_id",
        ListOrder::Registered => "registered_at, case_id",
    };
    move |ph| {
        let (where_sql, params) = filter.sql(ph);
        let sql = format!(
            "SELECT f.case_id, COALESCE(c.number, ''), f.area_code, f.category, f.unit,
                 COALESCE(c.status, ''), f.registered_at, f.handle_due_at, f.replied_at
             FROM (SELECT case_id, area_code, category, unit, registered_at, handle_due_at,
                       replied_at
                   FROM case_facts WHERE {where_sql} AND {}
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
            }
        })
        .collect()
}
