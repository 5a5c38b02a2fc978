//! `/v1/datanets`: Datanets, members, access requests, uploads, documents; and `/v1/search`.

use axum::extract::{Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use tributary_indexer::{Address, ChunkerConfig, Datanet, DatanetUpdate, IngestOptions, NewDatanet};
use tributary_retriever::Query as RetrievalQuery;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::error::{ApiError, ApiResult, Errors};
use super::extract::{Json, Path, Query, paginate};
use super::state::AppState;
use super::wire::{self, PageParams};
use crate::app::contributions;
use crate::app::keys::Role;
use crate::app::uploads;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_datanets, create_datanet))
        .routes(routes!(get_datanet, update_datanet))
        .routes(routes!(list_members, add_member))
        .routes(routes!(remove_member))
        .routes(routes!(list_access_requests, request_access))
        .routes(routes!(decide_access_request))
        .routes(routes!(list_documents, upload))
        .routes(routes!(get_document))
        .routes(routes!(upload_typed_data))
        .routes(routes!(search))
}

pub(crate) fn parse_address(text: &str) -> ApiResult<Address> {
    Ok(text.parse::<Address>()?)
}

/// The Datanet if the caller may read it; otherwise the same 404 as a Datanet that does not
/// exist, so a private one never shows.
pub(crate) async fn readable(state: &AppState, caller: &Caller, name: &str) -> ApiResult<tributary_indexer::Datanet> {
    let datanet = state.catalog().datanet(name).await?;
    if caller.can_read(state, &datanet).await? { Ok(datanet) } else { Err(ApiError::datanet_not_found(name)) }
}

/// Every Datanet the caller may read, by name.
pub(crate) async fn readable_all(state: &AppState, caller: &Caller) -> ApiResult<Vec<tributary_indexer::Datanet>> {
    let mut visible = Vec::new();
    for datanet in state.catalog().datanets().await? {
        if caller.can_read(state, &datanet).await? {
            visible.push(datanet);
        }
    }
    Ok(visible)
}

/// The Datanet if the caller governs it (its owner's key, or an admin); others read 404 or 403.
pub(crate) async fn governed(state: &AppState, caller: &Caller, name: &str) -> ApiResult<tributary_indexer::Datanet> {
    caller.require(&[Role::Owner])?;
    let datanet = readable(state, caller, name).await?;
    if caller.governs(&datanet) {
        Ok(datanet)
    } else {
        Err(ApiError::forbidden("only the Datanet's owner or an admin may do this"))
    }
}

/// Datanets the caller may read, by name.
#[utoipa::path(
    get, path = "/v1/datanets", tag = "datanets", params(PageParams),
    responses((status = 200, body = wire::DatanetPage), Errors)
)]
async fn list_datanets(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<wire::DatanetPage>> {
    let (items, next_cursor) =
        paginate(readable_all(&state, &caller).await?, |d| d.name.clone(), page.cursor.as_deref(), page.limit)?;
    Ok(Json(wire::DatanetPage { items: items.iter().map(wire::Datanet::from).collect(), next_cursor }))
}

/// Creates a Datanet. Owner keys own what they create; admins name the owner.
#[utoipa::path(
    post, path = "/v1/datanets", tag = "datanets", request_body = wire::CreateDatanet,
    security(("api_key" = [])),
    responses((status = 201, body = wire::Datanet), Errors)
)]
async fn create_datanet(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<wire::CreateDatanet>,
) -> ApiResult<impl IntoResponse> {
    caller.require(&[Role::Owner])?;
    let requested = body.owner.as_deref().map(parse_address).transpose()?;
    let owner = if caller.is_admin() {
        requested.unwrap_or(Address::ZERO)
    } else {
        let own = *caller.address().ok_or_else(|| ApiError::forbidden("this key has no address"))?;
        if requested.is_some_and(|r| r != own) {
            return Err(ApiError::forbidden("an owner key creates Datanets owned by its own address"));
        }
        own
    };
    let visibility = body.visibility.unwrap_or(wire::Visibility::Public).into();
    let datanet = state
        .catalog()
        .create_datanet(&NewDatanet {
            name: body.name,
            description: body.description,
            owner,
            visibility,
            review: body.review,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(wire::Datanet::from(&datanet))))
}

