//! China's 12-digit statistical division codes (province 2, city 2, county 2, township 3,
//! village 3). A jurisdiction is a prefix of such a code, so "everything in my township" is a
//! prefix match that SQLite and the server's index answer without loading any case.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AreaError {
    #[error("area code `{code}` must be 12 digits, got {len} characters")]
    WrongLength { code: String, len: usize },
    #[error("area code `{code}` has a non-digit character at position {position}")]
    NotDigits { code: String, position: usize },
    #[error("area code `{code}` has no province (it starts with 00)")]
    NoProvince { code: String },
    #[error("jurisdiction `{prefix}` must be the digits of a whole level: 2, 4, 6, 9 or 12 digits")]
    BadJurisdiction { prefix: String },
    #[error("no jurisdiction given: give an area-code prefix, or `*` for everywhere")]
    NoJurisdiction,
}

/// A validated 12-digit area code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AreaCode(String);

/// The administrative level a code or jurisdiction names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Province,
    City,
    County,
    Township,
    Village,
}

const LEVEL_LENGTHS: [(usize, Level); 5] = [
    (2, Level::Province),
    (4, Level::City),
    (6, Level::County),
    (9, Level::Township),
    (12, Level::Village),
];

fn check_digits(code: &str) -> Result<(), AreaError> {
    match code.chars().position(|c| !c.is_ascii_digit()) {
        Some(position) => Err(AreaError::NotDigits {
            code: code.to_owned(),
            position,
        }),
        None => Ok(()),
    }
}

