//! A stand-in for a Qdrant server, for tests only: the gRPC services qdrant-client speaks
//! (qdrant-client's generated server traits), answered by qdrant-edge, Qdrant's own engine, one
//! shard per collection. No Qdrant server can be installed on these machines; this lets CI run
//! the qdrant-client backend end to end. It implements what that backend calls (collections,
//! payload indexes, upsert, delete, search, scroll, count) for keyword payloads and dense
//! vectors; everything else answers `unimplemented`. It is never offered to users.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use qdrant_client::qdrant as q;
use qdrant_client::qdrant::collections_server::{Collections, CollectionsServer};
use qdrant_client::qdrant::points_server::{Points, PointsServer};
use qdrant_client::qdrant::qdrant_server::{Qdrant, QdrantServer};
use qdrant_edge::external::uuid::Uuid;
use qdrant_edge::{
    Condition, Distance, EdgeConfigBuilder, EdgeShard, EdgeVectorParamsBuilder, FieldCondition, FieldIndexOperations,
    Filter, JsonPath, Match, NamedQuery, PayloadFieldSchema, PayloadSchemaType, PointId, PointInsertOperations,
    PointOperations, PointStruct, QueryEnum, ScrollRequest, SearchParams, SearchRequest, UpdateOperation,
    WithPayloadInterface, WithVector,
};
use tonic::{Request, Response, Status};

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("the test stand-in does not implement {what}"))
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

#[derive(Clone)]
pub struct StandIn {
    dir: PathBuf,
    shards: Arc<Mutex<HashMap<String, Arc<RwLock<EdgeShard>>>>>,
}

/// A running stand-in: its gRPC URL, served by a runtime of its own (so that a test's
/// blocking calls never starve it).
pub struct Running {
    pub url: String,
    _dir: tempfile::TempDir,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Serves a fresh stand-in on 127.0.0.1 and a free port.
pub fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let service = StandIn { dir: dir.path().to_path_buf(), shards: Default::default() };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // Bound here (no `block_on`: the caller may itself be inside a runtime), served there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(async move {
        let incoming = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => tokio_stream::wrappers::TcpListenerStream::new(listener),
            Err(e) => return eprintln!("the Qdrant stand-in cannot listen: {e}"),
        };
        let served = tonic::transport::Server::builder()
            .add_service(QdrantServer::new(service.clone()))
            .add_service(CollectionsServer::new(service.clone()))
            .add_service(PointsServer::new(service))
            .serve_with_incoming(incoming)
            .await;
        if let Err(e) = served {
            eprintln!("the Qdrant stand-in stopped: {e}");
        }
    });
    Running { url, _dir: dir, runtime: Some(runtime) }
}

impl StandIn {
    fn shard(&self, collection: &str) -> Result<Arc<RwLock<EdgeShard>>, Status> {
        self.shards
            .lock()
            .map_err(internal)?
            .get(collection)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("Collection `{collection}` doesn't exist!")))
    }

    fn update(&self, collection: &str, op: UpdateOperation) -> Result<Response<q::PointsOperationResponse>, Status> {
        let shard = self.shard(collection)?;
        let shard = shard.write().map_err(internal)?;
        shard.update(op).map_err(internal)?;
        shard.flush();
        Ok(Response::new(q::PointsOperationResponse {
            result: Some(q::UpdateResult { operation_id: Some(0), status: q::UpdateStatus::Completed as i32 }),
            time: 0.0,
            usage: None,
        }))
    }
}

fn path(key: &str) -> Result<JsonPath, Status> {
    key.try_into().map_err(|_| Status::invalid_argument(format!("bad payload key {key}")))
}

fn point_id(id: Option<q::PointId>) -> Result<PointId, Status> {
    match id.and_then(|id| id.point_id_options) {
        Some(q::point_id::PointIdOptions::Num(n)) => Ok(PointId::NumId(n)),
        Some(q::point_id::PointIdOptions::Uuid(text)) => {
            Ok(PointId::Uuid(Uuid::parse_str(&text).map_err(|e| Status::invalid_argument(e.to_string()))?))
        }
        None => Err(Status::invalid_argument("a point without an id")),
    }
}

fn proto_id(id: &PointId) -> q::PointId {
    let options = match id {
        PointId::NumId(n) => q::point_id::PointIdOptions::Num(*n),
        PointId::Uuid(u) => q::point_id::PointIdOptions::Uuid(u.to_string()),
    };
    q::PointId { point_id_options: Some(options) }
}

