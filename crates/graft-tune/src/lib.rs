//! Hyperparameter search: a declared [`Space`], and proposals of the next point to try from
//! the trials already run.
//!
//! Four methods: `grid` (every combination of a few levels per parameter), `random` (each
//! parameter from its own distribution), `bayes` (the tree-structured Parzen estimator of
//! Bergstra et al. 2011: after a few random trials, each parameter is drawn where the best
//! quarter of the trials so far are dense and the rest are not) and `genetic` (tournament
//! selection among the best trials, uniform crossover, mutation).
//!
//! A proposal depends only on the seed, the trial's number and the trials it is shown, never
//! on time or thread scheduling: the caller shows each trial the trials of the rounds before
//! its own, so a search run again — or resumed after a kill — proposes the same points.

mod genetic;
mod grid;
pub mod space;
mod tpe;

use std::fmt;
use std::str::FromStr;

use graft_data::rng::SplitMix64;
use serde::{Deserialize, Serialize};

pub use grid::{grid_size, nth as grid_point};
pub use space::{Choice, Dist, Point, Resolved, Space, Value};

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error("search space: {0}")]
    BadSpace(String),
    #[error("{0:?} is not a search method: use grid, random, bayes or genetic")]
    BadMethod(String),
}

/// How the next point is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Grid,
    Random,
    /// Tree-structured Parzen estimator.
    #[default]
    Bayes,
    Genetic,
}

impl FromStr for Method {
    type Err = TuneError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "grid" => Ok(Method::Grid),
            "random" => Ok(Method::Random),
            "bayes" | "tpe" => Ok(Method::Bayes),
            "genetic" | "ga" => Ok(Method::Genetic),
            _ => Err(TuneError::BadMethod(s.to_string())),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Grid => "grid",
            Method::Random => "random",
            Method::Bayes => "bayes",
            Method::Genetic => "genetic",
        })
    }
}

/// The knobs of the methods; the defaults suit budgets of tens of trials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Grid: values per numeric parameter (every entry of a `choice`).
    pub grid_levels: usize,
    /// Bayes: random trials before the estimator takes over.
    pub startup: usize,
    /// Bayes: share of the trials counted as good.
    pub gamma: f64,
    /// Bayes: draws from the good density scored per parameter.
    pub candidates: usize,
    /// Genetic: random first generation, and the pool of best trials parents come from.
    pub population: usize,
    /// Genetic: chance that a child's parameter is mutated.
    pub mutation: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            grid_levels: 3,
            startup: 10,
            gamma: 0.25,
            candidates: 24,
            population: 10,
            mutation: 0.25,
        }
    }
}

/// A finished trial as the samplers see it: where, and how good (larger is better).
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub point: Point,
    pub objective: f64,
}

/// A search: what to propose in which space.
#[derive(Debug, Clone)]
pub struct Search<'a> {
    pub space: &'a Space,
    pub method: Method,
    pub seed: u64,
    pub options: Options,
}

impl Search<'_> {
    /// The point of trial number `trial` (from 0), given the finished trials it may learn
    /// from; `None` once a grid is exhausted.
    pub fn propose(&self, trial: usize, history: &[Observed]) -> Option<Point> {
        let mut rng = self.rng(trial);
        let o = &self.options;
        match self.method {
            Method::Grid => grid::nth(self.space, o.grid_levels, trial),
            Method::Random => Some(self.space.sample(&mut rng)),
            Method::Bayes if history.len() < o.startup.max(2) => Some(self.space.sample(&mut rng)),
            Method::Bayes => Some(tpe::propose(self.space, history, o, &mut rng)),
            Method::Genetic if history.len() < o.population.max(2) => {
                Some(self.space.sample(&mut rng))
            }
            Method::Genetic => Some(genetic::propose(self.space, history, o, &mut rng)),
        }
    }

    /// Each trial its own stream, so a proposal does not depend on how many came before.
    fn rng(&self, trial: usize) -> SplitMix64 {
        let mut mix =
            SplitMix64::new(self.seed ^ (trial as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        SplitMix64::new(mix.next_u64())
    }
}

/// Observations best first: larger objective, then the earlier trial (stable sort).
pub(crate) fn ranked(history: &[Observed]) -> Vec<&Observed> {
    let mut r: Vec<&Observed> = history.iter().collect();
    r.sort_by(|a, b| b.objective.total_cmp(&a.objective));
    r
}

#[cfg(test)]
mod tests;
