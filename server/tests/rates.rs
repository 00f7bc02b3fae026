//! The assessment rates counted in the database equal a recomputation from the case documents,
//! on both backends; the `report` command writes them as CSV with Chinese headers.

use std::collections::BTreeMap;

use gridcase_core::doc::CaseDoc;
use gridcase_core::model::{Case, Millis, Satisfaction, Status};
use gridcase_server::Store;
use gridcase_server::db::Location;
use gridcase_server::demo;
use gridcase_server::fact_days::running_until;
use gridcase_server::rates::{CaseFacts, FactFilter, count_in, rates_from_counts};
use gridcase_server::report::{CSV_HEADER, DAY_MS, Period, ReportQuery, hotspots};
use gridcase_server::testing::{Backend, TestDb};

/// 2026-11-28 10:00 China time.
const NOW: Millis = 1_795_831_200_000;

/// Every stored case, read from its document, with its facts recomputed from the document and
/// the trusted times.
fn documents(store: &Store) -> Vec<(Case, CaseFacts)> {
    let all = FactFilter {
        from: Millis::MIN,
        to: Millis::MAX,
        ..FactFilter::default()
    };
    let ids = store.db().fact_case_ids(&all).unwrap();
    ids.iter()
        .map(|id| {
            let doc = store.load_doc(id).unwrap().expect("stored");
            let case = CaseDoc::from_automerge(doc).unwrap().read().unwrap();
            let trusted = store.trusted_times(id).unwrap();
            let facts = CaseFacts::of(&case, &trusted, store.policy(), store.calendar());
            (case, facts)
        })
        .collect()
}

fn queries() -> Vec<ReportQuery> {
    let q = |period: &str, area: &str, unit: Option<&str>| ReportQuery {
        period: period.into(),
        area: area.into(),
        unit: unit.map(Into::into),
        category: None,
    };
    vec![
        q("2026-11", "", None),
        q("2026-11", "330604101", None),
        q("2026-11-H2", "3306", Some("区水务集团")),
        q("2026-W47", "", None),
        q("2026-11-27", "", None),
        q("2026-10", "", None),
    ]
}

fn sql_rates_equal_a_recomputation_from_the_documents(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.open();
    let made = demo::fill(&store, 400, 11, NOW).unwrap();
    let docs = documents(&store);
    assert_eq!(docs.len(), made.cases_created as usize);
    let facts: Vec<CaseFacts> = docs.iter().map(|(_, f)| f.clone()).collect();
    for query in queries() {
        let report = store.report(&query, NOW).unwrap();
        let period = Period::parse(&query.period).unwrap();
        let filter = FactFilter {
            from: period.from,
            to: period.to,
            area: query.area.clone(),
            unit: query.unit.clone(),
            category: None,
        };
        let expected = rates_from_counts(&count_in(&facts, &filter, NOW), store.policy());
        assert_eq!(report.rates, expected, "{query:?}");
        // The report reads a rollup taken after every deadline and corrects it for the cases
        // still running: judged earlier or later, it still agrees.
        for now in [NOW - 2 * DAY_MS, NOW + 20 * DAY_MS] {
            let expected = rates_from_counts(&count_in(&facts, &filter, now), store.policy());
            let report = store.report(&query, now).unwrap();
            assert_eq!(report.rates, expected, "{query:?} at {now}");
        }
        // Independently of the shared definitions: closed, follow-up and satisfaction counts
        // straight from the documents.
        let covered: Vec<&Case> = docs
            .iter()
            .filter(|(_, f)| filter.covers(f))
            .map(|(c, _)| c)
            .collect();
        assert_eq!(report.cases, covered.len() as i64);
        let rate = |key: &str| report.rates.iter().find(|r| r.key == key).unwrap().clone();
        let closed = covered
            .iter()
            .filter(|c| c.status == Status::Closed)
            .count();
        assert_eq!(rate("completion").numerator, closed as f64, "{query:?}");
        let followed: Vec<_> = covered
            .iter()
            .filter_map(|c| c.follow_up.as_ref())
            .collect();
        let satisfied = followed
            .iter()
            .map(|f| match f.satisfaction {
                Satisfaction::Satisfied | Satisfaction::BasicallySatisfied => 1.0,
                Satisfaction::Dissatisfied => 0.0,
            })
            .sum::<f64>();
        assert_eq!(rate("satisfaction").denominator, followed.len() as i64);
        assert_eq!(rate("satisfaction").numerator, satisfied);
    }
    // Some cases' stages are still running at NOW (the rollup alone would miscount them).
    assert!(
        facts
            .iter()
            .any(|f| running_until(f).is_some_and(|until| until > NOW))
    );
    // The month is not vacuous: every kind of count has cases.
    let month = store.report(&queries()[0], NOW).unwrap();
    for key in [
        "response",
        "on_time",
        "completion",
        "resolution",
        "satisfaction",
        "overdue",
    ] {
        let r = month.rates.iter().find(|r| r.key == key).unwrap();
        assert!(r.denominator > 0 && r.numerator > 0.0, "{key}: {r:?}");
    }
}

