//! Imports, the review queue, merges and match explanations over HTTP.
//!
//! `POST /v1/imports` takes the file as the request body and answers at once (202) with the
//! import's id; the import runs on a worker thread from the uploaded bytes (held in memory,
//! never written to disk in clear). `GET /v1/imports/{id}` shows its progress while it runs,
//! then its summary and per-row report.

use std::collections::HashMap;
use std::sync::Mutex;

use super::SubjectIdPath;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use hub::import::Profile;
use hub::import::Thresholds;
use hub::{Actor, ImportOptions, Progress};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use crate::dto::ErrorBody;
use crate::{blocking, ApiError, AppState, Caller};

/// Imports running in this server, by id: what the status endpoint shows until they finish.
#[derive(Default)]
pub(crate) struct Jobs {
    jobs: Mutex<HashMap<String, Job>>,
}

#[derive(Clone, Serialize)]
pub(crate) struct Job {
    pub(crate) status: &'static str,
    pub(crate) stage: &'static str,
    pub(crate) done: u64,
    pub(crate) total: Option<u64>,
    /// The import the file turned out to be (an identical earlier import, when it was one).
    pub(crate) import_id: Option<String>,
    pub(crate) error: Option<Value>,
    /// A dry run's summary and report (it writes nothing, so they live here).
    pub(crate) dry_run: Option<Value>,
    /// A dry run's file and options, kept in memory so that the console can commit what was
    /// checked without a second upload. Never serialised.
    #[serde(skip)]
    pub(crate) upload: Option<(Bytes, ImportOptions)>,
}

impl Jobs {
    fn set(&self, id: &str, f: impl FnOnce(&mut Job)) {
        let mut jobs = self.jobs.lock().expect("jobs");
        let job = jobs.entry(id.to_string()).or_insert(Job {
            status: "running",
            stage: "queued",
            done: 0,
            total: None,
            import_id: None,
            error: None,
            dry_run: None,
            upload: None,
        });
        f(job);
    }

    /// The imports running now, by id.
    pub(crate) fn running(&self) -> Vec<(String, Job)> {
        let mut out: Vec<(String, Job)> = self
            .jobs
            .lock()
            .expect("jobs")
            .iter()
            .filter(|(_, j)| j.status == "running")
            .map(|(id, j)| (id.clone(), j.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub(crate) fn get(&self, id: &str) -> Option<Job> {
        self.jobs.lock().expect("jobs").get(id).cloned()
    }
}

/// Options of an upload.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct ImportQuery {
    /// generic, civicrm, npsp, mailchimp, bloomerang or donorperfect (default: detected).
    profile: Option<String>,
    /// Work out and report, write nothing.
    dry_run: Option<bool>,
    /// The file's name, for the record.
    name: Option<String>,
    /// Merge without asking at or above this probability (default 0.99).
    auto_merge_above: Option<f64>,
    /// Review at or above this probability (default 0.5).
    review_above: Option<f64>,
    /// A mapping file kept in the data directory's `mappings/` folder, by name (`febrl` for
    /// `mappings/febrl.toml`).
    mapping: Option<String>,
    /// How to read dates like 03/04/1980 in every date column: `day-first` or `month-first`
    /// (default: each column's order is worked out from its values, then the profile's habit,
    /// then the schema).
    date_order: Option<String>,
    /// Import the good rows even when more than half of the rows are refused (without it
    /// such an import fails before writing anything).
    accept_errors: Option<bool>,
}

/// An import accepted for processing.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ImportAccepted {
    /// Poll `GET /v1/imports/{import_id}`.
    import_id: String,
    /// running.
    status: String,
}

/// An import: progress while it runs, then its summary and report.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ImportView {
    /// running, completed, dry_run, failed, undone.
    status: String,
    /// The summary (counts, problems, stages), once finished.
    #[schema(value_type = Object)]
    import: Value,
    /// One entry per input row: row, outcome, subject_id, matched_subject_id, error_code.
    #[schema(value_type = Vec<Object>)]
    report: Value,
}

/// Mapping files stored in the data directory.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MappingList {
    /// Their names, sorted (use one as `mapping=` when starting an import).
    names: Vec<String>,
}

