//! `/v1/chain`, the registry under `/v1/datanets/{name}/registry`, and the admin checks
//! (`/v1/admin/chain/deploy`, `/v1/admin/verify`, `/v1/admin/datanets/{name}/verify`): the
//! CLI's `chain` and `verify` commands over HTTP.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::datanets::{governed, readable};
use super::error::{ApiError, ApiResult, Errors, chain_error};
use super::extract::{Json, Path};
use super::state::AppState;
use super::wire::{self, view};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(chain_status))
        .routes(routes!(deploy))
        .routes(routes!(push))
        .routes(routes!(sync))
        .routes(routes!(register))
        .routes(routes!(prove))
        .routes(routes!(verify_ledger))
        .routes(routes!(verify_datanet))
}

/// The deployed contracts, the chain's latest epoch against the ledger's, and what is pending.
#[utoipa::path(get, path = "/v1/chain", tag = "ledger", responses((status = 200, body = wire::ChainStatus), Errors))]
async fn chain_status(State(state): State<AppState>) -> ApiResult<Json<wire::ChainStatus>> {
    let status = crate::app::onchain::status(state.app()).await.map_err(chain_error)?;
    Ok(Json(view(&status)?))
}

/// Deploys the contracts with the server's signer and records their addresses (admin).
#[utoipa::path(
    post, path = "/v1/admin/chain/deploy", tag = "ledger", request_body = wire::DeployRequest,
    security(("api_key" = [])), responses((status = 200, body = wire::Deployment), Errors)
)]
async fn deploy(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<wire::DeployRequest>,
) -> ApiResult<Json<wire::Deployment>> {
    caller.require(&[])?;
    let supply = body.supply.as_deref().unwrap_or("1000000000000000000000000");
    let deployment =
        crate::app::onchain::deploy(state.app(), body.token.as_deref(), supply, None).await.map_err(chain_error)?;
    Ok(Json(view(&deployment)?))
}

/// Records the payout contract's confirmed deposits (each once) as their payers' balances
/// (admin); the server also does this on an interval (`--chain-sync-secs`).
#[utoipa::path(
    post, path = "/v1/admin/chain/sync", tag = "ledger", security(("api_key" = [])),
    responses((status = 200, body = wire::Synced), Errors)
)]
async fn sync(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<wire::Synced>> {
    caller.require(&[])?;
    let synced = crate::app::onchain::sync(state.app())
        .await
        .map_err(chain_error)?
        .ok_or_else(|| chain_error(crate::app::onchain::ChainRefused::NotConfigured.into()))?;
    Ok(Json(view(&synced)?))
}

/// Pays every account the chain's latest epoch owes something, in batches of `batch_size`
/// (one `pushBatch` transaction and one multiproof each), with the server's signer (admin).
#[utoipa::path(
    post, path = "/v1/admin/chain/push", tag = "ledger", request_body = wire::PushRequest,
    security(("api_key" = [])), responses((status = 200, body = wire::Pushed), Errors)
)]
async fn push(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<wire::PushRequest>,
) -> ApiResult<Json<wire::Pushed>> {
    caller.require(&[])?;
    let batch_size = body.batch_size.unwrap_or(200);
    if !(1..=2000).contains(&batch_size) {
        return Err(ApiError::bad_request("batch_size is between 1 and 2000"));
    }
    let pushed = crate::app::onchain::push(state.app(), batch_size as usize).await.map_err(chain_error)?;
    Ok(Json(view(&pushed)?))
}

/// Commits the Datanet's contribution root (every chunk id with its first contributor) as its
/// next version on the registry (owner or admin).
#[utoipa::path(
    post, path = "/v1/datanets/{name}/registry", tag = "ledger", params(("name" = String, Path)),
    security(("api_key" = [])), responses((status = 200, body = wire::Registered), Errors)
)]
async fn register(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<wire::Registered>> {
    let datanet = governed(&state, &caller, &name).await?;
    let registered = crate::app::onchain::register(state.app(), &datanet).await.map_err(chain_error)?;
    Ok(Json(view(&registered)?))
}

/// Proves on chain that a chunk was contributed by its first contributor, at the Datanet's
/// latest registry version.
#[utoipa::path(
    get, path = "/v1/datanets/{name}/registry/chunks/{chunk}", tag = "ledger",
    params(("name" = String, Path), ("chunk" = String, Path, pattern = "^[0-9a-f]{64}$")),
    responses((status = 200, body = wire::Proven), Errors)
)]
async fn prove(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, chunk)): Path<(String, String)>,
) -> ApiResult<Json<wire::Proven>> {
    let datanet = readable(&state, &caller, &name).await?;
    let chunk: tributary_indexer::ChunkId =
        chunk.parse().map_err(|_| ApiError::invalid("a chunk id is 64 hex digits"))?;
    let proven = crate::app::onchain::prove(state.app(), &datanet, &chunk).await.map_err(chain_error)?;
    Ok(Json(view(&proven)?))
}

/// Recomputes the receipts' hash chain, every split and every epoch's root and proofs from the
/// ledger's data (admin); `problems` is empty when everything checks.
#[utoipa::path(
    get, path = "/v1/admin/verify", tag = "ledger", security(("api_key" = [])),
    responses((status = 200, body = wire::VerifyReport), Errors)
)]
async fn verify_ledger(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<wire::VerifyReport>> {
    caller.require(&[])?;
    Ok(Json(view(&state.app().ledger().verify().await?)?))
}

/// Checks that a Datanet's catalog, vectors and keywords agree; with `repair`, makes them
/// (admin).
#[utoipa::path(
    post, path = "/v1/admin/datanets/{name}/verify", tag = "datanets", params(("name" = String, Path)),
    request_body = wire::DatanetCheck, security(("api_key" = [])),
    responses((status = 200, body = wire::Consistency), Errors)
)]
async fn verify_datanet(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<wire::DatanetCheck>,
) -> ApiResult<Json<wire::Consistency>> {
    caller.require(&[])?;
    let datanet = state.catalog().datanet(&name).await?;
    let store = &state.app().store;
    let found = if body.repair {
        let embedder = state.embedder().await?;
        // One writer per Datanet: a repair writes the indexes.
        let _writing = state.app().writing(datanet.id).await?;
        store.repair(&datanet, embedder.as_ref()).await?
    } else {
        store.verify(&datanet).await?
    };
    Ok(Json(view(&found)?))
}
