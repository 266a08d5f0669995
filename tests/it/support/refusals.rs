//! Assertions on what PostgreSQL refuses: a statement that must fail, with an
//! error naming its cause.

use super::TestDb;

/// Run `sql`, which must be refused with an error containing `cause`; the
/// error, for any further check.
pub fn assert_refused(db: &TestDb<'_>, sql: &str, cause: &str) -> String {
    let err = match db.try_psql(sql) {
        Ok(out) => panic!("accepted, not refused: {sql}\n{out}"),
        Err(err) => err,
    };
    assert!(
        err.contains(cause),
        "refused without naming {cause:?}: {sql}\n{err}"
    );
    err
}
