//! The API's wire types: what requests carry and responses hold, with their OpenAPI schemas.
//!
//! The domain crates know nothing of HTTP or OpenAPI. Responses that mirror a domain type are
//! made by [`view`]: the domain value's JSON read back into the mirror, which refuses unknown
//! fields, so a mirror that drifts from its domain type fails loudly (in the tests) instead of
//! documenting a shape the API does not send.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult};

/// The mirror of a domain value.
pub fn view<T: Serialize, V: DeserializeOwned>(value: &T) -> ApiResult<V> {
    let json = serde_json::to_value(value).map_err(ApiError::internal)?;
    serde_json::from_value(json)
        .map_err(|e| ApiError::internal(format!("a wire type drifted from its domain type: {e}")))
}

/// `?cursor=&limit=` of every list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Declares `$page` as `{ items: [$item], next_cursor }`.
macro_rules! page {
    ($page:ident, $item:ty) => {
        #[derive(Debug, Serialize, Deserialize, ToSchema)]
        pub struct $page {
            pub items: Vec<$item>,
            /// Give it as `cursor` for the next page; absent on the last page.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub next_cursor: Option<String>,
        }
    };
}

// ---- Datanets -----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Private,
}

impl From<Visibility> for tributary_indexer::Visibility {
    fn from(v: Visibility) -> Self {
        match v {
            Visibility::Public => tributary_indexer::Visibility::Public,
            Visibility::Private => tributary_indexer::Visibility::Private,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Datanet {
    pub id: i64,
    /// The Datanet's name everywhere (paths, questions, receipts): the requested name for a
    /// Datanet created public; `name~0xowner` (lowercase hex) for one created private, so a
    /// private name is never taken from, nor revealed to, anyone else.
    pub name: String,
    pub description: String,
    /// EIP-55 address.
    pub owner: String,
    pub visibility: Visibility,
    /// Uploads from anyone but the owner wait for the owner's or a member's review.
    pub review: bool,
    pub created_at_ms: i64,
}

impl From<&tributary_indexer::Datanet> for Datanet {
    fn from(d: &tributary_indexer::Datanet) -> Self {
        Datanet {
            id: d.id,
            name: d.name.clone(),
            description: d.description.clone(),
            owner: d.owner.to_checksummed(),
            visibility: match d.visibility {
                tributary_indexer::Visibility::Public => Visibility::Public,
                tributary_indexer::Visibility::Private => Visibility::Private,
            },
            review: d.review,
            created_at_ms: d.created_at_ms,
        }
    }
}

page!(DatanetPage, Datanet);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDatanet {
    /// 1-64 characters of a-z, 0-9, '-' and '_'. A public name is unique among all Datanets;
    /// a private Datanet is stored as `name~0xowner` (the created Datanet's `name`), unique
    /// per owner, so a private name never conflicts with anyone else's.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Owner address; an owner key's own address when omitted (the zero address for admins).
    #[schema(pattern = "^0x[0-9a-fA-F]{40}$")]
    pub owner: Option<String>,
    /// Default public.
    pub visibility: Option<Visibility>,
    /// Hold uploads from anyone but the owner for review (default false).
    #[serde(default)]
    pub review: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDatanet {
    pub description: Option<String>,
    pub visibility: Option<Visibility>,
    /// Whether uploads wait for review from now on (pending ones stay pending either way).
    pub review: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub address: String,
    pub added_at_ms: i64,
}

page!(MemberPage, Member);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    #[schema(pattern = "^0x[0-9a-fA-F]{40}$")]
    pub address: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccessStatus {
    Pending,
    Approved,
    Rejected,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccessRequest {
    pub id: i64,
    pub datanet: String,
    pub address: String,
    pub message: String,
    pub status: AccessStatus,
    pub created_at_ms: i64,
    pub decided_at_ms: Option<i64>,
    pub decided_by: Option<String>,
}

impl AccessRequest {
    pub fn of(r: &tributary_indexer::AccessRequest, datanet: &str) -> Self {
        AccessRequest {
            id: r.id,
            datanet: datanet.to_string(),
            address: r.address.to_checksummed(),
            message: r.message.clone(),
            status: match r.status {
                tributary_indexer::AccessStatus::Pending => AccessStatus::Pending,
                tributary_indexer::AccessStatus::Approved => AccessStatus::Approved,
                tributary_indexer::AccessStatus::Rejected => AccessStatus::Rejected,
            },
            created_at_ms: r.created_at_ms,
            decided_at_ms: r.decided_at_ms,
            decided_by: r.decided_by.clone(),
        }
    }
}

page!(AccessRequestPage, AccessRequest);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccessRequest {
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessDecision {
    /// true: the address becomes a member; false: rejected.
    pub approve: bool,
}

// ---- Contributions ------------------------------------------------------------------------

/// One uploaded document: its name decides the format (`.txt`, `.md`, or `.jsonl` in the BEIR
/// layout, one document a line).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadDocument {
    pub name: String,
    pub text: String,
}

/// An upload. Made with a contributor (or owner) key, it is credited to the key's address;
/// without a key, `contributor`, `signature`, `nonce` and `deadline` are required: the
/// signature is `contributor`'s EIP-712 signature (`eth_signTypedData_v4`) of the typed data
/// `GET /v1/uploads/eip712` gives, its message holding the Datanet, the content hash (the hex
/// blake3 of, for each document in order, blake3(name) followed by blake3(text), 32 bytes
/// each), the license and chunk sizes as stored (their defaults when not sent), the nonce (used
/// once) and the deadline (Unix seconds, at most a day ahead). Admin keys name any
/// `contributor`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "documents": [{"name": "delta.md", "text": "# Deltas\n\nA river delta forms where a river meets slower water."}],
    "contributor": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "license": "CC-BY-4.0"
}))]
pub struct Upload {
    #[schema(min_items = 1)]
    pub documents: Vec<UploadDocument>,
    #[schema(pattern = "^0x[0-9a-fA-F]{40}$")]
    pub contributor: Option<String>,
    /// 0x-hex 65-byte signature.
    pub signature: Option<String>,
    /// The signed message's nonce: a uint256, decimal or 0x-hex, used once per signer.
    pub nonce: Option<String>,
    /// The signed message's deadline, Unix seconds.
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    #[schema(minimum = 0, maximum = 9007199254740991_u64)]
    pub deadline: Option<u64>,
    /// SPDX identifier (default "unspecified").
    pub license: Option<String>,
    /// Chunk length limit in embedder tokens (default 254).
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    #[schema(minimum = 1, maximum = 100000)]
    pub chunk_tokens: Option<usize>,
    /// Tokens repeated between consecutive chunks of one paragraph.
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    #[schema(minimum = 0, maximum = 100000)]
    pub overlap_tokens: Option<usize>,
}

/// What a contributor signs for an upload without a key, as `eth_signTypedData_v4` takes it
/// (fill in `message`: the fields of `types.Upload`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadTypedData {
    pub domain: UploadDomain,
    /// `EIP712Domain` (the domain's fields present here) and `Upload`.
    pub types: std::collections::BTreeMap<String, Vec<TypedField>>,
    #[serde(rename = "primaryType")]
    pub primary_type: String,
    /// The license and chunk sizes signed when an upload does not send them.
    pub defaults: UploadDefaults,
    /// How far ahead of now a deadline may be.
    pub max_lifetime_secs: u64,
}

