//! The report as CSV: the `tables` one after another, each as a title line, its Chinese headers
//! and its rows, with a blank line between. Rates in percent with two decimals (empty when the
//! denominator is 0); a UTF-8 byte-order mark so that Excel and WPS read the Chinese.

use super::Report;
use super::tables::{Cell, Table, tables};

/// The header line of the rates section (`考核指标`).
pub const CSV_HEADER: &str = "指标,分子,分母,比率,上期比率,增减(百分点)";

/// The byte-order mark the file starts with.
pub const BOM: char = '\u{feff}';

pub fn to_csv(report: &Report) -> String {
    let mut out = String::from(BOM);
    for (i, table) in tables(report).iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        write_table(&mut out, table);
    }
    out
}

fn write_table(out: &mut String, table: &Table) {
    out.push_str(&csv_field(table.title));
    out.push('\n');
    out.push_str(&table.headers.join(","));
    out.push('\n');
    for row in &table.rows {
        let fields: Vec<String> = row.iter().map(|c| csv_field(&cell_text(c))).collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
}

/// A cell as CSV shows it.
pub fn cell_text(cell: &Cell) -> String {
    match cell {
        Cell::Text(s) => s.clone(),
        Cell::Int(n) => n.to_string(),
        Cell::Number(x) => trim_number(*x),
        Cell::Percent(x) => x.map(|x| format!("{:.2}%", x * 100.0)).unwrap_or_default(),
        Cell::Points(x) => x.map(|x| format!("{x:+.2}")).unwrap_or_default(),
    }
}

fn trim_number(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

/// Quotes a field that needs it, and defuses spreadsheet formulas (a unit named `=cmd|...`).
/// A negative number (a change) is a number, not a formula.
fn csv_field(text: &str) -> String {
    let number = text.parse::<f64>().is_ok();
    let text = if !number && text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=1+1"), "'=1+1");
        assert_eq!(csv_field("-1+1"), "'-1+1");
        assert_eq!(csv_field("-3"), "-3");
        assert_eq!(csv_field("+1.50"), "+1.50");
        assert_eq!(csv_field("区水务集团"), "区水务集团");
    }

    #[test]
    fn cells_print_as_a_township_reads_them() {
        assert_eq!(cell_text(&Cell::Percent(Some(0.98765))), "98.77%");
        assert_eq!(cell_text(&Cell::Percent(None)), "");
        assert_eq!(cell_text(&Cell::Points(Some(-1.5))), "-1.50");
        assert_eq!(cell_text(&Cell::Number(3.0)), "3");
        assert_eq!(cell_text(&Cell::Number(2.5)), "2.5");
    }
}