#[utoipa::path(
    get, path = "/v1/datanets/{name}", tag = "datanets", params(("name" = String, Path)),
    responses((status = 200, body = wire::Datanet), Errors)
)]
async fn get_datanet(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<wire::Datanet>> {
    Ok(Json(wire::Datanet::from(&readable(&state, &caller, &name).await?)))
}

/// Changes the description, the visibility or whether uploads wait for review (owner or admin).
#[utoipa::path(
    patch, path = "/v1/datanets/{name}", tag = "datanets", params(("name" = String, Path)),
    request_body = wire::UpdateDatanet, security(("api_key" = [])),
    responses((status = 200, body = wire::Datanet), Errors)
)]
async fn update_datanet(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<wire::UpdateDatanet>,
) -> ApiResult<Json<wire::Datanet>> {
    let datanet = governed(&state, &caller, &name).await?;
    let update = DatanetUpdate {
        description: body.description,
        visibility: body.visibility.map(Into::into),
        review: body.review,
    };
    Ok(Json(wire::Datanet::from(&state.catalog().update_datanet(&datanet.name, &update).await?)))
}

/// Addresses let into a private Datanet (owner or admin).
#[utoipa::path(
    get, path = "/v1/datanets/{name}/members", tag = "datanets", params(("name" = String, Path), PageParams),
    security(("api_key" = [])),
    responses((status = 200, body = wire::MemberPage), Errors)
)]
async fn list_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<wire::MemberPage>> {
    let datanet = governed(&state, &caller, &name).await?;
    let members = state.catalog().members(datanet.id).await?;
    let (items, next_cursor) = paginate(members, |m| m.address.to_lower_hex(), page.cursor.as_deref(), page.limit)?;
    let items = items
        .iter()
        .map(|m| wire::Member { address: m.address.to_checksummed(), added_at_ms: m.added_at_ms })
        .collect();
    Ok(Json(wire::MemberPage { items, next_cursor }))
}

#[utoipa::path(
    post, path = "/v1/datanets/{name}/members", tag = "datanets", params(("name" = String, Path)),
    request_body = wire::AddMember, security(("api_key" = [])),
    responses((status = 201, body = wire::Member), (status = 200, body = wire::Member, description = "Already a member"), Errors)
)]
async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<wire::AddMember>,
) -> ApiResult<impl IntoResponse> {
    let datanet = governed(&state, &caller, &name).await?;
    let address = parse_address(&body.address)?;
    let added = state.catalog().add_member(datanet.id, &address).await?;
    let member = state
        .catalog()
        .members(datanet.id)
        .await?
        .into_iter()
        .find(|m| m.address == address)
        .ok_or_else(|| ApiError::internal("a member just added is missing"))?;
    let status = if added { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(wire::Member { address: member.address.to_checksummed(), added_at_ms: member.added_at_ms })))
}

#[utoipa::path(
    delete, path = "/v1/datanets/{name}/members/{address}", tag = "datanets",
    params(("name" = String, Path), ("address" = String, Path, pattern = "^0x[0-9a-fA-F]{40}$")), security(("api_key" = [])),
    responses((status = 204, description = "Removed"), Errors)
)]
async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, address)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let datanet = governed(&state, &caller, &name).await?;
    let address = parse_address(&address)?;
    if state.catalog().remove_member(datanet.id, &address).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("{} is not a member", address.to_checksummed())))
    }
}

