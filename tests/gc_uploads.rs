//! Garbage collection aborts multipart uploads left open (as by a killed
//! process) once they are older than the grace period, on a local directory
//! and on a real S3 server.

mod common;

use std::time::Duration;

use common::backend::Backend;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use rocksnap::format::PartitionId;
use rocksnap::gc::{collect, GcOptions};

async fn open_uploads_are_aborted(backend: Backend) {
    let repo = backend.repository();
    let key =
        Path::from(format!("{}/1/ssts/orphan.sst", repo.layout().prefix()).trim_start_matches('/'));
    let mut upload = repo.store().put_multipart(&key).await.unwrap();
    upload
        .put_part(PutPayload::from(vec![1u8; backend.part_size()]))
        .await
        .unwrap();
    // The process "dies": the upload is neither completed nor aborted (a
    // dropped handle would clean up a local upload; a killed process does not).
    std::mem::forget(upload);
    assert_eq!(backend.open_uploads().await, 1);

    // moto reports every upload as initiated in 2010, so the grace period is
    // checked against a store that tells the time: the local directory.
    if matches!(backend, Backend::Local { .. }) {
        let young = collect(
            &repo,
            PartitionId(1),
            &GcOptions {
                grace: Duration::from_secs(3600),
                ..GcOptions::default()
            },
        )
        .await
        .unwrap();
        assert!(
            young.aborted_uploads.is_empty(),
            "a young upload was aborted"
        );
    }
    let dry = collect(
        &repo,
        PartitionId(1),
        &GcOptions {
            grace: Duration::ZERO,
            dry_run: true,
            ..GcOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.aborted_uploads.len(), 1, "{dry:?}");
    assert_eq!(
        backend.open_uploads().await,
        1,
        "a dry run aborted an upload"
    );
    // With no grace period, the open upload is past it.
    let report = collect(
        &repo,
        PartitionId(1),
        &GcOptions {
            grace: Duration::ZERO,
            ..GcOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.aborted_uploads, vec![key.to_string()]);
    assert_eq!(backend.open_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_open_uploads_are_aborted() {
    let dir = tempfile::tempdir().unwrap();
    open_uploads_are_aborted(Backend::local(dir.path().join("repo"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_open_uploads_are_aborted() {
    open_uploads_are_aborted(Backend::s3("uploads").await).await;
}
