//! The writer lease: the one row that says which node of a deployment writes, until
//! when, and under which epoch. A node takes it when it is absent or expired (the epoch
//! goes up by one), renews it while it serves, and gives it up at shutdown; expiry is
//! PostgreSQL's clock, so nodes' clocks need not agree. The epoch is the fence: a
//! serving node's connections carry it and the schema refuses their changes once the
//! row holds another (see migration 7 in `postgres::schema`).

use std::time::Duration;

use crate::postgres::{failed, from_bigint, to_bigint, Database, Param};
use crate::storage_failure::StorageFailure;

const STORE: &str = "the cluster lease";

/// The lease row's name (one lease per deployment today).
const WRITER: &str = "writer";

/// Who holds the lease, as the database says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub node: String,
    /// The holder's HTTP URL as other nodes reach it.
    pub address: String,
    pub epoch: u64,
    /// False once its expiry has passed (another node may take it).
    pub live: bool,
}

/// One node's view of the lease.
#[derive(Clone)]
pub struct WriterLease {
    db: Database,
    node: String,
    address: String,
    ttl: Duration,
}

impl WriterLease {
    /// The lease as node `node` (unique per process), reachable at `address`, holding
    /// it for `ttl` at a time.
    pub fn new(db: Database, node: &str, address: &str, ttl: Duration) -> Self {
        WriterLease { db, node: node.into(), address: address.into(), ttl }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// Takes the lease if nobody holds it or its holder's time has passed; its new
    /// epoch, or `None` while another node holds it. The table is locked for the
    /// change, so changes checked against the old epoch commit first (see the module
    /// docs).
    pub async fn try_take(&self) -> Result<Option<u64>, StorageFailure> {
        let (pool, node, address, ttl_ms) =
            (self.db.pool().clone(), self.node.clone(), self.address.clone(), self.ttl_ms());
        self.db
            .run(async move {
                let mut client = pool.get().await.map_err(|e| failed(STORE, e))?;
                let tx = client.transaction().await.map_err(|e| failed(STORE, e))?;
                let step = async {
                    tx.batch_execute("LOCK TABLE cluster_lease IN ACCESS EXCLUSIVE MODE").await?;
                    let row = tx
                        .query_opt("SELECT epoch, expires_at > now() FROM cluster_lease WHERE name = $1", &[&WRITER])
                        .await?;
                    let epoch = match row {
                        Some(r) if r.get::<_, bool>(1) => return Ok(None),
                        Some(r) => from_bigint(r.get(0)) + 1,
                        None => 1,
                    };
                    tx.execute(
                        "INSERT INTO cluster_lease (name, node, address, epoch, expires_at)
                         VALUES ($1, $2, $3, $4, now() + $5::float8 * interval '1 millisecond')
                         ON CONFLICT (name) DO UPDATE SET node = EXCLUDED.node, address = EXCLUDED.address,
                             epoch = EXCLUDED.epoch, expires_at = EXCLUDED.expires_at",
                        &[&WRITER, &node, &address, &to_bigint(epoch), &(ttl_ms as f64)],
                    )
                    .await?;
                    Ok(Some(epoch))
                };
                let taken = step.await.map_err(|e: crate::postgres::tokio_postgres::Error| failed(STORE, e))?;
                tx.commit().await.map_err(|e| failed(STORE, e))?;
                Ok(taken)
            })
            .await?
    }

    /// Extends the lease held at `epoch` by the ttl from now; false if it has moved on
    /// (another node took it: this one must stop writing).
    pub async fn renew(&self, epoch: u64) -> Result<bool, StorageFailure> {
        let changed = self
            .db
            .execute_async(
                STORE,
                "UPDATE cluster_lease SET expires_at = now() + $4::float8 * interval '1 millisecond'
                 WHERE name = $1 AND node = $2 AND epoch = $3",
                vec![
                    Param::Text(WRITER.into()),
                    Param::Text(self.node.clone()),
                    Param::uint(epoch),
                    Param::Float(self.ttl_ms() as f64),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    /// Gives the lease held at `epoch` up now, so that another node may take it at
    /// once (a clean shutdown).
    pub async fn release(&self, epoch: u64) -> Result<(), StorageFailure> {
        self.db
            .execute_async(
                STORE,
                "UPDATE cluster_lease SET expires_at = now() - interval '1 second'
                 WHERE name = $1 AND node = $2 AND epoch = $3",
                vec![Param::Text(WRITER.into()), Param::Text(self.node.clone()), Param::uint(epoch)],
            )
            .await
            .map(|_| ())
    }

    /// The holder now, if any node ever took the lease.
    pub async fn holder(&self) -> Result<Option<Holder>, StorageFailure> {
        let rows = self
            .db
            .query_async(
                STORE,
                "SELECT node, address, epoch, expires_at > now() FROM cluster_lease WHERE name = $1",
                vec![Param::Text(WRITER.into())],
            )
            .await?;
        Ok(rows.first().map(|r| Holder {
            node: r.get(0),
            address: r.get(1),
            epoch: from_bigint(r.get(2)),
            live: r.get(3),
        }))
    }
}

/// What the holder of the lease does between renewals: `Renew` after `every`; `Lost`
/// once a renewal said another node holds it, or no renewal has succeeded for the
/// whole ttl (another node may hold it by now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Renew,
    Lost,
}

/// Decides after one renewal attempt: `renewed` is its answer (`None`: it failed),
/// `since_success` the time since the last successful renewal was sent.
pub fn after_renewal(renewed: Option<bool>, since_success: Duration, ttl: Duration) -> Renewal {
    match renewed {
        Some(true) => Renewal::Renew,
        Some(false) => Renewal::Lost,
        None if since_success >= ttl => Renewal::Lost,
        None => Renewal::Renew,
    }
}

/// Waits until this node holds the lease; its epoch. The holder is read plainly
/// first: only a free or expired lease is taken, so followers waiting do not lock the
/// table under the writer every second.
pub async fn take_when_free(lease: &WriterLease) -> u64 {
    let every = (lease.ttl / 4).min(Duration::from_secs(1));
    let mut reported = None;
    loop {
        let free = match lease.holder().await {
            Ok(Some(h)) if h.live => {
                if reported.as_ref() != Some(&h) {
                    tracing::info!(writer = %h.node, address = %h.address, epoch = h.epoch, "another node writes; forwarding to it");
                    reported = Some(h);
                }
                false
            }
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "the cluster lease cannot be read; retrying");
                false
            }
        };
        if free {
            match lease.try_take().await {
                Ok(Some(epoch)) => return epoch,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "the cluster lease cannot be taken; retrying"),
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Renews the lease at `epoch` every third of its ttl until it is lost; returns why.
pub async fn keep(lease: WriterLease, epoch: u64) -> String {
    let every = lease.ttl / 3;
    let mut last_success = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let sent = tokio::time::Instant::now();
        let renewed = match tokio::time::timeout(every, lease.renew(epoch)).await {
            Ok(Ok(r)) => Some(r),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, epoch, "the cluster lease could not be renewed; retrying");
                None
            }
            Err(_) => {
                tracing::warn!(epoch, "renewing the cluster lease timed out; retrying");
                None
            }
        };
        if renewed == Some(true) {
            last_success = sent;
        }
        if after_renewal(renewed, sent.duration_since(last_success), lease.ttl) == Renewal::Lost {
            return if renewed == Some(false) {
                format!("another node took the cluster lease (this node held epoch {epoch})")
            } else {
                format!("the cluster lease (epoch {epoch}) could not be renewed for {:?}", lease.ttl)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_lost_when_taken_or_unrenewed_for_its_ttl() {
        let ttl = Duration::from_secs(15);
        assert_eq!(after_renewal(Some(true), Duration::ZERO, ttl), Renewal::Renew);
        assert_eq!(after_renewal(Some(false), Duration::ZERO, ttl), Renewal::Lost);
        assert_eq!(after_renewal(None, Duration::from_secs(14), ttl), Renewal::Renew);
        assert_eq!(after_renewal(None, ttl, ttl), Renewal::Lost);
    }
}