/// This deployment's EIP-712 domain: its salt always; the chain id and the registry contract
/// once contracts are deployed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadDomain {
    pub name: String,
    pub version: String,
    #[serde(rename = "chainId", default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    #[serde(rename = "verifyingContract", default, skip_serializing_if = "Option::is_none")]
    pub verifying_contract: Option<String>,
    /// 0x-hex, 32 bytes.
    pub salt: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypedField {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadDefaults {
    pub license: String,
    pub chunk_tokens: u64,
    pub overlap_tokens: u64,
}

/// An upload as `multipart/form-data` (documented only; read part by part).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct MultipartUpload {
    /// One part per document; its file name picks the format (.txt, .md, .jsonl).
    #[schema(value_type = Vec<String>, format = Binary, min_items = 1)]
    pub file: Vec<String>,
    #[schema(pattern = "^0x[0-9a-fA-F]{40}$")]
    pub contributor: Option<String>,
    pub signature: Option<String>,
    pub nonce: Option<String>,
    pub deadline: Option<u64>,
    pub license: Option<String>,
    #[schema(minimum = 1, maximum = 100000)]
    pub chunk_tokens: Option<usize>,
    #[schema(minimum = 0, maximum = 100000)]
    pub overlap_tokens: Option<usize>,
}

/// What an upload did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestReport {
    pub documents: usize,
    pub documents_stored: usize,
    /// Documents whose exact bytes the Datanet already had.
    pub documents_already_present: usize,
    pub chunks: usize,
    /// Chunks embedded and indexed by this upload.
    pub new_chunks: usize,
    /// Chunks the Datanet already had: their credit stays with the first contributor.
    pub duplicate_chunks: usize,
    pub seconds: f64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadResult {
    pub datanet: String,
    /// Who the new chunks are credited to.
    pub contributor: String,
    pub content_hash: String,
    /// The upload as a contribution: `accepted` (indexed now) or `pending` (held for review).
    pub contribution: Contribution,
    /// What indexing did; absent while the upload waits for review.
    pub report: Option<IngestReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContributionStatus {
    /// Held for review: not indexed, retrievable or creditable.
    Pending,
    /// Accepted; being indexed.
    Accepting,
    Accepted,
    Rejected,
}

/// The wire's states are the catalog's, one for one.
macro_rules! same_states {
    ($($state:ident),*) => {
        impl From<tributary_indexer::ContributionStatus> for ContributionStatus {
            fn from(s: tributary_indexer::ContributionStatus) -> Self {
                match s { $(tributary_indexer::ContributionStatus::$state => ContributionStatus::$state),* }
            }
        }
        impl From<ContributionStatus> for tributary_indexer::ContributionStatus {
            fn from(s: ContributionStatus) -> Self {
                match s { $(ContributionStatus::$state => tributary_indexer::ContributionStatus::$state),* }
            }
        }
    };
}
same_states!(Pending, Accepting, Accepted, Rejected);

/// One upload to a Datanet and what became of it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Contribution {
    pub id: i64,
    pub datanet: String,
    pub contributor: String,
    pub status: ContributionStatus,
    pub content_hash: String,
    /// The documents' names.
    pub documents: Vec<String>,
    pub bytes: u64,
    /// What indexing did, once accepted.
    pub report: Option<IngestReport>,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub created_at_ms: i64,
    pub decided_at_ms: Option<i64>,
    /// The address that decided, or `admin`.
    pub decided_by: Option<String>,
}

