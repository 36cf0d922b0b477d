//! The login page in a real headless Chromium (tests/node/login.mjs).

use std::process::Command;

use tests::{Careline, repo_root};

#[test]
fn demo_operator_signs_in_in_chromium_and_switches_to_hindi() {
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(dir.path(), &["--demo"], &[]);
    let root = repo_root();
    assert!(
        root.join("tests/node/node_modules/playwright-core")
            .exists(),
        "playwright-core is missing: run `npm ci --prefix tests/node` (bash .ci/run does)"
    );
    let out = Command::new("node")
        .arg(root.join("tests/node/login.mjs"))
        .env("CARELINE_URL", &server.base)
        .env("CARELINE_USER", "asha")
        .env("CARELINE_PASSWORD", &server.passwords["asha"])
        .env("CARELINE_ARTIFACTS", root.join("tests/artifacts"))
        .output()
        .expect("run node (install Node.js)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "login.mjs failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("landed /operator"), "{stdout}");
    drop(server);
}
