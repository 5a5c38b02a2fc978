//! `/v1/training`: Model Factory over HTTP. A Datanet's owner (or an admin) starts a training
//! job on its pairs (queued; one runs at a time), follows it (`/events`: server-sent `step`
//! events, then `finished`), tries the adapter beside the base, and publishes it (refused when
//! it does not beat the base unless `force`). The job's owner and admins see it.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use tributary_trainer::{LoraShape, TrainSettings};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::datanets::governed;
use super::error::{ApiError, ApiResult, Errors};
use super::extract::{Json, Path, Query, paginate};
use super::state::AppState;
use super::wire;
use crate::app::training::{self, Pair, PublishRefused, TrainRequest};
use crate::app::training_jobs::{JobConflict, JobEvent, JobState, JobView, StepPoint};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_training, list_training))
        .routes(routes!(get_training))
        .routes(routes!(training_events))
        .routes(routes!(try_trained))
        .routes(routes!(publish_trained))
}

fn step_view(s: &StepPoint) -> wire::TrainingStep {
    wire::TrainingStep { step: s.step, total: s.total, loss: s.loss, learning_rate: s.learning_rate }
}

fn view(job: &JobView) -> wire::TrainingJob {
    let r = &job.record;
    wire::TrainingJob {
        name: r.request.name.clone(),
        datanet: r.request.datanet.clone(),
        state: match r.state {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
        .into(),
        owner: r.owner.clone(),
        submitted_at: r.submitted_at,
        steps: job.steps.iter().map(step_view).collect(),
        error: r.error.clone(),
        result: job.result.as_ref().map(|t| wire::TrainingResult {
            log_root: t.log_root.clone(),
            steps: t.steps,
            train_pairs: t.train_pairs,
            synthesized_pairs: t.synthesized_pairs,
            heldout_pairs: t.evaluation.heldout_pairs,
            base_loss: t.evaluation.base_loss,
            adapter_loss: t.evaluation.adapter_loss,
            base_answer_f1: t.evaluation.base_answer_f1,
            adapter_answer_f1: t.evaluation.adapter_answer_f1,
            beats_base: t.evaluation.beats_base(),
            tokens_per_second: t.tokens_per_second,
            seconds: t.seconds,
            published: t.published_at.is_some(),
            forced: t.forced,
        }),
    }
}

/// The job `name` if the caller may see it: its owner or an admin (others: 404, as for a job
/// that does not exist).
fn visible(state: &AppState, caller: &Caller, name: &str) -> ApiResult<JobView> {
    if caller.role().is_none() {
        return Err(ApiError::new("missing_api_key", "training jobs are shown to keys: sign in"));
    }
    let job = state.training()?.get(name).ok_or_else(|| ApiError::not_found(format!("no training job {name}")))?;
    if sees(caller, &job) { Ok(job) } else { Err(ApiError::not_found(format!("no training job {name}"))) }
}

fn sees(caller: &Caller, job: &JobView) -> bool {
    caller.is_admin() || caller.address().is_some_and(|a| job.record.owner.as_deref() == Some(a.to_string().as_str()))
}

/// The caller's training jobs (an admin's: every job), by name.
#[utoipa::path(
    get, path = "/v1/training", tag = "adapters", params(wire::PageParams), security(("api_key" = [])),
    responses((status = 200, body = wire::TrainingJobPage), Errors)
)]
async fn list_training(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<wire::PageParams>,
) -> ApiResult<Json<wire::TrainingJobPage>> {
    if caller.role().is_none() {
        return Err(ApiError::new("missing_api_key", "training jobs are shown to keys: sign in"));
    }
    let jobs: Vec<JobView> = state.training()?.list().into_iter().filter(|j| sees(&caller, j)).collect();
    let (items, next_cursor) = paginate(jobs, |j| j.record.request.name.clone(), page.cursor.as_deref(), page.limit)?;
    Ok(Json(wire::TrainingJobPage { items: items.iter().map(view).collect(), next_cursor }))
}