/// Imports.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ImportList {
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    items: Value,
}

/// Review items.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReviewList {
    /// Most likely duplicates first.
    #[schema(value_type = Vec<Object>)]
    items: Value,
}

/// A decision on a review item.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ReviewDecision {
    /// accept (merge the second subject into the first), link (a household proposal: link
    /// both into one household) or reject (different people, or not one household).
    #[schema(pattern = "^(accept|link|reject)$")]
    decision: String,
}

/// Two subjects to merge.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct MergeBody {
    /// The subject kept.
    #[schema(pattern = "^\\s*[0-7OoIiLl][0-9A-TV-Za-tv-z]{25}\\s*$")]
    keep: String,
    /// The subject merged into it.
    #[schema(pattern = "^\\s*[0-7OoIiLl][0-9A-TV-Za-tv-z]{25}\\s*$")]
    gone: String,
}

/// A merge, a review decision, an undo: the record written.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Record {
    #[schema(value_type = Object)]
    #[serde(flatten)]
    record: Value,
}

/// Which two subjects.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PairQuery {
    /// First subject id.
    #[param(pattern = "^\\s*[0-7OoIiLl][0-9A-TV-Za-tv-z]{25}\\s*$")]
    a: String,
    /// Second subject id.
    #[param(pattern = "^\\s*[0-7OoIiLl][0-9A-TV-Za-tv-z]{25}\\s*$")]
    b: String,
}

fn sid(name: &str, raw: &str) -> Result<domain::SubjectId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_param(name, "not a subject id (26 characters of base32)"))
}

fn summary(record: &hub::ImportRecord) -> Value {
    let mut v = json!(record);
    if let Some(o) = v.as_object_mut() {
        for private in ["header_targets", "params", "codes", "fingerprint"] {
            o.remove(private);
        }
    }
    v
}

/// Uploads a file and starts importing it (admin, data-manager). The body is the file
/// (CSV with any delimiter, UTF-8 or Windows-1252).
#[utoipa::path(post, path = "/v1/imports", tag = "imports", params(ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "The file"),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted; poll its status", body = ImportAccepted),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins and data managers only", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(crate) async fn start_import(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: Result<Query<ImportQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<(StatusCode, Json<ImportAccepted>), ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_param("query", &e.body_text()))?;
    let profile = q
        .profile
        .as_deref()
        .map(|p| {
            Profile::parse(p).ok_or_else(|| {
                ApiError::bad_param(
                    "profile",
                    "generic, civicrm, npsp, mailchimp, bloomerang or donorperfect",
                )
            })
        })
        .transpose()?;
    let thresholds = Thresholds {
        auto_merge: q.auto_merge_above.unwrap_or(0.99),
        review: q.review_above.unwrap_or(0.5),
    };
    for (name, v) in [
        ("auto_merge_above", thresholds.auto_merge),
        ("review_above", thresholds.review),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(ApiError::bad_param(name, "a probability between 0 and 1"));
        }
    }
    let date_order = q
        .date_order
        .as_deref()
        .map(|o| {
            hub::import::parse_order(o)
                .ok_or_else(|| ApiError::bad_param("date_order", "day-first or month-first"))
        })
        .transpose()?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_param(
            "body",
            "the file is empty: send the CSV file as the request body",
        ));
    }
    let name = q.name.unwrap_or_else(|| "upload.csv".into());
    if name.len() > 200 || name.contains(['/', '\\', '@']) {
        return Err(ApiError::bad_param("name", "a short file name"));
    }
    let (mapping, mapping_text) = match &q.mapping {
        None => (None, String::new()),
        Some(m) => {
            let (file, text) = state.hub.load_mapping(m).map_err(|e| match e {
                hub::Error::BadRequest(why) => {
                    ApiError::bad_param("mapping", why.trim_start_matches("mapping: "))
                }
                other => other.into(),
            })?;
            (Some(file), text)
        }
    };
    let hub = state.hub.clone();
    let check_actor = actor.clone();
    let id = blocking(move || {
        hub.authorize_import(&check_actor)?;
        hub.new_import_id()
    })
    .await?;
    let options = ImportOptions {
        profile,
        mapping,
        mapping_text,
        dry_run: q.dry_run.unwrap_or(false),
        thresholds,
        name,
        id: Some(id.clone()),
        date_order,
        max_error_share: (!q.accept_errors.unwrap_or(false)).then_some(0.5),
    };
    spawn_import(&state, actor, options, body);
    Ok((
        StatusCode::ACCEPTED,
        Json(ImportAccepted {
            import_id: id,
            status: "running".into(),
        }),
    ))
}

