//! The HTTP API in process (`http::app(state).oneshot(request)`), and over a real socket for
//! streams: auth and privacy matrix, problem documents, uploads, answers, receipts, the spec.

use std::sync::Arc;

use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use tributary::app::answers::Unpaid;
use tributary::app::keys::{NewKey, Role};
use tributary::app::{App, Settings};
use tributary::http::{self, AppState, ServeConfig};
use tributary_attribution::Policy;
use tributary_indexer::testing::fresh_pg_schema;

use crate::{ALICE, BOB, llm, model_dir};

const CAROL: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const DAVE: &str = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";
/// The protocol's account (anvil's sixth).
const TREASURY: &str = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc";
/// Who pays for answers in these tests (anvil's seventh).
pub const PAYER: &str = "0x976EA74026E726554dB657fA54763abd0C3a0aa9";
/// ALICE's private Datanet `secret`, as stored (and named everywhere): `name~0xowner`.
const SECRET: &str = "secret~0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
/// Anvil's first key: ALICE.
const ALICE_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

pub struct Server {
    pub state: AppState,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl Server {
    pub async fn start(config: ServeConfig, database_url: Option<String>) -> Server {
        Server::start_with(config, database_url, |_| {}).await
    }

    /// [`Server::start`] with settings changed by `adjust`.
    pub async fn start_with(
        config: ServeConfig,
        database_url: Option<String>,
        adjust: impl FnOnce(&mut Settings),
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings {
            data_dir: dir.path().to_path_buf(),
            database_url,
            embed_model: Some(model_dir()),
            llm: Some(llm()),
            ..Default::default()
        };
        adjust(&mut settings);
        let app = Arc::new(App::open(&settings).await.unwrap());
        // An operator names the protocol's account before any answer can be charged.
        let ledger = app.ledger();
        let policy = Policy {
            protocol_account: TREASURY.parse().unwrap(),
            slash_sink: TREASURY.parse().unwrap(),
            ..Policy::default()
        };
        ledger.set_policy(&policy).await.unwrap();
        let state = AppState::new(app, config);
        let router = http::app(state.clone());
        Server { state, router, _dir: dir }
    }

    pub async fn key(&self, role: Role, address: Option<&str>, rate: Option<u32>) -> String {
        let new =
            NewKey { role, address: address.map(|a| a.parse().unwrap()), label: String::new(), rate_per_minute: rate };
        self.state.keys().create(&new).await.unwrap().0
    }

    /// [`Server::start`] answering through the OpenAI-compatible engine at `base_url`.
    pub async fn with_engine(config: ServeConfig, base_url: String, model: &str) -> Server {
        Server::start_with(config, None, |settings| {
            settings.remote = Some(tributary_generator::RemoteConfig {
                base_url,
                model: model.into(),
                api_key: None,
                context_length: 4096,
            });
        })
        .await
    }

    /// An admin key, and a reader key of PAYER granted 10^18: the Datanet `rivers` (ALICE's)
    /// holds RIVERS, contributed by BOB.
    pub async fn rivers_and_payer(&self) -> (String, String) {
        let admin = self.key(Role::Admin, None, None).await;
        let payer = self.key(Role::Reader, Some(PAYER), None).await;
        let create = json!({"name": "rivers", "owner": ALICE});
        assert_eq!(self.call("POST", "/v1/datanets", Some(&admin), Some(create)).await.status, StatusCode::CREATED);
        let upload = json!({"documents": [doc("missouri.txt", RIVERS)], "contributor": BOB});
        let up = self.call("POST", "/v1/datanets/rivers/documents", Some(&admin), Some(upload)).await;
        assert_eq!(up.status, StatusCode::OK, "{}", up.body);
        let grant = json!({"amount": "1000000000000000000"});
        let granted = self.call("POST", &format!("/v1/accounts/{PAYER}/grants"), Some(&admin), Some(grant)).await;
        assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.body);
        (admin, payer)
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let body =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        if status.is_client_error() || status.is_server_error() {
            let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string());
            assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{status} {body}");
            assert_eq!(body["status"], status.as_u16(), "{body}");
            assert!(body["code"].is_string(), "{body}");
        }
        Reply { status, headers, body }
    }

    pub async fn call(&self, method: &str, uri: &str, key: Option<&str>, body: Option<Value>) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let request = match body {
            Some(body) => request.header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        };
        self.send(request.unwrap()).await
    }
}

/// One key per kind of caller.
struct Cast {
    admin: String,
    /// Owner key of ALICE, who owns the test Datanets.
    alice: String,
    /// Owner key of BOB, who owns none of them.
    bob: String,
    /// Contributor key of CAROL.
    carol: String,
    /// Reader key without an address.
    reader: String,
    /// Reader key of DAVE.
    dave: String,
}

impl Cast {
    async fn new(s: &Server) -> Cast {
        Cast {
            admin: s.key(Role::Admin, None, None).await,
            alice: s.key(Role::Owner, Some(ALICE), None).await,
            bob: s.key(Role::Owner, Some(BOB), None).await,
            carol: s.key(Role::Contributor, Some(CAROL), None).await,
            reader: s.key(Role::Reader, None, None).await,
            dave: s.key(Role::Reader, Some(DAVE), None).await,
        }
    }
}

pub fn doc(name: &str, text: &str) -> Value {
    json!({"name": name, "text": text})
}

pub const RIVERS: &str = "The Missouri River is the longest river in North America. It flows 3,767 km from the \
Rocky Mountains to the Mississippi River near St. Louis.\n\nThe Mississippi River drains most of \
the continental United States.";

/// What a signed upload's message holds beyond the Datanet and the documents.
#[derive(Clone)]
struct Terms {
    license: Option<&'static str>,
    chunk_tokens: Option<u32>,
    nonce: u64,
    /// Seconds from now.
    expires_in: i64,
    /// Another deployment's salt instead of the server's.
    salt: Option<alloy::primitives::B256>,
}

impl Terms {
    fn nonce(nonce: u64) -> Terms {
        Terms { license: None, chunk_tokens: None, nonce, expires_in: 600, salt: None }
    }
}

