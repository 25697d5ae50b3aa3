//! Relative paths in a config file are read relative to that file's
//! directory, as nginx and Prometheus do, so a config works whatever the
//! working directory. Paths from `FRAUDGATE_*` variables, and those of the
//! embedded defaults, stay relative to the working directory.

use std::path::Path;

use toml::Value;

/// Every key that holds a path; `*` is each element of an array.
const PATH_KEYS: &[&[&str]] = &[
    &["decision_log", "path"],
    &["log", "file"],
    &["server", "tls", "cert_file"],
    &["server", "tls", "key_file"],
    &["rules", "crawler", "extra_patterns_file"],
    &["rules", "datacenter", "files", "*"],
    &["rules", "proxy", "files", "*"],
    &["rules", "verified_bots", "files", "*"],
    &["rules", "lists", "*", "file"],
    &["feeds", "*", "state_file"],
];

/// Makes the relative paths of a config file's table relative to `dir`
/// (the file's directory). Empty values (meaning "none") stay empty.
pub fn resolve(table: &mut toml::Table, dir: &Path) {
    for key in PATH_KEYS {
        if let Some((first, rest)) = key.split_first()
            && let Some(v) = table.get_mut(*first)
        {
            visit(v, rest, dir);
        }
    }
}

fn visit(v: &mut Value, key: &[&str], dir: &Path) {
    match (key.split_first(), v) {
        (None, Value::String(s)) if !s.is_empty() && Path::new(s.as_str()).is_relative() => {
            *s = dir.join(&*s).display().to_string();
        }
        (Some((&"*", rest)), Value::Array(items)) => {
            for item in items {
                visit(item, rest, dir);
            }
        }
        (Some((k, rest)), Value::Table(t)) => {
            if let Some(v) = t.get_mut(*k) {
                visit(v, rest, dir);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_follow_the_file_and_others_stay() {
        let mut t: toml::Table = r#"
            [decision_log]
            path = "data/decisions"
            [log]
            file = ""
            [rules.proxy]
            files = ["proxies.txt", "/etc/fraudgate/more.txt"]
            [[rules.lists]]
            name = "blocklist"
            action = "block"
            file = "lists/block.txt"
            [[feeds]]
            name = "p360"
            state_file = "state/p360.json"
            url = "relative/not/a/path/key"
        "#
        .parse()
        .unwrap();
        resolve(&mut t, Path::new("/etc/fraudgate"));
        let get = |k: &str| t.get(k).unwrap().clone();
        assert_eq!(
            get("decision_log")["path"].as_str(),
            Some("/etc/fraudgate/data/decisions")
        );
        assert_eq!(get("log")["file"].as_str(), Some(""));
        let files = get("rules")["proxy"]["files"].clone();
        assert_eq!(files[0].as_str(), Some("/etc/fraudgate/proxies.txt"));
        assert_eq!(files[1].as_str(), Some("/etc/fraudgate/more.txt"));
        assert_eq!(
            get("rules")["lists"][0]["file"].as_str(),
            Some("/etc/fraudgate/lists/block.txt")
        );
        assert_eq!(
            get("feeds")[0]["state_file"].as_str(),
            Some("/etc/fraudgate/state/p360.json")
        );
        assert_eq!(
            get("feeds")[0]["url"].as_str(),
            Some("relative/not/a/path/key")
        );
    }
}
