//! `/v1/receipts`, `/v1/earnings`, `/v1/epochs`, `/v1/proofs`, `/v1/claims`, flags,
//! `/v1/admin/settle`, pricing and `/v1/adapters`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tributary_attribution::{AdapterPricing, DatanetPricing, FlagTarget, Policy};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::datanets::{governed, parse_address, readable};
use super::error::{ApiError, ApiResult, Errors, chain_error};
use super::extract::{Json, Path, Query, page_bounds, paginate};
use super::state::AppState;
use super::wire::{self, PageParams, view};
use crate::app::keys::Role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_receipt))
        .routes(routes!(get_earnings))
        .routes(routes!(list_epochs))
        .routes(routes!(get_epoch))
        .routes(routes!(get_proof))
        .routes(routes!(claim))
        .routes(routes!(get_claimable))
        .routes(routes!(settle))
        .routes(routes!(list_flags, create_flag))
        .routes(routes!(lift_flag))
        .routes(routes!(get_policy, set_policy))
        .routes(routes!(get_datanet_pricing, set_datanet_pricing))
        .routes(routes!(list_adapters, register_adapter))
        .routes(routes!(remove_adapter))
        .routes(routes!(get_adapter_pricing, set_adapter_pricing))
}

/// One answer's receipt: what was retrieved and cited, the fee, its split and every credit.
#[utoipa::path(
    get, path = "/v1/receipts/{id}", tag = "ledger", params(("id" = String, Path)),
    responses((status = 200, body = wire::Receipt), Errors)
)]
async fn get_receipt(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::Receipt>> {
    let not_found = || ApiError::new("receipt_not_found", format!("receipt {id:?} does not exist"));
    let receipt = match state.app().ledger().receipt(&id).await {
        Ok(receipt) => receipt,
        Err(tributary_attribution::Error::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    // A receipt over a private Datanet is as invisible as the Datanet.
    for name in &receipt.datanets {
        if readable(&state, &caller, name).await.is_err() {
            return Err(not_found());
        }
    }
    Ok(Json(view(&receipt)?))
}

/// What an address earned, per Datanet and per epoch, with its entries (per citation, per
/// slash) a page at a time: for that address's own keys and admins. Entries of a Datanet the
/// caller cannot read keep their amounts but not their Datanet, chunk, receipt or sentences;
/// such Datanets' totals are one `(not readable)` row.
#[utoipa::path(
    get, path = "/v1/earnings/{address}", tag = "ledger",
    params(("address" = String, Path, pattern = "^0x[0-9a-fA-F]{40}$"), PageParams),
    security(("api_key" = [])),
    responses((status = 200, body = wire::Earnings), Errors)
)]
async fn get_earnings(
    State(state): State<AppState>,
    caller: Caller,
    Path(address): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<wire::Earnings>> {
    caller.require(&[Role::Owner, Role::Contributor, Role::Reader])?;
    let account = parse_address(&address)?;
    if !caller.is_admin() && caller.address() != Some(&account) {
        return Err(ApiError::forbidden("a key reads its own address's earnings only"));
    }
    let (after, limit) = page_bounds::<i64>(page.cursor.as_deref(), page.limit)?;
    let (earnings, next) = state.app().ledger().earnings_page(&account, after, Some(limit)).await?;
    let mut earnings: wire::Earnings = view(&earnings)?;
    earnings.next_cursor = next.map(|id| id.to_string());
    redact_unreadable(&state, &caller, &mut earnings).await?;
    Ok(Json(earnings))
}

/// What an earner may no longer read (a Datanet made private, a membership removed) is not
/// shown through its earnings either: the entries keep their amounts (the money is the
/// earner's) but lose the Datanet, the chunk, the receipt and the cited sentences, and the
/// per-Datanet totals of such Datanets are one row named `(not readable)`.
async fn redact_unreadable(state: &AppState, caller: &Caller, earnings: &mut wire::Earnings) -> ApiResult<()> {
    const HIDDEN: &str = "(not readable)";
    let mut names: std::collections::BTreeSet<String> =
        earnings.entries.iter().filter_map(|e| e.datanet.clone()).collect();
    names.extend(earnings.by_datanet.iter().map(|d| d.datanet.clone()));
    let mut verdicts = std::collections::HashMap::new();
    for name in names {
        let can = readable(state, caller, &name).await.is_ok();
        verdicts.insert(name, can);
    }
    let hidden = |name: &Option<String>| name.as_ref().is_some_and(|n| verdicts.get(n) == Some(&false));
    for entry in &mut earnings.entries {
        if hidden(&entry.datanet) {
            entry.datanet = None;
            entry.datanet_id = None;
            entry.chunk_id = None;
            entry.receipt_id = None;
            entry.offsets = None;
            entry.sentences.clear();
        }
    }
    let mut hidden_total: i128 = 0;
    let mut any_hidden = false;
    let mut kept = Vec::with_capacity(earnings.by_datanet.len());
    for row in std::mem::take(&mut earnings.by_datanet) {
        if verdicts.get(&row.datanet) == Some(&false) {
            any_hidden = true;
            hidden_total += row.amount.parse::<i128>().map_err(ApiError::internal)?;
        } else {
            kept.push(row);
        }
    }
    if any_hidden {
        kept.push(wire::DatanetEarnings { datanet: HIDDEN.into(), amount: hidden_total.to_string() });
    }
    earnings.by_datanet = kept;
    Ok(())
}

/// Closed epochs, oldest first.
#[utoipa::path(
    get, path = "/v1/epochs", tag = "ledger", params(PageParams),
    responses((status = 200, body = wire::EpochPage), Errors)
)]
async fn list_epochs(
    State(state): State<AppState>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<wire::EpochPage>> {
    let epochs = state.app().ledger().epochs().await?;
    let (items, next_cursor) = paginate(epochs, |e| e.number, page.cursor.as_deref(), page.limit)?;
    Ok(Json(wire::EpochPage { items: items.iter().map(view).collect::<ApiResult<_>>()?, next_cursor }))
}

#[utoipa::path(
    get, path = "/v1/epochs/{number}", tag = "ledger", params(("number" = i64, Path)),
    responses((status = 200, body = wire::Epoch), Errors)
)]
async fn get_epoch(State(state): State<AppState>, Path(number): Path<i64>) -> ApiResult<Json<wire::Epoch>> {
    Ok(Json(view(&state.app().ledger().epoch(number).await?)?))
}

