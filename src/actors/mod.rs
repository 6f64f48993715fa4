//! The snapshot pipeline's actors, one per file, with the messages each receives.
//!
//! ```text
//!  request ─► supervisor ─► exporter ─► chunker ═► uploader ─► store
//!                 │                     (credits)     │
//!                 └──────────► publisher ◄── all files stored
//! ```
//!
//! `═►` is a bounded mailbox (see [`crate::flow`]): the chunker holds an
//! uploader credit for every part it has read and not yet seen stored.

pub mod chunker;
pub mod exporter;
pub mod publisher;
pub mod supervisor;
pub mod uploader;
