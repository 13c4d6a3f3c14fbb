//! The single writer's machinery: the order in which writers take their turn ([`gate`]),
//! the WAL checkpoints that keep the log short without stalling them ([`checkpoint`]), and
//! the multi-row statements that batch their rows ([`values`]).

pub(super) mod checkpoint;
pub(super) mod gate;
pub(super) mod values;

use checkpoint::Checkpoints;
use gate::Pass;
use sqlx::{Sqlite, SqliteConnection, Transaction};
use std::sync::Arc;

/// A write transaction and its turn at the writer (see [`gate`]); derefs to the connection.
pub(super) struct WriteTx {
    pub(super) tx: Transaction<'static, Sqlite>,
    /// Held until the transaction ends: the next writer enters when it drops.
    pub(super) _pass: Pass,
    pub(super) checkpoints: Arc<Checkpoints>,
}

impl WriteTx {
    /// Commits, then lets the next writer in.
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        self.checkpoints.wrote();
        Ok(())
    }
}

impl std::ops::Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}