/// Asks to be let into a private Datanet as the key's address. The answer is the same whether
/// or not such a private Datanet exists (its existence is not revealed); once approved, the
/// Datanet becomes readable with this key.
#[utoipa::path(
    post, path = "/v1/datanets/{name}/access-requests", tag = "datanets", params(("name" = String, Path)),
    request_body = wire::NewAccessRequest, security(("api_key" = [])),
    responses((status = 202, description = "Submitted"), Errors)
)]
async fn request_access(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<wire::NewAccessRequest>,
) -> ApiResult<StatusCode> {
    caller.require(&[Role::Owner, Role::Contributor, Role::Reader])?;
    let address = *caller.address().ok_or_else(|| ApiError::forbidden("this key has no address to let in"))?;
    match state.catalog().datanet(&name).await {
        Ok(datanet) if datanet.visibility == tributary_indexer::Visibility::Public => {
            Err(ApiError::conflict(format!("Datanet {name:?} is public: everyone may read it")))
        }
        Ok(datanet) => match state.catalog().request_access(&datanet, &address, &body.message).await {
            // Already in, or already asked: nothing new to file.
            Ok(_) | Err(tributary_indexer::Error::Conflict(_)) => Ok(StatusCode::ACCEPTED),
            Err(e) => Err(e.into()),
        },
        Err(tributary_indexer::Error::DatanetNotFound(_)) => Ok(StatusCode::ACCEPTED),
        Err(e) => Err(e.into()),
    }
}

/// Requests to join, oldest first (owner or admin).
#[utoipa::path(
    get, path = "/v1/datanets/{name}/access-requests", tag = "datanets", params(("name" = String, Path), PageParams),
    security(("api_key" = [])),
    responses((status = 200, body = wire::AccessRequestPage), Errors)
)]
async fn list_access_requests(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<wire::AccessRequestPage>> {
    let datanet = governed(&state, &caller, &name).await?;
    let requests = state.catalog().access_requests(datanet.id).await?;
    let (items, next_cursor) = paginate(requests, |r| r.id, page.cursor.as_deref(), page.limit)?;
    let items = items.iter().map(|r| wire::AccessRequest::of(r, &datanet.name)).collect();
    Ok(Json(wire::AccessRequestPage { items, next_cursor }))
}

/// Approves (the address becomes a member) or rejects a pending request, once.
#[utoipa::path(
    post, path = "/v1/datanets/{name}/access-requests/{id}", tag = "datanets",
    params(("name" = String, Path), ("id" = i64, Path)), request_body = wire::AccessDecision,
    security(("api_key" = [])),
    responses((status = 200, body = wire::AccessRequest), Errors)
)]
async fn decide_access_request(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, i64)>,
    Json(body): Json<wire::AccessDecision>,
) -> ApiResult<Json<wire::AccessRequest>> {
    let datanet = governed(&state, &caller, &name).await?;
    let request = state.catalog().decide_access_request(datanet.id, id, body.approve, &caller.actor()).await?;
    Ok(Json(wire::AccessRequest::of(&request, &datanet.name)))
}

/// The Datanet's documents, by id.
#[utoipa::path(
    get, path = "/v1/datanets/{name}/documents", tag = "datanets", params(("name" = String, Path), PageParams),
    responses((status = 200, body = wire::DocumentPage), Errors)
)]
async fn list_documents(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<wire::DocumentPage>> {
    let datanet = readable(&state, &caller, &name).await?;
    let documents = state.catalog().documents(datanet.id).await?;
    let (items, next_cursor) = paginate(documents, |d| d.id, page.cursor.as_deref(), page.limit)?;
    let items = items.iter().map(document_view).collect();
    Ok(Json(wire::DocumentPage { items, next_cursor }))
}

/// One document: its text and where each of its chunks lies in it (what a citation's
/// `start`..`end` points into).
#[utoipa::path(
    get, path = "/v1/datanets/{name}/documents/{id}", tag = "datanets",
    params(("name" = String, Path), ("id" = i64, Path)),
    responses((status = 200, body = wire::DocumentText), Errors)
)]
async fn get_document(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, i64)>,
) -> ApiResult<Json<wire::DocumentText>> {
    let datanet = readable(&state, &caller, &name).await?;
    let Some(d) = state.catalog().document(datanet.id, id).await? else {
        return Err(ApiError::not_found(format!("Datanet {name} has no document {id}")));
    };
    let spans = state.catalog().document_spans(d.id).await?;
    let spans = spans
        .into_iter()
        .map(|(chunk_id, start, end)| wire::Span { chunk_id: chunk_id.to_string(), start, end })
        .collect();
    Ok(Json(wire::DocumentText { document: document_view(&d), datanet: datanet.name, text: d.text, spans }))
}

