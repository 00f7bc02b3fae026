//! Reports for a period of the seeds' cadence (日交办、周汇总、半月研判、月通报) and an area
//! prefix: totals by type and channel, the assessment rates (`crate::rates`) with numerators and
//! denominators, the top categories and places, the overdue and supervised cases, the hot spots
//! and bursts (`hotspots`), each beside the previous period of the same kind. Everything is
//! counted by SQL over `case_facts` (`queries`), on both backends; exports are `tables` written
//! as CSV or XLSX with Chinese headers.

mod csv;
pub mod hotspots;
mod labels;
mod period;
pub mod queries;
mod tables;
mod xlsx;

use std::collections::BTreeMap;

use gridcase_core::model::{CaseType, Channel, Millis};
use serde::Serialize;

pub use self::csv::{CSV_HEADER, to_csv};
use self::hotspots::HotSpots;
pub use self::period::{CST_OFFSET_MS, DAY_MS, Period, PeriodKind, china_time};
use self::queries::{ListOrder, ListedCase};
pub use self::tables::{Cell, Table, tables};
pub use self::xlsx::{XLSX_CONTENT_TYPE, to_xlsx};
use crate::rates::{FactFilter, Rate, numerator_condition, rates_from_counts};
use crate::store::{Result, Store, StoreError};

/// A report: what it covers, its sections, and the same figures for the previous period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub period: Period,
    /// The period of the same kind just before (the change is against it).
    pub previous_period: Period,
    pub area: String,
    pub unit: Option<String>,
    pub category: Option<String>,
    /// The instant stages' clocks were judged at (for both periods).
    pub now: Millis,
    /// Cases registered in the period and area.
    pub cases: i64,
    pub previous_cases: i64,
    pub rates: Vec<Rate>,
    pub previous_rates: Vec<Rate>,
    /// Every case type, in `CaseType::ALL` order.
    pub by_type: Vec<Tally>,
    /// Every channel, in `Channel::ALL` order.
    pub by_channel: Vec<Tally>,
    /// The policy's `top` categories with most cases (ties by name).
    pub top_categories: Vec<Tally>,
    /// The policy's `top` places (full area codes) with most cases.
    pub top_areas: Vec<Tally>,
    /// The cases 超期率 counts (longest overdue first).
    pub overdue: CaseList,
    /// The cases with a supervision (督办).
    pub supervised: CaseList,
    pub hot_spots: HotSpots,
}

/// One line of a breakdown: a stored key, its printed name, this and the previous period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub key: String,
    pub name: String,
    pub count: i64,
    pub previous: i64,
}

/// A list of cases: how many there are, and the first of them (the policy's `listed_cases`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseList {
    pub total: i64,
    pub cases: Vec<ListedCase>,
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
    /// The totals of the cases registered in `period` as they stand at `now`: the per-day
    /// rollup, corrected for the cases whose stages still run (`crate::fact_days`).
    pub(crate) fn period_totals(
        &self,
        filter: &FactFilter,
        period: &Period,
        now: Millis,
    ) -> Result<queries::Totals> {
        let db = self.db();
        let mut totals = queries::decode_totals(&db.fact_rows(&queries::totals(filter, period))?);
        totals.add_deltas(&db.fact_rows(&queries::running_deltas(filter, period, now))?);
        Ok(totals)
    }

    /// The report for `query` at `now`, counted in the database.
    pub fn report(&self, query: &ReportQuery, now: Millis) -> Result<Report> {
        let period = Period::parse(&query.period).map_err(StoreError::Invalid)?;
        let previous = period
            .previous()
            .ok_or_else(|| StoreError::Invalid("no period before this one".into()))?;
        let filter = FactFilter {
            from: period.from,
            to: period.to,
            area: query.area.clone(),
            unit: query.unit.clone(),
            category: query.category.clone(),
        };
        filter.check().map_err(StoreError::Invalid)?;
        let db = self.db();
        let policy = &self.policy().reports;
        let (this, before) = (
            self.period_totals(&filter, &period, now)?,
            self.period_totals(&filter, &previous, now)?,
        );
        let periods = period.with_previous(policy.baseline_periods);
        let rows = db.fact_rows(&queries::cells(&filter, &periods))?;
        let (cells, baseline) = queries::decode_cells(&rows, &periods);
        let rates = rates_from_counts(&this.counts, self.policy());
        let list = |key: &str, order: ListOrder| -> Result<CaseList> {
            let cond = numerator_condition(key).expect("a rate of `crate::rates::RATES`");
            let query = queries::case_list(&filter, cond, order, policy.listed_cases, now);
            let total = rates
                .iter()
                .find(|r| r.key == key)
                .map_or(0.0, |r| r.numerator);
            Ok(CaseList {
                total: total as i64,
                cases: queries::decode_list(db.fact_rows(&query)?),
            })
        };
        let overdue = list("overdue", ListOrder::HandleDue)?;
        let supervised = list("supervised", ListOrder::Registered)?;
        let (categories, areas) = cell_totals(&cells);
        Ok(Report {
            previous_period: previous,
            area: query.area.clone(),
            unit: query.unit.clone(),
            category: query.category.clone(),
            now,
            cases: this.cases,
            previous_cases: before.cases,
            previous_rates: rates_from_counts(&before.counts, self.policy()),
            rates,
            by_type: tallies(&this.by_type, &before.by_type, labels::case_type),
            by_channel: tallies(&this.by_channel, &before.by_channel, labels::channel),
            top_categories: top(categories, policy.top),
            top_areas: top(areas, policy.top),
            overdue,
            supervised,
            hot_spots: hotspots::judge(&cells, &baseline, policy),
            period,
        })
    }
}

