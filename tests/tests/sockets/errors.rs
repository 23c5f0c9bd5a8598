//! The executor's errors convert into `wsk::Error` keeping their cause.

use std::future::pending;

use wsk::{Error, ErrorKind};
use wsk_tests::harness::run_clean;

use crate::LIMIT;

#[test]
fn a_cancelled_tasks_join_error_converts_into_cancelled() {
    run_clean(LIMIT, |env| async move {
        let task = env.spawner.spawn(pending::<()>()).expect("spawn");
        task.abort();
        let error: Error = task.await.expect_err("an aborted task has no output").into();
        assert_eq!(error.to_string(), "task ended without output: task was cancelled");
        assert_eq!(error.kind(), ErrorKind::Cancelled);
        assert!(error.is_cancelled());
        assert_eq!(error.to_status(), wsk_sys::STATUS_CANCELLED);
    });
}

#[test]
fn a_join_error_for_an_output_taken_converts_keeping_its_cause() {
    run_clean(LIMIT, |env| async move {
        let mut task = env.spawner.spawn(async { 7 }).expect("spawn");
        assert_eq!((&mut task).await, Ok(7));
        let error: Error = (&mut task).await.expect_err("the output was taken").into();
        assert_eq!(error.to_string(), "task ended without output: task output was already taken");
        assert_eq!(error.kind(), ErrorKind::Other);
        assert!(!error.is_cancelled());
    });
}
