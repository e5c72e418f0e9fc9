//! What can go wrong in the store.

/// An error from a [`Store`](crate::Store) call. Print it with `{:#}` (or walk
/// [`source`](std::error::Error::source)) to see the database's own message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement, or could not be reached.
    #[error("database error")]
    Db(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("migrating the database failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The change would break a uniqueness or ownership rule; the message says which, in
    /// words fit for the user (e.g. "user alice already exists").
    #[error("{0}")]
    Conflict(String),
    /// A stored JSON value does not decode as its type (or a value did not encode).
    #[error("stored {what} is not valid")]
    Corrupt {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// The database URL is not one the store accepts; the message lists those it does.
    #[error("{0}")]
    BadUrl(String),
}
