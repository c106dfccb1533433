//! Following an actor that is moving: after a hand-off, an eviction or a node's death, the
//! guild's next actor exists only once its new owner has taken it (a view to catch up, a
//! lease to lapse: a few seconds). Work that must reach it (a session's connect, a start)
//! is retried from a task for a bounded time, then given up with a warning.

use std::future::Future;
use std::time::Duration;

/// Attempts at most, and the pause between two: 10 s in all, longer than a lease takes
/// to lapse and a view to drop a dead node.
pub const FOLLOW_ATTEMPTS: u32 = 40;
pub const FOLLOW_PAUSE: Duration = Duration::from_millis(250);

/// Runs `attempt` until it succeeds, at most [`FOLLOW_ATTEMPTS`] times with
/// [`FOLLOW_PAUSE`] between; whether it ever did.
pub async fn follow<F, Fut>(mut attempt: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for n in 1..=FOLLOW_ATTEMPTS {
        if attempt().await {
            return true;
        }
        if n < FOLLOW_ATTEMPTS {
            tokio::time::sleep(FOLLOW_PAUSE).await;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_its_attempts_and_stops_at_the_first_success() {
        let mut tries = 0;
        let started = tokio::time::Instant::now();
        assert!(
            !follow(|| {
                tries += 1;
                async { false }
            })
            .await
        );
        assert_eq!(tries, FOLLOW_ATTEMPTS);
        assert_eq!(started.elapsed(), FOLLOW_PAUSE * (FOLLOW_ATTEMPTS - 1), "virtual time, exactly");
        let mut tries = 0;
        assert!(
            follow(|| {
                tries += 1;
                let done = tries == 3;
                async move { done }
            })
            .await
        );
        assert_eq!(tries, 3);
    }
}
