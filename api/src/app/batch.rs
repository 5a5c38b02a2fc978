//! Group commit for the ledger's hot path: the holds of answers that start together are
//! placed in one transaction (`Ledger::hold_many`), and the receipts of answers that finish
//! together are recorded in one (`Ledger::record_many`). Each of the two is a task that takes
//! whatever has queued while the previous group was being written, so one answer at a time
//! costs what it did, and many at once share a commit. A group that fails as a whole (one
//! payer short, say) is retried one by one, so each answer gets its own outcome.

use tokio::sync::{mpsc, oneshot};
use tributary_attribution::{
    Amount, DEFAULT_HOLD_TTL, Error as AttributionError, Hold, Ledger, NewReceipt, Payer, Receipt,
};

/// The most holds or receipts one transaction takes.
const MAX_GROUP: usize = 256;

type Reply<T> = oneshot::Sender<Result<T, AttributionError>>;

/// Senders to the two group-commit tasks. Dropping it ends them.
pub struct LedgerBatcher {
    holds: mpsc::UnboundedSender<((Payer, Amount), Reply<Hold>)>,
    records: mpsc::UnboundedSender<(NewReceipt, Reply<Receipt>)>,
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
    /// Starts the two tasks on the current tokio runtime.
    pub fn start(ledger: Ledger) -> LedgerBatcher {
        let (holds, mut hold_rx) = mpsc::unbounded_channel::<((Payer, Amount), Reply<Hold>)>();
        let (records, mut record_rx) = mpsc::unbounded_channel::<(NewReceipt, Reply<Receipt>)>();
        let for_holds = ledger.clone();
        tokio::spawn(async move {
            while let Some(first) = hold_rx.recv().await {
                let jobs = drain(first, &mut hold_rx);
                let requests: Vec<(Payer, Amount)> = jobs.iter().map(|(request, _)| *request).collect();
                match for_holds.hold_many(&requests, DEFAULT_HOLD_TTL).await {
                    Ok(results) => {
                        for ((_, reply), result) in jobs.into_iter().zip(results) {
                            let _ = reply.send(result);
                        }
                    }
                    Err(_) => {
                        for ((payer, amount), reply) in jobs {
                            let _ = reply.send(for_holds.hold(&payer, amount, DEFAULT_HOLD_TTL).await);
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
        LedgerBatcher { holds, records }
    }

    /// Holds `amount` of the payer's balance (see `Ledger::hold`), in the next group.
    pub async fn hold(&self, payer: Payer, amount: Amount) -> Result<Hold, AttributionError> {
        let (reply, answer) = oneshot::channel();
        self.holds.send(((payer, amount), reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Records a receipt, its charge and its credits (see `Ledger::record`), in the next group.
    pub async fn record(&self, new: NewReceipt) -> Result<Receipt, AttributionError> {
        let (reply, answer) = oneshot::channel();
        self.records.send((new, reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}
