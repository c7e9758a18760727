//! Exact k-nearest-neighbour search on the CPU, in f64: the k gallery rows nearest each query by
//! squared Euclidean distance, ties by row, a query's `skip` row left out. `search.wgsl` computes the
//! same in f32 on the GPU.

pub fn knn(queries: &[f32], gallery: &[f32], dim: usize, k: usize, skip: &[u32]) -> Vec<Vec<(f64, usize)>> {
    let rows = gallery.len() / dim;
    queries
        .chunks(dim)
        .zip(skip)
        .map(|(q, &skip)| {
            let mut all: Vec<(f64, usize)> = (0..rows)
                .filter(|&r| r as u32 != skip)
                .map(|r| {
                    let g = &gallery[r * dim..(r + 1) * dim];
                    (q.iter().zip(g).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum(), r)
                })
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            all.truncate(k);
            all
        })
        .collect()
}