impl Contribution {
    pub fn of(c: &tributary_indexer::Contribution, datanet: &str) -> Contribution {
        Contribution {
            id: c.id,
            datanet: datanet.to_string(),
            contributor: c.contributor.to_checksummed(),
            status: c.status.into(),
            content_hash: c.content_hash.clone(),
            documents: c.names.clone(),
            bytes: c.bytes,
            report: c.report.as_deref().and_then(|r| serde_json::from_str(r).ok()),
            reason: c.reason.clone(),
            created_at_ms: c.created_at_ms,
            decided_at_ms: c.decided_at_ms,
            decided_by: c.decided_by.clone(),
        }
    }
}

page!(ContributionPage, Contribution);

#[derive(Debug, Deserialize, IntoParams)]
pub struct ContributionParams {
    /// Only contributions in this state.
    pub status: Option<ContributionStatus>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Accept (index it, credited to its contributor) or reject (with a reason) a pending
/// contribution, once.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContributionDecision {
    pub accept: bool,
    /// Shown to the contributor; up to 1,000 characters.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub reason: String,
}

/// A Datanet's contributors, most earned first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Leaderboard {
    pub datanet: String,
    pub contributors: Vec<LeaderboardRow>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LeaderboardRow {
    pub contributor: String,
    pub accepted_uploads: u64,
    /// Chunks whose credit the contributor holds (the first to contribute that text).
    pub chunks: u64,
    /// Citations of those chunks that credited the contributor.
    pub citations: u64,
    /// What those citations earned, less slashes, in the token's smallest unit.
    #[schema(pattern = "^-?[0-9]+$")]
    pub earned: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Document {
    pub id: i64,
    pub external_id: String,
    pub source_name: String,
    pub contributor: String,
    pub license: String,
    pub byte_len: usize,
    pub raw_hash: String,
    pub chunk_count: usize,
    pub duplicate_chunks: usize,
}

page!(DocumentPage, Document);

/// Where one chunk lies in its document's text.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Span {
    pub chunk_id: String,
    /// Byte offsets into `text` (UTF-8).
    pub start: usize,
    pub end: usize,
}

/// A document with its text and every chunk's span, duplicates included, in order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentText {
    pub document: Document,
    pub datanet: String,
    pub text: String,
    pub spans: Vec<Span>,
}

// ---- Search -------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Hybrid,
    Dense,
    Bm25,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    Convex,
    Rrf,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"query": "longest river in North America", "datanets": ["rivers"], "k": 3}))]
pub struct SearchRequest {
    /// At most 8,192 characters.
    #[schema(max_length = 8192)]
    pub query: String,
    /// 1 to 16 Datanet names (a repeated name is searched once).
    #[schema(min_items = 1, max_items = 16)]
    pub datanets: Vec<String>,
    /// Only passages credited to these addresses (up to 64).
    #[serde(default)]
    #[schema(max_items = 64)]
    pub contributors: Vec<String>,
    /// Passages to return, 1 to 100 (default 5).
    #[schema(minimum = 1, maximum = 100)]
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    pub k: Option<usize>,
    #[serde(default)]
    pub mode: Mode,
    /// Default convex.
    pub fusion: Option<Fusion>,
    /// Dense weight of convex fusion, 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub alpha: Option<f32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Passage {
    /// blake3 of the chunk's normalized text.
    pub chunk_id: String,
    pub text: String,
    /// Byte offsets into the document's text.
    pub start: usize,
    pub end: usize,
    pub document_id: i64,
    pub document: String,
    pub source: String,
    pub contributor: String,
    pub datanet: String,
    pub score: f32,
    pub dense_score: Option<f32>,
    pub bm25_score: Option<f32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchResults {
    pub passages: Vec<Passage>,
}

// ---- Answers ------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdapterChoice {
    pub id: String,
    /// Weight in an ensemble (default 1).
    pub weight: Option<f32>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"question": "What is the longest river in North America?", "datanets": ["rivers"], "max_tokens": 32}))]
