//! A `tracing` layer that keeps every span (name, parent, fields as recorded) and every
//! event, for tests that check the span tree the SDK emits.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// One span as the subscriber saw it. `parent` indexes [`Captured::spans`] (span ids are
/// reused by the registry once a span closes, so they are not kept).
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub name: &'static str,
    pub parent: Option<usize>,
    pub fields: BTreeMap<String, String>,
}

/// One event, with the span it happened in.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub span: Option<usize>,
    pub fields: BTreeMap<String, String>,
}

/// Everything captured so far.
#[derive(Debug, Default)]
pub struct Captured {
    pub spans: Vec<SpanRecord>,
    pub events: Vec<EventRecord>,
}

impl Captured {
    /// Indexes of the spans named `name`.
    pub fn named(&self, name: &str) -> Vec<usize> {
        (0..self.spans.len()).filter(|&i| self.spans[i].name == name).collect()
    }

    /// Indexes of the direct children of span `parent`.
    pub fn children(&self, parent: usize) -> Vec<usize> {
        (0..self.spans.len()).filter(|&i| self.spans[i].parent == Some(parent)).collect()
    }

    /// Every recorded value, span fields and event fields alike.
    pub fn all_values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans
            .iter()
            .flat_map(|s| s.fields.iter())
            .chain(self.events.iter().flat_map(|e| e.fields.iter()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// The layer; clones share what they capture.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Captured>>);

impl Capture {
    pub fn snapshot(&self) -> std::sync::MutexGuard<'_, Captured> {
        self.0.lock().unwrap()
    }
}

/// The index of a span in [`Captured::spans`], kept in the registry's span extensions.
struct Index(usize);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("a new span is in the registry");
        let parent = span.parent().and_then(|p| p.extensions().get::<Index>().map(|i| i.0));
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut captured = self.0.lock().unwrap();
        captured.spans.push(SpanRecord { name: attrs.metadata().name(), parent, fields });
        span.extensions_mut().insert(Index(captured.spans.len() - 1));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(index) = span.extensions().get::<Index>().map(|i| i.0) else { return };
        let mut captured = self.0.lock().unwrap();
        values.record(&mut Fields(&mut captured.spans[index].fields));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let span = ctx.event_span(event).and_then(|s| s.extensions().get::<Index>().map(|i| i.0));
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().events.push(EventRecord { span, fields });
    }
}
