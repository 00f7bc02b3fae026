//! The report's hot spots on generated facts where the expected ones are known, and its exports:
//! the XLSX the `report` command and `GET /admin/report?format=xlsx` write reads back with the
//! report's figures, with no personal data; both backends.

use std::collections::BTreeMap;
use std::io::Cursor;

use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};
use gridcase_core::model::Millis;
use gridcase_server::Store;
use gridcase_server::db::Location;
use gridcase_server::demo;
use gridcase_server::rates::CaseFacts;
use gridcase_server::report::{DAY_MS, Period, Report, ReportQuery, tables};
use gridcase_server::testing::{Backend, TestDb};

/// 2026-11-28 10:00 China time.
const NOW: Millis = 1_795_831_200_000;

const AREAS: [&str; 4] = [
    "330604101001",
    "330604101002",
    "330604101003",
    "330604102001",
];
const CATEGORIES: [&str; 3] = ["供水", "噪音", "停车"];

/// Writes `n` facts rows of one cell, one every `every` days from `day` of `period` (at 09:00
/// plus `i` ms, so each row is its own case).
fn cases(store: &Store, cell: (&str, &str), period: &Period, day: i64, every: i64, n: i64) {
    for i in 0..n {
        let registered_at = period.from + (day + i * every) * DAY_MS + 9 * 3_600_000 + i;
        assert!(registered_at < period.to, "{cell:?} {i}");
        let facts = CaseFacts {
            case_id: format!("{}-{}-{}-{registered_at}", cell.0, cell.1, period.label),
            registered_at,
            area_code: cell.1.into(),
            category: cell.0.into(),
            unit: "区城管局".into(),
            case_type: "complaint".into(),
            channel: "hotline".into(),
            ..CaseFacts::default()
        };
        assert!(store.db().fill_facts(&facts).unwrap());
    }
}

/// Seven months (the report's and the policy's 6 baseline months) of steady counts in every
/// cell, then in November: 噪音 in one place three times its usual (spread over the month, so
/// hot but no burst), and 停车 in another place its usual plus 8 on 20–22 November (a burst,
/// and hot as well).
fn generated(store: &Store) {
    let november = Period::parse("2026-11").unwrap();
    for (m, period) in november.with_previous(6).iter().enumerate() {
        for (c, category) in CATEGORIES.iter().enumerate() {
            for (a, area) in AREAS.iter().enumerate() {
                let cell = (*category, *area);
                let n = match (m, cell) {
                    (0, ("噪音", "330604101002")) => 30,
                    (_, ("噪音", "330604101002")) => 10,
                    _ => 8 + ((m + c + a) % 3) as i64,
                };
                let every = period.days() / n;
                cases(store, cell, period, (c + a) as i64 % every.max(1), every, n);
            }
        }
    }
    // `every` 0: all on that day.
    cases(store, ("停车", "330604101003"), &november, 19, 0, 3);
    cases(store, ("停车", "330604101003"), &november, 20, 0, 3);
    cases(store, ("停车", "330604101003"), &november, 21, 0, 2);
}

fn hot_spots_are_found_where_the_generated_data_put_them(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.open();
    generated(&store);
    let query = ReportQuery {
        period: "2026-11".into(),
        area: "3306041".into(),
        ..ReportQuery::default()
    };
    let report = store.report(&query, NOW).unwrap();
    assert_eq!(report.hot_spots.baseline_periods, 6);
    let hot: Vec<(&str, &str, i64)> = report
        .hot_spots
        .cells
        .iter()
        .map(|c| (c.category.as_str(), c.area.as_str(), c.count))
        .collect();
    assert_eq!(
        hot,
        [("噪音", "330604101002", 30), ("停车", "330604101003", 17)],
        "{:#?}",
        report.hot_spots
    );
    let bursts: Vec<(&str, &str, i64, i64)> = report
        .hot_spots
        .bursts
        .iter()
        .map(|b| (b.category.as_str(), b.area.as_str(), b.first_day, b.count))
        .collect();
    // 停车 at …003: its 9 usual cases fall on days 1 + 3k, so days 19–21 (by index) hold
    // 3 + 3 + 2 planted and the usual one of day 19.
    assert_eq!(bursts, [("停车", "330604101003", 19, 9)], "{bursts:?}");
    // The top lists and the change agree with the generation.
    assert_eq!(report.top_categories[0].key, "噪音");
    // November: 9 + 30 + 8 + 9; October: 10 + 10 + 9 + 10 (see `generated`).
    let top = &report.top_categories[0];
    assert_eq!(
        (top.count, top.previous),
        (56, 39),
        "{:?}",
        report.top_categories
    );
    // A filter that leaves out the hot place leaves out its hot spot.
    let elsewhere = ReportQuery {
        area: "330604102".into(),
        ..query
    };
    let report = store.report(&elsewhere, NOW).unwrap();
    assert!(report.hot_spots.cells.is_empty() && report.hot_spots.bursts.is_empty());
}

