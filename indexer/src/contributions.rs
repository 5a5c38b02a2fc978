//! Contributions: every upload to a Datanet, and the review some Datanets ask for.
//!
//! A Datanet with `review` set keeps uploads from anyone but its owner as *pending*
//! contributions: the documents are stored as submitted (`payload`) but neither chunked nor
//! indexed, so they cannot be retrieved, cited or credited. An owner or a member accepts
//! (the documents are then ingested, credited to the contributor) or rejects (with a reason,
//! and the documents are dropped), once. Acceptance moves `pending -> accepting -> accepted`:
//! a crash while indexing leaves `accepting`, which [`Catalog::accepting`] lists for the next
//! start to finish (ingesting is idempotent: documents already stored are not stored again).
//! Uploads to Datanets without review are recorded as accepted, with what indexing did.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::catalog::{Catalog, now_ms, parse_address};
use crate::{Address, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContributionStatus {
    Pending,
    /// Accepted; its documents are being indexed.
    Accepting,
    Accepted,
    Rejected,
}

impl ContributionStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ContributionStatus::Pending => "pending",
            ContributionStatus::Accepting => "accepting",
            ContributionStatus::Accepted => "accepted",
            ContributionStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(ContributionStatus::Pending),
            "accepting" => Ok(ContributionStatus::Accepting),
            "accepted" => Ok(ContributionStatus::Accepted),
            "rejected" => Ok(ContributionStatus::Rejected),
            other => Err(Error::Inconsistent(format!("stored contribution status {other:?}"))),
        }
    }
}

/// One upload to a Datanet and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    pub id: i64,
    pub datanet_id: i64,
    pub contributor: Address,
    pub status: ContributionStatus,
    /// The upload's content hash (what a signed upload signs).
    pub content_hash: String,
    /// The documents' names.
    pub names: Vec<String>,
    pub bytes: u64,
    /// What indexing did (JSON of an `IngestReport`), once accepted.
    pub report: Option<String>,
    /// Why it was rejected.
    pub reason: String,
    pub created_at_ms: i64,
    pub decided_at_ms: Option<i64>,
    /// The address (or `admin`) that decided.
    pub decided_by: Option<String>,
}

/// A contribution about to be recorded.
#[derive(Debug, Clone)]
pub struct NewContribution<'a> {
    pub datanet_id: i64,
    pub contributor: Address,
    pub content_hash: &'a str,
    pub names: &'a [String],
    pub bytes: u64,
}

/// What each contributor has had accepted into a Datanet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContributorTally {
    pub contributor: Address,
    pub accepted_uploads: u64,
    /// Chunks whose credit the contributor holds (first contributor of that text).
    pub chunks: u64,
}

const COLUMNS: &str = "id, datanet_id, contributor, status, content_hash, names, bytes, report, reason, created_at, \
                       decided_at, decided_by";

fn from_row(row: &AnyRow) -> Result<Contribution> {
    let names: String = row.try_get("names")?;
    Ok(Contribution {
        id: row.try_get("id")?,
        datanet_id: row.try_get("datanet_id")?,
        contributor: parse_address(&row.try_get::<String, _>("contributor")?)?,
        status: ContributionStatus::parse(&row.try_get::<String, _>("status")?)?,
        content_hash: row.try_get("content_hash")?,
        names: serde_json::from_str(&names).map_err(|e| Error::Inconsistent(format!("stored names: {e}")))?,
        bytes: row.try_get::<i64, _>("bytes")?.max(0) as u64,
        report: row.try_get("report")?,
        reason: row.try_get("reason")?,
        created_at_ms: row.try_get("created_at")?,
        decided_at_ms: row.try_get("decided_at")?,
        decided_by: row.try_get("decided_by")?,
    })
}

impl Catalog {
    /// Records an upload waiting for review, with its documents as submitted (`payload`).
    pub async fn add_pending_contribution(&self, new: &NewContribution<'_>, payload: &str) -> Result<Contribution> {
        self.insert_contribution(new, ContributionStatus::Pending, Some(payload), None).await
    }

    /// Records an upload that was indexed at once, with what indexing did (`report`, JSON).
    pub async fn add_accepted_contribution(&self, new: &NewContribution<'_>, report: &str) -> Result<Contribution> {
        self.insert_contribution(new, ContributionStatus::Accepted, None, Some(report)).await
    }