pub struct AnswerRequest {
    /// At most 8,192 characters.
    #[schema(max_length = 8192)]
    pub question: String,
    /// 1 to 16 Datanets; a name repeated counts (and is charged) once.
    #[schema(min_items = 1, max_items = 16)]
    pub datanets: Vec<String>,
    /// Only passages credited to these addresses (up to 64).
    #[serde(default)]
    #[schema(max_items = 64)]
    pub contributors: Vec<String>,
    /// LoRA adapters, up to 4; several make a weighted ensemble (a repeated id adds its weights).
    #[serde(default)]
    #[schema(max_items = 4)]
    pub adapters: Vec<AdapterChoice>,
    /// Passages retrieved, 1 to 20 (default 3).
    #[schema(minimum = 1, maximum = 20)]
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    pub k: Option<usize>,
    /// 1 to 2048 (default 256).
    #[schema(minimum = 1, maximum = 2048)]
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    pub max_tokens: Option<usize>,
    /// 0 (default) is greedy.
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    /// 0 to 2^63-1.
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub seed: Option<i64>,
    /// Up to 8 sequences of 1 to 64 bytes.
    #[serde(default)]
    #[schema(max_items = 8)]
    pub stop: Vec<String>,
    #[schema(minimum = 0.1, maximum = 10)]
    pub repeat_penalty: Option<f32>,
    /// Keep only the question's hash in the receipt.
    #[serde(default)]
    pub private_question: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CitationKind {
    /// The model cited the passage and it supports the sentence.
    Marker,
    /// Attributed to the passages that support it.
    PostHoc,
    /// The passage's own words, quoted where a generated sentence failed the checks.
    Quote,
}

/// Where a sentence of the answer came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    #[default]
    Generated,
    /// Written again once, from the passage sentence that supports it, after failing the fact check.
    Repaired,
    /// Quoted from a passage.
    Quoted,
}

