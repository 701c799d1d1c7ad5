//! Change notifications for the app's screens.

/// Implemented by the app to hear which clients changed, so that lists and detail screens
/// can refresh. Register it with `Replica.setChangeListener`.
///
/// Called after every successful local edit (with the edited client), after an import and
/// after a sync (with every client the import or sync changed; not at all when nothing
/// changed). It is called on the thread that made the change (for `sync` and the `…Async`
/// methods a worker thread of the SDK), after the change is committed and after the
/// replica is released, so the listener may read from the replica. Return quickly: hop to the main
/// thread (Kotlin `withContext(Dispatchers.Main)`, Swift `@MainActor`) for UI work.
#[uniffi::export(with_foreign)]
pub trait ClientChangeListener: Send + Sync {
    /// These clients (ids) changed; read them again with `Replica.client` or refresh the
    /// list.
    fn on_clients_changed(&self, client_ids: Vec<String>);
}