fn document_view(d: &tributary_indexer::Document) -> wire::Document {
    wire::Document {
        id: d.id,
        external_id: d.external_id.clone(),
        source_name: d.source_name.clone(),
        contributor: d.contributor.to_checksummed(),
        license: d.license.clone(),
        byte_len: d.byte_len,
        raw_hash: d.raw_hash.clone(),
        chunk_count: d.chunk_count,
        duplicate_chunks: d.duplicate_chunks,
    }
}

/// The hash a contributor signs: blake3 over blake3(name) || blake3(text) of each document.
pub fn content_hash(documents: &[wire::UploadDocument]) -> String {
    let mut hasher = blake3::Hasher::new();
    for d in documents {
        hasher.update(blake3::hash(d.name.as_bytes()).as_bytes());
        hasher.update(blake3::hash(d.text.as_bytes()).as_bytes());
    }
    hasher.finalize().to_hex().to_string()
}

/// Who an upload is credited to: the key's address, or the `contributor` a signature names
/// (checked by [`uploads::verify`] next).
fn contributor_of(caller: &Caller, upload: &wire::Upload) -> ApiResult<Address> {
    let named = upload.contributor.as_deref().map(parse_address).transpose()?;
    match caller {
        Caller::Key(key) if key.role == Role::Admin => {
            named.ok_or_else(|| ApiError::invalid("an admin upload names its `contributor`"))
        }
        Caller::Key(key) if matches!(key.role, Role::Contributor | Role::Owner) => {
            let own = key.address.ok_or_else(|| ApiError::forbidden("this key has no address"))?;
            if named.is_some_and(|n| n != own) {
                return Err(ApiError::forbidden("a contributor key uploads as its own address"));
            }
            Ok(own)
        }
        Caller::Key(_) => Err(ApiError::forbidden("a reader key may not upload")),
        Caller::Anonymous => match (named, &upload.signature) {
            (Some(named), Some(_)) => Ok(named),
            _ => Err(ApiError::new(
                "missing_api_key",
                "upload with a contributor key, or sign it: `contributor`, `signature`, `nonce` and `deadline`",
            )),
        },
    }
}

/// The typed data a signed upload's signature must cover: the upload as it will be stored.
pub fn typed_upload(
    datanet: &str,
    content_hash: &str,
    options: &IngestOptions,
    nonce: alloy::primitives::U256,
    deadline: u64,
) -> ApiResult<uploads::Upload> {
    let tokens = |n: usize| u32::try_from(n).map_err(|_| ApiError::bad_request("chunk sizes are at most 100000"));
    Ok(uploads::Upload {
        datanet: datanet.to_string(),
        contentHash: content_hash.parse().map_err(ApiError::internal)?,
        license: options.license.clone(),
        chunkTokens: tokens(options.chunker.target_tokens)?,
        overlapTokens: tokens(options.chunker.overlap_tokens)?,
        nonce,
        deadline,
    })
}

fn refused(e: uploads::SignatureError) -> ApiError {
    match e {
        uploads::SignatureError::Replayed { .. } => ApiError::new("signature_replayed", e.to_string()),
        _ => ApiError::new("invalid_signature", e.to_string()),
    }
}

