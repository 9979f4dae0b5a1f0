//! Test servers on 127.0.0.1 (tests/servers/README.md): s3s-fs and the fakesnow wrapper.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const BUCKET: &str = "synthea-fhir-data-dump";

/// The load's source in the test specs.
pub const LAKE_SOURCE: &str = "{connection: lake, prefix: raw/patients/}";

/// The s3 connection `lake` of the test specs, its settings read from T_S3_* variables.
pub fn lake() -> String {
    format!(
        "  lake:\n    type: s3\n    bucket: {BUCKET}\n    env: {{endpoint_url: T_S3_ENDPOINT, access_key_id: T_S3_KEY, secret_access_key: T_S3_SECRET}}"
    )
}

pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// s3s-fs serving `root` on a free port; `None` when skipped on purpose.
pub fn s3s(root: &Path) -> Option<Server> {
    if std::env::var_os("FHIRFLOW_SKIP_CONFORMANCE").is_some_and(|v| v == "1") {
        eprintln!("skipped: FHIRFLOW_SKIP_CONFORMANCE=1");
        return None;
    }
    let bin = std::env::var_os("FHIRFLOW_S3S_BIN").unwrap_or_else(|| {
        panic!("FHIRFLOW_S3S_BIN is not set: run the tests with scripts/test.sh, or set FHIRFLOW_SKIP_CONFORMANCE=1")
    });
    let mut child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", "0", "--access-key", "test-key", "--secret-key", "test-secret"])
        .arg(root)
        .env("RUST_LOG", "s3s_fs=info")
        .stdout(Stdio::piped())
        .spawn()
        .expect("s3s-fs starts");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let port = loop {
        let line = lines.next().expect("s3s-fs printed its port").unwrap();
        if let Some(port) = line.rsplit_once("127.0.0.1:").and_then(|(_, p)| p.trim().parse().ok()) {
            break port;
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Some(Server { child, port })
}

pub fn put(root: &Path, key: &str, id: &str, mtime_secs: u64) {
    let path = root.join(BUCKET).join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, format!("{{\"resourceType\": \"Bundle\", \"id\": \"{id}\", \"entry\": []}}")).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime_secs)).unwrap();
}
/// fakesnow_json.py (`FHIRFLOW_FAKESNOW_VENV`) with its databases in `db`, reading S3 from
/// `s3_port` with the test key, and checking the user `fhirflow` / password `secret`.
pub fn fakesnow(db: &Path, s3_port: u16) -> Option<Server> {
    let venv = super::venv("FHIRFLOW_FAKESNOW_VENV")?;
    std::fs::create_dir_all(db).unwrap();
    let mut child = Command::new(venv.join("bin/python"))
        .arg(super::repo().join("tests/servers/fakesnow_json.py"))
        .args(["--port", "0", "--db-path"])
        .arg(db)
        .args(["--s3-endpoint", &format!("http://127.0.0.1:{s3_port}")])
        .args(["--s3-access-key", "test-key", "--s3-secret-key", "test-secret"])
        .args(["--user", "fhirflow", "--password", "secret"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("fakesnow_json.py starts");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().expect("fakesnow printed its port").unwrap();
    let port = line.rsplit_once("127.0.0.1:").and_then(|(_, p)| p.trim().parse().ok()).expect("a port");
    std::thread::spawn(move || lines.for_each(drop));
    Some(Server { child, port })
}
