//! The signals that stop queries, listened for through tokio: Ctrl-C (SIGINT) in the shell,
//! Ctrl-C or SIGTERM in `weir run`. Once listened for, a signal is weir's to handle (its
//! default, ending the process, or an inherited "ignored", no longer applies).

/// SIGINT, and SIGTERM if asked for.
pub(crate) struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Listen for Ctrl-C (inside the runtime).
    pub(crate) fn interrupt() -> Self {
        Self::listen(false)
    }

    /// Listen for Ctrl-C and SIGTERM (inside the runtime); for neither if either cannot be.
    pub(crate) fn interrupt_or_terminate() -> Self {
        Self::listen(true)
    }

    fn listen(terminate: bool) -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let term = terminate.then(|| signal(SignalKind::terminate()));
            match (signal(SignalKind::interrupt()), term) {
                (Ok(int), None) => Self { int: Some(int), term: None },
                (Ok(int), Some(Ok(term))) => Self { int: Some(int), term: Some(term) },
                _ => Self { int: None, term: None },
            }
        }
        #[cfg(not(unix))]
        {
            let _ = terminate;
            Self {}
        }
    }

    /// The next signal; false if none can come.
    pub(crate) async fn next(&mut self) -> bool {
        #[cfg(unix)]
        {
            let Some(int) = &mut self.int else { return false };
            match &mut self.term {
                Some(term) => tokio::select! {
                    i = int.recv() => i.is_some(),
                    t = term.recv() => t.is_some(),
                },
                None => int.recv().await.is_some(),
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await.is_ok()
    }
}