/// An address's cumulative total and Merkle proof in an epoch (default the latest): what
/// `AttributionPayouts.claim` takes. Public, like the root it proves against.
#[utoipa::path(
    get, path = "/v1/proofs/{address}", tag = "ledger", params(("address" = String, Path, pattern = "^0x[0-9a-fA-F]{40}$"), wire::ProofParams),
    responses((status = 200, body = wire::AccountProof), Errors)
)]
async fn get_proof(
    State(state): State<AppState>,
    Path(address): Path<String>,
    Query(params): Query<wire::ProofParams>,
) -> ApiResult<Json<wire::AccountProof>> {
    let account = parse_address(&address)?;
    Ok(Json(view(&state.app().ledger().proof(&account, params.epoch).await?)?))
}

/// What the address can claim now: its cumulative total in the chain's latest posted epoch
/// less what the payout contract has paid it. Public, like proofs. Without deployed contracts
/// `contracts` is false and nothing is claimable.
#[utoipa::path(
    get, path = "/v1/claims/{address}", tag = "ledger", params(("address" = String, Path, pattern = "^0x[0-9a-fA-F]{40}$")),
    responses((status = 200, body = wire::Claimable), Errors)
)]
async fn get_claimable(State(state): State<AppState>, Path(address): Path<String>) -> ApiResult<Json<wire::Claimable>> {
    let account = parse_address(&address)?;
    match crate::app::onchain::claimable(state.app(), &account).await {
        Ok(claimable) => Ok(Json(view(&claimable)?)),
        Err(e) => Err(chain_error(e)),
    }
}