/// Counts per key of the cases in `cases`, as [this period, previous period].
fn tally<'a>(
    this: &[&'a Case],
    before: &[&'a Case],
    key: impl Fn(&Case) -> String,
) -> BTreeMap<String, [i64; 2]> {
    let mut counts: BTreeMap<String, [i64; 2]> = BTreeMap::new();
    for (i, cases) in [this, before].iter().enumerate() {
        for case in cases.iter() {
            counts.entry(key(case)).or_default()[i] += 1;
        }
    }
    counts
}

/// The demo data's month report, section by section, against counts made here from the case
/// documents (types, channels, categories, places and supervisions straight from each `Case`;
/// the overdue list from the facts' times with plain comparisons).
fn the_demo_month_report_is_recomputed_from_the_documents(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.open();
    demo::fill(&store, 300, 21, NOW).unwrap();
    // The server's deadline check supervises the overdue stages (督办), as a running server does.
    gridcase_server::deadlines::run_deadline_check(&store, NOW).unwrap();
    let docs = documents(&store);
    let report = store.report(&queries()[0], NOW).unwrap();
    let (month, october) = (
        Period::parse("2026-11").unwrap(),
        Period::parse("2026-10").unwrap(),
    );
    let within = |p: &Period| -> Vec<(&Case, &CaseFacts)> {
        docs.iter()
            .filter(|(_, f)| f.registered_at >= p.from && f.registered_at < p.to)
            .map(|(c, f)| (c, f))
            .collect()
    };
    let (this, before) = (within(&month), within(&october));
    assert!(
        !this.is_empty() && !before.is_empty(),
        "the demo spans both months"
    );
    assert_eq!(
        (report.cases, report.previous_cases),
        (this.len() as i64, before.len() as i64)
    );
    let this_cases: Vec<&Case> = this.iter().map(|(c, _)| *c).collect();
    let before_cases: Vec<&Case> = before.iter().map(|(c, _)| *c).collect();
    let breakdowns = [
        (
            &report.by_type,
            tally(&this_cases, &before_cases, |c| c.case_type.to_string()),
        ),
        (
            &report.by_channel,
            tally(&this_cases, &before_cases, |c| c.channel.to_string()),
        ),
    ];
    for (lines, expected) in breakdowns {
        for line in lines {
            let [count, previous] = expected.get(&line.key).copied().unwrap_or_default();
            assert_eq!((line.count, line.previous), (count, previous), "{line:?}");
        }
        assert_eq!(lines.iter().map(|l| l.count).sum::<i64>(), report.cases);
    }
    let top = store.policy().reports.top as usize;
    let ranked = |counts: BTreeMap<String, [i64; 2]>| {
        let mut lines: Vec<(String, i64, i64)> = counts
            .into_iter()
            .filter(|(_, [n, _])| *n > 0)
            .map(|(k, [n, p])| (k, n, p))
            .collect();
        lines.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        lines.truncate(top);
        lines
    };
    let shown = |lines: &[gridcase_server::report::Tally]| -> Vec<(String, i64, i64)> {
        lines
            .iter()
            .map(|l| (l.key.clone(), l.count, l.previous))
            .collect()
    };
    let categories = tally(&this_cases, &before_cases, |c| c.category.clone());
    assert_eq!(shown(&report.top_categories), ranked(categories));
    let places = tally(&this_cases, &before_cases, |c| c.location.area_code.clone());
    assert_eq!(shown(&report.top_areas), ranked(places));
    // Supervised: a supervision in the document.
    let mut supervised: Vec<(Millis, &str)> = this
        .iter()
        .filter(|(c, _)| !c.supervisions.is_empty())
        .map(|(c, f)| (f.registered_at, c.id.as_str()))
        .collect();
    supervised.sort();
    assert!(!supervised.is_empty());
    assert_eq!(report.supervised.total, supervised.len() as i64);
    let listed: Vec<&str> = report
        .supervised
        .cases
        .iter()
        .map(|c| c.case_id.as_str())
        .collect();
    let limit = store.policy().reports.listed_cases as usize;
    let expected: Vec<&str> = supervised.iter().take(limit).map(|(_, id)| *id).collect();
    assert_eq!(listed, expected);
    // Overdue: the handling deadline passed (or the reply came) and no reply by it.
    let mut overdue: Vec<(Millis, &str)> = this
        .iter()
        .filter_map(|(c, f)| {
            let due = f.handle_due_at?;
            let judged = due <= NOW || f.replied_at.is_some();
            let on_time = f.replied_at.is_some_and(|at| at <= due);
            (judged && !on_time).then_some((due, c.id.as_str()))
        })
        .collect();
    overdue.sort();
    assert!(!overdue.is_empty());
    assert_eq!(report.overdue.total, overdue.len() as i64);
    let listed: Vec<&str> = report
        .overdue
        .cases
        .iter()
        .map(|c| c.case_id.as_str())
        .collect();
    let expected: Vec<&str> = overdue.iter().take(limit).map(|(_, id)| *id).collect();
    assert_eq!(listed, expected);
    for listed in &report.overdue.cases {
        let (case, _) = this.iter().find(|(c, _)| c.id == listed.case_id).unwrap();
        assert_eq!(
            (&listed.number, &listed.status),
            (&case.number, &case.status.to_string())
        );
    }
    // The previous month's rates, and the hot spots from cells counted here.
    let october_filter = FactFilter {
        from: october.from,
        to: october.to,
        ..FactFilter::default()
    };
    let facts: Vec<CaseFacts> = docs.iter().map(|(_, f)| f.clone()).collect();
    let expected = rates_from_counts(&count_in(&facts, &october_filter, NOW), store.policy());
    assert_eq!(report.previous_rates, expected);
    assert_eq!(
        report.hot_spots,
        hot_spots_of(&docs, &month, store.policy())
    );
}

/// The hot spots of `period` judged on cells counted from the documents.
fn hot_spots_of(
    docs: &[(Case, CaseFacts)],
    period: &Period,
    policy: &gridcase_core::policy::PolicySet,
) -> hotspots::HotSpots {
    let periods = period.with_previous(policy.reports.baseline_periods);
    let mut cells: BTreeMap<hotspots::Cell, hotspots::CellCounts> = BTreeMap::new();
    let mut recorded = vec![false; periods.len() - 1];
    for (case, facts) in docs {
        let Some(k) = periods
            .iter()
            .position(|p| p.from <= facts.registered_at && facts.registered_at < p.to)
        else {
            continue;
        };
        let cell = cells
            .entry((case.category.clone(), case.location.area_code.clone()))
            .or_insert_with(|| hotspots::CellCounts {
                days: vec![0; period.days() as usize],
                baseline: vec![0; periods.len() - 1],
            });
        if k == 0 {
            cell.days[((facts.registered_at - period.from) / DAY_MS) as usize] += 1;
        } else {
            cell.baseline[k - 1] += 1;
            recorded[k - 1] = true;
        }
    }
    let baseline: Vec<hotspots::BaselinePeriod> = periods[1..]
        .iter()
        .zip(recorded)
        .map(|(p, recorded)| hotspots::BaselinePeriod {
            days: p.days(),
            recorded,
        })
        .collect();
    hotspots::judge(&cells, &baseline, &policy.reports)
}

fn bad_report_queries_are_refused(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.open();
    for (period, area) in [
        ("2026-13", ""),
        ("2026-11", "33'"),
        ("2026-11", "3306041012011"),
    ] {
        let query = ReportQuery {
            period: period.into(),
            area: area.into(),
            ..ReportQuery::default()
        };
        assert!(store.report(&query, NOW).is_err(), "{period} {area}");
    }
    // A unit name is a bound parameter, whatever it holds.
    let query = ReportQuery {
        period: "2026-11".into(),
        unit: Some("x' OR 1=1 --".into()),
        ..ReportQuery::default()
    };
    assert_eq!(store.report(&query, NOW).unwrap().cases, 0);
}

fn the_report_command_writes_csv_with_chinese_headers(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.open();
    demo::fill(&store, 120, 5, NOW).unwrap();
    let expected = store
        .report(
            &ReportQuery {
                period: "2026-11".into(),
                area: "330604".into(),
                ..ReportQuery::default()
            },
            NOW,
        )
        .unwrap();
    let out = db.dir().join("report.csv");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gridcase-server"));
    cmd.args([
        "report", "--period", "2026-11", "--area", "330604", "--format", "csv",
    ])
    .args(["--at", "2026-11-28T10:00:00+08:00", "--out"])
    .arg(&out);
    match db.location() {
        Location::Sqlite(dir) => cmd.arg("--data").arg(dir),
        Location::Postgres(url) => cmd.args(["--database", url]),
    };
    let status = cmd.status().unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    // A byte-order mark for spreadsheet programs, then the sections; the rates are the second.
    let text = text.strip_prefix('\u{feff}').expect("a byte-order mark");
    let section = text.split("\n\n").nth(1).unwrap();
    let mut lines = section.lines();
    assert_eq!(lines.next(), Some("考核指标"));
    assert_eq!(lines.next(), Some(CSV_HEADER));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), expected.rates.len());
    for (row, rate) in rows.iter().zip(&expected.rates) {
        assert_eq!(row[0], rate.name);
        assert_eq!(row[1].parse::<f64>().unwrap(), rate.numerator);
        assert_eq!(row[2].parse::<i64>().unwrap(), rate.denominator);
    }
    let response = rows.iter().find(|r| r[0] == "响应率").unwrap();
    assert!(response[3].ends_with('%'), "{response:?}");
    assert!(
        text.starts_with("概况\n项目,内容\n统计周期,2026-11\n"),
        "{text}"
    );
    assert!(text.contains("\n区域,330604\n"), "{text}");
    assert!(!text.contains("来电人电话"), "no phones unless asked");
    // The listed cases' phones, for a named admin that may reveal, with a reason.
    gridcase_server::testing::root_admin(&store);
    let with = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gridcase-server"));
        cmd.args(["report", "--period", "2026-11", "--area", "330604"])
            .args([
                "--format",
                "csv",
                "--at",
                "2026-11-28T10:00:00+08:00",
                "--out",
            ])
            .arg(&out)
            .args(extra);
        match db.location() {
            Location::Sqlite(dir) => cmd.arg("--data").arg(dir),
            Location::Postgres(url) => cmd.args(["--database", url]),
        };
        cmd.output().unwrap().status.success()
    };
    assert!(
        !with(&["--reveal-phones-by", "root"]),
        "a reason is required"
    );
    assert!(!with(&["--reveal-phones-by", "nobody", "--reason", "核查"]));
    assert_eq!(store.audit_count("reveal").unwrap(), 0);
    assert!(with(&["--reveal-phones-by", "root", "--reason", "核查"]));
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .contains("来电人电话")
    );
    assert!(store.audit_count("reveal").unwrap() > 0);
}

