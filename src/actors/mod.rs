//! The snapshot pipeline's actors, one per file, with the messages each
//! receives. The README's "How it works" draws them; in short:
//!
//! ```text
//!  request ─► supervisor ──spawns──► coordinator (one per snapshot)
//!                                      │ 1. Export ─────────► exporter
//!                                      │ 2. File (credit) ══► chunker ══Begin/Part/End══► uploader ─► store
//!                                      │        (reply: the file's outcome, from the uploader) ◄──┘
//!                                      │ 3. Publish ────────► publisher (one per partition) ─► latest.json
//!                                      └─ Finished(result) ─► supervisor ─► reply to the request
//! ```
//!
//! `══►` is a bounded mailbox (see [`crate::flow`]): a sender takes a credit
//! of the receiving stage first, and the credit travels with the message.
//! Every stage is a linked child of the supervisor, which restarts it when
//! it fails. Work a stage runs concurrently (exports, part requests) is a
//! task in the stage's own `JoinSet`, aborted when the stage stops; a task
//! that panics makes its stage fail, as a panic in a handler does.

pub(crate) mod chunker;
pub(crate) mod coordinator;
pub(crate) mod exporter;
pub(crate) mod publisher;
pub(crate) mod supervisor;
pub(crate) mod uploader;

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use ractor::{ActorRef, Message};
use tokio::task::JoinSet;

/// Runs `work` as a task the actor owns, sending the message it yields back
/// to the actor; if `work` panics, the actor gets `on_panic(message)`
/// instead, and is expected to fail with it.
pub(crate) fn spawn_owned<M: Message>(
    tasks: &mut JoinSet<()>,
    myself: &ActorRef<M>,
    work: impl Future<Output = Option<M>> + Send + 'static,
    on_panic: fn(String) -> M,
) {
    let myself = myself.clone();
    tasks.spawn(async move {
        let msg = match AssertUnwindSafe(work).catch_unwind().await {
            Ok(Some(msg)) => msg,
            Ok(None) => return,
            Err(panic) => on_panic(panic_message(panic.as_ref())),
        };
        // The actor may have stopped since; then nobody waits for this.
        let _ = myself.cast(msg);
    });
}

/// The text of a panic's payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}
