//! The executor's list of tasks that have been polled and have not completed.
//!
//! Only the work item touches the list and the links in each task's header, so it needs no
//! synchronization of its own: the work item runs on one thread at a time, and each run
//! happens-after the previous one (see [`crate::run`]). Shutdown walks it to cancel every
//! task; tasks never polled are still in the run queue and are cancelled when popped.

use core::ptr::NonNull;

use super::cell::Header;

/// Links of one task in the owned list.
#[derive(Clone, Copy)]
pub(crate) struct OwnedLinks {
    prev: Option<NonNull<Header>>,
    next: Option<NonNull<Header>>,
    linked: bool,
}

impl OwnedLinks {
    pub(crate) const fn new() -> Self {
        Self { prev: None, next: None, linked: false }
    }
}

/// Intrusive doubly linked list of tasks.
///
/// # Invariants
///
/// Every task in the list is live (the list holds the task's "owned" reference) and has
/// `linked == true`; `len` is the number of tasks in it.
pub(crate) struct OwnedList {
    head: Option<NonNull<Header>>,
    len: usize,
}

/// Reads a task's links.
///
/// # Safety
///
/// `task` is live and the caller is the work item.
unsafe fn links(task: NonNull<Header>) -> OwnedLinks {
    // SAFETY: the task is live (caller).
    let header = unsafe { task.as_ref() };
    // SAFETY: only the work item touches `owned`.
    header.owned.with(|l| unsafe { *l })
}

/// Writes a task's links.
///
/// # Safety
///
/// `task` is live and the caller is the work item.
unsafe fn set_links(task: NonNull<Header>, links: OwnedLinks) {
    // SAFETY: the task is live (caller).
    let header = unsafe { task.as_ref() };
    // SAFETY: only the work item touches `owned`.
    header.owned.with_mut(|l| unsafe { *l = links });
}

impl OwnedList {
    pub(crate) const fn new() -> Self {
        Self { head: None, len: 0 }
    }

    /// Number of tasks in the list.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds `task` unless it is already in the list.
    ///
    /// # Safety
    ///
    /// `task` is live and not complete; the caller is the work item.
    pub(crate) unsafe fn insert(&mut self, task: NonNull<Header>) {
        // SAFETY: forwarded contract.
        let mut l = unsafe { links(task) };
        if l.linked {
            return;
        }
        l.linked = true;
        l.prev = None;
        l.next = self.head;
        if let Some(old) = self.head {
            // SAFETY: list members are live (invariant).
            let mut ol = unsafe { links(old) };
            ol.prev = Some(task);
            // SAFETY: as above.
            unsafe { set_links(old, ol) };
        }
        // SAFETY: forwarded contract.
        unsafe { set_links(task, l) };
        self.head = Some(task);
        self.len += 1;
    }

    /// Removes `task` if it is in the list.
    ///
    /// # Safety
    ///
    /// `task` is live; the caller is the work item.
    pub(crate) unsafe fn remove(&mut self, task: NonNull<Header>) {
        // SAFETY: forwarded contract.
        let l = unsafe { links(task) };
        if !l.linked {
            return;
        }
        match l.prev {
            Some(prev) => {
                // SAFETY: list members are live (invariant).
                let mut pl = unsafe { links(prev) };
                pl.next = l.next;
                // SAFETY: as above.
                unsafe { set_links(prev, pl) };
            }
            None => self.head = l.next,
        }
        if let Some(next) = l.next {
            // SAFETY: list members are live (invariant).
            let mut nl = unsafe { links(next) };
            nl.prev = l.prev;
            // SAFETY: as above.
            unsafe { set_links(next, nl) };
        }
        // SAFETY: forwarded contract.
        unsafe { set_links(task, OwnedLinks::new()) };
        self.len -= 1;
    }

    /// Removes and returns the first task.
    ///
    /// # Safety
    ///
    /// The caller is the work item.
    pub(crate) unsafe fn pop_front(&mut self) -> Option<NonNull<Header>> {
        let task = self.head?;
        // SAFETY: `task` is a list member, hence live (invariant).
        unsafe { self.remove(task) };
        Some(task)
    }
}
