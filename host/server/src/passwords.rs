//! Passwords: argon2id hashing and checking, bounded (see [`Passwords`]).

use std::sync::Arc;

/// Argon2 work, bounded: each hash or check takes tens of milliseconds of CPU and 19 MiB, so
/// at most `running` run at once (on the blocking pool) and at most `waiting` more wait;
/// beyond that the caller is told the server is busy (503) at once. A flood of logins or
/// registrations, with or without accounts, cannot exhaust memory or starve the other work
/// of the blocking pool (storage reads).
pub struct Passwords {
    admitted: Arc<tokio::sync::Semaphore>,
    running: tokio::sync::Semaphore,
}

/// Too many password hashes are running or waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Passwords {
    pub fn new(running: usize, waiting: usize) -> Passwords {
        let running = running.max(1);
        Passwords {
            admitted: Arc::new(tokio::sync::Semaphore::new(running + waiting)),
            running: tokio::sync::Semaphore::new(running),
        }
    }

    /// A place among those running or waiting, if there is one.
    fn admit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.admitted.clone().try_acquire_owned().ok()
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, Busy> {
        let _admitted = self.admit().ok_or(Busy)?;
        let _running = self.running.acquire().await.map_err(|_| Busy)?;
        tokio::task::spawn_blocking(work).await.map_err(|_| Busy)
    }

    pub async fn hash(&self, password: String) -> Result<Result<String, String>, Busy> {
        self.run(move || hash_now(&password)).await
    }

    pub async fn verify(&self, password: String, hash: String) -> Result<bool, Busy> {
        self.run(move || verify_now(&password, &hash)).await
    }
}

fn hash_now(password: &str) -> Result<String, String> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify_now(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash)
        .map(|parsed| argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn password_work_beyond_its_bounds_is_refused_at_once() {
        let passwords = Passwords::new(1, 1);
        let (one, two) = (passwords.admit(), passwords.admit());
        assert!(one.is_some() && two.is_some(), "one running and one waiting");
        assert!(passwords.admit().is_none());
        assert_eq!(passwords.hash("correct horse".into()).await, Err(Busy), "no place: busy, without waiting");
        assert_eq!(passwords.verify("x".into(), "y".into()).await, Err(Busy));
        drop(one);
        let hash = passwords.hash("correct horse".into()).await.expect("a place freed").unwrap();
        assert_eq!(passwords.verify("correct horse".into(), hash).await, Ok(true));
    }

    #[tokio::test]
    async fn password_round_trip() {
        let passwords = Passwords::new(2, 0);
        let hash = passwords.hash("correct horse".into()).await.unwrap().unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert_eq!(passwords.verify("correct horse".into(), hash.clone()).await, Ok(true));
        assert_eq!(passwords.verify("wrong horse".into(), hash).await, Ok(false));
        assert_eq!(passwords.verify("x".into(), "not a hash".into()).await, Ok(false));
    }
}