impl Origin {
    fn is_generated(&self) -> bool {
        *self == Origin::Generated
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CitedSentence {
    pub text: String,
    /// Numbers of the passages it cites.
    pub citations: Vec<usize>,
    pub kind: Option<CitationKind>,
    /// Numbers, dates and names the sentence states that no passage supporting it holds: why
    /// it is unsupported and credits no one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported_facts: Vec<String>,
    /// `generated` when absent.
    #[serde(default, skip_serializing_if = "Origin::is_generated")]
    pub origin: Origin,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Citation {
    pub n: usize,
    pub chunk_id: String,
    pub document: String,
    pub contributor: String,
    pub datanet: String,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CitationStats {
    pub sentences: usize,
    pub marker: usize,
    pub post_hoc: usize,
    pub unsupported: usize,
    pub dropped_out_of_range: usize,
    pub dropped_unsupported: usize,
    /// Sentences that stated a number, date or name no supporting passage holds.
    #[serde(default)]
    pub fact_failures: usize,
    /// Of those, rewritten once and then supported.
    #[serde(default)]
    pub repaired: usize,
    /// Replaced by a quote of the passage sentence that answers.
    #[serde(default)]
    pub quoted: usize,
    /// Left out of the answer.
    #[serde(default)]
    pub dropped: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Influence {
    pub n: usize,
    pub log_likelihood_drop: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    Cancelled,
}

/// The generator's answer (mirror of `tributary_generator::Answer`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The answer, markers included; when the checks changed what the model wrote, its
    /// checked sentences (what was streamed is then `draft`).
    pub answer: String,
    /// The model's text as streamed, when sentences were repaired, quoted or left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<String>,
    pub sentences: Vec<CitedSentence>,
    pub citations: Vec<Citation>,
    pub sources_offered: usize,
    pub model: String,
    pub adapter: Option<String>,
    pub grounded: bool,
    pub stats: CitationStats,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub influence: Vec<Influence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub influence_error: Option<String>,
}

/// One server-sent event, as a stream's schema describes each event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SseEvent {
    /// The event name (absent: `message`).
    pub event: Option<String>,
    /// JSON text.
    pub data: String,
    pub id: Option<String>,
    pub retry: Option<u64>,
}

/// An answer with its receipt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AnswerResponse {
    pub answer: Answer,
    /// Every passage offered to the model, in order: citation `n` is `passages[n - 1]`.
    pub passages: Vec<Passage>,
    pub receipt: Receipt,
}

// ---- Ledger -------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    Citation,
    Ablation,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CreditRole {
    Protocol,
    AdapterOwner,
    DatanetOwner,
    Contributor,
    /// The first contributor of a chunk a trained adapter the answer used learned from.
    TrainingContributor,
    Sink,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrievedChunk {
    pub datanet: String,
    pub chunk_id: String,
    pub score: f32,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CitedChunk {
    pub datanet: String,
    pub datanet_id: i64,
    pub datanet_owner: String,
    pub chunk_id: String,
    pub contributor: String,
    pub sentences: Vec<String>,
    pub score: f32,
    /// Integer influence weight.
    pub weight: u64,
}

/// A chunk of a trained adapter's training data, credited for the influence of the training
/// examples that hold it on the answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainedChunk {
    pub adapter: String,
    /// The adapter's training log root, under which its training data was registered.
    pub training_root: String,
    pub datanet: String,
    pub datanet_id: i64,
    pub chunk_id: String,
    /// The chunk's first contributor, from the catalog.
    pub contributor: String,
    /// Hashes of the influential training examples that hold the chunk.
    pub examples: Vec<String>,
    /// Integer influence weight (gradient similarity).
    pub weight: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Shares {
    #[serde(deserialize_with = "super::extract::integer::required")]
    #[schema(maximum = 10000)]
    pub protocol_bps: u32,
    #[serde(deserialize_with = "super::extract::integer::required")]
    #[schema(maximum = 10000)]
    pub adapter_bps: u32,
    #[serde(deserialize_with = "super::extract::integer::required")]
    #[schema(maximum = 10000)]
    pub datanet_bps: u32,
    #[serde(deserialize_with = "super::extract::integer::required")]
    #[schema(maximum = 10000)]
    pub contributors_bps: u32,
    /// The training data of the answer's trained adapters (0 when absent). Without one, it
    /// joins the contributors' share.
    #[serde(default, deserialize_with = "super::extract::integer::required")]
    #[schema(maximum = 10000)]
    pub training_bps: u32,
}

/// Amounts are decimal strings of the token's smallest unit (they overflow JSON numbers).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Split {
    #[schema(pattern = "^[0-9]+$")]
    pub protocol: String,
    #[schema(pattern = "^[0-9]+$")]
    pub adapter_owners: String,
    #[schema(pattern = "^[0-9]+$")]
    pub datanet_owners: String,
    #[schema(pattern = "^[0-9]+$")]
    pub contributors: String,
    /// To the training data (0 on receipts recorded before training credits).
    #[serde(default = "zero_amount")]
    #[schema(pattern = "^[0-9]+$")]
    pub training: String,
}

fn zero_amount() -> String {
    "0".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credit {
    pub account: String,
    pub role: CreditRole,
    #[schema(pattern = "^[0-9]+$")]
    pub amount: String,
    pub datanet: Option<String>,
    pub chunk_id: Option<String>,
}

/// One answer's receipt: what was asked, retrieved and cited, the fee and its split. `hash`
/// is the blake3 of the receipt's JSON without `hash`; `prev_hash` chains the receipts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub id: String,
    pub created_at_ms: i64,
    pub prev_hash: String,
    pub question_hash: String,
    pub question: Option<String>,
    pub datanets: Vec<String>,
    pub model: String,
    /// `[adapter id, weight]` pairs.
    pub adapters: Vec<(String, f32)>,
    pub answer: String,
    pub retrieved: Vec<RetrievedChunk>,
    pub cited: Vec<CitedChunk>,
    /// The trained adapters' training-data chunks credited (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trained: Vec<TrainedChunk>,
    pub weighting: Weighting,
    #[schema(pattern = "^[0-9]+$")]
    pub fee: String,
    pub shares: Shares,
    pub protocol_account: String,
    pub adapter_owners: Vec<String>,
    pub split: Split,
    pub credits: Vec<Credit>,
    /// Who paid `fee`; absent only on receipts recorded before payments existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<ReceiptPayment>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

/// Who paid for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaidBy {
    /// An address's balance.
    Payer,
    /// A Datanet's sponsor budget.
    Sponsor,
    /// No one: the answer was free and credits no one.
    Unpaid,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptPayment {
    pub paid_by: PaidBy,
    /// The account charged: an address, or `sponsor:<datanet id>`; null when unpaid.
    pub payer: Option<String>,
}

/// The caller, as its key says.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Me {
    /// `admin`, `owner`, `contributor` or `reader`; null for an anonymous caller.
    pub role: Option<String>,
    /// The address the key acts as, EIP-55.
    pub address: Option<String>,
    /// The key's label.
    pub label: Option<String>,
}

/// An account's money (a payer's balance, or a Datanet's sponsor budget).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Balance {
    /// The address, or `sponsor:<datanet id>`.
    pub address: String,
    /// Everything that reached the account less everything that left it.
    #[schema(pattern = "^[0-9]+$")]
    pub balance: String,
    /// Set aside for answers being generated now.
    #[schema(pattern = "^[0-9]+$")]
    pub held: String,
    /// Deposited on chain.
    #[schema(pattern = "^[0-9]+$")]
    pub deposited: String,
    /// Granted off chain by the operator.
    #[schema(pattern = "^[0-9]+$")]
    pub granted: String,
    /// Charged for answers, and moved into sponsor budgets.
    #[schema(pattern = "^[0-9]+$")]
    pub spent: String,
}

/// One movement of money.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    pub id: i64,
    /// deposit, grant, sponsor or charge.
    pub kind: String,
    pub key: String,
    pub debit: String,
    pub credit: String,
    #[schema(pattern = "^[0-9]+$")]
    pub amount: String,
    pub receipt_id: Option<String>,
    pub created_at_ms: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TransferPage {
    pub items: Vec<Transfer>,
    pub next_cursor: Option<String>,
}

/// An amount to move.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Funds {
    /// A positive integer in the token's smallest unit.
    #[schema(pattern = "^[0-9]+$")]
    pub amount: String,
    /// Makes a retried grant land once (grants only).
    #[serde(default)]
    pub key: Option<String>,
}

/// What an answer would cost, and who would pay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    /// 1 to 16 Datanets, as an answer would name them.
    #[schema(min_items = 1, max_items = 16)]
    pub datanets: Vec<String>,
    /// Up to 4 adapters.
    #[serde(default)]
    #[schema(max_items = 4)]
    pub adapters: Vec<String>,
}

