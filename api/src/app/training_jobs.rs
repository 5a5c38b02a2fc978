//! Training jobs for the HTTP API: queued, run one at a time by a worker of their own (a
//! training run takes every core it is given; two at once would each take twice as long and
//! twice the memory), followed step by step, their requests and states kept in
//! `<data-dir>/training/<name>/job.json` so a server stopped midway picks them up again at its
//! next start (the run itself resumes from its last checkpoint).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tributary_trainer::Control;

use crate::app::App;
use crate::app::training::{TrainRequest, TrainingRecord, held_out, train_adapter, training_dir, training_record};

/// Jobs waiting at once, beyond which a new one is refused (the server is busy training).
pub const MAX_QUEUED: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

/// What `job.json` keeps of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub request: TrainRequest,
    /// The address that submitted it (it may try and publish the result).
    pub owner: Option<String>,
    pub state: JobState,
    pub error: Option<String>,
    /// Seconds since the Unix epoch.
    pub submitted_at: u64,
}

/// A step as a job's followers see it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StepPoint {
    pub step: usize,
    pub total: usize,
    pub loss: f64,
    pub learning_rate: f64,
}

/// What a follower is told.
#[derive(Debug, Clone)]
pub enum JobEvent {
    Step(StepPoint),
    Finished(Box<JobView>),
}

/// A job as the API shows it.
#[derive(Debug, Clone)]
pub struct JobView {
    pub record: JobRecord,
    pub steps: Vec<StepPoint>,
    pub result: Option<TrainingRecord>,
}

struct Job {
    view: JobView,
    events: broadcast::Sender<JobEvent>,
}

