//! The config file as read at startup, so a reload can say what changed
//! in it since: rule and list files reload at runtime, the config file's
//! sections take effect on restart only.

use std::path::PathBuf;

/// A config file and its table as read. The table holds secrets as
/// written (keys, tokens): its `Debug` shows the path and section names
/// only, and it is never printed.
#[derive(Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub table: toml::Table,
}

impl std::fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigFile")
            .field("path", &self.path)
            .field("sections", &self.table.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ConfigFile {
    /// The top-level sections (`feeds`, `upstream`, ...) whose settings
    /// in the file differ from what was read at startup, sorted; an error
    /// when the file cannot be read or parsed now.
    pub fn changed_sections(&self) -> Result<Vec<String>, String> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        // The error's message only: its Display quotes the offending
        // line, which can be a key's.
        let now: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            format!(
                "cannot parse {}{}: {}",
                self.path.display(),
                line.map(|l| format!(" (line {l})")).unwrap_or_default(),
                e.message()
            )
        })?;
        let mut changed: Vec<String> = now
            .keys()
            .chain(self.table.keys())
            .filter(|k| now.get(*k) != self.table.get(*k))
            .cloned()
            .collect();
        changed.sort();
        changed.dedup();
        Ok(changed)
    }

    /// What a reload must tell the operator: None when the file is as
    /// read at startup; else the changed sections (empty when the file
    /// cannot be read) and a sentence saying they need a restart.
    pub fn restart_needed(&self) -> Option<(Vec<String>, String)> {
        match self.changed_sections() {
            Ok(c) if c.is_empty() => None,
            Ok(c) => {
                let message = format!(
                    "{} changed in [{}]: the config file's settings take effect on restart only \
                     (rule and list files were reloaded)",
                    self.path.display(),
                    c.join(", ")
                );
                Some((c, message))
            }
            Err(e) => Some((
                vec!["<unreadable>".to_owned()],
                format!("{e}: rule and list files were reloaded"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neither_debug_nor_a_parse_error_shows_what_the_file_holds() {
        let dir = std::env::temp_dir().join(format!("fg-cfgfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.toml");
        let text = "[upstream]\nkey = \"SECRET-RT-KEY-0123\"\n";
        std::fs::write(&path, text).unwrap();
        let f = ConfigFile {
            path: path.clone(),
            table: text.parse().unwrap(),
        };
        let debug = format!("{f:?}");
        assert!(
            debug.contains("upstream") && !debug.contains("SECRET"),
            "{debug}"
        );
        assert!(f.restart_needed().is_none());
        // A botched edit on the key's line.
        std::fs::write(&path, "[upstream]\nkey = \"SECRET-RT-KEY-0123\n").unwrap();
        let (sections, message) = f.restart_needed().unwrap();
        assert_eq!(sections, ["<unreadable>"]);
        assert!(
            message.contains("line 2") && !message.contains("SECRET"),
            "{message}"
        );
    }
}