/// Starts training a LoRA adapter on a Datanet's question/answer pairs (its owner or an
/// admin): queued at once (202), run one job at a time; follow it at `/events`.
#[utoipa::path(
    post, path = "/v1/training", tag = "adapters", request_body = wire::TrainAdapter, security(("api_key" = [])),
    responses((status = 202, body = wire::TrainingJob), Errors)
)]
async fn start_training(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<wire::TrainAdapter>,
) -> ApiResult<impl IntoResponse> {
    let datanet = governed(&state, &caller, &body.datanet).await?;
    if body.pairs.len() > 10_000 || body.synthesize.is_some_and(|n| n > 1_000) {
        return Err(ApiError::invalid("at most 10,000 pairs and 1,000 synthesized pairs a job"));
    }
    let synthesize = body.synthesize.unwrap_or(0);
    let over = |value: Option<usize>, max: usize| value.is_some_and(|v| v > max);
    if over(body.rank, 256) || over(body.epochs, 100) || over(body.batch_size, 64) || over(body.max_steps, 1_000_000) {
        return Err(ApiError::invalid(
            "rank at most 256, epochs at most 100, batch size at most 64, max steps at most 1,000,000",
        ));
    }
    if body.seed.is_some_and(|seed| seed > (1 << 53) - 1) {
        return Err(ApiError::invalid("the seed is a whole number up to 2^53 - 1"));
    }
    let defaults = LoraShape::default_for_training();
    let lora = LoraShape {
        rank: body.rank.unwrap_or(defaults.rank),
        alpha: body.alpha.unwrap_or(defaults.alpha),
        targets: body.targets.unwrap_or(defaults.targets),
    };
    lora.check().map_err(|e| ApiError::invalid(e.to_string()))?;
    let d = TrainSettings::default();
    let mut settings = TrainSettings {
        epochs: body.epochs.unwrap_or(d.epochs),
        learning_rate: body.learning_rate.unwrap_or(d.learning_rate),
        batch_size: body.batch_size.unwrap_or(d.batch_size),
        max_steps: body.max_steps,
        seed: body.seed.unwrap_or(d.seed),
        ..d
    };
    let holdout = body.holdout.unwrap_or(0.2);
    if !(0.0..1.0).contains(&holdout) {
        return Err(ApiError::invalid("holdout must be in [0, 1)"));
    }
    // Synthesized pairs count as planned (some may be skipped when written).
    let planned = body.pairs.len() + synthesize;
    let train_pairs = planned - training::held_out(planned, holdout);
    let (_, total) = settings.plan(train_pairs).map_err(|e| ApiError::invalid(e.to_string()))?;
    settings.warmup_steps = training::default_warmup(total);
    let request = TrainRequest {
        name: body.name,
        datanet: datanet.name,
        pairs: body
            .pairs
            .into_iter()
            .map(|p| Pair { question: p.question, answer: p.answer, chunks: p.chunks })
            .collect(),
        lora,
        settings,
        holdout,
        max_tokens: 1024,
        synthesize,
    };
    let owner = caller.address().map(|a| a.to_string());
    let job = state.training()?.submit(state.app(), request, owner).await.map_err(|e| {
        if let Some(conflict) = e.downcast_ref::<JobConflict>() {
            ApiError::conflict(conflict.to_string())
        } else {
            ApiError::from(e)
        }
    })?;
    Ok((StatusCode::ACCEPTED, Json(view(&job))))
}

/// A training job: its state, every step so far, and once finished its held-out evaluation.
#[utoipa::path(
    get, path = "/v1/training/{name}", tag = "adapters", params(("name" = String, Path)), security(("api_key" = [])),
    responses((status = 200, body = wire::TrainingJob), Errors)
)]
async fn get_training(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<wire::TrainingJob>> {
    Ok(Json(view(&visible(&state, &caller, &name)?)))
}

/// Follows a training job as server-sent events: `job` (the job as it stands, steps so far
/// included), a `step` event (`TrainingStep`) per optimizer step, then `finished` (the
/// `TrainingJob`, with its result or error). A finished job sends `job` and `finished` at once.
#[utoipa::path(
    get, path = "/v1/training/{name}/events", tag = "adapters", params(("name" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, description = "The job's events", content((wire::SseEvent = "text/event-stream"))), Errors)
)]
async fn training_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    visible(&state, &caller, &name)?;
    let (job, receiver) =
        state.training()?.follow(&name).ok_or_else(|| ApiError::not_found(format!("no training job {name}")))?;
    Ok(Sse::new(job_events(job, receiver)).keep_alive(KeepAlive::default()))
}

