//! The config file as read at startup, so a reload can say what changed
//! in it since: rule and list files reload at runtime, the config file's
//! sections take effect on restart only.

use std::path::PathBuf;

/// A config file and its table as read.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub table: toml::Table,
}

impl ConfigFile {
    /// The top-level sections (`feeds`, `upstream`, ...) whose settings
    /// in the file differ from what was read at startup, sorted; an error
    /// when the file cannot be read or parsed now.
    pub fn changed_sections(&self) -> Result<Vec<String>, String> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let now: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| format!("cannot parse {}: {e}", self.path.display()))?;
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
                Vec::new(),
                format!("{e}: rule and list files were reloaded"),
            )),
        }
    }
}