/// Every cell of every sheet as text (numbers printed plainly).
fn sheets(bytes: Vec<u8>) -> BTreeMap<String, Vec<Vec<Data>>> {
    let mut book: Xlsx<_> = open_workbook_from_rs(Cursor::new(bytes)).unwrap();
    book.sheet_names()
        .into_iter()
        .map(|name| {
            let range = book.worksheet_range(&name).unwrap();
            let rows = range.rows().map(<[Data]>::to_vec).collect();
            (name, rows)
        })
        .collect()
}

fn number(cell: &Data) -> f64 {
    match cell {
        Data::Float(x) => *x,
        Data::Int(n) => *n as f64,
        other => panic!("not a number: {other:?}"),
    }
}

/// The workbook holds one sheet per section with the report's figures, and no phone number.
fn check_workbook(bytes: Vec<u8>, report: &Report) {
    let book = sheets(bytes);
    let expected = tables(report);
    let names: Vec<&str> = expected.iter().map(|t| t.title).collect();
    let mut found: Vec<&str> = book.keys().map(String::as_str).collect();
    found.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(found, sorted);
    let rates = &book["考核指标"];
    assert_eq!(rates[0][0], Data::String("指标".into()));
    assert_eq!(rates.len(), report.rates.len() + 1);
    for (row, rate) in rates[1..].iter().zip(&report.rates) {
        assert_eq!(row[0], Data::String(rate.name.into()));
        assert_eq!(number(&row[1]), rate.numerator);
        assert_eq!(number(&row[2]) as i64, rate.denominator);
        match rate.rate {
            Some(r) => assert!((number(&row[3]) - r).abs() < 1e-12, "{row:?}"),
            None => assert_eq!(row[3], Data::Empty),
        }
    }
    let summary = &book["概况"];
    let line = |name: &str| {
        summary
            .iter()
            .find(|r| r[0] == Data::String(name.into()))
            .map(|r| r[1].clone())
            .unwrap()
    };
    assert_eq!(number(&line("受理件数")) as i64, report.cases);
    assert_eq!(number(&line("上期受理件数")) as i64, report.previous_cases);
    assert_eq!(line("统计周期"), Data::String(report.period.label.clone()));
    let types = &book["按类型"];
    let total: f64 = types[1..].iter().map(|r| number(&r[1])).sum();
    assert_eq!(total as i64, report.cases);
    let overdue = &book["超期件"];
    assert_eq!(overdue.len(), report.overdue.cases.len() + 1);
    for (row, case) in overdue[1..].iter().zip(&report.overdue.cases) {
        assert_eq!(row[0], Data::String(case.number.clone()));
    }
    for (name, rows) in &book {
        for cell in rows.iter().flatten() {
            if let Data::String(s) = cell {
                assert!(!looks_like_a_phone(s), "{name}: {s}");
            }
        }
    }
}

/// An 11-digit run starting with 1, not masked.
fn looks_like_a_phone(s: &str) -> bool {
    let digits: Vec<&str> = s.split(|c: char| !c.is_ascii_digit()).collect();
    digits.iter().any(|d| d.len() == 11 && d.starts_with('1'))
}

fn month_query() -> ReportQuery {
    ReportQuery {
        period: "2026-11".into(),
        area: "3306".into(),
        ..ReportQuery::default()
    }
}

fn the_report_command_writes_an_xlsx_that_reads_back(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.open();
    demo::fill(&store, 150, 4, NOW).unwrap();
    let report = store.report(&month_query(), NOW).unwrap();
    assert!(report.cases > 0 && report.overdue.total > 0);
    let out = db.dir().join("report.xlsx");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gridcase-server"));
    cmd.args(["report", "--period", "2026-11", "--area", "3306"])
        .args([
            "--format",
            "xlsx",
            "--at",
            "2026-11-28T10:00:00+08:00",
            "--out",
        ])
        .arg(&out);
    match db.location() {
        Location::Sqlite(dir) => cmd.arg("--data").arg(dir),
        Location::Postgres(url) => cmd.args(["--database", url]),
    };
    assert!(cmd.status().unwrap().success());
    check_workbook(std::fs::read(&out).unwrap(), &report);
}

