//! Stopping a background task and telling a panic apart from a cancellation, so that a
//! graceful shutdown reports a task that died of a bug instead of swallowing it.

use tokio::task::{JoinError, JoinHandle};

use crate::ClusterError;

/// Aborts `task` (if still running) and waits for it. A task that panicked — before or while
/// being stopped — is reported as [`ClusterError::TaskPanicked`] naming `name`; a
/// cancellation is not an error, nor is the task's own output.
/// `task` must not have been awaited before.
pub(crate) async fn stop<T>(
    name: &'static str,
    task: &mut JoinHandle<T>,
) -> Result<(), ClusterError> {
    task.abort();
    match task.await {
        Err(join) if join.is_panic() => Err(panicked(name, join)),
        Ok(_) | Err(_) => Ok(()),
    }
}

/// The error for a task that panicked (`join.is_panic()`), with the panic's message.
pub(crate) fn panicked(name: &'static str, join: JoinError) -> ClusterError {
    let payload = join.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    ClusterError::TaskPanicked {
        task: name.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::stop;
    use crate::ClusterError;

    #[tokio::test]
    async fn a_panic_is_reported_and_a_cancellation_is_not() {
        let mut boom = tokio::spawn(async { panic!("boom {}", 42) });
        tokio::task::yield_now().await;
        match stop("boom", &mut boom).await {
            Err(ClusterError::TaskPanicked { task, message }) => {
                assert_eq!((task.as_str(), message.as_str()), ("boom", "boom 42"));
            }
            other => panic!("{other:?}"),
        }
        let mut running = tokio::spawn(std::future::pending::<()>());
        assert!(stop("running", &mut running).await.is_ok());
        let mut done = tokio::spawn(async { 7 });
        tokio::task::yield_now().await;
        assert!(stop("done", &mut done).await.is_ok());
    }
}
