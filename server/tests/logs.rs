//! `--log-format json`: the real binary writes one JSON object per line, with the fields a log
//! collector indexes (timestamp, level, message, target) and the event's own fields at the top
//! level (not nested), so `listen` can be searched like `level`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn json_logs_are_one_object_per_line_with_flattened_fields() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridcase-server"))
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(data.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let serving = loop {
        let Ok(line) = received.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("no `serving` line within 30 s; got {seen:#?}");
        };
        let value: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        let object = value.as_object().expect("a JSON object").clone();
        for field in ["timestamp", "level", "message", "target"] {
            assert!(object.contains_key(field), "no `{field}` in {line}");
        }
        seen.push(line);
        if object["message"] == "serving" {
            break object;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(serving["level"], "INFO");
    let listen = serving["listen"]
        .as_str()
        .expect("`listen` at the top level");
    assert!(listen.starts_with("127.0.0.1:"), "{listen}");
    assert!(
        !serving.contains_key("fields"),
        "fields flattened: {serving:?}"
    );
}