/// The jobs of this server and the queue its worker reads.
pub struct TrainingJobs {
    jobs: Mutex<BTreeMap<String, Job>>,
    queue: mpsc::UnboundedSender<String>,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

fn job_path(app: &App, name: &str) -> PathBuf {
    training_dir(app, name).join("job.json")
}

fn save(app: &App, record: &JobRecord) -> Result<()> {
    let dir = training_dir(app, &record.request.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (path, tmp) = (dir.join("job.json"), dir.join("job.json.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(record)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

impl TrainingJobs {
    /// The jobs found in the data directory, those not finished queued again, and the worker
    /// that runs them (on the current tokio runtime).
    pub fn start(app: Arc<App>) -> Result<Arc<Self>> {
        let (queue, mut waiting) = mpsc::unbounded_channel::<String>();
        let mut jobs = BTreeMap::new();
        let root = app.settings.data_dir.join("training");
        let mut pending = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(bytes) = std::fs::read(job_path(&app, &name)) else { continue };
                let mut record: JobRecord = match serde_json::from_slice(&bytes) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(job = %name, error = %e, "unreadable job.json left alone");
                        continue;
                    }
                };
                if matches!(record.state, JobState::Queued | JobState::Running) {
                    record.state = JobState::Queued;
                    pending.push((record.submitted_at, name.clone()));
                }
                let result = training_record(&app, &name).ok().flatten();
                let view = JobView { record, steps: Vec::new(), result };
                jobs.insert(name, Job { view, events: broadcast::channel(256).0 });
            }
        }
        pending.sort();
        for (_, name) in pending {
            let _ = queue.send(name);
        }
        let this = Arc::new(TrainingJobs { jobs: Mutex::new(jobs), queue });
        // The worker holds the app weakly: the jobs do not keep a stopped server's stores open.
        let (worker, app) = (this.clone(), Arc::downgrade(&app));
        tokio::spawn(async move {
            while let Some(name) = waiting.recv().await {
                let Some(app) = app.upgrade() else { break };
                worker.run(&app, &name).await;
            }
        });
        Ok(this)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Job>> {
        self.jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `request` for `owner`. Refused at once when the name is taken, the Datanet
    /// unknown, the settings train nothing, or the queue is full.
    pub async fn submit(&self, app: &App, request: TrainRequest, owner: Option<String>) -> Result<JobView> {
        tributary_generator::validate_adapter_id(&request.name)?;
        if request.name.contains('/') {
            bail!(tributary_generator::Error::InvalidRequest(
                "a trained adapter's name is one path segment (no /)".into()
            ));
        }
        if request.pairs.is_empty() && request.synthesize == 0 {
            bail!(tributary_generator::Error::InvalidRequest(
                "no training pairs: give pairs, or ask for pairs written from the Datanet (synthesize)".into()
            ));
        }
        if !(0.0..1.0).contains(&request.holdout) {
            bail!(tributary_generator::Error::InvalidRequest("holdout must be in [0, 1)".into()));
        }
        let planned = request.pairs.len() + request.synthesize;
        let train_pairs = planned - held_out(planned, request.holdout);
        request.settings.plan(train_pairs).map_err(|e| tributary_generator::Error::InvalidRequest(e.to_string()))?;
        app.datanet(&request.datanet).await?;
        let taken = app.adapters()?.get(&request.name).is_ok() || training_record(app, &request.name)?.is_some();
        let mut jobs = self.lock();
        if taken || jobs.contains_key(&request.name) || job_path(app, &request.name).exists() {
            bail!(JobConflict(request.name.clone()));
        }
        let queued = jobs.values().filter(|j| j.view.record.state == JobState::Queued).count();
        if queued >= MAX_QUEUED {
            bail!(tributary_generator::Error::Overloaded(format!("{queued} training jobs are waiting")));
        }
        let record = JobRecord { request, owner, state: JobState::Queued, error: None, submitted_at: now() };
        save(app, &record)?;
        let name = record.request.name.clone();
        let view = JobView { record, steps: Vec::new(), result: None };
        jobs.insert(name.clone(), Job { view: view.clone(), events: broadcast::channel(256).0 });
        drop(jobs);
        self.queue.send(name).map_err(|_| anyhow::anyhow!("the training worker has stopped"))?;
        Ok(view)
    }

    /// Every job, by name.
    pub fn list(&self) -> Vec<JobView> {
        self.lock().values().map(|j| j.view.clone()).collect()
    }

    pub fn get(&self, name: &str) -> Option<JobView> {
        self.lock().get(name).map(|j| j.view.clone())
    }

    /// The job as it stands and its events from now on.
    pub fn follow(&self, name: &str) -> Option<(JobView, broadcast::Receiver<JobEvent>)> {
        self.lock().get(name).map(|j| (j.view.clone(), j.events.subscribe()))
    }

    fn update(&self, app: &App, name: &str, change: impl FnOnce(&mut JobView) -> Option<JobEvent>) {
        let mut jobs = self.lock();
        let Some(job) = jobs.get_mut(name) else { return };
        let before = job.view.record.state;
        if let Some(event) = change(&mut job.view) {
            let _ = job.events.send(event);
        }
        if job.view.record.state != before
            && let Err(e) = save(app, &job.view.record)
        {
            tracing::warn!(job = %name, error = %e, "could not save the job's state");
        }
    }

    async fn run(self: &Arc<Self>, app: &App, name: &str) {
        let Some(view) = self.get(name) else { return };
        self.update(app, name, |v| {
            v.record.state = JobState::Running;
            None
        });
        let (follower, job) = (self.clone(), name.to_string());
        let outcome = train_adapter(app, view.record.request.clone(), move |step, total| {
            let point = StepPoint { step: step.step, total, loss: step.loss, learning_rate: step.learning_rate };
            let mut jobs = follower.lock();
            if let Some(j) = jobs.get_mut(&job) {
                j.view.steps.push(point);
                let _ = j.events.send(JobEvent::Step(point));
            }
            Control::Continue
        })
        .await;
        self.update(app, name, |v| {
            match outcome {
                Ok(record) => {
                    v.record.state = JobState::Succeeded;
                    v.result = Some(record);
                }
                Err(e) => {
                    tracing::warn!(job = %name, error = %format!("{e:#}"), "training job failed");
                    v.record.state = JobState::Failed;
                    v.record.error = Some(format!("{e:#}"));
                }
            }
            Some(JobEvent::Finished(Box::new(v.clone())))
        });
    }

    /// Refreshes a finished job's result after a publish.
    pub fn refresh(&self, app: &App, name: &str) {
        let result = training_record(app, name).ok().flatten();
        self.update(app, name, |v| {
            v.result = result;
            None
        });
    }
}

/// A training job or adapter of that name exists already.
#[derive(Debug, thiserror::Error)]
#[error("adapter or training job {0} already exists; train under another name")]
pub struct JobConflict(pub String);
