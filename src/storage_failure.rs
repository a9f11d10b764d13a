//! A failure of the disk or the index under an engine, with its cause kept (for the
//! log, through `source()`), not flattened into a string. Cheap to clone, so engine
//! errors that carry it stay `Clone`.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct StorageFailure {
    /// What was being done: "append to the record log", "flush the queue store".
    pub context: String,
    pub source: Option<Arc<dyn Error + Send + Sync>>,
    /// The storage could not be reached (a database down or restarting, a node that
    /// lost its lease): a retry may succeed, and nothing was changed. Callers answer
    /// it as the service's 503.
    pub unavailable: bool,
}

impl StorageFailure {
    /// A failure with no underlying error (a writer thread that stopped).
    pub fn new(context: impl Into<String>) -> Self {
        StorageFailure { context: context.into(), source: None, unavailable: false }
    }

    /// `context` failed because of `source`.
    pub fn caused(context: impl Into<String>, source: impl Error + Send + Sync + 'static) -> Self {
        StorageFailure { context: context.into(), source: Some(Arc::new(source)), unavailable: false }
    }

    /// As [`StorageFailure::caused`], where the storage could not be reached.
    pub fn unreachable(context: impl Into<String>, source: impl Error + Send + Sync + 'static) -> Self {
        StorageFailure { unavailable: true, ..Self::caused(context, source) }
    }
}

impl fmt::Display for StorageFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(s) => write!(f, "{}: {s}", self.context),
            None => f.write_str(&self.context),
        }
    }
}

impl Error for StorageFailure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// Equal when they describe the same failure (the causes are not compared).
impl PartialEq for StorageFailure {
    fn eq(&self, other: &Self) -> bool {
        self.context == other.context
    }
}

impl Eq for StorageFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_kept_and_shown() {
        let e = StorageFailure::caused("append to the record log", std::io::Error::other("disk full"));
        assert_eq!(e.to_string(), "append to the record log: disk full");
        assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("disk full"));
        assert_eq!(StorageFailure::new("stopped").to_string(), "stopped");
        assert!(StorageFailure::new("stopped").source().is_none());
    }
}
