//! Contribution review: a Datanet that asks for it holds uploads (other than its owner's) as
//! pending contributions that cannot be found, cited or credited until an owner or a member
//! accepts them; and the leaderboard that ranks its contributors.

use axum::http::StatusCode;
use serde_json::{Value, json};
use tributary::app::keys::Role;
use tributary::http::ServeConfig;
use tributary_indexer::testing::fresh_pg_schema;

use crate::http::{PAYER, RIVERS, Server, doc};
use crate::{ALICE, BOB};

const CAROL: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const DAVE: &str = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";

async fn found(s: &Server, query: &str) -> usize {
    let search = json!({"query": query, "datanets": ["reviewed"], "k": 5, "mode": "bm25"});
    let reply = s.call("POST", "/v1/search", None, Some(search)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["passages"].as_array().unwrap().len()
}

fn ids(page: &Value) -> Vec<(i64, String)> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_i64().unwrap(), c["status"].as_str().unwrap().to_string()))
        .collect()
}

async fn review(database_url: Option<String>) {
    let s = Server::start(ServeConfig::default(), database_url).await;
    let admin = s.key(Role::Admin, None, None).await;
    let alice = s.key(Role::Owner, Some(ALICE), None).await;
    let bob = s.key(Role::Contributor, Some(BOB), None).await;
    let carol = s.key(Role::Contributor, Some(CAROL), None).await;
    let dave = s.key(Role::Contributor, Some(DAVE), None).await;
    let dave_owner = s.key(Role::Owner, Some(DAVE), None).await;
    let payer = s.key(Role::Reader, Some(PAYER), None).await;
    let create = json!({"name": "reviewed", "review": true, "description": "reviewed uploads"});
    let created = s.call("POST", "/v1/datanets", Some(&alice), Some(create)).await;
    assert_eq!((created.status, created.body["review"].as_bool()), (StatusCode::CREATED, Some(true)));

    // Bob's upload waits: stored, but not searchable, not a document, not citable.
    let upload = json!({"documents": [doc("missouri.txt", RIVERS)]});
    let up = s.call("POST", "/v1/datanets/reviewed/documents", Some(&bob), Some(upload)).await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.body);
    assert_eq!(up.body["contribution"]["status"], "pending");
    assert_eq!(up.body["report"], Value::Null);
    let pending = up.body["contribution"]["id"].as_i64().unwrap();
    assert_eq!(found(&s, "Missouri longest river").await, 0, "a pending upload is not searchable");
    let documents = s.call("GET", "/v1/datanets/reviewed/documents", None, None).await;
    assert_eq!(documents.body["items"], json!([]));
    let grant = json!({"amount": "1000000000000000000"});
    s.call("POST", &format!("/v1/accounts/{PAYER}/grants"), Some(&admin), Some(grant)).await;
    let question =
        json!({"question": "What is the longest river in North America?", "datanets": ["reviewed"], "max_tokens": 32});
    let unanswered = s.call("POST", "/v1/answers", Some(&payer), Some(question.clone())).await;
    assert_eq!(unanswered.status, StatusCode::OK, "{}", unanswered.body);
    assert_eq!(unanswered.body["answer"]["citations"], json!([]), "nothing pending is cited");
    assert!(
        unanswered.body["receipt"]["credits"].as_array().unwrap().iter().all(|c| c["account"] != BOB),
        "nothing pending is credited"
    );

    // Who sees it: the contributor their own; owners, members and admins all; strangers none.
    let list = "/v1/datanets/reviewed/contributions";
    assert_eq!(ids(&s.call("GET", list, Some(&bob), None).await.body), [(pending, "pending".to_string())]);
    assert_eq!(ids(&s.call("GET", list, Some(&dave), None).await.body), []);
    assert_eq!(s.call("GET", list, None, None).await.body["code"], "missing_api_key");
    assert_eq!(ids(&s.call("GET", list, Some(&alice), None).await.body).len(), 1);
    // Who decides: not a stranger, not the contributor.
    let decide = format!("{list}/{pending}");
    let accept = json!({"accept": true});
    for key in [&dave, &bob] {
        let refused = s.call("POST", &decide, Some(key), Some(accept.clone())).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    }
    assert_eq!(found(&s, "Missouri longest river").await, 0);
    // Nor through a Datanet of one's own: accepting it there would make its owner the Datanet
    // owner paid for every citation of it.
    let own = s.call("POST", "/v1/datanets", Some(&dave_owner), Some(json!({"name": "daves"}))).await;
    assert_eq!(own.status, StatusCode::CREATED, "{}", own.body);
    let uri = format!("/v1/datanets/daves/contributions/{pending}");
    let elsewhere = s.call("POST", &uri, Some(&dave_owner), Some(accept.clone())).await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND, "a contribution is decided in its own Datanet only");
    assert_eq!(found(&s, "Missouri longest river").await, 0);
    // A member may review, once.
    let added = s.call("POST", "/v1/datanets/reviewed/members", Some(&alice), Some(json!({"address": CAROL}))).await;
    assert!(added.status.is_success(), "{}", added.body);
    assert_eq!(ids(&s.call("GET", list, Some(&carol), None).await.body).len(), 1);
    let accepted = s.call("POST", &decide, Some(&carol), Some(accept.clone())).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
    assert_eq!(accepted.body["status"], "accepted");
    assert_eq!(accepted.body["decided_by"], CAROL);
    assert!(accepted.body["report"]["new_chunks"].as_u64().unwrap() >= 1, "{}", accepted.body);
    let again = s.call("POST", &decide, Some(&alice), Some(json!({"accept": false, "reason": "late"}))).await;
    assert_eq!(again.body["code"], "conflict", "decided once");
    let search = json!({"query": "Missouri longest river", "datanets": ["reviewed"], "mode": "bm25"});
    let hits = s.call("POST", "/v1/search", None, Some(search)).await.body;
    assert_eq!(hits["passages"][0]["contributor"], BOB, "credited to the contributor, not the reviewer");

    // Rejected with a reason the contributor sees; its documents never go in.
    let upload = json!({"documents": [doc("spam.txt", "Buy quizzaciously cheap watches now.")]});
    let up = s.call("POST", "/v1/datanets/reviewed/documents", Some(&bob), Some(upload)).await;
    let spam = up.body["contribution"]["id"].as_i64().unwrap();
    let reject = json!({"accept": false, "reason": "off topic"});
    let rejected = s.call("POST", &format!("{list}/{spam}"), Some(&alice), Some(reject)).await;
    assert_eq!(
        (rejected.body["status"].as_str(), rejected.body["reason"].as_str()),
        (Some("rejected"), Some("off topic"))
    );
    let mine = s.call("GET", &format!("{list}?status=rejected"), Some(&bob), None).await.body;
    assert_eq!((mine["items"][0]["id"].as_i64(), mine["items"][0]["reason"].as_str()), (Some(spam), Some("off topic")));
    assert_eq!(found(&s, "quizzaciously").await, 0);

    // A member's own upload waits like anyone's, and they may not wave it through.
    let upload = json!({"documents": [doc("carol.txt", "The Ohio River joins the Mississippi at Cairo.")]});
    let up = s.call("POST", "/v1/datanets/reviewed/documents", Some(&carol), Some(upload)).await;
    let carols = up.body["contribution"]["id"].as_i64().unwrap();
    let own = s.call("POST", &format!("{list}/{carols}"), Some(&carol), Some(accept.clone())).await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.body);
    // The owner's upload goes in at once.
    let upload = json!({"documents": [doc("owner.txt", "The Platte River is wide and shallow.")]});
    let up = s.call("POST", "/v1/datanets/reviewed/documents", Some(&alice), Some(upload)).await;
    assert_eq!(up.body["contribution"]["status"], "accepted", "{}", up.body);
    assert!(found(&s, "Platte shallow").await > 0);

    // A stop between accepting and indexing: the next start indexes it.
    let app = s.state.app();
    let datanet = app.datanet("reviewed").await.unwrap();
    app.store.catalog().start_accepting(datanet.id, carols, "operator").await.unwrap();
    assert_eq!(found(&s, "Ohio Cairo").await, 0);
    assert_eq!(tributary::app::contributions::resume(app).await.unwrap(), 1);
    assert!(found(&s, "Ohio Cairo").await > 0);
    let resumed = ids(&s.call("GET", &format!("{list}?status=accepted"), Some(&admin), None).await.body);
    assert!(resumed.contains(&(carols, "accepted".to_string())), "{resumed:?}");

    // The leaderboard: accepted uploads, chunks, citations and what they earned.
    let answered = s.call("POST", "/v1/answers", Some(&payer), Some(question)).await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.body);
    let to_bob: u128 = answered.body["receipt"]["credits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["account"] == BOB && c["role"] == "contributor")
        .map(|c| c["amount"].as_str().unwrap().parse::<u128>().unwrap())
        .sum();
    assert!(to_bob > 0, "the accepted upload is cited and credited: {}", answered.body);
    let board = s.call("GET", "/v1/datanets/reviewed/leaderboard", None, None).await.body;
    let row = |who: &str| board["contributors"].as_array().unwrap().iter().find(|r| r["contributor"] == who).cloned();
    let bob_row = row(BOB).unwrap();
    assert_eq!(bob_row["accepted_uploads"], 1, "the rejected upload does not count: {board}");
    assert!(bob_row["chunks"].as_u64().unwrap() >= 1);
    assert!(bob_row["citations"].as_u64().unwrap() >= 1);
    assert_eq!(bob_row["earned"], to_bob.to_string());
    assert_eq!(board["contributors"][0]["contributor"], BOB, "most earned first: {board}");
    assert_eq!(row(ALICE).unwrap()["accepted_uploads"], 1);
    assert_eq!(row(CAROL).unwrap()["accepted_uploads"], 1);

    // Review off: uploads go in at once again.
    let off = s.call("PATCH", "/v1/datanets/reviewed", Some(&alice), Some(json!({"review": false}))).await;
    assert_eq!(off.body["review"], false);
    let upload = json!({"documents": [doc("dave.txt", "The Yellowstone River is undammed.")]});
    let up = s.call("POST", "/v1/datanets/reviewed/documents", Some(&dave), Some(upload)).await;
    assert_eq!(up.body["contribution"]["status"], "accepted", "{}", up.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn review_sqlite() {
    review(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn review_postgres() {
    review(Some(fresh_pg_schema("review").await.expect("PostgreSQL reachable at TEST_DATABASE_URL"))).await;
}
