//! An [`Origin`] in-process, for the tests of the lookup and the scorer:
//! it answers from a script after a delay on tokio's clock (pause it and
//! the delays cost no real time), and counts its calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::Origin;
use crate::event::{Event, EventBuilder};
use crate::upstream::UpstreamError;
use crate::verdict::Tags;

pub(crate) struct FakeOrigin {
    /// Answered in turn; the last one from then on.
    answers: Vec<Result<Tags, UpstreamError>>,
    delay: Duration,
    calls: AtomicUsize,
}

impl FakeOrigin {
    pub fn new(delay: Duration, answers: Vec<Result<Tags, UpstreamError>>) -> Arc<Self> {
        assert!(!answers.is_empty(), "a fake origin needs an answer");
        Arc::new(FakeOrigin {
            answers,
            delay,
            calls: AtomicUsize::new(0),
        })
    }

    /// Calls made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Origin for FakeOrigin {
    fn check<'a>(&'a self, _: &'a Event) -> BoxFuture<'a, Result<Tags, UpstreamError>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = self.answers[n.min(self.answers.len() - 1)].clone();
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            answer
        })
    }
}

/// RT's tags from their wire form.
pub(crate) fn tags(rt: &str) -> Tags {
    Tags::parse(rt).unwrap()
}

/// A click from `ip` with a browser's UA.
pub(crate) fn click(ip: &str) -> Event {
    EventBuilder::from_query(&format!(
        "event_type=click&ip={ip}&ua=Mozilla%2F5.0%20(X11%3B%20Linux%20x86_64)&offer_id=1&affiliate_id=2"
    ))
    .unwrap()
    .build()
    .unwrap()
}
