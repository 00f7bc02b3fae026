//! The report as an XLSX workbook: one sheet per `tables` section, the headers bold, rates as
//! percentages that stay numbers (a reader can sum and chart them), written by
//! `rust_xlsxwriter` into memory (the HTTP route sends the bytes; the CLI writes a file).

use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

use super::Report;
use super::tables::{Cell, Table, tables};

/// The content type of an XLSX file.
pub const XLSX_CONTENT_TYPE: &str =
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// The report as the bytes of an XLSX file.
pub fn to_xlsx(report: &Report) -> Result<Vec<u8>, XlsxError> {
    let mut workbook = Workbook::new();
    for table in tables(report) {
        write_sheet(workbook.add_worksheet(), &table)?;
    }
    workbook.save_to_buffer()
}

fn write_sheet(sheet: &mut Worksheet, table: &Table) -> Result<(), XlsxError> {
    let bold = Format::new().set_bold();
    let percent = Format::new().set_num_format("0.00%");
    let points = Format::new().set_num_format("+0.00;-0.00;0.00");
    sheet.set_name(table.title)?;
    for (col, header) in (0u16..).zip(table.headers) {
        sheet.write_string_with_format(0, col, *header, &bold)?;
        sheet.set_column_width(col, 14)?;
    }
    for (row, cells) in (1u32..).zip(&table.rows) {
        for (col, cell) in (0u16..).zip(cells) {
            match cell {
                Cell::Text(s) => sheet.write_string(row, col, s).map(drop)?,
                Cell::Int(n) => sheet.write_number(row, col, *n as f64).map(drop)?,
                Cell::Number(x) => sheet.write_number(row, col, *x).map(drop)?,
                Cell::Percent(Some(x)) => sheet
                    .write_number_with_format(row, col, *x, &percent)
                    .map(drop)?,
                Cell::Points(Some(x)) => sheet
                    .write_number_with_format(row, col, *x, &points)
                    .map(drop)?,
                Cell::Percent(None) | Cell::Points(None) => {}
            }
        }
    }
    Ok(())
}
