//! Pure work on a page's documents spread over the phone's cores: loading received snapshots
//! and reading the cases for their list rows are most of a restore's time, document by
//! document and independent of each other. Writing stays on the sync's thread, in its one
//! transaction; only work with no I/O and no shared state runs here.

use std::num::NonZeroUsize;
use std::thread;

/// Below this many items a page is worked through on the calling thread (starting threads
/// costs more than it saves).
const MIN_PARALLEL: usize = 16;
/// Phones have 4-8 cores; more threads than that only contend.
const MAX_THREADS: usize = 8;

/// `f` of every item, in the items' order, on up to as many threads as the phone has cores.
pub fn map<T, R, F>(items: Vec<T>, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    let threads = thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(MAX_THREADS);
    map_on(items, f, threads)
}

/// [`map`] on `threads` threads: the items are cut into that many runs in order, each run is
/// worked through by one thread, and the results are joined back in order.
fn map_on<T, R, F>(items: Vec<T>, f: F, threads: usize) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    if threads < 2 || items.len() < MIN_PARALLEL {
        return items.into_iter().map(f).collect();
    }
    let run = items.len().div_ceil(threads);
    let mut runs: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut items = items.into_iter();
    loop {
        let next: Vec<T> = items.by_ref().take(run).collect();
        if next.is_empty() {
            break;
        }
        runs.push(next);
    }
    let f = &f;
    thread::scope(|scope| {
        let workers: Vec<_> = runs
            .into_iter()
            .map(|run| scope.spawn(move || run.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_the_items_order_whatever_the_threads() {
        let items: Vec<u32> = (0..1_000).collect();
        let expected: Vec<u64> = items.iter().map(|&i| u64::from(i) * 3).collect();
        for threads in [1, 2, 3, 7, 8, 1_000, 2_000] {
            let got = map_on(items.clone(), |i| u64::from(i) * 3, threads);
            assert_eq!(got, expected, "{threads} threads");
        }
        assert!(map_on(Vec::<u32>::new(), |i| i, 4).is_empty());
        assert_eq!(map(vec![5, 6], |i| i + 1), [6, 7]);
    }

    #[test]
    fn work_runs_on_several_threads_when_there_is_enough() {
        let ids = map_on((0..64).collect(), |_: u32| thread::current().id(), 4);
        let distinct: std::collections::HashSet<_> = ids.into_iter().collect();
        assert_eq!(distinct.len(), 4);
    }
}
