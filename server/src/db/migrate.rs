//! The one migration runner both backends use: numbered steps, each applied once in its own
//! transaction together with the new version number; a database newer than the code is refused.

use super::{DbError, Result};

/// A database being migrated: reads its version, applies one step with its number.
pub trait Migrator {
    fn version(&mut self) -> Result<u32>;
    /// Runs `sql` and records `version`, atomically.
    fn apply(&mut self, version: u32, sql: &str) -> Result<()>;
}

/// Brings the schema up to `steps.len()`: step `i` (0-based) takes the database from version
/// `i` to `i + 1`. Returns the version reached.
pub fn run(db: &mut dyn Migrator, steps: &[&str]) -> Result<u32> {
    let supported = steps.len() as u32;
    let found = db.version()?;
    if found > supported {
        return Err(DbError::TooNew { found, supported });
    }
    for (index, sql) in steps.iter().enumerate().skip(found as usize) {
        db.apply(index as u32 + 1, sql)?;
    }
    Ok(supported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Fake {
        version: u32,
        applied: Vec<String>,
    }

    impl Migrator for Fake {
        fn version(&mut self) -> Result<u32> {
            Ok(self.version)
        }
        fn apply(&mut self, version: u32, sql: &str) -> Result<()> {
            assert_eq!(version, self.version + 1);
            self.version = version;
            self.applied.push(sql.to_owned());
            Ok(())
        }
    }

    #[test]
    fn applies_missing_steps_in_order_once() {
        let mut db = Fake {
            version: 1,
            ..Default::default()
        };
        assert_eq!(run(&mut db, &["a", "b", "c"]).unwrap(), 3);
        assert_eq!(db.applied, ["b", "c"]);
        assert_eq!(run(&mut db, &["a", "b", "c"]).unwrap(), 3);
        assert_eq!(db.applied.len(), 2);
        assert!(matches!(
            run(&mut db, &["a"]),
            Err(DbError::TooNew {
                found: 3,
                supported: 1
            })
        ));
    }
}
