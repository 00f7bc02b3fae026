//! What the console's overview page shows an admin at a glance (issue 12): today's new cases,
//! the due-soon and overdue counts, this month's rates beside the months before (the trend),
//! and the month's hot spots and top lists. Everything comes from the projections and
//! `case_facts` the reports count (`crate::report`), never from loading case documents, and
//! only inside the admin's jurisdiction.

use chrono::{DateTime, FixedOffset};
use gridcase_core::area::Jurisdiction;
use gridcase_core::model::Millis;
use serde::Serialize;

use crate::admins::{Action, AdminCtx};
use crate::rates::numerator_condition;
use crate::rates::{FactFilter, Rate, rates_from_counts};
use crate::report::queries::{ListOrder, case_list, decode_list};
use crate::report::{Period, PeriodKind, Report, ReportQuery};
use crate::store::{CaseSummary, Result, Store, StoreError};

/// Months shown in the rates' trend (this one included).
pub const TREND_MONTHS: u32 = 6;
/// The deadline lists are counted up to this many cases; beyond, the overview says "at
/// least" (the lists' own pages show them all, page by page, up to the same cap).
pub const LIST_CAP: u32 = 10_000;

/// A count that may have stopped at [`LIST_CAP`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CappedCount {
    pub count: usize,
    /// The count reached the cap: there may be more.
    pub capped: bool,
}

/// One month of the trend: its label and its rates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendPoint {
    pub period: String,
    pub cases: i64,
    pub rates: Vec<Rate>,
}

/// The overview of an admin's jurisdiction at an instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    pub at: Millis,
    /// The jurisdiction as the admin was given it (`*` everywhere).
    pub jurisdiction: String,
    /// Today (China time) and the cases registered so far today.
    pub today: String,
    pub today_cases: i64,
    pub overdue: CappedCount,
    pub due_soon: CappedCount,
    /// This month's report: rates with the previous month's, top lists, hot spots.
    pub month: Report,
    /// The rates of the last [`TREND_MONTHS`] months, oldest first.
    pub trend: Vec<TrendPoint>,
}

/// The China-time calendar day and month of `at` (`2026-11-28`, `2026-11`).
pub fn china_day_and_month(at: Millis) -> (String, String) {
    let china = FixedOffset::east_opt(8 * 3600).expect("a valid offset");
    let t = DateTime::from_timestamp_millis(at)
        .unwrap_or_default()
        .with_timezone(&china);
    (
        t.format("%Y-%m-%d").to_string(),
        t.format("%Y-%m").to_string(),
    )
}

fn capped(cases: &[CaseSummary]) -> CappedCount {
    CappedCount {
        count: cases.len(),
        capped: cases.len() >= LIST_CAP as usize,
    }
}

impl Store {
    /// The overview for `admin` at `at` (see the module doc), with the rates, trend and hot
    /// spots of `month` (`2026-11`; default the month of `at`: early in a month, the desk
    /// looks back at the month before).
    pub fn overview_for(
        &self,
        admin: &AdminCtx,
        at: Millis,
        month: Option<&str>,
    ) -> Result<Overview> {
        admin.require(Action::View)?;
        let area = admin.jurisdiction.as_prefix().to_owned();
        let (day, this_month) = china_day_and_month(at);
        let month = month.map_or(this_month, str::to_owned);
        if !matches!(Period::parse(&month), Ok(p) if p.kind == PeriodKind::Month) {
            return Err(StoreError::Invalid(format!(
                "`{}` is not a month such as 2026-11",
                crate::audit::bounded(&month)
            )));
        }
        let filter = FactFilter {
            from: 0,
            to: 0,
            area: area.clone(),
            unit: None,
            category: None,
        };
        let today = Period::parse(&day).map_err(StoreError::Invalid)?;
        let today_cases = self.period_totals(&filter, &today, at)?.cases;
        let report = self.report(
            &ReportQuery {
                period: month.clone(),
                area,
                ..Default::default()
            },
            at,
        )?;
        let current = Period::parse(&month).map_err(StoreError::Invalid)?;
        // The report counted this month and the one before: only the older months are counted
        // here (each is a scan of its month's rows).
        let mut trend = vec![
            TrendPoint {
                period: report.period.label.clone(),
                cases: report.cases,
                rates: report.rates.clone(),
            },
            TrendPoint {
                period: report.previous_period.label.clone(),
                cases: report.previous_cases,
                rates: report.previous_rates.clone(),
            },
        ];
        for period in current.with_previous(TREND_MONTHS - 1).into_iter().skip(2) {
            let (cases, rates) = self.period_rates(&filter, &period, at)?;
            trend.push(TrendPoint {
                period: period.label,
                cases,
                rates,
            });
        }
        trend.reverse();
        let within = &admin.jurisdiction;
        Ok(Overview {
            at,
            jurisdiction: within.as_given().to_owned(),
            today: day,
            today_cases,
            overdue: capped(&self.overdue_within(within, at, LIST_CAP)?),
            due_soon: capped(&self.due_soon_within(within, at, LIST_CAP)?),
            month: report,
            trend,
        })
    }

    /// The cases registered in `period` and their rates, counted in the database.
    fn period_rates(
        &self,
        filter: &FactFilter,
        period: &Period,
        at: Millis,
    ) -> Result<(i64, Vec<Rate>)> {
        let counted = self.period_totals(filter, period, at)?;
        Ok((
            counted.cases,
            rates_from_counts(&counted.counts, self.policy()),
        ))
    }