async fn get(app: &axum::Router, uri: &str, token: &str) -> axum::response::Response {
    use tower::ServiceExt;
    let req = axum::http::Request::get(uri).header("authorization", format!("Bearer {token}"));
    app.clone()
        .oneshot(req.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap()
}

fn the_admin_report_route_sends_xlsx_and_csv_downloads(backend: Backend) {
    gridcase_server::testing::run_async(move || admin_downloads(backend))
}

async fn admin_downloads(backend: Backend) {
    let gridcase_server::testing::AdminApp {
        store,
        token: admin,
        app,
        db: _db,
    } = gridcase_server::testing::admin_app(backend, 80, 3, NOW);
    let report = store.report(&month_query(), NOW).unwrap();
    let header =
        |r: &axum::response::Response, name: &str| r.headers()[name].to_str().unwrap().to_owned();
    for (format, content_type) in [
        ("xlsx", gridcase_server::report::XLSX_CONTENT_TYPE),
        ("csv", "text/csv; charset=utf-8"),
    ] {
        let uri = format!("/admin/report?period=2026-11&area=3306&format={format}");
        let response = get(&app, &uri, &admin).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-type"), content_type);
        assert_eq!(
            header(&response, "content-disposition"),
            format!("attachment; filename=\"report-2026-11.{format}\"")
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        if format == "xlsx" {
            check_workbook(body, &report);
        } else {
            let text = String::from_utf8(body).unwrap();
            assert_eq!(text, gridcase_server::report::to_csv(&report));
        }
    }
    let bad = get(&app, "/admin/report?period=2026-11&format=pdf", &admin).await;
    assert_eq!(bad.status(), 400);
}

fn asked_phones_are_unmasked_and_each_reveal_audited(backend: Backend) {
    gridcase_server::testing::run_async(move || asked_phones(backend))
}

/// Issue 11.4: a report holds no complainant field unless an admin whose role may reveal asks
/// for the listed cases' phones with a reason; then each phone is the complainant's, unmasked,
/// in JSON and in the exports, and each case's reveal is in the audit log. Others are refused.
async fn asked_phones(backend: Backend) {
    use gridcase_core::doc::{PersonalDoc, personal_doc_id};
    let gridcase_server::testing::AdminApp {
        store,
        token,
        app,
        db: _db,
    } = gridcase_server::testing::admin_app(backend, 120, 3, NOW);
    let auditor = gridcase_server::testing::add_admin(
        &store,
        "aud",
        gridcase_server::admins::AdminRole::Auditor,
        "*",
    );
    let read = |response: axum::response::Response| async move {
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    };
    let base = "/admin/report?period=2026-11&area=3306";
    let (status, plain) = read(get(&app, base, &token).await).await;
    assert_eq!(status, 200);
    assert!(!plain.contains("\"phone\""), "no phone unless asked");
    let asked = format!("{base}&phones=reveal&reason=%E6%9C%88%E6%8A%A5%E6%A0%B8%E6%9F%A5");
    let (status, body) = read(get(&app, &asked, &token).await).await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut revealed = std::collections::BTreeSet::new();
    for list in ["overdue", "supervised"] {
        for case in report[list]["cases"].as_array().unwrap() {
            let id = case["case_id"].as_str().unwrap();
            let doc = store.load_doc(&personal_doc_id(id)).unwrap();
            let expected = doc.map(|d| PersonalDoc::from_automerge(d).read().phone);
            assert_eq!(
                case["phone"].as_str(),
                Some(expected.unwrap_or_default().as_str())
            );
            revealed.insert(id.to_owned());
        }
    }
    assert!(!revealed.is_empty(), "the demo month lists cases");
    assert_eq!(store.audit_count("reveal").unwrap(), revealed.len() as u64);
    // The CSV export carries them as they are.
    let (status, csv) = read(get(&app, &format!("{asked}&format=csv"), &token).await).await;
    assert_eq!(status, 200);
    assert!(csv.contains("来电人电话"));
    let some_phone = report["overdue"]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .chain(report["supervised"]["cases"].as_array().unwrap())
        .filter_map(|c| c["phone"].as_str())
        .find(|p| !p.is_empty())
        .expect("a listed case has a complainant's phone");
    assert!(csv.contains(some_phone));
    // Refused: a role that may not reveal, a missing or blank reason; nothing recorded.
    let before = store.audit_count("reveal").unwrap();
    assert_eq!(get(&app, &asked, &auditor).await.status(), 403);
    let no_reason = format!("{base}&phones=reveal");
    assert_eq!(get(&app, &no_reason, &token).await.status(), 400);
    let blank = format!("{base}&phones=reveal&reason=%20");
    assert_eq!(get(&app, &blank, &token).await.status(), 400);
    assert_eq!(
        get(&app, &format!("{base}&phones=all"), &token)
            .await
            .status(),
        400
    );
    assert_eq!(store.audit_count("reveal").unwrap(), before);
}

gridcase_server::backend_tests!(
    hot_spots_are_found_where_the_generated_data_put_them,
    the_report_command_writes_an_xlsx_that_reads_back,
    the_admin_report_route_sends_xlsx_and_csv_downloads,
    asked_phones_are_unmasked_and_each_reveal_audited,
);
