//! The web GUI, end to end in a real browser (Debian's headless Chromium over WebDriver)
//! against a real `berth up`: sign in by typing the admin key; add an SSH key; bad fields
//! (the image, the Docker options) show their errors next to the field; an entrypoint
//! instance with an overridden entrypoint and args (one per line, spaces kept) shows its
//! output in the logs view, and a line it prints after Follow was pressed appears there; an
//! ssh instance is reached with the ssh command read from its connect panel, run by the real
//! ssh client, and stopped, started and rebooted with its buttons (those that do not apply
//! are disabled); the CA link downloads the CA certificate; a template made from an image
//! launches through the template picker; destroy asks first; a long failure reason stays a
//! few lines on a phone. Templates keep their settings exactly through the picker, the
//! editor and "save as template" (arguments with line breaks, CRs or empty ones, an empty
//! CMD, env values with line breaks), are viewed, replaced and deleted in the GUI, and a
//! duplicate name shows next to the name field. Signing in works with the keyboard alone,
//! survives a server restart, and signs out; headings take the focus without a focus ring.
//! Screenshots of every page (1280×800, and phone size 390×844) go to `artifacts/gui-*.png`.
//!
//! Also the session API without a browser: cookie attributes, cross-site refusal (CSRF),
//! sign-out, and the GUI's headers (Content-Type, Content-Security-Policy).
mod common;
use common::webdriver::*;
use common::*;
use reqwest::StatusCode;
use std::process::{Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
/// Image pulls are local, but ssh instances wait for sshd and the machine has 2 cores.
const SLOW: Duration = Duration::from_secs(90);

/// The image the "from image" template is made of (an entrypoint that serves HTTP with odd
/// arguments), and the mode it is made for.
const TEMPLATE_IMAGE: &str = "berth-test/argserver";
const JUPYTER_IMAGE: &str = "berth-test/jupyter";

async fn shot(s: &Session, name: &str) {
    s.save_screenshot(&artifact_path(&format!("gui-{name}.png")))
        .await;
}

/// Waits until the state badge on an instance page shows one of `states`; returns it.
async fn wait_state(s: &Session, states: &[&str], timeout: Duration) -> String {
    let what = format!("the instance page to show state {states:?}");
    s.wait_until(&what, timeout, async || {
        let t = s.find(".head-state").await.ok()?.text().await.ok()?;
        states.iter().any(|st| t.starts_with(st)).then_some(t)
    })
    .await
}

/// The id in `#/instances/ID`, once the browser is there.
async fn wait_instance_page(s: &Session) -> i64 {
    s.wait_until("an instance page", WAIT, async || {
        let url = s.current_url().await.ok()?;
        url.split("#/instances/").nth(1)?.parse().ok()
    })
    .await
}

/// Sizes the window so that the page's viewport is `width`×`height` CSS pixels.
async fn set_viewport(s: &Session, width: i64, height: i64) {
    s.set_window_size(width as u32, height as u32)
        .await
        .unwrap();
    let inner = s
        .execute("return [window.innerWidth, window.innerHeight]", vec![])
        .await
        .unwrap();
    let (iw, ih) = (inner[0].as_i64().unwrap(), inner[1].as_i64().unwrap());
    s.set_window_size((2 * width - iw) as u32, (2 * height - ih) as u32)
        .await
        .unwrap();
}

async fn click(s: &Session, css: &str) {
    s.wait_for(css, WAIT)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

async fn type_into(s: &Session, css: &str, text: &str) {
    let el = s.wait_for(css, WAIT).await;
    el.clear().await.unwrap();
    el.send_keys(text)
        .await
        .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
}

async fn go(s: &Session, b: &Berth, hash: &str) {
    s.goto(&format!("{}/{hash}", b.url)).await.unwrap();
}

/// Clicks a main navigation link and waits for its page's heading.
async fn nav(s: &Session, page: &str, heading: &str) {
    click(s, &format!("#nav a[data-page={page}]")).await;
    s.wait_for_text("main h1", heading, WAIT).await;
}

/// Signs in by typing the admin key into the sign-in form.
async fn sign_in(s: &Session, b: &Berth) {
    go(s, b, "").await;
    set_viewport(s, 1280, 800).await;
    type_into(s, "input[name=api_key]", &b.admin_key).await;
    click(s, ".signin-form button[type=submit]").await;
    s.wait_for_text("main h1", "Instances", WAIT).await;
}

/// The page's heading has the focus (screen readers start there) and shows no focus ring.
async fn assert_heading_focused_without_ring(s: &Session) {
    let (tag, outline) = s
        .wait_until("the heading to take the focus", WAIT, async || {
            let v = s
                .execute(
                    "const a = document.activeElement;
                     return [a.tagName, getComputedStyle(a).outlineStyle];",
                    vec![],
                )
                .await
                .ok()?;
            (v[0] == "H1").then(|| (v[0].clone(), v[1].clone()))
        })
        .await;
    assert_eq!(tag, "H1");
    assert_eq!(outline, "none", "the focused heading shows a focus ring");
}

/// Whether the element matching `css` is disabled, and its title.
async fn disabled(s: &Session, css: &str) -> (bool, String) {
    let el = s.wait_for(css, WAIT).await;
    let d = el.property("disabled").await.unwrap() == true;
    let t = el.property("title").await.unwrap();
    (d, t.as_str().unwrap_or_default().to_string())
}

/// Waits until the element matching `css` is enabled (`true`) or disabled (`false`).
async fn wait_enabled(s: &Session, css: &str, enabled: bool) {
    let what = format!(
        "{css} to be {}",
        if enabled { "enabled" } else { "disabled" }
    );
    s.wait_until(&what, WAIT, async || {
        let d = s.find(css).await.ok()?.property("disabled").await.ok()?;
        (d == !enabled).then_some(())
    })
    .await
}

/// From now on the page records the JSON bodies it sends (`window.sentBodies`, each
/// `[method, path, body]`).
async fn record_requests(s: &Session) {
    s.execute(
        "window.sentBodies = [];
         if (!window.realFetch) {
           window.realFetch = window.fetch;
           window.fetch = (url, init) => {
             if (init && init.body) window.sentBodies.push([init.method, String(url), JSON.parse(init.body)]);
             return window.realFetch(url, init);
           };
         }",
        vec![],
    )
    .await
    .unwrap();
}

/// The bodies recorded since [`record_requests`] that went with `method` to `path`.
async fn sent(s: &Session, method: &str, path: &str) -> Vec<serde_json::Value> {
    let all = s.execute("return window.sentBodies", vec![]).await.unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .filter(|r| r[0] == method && r[1] == path)
        .map(|r| r[2].clone())
        .collect()
}

/// The value of the form control matching `css`.
async fn value(s: &Session, css: &str) -> serde_json::Value {
    s.wait_for(css, WAIT).await.property("value").await.unwrap()
}

/// The API, as the admin.
async fn api(
    b: &Berth,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", b.url))
        .bearer_auth(&b.admin_key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn gui_launches_connects_and_destroys() {
    require_browser_tools();
    require_docker_and_images(&[BUSYBOX, SSH_IMAGE, JUPYTER_IMAGE, TEMPLATE_IMAGE]);
    let b = Berth::up();
    let home = ScratchDir::new("gui");
    let keypair = KeyPair::new(home.path(), "gui_key");
    let downloads = home.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let driver = Chromedriver::start(home.path()).await;
    let s = driver
        .chromium_session_downloading_to(&downloads)
        .await
        .expect("Chromium session");

    // Sign in by typing the admin key.
    go(&s, &b, "").await;
    set_viewport(&s, 1280, 800).await;
    s.wait_for("input[name=api_key]", WAIT).await;
    shot(&s, "signin").await;
    type_into(&s, "input[name=api_key]", "berth_not_a_key").await;
    click(&s, ".signin-form button[type=submit]").await;
    let err = s
        .wait_for_text("[data-field=api_key] .field-error", "not valid", WAIT)
        .await;
    assert!(err.contains("API key is not valid"), "{err}");
    type_into(&s, "input[name=api_key]", &b.admin_key).await;
    click(&s, ".signin-form button[type=submit]").await;
    s.wait_for_text("main h1", "Instances", WAIT).await;
    s.wait_for_text("#who", "admin", WAIT).await;

    // SSH keys page: add the test key by pasting it.
    nav(&s, "keys", "SSH keys").await;
    assert_heading_focused_without_ring(&s).await;
    let public = std::fs::read_to_string(&keypair.public).unwrap();
    type_into(&s, "textarea[name=key]", public.trim()).await;
    click(&s, "#add-key-form button[type=submit]").await;
    s.wait_for_text("table.list tbody", "SHA256:", WAIT).await;
    s.wait_for_text("table.list tbody", "gui_key", WAIT).await;
    shot(&s, "keys").await;

    // A bad field shows its error next to the field, marked for assistive technology.
    nav(&s, "create", "Create an instance").await;
    type_into(&s, "input[name=image]", "Not Valid").await;
    click(&s, "#create-submit").await;
    let msg = s
        .wait_for_text("[data-field=image] .field-error", "Not Valid", WAIT)
        .await;
    assert!(!msg.is_empty());
    let image = s.find("input[name=image]").await.unwrap();
    assert_eq!(
        image.property("ariaInvalid").await.unwrap(),
        serde_json::json!("true")
    );
    let described = s
        .execute(
            "const i = document.querySelector('input[name=image]');
             return i.getAttribute('aria-describedby').split(' ')
               .map((id) => document.getElementById(id).textContent).join(' | ');",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        described.as_str().unwrap().contains("Not Valid"),
        "aria-describedby leads to {described}"
    );
    let line = s.wait_for_text("#error", "Image", WAIT).await;
    assert!(line.contains("not created"), "error line {line:?}");
    // The focus went to the field at fault.
    let focused = s
        .execute("return document.activeElement.name", vec![])
        .await
        .unwrap();
    assert_eq!(focused, "image");
    shot(&s, "create-error").await;

    // A Docker-options string the server refuses: its error shows next to that field.
    type_into(&s, "input[name=image]", BUSYBOX).await;
    type_into(&s, "input[name=docker_options]", "-e A=1 --privileged").await;
    click(&s, "#create-submit").await;
    let msg = s
        .wait_for_text(
            "[data-field=docker_options] .field-error",
            "privileged",
            WAIT,
        )
        .await;
    assert!(!msg.contains("docker_options:"), "{msg}");
    assert!(
        s.find("[data-field=image] .field-error")
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .is_empty(),
        "the image's error is gone"
    );
    let focused = s
        .execute("return document.activeElement.name", vec![])
        .await
        .unwrap();
    assert_eq!(focused, "docker_options");
    shot(&s, "create-error-docker-options").await;
    type_into(&s, "input[name=docker_options]", "").await;

    // An entrypoint instance with an overridden entrypoint and args, one per line: it
    // prints a line, waits for the test's signal, prints another and exits.
    click(&s, "#mode-entrypoint").await;
    type_into(&s, "input[name=entrypoint]", "/bin/sh").await;
    let script = "echo \"hello from the gui\" $0; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo \"printed after follow\"";
    type_into(&s, "textarea[name=args]", &format!("-c\n{script}\nx y")).await;
    type_into(&s, "input[name=label]", "gui-entrypoint").await;
    // Only the entrypoint mode's fields show.
    assert!(!s
        .find("textarea[name=onstart]")
        .await
        .unwrap()
        .property("offsetParent")
        .await
        .unwrap()
        .is_object());
    shot(&s, "create").await;
    click(&s, "#create-submit").await;
    let ep = wait_instance_page(&s).await;
    wait_state(&s, &["running"], SLOW).await;
    let v = b.show(ep);
    assert_eq!(v["args"], serde_json::json!(["-c", script, "x y"]));
    // Running: Start does not apply (and says why); Stop and Reboot do.
    let (start_off, why) = disabled(&s, "#act-start").await;
    assert!(
        start_off && why.contains("already running"),
        "Start: {why:?}"
    );
    assert!(!disabled(&s, "#act-stop").await.0, "Stop is enabled");
    assert!(!disabled(&s, "#act-reboot").await.0, "Reboot is enabled");
    click(&s, "#log-follow").await;
    s.wait_for_text("#log-status", "Following", WAIT).await;
    s.wait_for_text("#log-output", "hello from the gui x y", WAIT)
        .await;
    let before = s.find("#log-output").await.unwrap().text().await.unwrap();
    assert!(!before.contains("printed after follow"), "{before:?}");
    // Only now does the instance print its second line: the followed view shows it.
    let container = v["container_id"].as_str().unwrap().to_string();
    docker(&["exec", &container, "touch", "/tmp/go"]);
    s.wait_for_text("#log-output", "printed after follow", WAIT)
        .await;
    wait_state(&s, &["exited (code 0)"], WAIT).await;
    s.wait_for_text("#log-status", "The log ended", WAIT).await;
    // Exited: Stop and Reboot do not apply; Start does.
    wait_enabled(&s, "#act-start", true).await;
    let (stop_off, why) = disabled(&s, "#act-stop").await;
    assert!(stop_off && why.contains("not running"), "Stop: {why:?}");
    assert!(disabled(&s, "#act-reboot").await.0, "Reboot is disabled");
    shot(&s, "instance-entrypoint").await;

    // An ssh instance: run the direct ssh command from its connect panel.
    nav(&s, "create", "Create an instance").await;
    click(&s, "#reset-form").await;
    type_into(&s, "input[name=image]", SSH_IMAGE).await;
    click(&s, "#mode-ssh").await;
    type_into(&s, "textarea[name=onstart]", "echo onstart says hi").await;
    type_into(&s, "input[name=label]", "gui-ssh").await;
    type_into(&s, "input[name=http_ports]", "7860").await;
    click(&s, "#create-submit").await;
    let ssh_id = wait_instance_page(&s).await;
    wait_state(&s, &["running"], SLOW).await;
    // The http port's link through the proxy, with its access token.
    let http_url = b.show(ssh_id)["http_urls"][0]["url"].clone();
    assert!(
        http_url.as_str().unwrap().contains("berth_token="),
        "{http_url}"
    );
    let href = s
        .wait_for(".connect ul.links a", WAIT)
        .await
        .property("href")
        .await
        .unwrap();
    assert_eq!(href, http_url);
    let direct = s.wait_for_text("#ssh-direct", "ssh -p", WAIT).await;
    let proxy = s.wait_for_text("#ssh-proxy", "ssh -p", WAIT).await;
    shot(&s, "instance-ssh").await;
    // The copy button copies (Clipboard API) or, where the page may not, selects the text.
    click(&s, "#ssh-direct + button").await;
    let copied = s
        .wait_until("the copy button to answer", WAIT, async || {
            let t = s
                .find("#ssh-direct + button")
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (t == "Copied" || t.starts_with("Selected")).then_some(t)
        })
        .await;
    if copied == "Copied" {
        let clip = s
            .execute("return navigator.clipboard.readText()", vec![])
            .await;
        if let Ok(text) = clip {
            assert_eq!(text, serde_json::json!(direct), "clipboard");
        }
    }
    let known_hosts = home.path().join("known_hosts");
    for cmd in [&direct, &proxy] {
        let out = run_copied_ssh(
            cmd,
            &keypair,
            &known_hosts,
            "echo ssh-from-the-gui $((6*7))",
        );
        assert!(
            out.status.success() && stdout(&out).trim() == "ssh-from-the-gui 42",
            "{cmd:?} printed {:?} / {:?}\n--- berth log ---\n{}",
            stdout(&out),
            stderr(&out),
            b.log()
        );
    }
    // The onstart log, followed in the logs view.
    click(&s, "#log-onstart").await;
    click(&s, "#log-follow").await;
    s.wait_for_text("#log-output", "onstart says hi", WAIT)
        .await;
    click(&s, "#log-stop").await;
    s.wait_for_text("#log-status", "Stopped following", WAIT)
        .await;

    // The CA link downloads the CA certificate (the PEM `berth cert` prints); the steps to
    // install it are beside it.
    click(&s, "#ca-link").await;
    let saved = downloads.join("berth-ca.crt");
    let pem = s
        .wait_until("the CA certificate to download", WAIT, async || {
            std::fs::read_to_string(&saved)
                .ok()
                .filter(|t| t.contains("-----END CERTIFICATE-----"))
        })
        .await;
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert_eq!(
        pem.trim(),
        b.ok(&["cert"]).trim(),
        "the GUI's CA is berth's"
    );
    click(&s, "#ca-steps summary").await;
    let steps = s.wait_for_text("#ca-steps", "Always Trust", WAIT).await;
    for want in [
        "update-ca-certificates",
        "certutil -d sql:$HOME/.pki/nssdb -A -t \"C,,\" -n berth-ca -i berth-ca.crt",
        "Keychain Access",
        "Trusted Root Certification Authorities",
        "certutil -addstore -f Root berth-ca.crt",
        "Trust this CA to identify websites",
    ] {
        assert!(steps.contains(want), "the CA steps lack {want:?}: {steps}");
    }
    s.execute(
        "document.getElementById('ca-steps').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    shot(&s, "instance-ca-steps").await;
    // The panel is rebuilt as the instance changes; the steps stay open.
    s.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();

    // Reboot, Stop and Start with the page's buttons; the badge follows.
    let started = b.show(ssh_id)["started_at"].clone();
    click(&s, "#act-reboot").await;
    s.wait_until("the reboot to restart the container", SLOW, async || {
        let v = b.show(ssh_id);
        (v["state"] == "running" && v["started_at"] != started).then_some(())
    })
    .await;
    wait_state(&s, &["running"], SLOW).await;
    click(&s, "#act-stop").await;
    wait_state(&s, &["stopped"], SLOW).await;
    assert_eq!(b.show(ssh_id)["state"], "stopped");
    wait_enabled(&s, "#act-start", true).await;
    let (stop_off, why) = disabled(&s, "#act-stop").await;
    assert!(
        stop_off && why.contains("not running (stopped)"),
        "Stop: {why:?}"
    );
    let (reboot_off, why) = disabled(&s, "#act-reboot").await;
    assert!(reboot_off && why.contains("use Start"), "Reboot: {why:?}");
    shot(&s, "instance-stopped").await;
    click(&s, "#act-start").await;
    wait_state(&s, &["loading", "connecting", "running"], WAIT).await;
    wait_state(&s, &["running"], SLOW).await;
    assert_eq!(b.show(ssh_id)["state"], "running");
    wait_enabled(&s, "#act-stop", true).await;
    assert!(
        s.find("#ca-steps")
            .await
            .unwrap()
            .property("open")
            .await
            .unwrap()
            == true,
        "the CA steps stay open while the page updates"
    );

    // A template made from an image, then launched through the template picker.
    nav(&s, "templates", "Templates").await;
    type_into(&s, "#from-image-form input[name=name]", "gui-argserver").await;
    type_into(&s, "#from-image-form input[name=image]", TEMPLATE_IMAGE).await;
    s.find("#from-image-form select[name=mode]")
        .await
        .unwrap()
        .send_keys("SSH")
        .await
        .unwrap();
    click(&s, "#from-image-form button[type=submit]").await;
    s.wait_for_text("#from-image-notes", "Template gui-argserver made", SLOW)
        .await;
    s.wait_for_text("table.list tbody", "gui-argserver", WAIT)
        .await;
    shot(&s, "templates").await;
    s.execute(
        "document.getElementById('from-image-notes').scrollIntoView({block: 'end'})",
        vec![],
    )
    .await
    .unwrap();
    shot(&s, "templates-notes").await;
    nav(&s, "create", "Create an instance").await;
    click(&s, "#reset-form").await;
    click(&s, "select[name=template] option[value=gui-argserver]").await;
    s.wait_until("the template to fill the form", WAIT, async || {
        let v = s
            .find("input[name=image]")
            .await
            .ok()?
            .property("value")
            .await
            .ok()?;
        (v == TEMPLATE_IMAGE).then_some(())
    })
    .await;
    let checked = s
        .find("#mode-ssh")
        .await
        .unwrap()
        .property("checked")
        .await
        .unwrap();
    assert_eq!(checked, true, "the template's ssh mode is chosen");
    let onstart = s
        .find("textarea[name=onstart]")
        .await
        .unwrap()
        .property("value")
        .await
        .unwrap();
    assert!(
        !onstart.as_str().unwrap().trim().is_empty(),
        "the image's command moved into the onstart script"
    );
    shot(&s, "create-from-template").await;
    click(&s, "#create-submit").await;
    let tpl_id = wait_instance_page(&s).await;
    wait_state(&s, &["running"], SLOW).await;
    let v = b.show(tpl_id);
    assert_eq!(v["image"], TEMPLATE_IMAGE);
    assert_eq!(v["mode"], "ssh");
    // The image's EXPOSEd port came along, and its command (moved into the onstart
    // script) serves there with exactly the image's arguments.
    s.wait_for_text(".connect table.ports", "8765/tcp", WAIT)
        .await;
    let port = v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["internal"] == 8765)
        .unwrap_or_else(|| panic!("no port 8765 in {v:#}"))["external"]
        .as_u64()
        .unwrap();
    let served = s
        .wait_until("argserver to answer on its port", SLOW, async || {
            let r = reqwest::get(format!("http://127.0.0.1:{port}/"))
                .await
                .ok()?;
            r.json::<serde_json::Value>().await.ok()
        })
        .await;
    assert_eq!(
        served,
        serde_json::json!({
            "argv": ["--greeting", "it's \"odd\" $HOME `x`", "a b", "back\\slash", "line\nbreak", ""],
            "cwd": "/srv/app dir",
        })
    );

    // A jupyter instance: its direct and proxy links.
    nav(&s, "create", "Create an instance").await;
    click(&s, "#reset-form").await;
    type_into(&s, "input[name=image]", JUPYTER_IMAGE).await;
    click(&s, "#mode-jupyter").await;
    click(&s, "input[name=jupyter_lab]").await;
    type_into(&s, "input[name=jupyter_dir]", "/root").await;
    click(&s, "#create-submit").await;
    let jupyter_id = wait_instance_page(&s).await;
    wait_state(&s, &["running"], SLOW).await;
    let v = b.show(jupyter_id);
    assert_eq!(
        (v["jupyter_lab"].clone(), v["jupyter_dir"].clone()),
        (true.into(), "/root".into())
    );
    for (text, want) in [
        ("direct", &v["jupyter_url"]),
        ("proxy", &v["proxy_jupyter_url"]),
    ] {
        let links = s.find_all(".connect a.url").await.unwrap();
        let mut found = false;
        for l in &links {
            if l.text().await.unwrap().contains(text) {
                assert_eq!(&l.property("href").await.unwrap(), want, "{text} link");
                found = true;
            }
        }
        assert!(found, "no Jupyter {text} link");
    }
    shot(&s, "instance-jupyter").await;

    // The list, live: every instance with its state, without reloading.
    nav(&s, "instances", "Instances").await;
    for id in [ep, ssh_id, tpl_id, jupyter_id] {
        s.wait_for(&format!("tr[data-key=\"{id}\"]"), WAIT).await;
    }
    let row = s
        .wait_for_text(&format!("tr[data-key=\"{ssh_id}\"]"), "running", WAIT)
        .await;
    assert!(row.contains("gui-ssh") && row.contains(SSH_IMAGE), "{row}");
    b.ok(&["stop", &ssh_id.to_string()]);
    s.wait_for_text(&format!("tr[data-key=\"{ssh_id}\"]"), "stopped", WAIT)
        .await;
    shot(&s, "instances").await;

    // Hosts.
    nav(&s, "hosts", "Hosts").await;
    let hosts = s.wait_for_text("table.list tbody", "e2e-host", WAIT).await;
    assert!(hosts.contains("online"), "{hosts}");
    assert!(
        hosts.contains(&format!("{}–{}", b.ports.0, b.ports.1)),
        "{hosts}"
    );
    shot(&s, "hosts").await;

    // Destroy asks first: cancelling keeps the instance, confirming destroys it.
    go(&s, &b, &format!("#/instances/{ep}")).await;
    wait_state(&s, &["exited"], WAIT).await;
    click(&s, "#act-destroy").await;
    s.wait_for_text("dialog.confirm", "cannot be undone", WAIT)
        .await;
    shot(&s, "destroy-confirm").await;
    click(&s, "#confirm-cancel").await;
    assert_eq!(b.show(ep)["id"], ep, "cancel keeps the instance");
    click(&s, "#act-destroy").await;
    click(&s, "#confirm-ok").await;
    s.wait_for_text("main h1", "Instances", WAIT).await;
    s.wait_until(
        "the destroyed instance to leave the list",
        WAIT,
        async || {
            s.find(&format!("tr[data-key=\"{ep}\"]"))
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    let gone = b.cli(&["show", &ep.to_string()]);
    assert!(!gone.status.success(), "instance {ep} still exists");

    // An instance that fails with a long reason: Start applies, Stop and Reboot do not.
    let long_image = "127.0.0.1:1/berth-test/an-image-that-does-not-exist-with-a-name-long-enough-to-wrap-over-several-lines/on/a/phone:tag";
    let failed = b.create(&[long_image]);
    b.wait_state(failed, "failed");

    // Phone size.
    set_viewport(&s, 390, 844).await;
    go(&s, &b, &format!("#/instances/{failed}")).await;
    wait_state(&s, &["failed"], WAIT).await;
    let reason = s
        .wait_for_text("#reason-text", "could not be pulled", WAIT)
        .await;
    assert!(reason.contains(long_image), "{reason}");
    assert!(
        !disabled(&s, "#act-start").await.0,
        "Start applies to a failed instance"
    );
    assert!(disabled(&s, "#act-stop").await.0, "Stop does not");
    assert!(disabled(&s, "#act-reboot").await.0, "Reboot does not");
    let size = || async {
        let v = s
            .execute(
                "const t = document.getElementById('reason-text');
                 const line = parseFloat(getComputedStyle(t).lineHeight);
                 return [t.getBoundingClientRect().height / line,
                         document.getElementById('state-reason').getBoundingClientRect().height];",
                vec![],
            )
            .await
            .unwrap();
        (v[0].as_f64().unwrap(), v[1].as_f64().unwrap())
    };
    let (lines, box_px) = size().await;
    assert!(
        lines <= 3.1,
        "the reason takes {lines} lines ({box_px}px) on a phone"
    );
    s.wait_for("#reason-more:not([hidden])", WAIT).await;
    shot(&s, "phone-instance-failed").await;
    click(&s, "#reason-more").await;
    let (lines, _) = size().await;
    assert!(
        lines > 3.5,
        "Show all shows the whole reason ({lines} lines)"
    );
    assert_eq!(
        s.find("#reason-more")
            .await
            .unwrap()
            .property("ariaExpanded")
            .await
            .unwrap(),
        "true"
    );
    shot(&s, "phone-instance-failed-all").await;

    go(&s, &b, "#/instances").await;
    s.wait_for(&format!("tr[data-key=\"{tpl_id}\"]"), WAIT)
        .await;
    shot(&s, "phone-instances").await;
    go(&s, &b, &format!("#/instances/{tpl_id}")).await;
    wait_state(&s, &["running"], WAIT).await;
    s.wait_for("#ssh-direct", WAIT).await;
    shot(&s, "phone-instance").await;
    go(&s, &b, "#/create").await;
    s.wait_for("input[name=image]", WAIT).await;
    shot(&s, "phone-create").await;
    let overflow = s
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow, 0, "the create page scrolls sideways on a phone");
}

/// A template's settings reach the instance exactly through the template picker: the form
/// sends the template's name and only what the user changed, and says what it keeps that
/// its fields cannot show. The Templates page shows every setting, edits a template without
/// touching what was not edited, saves the Create form as a template (offering to replace
/// one of the same name, whose error shows next to the name field) and deletes one.
#[tokio::test(flavor = "multi_thread")]
async fn gui_templates_keep_settings_exactly() {
    require_browser_tools();
    require_docker_and_images(&[BUSYBOX]);
    let b = Berth::up();
    let home = ScratchDir::new("gui-templates");
    let driver = Chromedriver::start(home.path()).await;
    let s = driver.chromium_session().await.expect("Chromium session");
    sign_in(&s, &b).await;

    // Templates whose arguments and env no one-per-line text field can hold.
    let env = serde_json::json!({ "ML": "x\ny", "PLAIN": "p q" });
    let cases = [
        (
            "lines",
            serde_json::json!(["two\nlines", "last"]),
            "2 arguments, one with a line break",
        ),
        (
            "trailing",
            serde_json::json!(["a", ""]),
            "2 arguments, one empty",
        ),
        ("nocmd", serde_json::json!([]), "an empty argument list"),
        (
            "cr",
            serde_json::json!(["a\rb"]),
            "one argument, one with a carriage return",
        ),
    ];
    for (name, args, _) in &cases {
        let (status, body) = api(
            &b,
            reqwest::Method::POST,
            "/api/v1/templates",
            Some(serde_json::json!({
                "name": name,
                "readme": format!("{name}: odd arguments"),
                "settings": {
                    "image": BUSYBOX, "mode": "entrypoint", "entrypoint": "/bin/echo",
                    "args": args, "env": env, "label": "tpl", "ports": ["7000/udp"],
                },
            })),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    for (n, (name, args, kept)) in cases.iter().enumerate() {
        go(&s, &b, "#/create").await;
        s.wait_for_text("main h1", "Create an instance", WAIT).await;
        click(&s, "#reset-form").await;
        click(&s, &format!("select[name=template] option[value={name}]")).await;
        s.wait_for_text("#template-readme", &format!("Template {name}"), WAIT)
            .await;
        assert_eq!(value(&s, "input[name=image]").await, BUSYBOX);
        assert_eq!(value(&s, "input[name=entrypoint]").await, "/bin/echo");
        // The arguments are not put in their field: it says they are kept, and how many.
        assert_eq!(value(&s, "textarea[name=args]").await, "");
        let note = s
            .wait_for_text("[data-kept=args]", "Kept from the template", WAIT)
            .await;
        assert!(note.contains(kept), "{name}: the note says {note:?}");
        // The env value with a line break is kept too; the other one shows.
        assert_eq!(value(&s, "textarea[name=env]").await, "PLAIN=p q");
        let note = s.wait_for_text("[data-kept=env]", "ML", WAIT).await;
        assert!(note.contains("a value with a line break"), "{note:?}");
        if n == 0 {
            s.execute(
                "document.querySelector('[data-field=args]').scrollIntoView()",
                vec![],
            )
            .await
            .unwrap();
            shot(&s, "create-from-template-kept").await;
            // Removing a template's variable is not something a request over it can say:
            // the form says so next to the field instead of sending it.
            type_into(&s, "textarea[name=env]", "").await;
            click(&s, "#create-submit").await;
            let err = s
                .wait_for_text("[data-field=env] .field-error", "PLAIN", WAIT)
                .await;
            assert!(err.contains("cannot be removed"), "{err}");
            type_into(&s, "textarea[name=env]", "PLAIN=p q").await;
        }

        // Change only the label: the request names the template and carries the label alone.
        let label = format!("gui-{name}");
        type_into(&s, "input[name=label]", &label).await;
        record_requests(&s).await;
        click(&s, "#create-submit").await;
        let id = wait_instance_page(&s).await;
        assert_eq!(
            sent(&s, "POST", "/api/v1/instances").await,
            vec![serde_json::json!({ "template": name, "label": label })],
            "{name}: the create request"
        );
        let v = b.show(id);
        assert_eq!(&v["args"], args, "{name}: the instance's args");
        assert_eq!(
            v["env"]["ML"], "x\ny",
            "{name}: the env value with a line break"
        );
        assert_eq!(v["env"]["PLAIN"], "p q");
        assert_eq!(v["label"], label.as_str());
        let v = b.wait_state(id, "exited");
        let container = v["container_id"].as_str().unwrap();
        let docker_args: serde_json::Value =
            serde_json::from_str(&inspect(container, "{{json .Args}}")).unwrap();
        assert_eq!(&docker_args, args, "{name}: the container's arguments");
    }

    // The template page shows every setting, the odd ones exactly.
    nav(&s, "templates", "Templates").await;
    click(&s, "a[aria-label='View template lines']").await;
    s.wait_for_text("main h1", "Template lines", WAIT).await;
    let view = s
        .wait_for_text("#template-settings", "/bin/echo", WAIT)
        .await;
    for want in [
        BUSYBOX,
        "entrypoint",
        "ML",
        "PLAIN",
        "p q",
        "7000/udp",
        "tpl",
        "lines: odd arguments",
    ] {
        assert!(view.contains(want), "the view lacks {want:?}: {view}");
    }
    let shown_args = s.find_all("#template-settings ol.args li").await.unwrap();
    assert_eq!(shown_args.len(), 2);
    assert_eq!(shown_args[0].text().await.unwrap(), "two\nlines");
    shot(&s, "template-view").await;

    // Edit it: a bad value shows next to its field; a label and readme change leaves the
    // settings the form cannot show exactly as they were.
    click(&s, "#tpl-edit").await;
    s.wait_for_text("main h1", "Edit template lines", WAIT)
        .await;
    s.wait_for_text(
        "[data-kept=args]",
        "2 arguments, one with a line break",
        WAIT,
    )
    .await;
    type_into(&s, "input[name=image]", "Not Valid").await;
    click(&s, "#tpl-save").await;
    let err = s
        .wait_for_text("[data-field=image] .field-error", "Not Valid", WAIT)
        .await;
    assert!(!err.starts_with("settings."), "{err}");
    type_into(&s, "input[name=image]", BUSYBOX).await;
    type_into(&s, "input[name=label]", "edited").await;
    type_into(&s, "textarea[name=readme]", "edited in the GUI").await;
    s.execute(
        "document.querySelector('[data-field=args]').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    shot(&s, "template-edit").await;
    record_requests(&s).await;
    click(&s, "#tpl-save").await;
    s.wait_for_text("main h1", "Template lines", WAIT).await;
    s.wait_for_text("#template-settings", "edited in the GUI", WAIT)
        .await;
    assert_eq!(sent(&s, "PUT", "/api/v1/templates/lines").await.len(), 1);
    let (_, t) = api(&b, reqwest::Method::GET, "/api/v1/templates/lines", None).await;
    assert_eq!(t["readme"], "edited in the GUI");
    assert_eq!(t["settings"]["label"], "edited");
    assert_eq!(
        t["settings"]["args"],
        serde_json::json!(["two\nlines", "last"])
    );
    assert_eq!(t["settings"]["env"], env);
    assert_eq!(t["settings"]["ports"], serde_json::json!(["7000/udp"]));

    // Save the Create form (template cr with a new label) as a new template.
    go(&s, &b, "#/create/cr").await;
    s.wait_for_text("#template-readme", "Template cr", WAIT)
        .await;
    type_into(&s, "input[name=label]", "copied").await;
    click(&s, "#save-template").await;
    s.wait_for_text("main h1", "Templates", WAIT).await;
    s.wait_for_text("#draft-summary", "template cr with your changes", WAIT)
        .await;
    type_into(&s, "#save-template-form input[name=name]", "cr-copy").await;
    type_into(
        &s,
        "#save-template-form textarea[name=readme]",
        "a copy of cr",
    )
    .await;
    click(&s, "#save-template-form button[type=submit]").await;
    s.wait_for("tr[data-key='cr-copy']", WAIT).await;
    let (_, t) = api(&b, reqwest::Method::GET, "/api/v1/templates/cr-copy", None).await;
    assert_eq!(t["settings"]["args"], serde_json::json!(["a\rb"]));
    assert_eq!(t["settings"]["env"], env);
    assert_eq!(t["settings"]["label"], "copied");
    shot(&s, "templates-saved").await;

    // Saving under a name that exists: the error shows next to the name field, and the
    // GUI offers to replace that template.
    go(&s, &b, "#/create").await;
    type_into(&s, "input[name=label]", "replaced").await;
    click(&s, "#save-template").await;
    s.wait_for_text("main h1", "Templates", WAIT).await;
    type_into(&s, "#save-template-form input[name=name]", "cr-copy").await;
    click(&s, "#save-template-form button[type=submit]").await;
    let err = s
        .wait_for_text(
            "#save-template-form [data-field=name] .field-error",
            "already exists",
            WAIT,
        )
        .await;
    assert!(err.contains("cr-copy"), "{err}");
    let invalid = s
        .find("#save-template-form input[name=name]")
        .await
        .unwrap()
        .property("ariaInvalid")
        .await
        .unwrap();
    assert_eq!(invalid, "true");
    s.wait_for_text("dialog.confirm", "Replace its settings", WAIT)
        .await;
    shot(&s, "templates-replace-confirm").await;
    click(&s, "#confirm-cancel").await;
    let (_, t) = api(&b, reqwest::Method::GET, "/api/v1/templates/cr-copy", None).await;
    assert_eq!(t["settings"]["label"], "copied", "cancel replaces nothing");
    click(&s, "#save-template-form button[type=submit]").await;
    s.wait_for_text("dialog.confirm", "Replace its settings", WAIT)
        .await;
    click(&s, "#confirm-ok").await;
    s.wait_until("the template to be replaced", WAIT, async || {
        let (_, t) = api(&b, reqwest::Method::GET, "/api/v1/templates/cr-copy", None).await;
        (t["settings"]["label"] == "replaced").then_some(t)
    })
    .await;
    let (_, t) = api(&b, reqwest::Method::GET, "/api/v1/templates/cr-copy", None).await;
    assert_eq!(t["settings"]["args"], serde_json::json!(["a\rb"]));
    assert_eq!(t["readme"], "a copy of cr", "the readme is kept");

    // Delete a template: asked first, then gone from the list and the API.
    click(&s, "button[aria-label='Delete template cr-copy']").await;
    s.wait_for_text("dialog.confirm", "Delete template cr-copy", WAIT)
        .await;
    click(&s, "#confirm-ok").await;
    s.wait_until("the template to leave the list", WAIT, async || {
        s.find("tr[data-key='cr-copy']")
            .await
            .is_err()
            .then_some(())
    })
    .await;
    let (status, _) = api(&b, reqwest::Method::GET, "/api/v1/templates/cr-copy", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    shot(&s, "templates-deleted").await;

    // Phone size: the template's page and editor read without sideways scrolling.
    set_viewport(&s, 390, 844).await;
    go(&s, &b, "#/template/lines").await;
    s.wait_for_text("#template-settings", "/bin/echo", WAIT)
        .await;
    shot(&s, "phone-template-view").await;
    go(&s, &b, "#/template/lines/edit").await;
    s.wait_for_text("[data-kept=args]", "Kept from the template", WAIT)
        .await;
    shot(&s, "phone-template-edit").await;
    let overflow = s
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        overflow, 0,
        "the template editor scrolls sideways on a phone"
    );
}

/// Runs an `ssh -p PORT root@HOST` command as copied from the GUI, with the test's key
/// and non-interactive options appended, and `remote` as the command.
fn run_copied_ssh(
    copied: &str,
    key: &KeyPair,
    known_hosts: &std::path::Path,
    remote: &str,
) -> std::process::Output {
    let mut words = copied.split_whitespace();
    assert_eq!(words.next(), Some("ssh"), "{copied}");
    let mut cmd = Command::new("ssh");
    cmd.args(words)
        .arg("-i")
        .arg(&key.private)
        .args(["-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"])
        .args(["-o", "LogLevel=ERROR"])
        .arg(remote)
        .stdin(Stdio::null());
    cmd.output().expect("ssh (openssh-client) is needed")
}

#[tokio::test(flavor = "multi_thread")]
async fn keyboard_sign_in_survives_a_restart_and_signs_out() {
    require_browser_tools();
    let mut b = Berth::up();
    let home = ScratchDir::new("gui-keys");
    let driver = Chromedriver::start(home.path()).await;
    let s = driver.chromium_session().await.expect("Chromium session");
    go(&s, &b, "#/hosts").await;
    s.wait_for("input[name=api_key]", WAIT).await;

    // Tab until the key field has the focus (no clicks), type the key, press Enter.
    let mut tabs = 0;
    loop {
        let name = s
            .execute("return document.activeElement.name || ''", vec![])
            .await
            .unwrap();
        if name == "api_key" {
            break;
        }
        assert!(tabs < 10, "Tab never reached the API key field");
        s.press_keys(keys::TAB).await.unwrap();
        tabs += 1;
    }
    s.press_keys(&b.admin_key).await.unwrap();
    s.press_keys(keys::ENTER).await.unwrap();
    // The page asked for (#/hosts) shows after signing in.
    s.wait_for_text("main h1", "Hosts", WAIT).await;
    s.wait_for_text("table.list tbody", "e2e-host", WAIT).await;

    // The focus is visible: a focused link has an outline.
    let outline = s
        .execute(
            "const a = document.querySelector('#nav a[data-page=keys]'); a.focus();
             return getComputedStyle(a).outlineStyle;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(outline, "solid", "focused links show an outline");
    // Keyboard navigation: Enter on a focused link opens its page, whose heading takes the
    // focus with no focus ring (it is not a control).
    s.press_keys(keys::ENTER).await.unwrap();
    s.wait_for_text("main h1", "SSH keys", WAIT).await;
    assert_heading_focused_without_ring(&s).await;
    shot(&s, "keys-after-keyboard-navigation").await;

    // The session is in the store: a server restart signs nobody out.
    b.restart();
    s.goto(&format!("{}/#/instances", b.url)).await.unwrap();
    s.wait_for_text("main h1", "Instances", WAIT).await;
    assert!(s.find("input[name=api_key]").await.is_err());

    // Sign out: back to the sign-in form, and the session no longer works.
    click(&s, "#signout").await;
    s.wait_for("input[name=api_key]", WAIT).await;
    s.goto(&format!("{}/#/instances", b.url)).await.unwrap();
    s.wait_for("input[name=api_key]", WAIT).await;
    let me = s
        .execute("return fetch('/api/v1/me').then((r) => r.status)", vec![])
        .await
        .unwrap();
    assert_eq!(me, 401);
}

#[tokio::test]
async fn session_cookie_and_csrf() {
    let b = Berth::up();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", b.url);
    let host = b.url.trim_start_matches("http://").to_string();

    // The GUI: HTML and modules with their types, under a strict CSP.
    let index = http.get(url("/")).send().await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    let header = |r: &reqwest::Response, h: &str| {
        r.headers()
            .get(h)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert!(header(&index, "content-type").starts_with("text/html"));
    let csp = header(&index, "content-security-policy");
    assert!(
        csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let html = index.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains(" style="),
        "inline code: {html}"
    );
    for (file, ty) in [
        ("app.js", "text/javascript"),
        ("instances.js", "text/javascript"),
        ("app.css", "text/css"),
    ] {
        let r = http.get(url(&format!("/ui/{file}"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{file}");
        assert!(header(&r, "content-type").starts_with(ty), "{file}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    }
    let missing = http.get(url("/ui/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Signing in: a wrong key is 401; the right one sets the cookie.
    let sign_in = |extra: Vec<(&'static str, String)>, key: String| {
        let mut req = http
            .post(url("/api/v1/session"))
            .json(&serde_json::json!({ "api_key": key }));
        for (k, v) in extra {
            req = req.header(k, v);
        }
        req.send()
    };
    let bad = sign_in(vec![], "berth_wrong".into()).await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let ok = sign_in(vec![], b.admin_key.clone()).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let set_cookie = header(&ok, "set-cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=604800"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain http: {set_cookie}");
    let me: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(me["name"], "admin");
    let proof = me["proof"].as_str().unwrap().to_string();
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("berth_session=") && cookie.len() > 40);
    // Behind a TLS-terminating proxy the cookie is Secure.
    let tls = sign_in(
        vec![("x-forwarded-proto", "https".into())],
        b.admin_key.clone(),
    )
    .await
    .unwrap();
    assert!(header(&tls, "set-cookie").contains("; Secure"));
    // Another site's page cannot sign anyone in.
    let cross = sign_in(
        vec![("origin", "http://evil.example".into())],
        b.admin_key.clone(),
    )
    .await
    .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);

    // The cookie alone is not enough: an instance's web server on the same host may see it
    // (browsers send a host's cookies to all its ports), so it takes the proof too.
    for bad in [None, Some("0".repeat(64))] {
        let mut req = http.get(url("/api/v1/me")).header("cookie", &cookie);
        if let Some(p) = bad {
            req = req.header("x-berth-session-proof", p);
        }
        assert_eq!(req.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    // The cookie with its proof authenticates reads…
    let me = http
        .get(url("/api/v1/me"))
        .header("cookie", &cookie)
        .header("x-berth-session-proof", &proof)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    // …and writes from the server's own pages, not from another origin.
    let add_key = |origin: Option<String>| {
        let mut req = http
            .post(url("/api/v1/keys"))
            .header("cookie", &cookie)
            .header("x-berth-session-proof", &proof)
            .json(&serde_json::json!({ "key": "not a key" }));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    let evil = add_key(Some("http://evil.example".into())).await.unwrap();
    assert_eq!(evil.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = evil.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("cross-site"),
        "{body}"
    );
    let null = add_key(Some("null".into())).await.unwrap();
    assert_eq!(null.status(), StatusCode::FORBIDDEN);
    let same = add_key(Some(format!("http://{host}"))).await.unwrap();
    assert_eq!(
        same.status(),
        StatusCode::BAD_REQUEST,
        "past auth: the key is bad"
    );
    let no_origin = add_key(None).await.unwrap();
    assert_eq!(no_origin.status(), StatusCode::BAD_REQUEST);
    // A bearer key is not a browser's: no Origin rule.
    let bearer = http
        .post(url("/api/v1/keys"))
        .bearer_auth(&b.admin_key)
        .header("origin", "http://evil.example")
        .json(&serde_json::json!({ "key": "not a key" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::BAD_REQUEST);

    // Signing out ends the session (from another origin it is refused).
    let out = |origin: &str| {
        http.delete(url("/api/v1/session"))
            .header("cookie", &cookie)
            .header("x-berth-session-proof", &proof)
            .header("origin", origin.to_string())
            .send()
    };
    assert_eq!(
        out("http://evil.example").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let gone = out(&format!("http://{host}")).await.unwrap();
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    assert!(header(&gone, "set-cookie").contains("Max-Age=0"));
    let me = http
        .get(url("/api/v1/me"))
        .header("cookie", &cookie)
        .header("x-berth-session-proof", &proof)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
}
