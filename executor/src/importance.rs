//! Task importance: which ready task the work item polls next.

/// How soon a task runs once woken, after the model of a DPC's importance
/// (`KeSetImportanceDpc`): [`Importance::High`] tasks are queued ahead of normal ones.
///
/// The work item polls a ready high-importance task before any normal one, with one bound:
/// it never polls two high-importance tasks in a row while a normal task is ready, so a
/// high-importance task that is always ready takes half the turns, never all of them. Meant
/// for short work that others wait for, such as an accept loop: under load its next accept
/// is issued after at most one other task's poll, instead of after every busy connection's.
///
/// ```no_run
/// # use wsk_executor::{Executor, Importance};
/// # fn example(executor: &Executor) -> Result<(), wsk_executor::SpawnError> {
/// let accept_loop = executor.spawn_with(Importance::High, async {
///     // loop { let (sock, peer) = listener.accept().await?; spawner.spawn(serve(sock))?; }
/// })?;
/// # drop(accept_loop); Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Importance {
    /// In wake order with the other normal tasks.
    #[default]
    Normal,
    /// Ahead of normal tasks (see the type's documentation for the bound).
    High,
}