/// Who would pay for an answer.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Billing {
    /// The caller's address.
    Payer,
    /// The Datanet's sponsor budget.
    Sponsor,
    /// No one: the answer would be free and credit no one.
    Unpaid,
    /// This server refuses unpaid answers: the request would get 402.
    Refused,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteResult {
    /// The fee, in the token's smallest unit.
    #[schema(pattern = "^[0-9]+$")]
    pub fee: String,
    pub weighting: Weighting,
    pub billing: Billing,
    /// The paying account, when someone pays.
    pub payer: Option<String>,
    /// What the payer has available now; less than `fee` gets 402.
    #[schema(pattern = "^[0-9]+$")]
    pub available: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub id: i64,
    /// credit or slash
    pub kind: String,
    pub receipt_id: Option<String>,
    pub flag_id: Option<i64>,
    pub offsets: Option<i64>,
    pub account: String,
    pub role: CreditRole,
    #[schema(pattern = "^-?[0-9]+$")]
    pub amount: String,
    pub datanet_id: Option<i64>,
    pub datanet: Option<String>,
    pub chunk_id: Option<String>,
    pub sentences: Vec<String>,
    pub epoch: Option<i64>,
    pub created_at_ms: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatanetEarnings {
    pub datanet: String,
    #[schema(pattern = "^-?[0-9]+$")]
    pub amount: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EpochEarnings {
    pub epoch: i64,
    #[schema(pattern = "^-?[0-9]+$")]
    pub amount: String,
}

/// What an address earned: totals, per Datanet, per epoch and per citation (`entries`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Earnings {
    pub account: String,
    #[schema(pattern = "^-?[0-9]+$")]
    pub total: String,
    #[schema(pattern = "^-?[0-9]+$")]
    pub settled: String,
    #[schema(pattern = "^-?[0-9]+$")]
    pub unsettled: String,
    #[schema(pattern = "^-?[0-9]+$")]
    pub slashed: String,
    pub by_datanet: Vec<DatanetEarnings>,
    pub by_epoch: Vec<EpochEarnings>,
    /// One page of the entries, oldest first (`limit`, `cursor`).
    pub entries: Vec<Entry>,
    /// Give it as `cursor` for the next page of entries; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Epoch {
    pub number: i64,
    pub last_entry: i64,
    /// 0x-hex Merkle root of the payout tree.
    pub root: String,
    pub receipts_head: String,
    #[schema(pattern = "^[0-9]+$")]
    pub total: String,
    pub accounts: i64,
    pub entries: i64,
    pub closed_at_ms: i64,
}

page!(EpochPage, Epoch);

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountProof {
    pub epoch: i64,
    /// The account's stable index in the payout trees: the payout contract's
    /// `claim(index, account, cumulative, proof)` and `paid(index)` take it.
    pub index: u64,
    pub account: String,
    #[schema(pattern = "^[0-9]+$")]
    pub cumulative: String,
    pub root: String,
    pub leaf: String,
    pub proof: Vec<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProofParams {
    /// Default: the latest epoch.
    pub epoch: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SettleResult {
    /// The epoch just closed, or the latest one when there was nothing to settle.
    pub epoch: Option<Epoch>,
    pub closed_now: bool,
    /// Epochs posted on chain by this call (absent without deployed contracts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posted_on_chain: Option<Vec<i64>>,
    /// Why posting failed: the epoch stays pending on chain and the next settle posts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Flag {
    pub id: i64,
    pub datanet_id: i64,
    /// chunk, document or contributor
    pub kind: String,
    pub target: String,
    pub reason: String,
    pub actor: String,
    pub active: bool,
    pub created_at_ms: i64,
}

page!(FlagPage, Flag);

/// Name exactly one target.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFlag {
    /// A chunk id (64 hex digits).
    pub chunk: Option<String>,
    /// A document id, or the name it was uploaded as.
    pub document: Option<String>,
    /// A contributor address: every chunk it contributed.
    pub contributor: Option<String>,
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagOutcome {
    pub flag: Flag,
    pub already_flagged: bool,
    pub slashed_credits: usize,
    #[schema(pattern = "^[0-9]+$")]
    pub slashed: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiftFlag {
    pub reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    #[schema(pattern = "^0x[0-9a-fA-F]{40}$")]
    pub address: String,
}

// ---- Adapters -----------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Adapter {
    pub id: String,
    /// `{"path": "..."}` or `{"hub": "owner/name"}`.
    #[schema(value_type = Object)]
    pub source: serde_json::Value,
    pub rank: usize,
    pub target_modules: Vec<String>,
    pub base_model: Option<String>,
    /// Seconds since the Unix epoch.
    pub added_at: u64,
    /// In the generator's memory now (the next answer with it does not load it from disk).
    #[serde(default)]
    pub loaded: bool,
}

page!(AdapterPage, Adapter);
page!(TrainingJobPage, TrainingJob);

/// A PEFT adapter directory on the server, or a hub repository in the server's hub cache.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAdapter {
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_./-]{0,127}$")]
    pub id: String,
    pub path: Option<String>,
    pub hub: Option<String>,
}

// ---- Pricing and claims -------------------------------------------------------------------

/// The ledger-wide policy.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Fee of one answer per Datanet searched, unless the Datanet sets its own.
    #[schema(pattern = "^[0-9]+$")]
    pub default_fee: String,
    pub shares: Shares,
    /// Receives the protocol share, rounding dust and unclaimable pools.
    #[schema(pattern = "^0x[0-9a-fA-F]{40}$")]
    pub protocol_account: String,
    /// Receives slashed credits.
    #[schema(pattern = "^0x[0-9a-fA-F]{40}$")]
    pub slash_sink: String,
    pub default_weighting: Weighting,
    /// The highest price a Datanet may set (default 10^18).
    #[schema(pattern = "^[0-9]+$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_datanet_fee: Option<String>,
    /// The highest surcharge an adapter may set (default 10^18).
    #[schema(pattern = "^[0-9]+$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_adapter_fee: Option<String>,
}

