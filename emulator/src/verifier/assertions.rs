//! Assertions on a [`VerifierReport`] for tests: each panics with the whole report, so that a
//! failing test shows every violation and leak, not only the one it looked for.

use super::{Bugcheck, Leak, LeakKind, Rule, VerifierReport};

impl VerifierReport {
    /// Panics unless the report has no violation and no leak.
    #[track_caller]
    pub fn assert_clean(&self) {
        assert!(self.is_clean(), "expected a clean report:\n{self}");
    }

    /// Panics if any rule fired (leaks aside).
    #[track_caller]
    pub fn assert_no_violations(&self) {
        assert!(self.bugchecks.is_empty(), "expected no violation:\n{self}");
    }

    /// Panics if the driver left anything behind (violations aside).
    #[track_caller]
    pub fn assert_no_leaks(&self) {
        assert!(self.leaks.is_empty(), "expected no leak:\n{self}");
    }

    /// Panics unless `rule` fired (first or not).
    #[track_caller]
    pub fn assert_violation(&self, rule: Rule) {
        assert!(self.has(rule), "expected {rule}:\n{self}");
    }

    /// Panics unless `rule` is the first violation, with a message, and the printed report
    /// names it. Returns that violation for further checks.
    #[track_caller]
    pub fn assert_first(&self, rule: Rule) -> &Bugcheck {
        let Some(first) = self.first_bugcheck() else { panic!("expected {rule}, got no violation:\n{self}") };
        assert_eq!(first.rule, rule, "expected {rule} first:\n{self}");
        assert!(first.message.len() > 10, "expected a message saying what happened:\n{self}");
        assert!(self.to_string().contains(rule.name()), "the printed report does not name {rule}:\n{self}");
        first
    }

    /// Panics unless exactly `count` leaks of `kind` are listed. Returns them.
    #[track_caller]
    pub fn assert_leaks(&self, kind: LeakKind, count: usize) -> Vec<&Leak> {
        let leaks: Vec<&Leak> = self.leaks_of(kind).collect();
        assert_eq!(leaks.len(), count, "expected {count} {kind:?} leak(s):\n{self}");
        leaks
    }

    /// Panics unless DriverUnload was called.
    #[track_caller]
    pub fn assert_unloaded(&self) {
        assert!(self.unload_called, "driver `{}`: DriverUnload was not called\n{self}", self.driver);
    }
}