/// Submits the address's claim on chain with the server's signer (the tokens go to the
/// address): for that address's own keys and admins.
#[utoipa::path(
    post, path = "/v1/claims", tag = "ledger", request_body = wire::ClaimRequest, security(("api_key" = [])),
    responses((status = 200, body = wire::ClaimResult), Errors)
)]
async fn claim(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<wire::ClaimRequest>,
) -> ApiResult<Json<wire::ClaimResult>> {
    caller.require(&[Role::Owner, Role::Contributor, Role::Reader])?;
    let account = parse_address(&body.address)?;
    if !caller.is_admin() && caller.address() != Some(&account) {
        return Err(ApiError::forbidden("a key claims for its own address only"));
    }
    match crate::app::onchain::claim_for(state.app(), &account).await {
        Ok(outcome) => Ok(Json(view(&outcome)?)),
        Err(e) => Err(chain_error(e)),
    }
}

/// Closes the current epoch (admin), then posts every closed epoch the chain lacks when
/// contracts are deployed. A failed posting leaves the epoch pending on chain (`chain_error`);
/// the next settle posts it.
#[utoipa::path(
    post, path = "/v1/admin/settle", tag = "ledger", security(("api_key" = [])),
    responses((status = 200, body = wire::SettleResult), Errors)
)]
async fn settle(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<wire::SettleResult>> {
    caller.require(&[])?;
    let crate::app::onchain::Settled { outcome, posted } = crate::app::onchain::settle(state.app()).await?;
    if outcome.closed_now {
        state.metrics().epochs_closed.inc();
    }
    let (posted_on_chain, chain_error) = match posted {
        Ok(posted) => (posted, None),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "posting epochs failed");
            (None, Some(e.to_string()))
        }
    };
    Ok(Json(wire::SettleResult {
        epoch: outcome.epoch.as_ref().map(view).transpose()?,
        closed_now: outcome.closed_now,
        posted_on_chain,
        chain_error,
    }))
}

/// A Datanet's flags, active and lifted.
#[utoipa::path(
    get, path = "/v1/datanets/{name}/flags", tag = "ledger", params(("name" = String, Path), PageParams),
    responses((status = 200, body = wire::FlagPage), Errors)
)]
async fn list_flags(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<wire::FlagPage>> {
    let datanet = readable(&state, &caller, &name).await?;
    let flags = state.app().ledger().flags(datanet.id).await?;
    let (items, next_cursor) = paginate(flags, |f| f.id, page.cursor.as_deref(), page.limit)?;
    Ok(Json(wire::FlagPage { items: items.iter().map(view).collect::<ApiResult<_>>()?, next_cursor }))
}

/// Flags a chunk, document or contributor (owner or admin): it leaves retrieval at once and
/// its unsettled credits are slashed.
#[utoipa::path(
    post, path = "/v1/datanets/{name}/flags", tag = "ledger", params(("name" = String, Path)),
    request_body = wire::NewFlag, security(("api_key" = [])),
    responses((status = 201, body = wire::FlagOutcome), (status = 200, body = wire::FlagOutcome, description = "Already flagged"), Errors)
)]
async fn create_flag(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<wire::NewFlag>,
) -> ApiResult<impl IntoResponse> {
    let datanet = governed(&state, &caller, &name).await?;
    if body.reason.trim().is_empty() {
        return Err(ApiError::invalid("give a reason"));
    }
    let target = match (body.chunk, body.document, body.contributor) {
        (Some(chunk), None, None) => {
            let id: tributary_indexer::ChunkId =
                chunk.parse().map_err(|_| ApiError::invalid("a chunk id is 64 hex digits"))?;
            FlagTarget::Chunk(id.to_hex())
        }
        (None, Some(document), None) => {
            let documents = state.catalog().documents(datanet.id).await?;
            let found = documents.iter().find(|d| d.external_id == document || d.id.to_string() == document);
            match found {
                Some(d) => FlagTarget::Document(d.id),
                // The Datanet (the path) exists; the body names something it lacks.
                None => return Err(ApiError::invalid(format!("Datanet {name} has no document {document:?}"))),
            }
        }
        (None, None, Some(contributor)) => FlagTarget::Contributor(parse_address(&contributor)?),
        _ => return Err(ApiError::invalid("name exactly one of chunk, document or contributor")),
    };
    let outcome = match state.app().ledger().flag(datanet.id, &target, &body.reason, &caller.actor()).await {
        Ok(outcome) => outcome,
        // The Datanet exists; the target it names does not.
        Err(tributary_attribution::Error::NotFound(what)) => {
            return Err(ApiError::invalid(format!("{what} not found")));
        }
        Err(e) => return Err(e.into()),
    };
    let status = if outcome.already_flagged { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(view::<_, wire::FlagOutcome>(&outcome)?)))
}