    async fn insert_contribution(
        &self,
        new: &NewContribution<'_>,
        status: ContributionStatus,
        payload: Option<&str>,
        report: Option<&str>,
    ) -> Result<Contribution> {
        let names = serde_json::to_string(new.names).map_err(|e| Error::Inconsistent(e.to_string()))?;
        let created_at = now_ms();
        let row = sqlx::query(
            "INSERT INTO contributions (datanet_id, contributor, status, content_hash, names, bytes, payload, report, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(new.datanet_id)
        .bind(new.contributor.to_lower_hex())
        .bind(status.as_str())
        .bind(new.content_hash)
        .bind(&names)
        .bind(new.bytes.min(i64::MAX as u64) as i64)
        .bind(payload)
        .bind(report)
        .bind(created_at)
        .fetch_one(self.pool())
        .await?;
        Ok(Contribution {
            id: row.try_get("id")?,
            datanet_id: new.datanet_id,
            contributor: new.contributor,
            status,
            content_hash: new.content_hash.to_string(),
            names: new.names.to_vec(),
            bytes: new.bytes,
            report: report.map(str::to_string),
            reason: String::new(),
            created_at_ms: created_at,
            decided_at_ms: None,
            decided_by: None,
        })
    }

    /// A Datanet's contributions by id, after `after`, at most `limit`; only `contributor`'s
    /// when given, only those in `status` when given.
    pub async fn contributions(
        &self,
        datanet_id: i64,
        contributor: Option<&Address>,
        status: Option<ContributionStatus>,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Contribution>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM contributions WHERE datanet_id = $1 AND ($2 = '' OR contributor = $2) \
             AND ($3 = '' OR status = $3) AND id > $4 ORDER BY id LIMIT $5"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(datanet_id)
            .bind(contributor.map(|a| a.to_lower_hex()).unwrap_or_default())
            .bind(status.map(|s| s.as_str()).unwrap_or(""))
            .bind(after.unwrap_or(0))
            .bind(limit.min(i64::MAX as usize) as i64)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn contribution(&self, datanet_id: i64, id: i64) -> Result<Contribution> {
        let sql = format!("SELECT {COLUMNS} FROM contributions WHERE id = $1 AND datanet_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(datanet_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| Error::NotFound(format!("contribution {id}")))?;
        from_row(&row)
    }

    /// The documents of a contribution not yet indexed, as submitted.
    pub async fn contribution_payload(&self, id: i64) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT payload FROM contributions WHERE id = $1").bind(id).fetch_optional(self.pool()).await?;
        Ok(match row {
            Some(row) => row.try_get("payload")?,
            None => None,
        })
    }

    /// Accepts a pending contribution (`pending -> accepting`), once: a second decision is a
    /// conflict. Its documents are to be indexed next, then [`Catalog::finish_accepting`].
    pub async fn start_accepting(&self, datanet_id: i64, id: i64, decided_by: &str) -> Result<Contribution> {
        self.decide(datanet_id, id, ContributionStatus::Accepting, decided_by, "").await
    }

    /// Rejects a pending contribution with a reason, once; its documents are dropped.
    pub async fn reject_contribution(
        &self,
        datanet_id: i64,
        id: i64,
        decided_by: &str,
        reason: &str,
    ) -> Result<Contribution> {
        self.decide(datanet_id, id, ContributionStatus::Rejected, decided_by, reason).await
    }

    async fn decide(
        &self,
        datanet_id: i64,
        id: i64,
        status: ContributionStatus,
        decided_by: &str,
        reason: &str,
    ) -> Result<Contribution> {
        let current = self.contribution(datanet_id, id).await?;
        let decided_at = now_ms();
        // A rejection drops the documents; an acceptance keeps them until they are indexed.
        let updated = sqlx::query(
            "UPDATE contributions SET status = $1, decided_at = $2, decided_by = $3, reason = $4, \
             payload = CASE WHEN $1 = 'rejected' THEN NULL ELSE payload END \
             WHERE id = $5 AND datanet_id = $6 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(decided_at)
        .bind(decided_by)
        .bind(reason)
        .bind(id)
        .bind(datanet_id)
        .execute(self.pool())
        .await?;
        if updated.rows_affected() != 1 {
            return Err(Error::Conflict(format!("contribution {id} is already {}", current.status.as_str())));
        }
        Ok(Contribution {
            status,
            reason: reason.to_string(),
            decided_at_ms: Some(decided_at),
            decided_by: Some(decided_by.to_string()),
            ..current
        })
    }

    /// Marks an accepted contribution indexed (`accepting -> accepted`), with what indexing did,
    /// and drops its stored documents.
    pub async fn finish_accepting(&self, id: i64, report: &str) -> Result<()> {
        sqlx::query(
            "UPDATE contributions SET status = 'accepted', report = $1, payload = NULL \
             WHERE id = $2 AND status = 'accepting'",
        )
        .bind(report)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Contributions accepted but not yet indexed (a crash interrupted them), oldest first.
    pub async fn accepting(&self) -> Result<Vec<Contribution>> {
        let sql = format!("SELECT {COLUMNS} FROM contributions WHERE status = 'accepting' ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.pool()).await?;
        rows.iter().map(from_row).collect()
    }

    /// Per contributor of the Datanet: accepted uploads and the chunks whose credit they hold.
    pub async fn contributor_tallies(&self, datanet_id: i64) -> Result<Vec<ContributorTally>> {
        let uploads = sqlx::query(
            "SELECT contributor, COUNT(*) AS n FROM contributions WHERE datanet_id = $1 AND status = 'accepted' \
             GROUP BY contributor",
        )
        .bind(datanet_id)
        .fetch_all(self.pool())
        .await?;
        let chunks =
            sqlx::query("SELECT contributor, COUNT(*) AS n FROM chunks WHERE datanet_id = $1 GROUP BY contributor")
                .bind(datanet_id)
                .fetch_all(self.pool())
                .await?;
        let mut tallies: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for row in &uploads {
            tallies.entry(row.try_get("contributor")?).or_default().0 = row.try_get::<i64, _>("n")?.max(0) as u64;
        }
        for row in &chunks {
            tallies.entry(row.try_get("contributor")?).or_default().1 = row.try_get::<i64, _>("n")?.max(0) as u64;
        }
        tallies
            .into_iter()
            .map(|(address, (accepted_uploads, chunks))| {
                Ok(ContributorTally { contributor: parse_address(&address)?, accepted_uploads, chunks })
            })
            .collect()
    }
}
