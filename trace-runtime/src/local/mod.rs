//! The hot side: what runs on the threads that record. Each thread appends to its own
//! buffer or folds into its own call tree; nothing here takes a lock on the way, except a
//! thread's first record in a session, which attaches it to the registry.

pub(crate) mod allocator;
pub(crate) mod graph;
#[cfg(feature = "enable")]
pub(crate) mod guard;
#[cfg(feature = "tracing")]
pub(crate) mod layer;
pub(crate) mod recorder;
