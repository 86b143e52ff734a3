//! 3D convex hull (incremental), for the convex-hull densities and the maximum diameter.

use super::mesh::{cross, dot, norm, sub};

pub struct Hull {
    pub points: Vec<[f64; 3]>,
    /// Outward-oriented triangles.
    pub faces: Vec<[usize; 3]>,
}

impl Hull {
    /// `None` when the points are coplanar (no volume).
    pub fn new(points: &[[f64; 3]]) -> Option<Hull> {
        if points.len() < 4 {
            return None;
        }
        let scale = points.iter().flat_map(|p| p.iter()).fold(0.0f64, |m, v| m.max(v.abs())).max(1.0);
        let eps = 1e-9 * scale;
        let p0 = 0;
        let far = |from: &dyn Fn(usize) -> f64| (0..points.len()).max_by(|&a, &b| from(a).total_cmp(&from(b))).unwrap();
        let p1 = far(&|i| norm(sub(points[i], points[p0])));
        let d01 = sub(points[p1], points[p0]);
        let p2 = far(&|i| norm(cross(d01, sub(points[i], points[p0]))));
        let n012 = cross(d01, sub(points[p2], points[p0]));
        if norm(n012) <= eps * norm(d01) {
            return None;
        }
        let p3 = far(&|i| dot(n012, sub(points[i], points[p0])).abs());
        if dot(n012, sub(points[p3], points[p0])).abs() <= eps * norm(n012) {
            return None;
        }
        let interior = [0, 1, 2].map(|k| (points[p0][k] + points[p1][k] + points[p2][k] + points[p3][k]) / 4.0);
        // Each face with its outward normal and the distance threshold of the visibility
        // test, computed once when the face is made rather than for every point tested.
        let plane = |f: [usize; 3]| {
            let n = cross(sub(points[f[1]], points[f[0]]), sub(points[f[2]], points[f[0]]));
            (f, n, eps * norm(n))
        };
        let mut faces: Vec<([usize; 3], [f64; 3], f64)> = Vec::new();
        for f in [[p0, p1, p2], [p0, p1, p3], [p0, p2, p3], [p1, p2, p3]] {
            faces.push(plane(orient(points, f, interior)));
        }
        // Far points first: the hull reaches its final size early and most later points fall
        // inside it, which is cheap to test.
        let mut order: Vec<usize> = (0..points.len()).filter(|i| ![p0, p1, p2, p3].contains(i)).collect();
        let d2 = |i: usize| (0..3).map(|k| (points[i][k] - interior[k]).powi(2)).sum::<f64>();
        order.sort_by(|&a, &b| d2(b).total_cmp(&d2(a)).then(a.cmp(&b)));
        let mut visible: Vec<bool> = Vec::new();
        for i in order {
            let p = &points[i];
            visible.clear();
            visible.extend(faces.iter().map(|(f, n, threshold)| dot(*n, sub(*p, points[f[0]])) > *threshold));
            if !visible.iter().any(|v| *v) {
                continue;
            }
            // Ordered, so the hull (and its volume on degenerate, coplanar inputs) is the same in
            // every run: a HashSet's iteration order differs between processes.
            let mut edges = std::collections::BTreeSet::new();
            for ((f, _, _), v) in faces.iter().zip(&visible) {
                if *v {
                    for (a, b) in [(f[0], f[1]), (f[1], f[2]), (f[2], f[0])] {
                        edges.insert((a, b));
                    }
                }
            }
            let horizon: Vec<(usize, usize)> = edges.iter().filter(|(a, b)| !edges.contains(&(*b, *a))).copied().collect();
            let mut kept: Vec<([usize; 3], [f64; 3], f64)> = faces.iter().zip(&visible).filter(|(_, v)| !**v).map(|(f, _)| *f).collect();
            for (a, b) in horizon {
                kept.push(plane([a, b, i]));
            }
            faces = kept;
        }
        let faces = faces.into_iter().map(|(f, _, _)| f).collect();
        Some(Hull { points: points.to_vec(), faces })
    }

    pub fn volume(&self) -> f64 {
        let p = &self.points;
        let o = p[self.faces[0][0]];
        self.faces.iter().map(|f| dot(sub(p[f[0]], o), cross(sub(p[f[1]], o), sub(p[f[2]], o))) / 6.0).sum()
    }

    pub fn area(&self) -> f64 {
        let p = &self.points;
        self.faces.iter().map(|f| norm(cross(sub(p[f[1]], p[f[0]]), sub(p[f[2]], p[f[0]]))) / 2.0).sum()
    }

    /// Indices of points on the hull.
    pub fn vertices(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.faces.iter().flatten().copied().collect();
        v.sort();
        v.dedup();
        v
    }
}

fn orient(points: &[[f64; 3]], f: [usize; 3], interior: [f64; 3]) -> [usize; 3] {
    let n = cross(sub(points[f[1]], points[f[0]]), sub(points[f[2]], points[f[0]]));
    if dot(n, sub(interior, points[f[0]])) > 0.0 { [f[0], f[2], f[1]] } else { f }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hull_of_a_cube_with_interior_points() {
        let mut pts = Vec::new();
        for x in 0..3 {
            for y in 0..3 {
                for z in 0..3 {
                    pts.push([x as f64 * 2.0, y as f64, z as f64 * 0.5]);
                }
            }
        }
        let h = Hull::new(&pts).unwrap();
        assert!((h.volume() - 4.0 * 2.0 * 1.0).abs() < 1e-9, "{}", h.volume());
        assert!((h.area() - 2.0 * (4.0 * 2.0 + 4.0 * 1.0 + 2.0 * 1.0)).abs() < 1e-9, "{}", h.area());
        assert!(Hull::new(&[[0.0; 3], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]).is_none());
    }
}
