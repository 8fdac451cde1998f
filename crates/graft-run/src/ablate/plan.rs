//! An ablation file: factors, each a list of values, crossed into a matrix of cells, and how
//! many seeds each cell is trained with.
//!
//! ```toml
//! seeds = 3
//! [factors]
//! head = ["mlp", "linear"]          # the first value of each factor is the reference
//! balance = ["auto", "none"]
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use graft_tune::{Choice, Dist, Point, Space};
use serde::{Deserialize, Serialize};

use crate::RunError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AblationFile {
    /// Seeds per cell (3 by default); the seeds are the run's `[heads]` seed and the next ones.
    #[serde(default = "three")]
    pub seeds: usize,
    /// Each factor and its values; the first value of each is the reference row's.
    pub factors: BTreeMap<String, Vec<Choice>>,
}

fn three() -> usize {
    3
}

impl AblationFile {
    pub fn read(path: &Path) -> Result<AblationFile, RunError> {
        let text = std::fs::read_to_string(path).map_err(|e| RunError::read(path, e))?;
        toml::from_str(&text).map_err(|e| RunError::Settings {
            path: path.to_path_buf(),
            reason: format!(
                "{e}\n(an ablation file has `seeds = 3` and a [factors] table of lists, e.g. \
                 head = [\"mlp\", \"linear\"])"
            ),
        })
    }

    /// The matrix as a space of choices: a grid point per cell.
    pub fn space(&self) -> Result<Space, RunError> {
        if let Some(name) = self
            .factors
            .keys()
            .find(|k| matches!(k.as_str(), "encoder" | "augment" | "augmentation"))
        {
            return Err(RunError::Invalid(format!(
                "factor {name}: graft ablate trains heads on one run's cached features, so it \
                 varies head settings only; compare encoders or augmentation as separate runs \
                 (`graft runs compare`)"
            )));
        }
        if let Some((name, _)) = self.factors.iter().find(|(_, v)| v.is_empty()) {
            return Err(RunError::Invalid(format!(
                "factor {name} has no values: list at least one"
            )));
        }
        if self.seeds == 0 {
            return Err(RunError::Invalid(
                "seeds must be at least 1 (3 by default)".into(),
            ));
        }
        let params: BTreeMap<String, Dist> = self
            .factors
            .iter()
            .map(|(k, v)| (k.clone(), Dist::Choice(v.clone())))
            .collect();
        let space = Space::new(params).map_err(|e| {
            RunError::Invalid(format!(
                "{e} (add a [factors] table with at least one list)"
            ))
        })?;
        crate::tune::config::check(&space)
            .map_err(|e| RunError::Invalid(e.to_string().replace("[tune.space]", "[factors]")))?;
        Ok(space)
    }
}

/// Every cell of the matrix, the reference (every factor's first value) first.
pub fn cells(space: &Space) -> Vec<Point> {
    let n = graft_tune::grid_size(space, 1);
    (0..n)
        .filter_map(|i| graft_tune::grid_point(space, 1, i))
        .collect()
}

/// A cell as people read it: `balance=none head=linear`.
pub fn label(space: &Space, cell: &[graft_tune::Value]) -> String {
    space
        .names()
        .zip(space.format(cell))
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}