fn json_value(value: q::Value) -> Result<serde_json::Value, Status> {
    Ok(match value.kind {
        Some(q::value::Kind::StringValue(s)) => s.into(),
        Some(q::value::Kind::IntegerValue(i)) => i.into(),
        Some(q::value::Kind::BoolValue(b)) => b.into(),
        Some(q::value::Kind::DoubleValue(d)) => d.into(),
        Some(q::value::Kind::NullValue(_)) | None => serde_json::Value::Null,
        Some(_) => return Err(unimplemented("structured payload values")),
    })
}

fn proto_value(value: &serde_json::Value) -> q::Value {
    let kind = match value {
        serde_json::Value::String(s) => q::value::Kind::StringValue(s.clone()),
        serde_json::Value::Bool(b) => q::value::Kind::BoolValue(*b),
        serde_json::Value::Number(n) if n.is_i64() => q::value::Kind::IntegerValue(n.as_i64().unwrap_or(0)),
        serde_json::Value::Number(n) => q::value::Kind::DoubleValue(n.as_f64().unwrap_or(0.0)),
        _ => q::value::Kind::NullValue(0),
    };
    q::Value { kind: Some(kind) }
}

// Older clients send a dense vector in the deprecated `data` field; both are read.
#[allow(deprecated)]
fn dense(vectors: Option<q::Vectors>) -> Result<Vec<f32>, Status> {
    match vectors.and_then(|v| v.vectors_options) {
        Some(q::vectors::VectorsOptions::Vector(v)) => match v.vector {
            Some(q::vector::Vector::Dense(d)) => Ok(d.data),
            None if !v.data.is_empty() => Ok(v.data),
            _ => Err(unimplemented("vectors other than one dense vector")),
        },
        _ => Err(unimplemented("vectors other than one dense vector")),
    }
}

