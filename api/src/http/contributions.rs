//! `/v1/datanets/{name}/contributions` (contribution review) and
//! `/v1/datanets/{name}/leaderboard`.
//!
//! Who sees what: the Datanet's owner, admins and members see every contribution; anyone else
//! with an address sees their own. Who decides: the owner, admins and members, never on their
//! own contribution (a member cannot wave their own upload through).

use std::collections::BTreeMap;

use axum::extract::State;
use tributary_indexer::Address;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::datanets::readable;
use super::error::{ApiError, ApiResult, Errors};
use super::extract::{Json, Path, Query, page_bounds};
use super::state::AppState;
use super::wire;
use crate::app::contributions;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_contributions))
        .routes(routes!(decide_contribution))
        .routes(routes!(leaderboard))
}

/// Whether the caller reviews the Datanet's contributions: its owner, an admin, or a member.
async fn reviews(state: &AppState, caller: &Caller, datanet: &tributary_indexer::Datanet) -> ApiResult<bool> {
    if caller.governs(datanet) {
        return Ok(true);
    }
    match caller.address() {
        Some(address) => Ok(state.catalog().is_member(datanet.id, address).await?),
        None => Ok(false),
    }
}

/// A Datanet's contributions by id: all of them for its owner, admins and members; the
/// caller's own for anyone else with an address.
#[utoipa::path(
    get, path = "/v1/datanets/{name}/contributions", tag = "datanets",
    params(("name" = String, Path), wire::ContributionParams), security(("api_key" = [])),
    responses((status = 200, body = wire::ContributionPage), Errors)
)]
async fn list_contributions(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(params): Query<wire::ContributionParams>,
) -> ApiResult<Json<wire::ContributionPage>> {
    let datanet = readable(&state, &caller, &name).await?;
    if caller.role().is_none() {
        return Err(ApiError::new("missing_api_key", "contributions are shown to keys: sign in"));
    }
    let only = if reviews(&state, &caller, &datanet).await? {
        None
    } else {
        Some(*caller.address().ok_or_else(|| ApiError::forbidden("this key has no address"))?)
    };
    let (after, limit) = page_bounds::<i64>(params.cursor.as_deref(), params.limit)?;
    let status = params.status.map(Into::into);
    // One more than the page, to know whether another follows.
    let mut items =
        state.catalog().contributions(datanet.id, only.as_ref(), status, after, limit.saturating_add(1)).await?;
    let next_cursor = (items.len() > limit).then(|| {
        items.truncate(limit);
        items.last().map(|c| c.id.to_string())
    });
    Ok(Json(wire::ContributionPage {
        items: items.iter().map(|c| wire::Contribution::of(c, &datanet.name)).collect(),
        next_cursor: next_cursor.flatten(),
    }))
}

/// Accepts (its documents are indexed and credited to its contributor) or rejects (with a
/// reason the contributor sees) a pending contribution, once: the owner, an admin or a member,
/// never the contributor.
#[utoipa::path(
    post, path = "/v1/datanets/{name}/contributions/{id}", tag = "datanets",
    params(("name" = String, Path), ("id" = i64, Path)), request_body = wire::ContributionDecision,
    security(("api_key" = [])),
    responses((status = 200, body = wire::Contribution), Errors)
)]
async fn decide_contribution(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, i64)>,
    Json(body): Json<wire::ContributionDecision>,
) -> ApiResult<Json<wire::Contribution>> {
    let datanet = readable(&state, &caller, &name).await?;
    caller.require(&[
        crate::app::keys::Role::Owner,
        crate::app::keys::Role::Contributor,
        crate::app::keys::Role::Reader,
    ])?;
    if !reviews(&state, &caller, &datanet).await? {
        return Err(ApiError::forbidden("only the Datanet's owner, its members and admins review contributions"));
    }
    if body.reason.chars().count() > 1000 {
        return Err(ApiError::bad_request("the reason is at most 1,000 characters"));
    }
    let contribution = state.catalog().contribution(datanet.id, id).await?;
    if !caller.is_admin() && caller.address() == Some(&contribution.contributor) && !caller.governs(&datanet) {
        return Err(ApiError::forbidden("a member may not review their own contribution"));
    }
    let decided = if body.accept {
        state.embedder().await?;
        let (accepted, report) = contributions::accept(state.app(), &datanet, id, &caller.actor()).await?;
        state.metrics().ingested(&report);
        accepted
    } else {
        contributions::reject(state.app(), &datanet, id, &caller.actor(), &body.reason).await?
    };
    Ok(Json(wire::Contribution::of(&decided, &datanet.name)))
}

/// The Datanet's contributors: accepted uploads, chunks credited to them, their citations and
/// what those earned; most earned first.
#[utoipa::path(
    get, path = "/v1/datanets/{name}/leaderboard", tag = "datanets", params(("name" = String, Path)),
    responses((status = 200, body = wire::Leaderboard), Errors)
)]
async fn leaderboard(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<wire::Leaderboard>> {
    let datanet = readable(&state, &caller, &name).await?;
    let tallies = state.catalog().contributor_tallies(datanet.id).await?;
    let earnings = state.app().ledger().contributor_earnings(datanet.id).await?;
    // Per contributor: what they earned (kept as a number to sort by), and their row.
    let mut rows: BTreeMap<Address, (i128, wire::LeaderboardRow)> = BTreeMap::new();
    for t in tallies {
        let (_, r) = leaderboard_row(&mut rows, t.contributor);
        (r.accepted_uploads, r.chunks) = (t.accepted_uploads, t.chunks);
    }
    for e in earnings {
        let (earned, r) = leaderboard_row(&mut rows, e.contributor);
        (*earned, r.citations, r.earned) = (e.earned, e.citations, e.earned.to_string());
    }
    let mut contributors: Vec<(i128, wire::LeaderboardRow)> = rows.into_values().collect();
    // Most earned first, then most cited, then most accepted uploads; ties by address.
    contributors.sort_by(|(a_earned, a), (b_earned, b)| {
        (b_earned, b.citations, b.accepted_uploads)
            .cmp(&(a_earned, a.citations, a.accepted_uploads))
            .then_with(|| a.contributor.cmp(&b.contributor))
    });
    Ok(Json(wire::Leaderboard {
        datanet: datanet.name,
        contributors: contributors.into_iter().map(|(_, r)| r).collect(),
    }))
}

fn leaderboard_row(
    rows: &mut BTreeMap<Address, (i128, wire::LeaderboardRow)>,
    contributor: Address,
) -> &mut (i128, wire::LeaderboardRow) {
    rows.entry(contributor).or_insert_with(|| {
        let row = wire::LeaderboardRow {
            contributor: contributor.to_checksummed(),
            accepted_uploads: 0,
            chunks: 0,
            citations: 0,
            earned: "0".into(),
        };
        (0, row)
    })
}
