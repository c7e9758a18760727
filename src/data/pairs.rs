//! The tutorial's `create_pairs`: for every image, in order, one positive pair (a random image of the
//! same class, possibly itself, label 1) and one negative pair (a random image of another class, label 0).

use rand::Rng;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pair {
    pub a: u32,
    pub b: u32,
    /// 1 same class, 0 different.
    pub label: f32,
}

/// The tutorial's `create_pairs`: for every image, one pair with an image of its class (which may be
/// itself, as the tutorial draws it) and one with an image of another class.
pub fn make_pairs(labels: &[super::Label], rng: &mut impl Rng) -> Vec<Pair> {
    make_pairs_with(labels, rng, true)
}

/// As [`make_pairs`]; without `self_pairs`, a positive pair's second image is never the first itself
/// (where its class has another image).
pub fn make_pairs_with(labels: &[super::Label], rng: &mut impl Rng, self_pairs: bool) -> Vec<Pair> {
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let by_class: Vec<Vec<u32>> =
        (0..classes).map(|c| (0..labels.len() as u32).filter(|&i| labels[i as usize] as usize == c).collect()).collect();
    let mut pairs = Vec::with_capacity(2 * labels.len());
    for (i, &label) in labels.iter().enumerate() {
        let same = &by_class[label as usize];
        let b = if self_pairs || same.len() < 2 {
            same[rng.random_range(0..same.len())]
        } else {
            // Uniform over the class's other images: skip the image's own place in the list.
            let own = same.binary_search(&(i as u32)).expect("an image is in its class's list");
            let r = rng.random_range(0..same.len() - 1);
            same[if r >= own { r + 1 } else { r }]
        };
        pairs.push(Pair { a: i as u32, b, label: 1.0 });
        // Uniform over the images of other classes, as np.random.choice(np.where(labels != label)[0]).
        let others = labels.len() - same.len();
        if others == 0 {
            continue;
        }
        let mut k = rng.random_range(0..others);
        let b = by_class
            .iter()
            .enumerate()
            .filter(|&(c, _)| c != label as usize)
            .find_map(|(_, members)| {
                if k < members.len() {
                    Some(members[k])
                } else {
                    k -= members.len();
                    None
                }
            })
            .expect("an index below the count of other-class images");
        pairs.push(Pair { a: i as u32, b, label: 0.0 });
    }
    pairs
}

/// Fisher-Yates shuffle, as Keras shuffles the training pairs every epoch.
pub fn shuffle<T>(items: &mut [T], rng: &mut impl Rng) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.random_range(0..=i));
    }
}

/// Class-balanced batches, as pytorch-metric-learning's `MPerClassSampler` makes them: each of `batches`
/// batches draws `p` distinct classes, then `k` images of each (distinct while the class has `k`,
/// drawn with repetition when it has fewer). The batches' images one after another, each batch in
/// class order: images [sK, (s + 1)K) of a batch share a class, which is what the batch losses need.
pub fn class_balanced_batches(labels: &[super::Label], p: usize, k: usize, batches: usize, rng: &mut impl Rng) -> Vec<u32> {
    let mut by_class: std::collections::BTreeMap<super::Label, Vec<u32>> = std::collections::BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        by_class.entry(l).or_default().push(i as u32);
    }
    let classes: Vec<&Vec<u32>> = by_class.values().collect();
    assert!(p <= classes.len(), "{p} classes per batch, {} in the data", classes.len());
    let mut images = Vec::with_capacity(batches * p * k);
    for _ in 0..batches {
        for c in rand::seq::index::sample(rng, classes.len(), p) {
            let members = classes[c];
            if members.len() >= k {
                images.extend(rand::seq::index::sample(rng, members.len(), k).into_iter().map(|i| members[i]));
            } else {
                images.extend((0..k).map(|_| members[rng.random_range(0..members.len())]));
            }
        }
    }
    images
}