/// Lifts a flag (owner or admin): the target is retrievable again; slashes stay.
#[utoipa::path(
    post, path = "/v1/datanets/{name}/flags/{id}/lift", tag = "ledger",
    params(("name" = String, Path), ("id" = i64, Path)), request_body = wire::LiftFlag, security(("api_key" = [])),
    responses((status = 200, body = wire::Flag), Errors)
)]
async fn lift_flag(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, i64)>,
    Json(body): Json<wire::LiftFlag>,
) -> ApiResult<Json<wire::Flag>> {
    let datanet = governed(&state, &caller, &name).await?;
    let ledger = state.app().ledger();
    let flag = ledger.flags(datanet.id).await?.into_iter().find(|f| f.id == id);
    match flag {
        None => Err(ApiError::not_found(format!("Datanet {name} has no flag {id}"))),
        Some(f) if !f.active => Err(ApiError::conflict(format!("flag {id} is already lifted"))),
        Some(_) => Ok(Json(view(&ledger.unflag(id, &body.reason, &caller.actor()).await?)?)),
    }
}

/// The ledger-wide pricing policy.
#[utoipa::path(get, path = "/v1/pricing", tag = "ledger", responses((status = 200, body = wire::Policy), Errors))]
async fn get_policy(State(state): State<AppState>) -> ApiResult<Json<wire::Policy>> {
    Ok(Json(view(&state.app().ledger().policy().await?)?))
}

/// Replaces the policy (admin). Shares must sum to 10,000 basis points.
#[utoipa::path(
    put, path = "/v1/pricing", tag = "ledger", request_body = wire::Policy, security(("api_key" = [])),
    responses((status = 200, body = wire::Policy), Errors)
)]
async fn set_policy(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<wire::Policy>,
) -> ApiResult<Json<wire::Policy>> {
    caller.require(&[])?;
    let policy: Policy = from_wire(&body)?;
    state.app().ledger().set_policy(&policy).await?;
    Ok(Json(view(&policy)?))
}

/// A wire value read as its domain type (the domain's own validation of amounts, addresses).
fn from_wire<W: serde::Serialize, T: serde::de::DeserializeOwned>(value: &W) -> ApiResult<T> {
    let json = serde_json::to_value(value).map_err(ApiError::internal)?;
    serde_json::from_value(json).map_err(|e| ApiError::invalid(e.to_string()))
}

#[utoipa::path(
    get, path = "/v1/datanets/{name}/pricing", tag = "ledger", params(("name" = String, Path)),
    responses((status = 200, body = wire::DatanetPricing), Errors)
)]
async fn get_datanet_pricing(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<wire::DatanetPricing>> {
    let datanet = readable(&state, &caller, &name).await?;
    Ok(Json(view(&state.app().ledger().datanet_pricing(datanet.id).await?)?))
}

/// Sets a Datanet's price and weighting (owner or admin).
#[utoipa::path(
    put, path = "/v1/datanets/{name}/pricing", tag = "ledger", params(("name" = String, Path)),
    request_body = wire::DatanetPricing, security(("api_key" = [])),
    responses((status = 200, body = wire::DatanetPricing), Errors)
)]
async fn set_datanet_pricing(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<wire::DatanetPricing>,
) -> ApiResult<Json<wire::DatanetPricing>> {
    let datanet = governed(&state, &caller, &name).await?;
    let pricing: DatanetPricing = from_wire(&body)?;
    state.app().ledger().set_datanet_pricing(datanet.id, &pricing).await?;
    Ok(Json(view(&pricing)?))
}

