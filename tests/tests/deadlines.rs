//! The server's deadline check finds exactly the overdue cases at a fixed instant, across the
//! 2025 National Day holiday and the adjusted working Saturday after it, and supervises each
//! overdue stage once.

use gridcase_core::calendar::{china_offset, to_millis};
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{CaseType, Millis, Role};
use gridcase_server::deadlines::run_deadline_check;
use gridcase_tests::{Backend, TestPhone, TestServer, new_case};

/// An instant given in China time.
fn cst(y: i32, m: u32, d: u32, h: u32) -> Millis {
    use chrono::TimeZone;
    to_millis(
        china_offset()
            .with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .expect("valid instant"),
    )
}

fn overdue_scan_across_national_day(backend: Backend) {
    let server = TestServer::start(backend);
    server.set_time(cst(2025, 9, 28, 9));
    let mut li = TestPhone::enrolled(&server, "li", Role::GridWorker, "330604101", 1);

    // Three inquiries (咨询: 2 working days) handled on the spot, started at different times.
    let starts = [
        ("a", cst(2025, 9, 29, 10)), // Mon → due end of Thu 10-09 (10-01..10-08 off)
        ("b", cst(2025, 9, 30, 10)), // Tue → due end of Fri 10-10
        ("c", cst(2025, 10, 9, 10)), // Thu → due end of Sat 10-11, a 调休 working day
    ];
    for (id, start) in starts {
        let mut case = new_case(id, "咨询社保办理", "330604101201");
        case.case_type = CaseType::Inquiry;
        li.phone.create_case(&case, None, start - 60_000).unwrap();
        li.phone.act(id, &Action::Register, start - 30_000).unwrap();
        li.phone.act(id, &Action::Start, start).unwrap();
    }
    // The phone syncs with a correct clock after the last start.
    let sync_at = cst(2025, 10, 9, 11);
    server.set_time(sync_at);
    li.now = sync_at;
    li.sync().unwrap();

    let ids = |now| {
        let report = run_deadline_check(&server.store, now).unwrap();
        let mut ids: Vec<String> = report.overdue.iter().map(|c| c.case_id.clone()).collect();
        ids.sort();
        (ids, report.supervised.len())
    };
    // Friday 10-10 noon: only `a` (a Mon–Fri calendar without the holiday would say all three).
    assert_eq!(ids(cst(2025, 10, 10, 12)), (vec!["a".to_string()], 1));
    // Saturday 10-11 noon: `b` too; `c` still has the worked Saturday.
    assert_eq!(
        ids(cst(2025, 10, 11, 12)),
        (vec!["a".to_string(), "b".to_string()], 1)
    );
    // Sunday 10-12: all three; only `c` is newly supervised.
    assert_eq!(
        ids(cst(2025, 10, 12, 1)),
        (vec!["a".to_string(), "b".to_string(), "c".to_string()], 1)
    );

    // Supervised once per case and stage, however often the check runs.
    let again = run_deadline_check(&server.store, cst(2025, 10, 12, 2)).unwrap();
    assert!(again.supervised.is_empty());
    for id in ["a", "b", "c"] {
        assert_eq!(server.store.supervisions(id).unwrap().len(), 1, "{id}");
    }
    // The supervision reached the phone as a timeline event.
    li.now = cst(2025, 10, 12, 3);
    server.set_time(li.now);
    li.sync().unwrap();
    let case = li.phone.get_case("a").unwrap().case;
    assert_eq!(case.supervisions.len(), 1);
}

gridcase_server::backend_tests!(overdue_scan_across_national_day,);
