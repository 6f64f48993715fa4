//! The node's admin endpoint: snapshot on request, partition state, metrics.
//!
//! - `POST /snapshots/<partition>[?min_lsn=N]`: takes a snapshot; answers the
//!   outcome as JSON, or `{"error", "reason"}` with 401 (no or wrong admin
//!   token, when the node has one), 404 (unknown partition), 409 (already
//!   running, LSN too low), 503 (shutting down) or 500.
//! - `POST /partitions/<partition>/fast-forward?log_start=N`: brings the
//!   partition past a trim gap (see `rocksnap::restore::fast_forward`);
//!   answers the new applied LSN, or 409 when no snapshot covers the gap.
//! - `GET /partitions`: per partition, the applied LSN, the latest snapshot's
//!   LSN and the safe log-trim point.
//! - `GET /metrics`: Prometheus text format.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use super::NodeState;
use rocksnap::format::{Lsn, PartitionId};
use rocksnap::{SnapshotError, SnapshotRequest, Supervisor};

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<NodeState>,
    mut stop: watch::Receiver<bool>,
) {
    // State-changing requests need the token, when there is one; reads
    // (partition state, metrics) do not, so that Prometheus scrapes as is.
    let changes = Router::new()
        .route("/snapshots/{partition}", post(snapshot))
        .route("/partitions/{partition}/fast-forward", post(fast_forward))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let app = Router::new()
        .merge(changes)
        .route("/partitions", get(partitions))
        .route("/metrics", get(metrics))
        .with_state(state);
    let graceful = async move {
        let _ = stop.wait_for(|s| *s).await.map(|_| ());
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(graceful)
        .await
    {
        tracing::error!(error = %e, "admin endpoint failed");
    }
}

/// Lets a request through only with `Authorization: Bearer <token>`, when
/// the node has a token; compared in constant time.
async fn require_token(
    State(state): State<Arc<NodeState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.admin_token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let allowed = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(token.0.as_bytes())));
    if !allowed {
        let body = ErrorBody {
            error: "this endpoint needs the node's admin token (Authorization: Bearer …)".into(),
            reason: "unauthorized",
        };
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    next.run(request).await
}

#[derive(Debug, Deserialize)]
struct SnapshotQuery {
    min_lsn: Option<u64>,
}

#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
    reason: &'static str,
}

async fn snapshot(
    State(state): State<Arc<NodeState>>,
    Path(partition): Path<u64>,
    Query(query): Query<SnapshotQuery>,
) -> Response {
    let partition = PartitionId(partition);
    let request = SnapshotRequest {
        partition,
        min_lsn: query.min_lsn.map(Lsn),
    };
    match Supervisor::snapshot(&state.supervisor, request).await {
        Ok(outcome) => {
            state.refresh(partition).await;
            Json(outcome).into_response()
        }
        Err(e) => {
            let status = match &e {
                SnapshotError::UnknownPartition { .. } => StatusCode::NOT_FOUND,
                SnapshotError::InProgress(_) | SnapshotError::LsnBelowMinimum { .. } => {
                    StatusCode::CONFLICT
                }
                SnapshotError::Stopped(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let body = ErrorBody {
                error: e.to_string(),
                reason: e.reason(),
            };
            (status, Json(body)).into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
struct FastForwardQuery {
    /// The first LSN the host's log still holds.
    log_start: u64,
}

/// `POST /partitions/<partition>/fast-forward?log_start=N`: brings the
/// partition past a trim gap, restoring it in place if it must.
async fn fast_forward(
    State(state): State<Arc<NodeState>>,
    Path(partition): Path<u64>,
    Query(query): Query<FastForwardQuery>,
) -> Response {
    let partition = PartitionId(partition);
    if !state.ids.contains(&partition) {
        let body = ErrorBody {
            error: format!("this node holds no partition {partition}"),
            reason: "unknown_partition",
        };
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    }
    let opts = state.download_options();
    match rocksnap::restore::fast_forward(
        &state.partitions,
        &state.repository,
        partition,
        Lsn(query.log_start),
        &opts,
    )
    .await
    {
        Ok(done) => {
            state.refresh(partition).await;
            Json(done).into_response()
        }
        Err(e) => {
            let (status, reason) = match &e {
                rocksnap::restore::RestoreError::NotCovered { .. } => {
                    (StatusCode::CONFLICT, "not_covered")
                }
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "restore"),
            };
            let body = ErrorBody {
                error: e.to_string(),
                reason,
            };
            (status, Json(body)).into_response()
        }
    }
}

/// One partition as `GET /partitions` shows it.
#[derive(Debug, Serialize)]
pub struct PartitionStatus {
    pub partition_id: PartitionId,
    /// The LSN stored in the partition.
    pub applied_lsn: Option<Lsn>,
    pub applied_records: u64,
    /// The host may trim its log up to here: the oldest kept snapshot's LSN.
    pub safe_trim_lsn: Option<Lsn>,
    /// Where the partition's data came from at start.
    pub origin: Option<rocksnap::bootstrap::Origin>,
    /// The LSN after which the partition's log resumed at start.
    pub resume_after: Option<Lsn>,
    /// The partition's last scrub, if the node scrubs.
    pub last_scrub: Option<super::ScrubStatus>,
}

async fn partitions(State(state): State<Arc<NodeState>>) -> Response {
    let mut out = Vec::with_capacity(state.ids.len());
    for &id in &state.ids {
        let applied_lsn = state
            .partitions
            .applied_lsn(&rocksnap::partition::cf_name(id))
            .ok()
            .flatten();
        out.push(PartitionStatus {
            partition_id: id,
            applied_lsn,
            applied_records: state.partitions.applied_records(id),
            safe_trim_lsn: state.trim_point(id),
            origin: state.origins.get(&id).cloned(),
            resume_after: state.origins.get(&id).and_then(|o| o.resume_after()),
            last_scrub: state.scrubs.lock().expect("not poisoned").get(&id).cloned(),
        });
    }
    Json(out).into_response()
}

async fn metrics(State(state): State<Arc<NodeState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
