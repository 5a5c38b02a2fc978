//! Who may read a private Datanet: its owner, its members, and addresses whose access request
//! the owner approved (which makes them members).
//!
//! A public Datanet is readable by everyone; membership matters for private ones only. The
//! catalog records membership; enforcing it (which caller is which address) is the API's job.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::catalog::{Catalog, Datanet, Visibility, now_ms, parse_address};
use crate::{Address, Error, Result};

/// An address allowed into a Datanet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub address: Address,
    pub added_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessStatus {
    Pending,
    Approved,
    Rejected,
}

impl AccessStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            AccessStatus::Pending => "pending",
            AccessStatus::Approved => "approved",
            AccessStatus::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(AccessStatus::Pending),
            "approved" => Ok(AccessStatus::Approved),
            "rejected" => Ok(AccessStatus::Rejected),
            other => Err(Error::Inconsistent(format!("stored access request status {other:?}"))),
        }
    }
}

/// A request to join a private Datanet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    pub id: i64,
    pub datanet_id: i64,
    pub address: Address,
    pub message: String,
    pub status: AccessStatus,
    pub created_at_ms: i64,
    pub decided_at_ms: Option<i64>,
    pub decided_by: Option<String>,
}

/// What may change about a Datanet after creation (its name and owner may not).
#[derive(Debug, Clone, Default)]
pub struct DatanetUpdate {
    pub description: Option<String>,
    pub visibility: Option<Visibility>,
    pub review: Option<bool>,
}

fn address_of(row: &AnyRow, column: &str) -> Result<Address> {
    parse_address(&row.try_get::<String, _>(column)?)
}

fn request_from_row(row: &AnyRow) -> Result<AccessRequest> {
    Ok(AccessRequest {
        id: row.try_get("id")?,
        datanet_id: row.try_get("datanet_id")?,
        address: address_of(row, "address")?,
        message: row.try_get("message")?,
        status: AccessStatus::parse(&row.try_get::<String, _>("status")?)?,
        created_at_ms: row.try_get("created_at")?,
        decided_at_ms: row.try_get("decided_at")?,
        decided_by: row.try_get("decided_by")?,
    })
}

const REQUEST_COLUMNS: &str = "id, datanet_id, address, message, status, created_at, decided_at, decided_by";

impl Catalog {
    /// Changes a Datanet's description and/or visibility.
    pub async fn update_datanet(&self, name: &str, update: &DatanetUpdate) -> Result<Datanet> {
        let mut datanet = self.datanet(name).await?;
        if let Some(description) = &update.description {
            datanet.description = description.clone();
        }
        if let Some(visibility) = update.visibility {
            datanet.visibility = visibility;
        }
        if let Some(review) = update.review {
            datanet.review = review;
        }
        sqlx::query("UPDATE datanets SET description = $1, visibility = $2, review = $3 WHERE id = $4")
            .bind(&datanet.description)
            .bind(datanet.visibility.as_str())
            .bind(i64::from(datanet.review))
            .bind(datanet.id)
            .execute(self.pool())
            .await?;
        Ok(datanet)
    }

    /// Whether `address` may read the Datanet: always for a public one; for a private one, its
    /// owner and its members.
    pub async fn can_read(&self, datanet: &Datanet, address: Option<&Address>) -> Result<bool> {
        if datanet.visibility == Visibility::Public {
            return Ok(true);
        }
        let Some(address) = address else { return Ok(false) };
        if *address == datanet.owner {
            return Ok(true);
        }
        self.is_member(datanet.id, address).await
    }

