//! Compiles Envoy's ext_authz protos (proto/, see its README) into the
//! gRPC door's types, client and server, with protox: no `protoc` needed.
//!
//! Also finds the external tools the integration tests drive (nginx, caddy, promtool,
//! clickhouse-server, curl, chromium, redis-server, node, python3) and sets `cfg(no_<tool>)` for each one missing,
//! so those tests are reported as `ignored, <tool> is not installed` in the
//! test summary instead of passing silently. With
//! `FRAUDGATE_REQUIRE_TOOLS` set (as `.ci/run` does) nothing is ignored: a
//! missing tool fails its test.

use std::path::PathBuf;

const TOOLS: &[(&str, &str)] = &[
    ("nginx", "no_nginx"),
    ("caddy", "no_caddy"),
    ("promtool", "no_promtool"),
    ("clickhouse-server", "no_clickhouse"),
    ("curl", "no_curl"),
    ("chromium", "no_chromium"),
    ("redis-server", "no_redis"),
    ("node", "no_node"),
    ("python3", "no_python3"),
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    protos();
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=FRAUDGATE_REQUIRE_TOOLS");
    let required = std::env::var_os("FRAUDGATE_REQUIRE_TOOLS").is_some();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .collect();
    for (tool, cfg) in TOOLS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        let found = dirs.iter().map(|d| d.join(tool)).find(|p| p.is_file());
        match found {
            // Installing or removing the tool reruns this script.
            Some(p) => println!("cargo::rerun-if-changed={}", p.display()),
            None => {
                // A path that does not exist: Cargo reruns the script on
                // every build, so a tool installed later is seen.
                println!("cargo::rerun-if-changed=/usr/bin/{tool}");
                if !required {
                    println!("cargo::rustc-cfg={cfg}");
                }
            }
        }
    }
}

/// Files that only declare options (validation rules, API-shepherding
/// annotations): no message of the ext_authz API holds their types, and
/// prost ignores options, so their Rust would only cost compile time.
const OPTION_ONLY: &[&str] = &[
    "validate/",
    "udpa/annotations/",
    "xds/annotations/",
    "envoy/annotations/",
];

fn protos() {
    println!("cargo::rerun-if-changed=proto");
    let mut fds = protox::compile(["envoy/service/auth/v3/external_auth.proto"], ["proto"])
        .unwrap_or_else(|e| panic!("proto/: {e}"));
    fds.file
        .retain(|f| !OPTION_ONLY.iter().any(|p| f.name().starts_with(p)));
    tonic_prost_build::configure()
        // The door's tests and bench dial it with the same types.
        .build_client(true)
        .build_transport(false)
        .include_file("envoy_ext_authz.rs")
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("generating the ext_authz code: {e}"));
}
