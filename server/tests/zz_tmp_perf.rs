use gridcase_server::Store;
use gridcase_core::sync::SyncRequest;
#[test]
fn perf() {
    let now = 1_760_000_000_000;
    let store = Store::open_in_memory().unwrap();
    let t = std::time::Instant::now();
    let r = gridcase_server::demo::fill(&store, 500, 1, now).unwrap();
    eprintln!("demo 500: {:?}", t.elapsed());
    let token = &r.tokens.iter().find(|t| t.0 == "hotline").unwrap().2;
    let gridcase_server::Auth::Device(ctx) = store.authenticate(token).unwrap() else { panic!() };
    let mut req = SyncRequest { page_size: 200, ..Default::default() };
    loop {
        let t = std::time::Instant::now();
        let resp = store.sync(&ctx, &req, now).unwrap();
        let bytes = gridcase_core::sync::wire::encode_response(&resp).len();
        eprintln!("page {} docs {} bytes in {:?}, remaining {}", resp.docs.len(), bytes, t.elapsed(), resp.remaining);
        match resp.restore { Some(tok) => req.restore = Some(tok), None => break }
    }
    let t = std::time::Instant::now();
    let rep = gridcase_server::run_deadline_check(&store, now).unwrap();
    eprintln!("check: {} overdue {} supervised in {:?}", rep.overdue.len(), rep.supervised.len(), t.elapsed());
}