/// Runs an import on its own thread under the job id `options.id`; its progress, outcome
/// and (for a dry run) summary, report and upload are kept in the server's jobs.
pub(crate) fn spawn_import(state: &AppState, actor: Actor, options: ImportOptions, body: Bytes) {
    let jobs = state.jobs.clone();
    let job_id = options.id.clone().unwrap_or_default();
    jobs.set(&job_id, |_| {});
    let hub = state.hub.clone();
    std::thread::spawn(move || {
        let bytes = body;
        let kept = bytes.clone();
        let source = move || -> std::io::Result<Box<dyn std::io::Read>> {
            Ok(Box::new(std::io::Cursor::new(bytes.clone())))
        };
        let progress = |p: Progress| {
            jobs.set(&job_id, |j| {
                j.stage = p.stage;
                j.done = p.done;
                j.total = p.total;
            })
        };
        let result = hub.import(&actor, &source, &options, &progress);
        jobs.set(&job_id, |j| match result {
            Ok((record, report)) => {
                j.status = "finished";
                j.import_id = Some(record.id.clone());
                if options.dry_run {
                    // A dry run's report is in memory (nothing is stored).
                    let rows = report.to_vec().unwrap_or_default();
                    j.dry_run = Some(json!({"summary": summary(&record), "report": rows}));
                    j.upload = Some((kept, options.clone()));
                }
            }
            Err(e) => {
                j.status = "failed";
                j.error = Some(json!({"code": e.code(), "message": e.to_string()}));
            }
        });
    });
}

/// An import's status: progress while it runs, then its summary and per-row report
/// (admin, data-manager).
#[utoipa::path(get, path = "/v1/imports/{id}", tag = "imports",
    params(("id" = String, Path, description = "Import id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Status, summary, report", body = ImportView),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins and data managers only", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(crate) async fn get_import(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<ImportView>, ApiError> {
    let job = state.jobs.get(&id);
    let hub = state.hub.clone();
    let check_actor = actor.clone();
    blocking(move || hub.authorize_import_read(&check_actor)).await?;
    match job {
        Some(j) if j.status == "running" => {
            return Ok(Json(ImportView {
                status: "running".into(),
                import: json!({"stage": j.stage, "done": j.done, "total": j.total}),
                report: json!([]),
            }))
        }
        Some(j) if j.status == "failed" => {
            return Ok(Json(ImportView {
                status: "failed".into(),
                import: json!({"error": j.error}),
                report: json!([]),
            }))
        }
        Some(Job {
            dry_run: Some(dry), ..
        }) => {
            return Ok(Json(ImportView {
                status: "dry_run".into(),
                import: dry["summary"].clone(),
                report: dry["report"].clone(),
            }))
        }
        _ => {}
    }
    let real = job.and_then(|j| j.import_id).unwrap_or(id);
    let hub = state.hub.clone();
    let (record, report) = blocking(move || {
        let record = hub.import_record(&actor, &real)?;
        let report = hub.import_report(&actor, &real)?.to_vec()?;
        Ok((record, report))
    })
    .await?;
    Ok(Json(ImportView {
        status: record.status.clone(),
        import: summary(&record),
        report: json!(report),
    }))
}

/// Imports, newest first (admin, data-manager).
#[utoipa::path(get, path = "/v1/imports", tag = "imports",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Imports", body = ImportList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins and data managers only", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(crate) async fn list_imports(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Json<ImportList>, ApiError> {
    let hub = state.hub.clone();
    let list = blocking(move || hub.list_imports(&actor)).await?;
    Ok(Json(ImportList {
        items: Value::Array(list.iter().map(summary).collect()),
    }))
}

