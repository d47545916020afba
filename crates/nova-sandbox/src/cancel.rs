//! Stopping an execution from another thread: a [`Cancel`] handle goes in with the request, and calling
//! [`Cancel::cancel`] (or dropping a [`CancelOnDrop`] guard) kills everything the execution started.

use std::sync::{Arc, Mutex};

/// A shareable cancellation handle. Clones share one state: cancelling any clone cancels them all, once and
/// for good.
#[derive(Clone, Default)]
pub struct Cancel(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    canceled: bool,
    /// What the running execution does when canceled (for the jail: close the helper's input, which makes it
    /// kill the jail). Set by the backend for the span of one execution.
    action: Option<Box<dyn FnOnce() + Send>>,
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Cancels: the execution running with this handle (if any) is killed, and one that starts later does not
    /// run. Idempotent.
    pub fn cancel(&self) {
        let action = {
            let mut state = self.0.lock().expect("cancel lock");
            state.canceled = true;
            state.action.take()
        };
        if let Some(action) = action {
            action();
        }
    }

    pub fn is_canceled(&self) -> bool {
        self.0.lock().expect("cancel lock").canceled
    }

    /// A guard that cancels when dropped, for async callers: dropping the future that owns it (the job was
    /// canceled) stops the execution running on a blocking thread.
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }

    /// For backends: runs `action` when this handle is canceled (at once if it already is) until the returned
    /// registration is dropped.
    pub(crate) fn register(&self, action: impl FnOnce() + Send + 'static) -> Registration<'_> {
        let mut state = self.0.lock().expect("cancel lock");
        if state.canceled {
            drop(state);
            action();
        } else {
            state.action = Some(Box::new(action));
        }
        Registration(self)
    }
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel").field("canceled", &self.is_canceled()).finish()
    }
}

/// Cancels its handle when dropped. See [`Cancel::on_drop`].
#[must_use = "the guard cancels when dropped"]
pub struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// An action registered with [`Cancel::register`]; dropping it unregisters the action.
pub(crate) struct Registration<'a>(&'a Cancel);

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.0 .0.lock().expect("cancel lock").action = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn the_action_runs_once_while_registered() {
        let runs = Arc::new(AtomicUsize::new(0));
        let cancel = Cancel::new();
        let counter = runs.clone();
        let registration = cancel.register(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        cancel.cancel();
        cancel.cancel();
        drop(registration);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(cancel.is_canceled());
    }

    #[test]
    fn registering_on_a_canceled_handle_runs_at_once_and_unregistering_disarms() {
        let runs = Arc::new(AtomicUsize::new(0));
        let cancel = Cancel::new();
        let counter = runs.clone();
        drop(cancel.register(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        cancel.cancel();
        assert_eq!(runs.load(Ordering::SeqCst), 0, "an unregistered action does not run");
        let counter = runs.clone();
        let _registration = cancel.register(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn dropping_the_guard_cancels_every_clone() {
        let cancel = Cancel::new();
        let other = cancel.clone();
        drop(cancel.on_drop());
        assert!(other.is_canceled());
    }
}
