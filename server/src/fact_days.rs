//! `case_fact_days`: `case_facts` summed per China-time day of registration, place, category,
//! handling unit, type and channel, so that a report reads O(days × places × categories …)
//! rows instead of one row per case (a month of 1,000,000 cases: BENCHMARKS.md).
//!
//! Each rollup row holds the number of cases and, per [`counted_conditions`] entry, how many of
//! them meet it **once every stage's clock has run out** (`now` = [`SETTLED`]). The report's
//! `now` changes a case's counts only while one of its stages is still running (due later than
//! `now`, step not taken: [`RUNNING_UNTIL`] > `now`); those few cases are read from
//! `case_facts` and their difference added ([`running_deltas`]). The test
//! `running_cases_are_the_only_ones_now_changes` holds the rates to that.
//!
//! The rollup is kept in the transaction that writes the facts row: subtract the old row's
//! contribution ([`subtract_sql`]), write the row, add the new one ([`add_sql`]). Its columns
//! follow [`counted_conditions`], so the SQL that fills it is fingerprinted in `settings`
//! ([`FINGERPRINT_KEY`]); a server whose conditions differ from the stored fingerprint
//! rebuilds the rollup from `case_facts` when it opens the database ([`rebuild_sql`]). All SQL
//! here is written once for both backends.

use gridcase_core::model::Millis;

use crate::db::Placeholder;
use crate::rates::{CaseFacts, FactFilter, counted_conditions};
use crate::report::DAY_MS;

/// Condition columns of `case_fact_days` (`c0` …): SQLite schema step 9, PostgreSQL step "6"
/// (schema version 5: that file's first string holds its steps 1 and 2).
/// A change in the number of counted conditions needs a schema step (the test
/// `the_rollup_has_a_column_per_counted_condition` says so).
pub const SLOTS: usize = 19;

/// The `now` the rollup's counts are taken at: after every deadline.
pub const SETTLED: Millis = Millis::MAX;

/// The `settings` key holding the fingerprint of the SQL the rollup was filled with.
pub const FINGERPRINT_KEY: &str = "case_fact_days";

/// The China-time day index of `registered_at` (periods start at China midnight, UTC+8): the
/// SQL of [`day_of`].
const DAY: &str = "(registered_at + 28800000) / 86400000";

/// The rollup's key columns besides `day`.
const KEY: &str = "area_code, category, unit, case_type, channel";

/// The latest deadline of a stage still running (set, step not taken), NULL if none. A case is
/// running at `now` when this is later than `now`. Spelt identically in the expression index
/// `case_facts_running` (SQLite step 9, PostgreSQL step "6", schema version 5), so both planners use it.
pub const RUNNING_UNTIL: &str = "(CASE WHEN handle_due_at IS NOT NULL AND replied_at IS NULL \
     AND (response_due_at IS NULL OR responded_at IS NOT NULL OR response_due_at <= handle_due_at) \
     THEN handle_due_at WHEN response_due_at IS NOT NULL AND responded_at IS NULL \
     THEN response_due_at END)";

/// A case late in handling: a handle deadline, and no reply or a reply after it. Every case
/// 超期率 counts is one (`overdue_cases_are_late_in_handling`), so the overdue list adds this
/// to its condition, spelt as the partial index `case_facts_late` (SQLite step 9, PostgreSQL
/// step "6") is, and reads that index instead of the period's every row.
pub const LATE_HANDLING: &str =
    "handle_due_at IS NOT NULL AND (replied_at IS NULL OR replied_at > handle_due_at)";

/// The Rust twin of [`RUNNING_UNTIL`].
pub fn running_until(f: &CaseFacts) -> Option<Millis> {
    let pending = |due: Option<Millis>, done: Option<Millis>| due.filter(|_| done.is_none());
    let response = pending(f.response_due_at, f.responded_at);
    let handle = pending(f.handle_due_at, f.replied_at);
    response.max(handle)
}

/// The counted conditions of one case at [`SETTLED`], as `c0, c1, …` expressions (0 or 1).
fn settled_flags() -> Vec<String> {
    counted_conditions()
        .iter()
        .map(|c| format!("CASE WHEN {} THEN 1 ELSE 0 END", c.sql(SETTLED)))
        .collect()
}

/// The condition columns' names, `c0` to `c{SLOTS - 1}`.
pub fn slots() -> Vec<String> {
    (0..SLOTS).map(|i| format!("c{i}")).collect()
}

