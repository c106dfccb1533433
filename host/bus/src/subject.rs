//! Subjects as NATS defines them (the rules are the core's, `guildhall_core::subject`):
//! what the bus refuses, as its error.

use crate::message::BusError;
use guildhall_core::subject::{is_pattern, is_subject};
pub use guildhall_core::subject::{matches, MAX_SUBJECT_BYTES};

/// A subject one can publish to: no wildcards.
pub fn check_subject(subject: &str) -> Result<(), BusError> {
    if is_subject(subject) {
        Ok(())
    } else {
        Err(BusError::InvalidSubject(subject.to_owned()))
    }
}

/// A subject one can subscribe to: wildcards allowed, `>` only last.
pub fn check_pattern(pattern: &str) -> Result<(), BusError> {
    if is_pattern(pattern) {
        Ok(())
    } else {
        Err(BusError::InvalidSubject(pattern.to_owned()))
    }
}
