//! The jupyter promise, proven in a real browser: headless Debian Chromium whose NSS
//! database holds berth's CA opens the direct URL `berth jupyter ID` prints with no
//! certificate error and shows the Jupyter file tree (screenshot in `artifacts/`); a user
//! who opens it without the token signs in by typing it; a profile without the CA gets a
//! certificate error instead.
mod common;
use common::webdriver::*;
use common::*;
use std::time::Duration;

const JUPYTER_IMAGE: &str = "berth-test/jupyter";
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn chromium_trusting_berths_ca_opens_jupyter_direct() {
    require_browser_tools();
    require_docker_and_images(&[JUPYTER_IMAGE]);
    let b = Berth::up();
    let ca = b.dir.join("berth-ca.crt");
    b.ok(&["cert", "--out", ca.to_str().unwrap()]);
    let id = b.create(&[JUPYTER_IMAGE, "--jupyter", "--wait"]);
    b.wait_state(id, "running");
    let url = b.ok(&["jupyter", &id.to_string()]).trim().to_string();
    let (origin, token) = url
        .split_once("/tree?token=")
        .unwrap_or_else(|| panic!("berth jupyter printed {url:?}"));
    assert!(origin.starts_with("https://127.0.0.1:"), "{url}");

    // A browser profile whose NSS database trusts berth's CA.
    let home = ScratchDir::new("chromium-ca");
    nss_trust_ca(home.path(), &ca);
    let driver = Chromedriver::start(home.path()).await;
    let s = driver.chromium_session().await.expect("Chromium session");
    s.goto(&url)
        .await
        .unwrap_or_else(|e| panic!("Chromium trusting berth's CA could not open {url}: {e}"));
    let listing = s.wait_for_text("#notebook_list", "etc", WAIT).await;
    assert!(listing.contains("bin"), "file tree: {listing:?}");
    let title = s.title().await.unwrap();
    assert!(!title.contains("Privacy error"), "title {title:?}");
    let page = s
        .execute(
            "return [location.protocol, location.host, window.isSecureContext]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        page,
        serde_json::json!(["https:", origin.trim_start_matches("https://"), true])
    );
    s.save_screenshot(&artifact_path("jupyter-direct.png"))
        .await;

    // Without the token in the URL, Jupyter asks for it; typing it signs the user in.
    s.goto(&format!("{origin}/logout")).await.unwrap();
    s.goto(&format!("{origin}/tree")).await.unwrap();
    let field = s.wait_for("#password_input", WAIT).await;
    field.send_keys(token).await.unwrap();
    s.find("#login_submit")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    s.wait_for_text("#notebook_list", "etc", WAIT).await;
    s.quit().await.unwrap();
    drop(driver);

    // Negative control: a profile without berth's CA gets a certificate error.
    let bare_home = ScratchDir::new("chromium-bare");
    let bare_driver = Chromedriver::start(bare_home.path()).await;
    let bare = bare_driver
        .chromium_session()
        .await
        .expect("Chromium session");
    // Chromium shows its "Privacy error" interstitial naming the reason (chromedriver may
    // also report the navigation as an "insecure certificate" error).
    if let Err(e) = bare.goto(&url).await {
        assert_eq!(e.error, "insecure certificate", "{e}");
    }
    // The interstitial fills in its text a moment after the navigation ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let shown = loop {
        let shown = bare
            .execute(
                "return document.title + '\\n' + (document.body ? document.body.innerText : '')",
                vec![],
            )
            .await
            .unwrap();
        let shown = shown.as_str().unwrap_or_default().to_string();
        if shown.contains("ERR_CERT_AUTHORITY_INVALID") || std::time::Instant::now() > deadline {
            break shown;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(shown.contains("ERR_CERT_AUTHORITY_INVALID"), "{shown}");
    assert!(
        bare.find("#notebook_list").await.is_err(),
        "the file tree must not show without berth's CA"
    );
    bare.save_screenshot(&artifact_path("jupyter-direct-untrusted.png"))
        .await;
}