/// Registered LoRA adapters, by id.
#[utoipa::path(
    get, path = "/v1/adapters", tag = "adapters", params(PageParams),
    responses((status = 200, body = wire::AdapterPage), Errors)
)]
async fn list_adapters(
    State(state): State<AppState>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<wire::AdapterPage>> {
    let entries = state.app().adapters()?.list()?;
    let (items, next_cursor) = paginate(entries, |e| e.id.clone(), page.cursor.as_deref(), page.limit)?;
    let local = state.app().loaded_generator();
    let mut items: Vec<wire::Adapter> = items.iter().map(view).collect::<ApiResult<_>>()?;
    for item in &mut items {
        item.loaded = local.as_ref().is_some_and(|local| local.adapter_cache().is_loaded(&item.id));
    }
    Ok(Json(wire::AdapterPage { items, next_cursor }))
}

/// Registers a PEFT adapter (admin) after checking it against the base model; one that does
/// not fit is refused (422) and nothing changes.
#[utoipa::path(
    post, path = "/v1/adapters", tag = "adapters", request_body = wire::RegisterAdapter, security(("api_key" = [])),
    responses((status = 201, body = wire::Adapter), Errors)
)]
async fn register_adapter(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<wire::RegisterAdapter>,
) -> ApiResult<impl IntoResponse> {
    caller.require(&[])?;
    tributary_generator::validate_adapter_id(&body.id)?;
    let source = match (body.path, body.hub) {
        (Some(path), None) => tributary_generator::AdapterSource::Path(path.into()),
        (None, Some(repo)) => tributary_generator::AdapterSource::Hub(repo),
        _ => return Err(ApiError::invalid("give exactly one of path or hub")),
    };
    let app = state.app().clone();
    let entry = tokio::task::spawn_blocking(move || -> ApiResult<_> {
        let generator = app.generator().map_err(|e| ApiError::generator_unavailable(&e))?;
        Ok(app.adapters()?.register(&body.id, source, generator.model().model().config())?)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok((StatusCode::CREATED, Json(view::<_, wire::Adapter>(&entry)?)))
}

/// Unregisters an adapter (admin), drops it from the cache and forgets its pricing (another
/// adapter registered under the name later starts unpriced and unowned). Ids with `/` are
/// sent percent-encoded.
#[utoipa::path(
    delete, path = "/v1/adapters/{id}", tag = "adapters", params(("id" = String, Path)), security(("api_key" = [])),
    responses((status = 204, description = "Removed"), Errors)
)]
async fn remove_adapter(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(&[])?;
    if !crate::app::adapters::remove(state.app(), &id).await? {
        return Err(tributary_generator::Error::UnknownAdapter(id).into());
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/v1/adapters/{id}/pricing", tag = "adapters", params(("id" = String, Path)),
    responses((status = 200, body = wire::AdapterPricing), Errors)
)]
async fn get_adapter_pricing(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::AdapterPricing>> {
    Ok(Json(view(&state.app().ledger().adapter_pricing(&id).await?)?))
}

/// Sets an adapter's surcharge and owner (admin).
#[utoipa::path(
    put, path = "/v1/adapters/{id}/pricing", tag = "adapters", params(("id" = String, Path)),
    request_body = wire::AdapterPricing, security(("api_key" = [])),
    responses((status = 200, body = wire::AdapterPricing), Errors)
)]
async fn set_adapter_pricing(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<wire::AdapterPricing>,
) -> ApiResult<Json<wire::AdapterPricing>> {
    caller.require(&[])?;
    tributary_generator::validate_adapter_id(&id)?;
    let pricing: AdapterPricing = from_wire(&body)?;
    state.app().ledger().set_adapter_pricing(&id, &pricing).await?;
    Ok(Json(view(&pricing)?))
}