/// Checks an anonymous upload's EIP-712 signature and deadline; the typed message it covers
/// (whose nonce is claimed once the signer is found allowed on the Datanet).
async fn signed_by(
    state: &AppState,
    upload: &wire::Upload,
    datanet: &str,
    hash: &str,
    options: &IngestOptions,
) -> ApiResult<uploads::Upload> {
    let (Some(nonce), Some(deadline)) = (upload.nonce.as_deref(), upload.deadline) else {
        return Err(ApiError::new("invalid_signature", "a signed upload names its `nonce` and `deadline`"));
    };
    let nonce = nonce
        .trim()
        .parse::<alloy::primitives::U256>()
        .map_err(|_| ApiError::invalid("nonce is a uint256, decimal or 0x-hex"))?;
    let typed = typed_upload(datanet, hash, options, nonce, deadline)?;
    let signature = upload.signature.as_deref().unwrap_or_default();
    let contributor = contributor_of(&Caller::Anonymous, upload)?;
    uploads::verify(state.app(), &typed, signature, &contributor).await?.map_err(refused)?;
    Ok(typed)
}

/// The EIP-712 typed data an upload without a key is signed as (`eth_signTypedData_v4`):
/// this deployment's domain, the `Upload` type, and the defaults an upload's message states.
#[utoipa::path(
    get, path = "/v1/uploads/eip712", tag = "datanets",
    responses((status = 200, body = wire::UploadTypedData), Errors)
)]
async fn upload_typed_data(State(state): State<AppState>) -> ApiResult<Json<wire::UploadTypedData>> {
    use alloy::sol_types::SolStruct;
    let domain = uploads::domain(state.app()).await?;
    let field = |name: &str, kind: &str| wire::TypedField { name: name.into(), kind: kind.into() };
    let mut domain_fields = vec![field("name", "string"), field("version", "string")];
    if domain.chain_id.is_some() {
        domain_fields.push(field("chainId", "uint256"));
    }
    if domain.verifying_contract.is_some() {
        domain_fields.push(field("verifyingContract", "address"));
    }
    domain_fields.push(field("salt", "bytes32"));
    // `Upload(string datanet,bytes32 contentHash,...)`, from the type itself.
    let encoded = uploads::Upload::eip712_encode_type();
    let inner = encoded.trim_start_matches("Upload(").trim_end_matches(')');
    let upload_fields =
        inner.split(',').filter_map(|member| member.split_once(' ')).map(|(kind, name)| field(name, kind)).collect();
    let defaults = ChunkerConfig::default();
    Ok(Json(wire::UploadTypedData {
        domain: wire::UploadDomain {
            name: uploads::DOMAIN_NAME.into(),
            version: uploads::DOMAIN_VERSION.into(),
            chain_id: domain.chain_id.map(|id| id.saturating_to::<u64>()),
            verifying_contract: domain.verifying_contract.map(|a| a.to_checksum(None)),
            salt: domain.salt.map(|s| s.to_string()).unwrap_or_default(),
        },
        types: [("EIP712Domain".to_string(), domain_fields), ("Upload".to_string(), upload_fields)].into(),
        primary_type: "Upload".into(),
        defaults: wire::UploadDefaults {
            license: IngestOptions::new(Address::ZERO).license,
            chunk_tokens: defaults.target_tokens as u64,
            overlap_tokens: defaults.overlap_tokens as u64,
        },
        max_lifetime_secs: uploads::MAX_SIGNATURE_LIFETIME_SECS,
    }))
}

