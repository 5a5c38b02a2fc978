//! `/v1/accounts/{address}` (a payer's balance and transfers, grants), `/v1/quotes` (what an
//! answer would cost and who would pay), and a Datanet's sponsor budget.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tributary_attribution::{Error as AttributionError, MAX_ADAPTERS, MAX_DATANETS, Payer};
use tributary_indexer::Address;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::datanets::{governed, parse_address, readable};
use super::error::{ApiError, ApiResult, Errors};
use super::extract::{Json, Path, Query, paginate};
use super::state::AppState;
use super::wire::{self, PageParams, view};
use crate::app::accounts;
use crate::app::answers::{Billing, distinct_names, price};
use crate::app::keys::Role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(whoami))
        .routes(routes!(get_account))
        .routes(routes!(list_transfers))
        .routes(routes!(grant))
        .routes(routes!(create_quote))
        .routes(routes!(get_sponsor_budget, sponsor))
}

/// The address, if the caller may see its money: its own keys and admins.
fn own_account(caller: &Caller, address: &str) -> ApiResult<Address> {
    caller.require(&[Role::Owner, Role::Contributor, Role::Reader])?;
    let account = parse_address(address)?;
    if !caller.is_admin() && caller.address() != Some(&account) {
        return Err(ApiError::forbidden("a key reads its own address's account only"));
    }
    Ok(account)
}

fn amount(text: &str) -> ApiResult<tributary_attribution::Amount> {
    Ok(accounts::parse_amount(text)?)
}

/// Who the request's key is: its role and address (both null without a key). A key that is
/// unknown or revoked is a 401, as everywhere: this is how a client checks a key.
#[utoipa::path(get, path = "/v1/me", tag = "accounts", responses((status = 200, body = wire::Me), Errors))]
async fn whoami(caller: Caller) -> Json<wire::Me> {
    let (role, address, label) = match &caller {
        Caller::Anonymous => (None, None, None),
        Caller::Key(key) => (
            Some(key.role.as_str().to_string()),
            key.address.as_ref().map(|a| a.to_checksummed()),
            Some(key.label.clone()),
        ),
    };
    Json(wire::Me { role, address, label })
}

/// A payer's balance: what reached it less what left it, what answers in progress hold, where
/// it came from (deposits on chain, grants) and what it spent. For the address's own keys and
/// admins.
#[utoipa::path(
    get, path = "/v1/accounts/{address}", tag = "accounts",
    params(("address" = String, Path, pattern = "^0x[0-9a-fA-F]{40}$")), security(("api_key" = [])),
    responses((status = 200, body = wire::Balance), Errors)
)]
async fn get_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(address): Path<String>,
) -> ApiResult<Json<wire::Balance>> {
    let account = own_account(&caller, &address)?;
    Ok(Json(view(&accounts::balance(state.app(), &account).await?)?))
}

/// Every movement of the payer's money (deposits, grants, charges, sponsorships), oldest first.
#[utoipa::path(
    get, path = "/v1/accounts/{address}/transfers", tag = "accounts",
    params(("address" = String, Path, pattern = "^0x[0-9a-fA-F]{40}$"), PageParams), security(("api_key" = [])),
    responses((status = 200, body = wire::TransferPage), Errors)
)]
async fn list_transfers(
    State(state): State<AppState>,
    caller: Caller,
    Path(address): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<wire::TransferPage>> {
    let account = own_account(&caller, &address)?;
    let transfers = state.app().ledger().transfers(&Payer::Address(account)).await?;
    let (items, next_cursor) = paginate(transfers, |t| t.id, page.cursor.as_deref(), page.limit)?;
    Ok(Json(wire::TransferPage { items: items.iter().map(view).collect::<ApiResult<_>>()?, next_cursor }))
}

/// Grants money to a payer off chain (admin): deployments without a chain fund payers this
/// way; `verify` tells grants from deposits. With a `key`, a retried grant lands once.
#[utoipa::path(
    post, path = "/v1/accounts/{address}/grants", tag = "accounts",
    params(("address" = String, Path, pattern = "^0x[0-9a-fA-F]{40}$")), request_body = wire::Funds,
    security(("api_key" = [])),
    responses((status = 201, body = wire::Transfer), Errors)
)]
async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    Path(address): Path<String>,
    Json(body): Json<wire::Funds>,
) -> ApiResult<impl IntoResponse> {
    caller.require(&[])?;
    let account = parse_address(&address)?;
    let transfer = accounts::grant(state.app(), &account, amount(&body.amount)?, body.key.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(view::<_, wire::Transfer>(&transfer)?)))
}