/// One line per key (in the query's order: the known values, then "" for any other), with
/// the previous period beside.
fn tallies(
    this: &BTreeMap<String, i64>,
    before: &BTreeMap<String, i64>,
    name: fn(&str) -> String,
) -> Vec<Tally> {
    let mut keys: Vec<&String> = this.keys().chain(before.keys()).collect();
    keys.sort_by_key(|k| (k.is_empty(), order_of(k)));
    keys.dedup();
    keys.into_iter()
        .map(|key| Tally {
            key: key.clone(),
            name: if key.is_empty() {
                "其他".into()
            } else {
                name(key)
            },
            count: this.get(key).copied().unwrap_or(0),
            previous: before.get(key).copied().unwrap_or(0),
        })
        .collect()
}

/// A stored type's or channel's place in `CaseType::ALL` / `Channel::ALL`.
fn order_of(key: &str) -> usize {
    let types = CaseType::ALL.iter().position(|t| t.as_str() == key);
    let channels = Channel::ALL.iter().position(|c| c.as_str() == key);
    types.or(channels).unwrap_or(usize::MAX)
}

/// This and the previous period's cases per category and per place.
fn cell_totals(
    cells: &BTreeMap<hotspots::Cell, hotspots::CellCounts>,
) -> (BTreeMap<String, [i64; 2]>, BTreeMap<String, [i64; 2]>) {
    let (mut categories, mut areas) = (BTreeMap::new(), BTreeMap::new());
    for ((category, area), counts) in cells {
        let both = [
            counts.total(),
            counts.baseline.first().copied().unwrap_or(0),
        ];
        for (map, key) in [(&mut categories, category), (&mut areas, area)] {
            let entry: &mut [i64; 2] = map.entry(key.clone()).or_default();
            entry[0] += both[0];
            entry[1] += both[1];
        }
    }
    (categories, areas)
}

/// The `n` keys with most cases this period (ties by key), leaving out those with none.
fn top(counts: BTreeMap<String, [i64; 2]>, n: u32) -> Vec<Tally> {
    let mut lines: Vec<Tally> = counts
        .into_iter()
        .filter(|(_, [count, _])| *count > 0)
        .map(|(key, [count, previous])| Tally {
            name: key.clone(),
            key,
            count,
            previous,
        })
        .collect();
    lines.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    lines.truncate(n as usize);
    lines
}

impl Store {
    /// Puts each listed case's complainant phone, unmasked, into `report`: for an admin whose
    /// role may reveal and whose jurisdiction covers the case, each case's reveal recorded in
    /// the audit log with `reason` (as `Store::reveal_as`, once per case). Returns how many
    /// cases were revealed.
    pub fn reveal_report_phones(
        &self,
        admin: &crate::admins::AdminCtx,
        report: &mut Report,
        reason: &str,
        now: Millis,
    ) -> Result<usize> {
        admin.require(crate::admins::Action::Reveal)?;
        let mut phones: BTreeMap<String, Option<String>> = BTreeMap::new();
        for list in [&mut report.overdue, &mut report.supervised] {
            for case in &mut list.cases {
                if !phones.contains_key(&case.case_id) {
                    let complainant = self.reveal_as(admin, &case.case_id, reason, now)?;
                    // "" when the case has no complainant's phone: asked, and none.
                    let phone = complainant.map(|c| c.phone).unwrap_or_default();
                    phones.insert(case.case_id.clone(), Some(phone));
                }
                case.phone = phones[&case.case_id].clone();
            }
        }
        Ok(phones.len())
    }

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
