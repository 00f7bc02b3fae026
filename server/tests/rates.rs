//! The assessment rates counted in the database equal a recomputation from the case documents,
//! on both backends; the `report` command writes them as CSV with Chinese headers.

use gridcase_core::doc::CaseDoc;
use gridcase_core::model::{Case, Millis, Satisfaction, Status};
use gridcase_server::Store;
use gridcase_server::db::Location;
use gridcase_server::demo;
use gridcase_server::rates::{CaseFacts, FactFilter, count_in, rates_from_counts};
use gridcase_server::report::{CSV_HEADER, Period, ReportQuery};
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
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(CSV_HEADER));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), expected.rates.len());
    for (row, rate) in rows.iter().zip(&expected.rates) {
        assert_eq!(row[0], "2026-11");
        assert_eq!(row[1], "330604");
        assert_eq!(row[4], rate.name);
        assert_eq!(row[5].parse::<f64>().unwrap(), rate.numerator);
        assert_eq!(row[6].parse::<i64>().unwrap(), rate.denominator);
    }
    let response = rows.iter().find(|r| r[4] == "响应率").unwrap();
    assert!(response[7].ends_with('%'), "{response:?}");
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
    use std::sync::Arc;
    let db = TestDb::new(backend);
    let store = Arc::new(db.open());
    demo::fill(&store, 80, 3, NOW).unwrap();
    let admin = gridcase_server::testing::root_admin(&store);
    let app = gridcase_server::app(
        gridcase_server::AppState::new(store.clone()).with_clock(Arc::new(|| NOW)),
    );
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
    assert!(csv.starts_with(CSV_HEADER), "{csv}");
    for bad in [
        "/admin/report?period=2026-13",
        "/admin/report?period=2026-11&area=33x",
        "/admin/report?period=2026-11&format=xlsx",
        "/admin/report",
    ] {
        assert_eq!(get(&app, bad, Some(&admin)).await.0, 400, "{bad}");
    }
}

/// Empties `case_facts`, as a database upgraded from before it existed has it.
fn clear_facts(db: &TestDb) {
    match db.location() {
        Location::Sqlite(dir) => {
            let path = dir.join(gridcase_server::db::sqlite::DB_FILE);
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.execute("DELETE FROM case_facts", []).unwrap();
        }
        Location::Postgres(url) => {
            let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
            client.batch_execute("DELETE FROM case_facts").unwrap();
        }
    }
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

/// BENCHMARKS.md, "Assessment rates": a month of 1,000,000 cases (plus 200,000 in the month
/// before) on the embedded database, counted in one query. Run with `cargo test --release -p
/// gridcase-server --test rates -- --ignored --nocapture`.
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
                "INSERT INTO case_facts VALUES (?1, ?2, ?3, '供水', '区水务集团', ?4, ?5, ?6, ?7,
                     ?8, ?9, 0, ?10, ?11, ?12, ?13, 0)",
            )
            .unwrap();
        let mut x: u64 = 7;
        for i in 0..1_200_000i64 {
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
            let area = format!("3306041{:02}{:03}", 1 + r % 4, r % 20);
            let step = |k: i64| (r % 5 >= k).then_some(at + k * 3_600_000);
            insert
                .execute(rusqlite::params![
                    format!("c{i:08}"),
                    at,
                    area,
                    step(1),
                    step(1).map(|t| t + 8 * 3_600_000),
                    step(2),
                    step(2).map(|t| t + 2 * 86_400_000),
                    step(3),
                    step(4),
                    i64::from(r % 97 == 0),
                    i64::from(r % 5 >= 4),
                    i64::from(r % 7 != 0),
                    (r % 5 >= 4).then_some(r % 3),
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
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
    assert_eq!(report.cases, 1_000_000);
    assert!(took < std::time::Duration::from_secs(1), "{took:?}");
}

gridcase_server::backend_tests!(
    sql_rates_equal_a_recomputation_from_the_documents,
    bad_report_queries_are_refused,
    the_report_command_writes_csv_with_chinese_headers,
    the_admin_report_route_needs_the_admin_token,
    backfill_gives_cases_from_before_the_upgrade_their_facts,
);