    /// One page of a deadline list (`overdue` or `due_soon`) for the console: the cases
    /// inside `admin`'s jurisdiction, narrowed to `filter`, up to [`LIST_CAP`] in all.
    pub fn console_list(
        &self,
        admin: &AdminCtx,
        filter: &ListFilter,
        at: Millis,
    ) -> Result<ListPage> {
        admin.require(Action::View)?;
        let within = match filter.area.as_deref().filter(|a| !a.is_empty()) {
            Some(area) => {
                admin.require_covers(area)?;
                Jurisdiction::parse(area).map_err(|e| StoreError::Invalid(e.to_string()))?
            }
            None => admin.jurisdiction.clone(),
        };
        let all = match filter.list {
            DeadlineList::Overdue => self.overdue_within(&within, at, LIST_CAP)?,
            DeadlineList::DueSoon => self.due_soon_within(&within, at, LIST_CAP)?,
            DeadlineList::Supervised => self.open_supervised(&within, at)?,
        };
        let capped = all.len() >= LIST_CAP as usize;
        let mut categories: Vec<String> = all.iter().map(|c| c.category.clone()).collect();
        let mut units: Vec<String> = all.iter().map(|c| c.responsible_unit.clone()).collect();
        for names in [&mut categories, &mut units] {
            names.retain(|n| !n.is_empty());
            names.sort();
            names.dedup();
        }
        let wanted = |value: &str, asked: &Option<String>| {
            asked.as_deref().is_none_or(|a| a.is_empty() || a == value)
        };
        let matching: Vec<CaseSummary> = all
            .into_iter()
            .filter(|c| wanted(&c.category, &filter.category))
            .filter(|c| wanted(&c.responsible_unit, &filter.unit))
            .collect();
        let size = filter.size.clamp(1, MAX_PAGE_SIZE) as usize;
        let pages = matching.len().div_ceil(size).max(1);
        let page = (filter.page.max(1) as usize).min(pages);
        let mut cases: Vec<CaseSummary> = matching
            .iter()
            .skip((page - 1) * size)
            .take(size)
            .cloned()
            .collect();
        if filter.list == DeadlineList::Supervised {
            // The facts carry no title or stage: the page's rows get their full summary.
            for case in &mut cases {
                if let Some(full) = self.case_summary(&case.case_id)? {
                    *case = full;
                }
            }
        }
        Ok(ListPage {
            at,
            total: matching.len(),
            capped,
            page,
            pages,
            cases,
            categories,
            units,
        })
    }
}

impl Store {
    /// Open cases with a supervision (督办) inside `within`, earliest registered first, up to
    /// [`LIST_CAP`] (from `case_facts`, as the report's supervised list; titles and stages are
    /// filled in for the page shown).
    fn open_supervised(&self, within: &Jurisdiction, at: Millis) -> Result<Vec<CaseSummary>> {
        let filter = FactFilter {
            from: 0,
            to: at + 1,
            area: within.as_prefix().to_owned(),
            unit: None,
            category: None,
        };
        let cond = numerator_condition("supervised").expect("a rate of `crate::rates::RATES`");
        let query = case_list(&filter, cond, ListOrder::Registered, LIST_CAP, at);
        let finished = ["closed", "merged", "not_accepted"];
        Ok(decode_list(self.db().fact_rows(&query)?)
            .into_iter()
            .filter(|c| !finished.contains(&c.status.as_str()))
            .map(|c| CaseSummary {
                case_id: c.case_id,
                number: c.number,
                title: String::new(),
                category: c.category,
                status: c.status,
                urgency: String::new(),
                area_code: c.area,
                assignee: String::new(),
                responsible_unit: c.unit,
                stage: None,
                stage_started_at: None,
                due_at: c.handle_due_at,
                due_provisional: false,
                calendar_version: String::new(),
            })
            .collect())
    }
}

/// The most cases on one page of a console list.
pub const MAX_PAGE_SIZE: u32 = 200;

/// Which deadline list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineList {
    Overdue,
    DueSoon,
    /// Open cases with a supervision (督办件).
    Supervised,
}

/// What a console list page asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    pub list: DeadlineList,
    /// An area prefix inside the admin's jurisdiction; `None` or "" is all of it.
    pub area: Option<String>,
    pub category: Option<String>,
    pub unit: Option<String>,
    /// 1-based; past the end is the last page.
    pub page: u32,
    pub size: u32,
}

/// One page of a console list, with the filter choices of the whole list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListPage {
    pub at: Millis,
    /// Cases matching the filter (of at most [`LIST_CAP`] looked at).
    pub total: usize,
    /// The list reached [`LIST_CAP`] before filtering: there may be more.
    pub capped: bool,
    pub page: usize,
    pub pages: usize,
    pub cases: Vec<CaseSummary>,
    /// The categories and units of the list, for the filters' choices.
    pub categories: Vec<String>,
    pub units: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_day_and_month_cross_midnight_at_16_utc() {
        // 2026-11-30 15:59:59 UTC is 23:59:59 in China; a second later it is December.
        let before = 1_796_054_399_000;
        assert_eq!(
            china_day_and_month(before),
            ("2026-11-30".into(), "2026-11".into())
        );
        assert_eq!(
            china_day_and_month(before + 1000),
            ("2026-12-01".into(), "2026-12".into())
        );
    }
}
