//! Scoring ingested answers with grammar v3 across the machine's cores. Each answer is scored
//! as the engine scores a candidate: `ScoreResponse`, then `ComputeDelta` against the bare
//! prompt, the prompt's imprint computed once per item.

use crate::scorer::{DeltaScore, GrammarScore, Scorer, Thresholds};

/// What to score: a bare prompt, its answers, and earlier exchanges `(user, assistant)`.
pub struct Job<'a> {
    pub prompt: &'a str,
    pub answers: Vec<&'a str>,
    pub earlier: Vec<(&'a str, &'a str)>,
}

pub type Score = (GrammarScore, DeltaScore);

/// The scores of one job, in the job's order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scores {
    pub answers: Vec<Score>,
    pub earlier: Vec<Score>,
}

fn score_one(scorer: &Scorer, t: Thresholds, job: &Job<'_>) -> Scores {
    let imprint = scorer.imprint(job.prompt);
    Scores {
        answers: job.answers.iter().map(|a| scorer.score_against(&imprint, a, t)).collect(),
        earlier: job.earlier.iter().map(|(u, a)| scorer.score_with_delta(u, a, t)).collect(),
    }
}

/// Scores every job on `threads` threads (at least one); results in input order.
pub fn score_all(scorer: &Scorer, t: Thresholds, jobs: &[Job<'_>], threads: usize) -> Vec<Scores> {
    let threads = threads.clamp(1, jobs.len().max(1));
    if threads == 1 {
        return jobs.iter().map(|j| score_one(scorer, t, j)).collect();
    }
    // Small chunks handed out in turn keep the threads busy when answer lengths vary widely.
    let chunk = 256;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut parts: Vec<(usize, Vec<Scores>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let start = next.fetch_add(chunk, std::sync::atomic::Ordering::Relaxed);
                        if start >= jobs.len() {
                            break done;
                        }
                        let end = (start + chunk).min(jobs.len());
                        done.push((start, jobs[start..end].iter().map(|j| score_one(scorer, t, j)).collect()));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    parts.sort_by_key(|(start, _)| *start);
    parts.into_iter().flat_map(|(_, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorer::Mode;

    #[test]
    fn threads_give_the_same_scores_in_order() {
        let scorer = Scorer::new(Mode::Cold);
        let texts: Vec<String> =
            (0..700).map(|i| format!("The {i} engineers were building bridges and walked home.")).collect();
        let jobs: Vec<Job<'_>> = texts
            .iter()
            .map(|a| Job {
                prompt: "Who builds bridges?",
                answers: vec![a.as_str()],
                earlier: vec![("q?", a.as_str())],
            })
            .collect();
        let one = score_all(&scorer, Thresholds::default(), &jobs, 1);
        let three = score_all(&scorer, Thresholds::default(), &jobs, 3);
        assert_eq!(one.len(), 700);
        assert_eq!(one, three);
        let (g, d) = scorer.score_with_delta("Who builds bridges?", &texts[5], Thresholds::default());
        assert_eq!(one[5].answers[0], (g, d));
    }
}
