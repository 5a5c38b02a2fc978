//! Group commit for the ledger's hot path: the holds of answers that start together are
//! placed in one transaction (`Ledger::hold_many`), and the receipts of answers that finish
//! together are recorded in one (`Ledger::record_many`). Each of the two is a task that takes
//! whatever has queued while the previous group was being written, so one answer at a time
//! costs what it did, and many at once share a commit. A group that fails as a whole (one
//! payer short, say) is retried one by one, so each answer gets its own outcome.
//!
//! Holds are leases: placed for [`HOLD_LEASE`] and renewed by a third task while their answer
//! is in progress (while its [`LeasedHold`] lives), so the money a killed process held returns
//! to its payer within the lease, and so does that of an answer abandoned without a release.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tributary_attribution::{Amount, Error as AttributionError, Hold, Ledger, NewReceipt, Payer, Receipt};

/// How long a hold outlives the last renewal of the process that placed it.
pub const HOLD_LEASE: Duration = Duration::from_secs(30);

/// The ids of the holds whose answers are in progress.
type Live = Arc<Mutex<HashSet<String>>>;

/// A hold renewed while this lives; dropped (the answer recorded, failed or abandoned), it is
/// no longer renewed and lapses within the lease unless charged or released first.
#[derive(Debug)]
pub struct LeasedHold {
    pub hold: Hold,
    live: Live,
}

impl Drop for LeasedHold {
    fn drop(&mut self) {
        self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.hold.id);
    }
}

/// The most holds or receipts one transaction takes.
const MAX_GROUP: usize = 256;

type Reply<T> = oneshot::Sender<Result<T, AttributionError>>;

/// Senders to the two group-commit tasks. Dropping it ends them.
pub struct LedgerBatcher {
    holds: mpsc::UnboundedSender<((Payer, Amount), Reply<Hold>)>,
    records: mpsc::UnboundedSender<(NewReceipt, Reply<Receipt>)>,
    live: Live,
}

fn gone() -> AttributionError {
    AttributionError::Inconsistent("the ledger's group-commit task is gone".into())
}

/// The jobs queued now, `first` included, up to [`MAX_GROUP`].
fn drain<T>(first: T, rx: &mut mpsc::UnboundedReceiver<T>) -> Vec<T> {
    let mut jobs = vec![first];
    while jobs.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
    jobs
}

impl LedgerBatcher {
    /// Starts the tasks on the current tokio runtime, holds leased for [`HOLD_LEASE`].
    pub fn start(ledger: Ledger) -> LedgerBatcher {
        LedgerBatcher::with_lease(ledger, HOLD_LEASE)
    }

    /// [`LedgerBatcher::start`] with holds leased for `lease` (renewed every third of it).
    pub fn with_lease(ledger: Ledger, lease: Duration) -> LedgerBatcher {
        let live = Live::default();
        tokio::spawn(renew(ledger.clone(), Arc::downgrade(&live), lease));
        let (holds, mut hold_rx) = mpsc::unbounded_channel::<((Payer, Amount), Reply<Hold>)>();
        let (records, mut record_rx) = mpsc::unbounded_channel::<(NewReceipt, Reply<Receipt>)>();
        let for_holds = ledger.clone();
        tokio::spawn(async move {
            while let Some(first) = hold_rx.recv().await {
                let jobs = drain(first, &mut hold_rx);
                let requests: Vec<(Payer, Amount)> = jobs.iter().map(|(request, _)| *request).collect();
                match for_holds.hold_many(&requests, lease).await {
                    Ok(results) => {
                        for ((_, reply), result) in jobs.into_iter().zip(results) {
                            let _ = reply.send(result);
                        }
                    }
                    Err(_) => {
                        for ((payer, amount), reply) in jobs {
                            let _ = reply.send(for_holds.hold(&payer, amount, lease).await);
                        }
                    }
                }
            }
        });
        tokio::spawn(async move {
            while let Some(first) = record_rx.recv().await {
                let jobs = drain(first, &mut record_rx);
                let batch: Vec<NewReceipt> = jobs.iter().map(|(new, _)| new.clone()).collect();
                match ledger.record_many(batch).await {
                    Ok(receipts) => {
                        for ((_, reply), receipt) in jobs.into_iter().zip(receipts) {
                            let _ = reply.send(Ok(receipt));
                        }
                    }
                    Err(_) => {
                        for (new, reply) in jobs {
                            let _ = reply.send(ledger.record(new).await);
                        }
                    }
                }
            }
        });
        LedgerBatcher { holds, records, live }
    }

    /// Holds `amount` of the payer's balance (see `Ledger::hold`), in the next group, renewed
    /// while the returned lease lives.
    pub async fn hold(&self, payer: Payer, amount: Amount) -> Result<LeasedHold, AttributionError> {
        let (reply, answer) = oneshot::channel();
        self.holds.send(((payer, amount), reply)).map_err(|_| gone())?;
        let hold = answer.await.map_err(|_| gone())??;
        self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(hold.id.clone());
        Ok(LeasedHold { hold, live: self.live.clone() })
    }

    /// Records a receipt, its charge and its credits (see `Ledger::record`), in the next group.
    pub async fn record(&self, new: NewReceipt) -> Result<Receipt, AttributionError> {
        let (reply, answer) = oneshot::channel();
        self.records.send((new, reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Renews the live holds every third of `lease` until the batcher and its leases are gone.
async fn renew(ledger: Ledger, live: Weak<Mutex<HashSet<String>>>, lease: Duration) {
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(live) = live.upgrade() else { return };
        let ids: Vec<String> = live.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().cloned().collect();
        drop(live);
        if !ids.is_empty()
            && let Err(e) = ledger.renew_holds(&ids, lease).await
        {
            // Retried at the next tick; a hold that lapses meanwhile is charged from the
            // balance if it still covers the fee, and refused otherwise.
            tracing::warn!(error = %e, holds = ids.len(), "renewing holds failed");
        }
    }
}
