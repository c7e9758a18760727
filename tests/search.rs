//! The GPU's k-nearest-neighbour search against an exact CPU search: the same rows in the same order,
//! ties by row (planted duplicates), a query's own row left out on request, galleries streamed in parts
//! and queries in batches giving the same bits as one pass.

mod common;

use common::*;
use gpu_siamese::reference;
use gpu_siamese::search::{knn, knn_within, SearchShape, NO_ROW};

/// `count` rows of `dim` values, with rows 5 and 9 copies of row 3 and row 7 a copy of row 2.
fn gallery(count: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut g = random(count * dim, seed);
    for (to, from) in [(5, 3), (9, 3), (7, 2)] {
        let row: Vec<f32> = g[from * dim..(from + 1) * dim].to_vec();
        g[to * dim..(to + 1) * dim].copy_from_slice(&row);
    }
    g
}

/// Checks the GPU's lists against the CPU's: the same rows in the same order, except that two rows
/// whose exact distances are within f32 rounding of each other may come in either order.
fn check(what: &str, got: &gpu_siamese::search::Neighbours, want: &[Vec<(f64, usize)>]) {
    for (q, list) in want.iter().enumerate() {
        let rows: Vec<usize> = (0..got.k).filter_map(|i| got.row(q, i)).collect();
        assert_eq!(rows.len(), list.len(), "{what}: query {q} has {} results, {} expected", rows.len(), list.len());
        for (i, (&row, &(d, want_row))) in rows.iter().zip(list).enumerate() {
            if row != want_row {
                let other = list.iter().find(|e| e.1 == row).map(|e| e.0);
                let near_tie = other.is_some_and(|o| (o - d).abs() <= 1e-5 * d.max(1e-3));
                assert!(near_tie, "{what}: query {q} rank {i}: row {row}, the CPU's row {want_row} (distance {d})");
            }
            let gpu_d = got.distance(q, i) as f64;
            assert!((gpu_d - d.max(1e-7).sqrt()).abs() < 1e-5, "{what}: query {q} rank {i}: distance {gpu_d} against {}", d.sqrt());
        }
    }
}

#[test]
fn gpu_search_matches_the_exact_cpu_search() {
    let (gpu, kernels) = gpu();
    let seed = fresh_seed("search");
    let (dim, rows, count) = (13, 700, 37);
    let g = gallery(rows, dim, seed);
    // Queries: random ones, and copies of gallery rows 3 (three equal rows) and 11.
    let mut q = random(count * dim, seed ^ 1);
    for (to, from) in [(0, 3), (1, 11)] {
        q[to * dim..(to + 1) * dim].copy_from_slice(&g[from * dim..(from + 1) * dim]);
    }
    let none = vec![NO_ROW; count];
    for k in [1, 7, 40, 64] {
        let got = knn(gpu, kernels, &q, &g, dim, k, &none).unwrap();
        check(&format!("k {k}"), &got, &reference::knn(&q, &g, dim, k, &none));
    }
    // The three equal rows tie at distance 0 from query 0: they come in row order.
    let got = knn(gpu, kernels, &q, &g, dim, 3, &none).unwrap();
    assert_eq!((got.row(0, 0), got.row(0, 1), got.row(0, 2)), (Some(3), Some(5), Some(9)));
    // A query's own row left out.
    let mut skip = none.clone();
    skip[1] = 11;
    let got = knn(gpu, kernels, &q, &g, dim, 5, &skip).unwrap();
    assert!((0..5).all(|i| got.row(1, i) != Some(11)));
    check("skipping", &got, &reference::knn(&q, &g, dim, 5, &skip));
    // More neighbours than the gallery has: all of them.
    let small = &g[..4 * dim];
    let got = knn(gpu, kernels, &q, small, dim, 10, &none).unwrap();
    assert_eq!(got.k, 4);
    check("a small gallery", &got, &reference::knn(&q, small, dim, 10, &none));
}

#[test]
fn streamed_parts_and_query_batches_give_one_passs_bits() {
    let (gpu, kernels) = gpu();
    let seed = fresh_seed("search parts");
    let (dim, rows, count, k) = (8, 5000, 600, 9);
    let g = gallery(rows, dim, seed);
    let q = random(count * dim, seed ^ 2);
    let none = vec![NO_ROW; count];
    let whole = knn(gpu, kernels, &q, &g, dim, k, &none).unwrap();
    // Bindings of 48 KiB: gallery parts of 1536 rows, candidates for 256 queries at a time.
    let limit = 48 << 10;
    let shape = SearchShape::new(limit, count, rows, dim);
    assert!(shape.part_rows < rows && shape.query_batch < count, "{shape:?}");
    let parted = knn_within(gpu, kernels, &q, &g, dim, k, &none, limit).unwrap();
    assert_eq!(parted.rows, whole.rows);
    assert!(parted.squared.iter().zip(&whole.squared).all(|(a, b)| a.to_bits() == b.to_bits()));
    check("parts", &parted, &reference::knn(&q, &g, dim, k, &none));
}
