//! The grid: every combination of a few levels per parameter, the last parameter fastest.

use crate::space::{Point, Space};

/// How many points the grid of `space` has with `levels` per numeric parameter.
pub fn grid_size(space: &Space, levels: usize) -> usize {
    space
        .dists()
        .map(|d| d.grid(levels).len())
        .fold(1usize, usize::saturating_mul)
}

/// Point number `n` of the grid, `None` past its end.
pub fn nth(space: &Space, levels: usize, n: usize) -> Option<Point> {
    let axes: Vec<_> = space.dists().map(|d| d.grid(levels)).collect();
    if n >= grid_size(space, levels) {
        return None;
    }
    let mut rest = n;
    let mut point = vec![crate::Value::Cat(0); axes.len()];
    for (i, axis) in axes.iter().enumerate().rev() {
        point[i] = axis[rest % axis.len()];
        rest /= axis.len();
    }
    Some(point)
}