impl AreaCode {
    pub fn parse(code: &str) -> Result<Self, AreaError> {
        check_digits(code)?;
        if code.len() != 12 {
            return Err(AreaError::WrongLength {
                code: code.to_owned(),
                len: code.chars().count(),
            });
        }
        if code.starts_with("00") {
            return Err(AreaError::NoProvince {
                code: code.to_owned(),
            });
        }
        Ok(AreaCode(code.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The most specific level this code names: trailing zero groups mean "the whole" level
    /// above (330604101000 is the township itself, not one of its villages).
    pub fn level(&self) -> Level {
        let mut level = Level::Province;
        for (len, l) in LEVEL_LENGTHS.iter().skip(1) {
            let start = LEVEL_LENGTHS
                .iter()
                .rev()
                .find(|(n, _)| n < len)
                .map(|(n, _)| *n)
                .unwrap_or(0);
            if self.0[start..*len].bytes().any(|b| b != b'0') {
                level = *l;
            }
        }
        level
    }

    /// The jurisdiction this code itself stands for, with the zero groups dropped.
    pub fn jurisdiction(&self) -> Jurisdiction {
        let len = LEVEL_LENGTHS
            .iter()
            .find(|(_, l)| *l == self.level())
            .map(|(n, _)| *n)
            .unwrap_or(12);
        Jurisdiction(self.0[..len].to_owned())
    }

    pub fn is_within(&self, jurisdiction: &Jurisdiction) -> bool {
        self.0.starts_with(&jurisdiction.0)
    }
}

impl TryFrom<String> for AreaCode {
    type Error = AreaError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        AreaCode::parse(&value)
    }
}

impl From<AreaCode> for String {
    fn from(value: AreaCode) -> Self {
        value.0
    }
}

impl std::fmt::Display for AreaCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How an admin spells the whole country where a jurisdiction must be given explicitly.
pub const EVERYWHERE: &str = "*";

/// A prefix of area codes: what a user is responsible for. The empty prefix is the whole
/// country (an admin or the hotline centre of a deployment).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Jurisdiction(String);

impl Jurisdiction {
    /// Accepts a level prefix (2, 4, 6, 9 or 12 digits, or empty for everywhere), or a full
    /// 12-digit code with trailing zero groups, which is reduced to the level it names.
    pub fn parse(prefix: &str) -> Result<Self, AreaError> {
        check_digits(prefix)?;
        if prefix.len() == 12 {
            return Ok(AreaCode::parse(prefix)?.jurisdiction());
        }
        if prefix.is_empty() || LEVEL_LENGTHS.iter().any(|(n, _)| *n == prefix.len()) {
            Ok(Jurisdiction(prefix.to_owned()))
        } else {
            Err(AreaError::BadJurisdiction {
                prefix: prefix.to_owned(),
            })
        }
    }

    pub fn everywhere() -> Self {
        Jurisdiction(String::new())
    }

    /// Parses a jurisdiction an admin typed (`enrol-user --area`): like [`Jurisdiction::parse`],
    /// except that "everywhere" must be spelled [`EVERYWHERE`] and an empty text is an error,
    /// so that a forgotten area never grants the whole country (issue 8.5).
    pub fn parse_given(text: &str) -> Result<Self, AreaError> {
        match text {
            EVERYWHERE => Ok(Self::everywhere()),
            "" => Err(AreaError::NoJurisdiction),
            prefix => Self::parse(prefix),
        }
    }

    pub fn is_everywhere(&self) -> bool {
        self.0.is_empty()
    }

    /// How an admin spells it: the prefix, or [`EVERYWHERE`].
    pub fn as_given(&self) -> &str {
        if self.is_everywhere() {
            EVERYWHERE
        } else {
            &self.0
        }
    }

    pub fn as_prefix(&self) -> &str {
        &self.0
    }

    pub fn contains(&self, code: &AreaCode) -> bool {
        code.is_within(self)
    }

    /// Whether `code` (not yet validated) lies inside; malformed codes lie nowhere.
    pub fn contains_str(&self, code: &str) -> bool {
        AreaCode::parse(code).is_ok_and(|c| c.is_within(self))
    }
}

impl TryFrom<String> for Jurisdiction {
    type Error = AreaError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Jurisdiction::parse(&value)
    }
}

impl From<Jurisdiction> for String {
    fn from(value: Jurisdiction) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_jurisdiction_spells_everywhere_out() {
        assert_eq!(
            Jurisdiction::parse_given(""),
            Err(AreaError::NoJurisdiction)
        );
        let all = Jurisdiction::parse_given("*").unwrap();
        assert!(all.is_everywhere());
        assert_eq!(all.as_given(), "*");
        let township = Jurisdiction::parse_given("330604101").unwrap();
        assert!(!township.is_everywhere());
        assert_eq!(township.as_given(), "330604101");
        for bad in ["**", " *", "* ", "33*", "%", "3306041"] {
            assert!(Jurisdiction::parse_given(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn valid_village_code() {
        let code = AreaCode::parse("330604101201").unwrap();
        assert_eq!(code.level(), Level::Village);
        let township = Jurisdiction::parse("330604101").unwrap();
        assert!(township.contains(&code));
        assert!(!Jurisdiction::parse("330604102").unwrap().contains(&code));
        assert!(Jurisdiction::everywhere().contains(&code));
    }

    #[test]
    fn levels_from_zero_groups() {
        assert_eq!(
            AreaCode::parse("330604101000").unwrap().level(),
            Level::Township
        );
        assert_eq!(
            AreaCode::parse("330604000000").unwrap().level(),
            Level::County
        );
        assert_eq!(
            AreaCode::parse("330000000000").unwrap().level(),
            Level::Province
        );
        assert_eq!(
            AreaCode::parse("330604101000")
                .unwrap()
                .jurisdiction()
                .as_prefix(),
            "330604101"
        );
        assert_eq!(
            Jurisdiction::parse("330604000000").unwrap().as_prefix(),
            "330604"
        );
    }

    #[test]
    fn malformed_codes_are_clear_errors() {
        assert_eq!(
            AreaCode::parse("33060410120").unwrap_err().to_string(),
            "area code `33060410120` must be 12 digits, got 11 characters"
        );
        assert_eq!(
            AreaCode::parse("33060410120x").unwrap_err(),
            AreaError::NotDigits {
                code: "33060410120x".into(),
                position: 11
            }
        );
        assert!(AreaCode::parse("000604101201").is_err());
        assert!(AreaCode::parse("").is_err());
        assert!(AreaCode::parse("３３0604101201").is_err());
        assert!(Jurisdiction::parse("3306041").is_err());
        assert!(!Jurisdiction::everywhere().contains_str("bad"));
    }

    #[test]
    fn serde_validates() {
        let ok: AreaCode = serde_json::from_str("\"330604101201\"").unwrap();
        assert_eq!(ok.as_str(), "330604101201");
        assert!(serde_json::from_str::<AreaCode>("\"12\"").is_err());
    }
}
