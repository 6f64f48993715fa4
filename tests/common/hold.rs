//! A tracing layer, the process's global subscriber, that records every
//! event's message and `cf` field (so that a test can tell which path the
//! library took) and can stop the thread emitting a chosen event until the
//! test lets it go: the swap announces that it holds the partition's gate,
//! and is held right there, so the test knows a snapshot requested now is
//! requested during the swap.
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

#[derive(Default)]
struct State {
    /// Events to stop at: the message the thread is held at while the
    /// entry is present.
    hold_at: Option<(&'static str, String)>,
    held: bool,
    /// Every message seen, with its `cf` field.
    seen: Vec<(String, String)>,
}

#[derive(Default, Clone)]
pub struct Hold(Arc<(Mutex<State>, Condvar)>);

struct Fields {
    message: String,
    cf: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "cf" => self.cf = format!("{value:?}"),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Hold {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields {
            message: String::new(),
            cf: String::new(),
        };
        event.record(&mut fields);
        let (state, changed) = &*self.0;
        let mut s = state.lock().unwrap();
        let armed = s
            .hold_at
            .as_ref()
            .is_some_and(|(m, cf)| *m == fields.message && *cf == fields.cf);
        s.seen.push((fields.message, fields.cf));
        if armed {
            s.held = true;
            changed.notify_all();
            while s.hold_at.is_some() {
                s = changed.wait(s).unwrap();
            }
            s.held = false;
        }
    }
}

/// Releases the hold when dropped.
pub struct Armed(Hold);

impl Drop for Armed {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl Hold {
    /// The process's one hold layer, installed as the global subscriber.
    pub fn installed() -> Hold {
        static HOLD: OnceLock<Hold> = OnceLock::new();
        HOLD.get_or_init(|| {
            let hold = Hold::default();
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry().with(hold.clone()),
            )
            .expect("no other global subscriber");
            hold
        })
        .clone()
    }

    /// Holds the next event `message` about column family `cf` until
    /// released, and forgets what was seen before. Released when the
    /// returned guard drops too, so that a failing test leaves no thread
    /// waiting for ever.
    pub fn arm(&self, message: &'static str, cf: &str) -> Armed {
        let mut s = self.0 .0.lock().unwrap();
        s.hold_at = Some((message, cf.to_string()));
        s.seen.clear();
        Armed(self.clone())
    }

    pub fn release(&self) {
        let (state, changed) = &*self.0;
        state.lock().unwrap().hold_at = None;
        changed.notify_all();
    }

    pub fn is_held(&self) -> bool {
        self.0 .0.lock().unwrap().held
    }

    pub fn has_seen(&self, message: &str, cf: &str) -> bool {
        self.0
             .0
            .lock()
            .unwrap()
            .seen
            .iter()
            .any(|(m, c)| m == message && c == cf)
    }
}