async fn get(app: &axum::Router, uri: &str, token: Option<&str>) -> (u16, String) {
    use tower::ServiceExt;
    let mut req = axum::http::Request::get(uri);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(req.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn the_admin_report_route_needs_the_admin_token(backend: Backend) {
    gridcase_server::testing::run_async(move || admin_report_route(backend))
}

async fn admin_report_route(backend: Backend) {
    let gridcase_server::testing::AdminApp {
        store,
        token: admin,
        app,
        db: _db,
    } = gridcase_server::testing::admin_app(backend, 80, 3, NOW);
    let uri = "/admin/report?period=2026-11&area=330604";
    assert_eq!(get(&app, uri, None).await.0, 401);
    let (status, body) = get(&app, uri, Some(&admin)).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let query = ReportQuery {
        period: "2026-11".into(),
        area: "330604".into(),
        ..ReportQuery::default()
    };
    // Through text both ways, as the response went (floats parse to the same nearest value).
    let text = serde_json::to_string(&store.report(&query, NOW).unwrap()).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json, expected);
    let (status, csv) = get(&app, &format!("{uri}&format=csv"), Some(&admin)).await;
    assert_eq!(status, 200);
    assert!(csv.contains(CSV_HEADER), "{csv}");
    for bad in [
        "/admin/report?period=2026-13",
        "/admin/report?period=2026-11&area=33x",
        "/admin/report?period=2026-11&format=pdf",
        "/admin/report",
    ] {
        assert_eq!(get(&app, bad, Some(&admin)).await.0, 400, "{bad}");
    }
}

/// Empties `case_facts` and its rollup, as a database upgraded from before they existed has
/// them.
fn clear_facts(db: &TestDb) {
    db.execute("DELETE FROM case_facts; DELETE FROM case_fact_days");
}

/// A database from before the rollup (its facts written, the rollup step not applied) gets the
/// step and a filled rollup when a server opens it; so does one whose rollup was filled for
/// other conditions (its fingerprint differs).
fn an_upgraded_database_gets_its_rollup_on_opening(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.open();
    demo::fill(&store, 150, 9, NOW).unwrap();
    let expected: Vec<_> = queries()
        .iter()
        .map(|q| store.report(q, NOW).unwrap())
        .collect();
    drop(store);
    let back_a_step = match backend {
        // Back before the rollup's step (and the blob tables' and stated times' steps after
        // it).
        Backend::Sqlite => "PRAGMA user_version = 8;",
        Backend::Postgres => "DELETE FROM schema_version WHERE version >= 5;",
    };
    db.execute(&format!(
        "DROP TABLE case_fact_days; DROP INDEX case_facts_running;
             DROP INDEX case_facts_supervised; DROP INDEX case_facts_late;
             DELETE FROM settings WHERE key = 'case_fact_days';
             DROP TABLE blobs; DROP TABLE case_blobs;
             ALTER TABLE event_times DROP COLUMN stated;
             {back_a_step}"
    ));
    let store = db.open();
    let reports: Vec<_> = queries()
        .iter()
        .map(|q| store.report(q, NOW).unwrap())
        .collect();
    assert_eq!(reports, expected);
    drop(store);
    db.execute(
        "UPDATE settings SET value = 'older conditions' WHERE key = 'case_fact_days';
         UPDATE case_fact_days SET c0 = c0 + 5, cases = cases + 1;",
    );
    let store = db.open();
    assert_eq!(store.report(&queries()[0], NOW).unwrap(), expected[0]);
}

fn backfill_gives_cases_from_before_the_upgrade_their_facts(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.open();
    let made = demo::fill(&store, 150, 9, NOW).unwrap();
    let query = &queries()[0];
    let before = store.report(query, NOW).unwrap();
    assert!(before.cases > 0);
    clear_facts(&db);
    assert_eq!(store.report(query, NOW).unwrap().cases, 0);
    assert_eq!(
        store.backfill_facts().unwrap(),
        u64::from(made.cases_created)
    );
    assert_eq!(store.report(query, NOW).unwrap(), before);
    assert_eq!(store.backfill_facts().unwrap(), 0);
}

/// A generated case of the benchmark: its facts row's columns.
struct BenchCase {
    id: String,
    at: Millis,
    area: String,
    /// Dispatched, response due, responded, handle due, replied, closed.
    times: [Option<Millis>; 6],
    duplicate: i64,
    followed_up: i64,
    solved: i64,
    satisfaction: Option<i64>,
    category: &'static str,
    case_type: &'static str,
    channel: &'static str,
}

/// 1,000,000 cases registered in `month` and 200,000 in the month before, over 80 places, 5
/// categories, 3 types and 3 channels, each stopped at one of 5 steps (deterministic).
fn bench_cases(month: &Period) -> impl Iterator<Item = BenchCase> + '_ {
    let mut x: u64 = 7;
    (0..1_200_000i64).map(move |i| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = (x >> 33) as i64;
        let span = month.to - month.from;
        let at = if i < 1_000_000 {
            month.from + r % span
        } else {
            month.from - 1 - r % span
        };
        let step = |k: i64| (r % 5 >= k).then_some(at + k * 3_600_000);
        BenchCase {
            id: format!("c{i:08}"),
            at,
            area: format!("3306041{:02}{:03}", 1 + r % 4, r % 20),
            times: [
                step(1),
                step(1).map(|t| t + 8 * 3_600_000),
                step(2),
                step(2).map(|t| t + 2 * 86_400_000),
                step(3),
                step(4),
            ],
            duplicate: i64::from(r % 97 == 0),
            followed_up: i64::from(r % 5 >= 4),
            solved: i64::from(r % 7 != 0),
            satisfaction: (r % 5 >= 4).then_some(r % 3),
            category: ["供水", "噪音", "停车", "环境卫生", "道路"][(r % 5) as usize],
            case_type: ["complaint", "help", "inquiry"][(r % 3) as usize],
            channel: ["hotline", "grid", "web"][(r % 7 % 3) as usize],
        }
    })
}

