use std::collections::BTreeMap;

use super::*;

fn space() -> Space {
    let mut p = BTreeMap::new();
    p.insert("x".to_string(), Dist::Uniform([0.0, 1.0]));
    p.insert("lr".to_string(), Dist::Log([1e-5, 1e-1]));
    p.insert(
        "c".to_string(),
        Dist::Choice(
            ["a", "b", "c", "d"]
                .map(|s| Choice::Text(s.into()))
                .to_vec(),
        ),
    );
    p.insert("n".to_string(), Dist::Int([1, 8]));
    Space::new(p).expect("space")
}

/// A smooth objective with its best at x = 0.7, lr = 1e-3, c = "c", n = 5 (value 1).
fn objective(s: &Space, p: &Point) -> f64 {
    let r = s.resolve(p);
    let num = |i: usize| match &r[i].1 {
        Resolved::Num(v) => *v,
        Resolved::Text(_) => f64::NAN,
    };
    let c = matches!(&r[0].1, Resolved::Text(t) if t == "c");
    1.0 - 4.0 * (num(3) - 0.7).powi(2)
        - 0.25 * (num(1).log10() + 3.0).powi(2)
        - 0.02 * (num(2) - 5.0).powi(2)
        - if c { 0.0 } else { 0.3 }
}

/// Run a search in rounds of `round` trials, each round seeing only the rounds before it.
fn run(method: Method, seed: u64, trials: usize, round: usize) -> Vec<Observed> {
    let s = space();
    let search = Search {
        space: &s,
        method,
        seed,
        options: Options::default(),
    };
    let mut history: Vec<Observed> = Vec::new();
    for start in (0..trials).step_by(round) {
        let seen = history.len();
        for t in start..(start + round).min(trials) {
            let Some(point) = search.propose(t, &history[..seen]) else {
                return history;
            };
            let objective = objective(&s, &point);
            history.push(Observed { point, objective });
        }
    }
    history
}

fn best(h: &[Observed]) -> f64 {
    h.iter()
        .map(|t| t.objective)
        .fold(f64::NEG_INFINITY, f64::max)
}

#[test]
fn the_grid_visits_every_combination_once_then_stops() {
    let s = space();
    let levels = 3;
    let n = grid_size(&s, levels);
    assert_eq!(n, 4 * 3 * 3 * 3);
    let h = run(Method::Grid, 1, 1000, 5);
    assert_eq!(h.len(), n);
    for (i, a) in h.iter().enumerate() {
        assert!(h[..i].iter().all(|b| b.point != a.point), "repeat at {i}");
    }
}

#[test]
fn proposals_depend_on_seed_trial_and_history_only() {
    let a = run(Method::Bayes, 7, 30, 3);
    let b = run(Method::Bayes, 7, 30, 3);
    assert_eq!(a, b);
    let c = run(Method::Bayes, 8, 30, 3);
    assert_ne!(a, c);
    let g1 = run(Method::Genetic, 7, 30, 2);
    assert_eq!(g1, run(Method::Genetic, 7, 30, 2));
}

/// Over 12 seeds, the model-based methods reach a better best than random search with the
/// same 40 trials (mean regret: random 0.178, bayes 0.118, genetic 0.036; at 80 trials 0.141,
/// 0.089, 0.012). TPE's misses are its known greed: a choice never drawn among the startup
/// trials is rarely tried later.
#[test]
fn bayes_and_genetic_beat_random_search_on_a_known_objective() {
    let seeds = 0..12u64;
    let regret = |m: Method| -> f64 {
        seeds
            .clone()
            .map(|s| 1.0 - best(&run(m, s, 40, 2)))
            .sum::<f64>()
            / 12.0
    };
    let (random, bayes, genetic) = (
        regret(Method::Random),
        regret(Method::Bayes),
        regret(Method::Genetic),
    );
    assert!(bayes < 0.8 * random, "bayes {bayes} random {random}");
    assert!(genetic < 0.5 * random, "genetic {genetic} random {random}");
}

#[test]
fn methods_parse_and_print() {
    for m in [Method::Grid, Method::Random, Method::Bayes, Method::Genetic] {
        assert_eq!(m.to_string().parse::<Method>().expect("parse"), m);
    }
    assert_eq!("TPE".parse::<Method>().expect("alias"), Method::Bayes);
    let e = "hyperband".parse::<Method>().expect_err("unknown");
    assert!(e.to_string().contains("grid, random, bayes or genetic"));
}