    pub async fn is_member(&self, datanet_id: i64, address: &Address) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM datanet_members WHERE datanet_id = $1 AND address = $2")
            .bind(datanet_id)
            .bind(address.to_lower_hex())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }

    pub async fn members(&self, datanet_id: i64) -> Result<Vec<Member>> {
        let rows = sqlx::query("SELECT address, added_at FROM datanet_members WHERE datanet_id = $1 ORDER BY address")
            .bind(datanet_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| Ok(Member { address: address_of(row, "address")?, added_at_ms: row.try_get("added_at")? }))
            .collect()
    }

    /// Adds a member; `false` when it already was one.
    pub async fn add_member(&self, datanet_id: i64, address: &Address) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO datanet_members (datanet_id, address, added_at) VALUES ($1, $2, $3) \
             ON CONFLICT (datanet_id, address) DO NOTHING",
        )
        .bind(datanet_id)
        .bind(address.to_lower_hex())
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes a member; `false` when it was not one.
    pub async fn remove_member(&self, datanet_id: i64, address: &Address) -> Result<bool> {
        let done = sqlx::query("DELETE FROM datanet_members WHERE datanet_id = $1 AND address = $2")
            .bind(datanet_id)
            .bind(address.to_lower_hex())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Files a request to join; refused while the same address has one pending, or is already
    /// allowed in.
    pub async fn request_access(&self, datanet: &Datanet, address: &Address, message: &str) -> Result<AccessRequest> {
        if datanet.visibility == Visibility::Public {
            return Err(Error::Conflict(format!("Datanet {} is public: everyone may read it", datanet.name)));
        }
        if self.can_read(datanet, Some(address)).await? {
            return Err(Error::Conflict(format!("{} already has access", address.to_checksummed())));
        }
        let created_at = now_ms();
        let row = sqlx::query(
            "INSERT INTO access_requests (datanet_id, address, message, status, created_at) \
             VALUES ($1, $2, $3, 'pending', $4) RETURNING id",
        )
        .bind(datanet.id)
        .bind(address.to_lower_hex())
        .bind(message)
        .bind(created_at)
        .fetch_one(self.pool())
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Error::Conflict(format!("{} already has a pending request", address.to_checksummed()))
            }
            _ => Error::Database(e),
        })?;
        Ok(AccessRequest {
            id: row.try_get("id")?,
            datanet_id: datanet.id,
            address: *address,
            message: message.to_string(),
            status: AccessStatus::Pending,
            created_at_ms: created_at,
            decided_at_ms: None,
            decided_by: None,
        })
    }

    pub async fn access_requests(&self, datanet_id: i64) -> Result<Vec<AccessRequest>> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM access_requests WHERE datanet_id = $1 ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(datanet_id).fetch_all(self.pool()).await?;
        rows.iter().map(request_from_row).collect()
    }

    /// Approves (the address becomes a member) or rejects a pending request, once: one
    /// transaction, so an approval never lands without its membership.
    pub async fn decide_access_request(
        &self,
        datanet_id: i64,
        request_id: i64,
        approve: bool,
        decided_by: &str,
    ) -> Result<AccessRequest> {
        let mut tx = self.pool().begin().await?;
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM access_requests WHERE id = $1 AND datanet_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(request_id)
            .bind(datanet_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::NotFound(format!("access request {request_id}")))?;
        let mut request = request_from_row(&row)?;
        let status = if approve { AccessStatus::Approved } else { AccessStatus::Rejected };
        let decided_at = now_ms();
        let updated = sqlx::query(
            "UPDATE access_requests SET status = $1, decided_at = $2, decided_by = $3 \
             WHERE id = $4 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(decided_at)
        .bind(decided_by)
        .bind(request_id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(Error::Conflict(format!("access request {request_id} is already {}", request.status.as_str())));
        }
        if approve {
            sqlx::query(
                "INSERT INTO datanet_members (datanet_id, address, added_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (datanet_id, address) DO NOTHING",
            )
            .bind(datanet_id)
            .bind(request.address.to_lower_hex())
            .bind(decided_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        request.status = status;
        request.decided_at_ms = Some(decided_at);
        request.decided_by = Some(decided_by.to_string());
        Ok(request)
    }
}