/// What an answer over these Datanets with these adapters would cost, and who would pay: the
/// caller's address (with what it has available), the Datanet's sponsor budget, or no one.
#[utoipa::path(
    post, path = "/v1/quotes", tag = "accounts", request_body = wire::QuoteRequest,
    responses((status = 200, body = wire::QuoteResult), Errors)
)]
async fn create_quote(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<wire::QuoteRequest>,
) -> ApiResult<Json<wire::QuoteResult>> {
    if body.datanets.is_empty() {
        return Err(ApiError::invalid("name at least one Datanet"));
    }
    if body.datanets.len() > MAX_DATANETS || body.adapters.len() > MAX_ADAPTERS {
        return Err(ApiError::bad_request(format!("at most {MAX_DATANETS} Datanets and {MAX_ADAPTERS} adapters")));
    }
    let mut datanets = Vec::new();
    for name in distinct_names(&body.datanets) {
        datanets.push(readable(&state, &caller, &name).await?);
    }
    for adapter in &body.adapters {
        tributary_generator::validate_adapter_id(adapter)?;
    }
    let priced =
        price(state.app(), &datanets, &body.adapters, caller.address().copied(), state.config().unpaid_answers).await?;
    Ok(Json(wire::QuoteResult {
        fee: priced.quote.fee.to_string(),
        weighting: view(&priced.quote.weighting)?,
        billing: match priced.billing {
            Billing::Payer => wire::Billing::Payer,
            Billing::Sponsor => wire::Billing::Sponsor,
            Billing::Unpaid => wire::Billing::Unpaid,
            Billing::Refused => wire::Billing::Refused,
        },
        payer: priced.payer,
        available: priced.available.map(|a| a.to_string()),
    }))
}

/// A Datanet's sponsor budget: what pays for unpaid questions on it.
#[utoipa::path(
    get, path = "/v1/datanets/{name}/sponsor", tag = "accounts", params(("name" = String, Path)),
    responses((status = 200, body = wire::Balance), Errors)
)]
async fn get_sponsor_budget(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<wire::Balance>> {
    let datanet = readable(&state, &caller, &name).await?;
    Ok(Json(view(&accounts::sponsor_budget(state.app(), &datanet).await?)?))
}

/// Moves money from the Datanet owner's balance into its sponsor budget (owner or admin):
/// unpaid questions on this Datanet alone, without adapters, are then paid from it until it
/// runs out.
#[utoipa::path(
    post, path = "/v1/datanets/{name}/sponsor", tag = "accounts", params(("name" = String, Path)),
    request_body = wire::Funds, security(("api_key" = [])),
    responses((status = 201, body = wire::Transfer), Errors)
)]
async fn sponsor(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<wire::Funds>,
) -> ApiResult<impl IntoResponse> {
    let datanet = governed(&state, &caller, &name).await?;
    if body.key.is_some() {
        return Err(ApiError::invalid("`key` applies to grants only"));
    }
    // Not an answer to pay for (402): money the owner does not have to move.
    let transfer = match accounts::sponsor(state.app(), &datanet, amount(&body.amount)?).await {
        Err(e) if matches!(e.downcast_ref(), Some(AttributionError::InsufficientBalance { .. })) => {
            return Err(ApiError::new("insufficient_funds", e.to_string()));
        }
        other => other?,
    };
    Ok((StatusCode::CREATED, Json(view::<_, wire::Transfer>(&transfer)?)))
}
