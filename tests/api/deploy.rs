//! Checks of the deploy files that need no Docker engine (none runs on the
//! machines this is built on): the image's build stage copies everything
//! the build reads.

use std::path::{Path, PathBuf};

/// Every file `include_str!`/`include_bytes!` pulls in, and `build.rs`,
/// lies under a path the Dockerfile's build stage copies.
#[test]
fn the_image_build_copies_what_the_build_reads() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    // The first stage (the text after the first FROM, up to the next).
    let build_stage = dockerfile.split("\nFROM ").nth(1).unwrap_or("");
    let copied: Vec<String> = build_stage
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            parts[..parts.len() - 1]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut needed = vec![root.join("build.rs"), root.join("Cargo.lock")];
    let include = regex::Regex::new(r#"include_(?:str|bytes)!\("([^"]+)"\)"#).unwrap();
    let mut stack = vec![root.join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for c in include.captures_iter(&text) {
                    let target = path.parent().unwrap().join(&c[1]);
                    needed.push(std::fs::canonicalize(&target).unwrap_or(target));
                }
            }
        }
    }
    let root = std::fs::canonicalize(&root).unwrap();
    let missing: Vec<_> = needed
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or(p.clone()))
        .filter(|p| !p.starts_with(&root) || !covered_in(&root, &copied, p))
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/Dockerfile's build stage does not COPY: {missing:?} (copies {copied:?})"
    );
}

fn covered_in(root: &Path, copied: &[String], p: &Path) -> bool {
    let rel = p.strip_prefix(root).unwrap();
    copied
        .iter()
        .any(|c| rel.starts_with(c.trim_end_matches('/')))
}

/// The Kubernetes manifest and the compose file, linted (no cluster or
/// Docker engine here): every document parses, the PDB and the HPA point
/// at the Deployment, the replicas reach the Redis Service, the probes hit
/// real routes, and compose wires fraudgate to Redis. Python's YAML parser
/// does the parsing (`.ci/run` installs python3-yaml).
#[test]
fn the_kubernetes_and_compose_files_lint() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let has_yaml = std::process::Command::new("python3")
        .args(["-c", "import yaml"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_yaml && std::env::var_os("FRAUDGATE_REQUIRE_TOOLS").is_none() {
        crate::helpers::skipped("python3-yaml is not installed (Debian: python3-yaml)");
        return;
    }
    let script = r#"
import sys, yaml, json
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
compose = yaml.safe_load(open(sys.argv[2]))
print(json.dumps({"k8s": docs, "compose": compose}))
"#;
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            root.join("deploy/kubernetes/fraudgate.yaml")
                .to_str()
                .unwrap(),
            root.join("deploy/compose.yaml").to_str().unwrap(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "YAML does not parse (or python3-yaml is missing): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let docs = v["k8s"].as_array().unwrap();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .clone()
    };
    for d in docs {
        assert!(
            d["apiVersion"].is_string() && d["metadata"]["name"].is_string(),
            "{d}"
        );
    }
    let deploy = find("Deployment", "fraudgate");
    let labels = &deploy["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&deploy["spec"]["selector"]["matchLabels"], labels);
    let pdb = find("PodDisruptionBudget", "fraudgate");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    assert!(
        pdb["spec"]["minAvailable"].as_u64().unwrap()
            < deploy["spec"]["replicas"].as_u64().unwrap()
    );
    let hpa = find("HorizontalPodAutoscaler", "fraudgate");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "fraudgate");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert!(
        c["resources"]["requests"]["memory"].is_string(),
        "requests sized"
    );
    assert!(
        c["resources"]["requests"]["cpu"].is_string(),
        "the HPA needs a CPU request"
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let env = c["env"].as_array().unwrap();
    let redis_url = env
        .iter()
        .find(|e| e["name"] == "FRAUDGATE_REDIS__URL")
        .expect("replicas share Redis")["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let redis_svc = find("Service", "fraudgate-redis");
    let port = redis_svc["spec"]["ports"][0]["port"].as_u64().unwrap();
    assert_eq!(redis_url, format!("redis://fraudgate-redis:{port}/0"));
    let redis = find("Deployment", "fraudgate-redis");
    assert_eq!(
        &redis_svc["spec"]["selector"],
        &redis["spec"]["template"]["metadata"]["labels"]
    );
    // Every FRAUDGATE_* variable names a real config key, and together
    // they make a valid config.
    let vars: Vec<(String, String)> = env
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_owned();
            let value = e["value"]
                .as_str()
                .unwrap_or("x-secret-value-0123456789")
                .to_owned();
            (name, value)
        })
        .collect();
    let r = fraudgate::config::Config::load_from(None, vars.clone());
    assert!(r.is_ok(), "{vars:?}: {:?}", r.err());
    assert!(
        vars.iter().any(|(n, _)| n == "FRAUDGATE_REDIS__HASH_KEY"),
        "the replicas share a hash key"
    );
    let compose = &v["compose"]["services"];
    assert_eq!(
        compose["fraudgate"]["environment"]["FRAUDGATE_REDIS__URL"],
        "redis://redis:6379/0"
    );
    for s in ["redis", "prometheus", "grafana"] {
        assert!(compose[s]["image"].is_string(), "compose has {s}");
    }
}
