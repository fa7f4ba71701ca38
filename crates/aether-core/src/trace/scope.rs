//! The current [`TraceContext`] of a task: set by [`TraceContext::scope`] for as long as the
//! future runs (during each poll, like a task-local), read by [`TraceContext::current`].
//! Runtime-agnostic: a thread-local swapped in and out around each poll.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::TraceContext;

thread_local! {
    static CURRENT: Cell<Option<TraceContext>> = const { Cell::new(None) };
}

pin_project_lite::pin_project! {
    /// A future that runs with a current [`TraceContext`]; see [`TraceContext::scope`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct Scoped<F> {
        context: Option<TraceContext>,
        #[pin]
        future: F,
    }
}

/// Puts a context in place, and the previous one back when dropped (also on a panic).
struct Swap(Option<TraceContext>);

impl Swap {
    fn set(context: Option<TraceContext>) -> Self {
        Self(CURRENT.with(|c| c.replace(context)))
    }
}

impl Drop for Swap {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _swap = Swap::set(*this.context);
        this.future.poll(cx)
    }
}

impl TraceContext {
    /// The context of the running task: the innermost [`scope`](Self::scope) it runs in.
    ///
    /// # Examples
    ///
    /// ```
    /// use aether_core::TraceContext;
    ///
    /// # futures::executor::block_on(async {
    /// assert_eq!(TraceContext::current(), None);
    /// let ctx = TraceContext::new_root();
    /// ctx.scope(async { assert_eq!(TraceContext::current(), Some(ctx)) }).await;
    /// assert_eq!(TraceContext::current(), None);
    /// # });
    /// ```
    pub fn current() -> Option<Self> {
        CURRENT.with(Cell::get)
    }

    /// Runs `future` with this context as the current one: what Aether's calls made inside it
    /// (an actor's `ask`, a bus `publish`) continue.
    pub fn scope<F: Future>(self, future: F) -> Scoped<F> {
        Scoped {
            context: Some(self),
            future,
        }
    }

    /// Runs `future` with `context` (possibly none) as the current one.
    pub fn scope_opt<F: Future>(context: Option<Self>, future: F) -> Scoped<F> {
        Scoped { context, future }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scopes_nest_and_do_not_leak_between_tasks() {
        let outer = TraceContext::new_root();
        let inner = outer.child();
        outer
            .scope(async move {
                assert_eq!(TraceContext::current(), Some(outer));
                inner
                    .scope(async move {
                        tokio::task::yield_now().await;
                        assert_eq!(TraceContext::current(), Some(inner));
                    })
                    .await;
                // A task spawned from here runs without it unless scoped itself.
                let other = tokio::spawn(async { TraceContext::current() })
                    .await
                    .unwrap();
                assert_eq!(other, None);
                tokio::task::yield_now().await;
                assert_eq!(TraceContext::current(), Some(outer));
            })
            .await;
        assert_eq!(TraceContext::current(), None);
    }
}
