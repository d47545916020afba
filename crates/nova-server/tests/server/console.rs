//! The web console's files: served at `/` from the binary, locked to their own origin, within their budget.
//! (What the page does is tested in a browser: `crates/nova-cli/tests/cli/console.rs`.)

use std::io::Write;

use crate::helpers::TestApp;

/// The most the console's files may weigh, gzip-compressed, as a browser receives them.
const BUDGET_BYTES: usize = 100 * 1024;

#[tokio::test]
async fn the_console_is_served_from_the_binary_within_its_budget_and_loads_nothing_from_elsewhere() {
    let app = TestApp::spawn().await;
    let mut compressed_total = 0;
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/app.css", "text/css; charset=utf-8"),
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        for rule in ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
            assert!(policy.contains(rule), "{path}: {policy}");
        }
        let body = response.text().await.unwrap();
        // Offline: nothing is fetched from another origin.
        for elsewhere in ["http://", "https://", "//cdn", "@import"] {
            assert!(!body.contains(elsewhere), "{path} names {elsewhere}");
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body.as_bytes()).unwrap();
        let size = gz.finish().unwrap().len();
        println!("{path}: {} bytes, {size} gzip-compressed", body.len());
        compressed_total += size;
    }
    println!("console assets: {compressed_total} bytes gzip-compressed (budget {BUDGET_BYTES})");
    assert!(compressed_total <= BUDGET_BYTES, "{compressed_total} bytes compressed, over the budget");
    // The page loads the files above, and the API is still where it was.
    let index = app.client.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(index.contains("src=\"/console/app.js\"") && index.contains("href=\"/console/app.css\""));
    assert_eq!(app.client.get(app.url("/v1/jobs")).send().await.unwrap().status(), 200);
    app.stop().await;
}
