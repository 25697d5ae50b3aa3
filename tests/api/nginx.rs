//! nginx `auth_request` in front of a backend, with fraudgate as the auth
//! service: the real Debian nginx, started with its own config on random
//! ports, including the shipped `deploy/nginx/fraudgate-auth.conf` as the
//! README and docs/doors.md say to. `.ci/run` installs it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::*;

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM lets the master stop its workers; a KILL would orphan them.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[tokio::test]
#[cfg_attr(no_nginx, ignore = "nginx is not installed (Debian: nginx-light)")]
async fn nginx_auth_request_lets_clean_clients_through_and_blocks_flagged_ones() {
    let Some(nginx) = tool("nginx") else { return };
    let app = spawn_app_with(|c| c.server.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    app.mock.on_ip("203.0.113.66", Reply::tags("datacenter"));
    let dir = temp_dir("nginx");
    for d in ["tmp", "logs"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let (front, backend) = (free_port(), free_port());
    let conf = format!(
        r#"
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;

    upstream fraudgate {{ server 127.0.0.1:{fg}; keepalive 8; }}

    # The protected application.
    server {{
        listen 127.0.0.1:{backend};
        location / {{ return 200 "backend: hello\n"; }}
    }}

    server {{
        listen 127.0.0.1:{front};
        location / {{
            auth_request /_fraudgate;
            auth_request_set $fg_decision $upstream_http_x_fraudgate_decision;
            auth_request_set $fg_tags $upstream_http_x_fraudgate_tags;
            add_header X-Fraudgate-Decision $fg_decision always;
            add_header X-Fraudgate-Tags $fg_tags always;
            proxy_pass http://127.0.0.1:{backend};
        }}
        # The file the docs tell users to include, as shipped.
        include {snippet};
    }}
}}
"#,
        dir = dir.display(),
        fg = app.port,
        snippet = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/nginx/fraudgate-auth.conf"
        ),
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let _nginx = Nginx(
        Command::new(nginx)
            .args([
                "-p",
                dir.to_str().unwrap(),
                "-c",
                conf_path.to_str().unwrap(),
                "-e",
                "logs/error.log",
                "-g",
                "daemon off;",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts"),
    );
    let http = http();
    let url = format!("http://127.0.0.1:{front}/shop?offer_id=34713&affiliate_id=6251");
    eventually(Duration::from_secs(10), || async {
        http.get(&url).send().await.ok()
    })
    .await;

    // The client as nginx sees it comes first in X-Forwarded-For; nginx
    // (trusted) appends its own peer.
    let r = http
        .get(&url)
        .header("x-forwarded-for", "203.0.113.5")
        .header("user-agent", UA)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-fraudgate-decision"], "allow");
    assert_eq!(r.text().await.unwrap(), "backend: hello\n");

    let r = http
        .get(&url)
        .header("x-forwarded-for", "203.0.113.66")
        .header("user-agent", UA)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["x-fraudgate-tags"],
        "datacenter",
        "auth_request_set read the tags"
    );
    assert!(!r.text().await.unwrap().contains("backend"));

    let p = app.mock.last_params("203.0.113.66").unwrap();
    assert!(
        p.contains(&("offer_id".into(), "34713".into())),
        "from X-Original-URI"
    );

    // A visitor's own X-Fraudgate-Deadline-Ms does not get through nginx
    // (it would be trusted if it did): RT is asked, the block stands.
    app.mock.on_ip(
        "203.0.113.67",
        Reply::delayed(30, Reply::tags("datacenter")),
    );
    let r = http
        .get(&url)
        .header("x-forwarded-for", "203.0.113.67")
        .header("x-fraudgate-deadline-ms", "0")
        .header("x-fraudgate-event-type", "impression")
        .header("user-agent", UA)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let p = app.mock.last_params("203.0.113.67").unwrap();
    assert!(p.contains(&("event_type".into(), "click".into())));

    // A crawler UA is blocked by local rules, no RT call.
    let before = app.mock.calls();
    let r = http
        .get(&url)
        .header("x-forwarded-for", "203.0.113.7")
        .header("user-agent", "python-requests/2.31")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(app.mock.calls(), before);
}
