//! A `tracing_subscriber::Layer` that records every span with its name, fields (also those
//! recorded later) and parent, for tests that check what spans say.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// One span as recorded.
#[derive(Debug, Clone)]
pub(crate) struct SpanRecord {
    pub(crate) name: &'static str,
    pub(crate) fields: BTreeMap<String, String>,
}

impl SpanRecord {
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// The spans recorded so far.
#[derive(Clone, Default)]
pub(crate) struct Spans {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    spans: Vec<SpanRecord>,
    /// Live span id → index in `spans` (ids are reused once a span closes).
    live: HashMap<u64, usize>,
}

impl Spans {
    /// Every span recorded, in creation order.
    pub(crate) fn all(&self) -> Vec<SpanRecord> {
        self.inner.lock().unwrap().spans.clone()
    }

    /// The spans named `name`.
    pub(crate) fn named(&self, name: &str) -> Vec<SpanRecord> {
        self.all().into_iter().filter(|s| s.name == name).collect()
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut inner = self.inner.lock().unwrap();
        let index = inner.spans.len();
        inner.spans.push(SpanRecord {
            name: attrs.metadata().name(),
            fields,
        });
        inner.live.insert(id.into_u64(), index);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(&index) = inner.live.get(&id.into_u64()) {
            values.record(&mut Fields(&mut inner.spans[index].fields));
        }
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        self.inner.lock().unwrap().live.remove(&id.into_u64());
    }
}

/// Installs a collecting subscriber for the whole test process (one test per binary).
pub(crate) fn install() -> Spans {
    use tracing_subscriber::layer::SubscriberExt;
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    spans
}
