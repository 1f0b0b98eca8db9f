//! Data parallelism without a thread pool crate: scoped threads over contiguous parts.

/// `items.iter().map(f).collect()`, on every core: the slice is cut into one contiguous part
/// per thread and the results are joined in order.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    if threads < 2 || items.len() < 4096 {
        return items.iter().map(f).collect();
    }
    let size = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let parts: Vec<_> = items
            .chunks(size)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for p in parts {
            out.extend(p.join().expect("worker thread"));
        }
        out
    })
}