fn event(name: &str, value: &impl serde::Serialize) -> Event {
    Event::default().event(name).json_data(value).unwrap_or_else(|_| Event::default().event(name))
}

fn job_events(
    job: JobView,
    receiver: tokio::sync::broadcast::Receiver<JobEvent>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let finished = matches!(job.record.state, JobState::Succeeded | JobState::Failed);
    let mut first = vec![event("job", &view(&job))];
    if finished {
        first.push(event("finished", &view(&job)));
    }
    let head = futures_util::stream::iter(first.into_iter().map(Ok));
    let tail = futures_util::stream::unfold((receiver, finished), |(mut receiver, done)| async move {
        if done {
            return None;
        }
        loop {
            match receiver.recv().await {
                Ok(JobEvent::Step(s)) => {
                    return Some((Ok(event("step", &step_view(&s))), (receiver, false)));
                }
                Ok(JobEvent::Finished(job)) => return Some((Ok(event("finished", &view(&job))), (receiver, true))),
                // A slow follower missed steps: it sees the next ones (the job has them all).
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    futures_util::StreamExt::chain(head, tail)
}

/// Answers a question with the base model and with a job's trained adapter, side by side,
/// from the same passages (nothing charged or recorded): its owner or an admin, before or
/// after publishing.
#[utoipa::path(
    post, path = "/v1/training/{name}/try", tag = "adapters", params(("name" = String, Path)),
    request_body = wire::TryAdapter, security(("api_key" = [])),
    responses((status = 200, body = wire::AdapterTrial), Errors)
)]
async fn try_trained(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<wire::TryAdapter>,
) -> ApiResult<Json<wire::AdapterTrial>> {
    let job = visible(&state, &caller, &name)?;
    if job.record.state != JobState::Succeeded {
        return Err(ApiError::conflict(format!("training job {name} has not finished")));
    }
    super::datanets::readable(&state, &caller, &body.datanet).await?;
    let _slot = state.generation_slot()?;
    let trial = training::try_adapter(state.app(), &name, &body.datanet, &body.question).await?;
    Ok(Json(wire::AdapterTrial {
        passages: trial.passages.into_iter().map(|(chunk_id, text)| wire::TrialPassage { chunk_id, text }).collect(),
        base: trial.base,
        adapter: trial.adapter,
    }))
}

/// Registers a job's adapter so questions may name it: refused (409 `worse_than_base`) when
/// it does not beat its base on the held-out pairs, unless `force`.
#[utoipa::path(
    post, path = "/v1/training/{name}/publish", tag = "adapters", params(("name" = String, Path)),
    request_body = wire::PublishAdapter, security(("api_key" = [])),
    responses((status = 200, body = wire::TrainingJob), Errors)
)]
async fn publish_trained(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<wire::PublishAdapter>,
) -> ApiResult<Json<wire::TrainingJob>> {
    let job = visible(&state, &caller, &name)?;
    if job.result.is_none() {
        return Err(ApiError::conflict(format!("training job {name} has not finished")));
    }
    // The one who trained it owns it: the adapter share of its answers is theirs.
    let owner = job.record.owner.as_deref().map(crate::app::parse_address).transpose()?;
    training::publish_adapter(state.app(), &name, body.force, owner).await.map_err(|e| {
        match e.downcast_ref::<PublishRefused>() {
            Some(refused @ PublishRefused::AlreadyPublished(_)) => ApiError::conflict(refused.to_string()),
            Some(refused @ PublishRefused::WorseThanBase { .. }) => {
                ApiError::new("worse_than_base", refused.to_string())
            }
            None => ApiError::from(e),
        }
    })?;
    state.training()?.refresh(state.app(), &name);
    Ok(Json(view(&visible(&state, &caller, &name)?)))
}
