//! A genetic search: the best `population` trials so far are the parents' pool; two parents
//! are chosen by tournaments of three, the child takes each parameter from one of them at
//! random (uniform crossover), and each parameter mutates with probability `mutation` (a
//! normal step of a fifth of its range in the sampler's coordinate, or another choice).

use graft_data::rng::SplitMix64;

use crate::space::{Dist, Point, Space, Value};
use crate::{ranked, Observed, Options};

pub(crate) fn propose(
    space: &Space,
    history: &[Observed],
    o: &Options,
    rng: &mut SplitMix64,
) -> Point {
    let ranked = ranked(history);
    let pool = &ranked[..o.population.clamp(1, ranked.len())];
    // Ranks are positions in `pool`, best first: the smallest of three draws wins.
    let tournament =
        |rng: &mut SplitMix64| (0..3).map(|_| rng.below(pool.len())).min().unwrap_or(0);
    let first = tournament(rng);
    let mut second = tournament(rng);
    if pool.len() > 1 {
        while second == first {
            second = tournament(rng);
        }
    }
    let (p1, p2) = (&pool[first].point, &pool[second].point);
    let dists: Vec<&Dist> = space.dists().collect();
    let mut child: Point = p1
        .iter()
        .zip(p2)
        .map(|(a, b)| if rng.next_f64() < 0.5 { *a } else { *b })
        .collect();
    for (i, d) in dists.iter().enumerate() {
        if rng.next_f64() < o.mutation {
            child[i] = mutate(d, child[i], rng);
        }
    }
    // A child that repeats a trial learns nothing: mutate one more parameter, a few times.
    for _ in 0..8 {
        if !history.iter().any(|t| t.point == child) {
            break;
        }
        let i = rng.below(dists.len());
        child[i] = mutate(dists[i], child[i], rng);
    }
    child
}

fn mutate(d: &Dist, v: Value, rng: &mut SplitMix64) -> Value {
    match (d.bounds(), v) {
        (Some((a, b)), Value::Num(x)) => {
            let mut u = d.to_internal(x) + 0.2 * (b - a) * rng.normal();
            // Reflect at the bounds, so the ends are not favoured.
            for _ in 0..4 {
                if u < a {
                    u = 2.0 * a - u;
                } else if u > b {
                    u = 2.0 * b - u;
                }
            }
            d.from_internal(u.clamp(a, b))
        }
        (None, Value::Cat(i)) if d.choices() > 1 => {
            let j = rng.below(d.choices() - 1);
            Value::Cat(if j >= i { j + 1 } else { j })
        }
        _ => v,
    }
}
