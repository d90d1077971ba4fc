//! The console in a real browser (Debian's Chromium, driven through chromedriver by WebDriver): an
//! operator signs in, sees both regions and both applications, stops and starts the generator,
//! rotates trade matching from the console and watches its steps complete and the lamps change,
//! and finds the run in the audit trail; a viewer sees the same and cannot act. Screenshots are
//! kept as artefacts (printed at the end).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use keel_system_tests::{
    control_name, free_port, register_child, App, Gate, Stack, StackOptions, EAST, WEST,
};
use serde_json::{json, Value};

/// chromedriver on a port of its own, stopped when dropped.
struct Driver {
    url: String,
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn chromedriver() -> Driver {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver; make test installs it)");
    register_child(&child);
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while reqwest::get(format!("{url}/status")).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver { url, child }
}

async fn browser(driver: &Driver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1100"],
        }),
    );
    // chromedriver is on loopback: plain HTTP.
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Where screenshots go: `$KEEL_ARTEFACTS/console` (`make test` sets it), else the system's
/// temporary folder.
fn artefacts() -> PathBuf {
    let dir = std::env::var_os("KEEL_ARTEFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("keel-artefacts"))
        .join("console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Client, name: &str) -> PathBuf {
    let path = artefacts().join(format!("{name}.png"));
    std::fs::write(&path, browser.screenshot().await.unwrap()).unwrap();
    path
}

/// Polls `script` (a JavaScript expression) until it is true, or fails naming `what`.
async fn until(browser: &Client, what: &str, script: &str, bound: Duration) {
    let started = Instant::now();
    loop {
        let value = browser
            .execute(&format!("return !!({script});"), vec![])
            .await
            .unwrap();
        if value == Value::Bool(true) {
            return;
        }
        if started.elapsed() > bound {
            let _ = screenshot(browser, &format!("failed-{}", what.replace(' ', "-"))).await;
            panic!("{what}: not seen within {bound:?} ({script})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn lamp(app: App, region: &str, gate: &str) -> String {
    format!(
        "document.querySelector('tr[data-app=\"{}\"][data-region=\"{region}\"] .lamp[title^=\"{gate}\"]')?.dataset.state",
        app.name()
    )
}

async fn sign_in(browser: &Client, console: &str, name: &str, password: &str) {
    browser.goto(console).await.unwrap();
    // Signed out, the console sends the browser to sign in.
    until(
        browser,
        "the sign-in page",
        "location.pathname === '/login'",
        Duration::from_secs(10),
    )
    .await;
    browser
        .find(Locator::Css("input[name=name]"))
        .await
        .unwrap()
        .send_keys(name)
        .await
        .unwrap();
    browser
        .find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    browser
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        browser,
        "both regions and both applications",
        "document.querySelectorAll('#overview tr[data-app]').length === 4",
        Duration::from_secs(20),
    )
    .await;
}

#[tokio::test]
async fn an_operator_rotates_from_the_console_and_a_viewer_cannot_act() {
    let options = StackOptions {
        replicated: true,
        ..StackOptions::two_regions()
    };
    let stack = Stack::start("console", options).await.unwrap();
    let console = stack
        .start_console(Duration::from_millis(500))
        .await
        .unwrap();
    let driver = chromedriver().await;
    let arc = stack.arc_client();
    let mut shots = Vec::new();

    // The operator.
    let ops = browser(&driver).await;
    sign_in(&ops, &console.url, "ops", "keel-local-operator").await;
    until(
        &ops,
        "trade matching active in us-east-1",
        &format!("{} === 'On'", lamp(App::TradeMatching, EAST, "traffic")),
        Duration::from_secs(10),
    )
    .await;
    until(&ops, "every safety rule holding", "document.querySelectorAll('#rules .rule.holds').length > 0 && document.querySelectorAll('#rules .rule:not(.holds)').length === 0", Duration::from_secs(10)).await;
    until(
        &ops,
        "every stage of both regions counted",
        "document.querySelectorAll('#stages tr[data-service]').length === 10",
        Duration::from_secs(10),
    )
    .await;
    until(
        &ops,
        "the reconciliation gaps (or why they cannot be read)",
        "document.querySelector('#gaps') !== null",
        Duration::from_secs(10),
    )
    .await;
    shots.push(screenshot(&ops, "1-overview").await);

    // The generator, stopped and started again from its buttons.
    ops.find(Locator::Id("generator-stop"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &ops,
        "the generator's lamp Off",
        "document.querySelector('#generator .lamp')?.dataset.state === 'Off'",
        Duration::from_secs(10),
    )
    .await;
    assert!(!arc.get("generator").await.unwrap());
    ops.find(Locator::Id("generator-start"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &ops,
        "the generator's lamp On",
        "document.querySelector('#generator .lamp')?.dataset.state === 'On'",
        Duration::from_secs(10),
    )
    .await;
    assert!(arc.get("generator").await.unwrap());

    // A planned rotation of trade matching to us-west-2: the plan first, then the confirmation.
    ops.find(Locator::Css("#move select[name=app]"))
        .await
        .unwrap()
        .select_by_value("trade-matching")
        .await
        .unwrap();
    ops.find(Locator::Css("#move select[name=to]"))
        .await
        .unwrap()
        .select_by_value(WEST)
        .await
        .unwrap();
    ops.find(Locator::Css("#move select[name=mode]"))
        .await
        .unwrap()
        .select_by_value("planned")
        .await
        .unwrap();
    ops.find(Locator::Id("plan"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(&ops, "the plan and its confirmation", "document.querySelector('#confirm') !== null && document.querySelectorAll('#dialog .plan li').length > 5", Duration::from_secs(20)).await;
    shots.push(screenshot(&ops, "2-plan").await);
    assert!(
        arc.states()
            .await
            .unwrap()
            .allows(App::TradeMatching, Gate::Traffic, EAST),
        "showing the plan changed something"
    );
    ops.find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &ops,
        "the run started",
        "document.querySelector('#run .run') !== null",
        Duration::from_secs(20),
    )
    .await;
    shots.push(screenshot(&ops, "3-running").await);
    until(
        &ops,
        "the run done",
        "document.querySelector('#run .run')?.dataset.state === 'done'",
        Duration::from_secs(240),
    )
    .await;
    until(&ops, "every step done", "document.querySelectorAll('#run li.step').length > 5 && document.querySelectorAll('#run li.step:not(.done)').length === 0", Duration::from_secs(5)).await;
    until(
        &ops,
        "the RTO reported",
        "document.querySelector('#run .report')?.textContent.includes('RTO')",
        Duration::from_secs(5),
    )
    .await;
    until(
        &ops,
        "trade matching's lamps moved to us-west-2",
        &format!(
            "{} === 'On' && {} === 'On' && {} === 'Off'",
            lamp(App::TradeMatching, WEST, "traffic"),
            lamp(App::TradeMatching, WEST, "processing"),
            lamp(App::TradeMatching, EAST, "traffic")
        ),
        Duration::from_secs(10),
    )
    .await;
    let states = arc.states().await.unwrap();
    assert!(states.is_on(&control_name(App::TradeMatching, Gate::Processing, WEST)));
    assert!(!states.is_on(&control_name(App::TradeMatching, Gate::Processing, EAST)));
    until(&ops, "the rotation in the audit trail", "[...document.querySelectorAll('#trail tr.succeeded')].some(r => r.textContent.includes('rotate trade-matching to us-west-2') && r.textContent.includes('RTO'))", Duration::from_secs(15)).await;
    shots.push(screenshot(&ops, "4-rotated").await);
    ops.close().await.unwrap();

    // The viewer: sees everything, every button disabled, and the console refuses it anyway.
    let viewer = browser(&driver).await;
    sign_in(&viewer, &console.url, "viewer", "keel-local-viewer").await;
    until(
        &viewer,
        "every action button disabled",
        "[...document.querySelectorAll('#actions button')].every(b => b.disabled)",
        Duration::from_secs(5),
    )
    .await;
    let refused = viewer
        .execute_async(
            "const done = arguments[0]; fetch('/actions/generator', {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded', 'hx-request': 'true'}, body: 'on=false'}).then(r => r.text().then(t => done([r.status, t])));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(refused[0], 403, "{refused}");
    assert!(
        refused[1].as_str().unwrap().contains("viewer is a viewer"),
        "{refused}"
    );
    assert!(
        arc.get("generator").await.unwrap(),
        "a viewer stopped the generator"
    );
    until(&viewer, "the viewer's refusal in the audit trail", "[...document.querySelectorAll('#trail tr.refused')].some(r => r.textContent.includes('viewer') && r.textContent.includes('stop the generator'))", Duration::from_secs(15)).await;
    shots.push(screenshot(&viewer, "5-viewer").await);
    viewer.close().await.unwrap();

    for shot in shots {
        println!("console screenshot: {}", shot.display());
    }
}
