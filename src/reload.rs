//! Living mappings: the mappings directory is watched (the directory, since editors and
//! Kubernetes ConfigMaps replace files by rename), and a change, SIGHUP or `POST /admin/reload`
//! recompiles every file and swaps the set atomically for new requests. A file whose edit is
//! rejected keeps serving its last good version; its error is logged and shown by `/readyz`.
//! Secrets are re-read on every reload.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::diagnostic::Severity;
use crate::route::Groups;
use crate::source::{self, LoadOptions, SourceSet};

/// The directory watcher; watching stops when it is dropped.
pub type Watcher = notify_debouncer_full::Debouncer<
    notify::RecommendedWatcher,
    notify_debouncer_full::RecommendedCache,
>;

/// Everything needed to (re)load the mappings.
pub struct Catalog {
    /// The mappings directory.
    pub dir: PathBuf,
    /// Recipient groups (for checking names, and for routing).
    pub groups: Arc<Groups>,
    /// Card limits, time zone, examples' severity.
    pub options: LoadOptions,
    /// The set requests use.
    pub current: ArcSwap<SourceSet>,
}

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Sources served now.
    pub sources: Vec<String>,
    /// Errors of the files rejected by this reload (`file:line:col: message`).
    pub errors: Vec<String>,
}

impl Catalog {
    /// Loads the directory for the first time.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn open(
        dir: PathBuf,
        groups: Arc<Groups>,
        options: LoadOptions,
    ) -> anyhow::Result<Catalog> {
        let set = source::load_dir_with(&dir, &groups, &options)?;
        log_diagnostics(&set);
        Ok(Catalog {
            dir,
            groups,
            options,
            current: ArcSwap::from_pointee(set),
        })
    }

    /// The set in use.
    pub fn load(&self) -> arc_swap::Guard<Arc<SourceSet>> {
        self.current.load()
    }

    /// Recompiles every file and swaps the result in, keeping the last good version of files
    /// whose edit is rejected.
    ///
    /// # Errors
    /// The directory cannot be read (the current set stays).
    pub fn reload(&self) -> anyhow::Result<ReloadReport> {
        let fresh = source::load_dir_with(&self.dir, &self.groups, &self.options)?;
        let errors: Vec<String> = fresh
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
        log_diagnostics(&fresh);
        let previous = self.current.load_full();
        let merged = fresh.keeping_last_good(&previous);
        let report = ReloadReport {
            sources: merged.sources.keys().cloned().collect(),
            errors,
        };
        self.current.store(Arc::new(merged));
        tracing::info!(sources = ?report.sources, rejected = report.errors.len(), "mappings reloaded");
        Ok(report)
    }
}

/// Logs every problem of a load: errors at error level, warnings at warn.
pub fn log_diagnostics(set: &SourceSet) {
    for d in &set.diagnostics {
        match d.severity {
            Severity::Error => tracing::error!("{d}"),
            Severity::Warning => tracing::warn!("{d}"),
        }
    }
}

fn reload_logged(catalog: &Catalog, why: &str) {
    tracing::info!(trigger = why, "reloading mappings");
    if let Err(e) = catalog.reload() {
        tracing::error!(
            error = format!("{e:#}"),
            "mappings not reloaded; the previous ones keep serving"
        );
    }
}

/// Watches the directory and reloads on every change (debounced), until the returned guard is
/// dropped.
///
/// # Errors
/// The watcher cannot be set up.
pub fn watch(catalog: Arc<Catalog>) -> anyhow::Result<Watcher> {
    use notify::RecursiveMode;
    let handle = tokio::runtime::Handle::current();
    let target = Arc::clone(&catalog);
    let mut debouncer = notify_debouncer_full::new_debouncer(
        Duration::from_millis(250),
        None,
        move |result: notify_debouncer_full::DebounceEventResult| {
            if let Ok(events) = result
                && events.iter().any(|e| !e.kind.is_access())
            {
                let catalog = Arc::clone(&target);
                // Loading reads files and re-reads secrets: off the async threads.
                handle.spawn_blocking(move || reload_logged(&catalog, "file change"));
            }
        },
    )?;
    debouncer.watch(&catalog.dir, RecursiveMode::NonRecursive)?;
    tracing::info!(dir = %catalog.dir.display(), "watching mappings for changes");
    Ok(debouncer)
}

/// Reloads on every SIGHUP until the process ends.
pub fn reload_on_sighup(catalog: Arc<Catalog>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; use POST /admin/reload");
            return;
        };
        while hup.recv().await.is_some() {
            let catalog = Arc::clone(&catalog);
            let _ = tokio::task::spawn_blocking(move || reload_logged(&catalog, "SIGHUP")).await;
        }
    });
}
