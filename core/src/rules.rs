//! The deadline rules as texts: what a server is started with and what travels to phones in
//! sync, so every phone counts down by the policy and calendar the server checks.
//!
//! Each distinct pair of texts a deployment runs gets the next version number (the server keeps
//! the counter in its database, so several instances agree), and a phone replaces its rules only
//! with a higher version: an instance still running yesterday's files cannot roll a phone back.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::calendar::{self, Calendar, CalendarError};
use crate::policy::{self, PolicyError, PolicySet};
use crate::store::projection::Rules;

/// A deadline policy (TOML) and a holiday calendar (the line format of [`crate::calendar`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesText {
    pub policy_toml: String,
    pub calendar: String,
}

/// The server's rules with their version, sent to a phone whose version is older.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesUpdate {
    /// Greater than every earlier version of this deployment; 0 is the app's shipped rules.
    pub version: u64,
    pub text: RulesText,
}

/// Parsed rules with the texts they came from: what a server counts by and sends.
#[derive(Debug, Clone)]
pub struct SourcedRules {
    pub text: RulesText,
    pub rules: Rules,
}

impl SourcedRules {
    pub fn shipped() -> SourcedRules {
        SourcedRules {
            text: RulesText::shipped(),
            rules: Rules::default(),
        }
    }
}

/// Which of the two texts cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error("deadline policy: {0}")]
    Policy(#[from] PolicyError),
    #[error("holiday calendar: {0}")]
    Calendar(#[from] CalendarError),
}

impl RulesText {
    /// The rules shipped with the app and the server (version 0 on a phone).
    pub fn shipped() -> RulesText {
        RulesText {
            policy_toml: policy::DEFAULT_POLICY.to_owned(),
            calendar: calendar::EMBEDDED.to_owned(),
        }
    }

    pub fn into_sourced(self) -> Result<SourcedRules, RulesError> {
        let rules = self.parse()?;
        Ok(SourcedRules { text: self, rules })
    }

    pub fn parse(&self) -> Result<Rules, RulesError> {
        Ok(Rules {
            policy: PolicySet::from_toml(&self.policy_toml)?,
            calendar: Calendar::parse(&self.calendar)?,
        })
    }

    /// Identifies the pair of texts byte for byte (hex SHA-256, each text length-prefixed so
    /// no split of the bytes between the two collides).
    pub fn digest(&self) -> String {
        let mut hash = Sha256::new();
        for text in [&self.policy_toml, &self.calendar] {
            hash.update((text.len() as u64).to_be_bytes());
            hash.update(text.as_bytes());
        }
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Whether a phone holding rules `held` should take `offered`: only a newer version.
pub fn should_replace(held: u64, offered: &RulesUpdate) -> bool {
    offered.version > held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_texts_parse_to_the_default_rules() {
        let rules = RulesText::shipped().parse().unwrap();
        assert_eq!(rules.policy, PolicySet::default());
        assert_eq!(rules.calendar, Calendar::embedded());
    }

    #[test]
    fn the_digest_changes_with_any_byte_and_with_where_the_texts_split() {
        let a = RulesText::shipped();
        let mut b = a.clone();
        b.policy_toml.push(' ');
        assert_ne!(a.digest(), b.digest());
        let split1 = RulesText {
            policy_toml: "ab".into(),
            calendar: "c".into(),
        };
        let split2 = RulesText {
            policy_toml: "a".into(),
            calendar: "bc".into(),
        };
        assert_ne!(split1.digest(), split2.digest());
        assert_eq!(a.digest(), RulesText::shipped().digest());
    }

    #[test]
    fn a_bad_text_names_which_one() {
        let bad_policy = RulesText {
            policy_toml: "x = [".into(),
            ..RulesText::shipped()
        };
        assert!(matches!(bad_policy.parse(), Err(RulesError::Policy(_))));
        let bad_calendar = RulesText {
            calendar: "2026-13-01 off".into(),
            ..RulesText::shipped()
        };
        assert!(matches!(bad_calendar.parse(), Err(RulesError::Calendar(_))));
    }

    #[test]
    fn only_a_newer_version_replaces() {
        let offered = |version| RulesUpdate {
            version,
            text: RulesText::shipped(),
        };
        assert!(should_replace(0, &offered(1)));
        assert!(!should_replace(3, &offered(3)));
        assert!(!should_replace(4, &offered(3)));
    }
}