/// Subtracts the stored facts row of the case (parameter 1) from its rollup row; run before
/// the facts row changes. Nothing happens for a case without a row.
pub fn subtract_sql(ph: Placeholder) -> String {
    let sets: Vec<String> = slots()
        .iter()
        .map(|c| format!("{c} = case_fact_days.{c} - o.{c}"))
        .collect();
    let flags: Vec<String> = settled_flags()
        .iter()
        .zip(slots())
        .map(|(f, c)| format!("{f} AS {c}"))
        .collect();
    let key_match: Vec<String> = std::iter::once("day")
        .chain(KEY.split(", "))
        .map(|k| format!("case_fact_days.{k} = o.{k}"))
        .collect();
    format!(
        "UPDATE case_fact_days SET cases = case_fact_days.cases - 1, {}
         FROM (SELECT {DAY} AS day, {KEY}, {} FROM case_facts WHERE case_id = {}) AS o
         WHERE {}",
        sets.join(", "),
        flags.join(", "),
        ph(1),
        key_match.join(" AND ")
    )
}

/// Adds the stored facts row of the case (parameter 1) to its rollup row; run after the facts
/// row is written.
pub fn add_sql(ph: Placeholder) -> String {
    let sets: Vec<String> = std::iter::once("cases".to_owned())
        .chain(slots())
        .map(|c| format!("{c} = case_fact_days.{c} + excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO case_fact_days (day, {KEY}, cases, {})
         SELECT {DAY}, {KEY}, 1, {} FROM case_facts WHERE case_id = {}
         ON CONFLICT (day, {KEY}) DO UPDATE SET {}",
        slots().join(", "),
        settled_flags().join(", "),
        ph(1),
        sets.join(", ")
    )
}

/// Empties the rollup and fills it from `case_facts` (two statements).
pub fn rebuild_sql() -> [String; 2] {
    let sums: Vec<String> = settled_flags()
        .iter()
        .map(|f| format!("SUM({f})"))
        .collect();
    [
        "DELETE FROM case_fact_days".to_owned(),
        format!(
            "INSERT INTO case_fact_days (day, {KEY}, cases, {})
             SELECT {DAY}, {KEY}, COUNT(*), {} FROM case_facts GROUP BY {DAY}, {KEY}",
            slots().join(", "),
            sums.join(", ")
        ),
    ]
}

/// What the stored fingerprint must equal for the rollup to be current.
pub fn fingerprint() -> String {
    crate::store::sha256_hex(rebuild_sql()[1].as_bytes())
}

/// Whether a database whose stored fingerprint is `stored` needs its rollup rebuilt: it was
/// filled for other conditions, or the database has facts and no fingerprint (upgraded from
/// before the rollup). An empty database is left alone (moving up copies into an empty one).
pub fn needs_rebuild(stored: Option<&str>, any_facts: bool) -> bool {
    match stored {
        Some(stored) => stored != fingerprint(),
        None => any_facts,
    }
}

/// The rollup's day of an instant: its China-time day index ([`DAY`] in Rust). A period's
/// bounds are China midnights, so its cases are those of days `day_of(from)..day_of(to)`.
pub fn day_of(at: Millis) -> i64 {
    (at + crate::report::CST_OFFSET_MS).div_euclid(DAY_MS)
}

/// The WHERE clause over `case_fact_days` for `filter`'s days, area, unit and category.
pub fn where_days(
    filter: &FactFilter,
    (from, to): (i64, i64),
    ph: Placeholder,
) -> (String, Vec<String>) {
    filter.sql_over(format!("day >= {from} AND day < {to}"), ph)
}

/// The sum of each rollup column over `where_sql`, as `CAST(COALESCE(SUM(col), 0) AS BIGINT)`.
pub fn summed(columns: impl IntoIterator<Item = String>) -> Vec<String> {
    columns
        .into_iter()
        .map(|c| format!("CAST(COALESCE(SUM({c}), 0) AS BIGINT)"))
        .collect()
}

/// Per counted condition, its count at `now` minus its count at [`SETTLED`] over the cases of
/// `filter` still running at `now` (what the rollup's counts are off by).
pub fn running_deltas(filter: &FactFilter, now: Millis, ph: Placeholder) -> (String, Vec<String>) {
    let (where_sql, params) = filter.sql(ph);
    let deltas: Vec<String> = counted_conditions()
        .iter()
        .map(|c| {
            format!(
                "CAST(COALESCE(SUM(CASE WHEN {} THEN 1 ELSE 0 END), 0) - \
                 COALESCE(SUM(CASE WHEN {} THEN 1 ELSE 0 END), 0) AS BIGINT)",
                c.sql(now),
                c.sql(SETTLED)
            )
        })
        .collect();
    (
        format!(
            "SELECT {} FROM case_facts WHERE {RUNNING_UNTIL} > {now} AND {where_sql}",
            deltas.join(", ")
        ),
        params,
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::rates::{Col, Cond};

    #[test]
    fn the_rollup_has_a_column_per_counted_condition() {
        assert_eq!(
            counted_conditions().len(),
            SLOTS,
            "the counted conditions changed in number: add a schema step giving \
             case_fact_days one column c<i> per condition, and change SLOTS"
        );
    }

    #[test]
    fn the_sql_day_is_the_rust_day() {
        let offset = crate::report::CST_OFFSET_MS;
        assert_eq!(DAY, format!("(registered_at + {offset}) / {DAY_MS}"));
        // 2026-11-01 00:00 China time starts a day; a millisecond before ends the one before.
        let november = crate::report::Period::parse("2026-11").unwrap().from;
        assert_eq!(day_of(november), day_of(november - 1) + 1);
        assert_eq!(day_of(november), day_of(november + DAY_MS - 1));
    }

    #[test]
    fn the_running_index_is_spelt_as_the_queries_spell_it() {
        let sqlite = crate::db::sqlite::schema::MIGRATIONS;
        let postgres = crate::db::postgres::schema::MIGRATIONS;
        for steps in [sqlite, postgres] {
            let step = steps
                .iter()
                .find(|s| s.contains("CREATE INDEX case_facts_running"))
                .expect("a step creates the index");
            let squeezed = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(squeezed(step).contains(&squeezed(RUNNING_UNTIL)), "{step}");
            assert!(
                squeezed(step).contains(&format!("WHERE {LATE_HANDLING};")),
                "{step}"
            );
        }
    }

    /// [`RUNNING_UNTIL`] watches these deadlines; a condition reading another one against
    /// `now` would need it watched too.
    #[test]
    fn only_the_watched_deadlines_are_read_against_now() {
        fn passed_cols(c: &Cond, out: &mut Vec<Col>) {
            match c {
                Cond::Passed(col) => out.push(*col),
                Cond::Not(c) => passed_cols(c, out),
                Cond::All(cs) | Cond::Any(cs) => cs.iter().for_each(|c| passed_cols(c, out)),
                _ => {}
            }
        }
        let mut cols = Vec::new();
        counted_conditions()
            .into_iter()
            .for_each(|c| passed_cols(c, &mut cols));
        assert!(!cols.is_empty());
        for col in cols {
            assert!(
                [Col::ResponseDueAt, Col::HandleDueAt].contains(&col),
                "{col:?} is read against `now` but RUNNING_UNTIL does not watch it"
            );
        }
    }

    fn time() -> impl Strategy<Value = Option<Millis>> {
        prop_oneof![Just(None), (0i64..20).prop_map(Some)]
    }

    proptest! {
        /// A case not running at `now` counts the same at `now` as after every deadline, so
        /// the rollup plus the running cases' deltas are the rates at `now`; and every case
        /// 超期率 counts is late in handling ([`LATE_HANDLING`], the overdue list's index).
        #[test]
        fn running_cases_are_the_only_ones_now_changes(
            dispatched in time(), response_due in time(), responded in time(),
            handle_due in time(), replied in time(), closed in time(),
            flags in 0u8..32, satisfaction in prop_oneof![Just(None), (0i64..3).prop_map(Some)],
            now in 0i64..20,
        ) {
            let f = CaseFacts {
                dispatched_at: dispatched,
                response_due_at: response_due,
                responded_at: responded,
                handle_due_at: handle_due,
                replied_at: replied,
                closed_at: closed,
                returned: flags & 1 != 0,
                duplicate: flags & 2 != 0,
                followed_up: flags & 4 != 0,
                solved: flags & 8 != 0,
                supervised: flags & 16 != 0,
                satisfaction,
                ..CaseFacts::default()
            };
            let overdue = crate::rates::numerator_condition("overdue").unwrap();
            if overdue.holds(&f, now) {
                let late = f.handle_due_at.is_some_and(|due| f.replied_at.is_none_or(|r| r > due));
                prop_assert!(late, "an overdue case is late in handling: {:?}", f);
            }
            if running_until(&f).is_none_or(|until| until <= now) {
                for c in counted_conditions() {
                    prop_assert_eq!(c.holds(&f, now), c.holds(&f, SETTLED), "{:?}", c);
                }
            }
        }
    }
}
