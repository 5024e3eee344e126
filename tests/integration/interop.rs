//! Wix's own JavaScript SDK and a real browser against the mock Wix and the
//! quickstart: `tests/interop/` (Node's test runner, `@wix/sdk`,
//! `@wix/site`, `@wix/dashboard`, and playwright-core driving Debian's
//! Chromium). Needs `node`, `npm` and `chromium`; `.ci/run` installs them.
//! Without them this test says loudly that it did not run, and under
//! `CI=true` it fails.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::json;
use wix_elevate::{
    SubjectType,
    test_util::{CallerSpec, MockEndpoint},
};

use crate::quickstart::start_against_another_wix;

struct Tools {
    node: PathBuf,
    npm: PathBuf,
    chromium: PathBuf,
}

fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The tools, or `None` after saying loudly why the suite is skipped
/// (a failure under `CI=true`).
fn tools() -> Option<Tools> {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| find("chromium"))
        .or_else(|| find("chromium-browser"));
    match (find("node"), find("npm"), chromium) {
        (Some(node), Some(npm), Some(chromium)) => Some(Tools {
            node,
            npm,
            chromium,
        }),
        missing => {
            let message = format!(
                "SKIPPED: the Wix SDK and browser interop suite needs node, npm and chromium \
                 (found node: {}, npm: {}, chromium: {}); `apt-get install -y nodejs npm chromium`",
                missing.0.is_some(),
                missing.1.is_some(),
                missing.2.is_some()
            );
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
            eprintln!("\n!!!!! {message} !!!!!\n");
            None
        }
    }
}

/// `npm ci` when the installed packages are missing or older than the lockfile.
fn install_packages(dir: &Path, npm: &Path) {
    let installed = dir.join("node_modules/.package-lock.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&installed).is_some_and(|i| Some(i) >= modified(&dir.join("package-lock.json"))) {
        return;
    }
    let out = Command::new(npm)
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .expect("npm runs");
    assert!(
        out.status.success(),
        "npm ci failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `target/interop/`, beside the test binary's profile directory.
fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<binary>")
        .to_path_buf();
    let dir = target.join("interop");
    std::fs::create_dir_all(&dir).expect("target/interop");
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn wix_sdk_and_a_real_browser_call_the_quickstart() {
    let Some(tools) = tools() else { return };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let npm = tools.npm.clone();
    let install_dir = dir.clone();
    tokio::task::spawn_blocking(move || install_packages(&install_dir, &npm))
        .await
        .unwrap();

    let (wix, quickstart) =
        start_against_another_wix(&[("RATE_LIMIT_PER_CALLER_PER_MIN", "5")]).await;
    let mint = |spec: CallerSpec| wix.mint(spec.instance("sdk-instance"));
    let tokens = json!({
        "visitor": mint(CallerSpec::new(SubjectType::Visitor)),
        "member": mint(CallerSpec::new(SubjectType::Member)),
        "user": mint(CallerSpec::new(SubjectType::User)),
        "limited": mint(CallerSpec::new(SubjectType::Visitor)),
        "foreign": mint(CallerSpec::new(SubjectType::Member).client_id("another-app")),
    });
    let screenshot = artifacts().join("browser.png");
    let mut node = Command::new(&tools.node);
    node.args([
        "--test",
        "--test-concurrency=1",
        "sdk.test.mjs",
        "browser.test.mjs",
    ])
    .current_dir(&dir)
    .env("WIX_BASE_URL", wix.base_url())
    .env("WIX_APP_ID", wix.app_id())
    .env("WIX_APP_SECRET", wix.app_secret())
    .env("QUICKSTART_URL", &quickstart.url)
    .env("TOKENS", tokens.to_string())
    .env("CHROMIUM", &tools.chromium)
    .env("SCREENSHOT", &screenshot);
    let out = tokio::task::spawn_blocking(move || node.output().expect("node runs"))
        .await
        .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "interop suite failed:\n{report}");
    eprintln!("{report}");
    assert!(
        screenshot.is_file(),
        "a screenshot at {}",
        screenshot.display()
    );
    // The SDK's own AppStrategy minted one app token (its strategy caches
    // it), and the quickstart one for every route and caller together.
    assert_eq!(wix.access_token_calls_for("sdk-instance"), 2);
    assert_eq!(wix.calls(MockEndpoint::Other), 0, "no call went astray");
}