/// Uploads documents: JSON (`Upload`), or `multipart/form-data` with one or more `file` parts
/// (their file names pick the format) and optional `contributor`, `signature`, `nonce`,
/// `deadline`, `license`, `chunk_tokens`, `overlap_tokens` fields. Nothing of a bad upload is stored; the same
/// upload again stores nothing new.
#[utoipa::path(
    post, path = "/v1/datanets/{name}/documents", tag = "datanets", params(("name" = String, Path)),
    request_body(content(
        (wire::Upload = "application/json"),
        (wire::MultipartUpload = "multipart/form-data")
    )),
    responses((status = 200, body = wire::UploadResult), Errors)
)]
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    request: Request,
) -> ApiResult<Json<wire::UploadResult>> {
    // Who may upload is decided before the body (up to --max-body-bytes) is read: the Datanet
    // must be one the caller sees, and a key one that uploads. An anonymous upload is
    // authorized by the signature inside it, so only it is read first (bounded by the body
    // limit and the network's rate).
    let datanet = readable(&state, &caller, &name).await?;
    if let Caller::Key(key) = &caller {
        match key.role {
            Role::Reader => return Err(ApiError::forbidden("a reader key may not upload")),
            Role::Contributor | Role::Owner if key.address.is_none() => {
                return Err(ApiError::forbidden("this key has no address"));
            }
            _ => {}
        }
    }
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let upload = if content_type.starts_with("multipart/form-data") {
        use axum::extract::FromRequest;
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request(format!("multipart body: {}", e.body_text())))?;
        read_multipart(multipart).await?
    } else {
        use axum::extract::FromRequest;
        Json::<wire::Upload>::from_request(request, &state).await?.0
    };
    if upload.documents.is_empty() {
        return Err(ApiError::invalid("the upload has no documents"));
    }
    let hash = content_hash(&upload.documents);
    let contributor = contributor_of(&caller, &upload)?;
    let mut options = IngestOptions::new(contributor);
    if let Some(license) = &upload.license {
        options.license = license.clone();
    }
    let defaults = ChunkerConfig::default();
    options.chunker = ChunkerConfig {
        target_tokens: upload.chunk_tokens.unwrap_or(defaults.target_tokens),
        overlap_tokens: upload.overlap_tokens.unwrap_or(defaults.overlap_tokens),
    };
    if options.chunker.target_tokens > 100_000 || options.chunker.overlap_tokens > 100_000 {
        return Err(ApiError::bad_request("chunk_tokens and overlap_tokens are at most 100000"));
    }
    options.chunker.validate()?;
    let signed = match caller {
        Caller::Anonymous => Some(signed_by(&state, &upload, &datanet.name, &hash, &options).await?),
        Caller::Key(_) => None,
    };
    // A signed upload to a private Datanet needs the signer to be let in, as a key would.
    if !caller.is_admin() && !state.catalog().can_read(&datanet, Some(&contributor)).await? {
        return Err(ApiError::datanet_not_found(&name));
    }
    // The nonce is used from here on; given back if nothing was stored, so the same signed
    // upload may be retried.
    let claim = match &signed {
        Some(typed) => Some(uploads::claim(state.app(), typed, &contributor).await?.map_err(refused)?),
        None => None,
    };
    let review = contributions::needs_review(&datanet, &contributor, caller.is_admin());
    let submission = contributions::Submission {
        contributor,
        upload: contributions::Upload {
            content_hash: hash.clone(),
            documents: upload
                .documents
                .into_iter()
                .map(|d| contributions::Submitted { name: d.name, text: d.text })
                .collect(),
            license: options.license.clone(),
            chunk_tokens: options.chunker.target_tokens,
            overlap_tokens: options.chunker.overlap_tokens,
        },
    };
    let stored = store_upload(&state, &datanet, &submission, review).await;
    if let (Err(_), Some(claim)) = (&stored, claim)
        && let Err(e) = claim.release(state.app()).await
    {
        tracing::warn!(error = %e, "giving back a signed upload's nonce failed");
    }
    let (contribution, report) = match stored? {
        contributions::Outcome::Indexed(contribution, report) => (contribution, Some(wire::view(&report)?)),
        contributions::Outcome::Pending(contribution) => (contribution, None),
    };
    Ok(Json(wire::UploadResult {
        contribution: wire::Contribution::of(&contribution, &datanet.name),
        datanet: datanet.name,
        contributor: contributor.to_checksummed(),
        content_hash: hash,
        report,
    }))
}

