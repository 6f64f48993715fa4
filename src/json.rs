//! Small serde helpers shared by the outcomes rocksnap reports as JSON.

/// Serializes a duration as seconds (a float), as every JSON output does.
pub(crate) mod duration_seconds {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}