/// A Datanet's own price and weighting; null leaves it to the policy.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatanetPricing {
    #[schema(pattern = "^[0-9]+$")]
    pub fee: Option<String>,
    pub weighting: Option<Weighting>,
}

/// An adapter's surcharge and who its share pays.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdapterPricing {
    #[schema(pattern = "^[0-9]+$")]
    pub fee: String,
    #[schema(pattern = "^0x[0-9a-fA-F]{40}$")]
    pub owner: Option<String>,
}

/// What an address can claim now. Amounts in the token's smallest unit.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Claimable {
    pub account: String,
    /// Whether payout contracts are deployed; without them every amount is 0.
    pub contracts: bool,
    /// The chain's latest posted epoch (0: none yet): claims are checked against its root.
    pub epoch: i64,
    /// The address's cumulative total in that epoch.
    #[schema(pattern = "^[0-9]+$")]
    pub cumulative: String,
    /// What the payout contract has paid the address so far.
    #[schema(pattern = "^[0-9]+$")]
    pub paid: String,
    /// `cumulative - paid`: what a claim would pay now.
    #[schema(pattern = "^[0-9]+$")]
    pub claimable: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimResult {
    pub account: String,
    pub epoch: i64,
    /// What this claim paid (the cumulative total minus what was paid before).
    #[schema(pattern = "^[0-9]+$")]
    pub paid: String,
    #[schema(pattern = "^[0-9]+$")]
    pub cumulative: String,
    pub transaction: String,
}

// ---- Chain and verification -----------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChainStatus {
    pub chain_id: Option<u64>,
    pub registry: Option<String>,
    pub payouts: Option<String>,
    pub token: Option<String>,
    /// Absent without deployed contracts.
    pub chain_latest_epoch: Option<u64>,
    pub ledger_latest_epoch: Option<i64>,
    /// Closed epochs the chain lacks (the next settle posts them).
    pub pending_on_chain: Vec<i64>,
    /// Tokens deposited into the payout contract, ever (absent without contracts).
    #[schema(pattern = "^[0-9]+$")]
    pub deposited: Option<String>,
    /// The latest posted epoch's cumulative total: at most `deposited`.
    #[schema(pattern = "^[0-9]+$")]
    pub epoch_total: Option<String>,
    /// Paid out by claims and batches, ever: at most `epoch_total`.
    #[schema(pattern = "^[0-9]+$")]
    pub paid_out: Option<String>,
}

/// Deploys the registry, the payout contract and (without `token`) a test token whose whole
/// supply goes to the server's signer (it funds payers with `chain deposit`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// An existing ERC-20 to pay in (then fund the payout contract yourself).
    #[schema(pattern = "^0x[0-9a-fA-F]{40}$")]
    pub token: Option<String>,
    /// Test token supply in its smallest unit (default 10^24).
    #[schema(pattern = "^[0-9]{1,78}$")]
    pub supply: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    pub registry: String,
    pub payouts: String,
    pub token: String,
}

/// Pays what the chain's latest epoch owes, in batches.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// Accounts per transaction (default 200).
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    #[schema(minimum = 1, maximum = 2000)]
    pub batch_size: Option<u32>,
}

/// One `pushBatch` transaction.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushedBatch {
    pub transaction: String,
    pub recipients: usize,
    pub gas_used: u64,
}

/// What a push paid: accounts already paid are skipped.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pushed {
    /// The chain's latest epoch, whose tree proves the payments.
    pub epoch: i64,
    /// Accounts paid now.
    pub recipients: usize,
    /// Their sum, in the token's smallest unit.
    #[schema(pattern = "^[0-9]+$")]
    pub total: String,
    pub batches: Vec<PushedBatch>,
    /// Accounts owed that could not be paid (the zero address, a recipient the token refuses),
    /// with why; the other batches went ahead.
    pub skipped: Vec<SkippedLeaf>,
}

/// What a sync of the payout contract's deposits read.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Synced {
    /// Blocks read (inclusive); null when nothing new was confirmed.
    pub from_block: Option<u64>,
    pub to_block: Option<u64>,
    /// Deposits recorded now.
    pub recorded: usize,
    /// Deposits an earlier sync recorded.
    pub already_recorded: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkippedLeaf {
    pub account: String,
    #[schema(pattern = "^[0-9]+$")]
    pub cumulative: String,
    pub reason: String,
}

