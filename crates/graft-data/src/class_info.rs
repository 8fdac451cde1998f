//! Per-class information shown with a prediction, from a `classes.toml` such as
//!
//! ```toml
//! [Tomato___Late_blight]
//! crop = "Tomato"
//! disease = "Late blight"
//! severity = "high"
//! action = "Remove affected leaves; apply a copper fungicide."
//! ```
//!
//! One table per class, any keys. A table for a class the model does not know is an error
//! (usually a typo that would otherwise silently show nothing). `graft serve` shows it beside a
//! prediction; `graft export --web` writes it into the page.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// A `classes.toml` that cannot be read or does not fit the model.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct ClassInfoError {
    pub path: PathBuf,
    pub why: String,
}

#[derive(Debug, Clone, Default)]
pub struct ClassInfo {
    by_class: BTreeMap<String, Map<String, Value>>,
}

impl ClassInfo {
    /// Parse `text` (the contents of `path`) against the model's `classes`.
    pub fn parse(text: &str, path: &Path, classes: &[String]) -> Result<ClassInfo, ClassInfoError> {
        let err = |why: String| ClassInfoError {
            path: path.to_path_buf(),
            why,
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let mut by_class = BTreeMap::new();
        let mut unknown = Vec::new();
        for (class, v) in table {
            let Some(fields) = v.as_table() else {
                return Err(err(format!(
                    "`{class}` must be a table ([{class}] followed by key = value lines)"
                )));
            };
            if !classes.contains(&class) {
                unknown.push(class);
                continue;
            }
            let json = serde_json::to_value(fields).map_err(|e| err(e.to_string()))?;
            if let Value::Object(map) = json {
                by_class.insert(class, map);
            }
        }
        if !unknown.is_empty() {
            return Err(err(format!(
                "names classes the model does not have: {}. The model's classes are: {}",
                unknown.join(", "),
                classes.join(", ")
            )));
        }
        Ok(ClassInfo { by_class })
    }

    /// Read and parse a file.
    pub fn load(path: &Path, classes: &[String]) -> Result<ClassInfo, ClassInfoError> {
        let text = std::fs::read_to_string(path).map_err(|e| ClassInfoError {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        Self::parse(&text, path, classes)
    }

    /// Every class's table as one JSON object (class name to its fields).
    pub fn to_json(&self) -> Map<String, Value> {
        self.by_class
            .iter()
            .map(|(c, m)| (c.clone(), Value::Object(m.clone())))
            .collect()
    }

    pub fn get(&self, class: &str) -> Option<&Map<String, Value>> {
        self.by_class.get(class)
    }

    pub fn len(&self) -> usize {
        self.by_class.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_class.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Vec<String> {
        vec!["healthy".into(), "late_blight".into()]
    }

    #[test]
    fn tables_become_json_objects() {
        let text = "[late_blight]\ncrop = \"Tomato\"\nseverity = 3\n";
        let info = ClassInfo::parse(text, Path::new("c.toml"), &classes()).expect("parse");
        let m = info.get("late_blight").expect("entry");
        assert_eq!(m["crop"], "Tomato");
        assert_eq!(m["severity"], 3);
        assert!(info.get("healthy").is_none());
        assert_eq!(info.len(), 1);
    }

    #[test]
    fn unknown_classes_and_bad_shapes_are_named() {
        let e = ClassInfo::parse(
            "[late_blite]\ncrop = \"x\"\n",
            Path::new("c.toml"),
            &classes(),
        )
        .expect_err("typo");
        let msg = e.to_string();
        assert!(
            msg.contains("c.toml") && msg.contains("late_blite"),
            "{msg}"
        );
        assert!(
            msg.contains("late_blight"),
            "should list the real classes: {msg}"
        );
        let e = ClassInfo::parse("healthy = 3\n", Path::new("c.toml"), &classes())
            .expect_err("not a table");
        assert!(e.to_string().contains("must be a table"), "{e}");
        let e = ClassInfo::parse("[x\n", Path::new("c.toml"), &classes()).expect_err("syntax");
        assert!(e.to_string().starts_with("c.toml"), "{e}");
    }
}
