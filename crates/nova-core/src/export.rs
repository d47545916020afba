//! Invoices as table rows: one row per invoice, or one per line. `nova extract --format csv` and the API's
//! export (`GET /v1/exports/invoices`) write these same rows, so a spreadsheet built on one reads the other.

use crate::invoice::{Invoice, Party};
use crate::job::JobError;

/// The columns of [`invoice_row`].
pub const INVOICE_COLUMNS: &[&str] = &[
    "file",
    "invoice_number",
    "type_code",
    "issue_date",
    "due_date",
    "currency",
    "seller_name",
    "seller_vat_id",
    "seller_country",
    "buyer_name",
    "buyer_vat_id",
    "buyer_reference",
    "order_reference",
    "payment_iban",
    "line_total",
    "tax_basis_total",
    "tax_total",
    "grand_total",
    "due_payable",
    "error_code",
    "error_message",
];

/// The columns of [`line_rows`]: the invoice's identity, then the line's fields.
pub const LINE_COLUMNS: &[&str] = &[
    "file",
    "invoice_number",
    "issue_date",
    "seller_name",
    "currency",
    "line",
    "line_id",
    "name",
    "seller_item_id",
    "quantity",
    "unit",
    "net_price",
    "tax_rate",
    "line_total",
];

/// A value NOVA wrote (an amount, a date, a count) as a cell.
fn text<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// Text read from a document as a cell. A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` as a
/// formula, so a document could plant one (`=HYPERLINK(...)` as a seller's name); such text gets a leading
/// `'`, which spreadsheets show as text and do not run (OWASP's advice on CSV injection).
fn read(value: &Option<String>) -> String {
    match value.as_deref() {
        Some(v) if v.starts_with(['=', '+', '-', '@', '\t', '\r']) => format!("'{v}"),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

/// One row of [`INVOICE_COLUMNS`]: `file` names the document; an invoice that could not be read is `None`,
/// with its `error`.
pub fn invoice_row(file: &str, invoice: Option<&Invoice>, error: Option<&JobError>) -> Vec<String> {
    let empty = Invoice::default();
    let inv = invoice.unwrap_or(&empty);
    let party = |p: &Option<Party>| p.clone().unwrap_or_default();
    let (seller, buyer) = (party(&inv.seller), party(&inv.buyer));
    let t = &inv.totals;
    vec![
        read(&Some(file.to_string())),
        read(&inv.invoice_number),
        read(&inv.type_code),
        text(&inv.issue_date),
        text(&inv.due_date),
        read(&inv.currency),
        read(&seller.name),
        read(&seller.vat_id),
        read(&seller.country),
        read(&buyer.name),
        read(&buyer.vat_id),
        read(&inv.buyer_reference),
        read(&inv.order_reference),
        read(&inv.payment_iban),
        text(&t.line_total),
        text(&t.tax_basis_total),
        text(&t.tax_total),
        text(&t.grand_total),
        text(&t.due_payable),
        error.map(|e| e.code.clone()).unwrap_or_default(),
        read(&error.map(|e| e.message.clone())),
    ]
}

/// The rows of [`LINE_COLUMNS`], one per line of `invoice` (none for an invoice without lines); `line`
/// counts from 1 in the invoice's order.
pub fn line_rows(file: &str, invoice: &Invoice) -> Vec<Vec<String>> {
    let seller = invoice.seller.as_ref().and_then(|s| s.name.clone());
    let file = Some(file.to_string());
    invoice
        .lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            vec![
                read(&file),
                read(&invoice.invoice_number),
                text(&invoice.issue_date),
                read(&seller),
                read(&invoice.currency),
                (i + 1).to_string(),
                read(&line.id),
                read(&line.name),
                read(&line.seller_item_id),
                text(&line.quantity),
                read(&line.unit),
                text(&line.net_price),
                text(&line.tax_rate),
                text(&line.line_total),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use rust_decimal::Decimal;

    use super::*;
    use crate::invoice::Line;

    fn invoice() -> Invoice {
        Invoice {
            invoice_number: Some("R-17".into()),
            currency: Some("EUR".into()),
            seller: Some(Party { name: Some("Acme GmbH".into()), ..Party::default() }),
            lines: vec![
                Line {
                    name: Some("Bolts".into()),
                    line_total: Some(Decimal::from_str("10.50").unwrap()),
                    ..Line::default()
                },
                Line { name: Some("Nuts".into()), quantity: Some(Decimal::from(3)), ..Line::default() },
            ],
            ..Invoice::default()
        }
    }

    #[test]
    fn rows_have_one_cell_per_column_with_the_values_in_place() {
        let row = invoice_row("a.pdf", Some(&invoice()), None);
        assert_eq!(row.len(), INVOICE_COLUMNS.len());
        let cell = |name: &str| &row[INVOICE_COLUMNS.iter().position(|c| *c == name).unwrap()];
        assert_eq!((cell("file").as_str(), cell("invoice_number").as_str()), ("a.pdf", "R-17"));
        assert_eq!(cell("seller_name"), "Acme GmbH");
        assert_eq!(cell("error_code"), "");

        let lines = line_rows("a.pdf", &invoice());
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == LINE_COLUMNS.len()));
        let cell = |row: usize, name: &str| lines[row][LINE_COLUMNS.iter().position(|c| *c == name).unwrap()].clone();
        assert_eq!(
            (cell(0, "line"), cell(0, "name"), cell(0, "line_total")),
            ("1".into(), "Bolts".into(), "10.50".into())
        );
        assert_eq!(
            (cell(1, "line"), cell(1, "quantity"), cell(1, "seller_name")),
            ("2".into(), "3".into(), "Acme GmbH".into())
        );
    }

    #[test]
    fn text_a_spreadsheet_would_run_is_kept_as_text_and_amounts_stay_numbers() {
        let mut planted = invoice();
        planted.seller = Some(Party { name: Some("=HYPERLINK(\"http://x\",\"pay\")".into()), ..Party::default() });
        planted.lines[0].name = Some("@SUM(A1)".into());
        planted.lines[0].line_total = Some(Decimal::from_str("-10.50").unwrap());
        let row = invoice_row("+a.pdf", Some(&planted), None);
        assert_eq!(row[0], "'+a.pdf");
        assert_eq!(row[6], "'=HYPERLINK(\"http://x\",\"pay\")");
        assert_eq!(row[1], "R-17", "ordinary text is left alone");
        let line = &line_rows("a.pdf", &planted)[0];
        assert_eq!((line[7].as_str(), line[13].as_str()), ("'@SUM(A1)", "-10.50"));
    }

    #[test]
    fn a_failed_file_is_a_row_with_its_error() {
        let error = JobError { code: "corrupt_pdf".into(), message: "no trailer".into() };
        let row = invoice_row("b.pdf", None, Some(&error));
        assert_eq!(row[0], "b.pdf");
        assert_eq!(&row[row.len() - 2..], ["corrupt_pdf", "no trailer"]);
        assert!(row[1..row.len() - 2].iter().all(String::is_empty));
    }
}