/// An upload ALICE signed as EIP-712 typed data, under the domain the server publishes.
async fn signed_upload(s: &Server, datanet: &str, documents: Value, terms: Terms) -> Value {
    use alloy::sol_types::SolStruct;
    let parsed: Vec<tributary::http::wire::UploadDocument> = serde_json::from_value(documents.clone()).unwrap();
    let hash = http::content_hash(&parsed);
    let typed = s.call("GET", "/v1/uploads/eip712", None, None).await.body;
    assert_eq!(typed["primaryType"], "Upload", "{typed}");
    let fields: Vec<&str> =
        typed["types"]["Upload"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(fields, ["datanet", "contentHash", "license", "chunkTokens", "overlapTokens", "nonce", "deadline"]);
    let salt = terms.salt.unwrap_or_else(|| typed["domain"]["salt"].as_str().unwrap().parse().unwrap());
    let domain = alloy::sol_types::Eip712Domain::new(
        Some("Tributary".into()),
        Some("1".into()),
        typed["domain"]["chainId"].as_u64().map(alloy::primitives::U256::from),
        typed["domain"]["verifyingContract"].as_str().map(|a| a.parse().unwrap()),
        Some(salt),
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let deadline = (now + terms.expires_in) as u64;
    let defaults = &typed["defaults"];
    let message = tributary::app::uploads::Upload {
        datanet: datanet.into(),
        contentHash: hash.parse().unwrap(),
        license: terms.license.unwrap_or(defaults["license"].as_str().unwrap()).into(),
        chunkTokens: terms.chunk_tokens.unwrap_or(defaults["chunk_tokens"].as_u64().unwrap() as u32),
        overlapTokens: defaults["overlap_tokens"].as_u64().unwrap() as u32,
        nonce: alloy::primitives::U256::from(terms.nonce),
        deadline,
    };
    let signer: PrivateKeySigner = ALICE_KEY.parse().unwrap();
    let signature = signer.sign_hash_sync(&message.eip712_signing_hash(&domain)).unwrap();
    let mut body = json!({
        "documents": documents, "contributor": ALICE, "signature": alloy::hex::encode_prefixed(signature.as_bytes()),
        "nonce": terms.nonce.to_string(), "deadline": deadline,
    });
    if let Some(license) = terms.license {
        body["license"] = json!(license);
    }
    if let Some(chunk_tokens) = terms.chunk_tokens {
        body["chunk_tokens"] = json!(chunk_tokens);
    }
    body
}

/// Who may do what, and what a private Datanet shows to whom (nothing, to outsiders).
async fn access_matrix(database_url: Option<String>) {
    let s = Server::start(ServeConfig::default(), database_url.clone()).await;
    let Cast { admin, alice, bob, carol, reader, dave } = Cast::new(&s).await;

    // Creating Datanets: owners (as themselves) and admins.
    let create =
        |name: &str, private: bool| json!({"name": name, "visibility": if private { "private" } else { "public" }});
    assert_eq!(s.call("POST", "/v1/datanets", None, Some(create("x", false))).await.body["code"], "missing_api_key");
    assert_eq!(
        s.call("POST", "/v1/datanets", Some(&reader), Some(create("x", false))).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.call("POST", "/v1/datanets", Some(&carol), Some(create("x", false))).await.status,
        StatusCode::FORBIDDEN
    );
    let as_bob = json!({"name": "x", "owner": BOB});
    assert_eq!(s.call("POST", "/v1/datanets", Some(&alice), Some(as_bob)).await.status, StatusCode::FORBIDDEN);
    let public = s.call("POST", "/v1/datanets", Some(&alice), Some(create("rivers", false))).await;
    assert_eq!(public.status, StatusCode::CREATED, "{}", public.body);
    assert_eq!(public.body["owner"], ALICE);
    let private = s.call("POST", "/v1/datanets", Some(&alice), Some(create("secret", true))).await;
    assert_eq!((private.status, private.body["name"].as_str()), (StatusCode::CREATED, Some(SECRET)));
    // Issue #24, defect 16: who may upload is decided before the body is read: a reader key,
    // or anyone on a Datanet it cannot see, is refused whatever the body holds (it was parsed
    // first, and a malformed one answered 400).
    let garbage = |name: &str, key: Option<&str>| {
        let mut request =
            Request::post(format!("/v1/datanets/{name}/documents")).header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        request.body(Body::from(format!("{{\"documents\": [{}", "x".repeat(100_000)))).unwrap()
    };
    assert_eq!(s.send(garbage("rivers", Some(&reader))).await.status, StatusCode::FORBIDDEN);
    assert_eq!(s.send(garbage(SECRET, None)).await.body["code"], "datanet_not_found");
    assert_eq!(s.send(garbage(SECRET, Some(&bob))).await.body["code"], "datanet_not_found");
    assert_eq!(
        s.send(garbage("rivers", None)).await.body["code"],
        "invalid_json",
        "anonymous: the signature is inside"
    );
    let again = s.call("POST", "/v1/datanets", Some(&admin), Some(create("rivers", false))).await;
    assert_eq!((again.status, again.body["code"].as_str()), (StatusCode::CONFLICT, Some("datanet_exists")));
    let bad_name = s.call("POST", "/v1/datanets", Some(&admin), Some(create("Bad Name", false))).await;
    assert_eq!(bad_name.body["code"], "invalid_datanet_name");

    // A private Datanet answers outsiders exactly as a missing one does.
    for key in [None, Some(&reader), Some(&carol), Some(&bob), Some(&dave)] {
        let hidden = s.call("GET", &format!("/v1/datanets/{SECRET}"), key.map(|k| k.as_str()), None).await;
        let missing = s.call("GET", "/v1/datanets/nosuch", key.map(|k| k.as_str()), None).await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND);
        assert_eq!(hidden.body["code"], missing.body["code"]);
        assert_eq!(hidden.body["detail"].as_str().unwrap().replace(SECRET, "nosuch"), missing.body["detail"]);
        let list = s.call("GET", "/v1/datanets", key.map(|k| k.as_str()), None).await;
        let names: Vec<&str> =
            list.body["items"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["rivers"]);
        let search = json!({"query": "river", "datanets": [SECRET]});
        assert_eq!(
            s.call("POST", "/v1/search", key.map(|k| k.as_str()), Some(search)).await.status,
            StatusCode::NOT_FOUND
        );
        let upload = json!({"documents": [doc("a.txt", "Some text.")]});
        let up =
            s.call("POST", &format!("/v1/datanets/{SECRET}/documents"), key.map(|k| k.as_str()), Some(upload)).await;
        assert_eq!(up.status, StatusCode::NOT_FOUND, "{}", up.body);
        assert_eq!(
            s.call("GET", &format!("/v1/datanets/{SECRET}/flags"), key.map(|k| k.as_str()), None).await.status,
            StatusCode::NOT_FOUND
        );
        let uri = format!("/v1/datanets/{SECRET}/documents/1");
        assert_eq!(s.call("GET", &uri, key.map(|k| k.as_str()), None).await.body["code"], "datanet_not_found");
    }
    // Models bound to Datanets list only those the caller may read.
    let model_ids = |body: Value| -> Vec<String> {
        body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(model_ids(s.call("GET", "/v1/models", Some(&bob), None).await.body), ["base", "base@rivers"]);
    assert_eq!(
        model_ids(s.call("GET", "/v1/models", Some(&alice), None).await.body),
        ["base", "base@rivers", format!("base@{SECRET}").as_str()]
    );
    for key in [&alice, &admin] {
        assert_eq!(s.call("GET", &format!("/v1/datanets/{SECRET}"), Some(key), None).await.status, StatusCode::OK);
        let list = s.call("GET", "/v1/datanets", Some(key), None).await;
        assert_eq!(list.body["items"].as_array().unwrap().len(), 2);
    }

    // Governing: the owner and admins; another owner may not.
    let patch = json!({"description": "Rivers of North America"});
    assert_eq!(
        s.call("PATCH", "/v1/datanets/rivers", None, Some(patch.clone())).await.status,
        StatusCode::UNAUTHORIZED
    );
    for key in [&reader, &carol, &bob] {
        assert_eq!(
            s.call("PATCH", "/v1/datanets/rivers", Some(key), Some(patch.clone())).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(s.call("GET", "/v1/datanets/rivers/members", Some(key), None).await.status, StatusCode::FORBIDDEN);
        let flag = json!({"contributor": CAROL, "reason": "spam"});
        assert_eq!(
            s.call("POST", "/v1/datanets/rivers/flags", Some(key), Some(flag)).await.status,
            StatusCode::FORBIDDEN
        );
    }
    let patched = s.call("PATCH", "/v1/datanets/rivers", Some(&alice), Some(patch)).await;
    assert_eq!(patched.body["description"], "Rivers of North America");

    // Uploads: contributor keys as themselves, signed uploads without a key, never readers.
    let documents = json!([doc("missouri.txt", RIVERS)]);
    let up =
        s.call("POST", "/v1/datanets/rivers/documents", Some(&reader), Some(json!({"documents": documents}))).await;
    assert_eq!(up.status, StatusCode::FORBIDDEN);
    let unsigned = s
        .call(
            "POST",
            "/v1/datanets/rivers/documents",
            None,
            Some(json!({"documents": documents, "contributor": ALICE})),
        )
        .await;
    assert_eq!(unsigned.body["code"], "missing_api_key");
    let mut forged = signed_upload(&s, "rivers", documents.clone(), Terms::nonce(1)).await;
    forged["contributor"] = json!(BOB);
    assert_eq!(
        s.call("POST", "/v1/datanets/rivers/documents", None, Some(forged)).await.body["code"],
        "invalid_signature"
    );
    let other_datanet = signed_upload(&s, SECRET, documents.clone(), Terms::nonce(1)).await;
    let replayed = s.call("POST", "/v1/datanets/rivers/documents", None, Some(other_datanet)).await;
    assert_eq!(replayed.body["code"], "invalid_signature");
    // Issue #24, defect 11: the signature covers the license and the chunking (a leaked payload
    // submitted first with another license, or other chunk sizes, is refused), has a deadline
    // (past, or more than a day ahead: refused), names this deployment (a signature made for
    // another one is refused), and is used once. The EIP-191 text signed before is refused.
    let mut relicensed = signed_upload(&s, "rivers", documents.clone(), Terms::nonce(2)).await;
    relicensed["license"] = json!("CC0-1.0");
    let mut rechunked = signed_upload(&s, "rivers", documents.clone(), Terms::nonce(3)).await;
    rechunked["chunk_tokens"] = json!(200);
    let expired = signed_upload(&s, "rivers", documents.clone(), Terms { expires_in: -5, ..Terms::nonce(4) }).await;
    let too_long =
        signed_upload(&s, "rivers", documents.clone(), Terms { expires_in: 2 * 86_400, ..Terms::nonce(5) }).await;
    let elsewhere =
        signed_upload(&s, "rivers", documents.clone(), Terms { salt: Some([7u8; 32].into()), ..Terms::nonce(6) }).await;
    let mut personal_sign = signed_upload(&s, "rivers", documents.clone(), Terms::nonce(7)).await;
    let parsed: Vec<tributary::http::wire::UploadDocument> = serde_json::from_value(documents.clone()).unwrap();
    let old_text = format!("Tributary upload to rivers: {}", http::content_hash(&parsed));
    let old_signature = ALICE_KEY.parse::<PrivateKeySigner>().unwrap().sign_message_sync(old_text.as_bytes()).unwrap();
    personal_sign["signature"] = json!(alloy::hex::encode_prefixed(old_signature.as_bytes()));
    for (what, body) in [
        ("another license", relicensed),
        ("other chunk sizes", rechunked),
        ("a past deadline", expired),
        ("a deadline two days ahead", too_long),
        ("another deployment", elsewhere),
        ("EIP-191", personal_sign),
    ] {
        let refused = s.call("POST", "/v1/datanets/rivers/documents", None, Some(body)).await;
        assert_eq!(refused.body["code"], "invalid_signature", "{what}: {}", refused.body);
    }
    let licensed = Terms { license: Some("CC-BY-4.0"), chunk_tokens: Some(128), ..Terms::nonce(8) };
    let signed_body = signed_upload(&s, "rivers", documents.clone(), licensed).await;
    let signed = s.call("POST", "/v1/datanets/rivers/documents", None, Some(signed_body.clone())).await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.body);
    let again = s.call("POST", "/v1/datanets/rivers/documents", None, Some(signed_body)).await;
    assert_eq!((again.status, again.body["code"].as_str()), (StatusCode::CONFLICT, Some("signature_replayed")));
    assert_eq!(signed.body["contributor"], ALICE);
    assert!(signed.body["report"]["new_chunks"].as_u64().unwrap() >= 1);
    let as_bob = json!({"documents": [doc("b.txt", "Glaciers carve valleys.")], "contributor": BOB});
    assert_eq!(
        s.call("POST", "/v1/datanets/rivers/documents", Some(&carol), Some(as_bob)).await.status,
        StatusCode::FORBIDDEN
    );
    let carols = json!({"documents": [doc("glacier.md", "# Glaciers\n\nGlaciers carve U-shaped valleys."), doc("copy.txt", &format!("{RIVERS}\n"))]});
    let up = s.call("POST", "/v1/datanets/rivers/documents", Some(&carol), Some(carols)).await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.body);
    assert_eq!(up.body["contributor"], CAROL);
    assert!(up.body["report"]["duplicate_chunks"].as_u64().unwrap() >= 1, "{}", up.body);

    // Members of the private Datanet: the owner lets Carol in; then she may upload and read.
    let add = json!({"address": CAROL});
    assert_eq!(
        s.call("POST", &format!("/v1/datanets/{SECRET}/members"), Some(&bob), Some(add.clone())).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.call("POST", &format!("/v1/datanets/{SECRET}/members"), Some(&alice), Some(add.clone())).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.call("POST", &format!("/v1/datanets/{SECRET}/members"), Some(&alice), Some(add)).await.status,
        StatusCode::OK
    );
    let secret_doc = json!({"documents": [doc("plan.txt", "The confidential delta survey starts in spring.")]});
    assert_eq!(
        s.call("POST", &format!("/v1/datanets/{SECRET}/documents"), Some(&carol), Some(secret_doc)).await.status,
        StatusCode::OK
    );
    assert_eq!(s.call("GET", &format!("/v1/datanets/{SECRET}"), Some(&carol), None).await.status, StatusCode::OK);
    let members = s.call("GET", &format!("/v1/datanets/{SECRET}/members"), Some(&alice), None).await;
    assert_eq!(members.body["items"][0]["address"], CAROL);

    // Access requests: the same answer whether the private Datanet exists or not; approval
    // lets the address in.
    let ask = json!({"message": "survey team"});
    assert_eq!(
        s.call("POST", &format!("/v1/datanets/{SECRET}/access-requests"), None, Some(ask.clone())).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.call("POST", &format!("/v1/datanets/{SECRET}/access-requests"), Some(&reader), Some(ask.clone()))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.call("POST", &format!("/v1/datanets/{SECRET}/access-requests"), Some(&dave), Some(ask.clone())).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        s.call("POST", "/v1/datanets/nosuch/access-requests", Some(&dave), Some(ask.clone())).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        s.call("GET", &format!("/v1/datanets/{SECRET}/access-requests"), Some(&dave), None).await.status,
        StatusCode::FORBIDDEN
    );
    let requests = s.call("GET", &format!("/v1/datanets/{SECRET}/access-requests"), Some(&alice), None).await;
    let request = &requests.body["items"][0];
    assert_eq!((request["address"].as_str(), request["status"].as_str()), (Some(DAVE), Some("pending")));
    let uri = format!("/v1/datanets/{SECRET}/access-requests/{}", request["id"]);
    assert_eq!(s.call("POST", &uri, Some(&bob), Some(json!({"approve": true}))).await.status, StatusCode::NOT_FOUND);
    let approved = s.call("POST", &uri, Some(&alice), Some(json!({"approve": true}))).await;
    assert_eq!(approved.body["status"], "approved");
    assert_eq!(s.call("POST", &uri, Some(&alice), Some(json!({"approve": false}))).await.status, StatusCode::CONFLICT);
    assert_eq!(s.call("GET", &format!("/v1/datanets/{SECRET}"), Some(&dave), None).await.status, StatusCode::OK);
    let search = json!({"query": "delta survey", "datanets": [SECRET], "k": 1});
    let found = s.call("POST", "/v1/search", Some(&dave), Some(search)).await;
    assert_eq!(found.body["passages"][0]["contributor"], CAROL, "{}", found.body);

    // Ledger: earnings are their address's own; settling is for admins.
    assert_eq!(s.call("GET", &format!("/v1/earnings/{CAROL}"), None, None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.call("GET", &format!("/v1/earnings/{CAROL}"), Some(&alice), None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(s.call("GET", &format!("/v1/earnings/{CAROL}"), Some(&carol), None).await.status, StatusCode::OK);

    assert_eq!(s.call("GET", &format!("/v1/earnings/{CAROL}"), Some(&admin), None).await.status, StatusCode::OK);
    assert_eq!(s.call("POST", "/v1/admin/settle", Some(&alice), None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(s.call("POST", "/v1/admin/settle", None, None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.call("POST", "/v1/admin/settle", Some(&admin), None).await.status, StatusCode::OK);
    let policy = s.call("GET", "/v1/pricing", None, None).await.body;
    assert_eq!(s.call("PUT", "/v1/pricing", Some(&alice), Some(policy.clone())).await.status, StatusCode::FORBIDDEN);
    assert_eq!(s.call("PUT", "/v1/pricing", Some(&admin), Some(policy)).await.status, StatusCode::OK);
    let price = json!({"fee": "5", "weighting": null});
    assert_eq!(
        s.call("PUT", "/v1/datanets/rivers/pricing", Some(&bob), Some(price.clone())).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(s.call("PUT", "/v1/datanets/rivers/pricing", Some(&alice), Some(price)).await.body["fee"], "5");
    let adapter = json!({"id": "a", "path": "/nonexistent"});
    assert_eq!(s.call("POST", "/v1/adapters", Some(&alice), Some(adapter)).await.status, StatusCode::FORBIDDEN);
    let claim = json!({"address": CAROL});
    assert_eq!(s.call("POST", "/v1/claims", Some(&alice), Some(claim.clone())).await.status, StatusCode::FORBIDDEN);
    let unconfigured = s.call("POST", "/v1/claims", Some(&carol), Some(claim)).await;
    assert_eq!(unconfigured.body["code"], "chain_not_configured");

    // Flags: the owner flags Carol's chunks out of retrieval.
    let flag = s
        .call("POST", "/v1/datanets/rivers/flags", Some(&alice), Some(json!({"contributor": CAROL, "reason": "spam"})))
        .await;
    assert_eq!(flag.status, StatusCode::CREATED, "{}", flag.body);
    let id = flag.body["flag"]["id"].as_i64().unwrap();
    let glaciers = json!({"query": "glaciers valleys", "datanets": ["rivers"], "contributors": [CAROL]});
    assert_eq!(s.call("POST", "/v1/search", None, Some(glaciers.clone())).await.body["passages"], json!([]));
    let lift = format!("/v1/datanets/rivers/flags/{id}/lift");
    assert_eq!(s.call("POST", &lift, Some(&bob), Some(json!({"reason": "x"}))).await.status, StatusCode::FORBIDDEN);
    assert_eq!(s.call("POST", &lift, Some(&alice), Some(json!({"reason": "appeal"}))).await.body["active"], false);
    assert_eq!(
        s.call("POST", &lift, Some(&alice), Some(json!({"reason": "appeal"}))).await.status,
        StatusCode::CONFLICT
    );
    assert!(!s.call("POST", "/v1/search", None, Some(glaciers)).await.body["passages"].as_array().unwrap().is_empty());

    // Keys: unknown, malformed and revoked keys are 401, never anonymous.
    let unknown = format!("trb_{}", "0".repeat(64));
    assert_eq!(s.call("GET", "/v1/datanets", Some(&unknown), None).await.body["code"], "invalid_api_key");
    assert_eq!(s.call("GET", "/v1/datanets", Some("not-a-key"), None).await.body["code"], "invalid_api_key");
    let basic = Request::get("/v1/datanets").header(header::AUTHORIZATION, "Basic abc").body(Body::empty()).unwrap();
    assert_eq!(s.send(basic).await.status, StatusCode::UNAUTHORIZED);
    let listed = s.state.keys().list().await.unwrap();
    let carol_id = listed.iter().find(|k| k.address.map(|a| a.to_checksummed()).as_deref() == Some(CAROL)).unwrap().id;
    assert!(s.state.keys().revoke(carol_id).await.unwrap());
    assert_eq!(s.call("GET", "/v1/datanets", Some(&carol), None).await.status, StatusCode::UNAUTHORIZED);

    // Issue #24, defect 12: a revocation made by another process (`tributary apikey revoke`:
    // its own pool over the same database) takes effect at once on the running server, though
    // the server has just used the key.
    assert_eq!(s.call("GET", "/v1/datanets", Some(&dave), None).await.status, StatusCode::OK);
    let settings =
        Settings { data_dir: s._dir.path().to_path_buf(), database_url: database_url.clone(), ..Default::default() };
    let other = App::open(&settings).await.unwrap();
    let elsewhere = tributary::app::keys::KeyStore::new(other.store.catalog().pool().clone());
    let dave_id = listed.iter().find(|k| k.address.map(|a| a.to_checksummed()).as_deref() == Some(DAVE)).unwrap().id;
    assert!(elsewhere.revoke(dave_id).await.unwrap());
    assert_eq!(s.call("GET", "/v1/datanets", Some(&dave), None).await.status, StatusCode::UNAUTHORIZED);

    // Issue #24, defect 9: creating a Datanet named like someone's private one answers as for
    // any free name (it answered 409 `datanet_exists`, which told an outsider the private name
    // existed): private Datanets are stored as `name~0xowner`.
    let public = s.call("POST", "/v1/datanets", Some(&bob), Some(create("secret", false))).await;
    assert_eq!((public.status, public.body["name"].as_str()), (StatusCode::CREATED, Some("secret")), "{}", public.body);
    let bobs = s.call("POST", "/v1/datanets", Some(&bob), Some(create("secret", true))).await;
    let bobs_name = format!("secret~{}", BOB.to_lowercase());
    assert_eq!((bobs.status, bobs.body["name"].as_str()), (StatusCode::CREATED, Some(bobs_name.as_str())));
    // Nobody takes another owner's private name, so nothing asked of it pays them: a requested
    // name cannot hold `~`, and an owner key creates under its own address only.
    for taken in [SECRET, "secret~0x70997970c51812dc3a010c7d01b50e0d17dc79c8"] {
        let squat = s.call("POST", "/v1/datanets", Some(&bob), Some(create(taken, false))).await;
        assert_eq!(squat.body["code"], "invalid_datanet_name", "{taken}");
    }
    let as_alice = json!({"name": "secret", "owner": ALICE, "visibility": "private"});
    assert_eq!(s.call("POST", "/v1/datanets", Some(&bob), Some(as_alice)).await.status, StatusCode::FORBIDDEN);
    // Only names the caller can see conflict: its own private one, or a public one.
    for private in [true, false] {
        let again = s.call("POST", "/v1/datanets", Some(&bob), Some(create("secret", private))).await;
        assert_eq!((again.status, again.body["code"].as_str()), (StatusCode::CONFLICT, Some("datanet_exists")));
    }
    let alices = s.call("GET", &format!("/v1/datanets/{SECRET}"), Some(&alice), None).await;
    assert_ne!(alices.body["id"], public.body["id"]);
    assert_eq!(
        s.call("GET", &format!("/v1/datanets/{bobs_name}"), Some(&alice), None).await.status,
        StatusCode::NOT_FOUND
    );
    // A private Datanet made public keeps its name (receipts and the chain registry hold it).
    let made_public = json!({"visibility": "public"});
    let patched = s.call("PATCH", &format!("/v1/datanets/{bobs_name}"), Some(&bob), Some(made_public)).await;
    assert_eq!(
        (patched.body["name"].as_str(), patched.body["visibility"].as_str()),
        (Some(bobs_name.as_str()), Some("public"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn access_matrix_sqlite() {
    access_matrix(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn access_matrix_postgres() {
    access_matrix(Some(fresh_pg_schema("h").await.expect("PostgreSQL reachable at TEST_DATABASE_URL"))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_problems() {
    let config = ServeConfig { max_body_bytes: 4096, ..Default::default() };
    let s = Server::start(config, None).await;
    let admin = s.key(Role::Admin, None, None).await;
    let raw = |method: &str, uri: &str, content_type: &str, body: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {admin}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    assert_eq!(
        s.send(raw("POST", "/v1/datanets", "application/json", "{\"name\":")).await.body["code"],
        "invalid_json"
    );
    assert_eq!(
        s.send(raw("POST", "/v1/datanets", "application/json", "{\"nme\":\"x\"}")).await.body["code"],
        "invalid_json"
    );
    assert_eq!(s.send(raw("POST", "/v1/datanets", "text/plain", "{}")).await.body["code"], "unsupported_media_type");
    let big = format!("{{\"name\":\"{}\"}}", "a".repeat(10_000));
    assert_eq!(
        s.send(raw("POST", "/v1/datanets", "application/json", &big)).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(s.call("GET", "/v1/nothing-here", None, None).await.body["code"], "not_found");
    assert_eq!(s.call("DELETE", "/v1/datanets", None, None).await.body["code"], "method_not_allowed");
    assert_eq!(s.call("GET", "/v1/datanets?limit=0", None, None).await.body["code"], "invalid_request");
    assert_eq!(s.call("GET", "/v1/datanets?limit=x", None, None).await.body["code"], "invalid_request");
    assert_eq!(s.call("GET", "/v1/epochs/notanumber", None, None).await.body["code"], "invalid_request");
    assert_eq!(s.call("GET", "/v1/earnings/0x123", Some(&admin), None).await.body["code"], "invalid_address");
    assert_eq!(s.call("GET", "/v1/receipts/nope", None, None).await.body["code"], "receipt_not_found");
    assert_eq!(s.call("GET", "/v1/epochs/7", None, None).await.status, StatusCode::NOT_FOUND);
    s.call("POST", "/v1/datanets", Some(&admin), Some(json!({"name": "d"}))).await;
    let search = |k: usize| json!({"query": "x", "datanets": ["d"], "k": k});
    assert_eq!(s.call("POST", "/v1/search", None, Some(search(0))).await.body["code"], "invalid_request");
    let bad_jsonl = json!({"documents": [doc("c.jsonl", "{\"_id\":\"1\",\"text\":\"ok\"}\n{\"_id\":2,\"text\":")], "contributor": ALICE});
    let refused = s.call("POST", "/v1/datanets/d/documents", Some(&admin), Some(bad_jsonl)).await;
    assert_eq!(refused.body["code"], "malformed_input");
    assert!(refused.body["detail"].as_str().unwrap().contains("c.jsonl:2"), "{}", refused.body);
    let pdf = json!({"documents": [doc("x.pdf", "%PDF")], "contributor": ALICE});
    assert_eq!(
        s.call("POST", "/v1/datanets/d/documents", Some(&admin), Some(pdf)).await.body["code"],
        "unsupported_input"
    );
    let documents = s.call("GET", "/v1/datanets/d/documents", None, None).await;
    assert_eq!(documents.body["items"], json!([]), "nothing of a refused upload is stored");

    // Multipart: `file` parts named by their file names, fields beside them.
    let boundary = "tributary-test-boundary";
    let part = |disposition: &str, body: &str| {
        format!("--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n{body}\r\n")
    };
    let multipart = [
        part("name=\"contributor\"", ALICE),
        part("name=\"license\"", "CC0-1.0"),
        part("name=\"file\"; filename=\"notes.md\"", "# Notes\n\nDeltas form where rivers slow down."),
        part("name=\"file\"; filename=\"more.txt\"", "Estuaries mix fresh and salt water."),
    ]
    .concat()
        + &format!("--{boundary}--\r\n");
    let upload = Request::post("/v1/datanets/d/documents")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
        .body(Body::from(multipart))
        .unwrap();
    let stored = s.send(upload).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
    assert_eq!(
        (stored.body["contributor"].as_str(), stored.body["report"]["documents_stored"].as_u64()),
        (Some(ALICE), Some(2))
    );
    let listed = s.call("GET", "/v1/datanets/d/documents?limit=1", None, None).await.body;
    assert_eq!(listed["items"][0]["license"], "CC0-1.0");
    let next = format!("/v1/datanets/d/documents?limit=1&cursor={}", listed["next_cursor"].as_str().unwrap());
    let second = s.call("GET", &next, None, None).await.body;
    assert_eq!((second["items"].as_array().unwrap().len(), second.get("next_cursor")), (1, None));
    assert_ne!(second["items"][0]["id"], listed["items"][0]["id"]);

    // Rate limit: a burst of 10, then 429 with Retry-After.
    let slow = s.key(Role::Reader, None, Some(1)).await;
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(s.call("GET", "/v1/epochs", Some(&slow), None).await);
    }
    assert!(statuses[..10].iter().all(|r| r.status == StatusCode::OK));
    let limited = &statuses[10];
    assert_eq!(limited.body["code"], "rate_limited");
    assert!(limited.headers.get(header::RETRY_AFTER).unwrap().to_str().unwrap().parse::<u64>().unwrap() >= 1);

    // Operations.
    assert_eq!(s.call("GET", "/healthz", None, None).await.status, StatusCode::OK);
    assert_eq!(s.call("GET", "/readyz", None, None).await.status, StatusCode::OK);
    // Invented methods are one `other` series, not one series each (issue #24, defect 5).
    for method in ["BREW", "PROPFIND", "X-1"] {
        assert_eq!(s.call(method, "/v1/epochs", None, None).await.status, StatusCode::METHOD_NOT_ALLOWED);
    }
    let metrics = s.call("GET", "/metrics", None, None).await.body;
    assert!(!metrics.as_str().unwrap().contains("BREW"), "{metrics}");
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("tributary_http_requests_total{method=\"other\",route=\"/v1/epochs\",status=\"405\"} 3"),
        "{metrics}"
    );
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("tributary_http_requests_total{method=\"GET\",route=\"/v1/epochs\",status=\"429\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("tributary_rate_limited_total 1"), "{metrics}");
    let docs = s.call("GET", "/docs/", None, None).await;
    assert_eq!(docs.status, StatusCode::OK);
    let spec = s.call("GET", "/openapi.json", None, None).await;
    assert_eq!(spec.body["info"]["title"], "Tributary");
}

/// The committed spec is what the code generates.
#[test]
fn openapi_spec_is_committed() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = http::openapi_json().unwrap();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `cargo run -p tributary -- openapi > openapi/openapi.json` and commit it"
    );
    // Every operation documents its problem responses, and every code is listed.
    let spec: Value = serde_json::from_str(&generated).unwrap();
    let mut operations = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            if path.starts_with("/v1/") {
                let problem = &operation["responses"]["400"]["content"]["application/problem+json"];
                assert!(problem.is_object(), "{method} {path} does not document its errors");
            }
        }
    }
    assert!(operations >= 35, "{operations} operations");
}

/// Every page file in `web/` is embedded and served, with the strict policy; nothing else is.
#[tokio::test]
async fn the_web_app_is_embedded_and_served_under_its_policy() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| [".html", ".css", ".js"].iter().any(|ext| n.ends_with(ext)))
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = http::web::asset_names().iter().map(|n| n.to_string()).collect();
    embedded.sort();
    assert_eq!(on_disk, embedded, "web/ and the embedded list in api/src/http/web.rs differ");

    let s = Server::start(ServeConfig::default(), None).await;
    let page = s.call("GET", "/", None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers[header::CONTENT_SECURITY_POLICY], http::web::CONTENT_SECURITY_POLICY);
    assert!(!http::web::CONTENT_SECURITY_POLICY.contains("unsafe"));
    assert!(page.body.as_str().unwrap().contains("/assets/app.js"));
    for name in embedded.iter().filter(|n| *n != "index.html") {
        let asset = s.call("GET", &format!("/assets/{name}"), None, None).await;
        assert_eq!(asset.status, StatusCode::OK, "{name}");
        assert_eq!(asset.headers[header::CONTENT_SECURITY_POLICY], http::web::CONTENT_SECURITY_POLICY);
        assert_eq!(asset.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let etag = asset.headers[header::ETAG].to_str().unwrap().to_string();
        let request = Request::get(format!("/assets/{name}")).header(header::IF_NONE_MATCH, etag).body(Body::empty());
        assert_eq!(s.send(request.unwrap()).await.status, StatusCode::NOT_MODIFIED, "{name}");
    }
    assert_eq!(
        s.call("GET", "/assets/app.js", None, None).await.headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    for missing in ["/assets/nosuch.js", "/assets/..%2FCargo.toml", "/assets/index.html"] {
        assert_eq!(s.call("GET", missing, None, None).await.body["code"], "not_found", "{missing}");
    }
    // The caller's identity, as the pages check a key with it.
    let reader = s.key(Role::Reader, Some(BOB), None).await;
    let me = s.call("GET", "/v1/me", Some(&reader), None).await.body;
    assert_eq!((me["role"].as_str(), me["address"].as_str()), (Some("reader"), Some(BOB)));
    assert_eq!(s.call("GET", "/v1/me", None, None).await.body["role"], Value::Null);
    let bad = s.call("GET", "/v1/me", Some("trib_not_a_key"), None).await;
    assert_eq!(bad.body["code"], "invalid_api_key");
}

/// A real listener on 127.0.0.1:0 serving the same app.
pub async fn listen(server: &Server) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = http::app(server.state.clone());
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    url
}

/// Server-sent events as (event, data) pairs.
pub fn sse_events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .filter_map(|block| {
            let mut event = String::from("message");
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
                }
            }
            (!data.is_empty()).then(|| (event, data.join("\n")))
        })
        .collect()
}

/// Answers as JSON and as a stream, their receipts, and the OpenAI-shaped endpoint; a second
/// answer while the only generation slot is busy is refused at once.
#[tokio::test(flavor = "multi_thread")]
async fn answers_stream_and_pay() {
    let config = ServeConfig { max_generating: 1, ..Default::default() };
    let s = Server::start(config, None).await;
    let admin = s.key(Role::Admin, None, None).await;
    let alice = s.key(Role::Owner, Some(ALICE), None).await;
    s.call("POST", "/v1/datanets", Some(&alice), Some(json!({"name": "rivers"}))).await;
    s.call("POST", "/v1/datanets", Some(&alice), Some(json!({"name": "secret", "visibility": "private"}))).await;
    let up = json!({"documents": [doc("missouri.txt", RIVERS)], "contributor": BOB});
    assert_eq!(
        s.call("POST", "/v1/datanets/rivers/documents", Some(&admin), Some(up.clone())).await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.call("POST", &format!("/v1/datanets/{SECRET}/documents"), Some(&admin), Some(up)).await.status,
        StatusCode::OK
    );

    let question =
        json!({"question": "What is the longest river in North America?", "datanets": ["rivers"], "max_tokens": 48});
    // The payer's key: its address pays. Unfunded, it is refused before anything is generated,
    // with the quote and its balance.
    let payer = s.key(Role::Reader, Some(PAYER), None).await;
    let quote = s.call("POST", "/v1/quotes", Some(&payer), Some(json!({"datanets": ["rivers", "rivers"]}))).await;
    assert_eq!((quote.body["billing"].as_str(), quote.body["available"].as_str()), (Some("payer"), Some("0")));
    let price: u128 = quote.body["fee"].as_str().unwrap().parse().unwrap();
    assert_eq!(price, 1_000_000_000_000_000, "a Datanet named twice is priced once");
    // A Datanet named 100,000 times is refused outright (at most 16 names; a repeat is charged once).
    let mut inflated = question.clone();
    inflated["datanets"] = json!(vec!["rivers"; 100_000]);
    let refused = s.call("POST", "/v1/answers", Some(&payer), Some(inflated)).await;
    assert_eq!((refused.status, refused.body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    // Every list and the text of a search or a question are bounded (issue #24, defect 1):
    // refused before any name is looked up or anything searched.
    let search = json!({"query": "river", "datanets": ["rivers"]});
    let bounds = [
        ("datanets", json!(vec!["rivers"; 17])),
        ("contributors", json!(vec![BOB; 65])),
        ("query", json!("r".repeat(8193))),
    ];
    for (field, value) in bounds {
        let mut over = search.clone();
        over[field] = value;
        let refused = s.call("POST", "/v1/search", None, Some(over)).await;
        assert_eq!(
            (refused.status, refused.body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{field}"
        );
    }
    let mut at_bounds = search.clone();
    at_bounds["datanets"] = json!(vec!["rivers"; 16]);
    at_bounds["contributors"] = json!(vec![BOB; 64]);
    let found = s.call("POST", "/v1/search", None, Some(at_bounds)).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    let mut long = question.clone();
    long["question"] = json!("r".repeat(8193));
    let refused = s.call("POST", "/v1/answers", Some(&payer), Some(long)).await;
    assert_eq!((refused.status, refused.body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    let short = s.call("POST", "/v1/answers", Some(&payer), Some(question.clone())).await;
    assert_eq!(
        (short.status.as_u16(), short.body["code"].as_str()),
        (402, Some("insufficient_balance")),
        "{}",
        short.body
    );
    assert_eq!((short.body["quote"].as_str(), short.body["balance"].as_str()), (Some("1000000000000000"), Some("0")));
    let funds = json!({"amount": (price * 10).to_string(), "key": "payer-1"});
    let uri = format!("/v1/accounts/{PAYER}/grants");
    assert_eq!(s.call("POST", &uri, Some(&payer), Some(funds.clone())).await.status, StatusCode::FORBIDDEN);
    assert_eq!(s.call("POST", &uri, Some(&admin), Some(funds.clone())).await.status, StatusCode::CREATED);
    assert_eq!(s.call("POST", &uri, Some(&admin), Some(funds)).await.status, StatusCode::CREATED, "the same key");
    let uri = format!("/v1/accounts/{ALICE}/grants");
    s.call("POST", &uri, Some(&admin), Some(json!({"amount": (price * 10).to_string()}))).await;
    let answered = s.call("POST", "/v1/answers", Some(&payer), Some(question.clone())).await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.body);
    let receipt = &answered.body["receipt"];
    assert!(answered.body["answer"]["citations"].as_array().is_some_and(|c| !c.is_empty()), "{}", answered.body);
    let fee: u128 = receipt["fee"].as_str().unwrap().parse().unwrap();
    let credited: u128 = receipt["credits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["amount"].as_str().unwrap().parse::<u128>().unwrap())
        .sum();
    assert!(fee == price && credited == fee, "{receipt}");
    assert_eq!(
        (receipt["payment"]["paid_by"].as_str(), receipt["payment"]["payer"].as_str()),
        (Some("payer"), Some(PAYER))
    );
    assert!(receipt["credits"].as_array().unwrap().iter().any(|c| c["account"] == BOB && c["role"] == "contributor"));
    // Each citation points into its document: the span the document view marks holds the passage.
    let citation = &answered.body["answer"]["citations"][0];
    let passage = &answered.body["passages"][citation["n"].as_u64().unwrap() as usize - 1];
    assert_eq!(passage["chunk_id"], citation["chunk_id"]);
    let uri = format!("/v1/datanets/rivers/documents/{}", passage["document_id"]);
    let document = s.call("GET", &uri, None, None).await;
    assert_eq!(document.status, StatusCode::OK, "{}", document.body);
    let (start, end) = (citation["start"].as_u64().unwrap() as usize, citation["end"].as_u64().unwrap() as usize);
    assert_eq!(&document.body["text"].as_str().unwrap()[start..end], passage["text"].as_str().unwrap());
    let spans = document.body["spans"].as_array().unwrap();
    assert!(spans.iter().any(|sp| sp["chunk_id"] == citation["chunk_id"] && sp["start"] == start && sp["end"] == end));
    assert_eq!(s.call("GET", "/v1/datanets/rivers/documents/999999", None, None).await.body["code"], "not_found");
    // Without payout contracts nothing is claimable, and the answer says why.
    let claimable = s.call("GET", &format!("/v1/claims/{BOB}"), None, None).await.body;
    assert_eq!((&claimable["contracts"], &claimable["claimable"]), (&json!(false), &json!("0")), "{claimable}");
    let account = s.call("GET", &format!("/v1/accounts/{PAYER}"), Some(&payer), None).await.body;
    assert_eq!(account["balance"].as_str().unwrap().parse::<u128>().unwrap(), price * 9, "granted once: {account}");
    assert_eq!((account["spent"].as_str(), account["held"].as_str()), (Some("1000000000000000"), Some("0")));
    assert_eq!(s.call("GET", &format!("/v1/accounts/{PAYER}"), Some(&alice), None).await.status, StatusCode::FORBIDDEN);
    // Anonymous, on a server that answers unpaid questions for free: nobody is credited.
    let free = s.call("POST", "/v1/answers", None, Some(question.clone())).await;
    assert_eq!(free.status, StatusCode::OK, "{}", free.body);
    assert_eq!(
        (free.body["receipt"]["fee"].as_str(), free.body["receipt"]["payment"]["paid_by"].as_str()),
        (Some("0"), Some("unpaid"))
    );
    assert!(free.body["receipt"]["credits"].as_array().unwrap().is_empty());
    let fetched = s.call("GET", &format!("/v1/receipts/{}", receipt["id"].as_str().unwrap()), None, None).await;
    assert_eq!(&fetched.body, receipt);

    // A receipt over a private Datanet is invisible to outsiders.
    let private = json!({"question": "How long is the Missouri River?", "datanets": [SECRET], "max_tokens": 24});
    assert_eq!(s.call("POST", "/v1/answers", None, Some(private.clone())).await.status, StatusCode::NOT_FOUND);
    let owned = s.call("POST", "/v1/answers", Some(&alice), Some(private)).await;
    assert_eq!(owned.status, StatusCode::OK, "{}", owned.body);
    let private_id = owned.body["receipt"]["id"].as_str().unwrap().to_string();
    assert!(owned.body["receipt"]["question"].is_null(), "a private Datanet's question text is not kept");
    let hidden = s.call("GET", &format!("/v1/receipts/{private_id}"), None, None).await;
    assert_eq!(hidden.body["code"], "receipt_not_found");
    assert_eq!(s.call("GET", &format!("/v1/receipts/{private_id}"), Some(&alice), None).await.status, StatusCode::OK);

    // The stream: tokens, then the answer, then the receipt; meanwhile the slot is taken.
    let url = listen(&s).await;
    let client = reqwest::Client::new();
    let mut long = question.clone();
    long["max_tokens"] = json!(200);
    let streaming = client
        .post(format!("{url}/v1/answers"))
        .header("accept", "text/event-stream")
        .bearer_auth(&payer)
        .json(&long)
        .send()
        .await
        .unwrap();
    assert_eq!(streaming.status(), 200);
    assert!(streaming.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let busy = client.post(format!("{url}/v1/answers")).json(&question).send().await.unwrap();
    assert_eq!(busy.status(), 503);
    assert!(busy.headers().contains_key("retry-after"));
    let busy: Value = busy.json().await.unwrap();
    assert_eq!(busy["code"], "overloaded");
    let events = sse_events(&streaming.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    // The passages offered come first, so a client can show what each marker cites as it streams.
    assert_eq!(names[0], "sources", "{names:?}");
    let tokens = names[1..].iter().take_while(|n| **n == "token").count();
    assert!(tokens > 0, "{names:?}");
    assert_eq!(&names[1 + tokens..], ["answer", "receipt"], "{names:?}");
    let text: String = events[1..=tokens]
        .iter()
        .map(|(_, d)| serde_json::from_str::<Value>(d).unwrap()["text"].as_str().unwrap().to_string())
        .collect();
    let answer: Value = serde_json::from_str(&events[1 + tokens].1).unwrap();
    assert_eq!(answer["answer"].as_str().unwrap(), text.trim(), "the streamed text is the answer");
    let streamed_receipt: Value = serde_json::from_str(&events[2 + tokens].1).unwrap();
    assert_eq!(streamed_receipt["answer"], answer["answer"]);
    let sources: Value = serde_json::from_str(&events[0].1).unwrap();
    let offered = sources["passages"].as_array().unwrap();
    assert_eq!(offered.len(), answer["sources_offered"].as_u64().unwrap() as usize);
    let retrieved: Vec<&Value> =
        streamed_receipt["retrieved"].as_array().unwrap().iter().map(|r| &r["chunk_id"]).collect();
    assert_eq!(offered.iter().map(|p| &p["chunk_id"]).collect::<Vec<_>>(), retrieved);
    for citation in answer["citations"].as_array().unwrap() {
        let passage = &offered[citation["n"].as_u64().unwrap() as usize - 1];
        assert_eq!(passage["chunk_id"], citation["chunk_id"], "citation n is passages[n - 1]");
    }

    // OpenAI shape, JSON.
    let chat = json!({
        "model": "base", "messages": [{"role": "user", "content": "What is the longest river in North America?"}],
        "datanets": ["rivers"], "max_tokens": 48
    });
    let completion = s.call("POST", "/v1/chat/completions", Some(&payer), Some(chat)).await;
    assert_eq!(completion.status, StatusCode::OK, "{}", completion.body);
    assert_eq!(completion.body["usage"]["cost"], completion.body["tributary"]["fee"]);
    assert_eq!(
        (completion.body["usage"]["cost"].as_str(), completion.body["usage"]["paid_by"].as_str()),
        (Some("1000000000000000"), Some("payer"))
    );
    assert_eq!(completion.body["object"], "chat.completion");
    assert_eq!(completion.body["choices"][0]["message"]["role"], "assistant");
    let receipt_id = completion.body["tributary"]["receipt_id"].as_str().unwrap();
    assert_eq!(s.call("GET", &format!("/v1/receipts/{receipt_id}"), None, None).await.status, StatusCode::OK);
    let models = s.call("GET", "/v1/models", None, None).await;
    assert_eq!(models.body["data"][0]["id"], "base");
    let unknown = json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}], "datanets": ["rivers"]});
    assert_eq!(s.call("POST", "/v1/chat/completions", None, Some(unknown)).await.status, StatusCode::NOT_FOUND);

    // Bob's earnings, an entry per page: every credit once, in order.
    let mut uri = format!("/v1/earnings/{BOB}?limit=1");
    let mut ids = Vec::new();
    loop {
        let page = s.call("GET", &uri, Some(&admin), None).await.body;
        ids.extend(page["entries"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/v1/earnings/{BOB}?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    let all = s.call("GET", &format!("/v1/earnings/{BOB}?limit=1000"), Some(&admin), None).await.body;
    let every: Vec<i64> = all["entries"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.len() >= 3 && ids == every, "{ids:?} vs {every:?}");

    // Issue #24, defect 8: bob's passages in alice's private Datanet are cited (alice may read
    // it); bob may not read it, so his own earnings show the money but nothing of the Datanet.
    let private = json!({"question": "How long is the Missouri River?", "datanets": [SECRET], "max_tokens": 16});
    let asked = s.call("POST", "/v1/answers", Some(&alice), Some(private)).await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
    let bob = s.key(Role::Contributor, Some(BOB), None).await;
    let seen_by = |key: String| {
        let s = &s;
        async move { s.call("GET", &format!("/v1/earnings/{BOB}?limit=1000"), Some(&key), None).await.body }
    };
    let (own, full) = (seen_by(bob).await, seen_by(admin.clone()).await);
    let secret: Vec<&Value> = full["entries"].as_array().unwrap().iter().filter(|e| e["datanet"] == SECRET).collect();
    assert!(!secret.is_empty() && secret.iter().any(|e| !e["sentences"].as_array().unwrap().is_empty()), "{full}");
    assert!(!own.to_string().contains("secret"), "{own}");
    let redacted: Vec<&Value> = own["entries"].as_array().unwrap().iter().filter(|e| e["datanet"].is_null()).collect();
    assert_eq!(redacted.len(), secret.len(), "{own}");
    for e in redacted {
        assert_eq!(
            (&e["sentences"], &e["chunk_id"], &e["receipt_id"]),
            (&json!([]), &Value::Null, &Value::Null),
            "{own}"
        );
    }
    assert_eq!(
        (own["total"].as_str(), own["entries"].as_array().map(Vec::len)),
        (full["total"].as_str(), full["entries"].as_array().map(Vec::len))
    );
    let hidden: Vec<&Value> =
        own["by_datanet"].as_array().unwrap().iter().filter(|d| d["datanet"] == "(not readable)").collect();
    let private_total = full["by_datanet"].as_array().unwrap().iter().find(|d| d["datanet"] == SECRET).unwrap();
    assert_eq!(hidden.len(), 1, "{own}");
    assert_eq!(hidden[0]["amount"], private_total["amount"]);

    let metrics = s.call("GET", "/metrics", None, None).await.body;
    let metrics = metrics.as_str().unwrap();
    assert!(metrics.contains("tributary_answers_total 6"), "{metrics}");
    // The same question came five times: embedded once per distinct text and caller, then
    // cached (two more misses: the search at the bounds, alice's private question).
    let counter = |name: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(counter("tributary_query_cache_hits") >= 2, "{metrics}");
    assert!(counter("tributary_query_cache_misses") <= 5, "{metrics}");
    let report = s.call("GET", "/v1/admin/verify", Some(&admin), None).await;
    assert_eq!(report.body["problems"], json!([]), "{}", report.body);

    // A server that refuses unpaid answers: 402 before anything is generated.
    let strict = Server::start(ServeConfig { unpaid_answers: Unpaid::Refuse, ..Default::default() }, None).await;
    let owner = strict.key(Role::Owner, Some(ALICE), None).await;
    strict.call("POST", "/v1/datanets", Some(&owner), Some(json!({"name": "rivers"}))).await;
    let refused = strict.call("POST", "/v1/answers", None, Some(question)).await;
    assert_eq!(
        (refused.status.as_u16(), refused.body["code"].as_str()),
        (402, Some("payer_required")),
        "{}",
        refused.body
    );
    let quote = strict.call("POST", "/v1/quotes", None, Some(json!({"datanets": ["rivers"]}))).await;
    assert_eq!(quote.body["billing"], "refused");
}

/// What a row of the matrix expects of one caller.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Any 2xx.
    Ok,
    Status(u16),
    /// Not exercised (success would be slow: generation).
    Skip,
}

/// Every protected operation against every kind of caller: anonymous, a reader without an
/// address, a contributor, an owner of other Datanets, the Datanet's owner, an admin.
#[tokio::test(flavor = "multi_thread")]
async fn refusal_matrix() {
    use Expect::{Ok as O, Skip, Status as S};
    let s = Server::start(ServeConfig::default(), None).await;
    let Cast { admin, alice, bob, carol, reader, dave } = Cast::new(&s).await;
    s.call("POST", "/v1/datanets", Some(&alice), Some(json!({"name": "rivers"}))).await;
    s.call("POST", "/v1/datanets", Some(&alice), Some(json!({"name": "secret", "visibility": "private"}))).await;
    let up = json!({"documents": [doc("r.txt", RIVERS)], "contributor": ALICE});
    s.call("POST", &format!("/v1/datanets/{SECRET}/documents"), Some(&admin), Some(up)).await;
    s.call("POST", &format!("/v1/datanets/{SECRET}/members"), Some(&alice), Some(json!({"address": DAVE}))).await;
    s.call("POST", "/v1/datanets/rivers/access-requests", Some(&dave), Some(json!({}))).await;
    s.call("POST", &format!("/v1/datanets/{SECRET}/members"), Some(&alice), Some(json!({"address": BOB}))).await;
    s.call("DELETE", &format!("/v1/datanets/{SECRET}/members/{BOB}"), Some(&alice), None).await;
    let dave_out = s.key(Role::Reader, Some("0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"), None).await;
    s.call("POST", &format!("/v1/datanets/{SECRET}/access-requests"), Some(&dave_out), Some(json!({"message": "x"})))
        .await;
    let request_id =
        s.call("GET", &format!("/v1/datanets/{SECRET}/access-requests"), Some(&alice), None).await.body["items"][0]["id"].clone();
    let policy = s.call("GET", "/v1/pricing", None, None).await.body;

    let callers: [Option<&str>; 6] = [None, Some(&reader), Some(&carol), Some(&bob), Some(&alice), Some(&admin)];
    let docs = json!({"documents": [doc("m.txt", "Meltwater feeds the river in spring.")]});
    let bob_docs = json!({"documents": [doc("b.txt", "Bob's note on oxbow lakes.")]});
    let rows: Vec<(&str, String, Option<Value>, [Expect; 6])> = vec![
        (
            "PATCH",
            "/v1/datanets/rivers".into(),
            Some(json!({"description": "d"})),
            [S(401), S(403), S(403), S(403), O, O],
        ),
        (
            "PATCH",
            format!("/v1/datanets/{SECRET}"),
            Some(json!({"description": "d"})),
            [S(401), S(403), S(403), S(404), O, O],
        ),
        ("GET", format!("/v1/datanets/{SECRET}"), None, [S(404), S(404), S(404), S(404), O, O]),
        ("GET", format!("/v1/datanets/{SECRET}/documents"), None, [S(404), S(404), S(404), S(404), O, O]),
        ("GET", format!("/v1/datanets/{SECRET}/pricing"), None, [S(404), S(404), S(404), S(404), O, O]),
        ("GET", format!("/v1/datanets/{SECRET}/flags"), None, [S(404), S(404), S(404), S(404), O, O]),
        ("GET", "/v1/datanets/rivers/members".into(), None, [S(401), S(403), S(403), S(403), O, O]),
        ("GET", format!("/v1/datanets/{SECRET}/members"), None, [S(401), S(403), S(403), S(404), O, O]),
        (
            "POST",
            "/v1/datanets/rivers/members".into(),
            Some(json!({"address": DAVE})),
            [S(401), S(403), S(403), S(403), O, O],
        ),
        ("DELETE", format!("/v1/datanets/rivers/members/{DAVE}"), None, [S(401), S(403), S(403), S(403), O, S(404)]),
        ("GET", "/v1/datanets/rivers/access-requests".into(), None, [S(401), S(403), S(403), S(403), O, O]),
        (
            "POST",
            format!("/v1/datanets/{SECRET}/access-requests/{request_id}"),
            Some(json!({"approve": false})),
            [S(401), S(403), S(403), S(404), O, S(409)],
        ),
        ("POST", "/v1/datanets/rivers/documents".into(), Some(docs.clone()), [S(401), S(403), O, O, O, S(422)]),
        ("POST", format!("/v1/datanets/{SECRET}/documents"), Some(docs), [S(404), S(404), S(404), S(404), O, S(422)]),
        ("POST", "/v1/datanets/rivers/documents".into(), Some(bob_docs), [S(401), S(403), O, O, O, S(422)]),
        (
            "POST",
            "/v1/search".into(),
            Some(json!({"query": "river", "datanets": [SECRET]})),
            [S(404), S(404), S(404), S(404), O, O],
        ),
        (
            "POST",
            "/v1/answers".into(),
            Some(json!({"question": "q?", "datanets": [SECRET]})),
            [S(404), S(404), S(404), S(404), Skip, Skip],
        ),
        (
            "POST",
            "/v1/chat/completions".into(),
            Some(json!({"model": "base", "messages": [{"role": "user", "content": "q?"}], "datanets": [SECRET]})),
            [S(404), S(404), S(404), S(404), Skip, Skip],
        ),
        ("GET", format!("/v1/earnings/{CAROL}"), None, [S(401), S(403), O, S(403), S(403), O]),
        (
            "POST",
            "/v1/claims".into(),
            Some(json!({"address": CAROL})),
            [S(401), S(403), S(503), S(403), S(403), S(503)],
        ),
        ("POST", "/v1/admin/settle".into(), None, [S(401), S(403), S(403), S(403), S(403), O]),
        ("PUT", "/v1/pricing".into(), Some(policy), [S(401), S(403), S(403), S(403), S(403), O]),
        (
            "PUT",
            "/v1/datanets/rivers/pricing".into(),
            Some(json!({"fee": "7", "weighting": null})),
            [S(401), S(403), S(403), S(403), O, O],
        ),
        (
            "PUT",
            "/v1/adapters/x/pricing".into(),
            Some(json!({"fee": "1", "owner": null})),
            [S(401), S(403), S(403), S(403), S(403), O],
        ),
        (
            "POST",
            "/v1/adapters".into(),
            Some(json!({"id": "x", "path": "/nonexistent"})),
            [S(401), S(403), S(403), S(403), S(403), S(422)],
        ),
        ("DELETE", "/v1/adapters/x".into(), None, [S(401), S(403), S(403), S(403), S(403), S(404)]),
        (
            "POST",
            "/v1/datanets/rivers/flags".into(),
            Some(json!({"contributor": CAROL, "reason": "spam"})),
            [S(401), S(403), S(403), S(403), O, O],
        ),
        (
            "POST",
            "/v1/datanets/rivers/flags/1/lift".into(),
            Some(json!({"reason": "ok"})),
            [S(401), S(403), S(403), S(403), O, S(409)],
        ),
        (
            "POST",
            "/v1/datanets/rivers/access-requests".into(),
            Some(json!({})),
            [S(401), S(403), S(409), S(409), S(409), S(403)],
        ),
        // Chain operations: refused before any chain is needed; with rights, 503 (none here).
        ("POST", "/v1/admin/chain/deploy".into(), Some(json!({})), [S(401), S(403), S(403), S(403), S(403), S(503)]),
        ("POST", "/v1/admin/chain/push".into(), Some(json!({})), [S(401), S(403), S(403), S(403), S(403), S(503)]),
        (
            "POST",
            "/v1/admin/chain/push".into(),
            Some(json!({"batch_size": 0})),
            [S(401), S(403), S(403), S(403), S(403), S(400)],
        ),
        ("POST", "/v1/datanets/rivers/registry".into(), None, [S(401), S(403), S(403), S(403), S(503), S(503)]),
        ("POST", format!("/v1/datanets/{SECRET}/registry"), None, [S(401), S(403), S(403), S(404), S(503), S(503)]),
        (
            "GET",
            format!("/v1/datanets/{SECRET}/registry/chunks/{}", "0".repeat(64)),
            None,
            [S(404), S(404), S(404), S(404), S(503), S(503)],
        ),
        ("GET", "/v1/chain".into(), None, [O, O, O, O, O, O]),
        ("GET", "/v1/admin/verify".into(), None, [S(401), S(403), S(403), S(403), S(403), O]),
        (
            "POST",
            format!("/v1/admin/datanets/{SECRET}/verify"),
            Some(json!({})),
            [S(401), S(403), S(403), S(403), S(403), O],
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, body, expected) in &rows {
        for (caller, expect) in callers.iter().zip(expected) {
            let got = match expect {
                Expect::Skip => continue,
                _ => s.call(method, path, *caller, body.clone()).await,
            };
            let ok = match expect {
                Expect::Ok => got.status.is_success(),
                Expect::Status(code) => got.status.as_u16() == *code,
                Expect::Skip => true,
            };
            if !ok {
                let who = ["anonymous", "reader", "contributor", "other owner", "owner", "admin"]
                    [callers.iter().position(|c| c == caller).unwrap()];
                failures
                    .push(format!("{method} {path} as {who}: expected {expect:?}, got {} {}", got.status, got.body));
            }
        }
    }
    assert!(failures.is_empty(), "{} cells differ:\n{}", failures.len(), failures.join("\n"));
}

/// Issue #24, defect 17, on a real PostgreSQL whose names sort under a locale collation (ICU
/// English with punctuation shifted: `-` and `_` ignored, as glibc's en_US.UTF-8 does): paging
/// the Datanets one at a time
/// returns each once (`a-c` was skipped when pages followed the database's order).
#[tokio::test(flavor = "multi_thread")]
async fn pages_skip_nothing_on_a_locale_collated_postgres() {
    let url = fresh_pg_schema("coll").await.expect("PostgreSQL reachable at TEST_DATABASE_URL");
    // The schema as the server makes it, then the column collated as a production database's
    // default would, then the server again (its connections' plans predate the change).
    drop(Server::start(ServeConfig::default(), Some(url.clone())).await);
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query("CREATE COLLATION en_shifted (provider = icu, locale = 'en-u-ka-shifted')")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE datanets ALTER COLUMN name TYPE TEXT COLLATE en_shifted").execute(&pool).await.unwrap();
    let s = Server::start(ServeConfig::default(), Some(url.clone())).await;
    let admin = s.key(Role::Admin, None, None).await;
    for name in ["ab", "a-c", "b"] {
        let created = s.call("POST", "/v1/datanets", Some(&admin), Some(json!({"name": name}))).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    let mut uri = "/v1/datanets?limit=1".to_string();
    let mut names = Vec::new();
    loop {
        let page = s.call("GET", &uri, None, None).await.body;
        names.extend(
            page["items"]
                .as_array()
                .unwrap_or_else(|| panic!("{uri}: {page}"))
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/v1/datanets?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(names, ["a-c", "ab", "b"]);
}

/// Issue #24, defect 7: requests with well-formed keys that do not resolve spend the client
/// network's anonymous bucket and, once it is empty, get 429 before any key lookup; IPv6
/// clients are limited per /64; the limiter's memory is bounded and its buckets survive while
/// in use.
#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_come_before_key_lookups_and_stay_bounded() {
    use std::net::IpAddr;
    use tributary::http::rate_limit::{GENERATION, RateLimiter, client_bucket};

    let s = Server::start(ServeConfig { anonymous_rate_per_minute: 10, ..Default::default() }, None).await;
    let real = s.key(Role::Reader, None, None).await;
    let mut unknown = real.clone();
    let last = if unknown.ends_with('a') { "b" } else { "a" };
    unknown.replace_range(unknown.len() - 1.., last);
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(s.call("GET", "/v1/epochs", Some(&unknown), None).await.status);
    }
    assert!(statuses[..10].iter().all(|s| *s == StatusCode::UNAUTHORIZED), "{statuses:?}");
    assert_eq!(statuses[10..], [StatusCode::TOO_MANY_REQUESTS; 2], "{statuses:?}");

    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(client_bucket(a), client_bucket(b));
    assert_ne!(client_bucket(a), client_bucket(c));
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    assert_eq!(client_bucket(mapped), client_bucket("192.0.2.7".parse().unwrap()));

    // Memory: two generations at most, however many networks come; a bucket in use (an
    // exhausted one here) is carried over, not reset to a full burst.
    let limiter = RateLimiter::new();
    while limiter.check("busy", 60).is_ok() {}
    for i in 0..(GENERATION * 5 / 2) {
        let _ = limiter.check(&format!("ip:{i}"), 60);
        if i % 1000 == 0 {
            assert!(limiter.check("busy", 60).is_err(), "the busy bucket was forgotten at {i}");
        }
    }
    assert!(limiter.len() <= 2 * GENERATION, "{}", limiter.len());
}

/// A stand-in engine's routes on 127.0.0.1:0; its OpenAI base URL.
async fn serve_engine(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn event_stream(body: Body) -> axum::response::Response {
    axum::response::Response::builder().header(header::CONTENT_TYPE, "text/event-stream").body(body).unwrap()
}

/// An OpenAI-compatible engine that never finishes: a token every 50 ms (a stand-in, inside this
/// test only, for a stuck vLLM, which cannot be installed here).
async fn endless_engine() -> String {
    async fn completions() -> axum::response::Response {
        let tokens = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let delta = json!({"choices": [{"delta": {"content": " and more"}, "finish_reason": null}]});
            Some((Ok::<_, std::io::Error>(format!("data: {delta}\n\n").into_bytes()), ()))
        });
        event_stream(Body::from_stream(tokens))
    }
    serve_engine(axum::Router::new().route("/v1/chat/completions", axum::routing::post(completions))).await
}

/// A streamed chat completion's whole body, over real HTTP at `url`.
async fn stream_completion(url: &str, key: &str, body: &Value) -> String {
    let reply = reqwest::Client::new().post(format!("{url}/v1/chat/completions")).bearer_auth(key).json(body).send();
    reply.await.unwrap().text().await.unwrap()
}

/// An OpenAI-compatible engine that always states a length the passages do not hold (a
/// stand-in, inside this test only, for a remote engine that gets a fact wrong).
async fn wrong_fact_engine() -> String {
    async fn completions() -> axum::response::Response {
        let mut text = String::new();
        for piece in ["The Missouri River is ", "4,100 km long [1]."] {
            let delta = json!({"choices": [{"delta": {"content": piece}, "finish_reason": null}]});
            text.push_str(&format!("data: {delta}\n\n"));
        }
        let last = json!({"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 40, "completion_tokens": 9}});
        text.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
        event_stream(Body::from(text))
    }
    serve_engine(axum::Router::new().route("/v1/chat/completions", axum::routing::post(completions))).await
}

/// Issue #26: a remote engine's wrong fact is not credited. What it streamed cannot be taken
/// back, so the OpenAI stream follows it with the checked answer; the receipt credits the
/// quoted passage sentence, and the answer keeps the draft.
#[tokio::test]
async fn a_wrong_fact_is_not_credited_and_the_stream_says_what_was_checked() {
    let engine = wrong_fact_engine().await;
    let s = Server::with_engine(ServeConfig::default(), engine, "wrong").await;
    let (_admin, payer) = s.rivers_and_payer().await;
    let url = listen(&s).await;
    let body = json!({"model": "base@rivers", "stream": true,
        "messages": [{"role": "user", "content": "How long is the Missouri River?"}]});
    let text = stream_completion(&url, &payer, &body).await;
    let chunks: Vec<Value> = sse_events(&text)
        .into_iter()
        .filter(|(_, data)| data != "[DONE]")
        .map(|(_, data)| serde_json::from_str(&data).unwrap())
        .collect();
    let content: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect::<Vec<_>>().concat();
    let checked = "It flows 3,767 km from the Rocky Mountains to the Mississippi River near St. Louis [1].";
    assert_eq!(content, format!("The Missouri River is 4,100 km long [1].\n\nChecked against the passages: {checked}"));
    let tributary = &chunks.last().unwrap()["tributary"];
    let sentences = tributary["sentences"].as_array().unwrap();
    assert_eq!(sentences.len(), 1, "{tributary}");
    assert_eq!((sentences[0]["kind"].as_str(), sentences[0]["origin"].as_str()), (Some("quote"), Some("quoted")));
    let credits = tributary["credits"].as_array().unwrap();
    assert!(
        credits.iter().any(|c| c["account"] == BOB && c["role"] == "contributor"),
        "the quoted passage's contributor is credited: {credits:?}"
    );
    // Through /v1/answers: the draft kept, the wrong sentence listed nowhere as credited.
    let answer = json!({"question": "How long is the Missouri River?", "datanets": ["rivers"]});
    let reply = s.call("POST", "/v1/answers", Some(&payer), Some(answer)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let answer = &reply.body["answer"];
    assert_eq!(answer["draft"], "The Missouri River is 4,100 km long [1].");
    assert_eq!(answer["answer"], checked);
    assert_eq!(answer["stats"]["fact_failures"], 1);
    assert!(answer["sentences"].as_array().unwrap().iter().all(|s| !s["text"].as_str().unwrap().contains("4,100")));
}

/// Issue #24, defect 1: a streamed answer keeps the request timeout (the timeout layer only
/// waits for the headers, and a stuck engine streamed for as long as it liked): at the deadline
/// generation stops, the stream ends with a `timeout` error event, and the payer's held fee is
/// back, nothing charged.
#[tokio::test]
async fn a_streamed_answer_ends_at_the_request_timeout() {
    let engine = endless_engine().await;
    let config = ServeConfig { request_timeout_secs: 2, ..Default::default() };
    let s = Server::with_engine(config, engine, "stuck").await;
    let (_admin, payer) = s.rivers_and_payer().await;

    let question = json!({"question": "How long is the Missouri River?", "datanets": ["rivers"], "max_tokens": 2000});
    let request = Request::post("/v1/answers")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "text/event-stream")
        .header(header::AUTHORIZATION, format!("Bearer {payer}"))
        .body(Body::from(question.to_string()))
        .unwrap();
    let started = std::time::Instant::now();
    let reply = tokio::time::timeout(std::time::Duration::from_secs(30), s.send(request))
        .await
        .expect("the stream ends at the request timeout");
    let elapsed = started.elapsed();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let events = sse_events(reply.body.as_str().unwrap());
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert!(names.iter().filter(|n| **n == "token").count() > 3, "it streamed before the deadline: {names:?}");
    let (last, problem) = events.last().unwrap();
    assert_eq!(last, "error", "{names:?}");
    let problem: Value = serde_json::from_str(problem).unwrap();
    assert_eq!((problem["code"].as_str(), problem["status"].as_u64()), (Some("timeout"), Some(504)), "{problem}");
    assert!(elapsed < std::time::Duration::from_secs(10), "{elapsed:?}");
    let account = s.call("GET", &format!("/v1/accounts/{PAYER}"), Some(&payer), None).await.body;
    assert_eq!((account["held"].as_str(), account["spent"].as_str()), (Some("0"), Some("0")), "{account}");
}

/// Issue #22, item 5: what OpenAI clients expect. Earlier turns join the prompt; `n` choices
/// are `n` answers, each charged and receipted; `stream_options.include_usage` adds a usage chunk
/// before `[DONE]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_conversations_choices_and_usage() {
    let s = Server::start(ServeConfig::default(), None).await;
    let (_admin, payer) = s.rivers_and_payer().await;
    async fn spent(s: &Server, payer: String) -> u128 {
        let account = s.call("GET", &format!("/v1/accounts/{PAYER}"), Some(&payer), None).await.body;
        account["spent"].as_str().unwrap().parse::<u128>().unwrap()
    }
    let question = json!({"role": "user", "content": "How long is it?"});
    let single = json!({"model": "base@rivers", "max_tokens": 24, "messages": [question]});
    let alone = s.call("POST", "/v1/chat/completions", Some(&payer), Some(single)).await;
    assert_eq!(alone.status, StatusCode::OK, "{}", alone.body);
    let conversation = json!({"model": "base@rivers", "max_tokens": 24, "messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Tell me about the Missouri River."},
        {"role": "assistant", "content": "It is the longest river in North America [1]."},
        question,
    ]});
    let followed = s.call("POST", "/v1/chat/completions", Some(&payer), Some(conversation)).await;
    assert_eq!(followed.status, StatusCode::OK, "{}", followed.body);
    let prompt_tokens = |r: &Reply| r.body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt_tokens(&followed) > prompt_tokens(&alone) + 15, "the earlier turns are in the prompt");

    let before = spent(&s, payer.clone()).await;
    let two = json!({"model": "base@rivers", "max_tokens": 16, "n": 2, "temperature": 0.8, "seed": 3,
        "messages": [{"role": "user", "content": "How long is the Missouri River?"}]});
    let both = s.call("POST", "/v1/chat/completions", Some(&payer), Some(two)).await;
    assert_eq!(both.status, StatusCode::OK, "{}", both.body);
    let choices = both.body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    let receipts: Vec<&str> = choices.iter().map(|c| c["tributary"]["receipt_id"].as_str().unwrap()).collect();
    assert_ne!(receipts[0], receipts[1], "each choice is an answer of its own");
    assert_eq!(both.body["tributary"]["receipt_id"], receipts[0]);
    let fee: u128 = choices[0]["tributary"]["fee"].as_str().unwrap().parse().unwrap();
    assert_eq!(both.body["usage"]["cost"].as_str().unwrap().parse::<u128>().unwrap(), 2 * fee);
    assert_eq!(spent(&s, payer.clone()).await - before, 2 * fee, "two answers, two fees");
    let five = json!({"model": "base@rivers", "n": 5, "messages": [{"role": "user", "content": "q?"}]});
    let refused = s.call("POST", "/v1/chat/completions", Some(&payer), Some(five)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);

    let url = listen(&s).await;
    let streamed = json!({"model": "base@rivers", "max_tokens": 16, "n": 2, "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "How long is the Missouri River?"}]});
    let body = stream_completion(&url, &payer, &streamed).await;
    let events = sse_events(&body);
    assert_eq!(events.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]), "{usage}");
    let total = usage["usage"]["total_tokens"].as_u64().unwrap();
    for index in 0..2 {
        let mine: Vec<&Value> = chunks.iter().filter(|c| c["choices"][0]["index"] == index).collect();
        let last = mine.last().unwrap();
        assert!(last["choices"][0]["finish_reason"].is_string(), "choice {index}: {last}");
        assert!(last["tributary"]["receipt_id"].is_string(), "choice {index}: {last}");
    }
    assert!(total > 0);
}

/// A follow-up is searched with the user's last two turns before it, never cut itself.
#[test]
fn a_follow_up_is_searched_in_context() {
    use tributary::app::answers::retrieval_query;
    use tributary_generator::ChatMessage;
    let turn = |role: &str, content: &str| ChatMessage { role: role.into(), content: content.into() };
    let history = [
        turn("user", "What about the Nile?"),
        turn("user", "Tell me about the Missouri River."),
        turn("assistant", "It is the longest river in North America [1]."),
        turn("user", "And its source?"),
    ];
    assert_eq!(
        retrieval_query("How long is it?", &history),
        "Tell me about the Missouri River.\nAnd its source?\nHow long is it?"
    );
    assert_eq!(retrieval_query("How long is it?", &[]), "How long is it?");
    let long = "x".repeat(tributary_retriever::MAX_QUERY_CHARS - 10);
    assert_eq!(retrieval_query(&long, &history), long, "earlier turns only where they fit");
}

/// Model Factory over HTTP: a Datanet's owner starts a training job (others cannot), follows
/// it over server-sent events to its end, tries the adapter beside the base, and publishes it
/// (refused when worse than the base unless forced); then questions may name it.
#[tokio::test(flavor = "multi_thread")]
async fn training_jobs_start_stream_try_and_publish() {
    let s = Server::start(ServeConfig::default(), None).await;
    let (admin, payer) = s.rivers_and_payer().await;
    let alice = s.key(Role::Owner, Some(ALICE), None).await;
    let bob = s.key(Role::Owner, Some(BOB), None).await;
    let pairs = json!([
        {"question": "How long is the Missouri River?", "answer": "It flows 3,767 km from the Rocky Mountains to the Mississippi River near St. Louis."},
        {"question": "Where does the Missouri River rise?", "answer": "In the Rocky Mountains"},
        {"question": "What does the Mississippi River drain?", "answer": "Most of the continental United States"}
    ]);
    let job = json!({
        "name": "rivers-lora", "datanet": "rivers", "pairs": pairs, "rank": 2, "targets": ["v_proj"],
        "epochs": 2, "batch_size": 1, "learning_rate": 0.001, "holdout": 0.3
    });
    // Only the Datanet's owner (or an admin) trains on it; settings that train nothing are refused.
    let refused = s.call("POST", "/v1/training", Some(&bob), Some(job.clone())).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let mut zero = job.clone();
    zero["rank"] = json!(0);
    assert_eq!(s.call("POST", "/v1/training", Some(&alice), Some(zero)).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut nothing = job.clone();
    nothing["pairs"] = json!([]);
    assert_eq!(
        s.call("POST", "/v1/training", Some(&alice), Some(nothing)).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let started = s.call("POST", "/v1/training", Some(&alice), Some(job.clone())).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    assert_eq!(started.body["owner"], ALICE);
    let again = s.call("POST", "/v1/training", Some(&admin), Some(job.clone())).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    // Someone else's job does not exist for them.
    assert_eq!(s.call("GET", "/v1/training/rivers-lora", Some(&bob), None).await.status, StatusCode::NOT_FOUND);

    // Followed to its end: the job, a step event per step, then finished.
    let url = listen(&s).await;
    let text = reqwest::Client::new()
        .get(format!("{url}/v1/training/rivers-lora/events"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names.first(), Some(&"job"), "{names:?}");
    assert_eq!(names.last(), Some(&"finished"), "{names:?}");
    let finished: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
    assert_eq!(finished["state"], "succeeded", "{finished}");
    let result = &finished["result"];
    assert_eq!(result["steps"], 4);
    assert_eq!(result["train_pairs"], 2);
    assert_eq!(result["heldout_pairs"], 1);
    assert_eq!(result["log_root"].as_str().unwrap().len(), 64);
    // Steps seen live, or in the job's list when the stream began after them.
    let steps = names.iter().filter(|n| **n == "step").count();
    let job_now = s.call("GET", "/v1/training/rivers-lora", Some(&alice), None).await;
    assert_eq!(job_now.body["steps"].as_array().unwrap().len(), 4, "{}", job_now.body);
    let listed_at_start = serde_json::from_str::<Value>(&events[0].1).unwrap()["steps"].as_array().unwrap().len();
    assert_eq!(steps + listed_at_start, 4, "{names:?}");
    // A finished job's stream says so at once.
    let replay = reqwest::Client::new()
        .get(format!("{url}/v1/training/rivers-lora/events"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let replay: Vec<String> = sse_events(&replay).into_iter().map(|(e, _)| e).collect();
    assert_eq!(replay, ["job", "finished"]);

    // Tried beside the base, unpublished: questions cannot name it yet.
    let question = json!({"datanet": "rivers", "question": "How long is the Missouri River?"});
    let trial = s.call("POST", "/v1/training/rivers-lora/try", Some(&alice), Some(question)).await;
    assert_eq!(trial.status, StatusCode::OK, "{}", trial.body);
    assert!(trial.body["passages"][0]["text"].as_str().unwrap().contains("Missouri"));
    assert!(trial.body["base"].is_string() && trial.body["adapter"].is_string());
    let listed = s.call("GET", "/v1/adapters", None, None).await;
    assert!(!listed.body.to_string().contains("rivers-lora"));

    // Published: refused without force when it does not beat the base.
    let publish =
        |force: bool| s.call("POST", "/v1/training/rivers-lora/publish", Some(&alice), Some(json!({"force": force})));
    if result["beats_base"] == true {
        assert_eq!(publish(false).await.status, StatusCode::OK);
    } else {
        let worse = publish(false).await;
        assert_eq!((worse.status, worse.body["code"].as_str()), (StatusCode::CONFLICT, Some("worse_than_base")));
        let forced = publish(true).await;
        assert_eq!(forced.status, StatusCode::OK, "{}", forced.body);
        assert_eq!(forced.body["result"]["forced"], true);
    }
    let published = s.call("GET", "/v1/training/rivers-lora", Some(&alice), None).await;
    assert_eq!(published.body["result"]["published"], true, "{}", published.body);
    assert_eq!(publish(true).await.status, StatusCode::CONFLICT, "published once");
    let listed = s.call("GET", "/v1/adapters", None, None).await;
    assert!(listed.body.to_string().contains("rivers-lora"), "{}", listed.body);

    // Its trainer owns it: the adapter share of its answers is ALICE's. A paid answer of it
    // credits the chunk it was trained on to that chunk's first contributor (BOB uploaded the
    // Datanet), under the training share, and the receipt names the adapter's training root.
    let pricing = s.call("GET", "/v1/adapters/rivers-lora/pricing", None, None).await;
    assert_eq!(pricing.body["owner"], ALICE, "{}", pricing.body);
    let ask = json!({
        "question": "How long is the Missouri River?", "datanets": ["rivers"], "max_tokens": 24,
        "adapters": [{"id": "rivers-lora"}]
    });
    let answered = s.call("POST", "/v1/answers", Some(&payer), Some(ask)).await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.body);
    let receipt = &answered.body["receipt"];
    // Which training examples an answer owes most to is the model's to say: with an adapter
    // this small (rank 2, two steps) the sign of an answer's gradient cosine with each example
    // differs from one CPU to another (on one host both examples came out negative), and an
    // answer owing nothing to any credits none, its share going to the cited data. The paying
    // path is pinned where the adapter is trained enough to be sure (tests/it/training.rs,
    // and the ledger's own tests); here, what is credited must be right and add up.
    let trained = receipt["trained"].as_array().cloned().unwrap_or_default();
    assert!(trained.iter().all(|t| t["adapter"] == "rivers-lora" && t["contributor"] == BOB), "{receipt}");
    assert!(trained.iter().all(|t| t["training_root"] == result["log_root"]), "{receipt}");
    let credits = receipt["credits"].as_array().unwrap();
    let sum = |role: &str| -> u128 {
        credits
            .iter()
            .filter(|c| c["role"] == role)
            .map(|c| c["amount"].as_str().unwrap().parse::<u128>().unwrap())
            .sum()
    };
    let fee: u128 = receipt["fee"].as_str().unwrap().parse().unwrap();
    // 10% of the fee, less the rounding dust of dividing it by weight (the protocol's); none
    // when nothing was credited, the cited data's share then 60%.
    let to_training = sum("training_contributor");
    if trained.is_empty() {
        assert_eq!((to_training, sum("contributor")), (0, fee * 6 / 10), "{receipt}");
    } else {
        assert!(to_training <= fee / 10 && to_training + trained.len() as u128 >= fee / 10, "{receipt}");
    }
    assert_eq!(receipt["split"]["training"].as_str().unwrap().parse::<u128>().unwrap(), to_training);
    assert_eq!(sum("adapter_owner"), fee / 10);
    assert!(credits.iter().any(|c| c["role"] == "adapter_owner" && c["account"] == ALICE), "{receipt}");
    let verified = s.call("GET", "/v1/admin/verify", Some(&admin), None).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.body);
    assert_eq!(verified.body["problems"], json!([]), "{}", verified.body);

    // An adapter name an admin priced first keeps the owner the admin named: a trainer who
    // publishes under it does not take its adapter share.
    let priced = json!({"fee": "1", "owner": CAROL});
    let put = s.call("PUT", "/v1/adapters/rivers-lora-2/pricing", Some(&admin), Some(priced)).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let mut second = job.clone();
    (second["name"], second["max_steps"]) = (json!("rivers-lora-2"), json!(1));
    let started = s.call("POST", "/v1/training", Some(&alice), Some(second)).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let finished = reqwest::Client::new()
        .get(format!("{url}/v1/training/rivers-lora-2/events"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (last, body) = sse_events(&finished).pop().unwrap();
    assert_eq!(
        (last.as_str(), serde_json::from_str::<Value>(&body).unwrap()["state"].clone()),
        ("finished", json!("succeeded"))
    );
    let forced = s.call("POST", "/v1/training/rivers-lora-2/publish", Some(&alice), Some(json!({"force": true}))).await;
    assert_eq!(forced.status, StatusCode::OK, "{}", forced.body);
    let pricing = s.call("GET", "/v1/adapters/rivers-lora-2/pricing", None, None).await;
    assert_eq!(pricing.body["owner"], CAROL, "{}", pricing.body);
}