/// Indexes the upload, or holds it for review.
async fn store_upload(
    state: &AppState,
    datanet: &Datanet,
    submission: &contributions::Submission,
    review: bool,
) -> ApiResult<contributions::Outcome> {
    if !review {
        // Loads the model off the async workers first (an error here is `not_ready`).
        state.embedder().await?;
    }
    let outcome = contributions::submit(state.app(), datanet, submission, review).await?;
    if let contributions::Outcome::Indexed(_, report) = &outcome {
        state.metrics().ingested(report);
    }
    Ok(outcome)
}

async fn read_multipart(mut multipart: Multipart) -> ApiResult<wire::Upload> {
    let mut upload = wire::Upload {
        documents: Vec::new(),
        contributor: None,
        signature: None,
        nonce: None,
        deadline: None,
        license: None,
        chunk_tokens: None,
        overlap_tokens: None,
    };
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request(format!("multipart body: {}", e.body_text()))
    };
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let field_name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string);
        let text = field.text().await.map_err(bad)?;
        let number = |text: &str| {
            text.trim().parse::<usize>().map_err(|_| ApiError::invalid(format!("{field_name} must be a number")))
        };
        match field_name.as_str() {
            "file" => {
                let name = file_name.ok_or_else(|| ApiError::invalid("a `file` part needs a file name"))?;
                upload.documents.push(wire::UploadDocument { name, text });
            }
            "contributor" => upload.contributor = Some(text),
            "signature" => upload.signature = Some(text),
            "nonce" => upload.nonce = Some(text),
            "deadline" => upload.deadline = Some(number(&text)? as u64),
            "license" => upload.license = Some(text),
            "chunk_tokens" => upload.chunk_tokens = Some(number(&text)?),
            "overlap_tokens" => upload.overlap_tokens = Some(number(&text)?),
            other => return Err(ApiError::invalid(format!("unknown multipart field {other:?}"))),
        }
    }
    Ok(upload)
}

/// Hybrid (or dense, or BM25) search over Datanets the caller may read.
#[utoipa::path(
    post, path = "/v1/search", tag = "search", request_body = wire::SearchRequest,
    responses((status = 200, body = wire::SearchResults), Errors)
)]
async fn search(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<wire::SearchRequest>,
) -> ApiResult<Json<wire::SearchResults>> {
    let k = body.k.unwrap_or(5);
    if !(1..=100).contains(&k) {
        return Err(ApiError::bad_request("k must be between 1 and 100"));
    }
    let fusion = crate::app::search::fusion_of(
        body.fusion.map(|f| match f {
            wire::Fusion::Convex => "convex",
            wire::Fusion::Rrf => "rrf",
        }),
        body.alpha,
    )
    .map_err(|e| ApiError::invalid(e.to_string()))?;
    // What the request may cost is bounded before any name is looked up.
    tributary_retriever::check_bounds(&body.query, body.datanets.len(), body.contributors.len())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut datanets = Vec::new();
    for name in &body.datanets {
        datanets.push(readable(&state, &caller, name).await?);
    }
    let contributors = body.contributors.iter().map(|c| parse_address(c)).collect::<ApiResult<Vec<_>>>()?;
    let contributors = (!contributors.is_empty()).then_some(contributors.as_slice());
    let mode = match body.mode {
        wire::Mode::Hybrid => tributary_retriever::Mode::Hybrid,
        wire::Mode::Dense => tributary_retriever::Mode::Dense,
        wire::Mode::Bm25 => tributary_retriever::Mode::Bm25,
    };
    // Loads the model off the async workers first (an error here is `not_ready`).
    state.query_embedder().await?;
    let retriever = crate::app::search::retriever(state.app(), fusion, &caller.cache_scope())?;
    let passages =
        retriever.search(&RetrievalQuery { text: &body.query, datanets: &datanets, contributors, k, mode }).await?;
    state.metrics().searches.inc();
    Ok(Json(wire::SearchResults { passages: passages.iter().map(wire::view).collect::<ApiResult<_>>()? }))
}
