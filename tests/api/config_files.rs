//! Where the binary looks for things: relative paths in a config file are
//! read from that file's directory, and the CLI says so when there is no
//! decision log where it looks.

use std::process::Command;

use crate::helpers::*;

/// Runs the binary in `cwd`; exit code, stdout, stderr.
fn run(cwd: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fraudgate"))
        .args(args)
        .current_dir(cwd)
        .env_remove("FRAUDGATE_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn relative_paths_in_a_config_file_are_read_from_its_directory() {
    let dir = temp_dir("relcfg");
    let elsewhere = temp_dir("relcwd");
    std::fs::create_dir_all(dir.join("lists")).unwrap();
    std::fs::write(dir.join("lists/block.txt"), "192.0.2.7\n").unwrap();
    std::fs::write(
        dir.join("fraudgate.toml"),
        "[decision_log]\npath = \"decisions\"\n\n[[rules.lists]]\nname = \"blocklist\"\naction = \"block\"\nfile = \"lists/block.txt\"\n",
    )
    .unwrap();
    let config = dir.join("fraudgate.toml");
    let config = config.to_str().unwrap();
    // Found from another working directory: the list is read from the
    // config's directory.
    let (code, out, err) = run(&elsewhere, &["check-config", "--config", config]);
    assert_eq!(code, Some(0), "{out}{err}");
    // The decision log is looked for there too, and its absence named.
    let (code, _, err) = run(&elsewhere, &["query", "all", "--config", config]);
    assert_eq!(code, Some(2), "{err}");
    let want = dir.join("decisions").display().to_string();
    assert!(err.contains(&format!("no decision log at {want}")), "{err}");
}

#[test]
fn the_cli_says_when_there_is_no_decision_log_where_it_looks() {
    let empty = temp_dir("nolog");
    let (code, out, err) = run(&empty, &["query", "all"]);
    assert_eq!(code, Some(2), "{out}{err}");
    let want = empty.join("data/decisions").display().to_string();
    assert!(err.contains(&format!("no decision log at {want}")), "{err}");
    assert!(out.is_empty(), "no table of 0 rows: {out}");
    let (code, _, err) = run(&empty, &["report", "fraud"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no decision log at"), "{err}");
}

/// A reload re-reads rule and list files, not the config file: when the
/// file changed since startup (a new `[[feeds]]`), the admin reload answers
/// 409 naming the sections that need a restart, and SIGHUP logs it.
#[tokio::test]
async fn a_reload_names_config_changes_that_need_a_restart() {
    let dir = temp_dir("reloadcfg");
    let config = dir.join("fraudgate.toml");
    std::fs::write(&config, "[upstream]\ntimeout_ms = 250\n").unwrap();
    let p = crate::binary::spawn_binary_args(
        &["--config", config.to_str().unwrap()],
        &[("FRAUDGATE_AUTH__ADMIN_KEYS", ADMIN_KEY)],
    );
    let port = crate::binary::listening_port(&p).await;
    let reload = || async {
        let r = http()
            .post(format!("http://127.0.0.1:{port}/v1/admin/reload"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), json(r).await)
    };
    let (s, v) = reload().await;
    assert_eq!((s, &v["reloaded"]), (200, &serde_json::json!(0)), "{v}");

    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[[feeds]]\nname = \"p360\"\nkind = \"protect360\"\ntoken = \"t\"\napp_ids = [\"a\"]\n",
    );
    std::fs::write(&config, text).unwrap();
    let (s, v) = reload().await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"], "restart_needed");
    assert_eq!(v["restart_needed"], serde_json::json!(["feeds"]));
    assert!(v["message"].as_str().unwrap().contains("restart"), "{v}");

    // One WARN for the admin reload above, one for SIGHUP.
    p.signal("HUP");
    eventually(std::time::Duration::from_secs(5), || {
        let out = p.out.lock().unwrap().clone();
        async move { (out.matches("take effect on restart only").count() >= 2).then_some(()) }
    })
    .await;
}
