//! The SQL of the admin accounts and the audit draws, written once for both backends (as
//! `crate::rates` writes the rates' SQL once): spelt with SQLite's `?N` placeholders, which
//! [`spell`] turns into a backend's own (PostgreSQL's `$N`). Flags are bound as booleans
//! (SQLite stores 0/1, PostgreSQL a BOOLEAN), ids come back with `RETURNING`, and the one row
//! lock PostgreSQL needs is a [`Dialect`] word (SQLite's write transaction already excludes
//! every other writer).

use super::Placeholder;

/// What differs between the backends in these statements.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    pub placeholder: Placeholder,
    /// Appended to a SELECT whose row is updated next in the same transaction.
    pub row_lock: &'static str,
}

/// `sql` with each `?N` placeholder spelt `placeholder(N)`.
pub fn spell(sql: &str, placeholder: Placeholder) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '?' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.next_if(char::is_ascii_digit) {
            digits.push(d);
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&placeholder(n)),
            Err(_) => out.push('?'),
        }
    }
    out
}

/// An admin's columns, in `AdminRecord` order, from `admins a`.
const ADMIN_COLUMNS: &str =
    "a.name, a.role, a.jurisdiction, a.password_hash, a.disabled, a.created_at";

pub fn admin_by_name() -> String {
    format!("SELECT {ADMIN_COLUMNS} FROM admins a WHERE a.name = ?1")
}

pub fn all_admins() -> String {
    format!("SELECT {ADMIN_COLUMNS} FROM admins a ORDER BY a.name")
}

/// The admin of token hash ?1 if the token has not expired at ?2.
pub fn admin_by_token() -> String {
    format!(
        "SELECT {ADMIN_COLUMNS} FROM admin_tokens t JOIN admins a ON a.name = t.admin
         WHERE t.token_hash = ?1 AND (t.expires_at IS NULL OR t.expires_at > ?2)"
    )
}

/// Users whose jurisdiction starts with ?1, each with its devices (a user without any comes
/// once with NULL device columns), by user then enrolment; at most ?2 rows.
pub const PEOPLE_WITHIN: &str =
    "SELECT u.id, u.role, u.jurisdiction, u.revoked, d.id, d.revoked, d.last_seen
     FROM users u LEFT JOIN devices d ON d.user_id = u.id
     WHERE u.jurisdiction LIKE CAST(?1 AS TEXT) || '%'
     ORDER BY u.id, d.created_at, d.id LIMIT ?2";

/// name, role, jurisdiction, password hash, disabled, created at; nothing if the name exists.
pub const INSERT_ADMIN: &str =
    "INSERT INTO admins (name, role, jurisdiction, password_hash, disabled, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO NOTHING";

/// token hash, admin, expires at, created at.
pub const INSERT_TOKEN: &str =
    "INSERT INTO admin_tokens (token_hash, admin, expires_at, created_at)
     VALUES (?1, ?2, ?3, ?4)";

/// Admin ?1's `disabled` set to ?2.
pub const SET_DISABLED: &str = "UPDATE admins SET disabled = ?2 WHERE name = ?1";

/// Admin ?1 enabled (?3 = false) with password hash ?2 if given.
pub const RESET_ADMIN: &str =
    "UPDATE admins SET disabled = ?3, password_hash = coalesce(?2, password_hash) WHERE name = ?1";

pub const DELETE_TOKENS: &str = "DELETE FROM admin_tokens WHERE admin = ?1";

/// Admin ?1's tokens expired at ?2.
pub const DELETE_EXPIRED_TOKENS: &str =
    "DELETE FROM admin_tokens WHERE admin = ?1 AND expires_at <= ?2";

/// Cases closed in [?2, ?3) whose area starts with ?1, in id order.
pub const CLOSED_CASE_IDS: &str = "SELECT case_id FROM case_facts
     WHERE registered_at < ?3 AND closed_at >= ?2 AND closed_at < ?3
       AND area_code LIKE ?1 || '%'
     ORDER BY case_id";

/// The newest draw of month ?1 and area ?2: id, sequence.
pub const LAST_DRAW: &str = "SELECT id, sequence FROM audit_draws WHERE month = ?1 AND area = ?2
     ORDER BY sequence DESC LIMIT 1";

/// A draw's columns in `NewDraw` order (with its sequence third); returns its id.
pub const INSERT_DRAW: &str = "INSERT INTO audit_draws (month, area, sequence, n, nonce, seed,
         candidates_hash, candidates, reason, by_admin, at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) RETURNING id";

/// draw id, position, case id.
pub const INSERT_DRAW_CASE: &str =
    "INSERT INTO audit_draw_cases (draw_id, position, case_id) VALUES (?1, ?2, ?3)";

/// Draw ?1: month, area, sequence, n, nonce, seed, candidates hash, candidates, reason, by, at.
pub const DRAW: &str = "SELECT month, area, sequence, n, nonce, seed, candidates_hash, candidates,
         reason, by_admin, at FROM audit_draws WHERE id = ?1";

/// Draw ?1's cases in position order: position, case, result, note, verified by, verified at.
pub const DRAW_CASES: &str = "SELECT position, case_id, result, note, verified_by, verified_at
     FROM audit_draw_cases WHERE draw_id = ?1 ORDER BY position";

/// The recorded result of case ?2 in draw ?1, locked until the transaction ends.
pub fn drawn_case_result(dialect: Dialect) -> String {
    format!(
        "SELECT result FROM audit_draw_cases WHERE draw_id = ?1 AND case_id = ?2 {}",
        dialect.row_lock
    )
}

/// draw id, case id, result, note, by, at.
pub const RECORD_RESULT: &str = "UPDATE audit_draw_cases SET result = ?3, note = ?4,
         verified_by = ?5, verified_at = ?6 WHERE draw_id = ?1 AND case_id = ?2";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_spelt_for_the_backend() {
        let dollar: Placeholder = |i| format!("${i}");
        assert_eq!(
            spell("a = ?1 AND b = ?12 OR c = ?", dollar),
            "a = $1 AND b = $12 OR c = ?"
        );
        assert!(!spell(INSERT_DRAW, dollar).contains('?'));
    }
}
