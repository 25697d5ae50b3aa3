//! Caddy's `forward_auth` in front of a backend, with fraudgate's
//! `/v1/auth` as the auth service: the real Debian caddy (its
//! `forward_auth` speaks Traefik's ForwardAuth protocol: the original
//! request's headers, `X-Forwarded-Uri`, `X-Forwarded-For`; a 2xx lets the
//! request through), started with its own config on random ports and
//! importing the shipped `deploy/caddy/fraudgate.caddy` as docs/doors.md
//! says to. `.ci/run` installs it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::*;

struct Caddy(Child);

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
#[cfg_attr(no_caddy, ignore = "caddy is not installed (Debian: caddy)")]
async fn caddy_forward_auth_lets_clean_clients_through_and_blocks_flagged_ones() {
    let Some(caddy) = tool("caddy") else { return };
    let app = spawn_app_with(|c| c.server.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    app.mock.on_ip("127.0.0.66", Reply::tags("datacenter"));
    app.mock
        .on_ip("127.0.0.67", Reply::delayed(30, Reply::tags("datacenter")));
    let dir = temp_dir("caddy");
    let (front, backend) = (free_port(), free_port());
    let conf = format!(
        r#"{{
    admin off
    auto_https off
}}

# The protected application: shows the verdict Caddy added.
http://127.0.0.1:{backend} {{
    respond "backend: {{http.request.header.X-Fraudgate-Decision}} [{{http.request.header.X-Fraudgate-Tags}}]" 200
}}

http://127.0.0.1:{front} {{
    # The file the docs tell users to import, as shipped.
    import {snippet} 127.0.0.1:{fg}
    reverse_proxy 127.0.0.1:{backend}
}}
"#,
        fg = app.port,
        snippet = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/caddy/fraudgate.caddy"),
    );
    let conf_path = dir.join("Caddyfile");
    std::fs::write(&conf_path, conf).unwrap();
    let _caddy = Caddy(
        Command::new(caddy)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&conf_path)
            // Caddy's own files (autosave, storage) in the test's directory.
            .env("HOME", &dir)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("caddy starts"),
    );
    let url = format!("http://127.0.0.1:{front}/shop?offer_id=34713&affiliate_id=6251");
    // Each visitor connects from an address of its own (all of 127/8 is
    // loopback): Caddy sets X-Forwarded-For from the connection, as it
    // does for a visitor it does not trust, and fraudgate trusts Caddy
    // (127.0.0.1) for it.
    let visitor = |ip: [u8; 4]| {
        let http = reqwest::Client::builder()
            .no_proxy()
            .user_agent(UA)
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap();
        http.get(&url)
    };
    eventually(Duration::from_secs(10), || async {
        visitor([127, 0, 0, 5]).send().await.ok()
    })
    .await;

    let r = visitor([127, 0, 0, 5]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        "backend: allow []",
        "the verdict reached the backend (copy_headers)"
    );
    let p = app.mock.last_params("127.0.0.5").unwrap();
    assert!(
        p.contains(&("affiliate_id".into(), "6251".into())),
        "the visitor from X-Forwarded-For, the query from X-Forwarded-Uri: {p:?}"
    );

    let r = visitor([127, 0, 0, 66]).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-fraudgate-tags"], "datacenter");
    assert!(!r.text().await.unwrap().contains("backend"));
    let p = app.mock.last_params("127.0.0.66").unwrap();
    assert!(
        p.contains(&("offer_id".into(), "34713".into())),
        "from X-Forwarded-Uri"
    );

    // A visitor's own X-Forwarded-For is not believed: Caddy replaces it.
    let r = visitor([127, 0, 0, 9])
        .header("x-forwarded-for", "127.0.0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(app.mock.last_params("127.0.0.9").is_some());

    // Nor its X-Fraudgate-Deadline-Ms and event type (they would be
    // believed from Caddy): RT is asked about a click, the block stands.
    let r = visitor([127, 0, 0, 67])
        .header("x-fraudgate-deadline-ms", "0")
        .header("x-fraudgate-event-type", "impression")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let p = app.mock.last_params("127.0.0.67").unwrap();
    assert!(p.contains(&("event_type".into(), "click".into())));

    // Nor can it forge the verdict the backend sees (a clean verdict's
    // tags are empty: nothing of the visitor's may stand in for them).
    let r = visitor([127, 0, 0, 8])
        .header("x-fraudgate-decision", "forged")
        .header("x-fraudgate-tags", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "backend: allow []");

    // Nor choose the URI scored: another proxy's original-URI headers
    // (read before X-Forwarded-Uri) are deleted.
    // (A visitor each: a second request of one would be a cache hit.)
    for (last, header) in [(10, "x-original-uri"), (11, "x-original-url")] {
        let r = visitor([127, 0, 0, last])
            .header(header, "/shop?offer_id=1&affiliate_id=chosen")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let p = app.mock.last_params(&format!("127.0.0.{last}")).unwrap();
        assert!(
            p.contains(&("affiliate_id".into(), "6251".into())),
            "{header}: {p:?}"
        );
    }

    // A crawler UA is blocked by local rules, no RT call.
    let before = app.mock.calls();
    let r = visitor([127, 0, 0, 7])
        .header("user-agent", "python-requests/2.31")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(app.mock.calls(), before);
}