/// A Datanet's contribution root committed on the registry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registered {
    pub datanet: String,
    /// keccak256 of the Datanet's name: its id on the registry.
    pub id: String,
    pub version: u64,
    pub root: String,
}

/// A chunk's contribution proven on chain.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Proven {
    pub datanet: String,
    pub chunk_id: String,
    pub contributor: String,
    pub version: u64,
    pub verified: bool,
    pub proof: Vec<String>,
}

/// The ledger recomputed from its data: the receipts' hash chain, every split, every epoch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyReport {
    pub receipts: usize,
    pub epochs: usize,
    pub head: String,
    /// Empty when the ledger checks.
    pub problems: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatanetCheck {
    /// Repair what disagrees (re-embed and re-index from the catalog; delete orphans).
    #[serde(default)]
    pub repair: bool,
}

/// Whether a Datanet's catalog, vectors and keywords agree.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Consistency {
    pub catalog_chunks: usize,
    pub vector_points: usize,
    pub keyword_docs: usize,
    pub missing_from_vectors: Vec<String>,
    pub missing_from_keywords: Vec<String>,
    pub orphan_vectors: Vec<String>,
    pub orphan_keywords: Vec<String>,
}

// ---- Model Factory: training jobs ------------------------------------------------------------

/// A question/answer pair to train on; `chunks` are the ids of the Datanet's chunks its answer
/// rests on (found by retrieval when absent).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainingPair {
    pub question: String,
    pub answer: String,
    #[serde(default)]
    pub chunks: Vec<String>,
}

/// A training job: the adapter's name, the Datanet and its pairs, and settings (defaults:
/// rank 16, alpha 32, every projection, 3 epochs, learning rate 2e-4, batch 4, 20% held out).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainAdapter {
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    pub name: String,
    pub datanet: String,
    /// Question/answer pairs; may be left out when `synthesize` asks for pairs written from
    /// the Datanet's chunks.
    #[serde(default)]
    #[schema(max_items = 10000)]
    pub pairs: Vec<TrainingPair>,
    /// Pairs to write from the Datanet's own chunks besides `pairs`: for each of this many
    /// chunks the base model writes a question the chunk answers, and the chunk's sentence
    /// that answers it is the answer.
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    #[schema(minimum = 1, maximum = 1000)]
    pub synthesize: Option<usize>,
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    #[schema(minimum = 1, maximum = 256)]
    pub rank: Option<usize>,
    pub alpha: Option<f64>,
    /// PEFT module names: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.
    pub targets: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    #[schema(minimum = 1, maximum = 100)]
    pub epochs: Option<usize>,
    pub learning_rate: Option<f64>,
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    #[schema(minimum = 1, maximum = 64)]
    pub batch_size: Option<usize>,
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_steps: Option<usize>,
    /// Any whole number up to 2^53 - 1 (JSON's exact integers).
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    #[schema(minimum = 0, maximum = 9007199254740991_u64)]
    pub seed: Option<u64>,
    /// Share of the pairs held out to evaluate on, in [0, 1).
    pub holdout: Option<f64>,
}

/// One optimizer step of a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrainingStep {
    pub step: usize,
    pub total: usize,
    /// Mean negative log-likelihood per answer token.
    pub loss: f64,
    pub learning_rate: f64,
}

/// A finished job's adapter: its held-out evaluation against the base and its provenance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrainingResult {
    /// The training log's blake3 Merkle root.
    pub log_root: String,
    pub steps: usize,
    pub train_pairs: usize,
    /// Pairs written from the Datanet's chunks (`synthesize`), of all the job's pairs.
    pub synthesized_pairs: usize,
    pub heldout_pairs: usize,
    pub base_loss: f64,
    pub adapter_loss: f64,
    pub base_answer_f1: f64,
    pub adapter_answer_f1: f64,
    /// A lower held-out loss and answers no worse: what `publish` requires without `force`.
    pub beats_base: bool,
    pub tokens_per_second: f64,
    pub seconds: f64,
    pub published: bool,
    pub forced: bool,
}

/// A training job as it stands: `queued`, `running`, `succeeded` or `failed`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrainingJob {
    pub name: String,
    pub datanet: String,
    pub state: String,
    pub owner: Option<String>,
    pub submitted_at: u64,
    pub steps: Vec<TrainingStep>,
    pub error: Option<String>,
    pub result: Option<TrainingResult>,
}

/// A question to try a trained adapter on, beside its base.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TryAdapter {
    pub datanet: String,
    #[schema(min_length = 1, max_length = 8192)]
    pub question: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TrialPassage {
    pub chunk_id: String,
    pub text: String,
}

/// The base's answer and the adapter's, from the same passages (numbered from 1).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AdapterTrial {
    pub passages: Vec<TrialPassage>,
    pub base: String,
    pub adapter: String,
}

/// Publish a trained adapter; `force` publishes one that does not beat its base.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishAdapter {
    #[serde(default)]
    pub force: bool,
}