fn condition(c: q::Condition) -> Result<Condition, Status> {
    let Some(q::condition::ConditionOneOf::Field(field)) = c.condition_one_of else {
        return Err(unimplemented("conditions other than a field match"));
    };
    let value: Match = match field.r#match.and_then(|m| m.match_value) {
        Some(q::r#match::MatchValue::Keyword(k)) => Match::from(k),
        Some(q::r#match::MatchValue::Integer(i)) => Match::from(i),
        _ => return Err(unimplemented("matches other than a keyword or an integer")),
    };
    Ok(Condition::Field(FieldCondition::new_match(path(&field.key)?, value)))
}

fn filter(f: Option<q::Filter>) -> Result<Option<Filter>, Status> {
    let Some(f) = f else { return Ok(None) };
    if !f.must_not.is_empty() || f.min_should.is_some() {
        return Err(unimplemented("must_not and min_should"));
    }
    let list = |conditions: Vec<q::Condition>| -> Result<Option<Vec<Condition>>, Status> {
        if conditions.is_empty() {
            return Ok(None);
        }
        conditions.into_iter().map(condition).collect::<Result<Vec<_>, _>>().map(Some)
    };
    Ok(Some(Filter { must: list(f.must)?, should: list(f.should)?, min_should: None, must_not: None }))
}

fn payload_fields(selector: Option<q::WithPayloadSelector>) -> Result<Option<WithPayloadInterface>, Status> {
    match selector.and_then(|s| s.selector_options) {
        Some(q::with_payload_selector::SelectorOptions::Include(include)) => {
            Ok(Some(WithPayloadInterface::Fields(include.fields.iter().map(|k| path(k)).collect::<Result<_, _>>()?)))
        }
        Some(q::with_payload_selector::SelectorOptions::Enable(true)) => Ok(Some(WithPayloadInterface::Bool(true))),
        None | Some(q::with_payload_selector::SelectorOptions::Enable(false)) => Ok(None),
        Some(_) => Err(unimplemented("payload exclusion")),
    }
}

fn proto_payload(payload: Option<&qdrant_edge::Payload>) -> HashMap<String, q::Value> {
    payload.map(|p| p.0.iter().map(|(k, v)| (k.clone(), proto_value(v))).collect()).unwrap_or_default()
}

#[tonic::async_trait]
impl Qdrant for StandIn {
    async fn health_check(&self, _: Request<q::HealthCheckRequest>) -> Result<Response<q::HealthCheckReply>, Status> {
        Ok(Response::new(q::HealthCheckReply {
            title: "tributary test stand-in over qdrant-edge".into(),
            version: "1.17.0".into(),
            commit: None,
        }))
    }
}

#[tonic::async_trait]
impl Collections for StandIn {
    async fn collection_exists(
        &self,
        request: Request<q::CollectionExistsRequest>,
    ) -> Result<Response<q::CollectionExistsResponse>, Status> {
        let exists = self.shards.lock().map_err(internal)?.contains_key(&request.into_inner().collection_name);
        Ok(Response::new(q::CollectionExistsResponse { result: Some(q::CollectionExists { exists }), time: 0.0 }))
    }

    async fn create(
        &self,
        request: Request<q::CreateCollection>,
    ) -> Result<Response<q::CollectionOperationResponse>, Status> {
        let request = request.into_inner();
        let Some(q::vectors_config::Config::Params(params)) = request.vectors_config.and_then(|c| c.config) else {
            return Err(unimplemented("collections without one unnamed dense vector"));
        };
        if params.distance != q::Distance::Cosine as i32 {
            return Err(unimplemented("distances other than cosine"));
        }
        let mut shards = self.shards.lock().map_err(internal)?;
        if shards.contains_key(&request.collection_name) {
            return Err(Status::already_exists(format!("Collection `{}` already exists!", request.collection_name)));
        }
        let config = EdgeConfigBuilder::new()
            .vector(String::new(), EdgeVectorParamsBuilder::new(params.size as usize, Distance::Cosine).build())
            .build();
        let dir = self.dir.join(&request.collection_name);
        std::fs::create_dir_all(&dir).map_err(internal)?;
        let shard = EdgeShard::load(&dir, Some(config)).map_err(internal)?;
        shards.insert(request.collection_name, Arc::new(RwLock::new(shard)));
        Ok(Response::new(q::CollectionOperationResponse { result: true, time: 0.0 }))
    }

    // Not used by Tributary's backend.
    async fn get(
        &self,
        _: Request<q::GetCollectionInfoRequest>,
    ) -> Result<Response<q::GetCollectionInfoResponse>, Status> {
        Err(unimplemented("get"))
    }

    async fn list(
        &self,
        _: Request<q::ListCollectionsRequest>,
    ) -> Result<Response<q::ListCollectionsResponse>, Status> {
        Err(unimplemented("list"))
    }

    async fn update(
        &self,
        _: Request<q::UpdateCollection>,
    ) -> Result<Response<q::CollectionOperationResponse>, Status> {
        Err(unimplemented("update"))
    }

    async fn delete(
        &self,
        _: Request<q::DeleteCollection>,
    ) -> Result<Response<q::CollectionOperationResponse>, Status> {
        Err(unimplemented("delete"))
    }

    async fn update_aliases(
        &self,
        _: Request<q::ChangeAliases>,
    ) -> Result<Response<q::CollectionOperationResponse>, Status> {
        Err(unimplemented("update_aliases"))
    }

    async fn list_collection_aliases(
        &self,
        _: Request<q::ListCollectionAliasesRequest>,
    ) -> Result<Response<q::ListAliasesResponse>, Status> {
        Err(unimplemented("list_collection_aliases"))
    }

    async fn list_aliases(
        &self,
        _: Request<q::ListAliasesRequest>,
    ) -> Result<Response<q::ListAliasesResponse>, Status> {
        Err(unimplemented("list_aliases"))
    }

    async fn collection_cluster_info(
        &self,
        _: Request<q::CollectionClusterInfoRequest>,
    ) -> Result<Response<q::CollectionClusterInfoResponse>, Status> {
        Err(unimplemented("collection_cluster_info"))
    }

    async fn update_collection_cluster_setup(
        &self,
        _: Request<q::UpdateCollectionClusterSetupRequest>,
    ) -> Result<Response<q::UpdateCollectionClusterSetupResponse>, Status> {
        Err(unimplemented("update_collection_cluster_setup"))
    }

    async fn create_shard_key(
        &self,
        _: Request<q::CreateShardKeyRequest>,
    ) -> Result<Response<q::CreateShardKeyResponse>, Status> {
        Err(unimplemented("create_shard_key"))
    }

    async fn delete_shard_key(
        &self,
        _: Request<q::DeleteShardKeyRequest>,
    ) -> Result<Response<q::DeleteShardKeyResponse>, Status> {
        Err(unimplemented("delete_shard_key"))
    }

    async fn list_shard_keys(
        &self,
        _: Request<q::ListShardKeysRequest>,
    ) -> Result<Response<q::ListShardKeysResponse>, Status> {
        Err(unimplemented("list_shard_keys"))
    }
}

#[tonic::async_trait]
impl Points for StandIn {
    async fn upsert(&self, request: Request<q::UpsertPoints>) -> Result<Response<q::PointsOperationResponse>, Status> {
        let request = request.into_inner();
        let mut points = Vec::with_capacity(request.points.len());
        for p in request.points {
            let payload: serde_json::Map<String, serde_json::Value> =
                p.payload.into_iter().map(|(k, v)| Ok((k, json_value(v)?))).collect::<Result<_, Status>>()?;
            points
                .push(PointStruct::new(point_id(p.id)?, dense(p.vectors)?, serde_json::Value::Object(payload)).into());
        }
        let op = PointOperations::UpsertPoints(PointInsertOperations::PointsList(points));
        self.update(&request.collection_name, UpdateOperation::PointOperation(op))
    }

    async fn delete(&self, request: Request<q::DeletePoints>) -> Result<Response<q::PointsOperationResponse>, Status> {
        let request = request.into_inner();
        let Some(q::points_selector::PointsSelectorOneOf::Points(list)) =
            request.points.and_then(|p| p.points_selector_one_of)
        else {
            return Err(unimplemented("deleting by filter"));
        };
        let ids = list.ids.into_iter().map(|id| point_id(Some(id))).collect::<Result<_, _>>()?;
        self.update(&request.collection_name, UpdateOperation::PointOperation(PointOperations::DeletePoints { ids }))
    }

    async fn create_field_index(
        &self,
        request: Request<q::CreateFieldIndexCollection>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        let request = request.into_inner();
        let schema = match q::FieldType::try_from(request.field_type.unwrap_or(0)) {
            Ok(q::FieldType::Keyword) => PayloadSchemaType::Keyword,
            Ok(q::FieldType::Integer) => PayloadSchemaType::Integer,
            _ => return Err(unimplemented("payload indexes other than keyword and integer")),
        };
        let op = FieldIndexOperations::CreateIndex(qdrant_edge::CreateIndex {
            field_name: path(&request.field_name)?,
            field_schema: Some(PayloadFieldSchema::FieldType(schema)),
        });
        self.update(&request.collection_name, UpdateOperation::FieldIndexOperation(op))
    }

    async fn search(&self, request: Request<q::SearchPoints>) -> Result<Response<q::SearchResponse>, Status> {
        let request = request.into_inner();
        let shard = self.shard(&request.collection_name)?;
        let params = request.params.unwrap_or_default();
        let found = shard
            .read()
            .map_err(internal)?
            .search(SearchRequest {
                query: QueryEnum::Nearest(NamedQuery { query: request.vector.into(), using: None }),
                filter: filter(request.filter)?,
                params: Some(SearchParams {
                    hnsw_ef: params.hnsw_ef.map(|ef| ef as usize),
                    exact: params.exact.unwrap_or(false),
                    ..Default::default()
                }),
                limit: request.limit as usize,
                offset: request.offset.unwrap_or(0) as usize,
                with_payload: payload_fields(request.with_payload)?,
                with_vector: Some(WithVector::Bool(false)),
                score_threshold: request.score_threshold,
            })
            .map_err(internal)?;
        let result = found
            .iter()
            .map(|p| q::ScoredPoint {
                id: Some(proto_id(&p.id)),
                payload: proto_payload(p.payload.as_ref()),
                score: p.score,
                ..Default::default()
            })
            .collect();
        Ok(Response::new(q::SearchResponse { result, time: 0.0, usage: None }))
    }

    async fn scroll(&self, request: Request<q::ScrollPoints>) -> Result<Response<q::ScrollResponse>, Status> {
        let request = request.into_inner();
        let shard = self.shard(&request.collection_name)?;
        let offset = request.offset.map(|id| point_id(Some(id))).transpose()?;
        let (records, next) = shard
            .read()
            .map_err(internal)?
            .scroll(ScrollRequest {
                offset,
                limit: Some(request.limit.unwrap_or(10) as usize),
                filter: filter(request.filter)?,
                with_payload: payload_fields(request.with_payload)?,
                with_vector: WithVector::Bool(false),
                order_by: None,
            })
            .map_err(internal)?;
        let result = records
            .iter()
            .map(|r| q::RetrievedPoint {
                id: Some(proto_id(&r.id)),
                payload: proto_payload(r.payload.as_ref()),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(q::ScrollResponse {
            next_page_offset: next.as_ref().map(proto_id),
            result,
            time: 0.0,
            usage: None,
        }))
    }

    async fn count(&self, request: Request<q::CountPoints>) -> Result<Response<q::CountResponse>, Status> {
        let request = request.into_inner();
        let shard = self.shard(&request.collection_name)?;
        let count = shard
            .read()
            .map_err(internal)?
            .count(qdrant_edge::CountRequest { filter: filter(request.filter)?, exact: true })
            .map_err(internal)?;
        Ok(Response::new(q::CountResponse {
            result: Some(q::CountResult { count: count as u64 }),
            time: 0.0,
            usage: None,
        }))
    }

    // Not used by Tributary's backend.
    async fn get(&self, _: Request<q::GetPoints>) -> Result<Response<q::GetResponse>, Status> {
        Err(unimplemented("get"))
    }

    async fn update_vectors(
        &self,
        _: Request<q::UpdatePointVectors>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unimplemented("update_vectors"))
    }

    async fn delete_vectors(
        &self,
        _: Request<q::DeletePointVectors>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unimplemented("delete_vectors"))
    }

    async fn set_payload(
        &self,
        _: Request<q::SetPayloadPoints>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unimplemented("set_payload"))
    }

    async fn overwrite_payload(
        &self,
        _: Request<q::SetPayloadPoints>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unimplemented("overwrite_payload"))
    }

    async fn delete_payload(
        &self,
        _: Request<q::DeletePayloadPoints>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unimplemented("delete_payload"))
    }

    async fn clear_payload(
        &self,
        _: Request<q::ClearPayloadPoints>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unimplemented("clear_payload"))
    }

    async fn delete_field_index(
        &self,
        _: Request<q::DeleteFieldIndexCollection>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unimplemented("delete_field_index"))
    }

    async fn create_vector_name(
        &self,
        _: Request<q::CreateVectorNameRequest>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unimplemented("create_vector_name"))
    }

    async fn delete_vector_name(
        &self,
        _: Request<q::DeleteVectorNameRequest>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unimplemented("delete_vector_name"))
    }

    async fn search_batch(&self, _: Request<q::SearchBatchPoints>) -> Result<Response<q::SearchBatchResponse>, Status> {
        Err(unimplemented("search_batch"))
    }

    async fn search_groups(
        &self,
        _: Request<q::SearchPointGroups>,
    ) -> Result<Response<q::SearchGroupsResponse>, Status> {
        Err(unimplemented("search_groups"))
    }

    async fn recommend(&self, _: Request<q::RecommendPoints>) -> Result<Response<q::RecommendResponse>, Status> {
        Err(unimplemented("recommend"))
    }

    async fn recommend_batch(
        &self,
        _: Request<q::RecommendBatchPoints>,
    ) -> Result<Response<q::RecommendBatchResponse>, Status> {
        Err(unimplemented("recommend_batch"))
    }

    async fn recommend_groups(
        &self,
        _: Request<q::RecommendPointGroups>,
    ) -> Result<Response<q::RecommendGroupsResponse>, Status> {
        Err(unimplemented("recommend_groups"))
    }

    async fn discover(&self, _: Request<q::DiscoverPoints>) -> Result<Response<q::DiscoverResponse>, Status> {
        Err(unimplemented("discover"))
    }

    async fn discover_batch(
        &self,
        _: Request<q::DiscoverBatchPoints>,
    ) -> Result<Response<q::DiscoverBatchResponse>, Status> {
        Err(unimplemented("discover_batch"))
    }

    async fn update_batch(&self, _: Request<q::UpdateBatchPoints>) -> Result<Response<q::UpdateBatchResponse>, Status> {
        Err(unimplemented("update_batch"))
    }

    async fn query(&self, _: Request<q::QueryPoints>) -> Result<Response<q::QueryResponse>, Status> {
        Err(unimplemented("query"))
    }

    async fn query_batch(&self, _: Request<q::QueryBatchPoints>) -> Result<Response<q::QueryBatchResponse>, Status> {
        Err(unimplemented("query_batch"))
    }

    async fn query_groups(&self, _: Request<q::QueryPointGroups>) -> Result<Response<q::QueryGroupsResponse>, Status> {
        Err(unimplemented("query_groups"))
    }

    async fn facet(&self, _: Request<q::FacetCounts>) -> Result<Response<q::FacetResponse>, Status> {
        Err(unimplemented("facet"))
    }

    async fn search_matrix_pairs(
        &self,
        _: Request<q::SearchMatrixPoints>,
    ) -> Result<Response<q::SearchMatrixPairsResponse>, Status> {
        Err(unimplemented("search_matrix_pairs"))
    }

    async fn search_matrix_offsets(
        &self,
        _: Request<q::SearchMatrixPoints>,
    ) -> Result<Response<q::SearchMatrixOffsetsResponse>, Status> {
        Err(unimplemented("search_matrix_offsets"))
    }
}