/// BENCHMARKS.md, "Assessment rates": a month of 1,000,000 cases (plus 200,000 in the month
/// before) on the embedded database. Run with `cargo test -p gridcase-server --test rates --
/// --ignored --nocapture`.
#[test]
#[ignore = "a benchmark: 1.2 million rows"]
fn a_month_of_a_million_cases_is_counted_in_under_a_second() {
    let db = TestDb::new(Backend::Sqlite);
    let store = db.open();
    let Location::Sqlite(dir) = db.location() else {
        unreachable!()
    };
    let path = dir.join(gridcase_server::db::sqlite::DB_FILE);
    let month = Period::parse("2026-11").unwrap();
    let mut conn = rusqlite::Connection::open(path).unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO case_facts VALUES (?1, ?2, ?3, ?14, '区水务集团', ?4, ?5, ?6, ?7,
                     ?8, ?9, 0, ?10, ?11, ?12, ?13, 0, ?15, ?16)",
            )
            .unwrap();
        for c in bench_cases(&month) {
            let [
                dispatched,
                response_due,
                responded,
                handle_due,
                replied,
                closed,
            ] = c.times;
            insert
                .execute(rusqlite::params![
                    c.id,
                    c.at,
                    c.area,
                    dispatched,
                    response_due,
                    responded,
                    handle_due,
                    replied,
                    closed,
                    c.duplicate,
                    c.followed_up,
                    c.solved,
                    c.satisfaction,
                    c.category,
                    c.case_type,
                    c.channel,
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
    time_the_month_report(&store, &month);
}

/// The same benchmark on PostgreSQL (`GRIDCASE_TEST_PG`): `cargo test -p gridcase-server
/// --test rates postgres_month -- --ignored --nocapture`. Not held to the 1 s target (the
/// issue sets it for the embedded database); it prints its times.
#[test]
#[ignore = "a benchmark: 1.2 million rows"]
fn a_postgres_month_of_a_million_cases() {
    let db = TestDb::new(Backend::Postgres);
    let store = db.open();
    let Location::Postgres(url) = db.location() else {
        unreachable!()
    };
    let month = Period::parse("2026-11").unwrap();
    let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    let mut copy = client.copy_in("COPY case_facts FROM STDIN").unwrap();
    let text = |v: Option<Millis>| v.map_or("\\N".to_owned(), |v| v.to_string());
    for c in bench_cases(&month) {
        let times: Vec<String> = c.times.into_iter().map(text).collect();
        let line = format!(
            "{}\t{}\t{}\t{}\t区水务集团\t{}\t0\t{}\t{}\t{}\t{}\t0\t{}\t{}\n",
            c.id,
            c.at,
            c.area,
            c.category,
            times.join("\t"),
            c.duplicate,
            c.followed_up,
            c.solved,
            text(c.satisfaction),
            c.case_type,
            c.channel,
        );
        std::io::Write::write_all(&mut copy, line.as_bytes()).unwrap();
    }
    copy.finish().unwrap();
    client.batch_execute("ANALYZE case_facts").unwrap();
    time_the_month_report_without_target(&store, &month);
}

fn time_the_month_report(store: &Store, month: &Period) {
    let took = time_the_month_report_without_target(store, month);
    assert!(took < std::time::Duration::from_secs(1), "{took:?}");
}

/// Fills the rollup (the facts went around the store, as an upgraded server finds them), then
/// times the month report at `NOW` and prints its parts; returns the report's time.
fn time_the_month_report_without_target(store: &Store, month: &Period) -> std::time::Duration {
    let month = month.clone();
    let started = std::time::Instant::now();
    store.db().rebuild_fact_days().unwrap();
    println!(
        "rollup rebuilt from 1.2 million facts: {:?}",
        started.elapsed()
    );
    let query = ReportQuery {
        period: "2026-11".into(),
        area: "330604".into(),
        ..ReportQuery::default()
    };
    store.report(&query, NOW).unwrap(); // warm the page cache, as a running server has it
    let started = std::time::Instant::now();
    let report = store.report(&query, NOW).unwrap();
    let took = started.elapsed();
    println!("month report over {} cases: {took:?}", report.cases);
    // Its parts, to see where the time goes (the rates alone were the whole report before).
    let filter = FactFilter {
        from: month.from,
        to: month.to,
        area: "330604".into(),
        ..FactFilter::default()
    };
    let time = |name: &str, run: &dyn Fn()| {
        let started = std::time::Instant::now();
        run();
        println!("  {name}: {:?}", started.elapsed());
    };
    use gridcase_server::report::queries;
    let periods = month.with_previous(store.policy().reports.baseline_periods);
    time("rates only", &|| {
        drop(store.db().rate_counts(&filter, NOW).unwrap())
    });
    time("totals from the rollup", &|| {
        drop(
            store
                .db()
                .fact_rows(&queries::totals(&filter, &month))
                .unwrap(),
        )
    });
    time("running cases' deltas", &|| {
        let deltas = queries::running_deltas(&filter, &month, NOW);
        drop(store.db().fact_rows(&deltas).unwrap())
    });
    time("cells", &|| {
        drop(
            store
                .db()
                .fact_rows(&queries::cells(&filter, &periods))
                .unwrap(),
        )
    });
    let overdue = gridcase_server::rates::numerator_condition("overdue").unwrap();
    let list = queries::case_list(&filter, overdue, queries::ListOrder::HandleDue, 100, NOW);
    time("overdue list", &|| {
        drop(store.db().fact_rows(&list).unwrap())
    });
    let supervised = gridcase_server::rates::numerator_condition("supervised").unwrap();
    let list = queries::case_list(
        &filter,
        supervised,
        queries::ListOrder::Registered,
        100,
        NOW,
    );
    time("supervised list", &|| {
        drop(store.db().fact_rows(&list).unwrap())
    });
    // The console's overview (issue 12): this report, today's count and five more months'
    // rates. Its deadline lists read the `cases` projection, empty here (W4 measures them).
    let county = gridcase_core::area::Jurisdiction::parse("330604").unwrap();
    let role = gridcase_server::admins::AdminRole::Supervisor;
    store
        .add_admin("bench", role, &county, None, &mut rand::rng(), 0)
        .unwrap();
    let admin = store.admin_ctx("bench").unwrap();
    time("console overview", &|| {
        drop(store.overview_for(&admin, NOW, Some("2026-11")).unwrap())
    });
    assert_eq!(report.cases, 1_000_000);
    took
}

gridcase_server::backend_tests!(
    sql_rates_equal_a_recomputation_from_the_documents,
    the_demo_month_report_is_recomputed_from_the_documents,
    bad_report_queries_are_refused,
    the_report_command_writes_csv_with_chinese_headers,
    the_admin_report_route_needs_the_admin_token,
    backfill_gives_cases_from_before_the_upgrade_their_facts,
    an_upgraded_database_gets_its_rollup_on_opening,
);