/// Undoes an import (admin, data-manager): subjects it created are taken back, subjects it
/// changed get their exact prior record back.
#[utoipa::path(post, path = "/v1/imports/{id}/undo", tag = "imports",
    params(("id" = String, Path, description = "Import id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Undone", body = Record),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins and data managers only", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
        (status = 409, description = "Already undone, or a subject changed since", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(crate) async fn undo_import(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<Record>, ApiError> {
    let hub = state.hub.clone();
    let r = blocking(move || hub.undo_import(&actor, &id)).await?;
    Ok(Json(Record {
        record: summary(&r),
    }))
}

/// The review queue: open pairs, most likely duplicates first (admin, data-manager).
#[utoipa::path(get, path = "/v1/reviews", tag = "imports",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Open review items", body = ReviewList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins and data managers only", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(crate) async fn list_reviews(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Json<ReviewList>, ApiError> {
    let hub = state.hub.clone();
    let items = blocking(move || hub.review_list(&actor, false)).await?;
    Ok(Json(ReviewList {
        items: json!(items),
    }))
}

/// Decides a review item: accept merges the second subject into the first; reject keeps them
/// apart (admin, data-manager).
#[utoipa::path(post, path = "/v1/reviews/{id}", tag = "imports", request_body = ReviewDecision,
    params(("id" = String, Path, description = "Review item id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The merge (accept) or the item (reject)", body = Record),
        (status = 400, description = "Decision is neither accept nor reject", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins and data managers only", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 409, description = "Already decided", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Malformed body", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(crate) async fn decide_review(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    body: Result<Json<ReviewDecision>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Record>, ApiError> {
    let Json(d) = body?;
    let hub = state.hub.clone();
    let record = match d.decision.as_str() {
        "accept" => json!(blocking(move || hub.review_accept(&actor, &id)).await?),
        "reject" => json!(blocking(move || hub.review_reject(&actor, &id)).await?),
        "link" => json!(blocking(move || hub.review_link(&actor, &id)).await?),
        _ => return Err(ApiError::bad_param("decision", "accept, link or reject")),
    };
    Ok(Json(Record { record }))
}

/// Merges subject `gone` into `keep` (admin, data-manager): survivorship per field, gifts
/// copied, both consent trails kept and the most restrictive consent wins.
#[utoipa::path(post, path = "/v1/merges", tag = "imports", request_body = MergeBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Merged; undo with POST /v1/merges/{id}/undo", body = Record),
        (status = 400, description = "Bad subject id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins and data managers only", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 409, description = "A subject changed meanwhile", body = ErrorBody),
        (status = 410, description = "A subject was erased", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Malformed body", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(crate) async fn merge(
    State(state): State<AppState>,
    Caller(actor): Caller,
    body: Result<Json<MergeBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Record>), ApiError> {
    let Json(b) = body?;
    let (keep, gone) = (sid("keep", &b.keep)?, sid("gone", &b.gone)?);
    let hub = state.hub.clone();
    let m = blocking(move || hub.merge_subjects(&actor, &keep, &gone, None)).await?;
    Ok((StatusCode::CREATED, Json(Record { record: json!(m) })))
}

/// Undoes a merge (admin, data-manager): both subjects exactly as they were; or a split
/// (the record back in its subject, the subject split off gone).
#[utoipa::path(post, path = "/v1/merges/{id}/undo", tag = "imports",
    params(("id" = String, Path, description = "Merge id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Undone", body = Record),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins and data managers only", body = ErrorBody),
        (status = 404, description = "No such merge", body = ErrorBody),
        (status = 409, description = "Already undone, or the kept subject changed since", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(crate) async fn undo_merge(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<Record>, ApiError> {
    let hub = state.hub.clone();
    let m = blocking(move || hub.undo(&actor, &id)).await?;
    Ok(Json(Record { record: json!(m) }))
}

/// Stored subjects whose merged records cannot all be one person (admin, data-manager): per
/// subject the two records that contradict each other (numbers and where they came from),
/// why, and the repair (`split`, or `undo_import` for subjects merged before source records
/// were kept). Never a value.
#[utoipa::path(get, path = "/v1/match/check", tag = "imports",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Subjects read and the contradictions found", body = Record),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins and data managers only", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(crate) async fn match_check(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Json<Record>, ApiError> {
    let hub = state.hub.clone();
    let r = blocking(move || hub.match_check(&actor)).await?;
    Ok(Json(Record { record: json!(r) }))
}

/// A subject's source records, numbered for a split: where each came from and which fields
/// it holds (names only; admin, data-manager).
#[utoipa::path(get, path = "/v1/subjects/{id}/sources", tag = "imports",
    params(SubjectIdPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The records", body = Record),
        (status = 400, description = "Bad subject id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins and data managers only", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 410, description = "The subject was erased", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(crate) async fn source_records(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<Record>, ApiError> {
    let id = sid("id", &id)?;
    let hub = state.hub.clone();
    let list = blocking(move || hub.source_records(&actor, &id)).await?;
    let rows: Vec<Value> = list
        .into_iter()
        .map(|(n, from, fields)| json!({"record": n, "source": from, "fields": fields}))
        .collect();
    Ok(Json(Record {
        record: json!({ "records": rows }),
    }))
}

/// Which source record to take out.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SplitBody {
    /// The record's number among the subject's source records (1 = the first).
    record: usize,
}

/// Takes one source record out of a subject as a subject of its own (admin, data-manager):
/// a wrong merge repaired. The record's consent events go with it, gifts stay; undo with
/// POST /v1/merges/{id}/undo.
#[utoipa::path(post, path = "/v1/subjects/{id}/split", tag = "imports", request_body = SplitBody,
    params(SubjectIdPath),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Split; the record names the new subject", body = Record),
        (status = 400, description = "Bad subject id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins and data managers only", body = ErrorBody),
        (status = 404, description = "No such subject, or no such source record (the message gives the range)", body = ErrorBody),
        (status = 409, description = "The subject changed meanwhile, or was made from one record", body = ErrorBody),
        (status = 410, description = "The subject was erased", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Malformed body", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(crate) async fn split(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    body: Result<Json<SplitBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Record>), ApiError> {
    let Json(b) = body?;
    let id = sid("id", &id)?;
    let hub = state.hub.clone();
    let s = blocking(move || hub.split_subject(&actor, &id, b.record)).await?;
    Ok((StatusCode::CREATED, Json(Record { record: json!(s) })))
}

/// How two subjects score, field by field: levels and weights, never values (admin,
/// data-manager).
#[utoipa::path(get, path = "/v1/match/explain", tag = "imports", params(PairQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Score, probability, band and per-field weights", body = Record),
        (status = 400, description = "Bad subject id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins and data managers only", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 410, description = "A subject was erased", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(crate) async fn explain(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: Result<Query<PairQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Record>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_param("a, b", &e.body_text()))?;
    let (a, b) = (sid("a", &q.a)?, sid("b", &q.b)?);
    let hub = state.hub.clone();
    let e = blocking(move || hub.explain_match(&actor, &a, &b)).await?;
    Ok(Json(Record { record: json!(e) }))
}

/// Stores a mapping file under a name (admin, data-manager), replacing one of that name: the
/// body is the file's TOML text, checked before it is stored. An import started with
/// `mapping=NAME` then uses it.
#[utoipa::path(put, path = "/v1/mappings/{name}", tag = "imports",
    params(("name" = String, Path, description = "1 to 64 letters, digits, - and _")),
    request_body(content = String, content_type = "text/plain", description = "The mapping file (TOML)"),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "Bad name, or not a valid mapping file (the message says where)", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins and data managers only", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(crate) async fn put_mapping(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_param("body", "a mapping file in UTF-8 text"))?;
    let hub = state.hub.clone();
    blocking(move || hub.put_mapping(&actor, &name, &text)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The names of the stored mapping files (admin, data-manager).
#[utoipa::path(get, path = "/v1/mappings", tag = "imports",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Mapping names", body = MappingList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins and data managers only", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(crate) async fn list_mappings(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Json<MappingList>, ApiError> {
    let hub = state.hub.clone();
    let names = blocking(move || hub.list_mappings(&actor)).await?;
    Ok(Json(MappingList { names }))
}
