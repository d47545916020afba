//! A template's fields in the invoice schema, laid over what the generic rules found, then checked by the
//! same totals arithmetic.
//!
//! invoice2data's names map onto EN 16931's: `amount` is the grand total, `amount_untaxed` the total
//! without VAT, `amount_tax` the VAT, `date` the issue date, `issuer` the seller's name, `vat` the
//! seller's VAT id; line sub-fields `price_unit`, `qty` and `price_subtotal` are the net price, quantity
//! and line total. A field the template does not give keeps the generic rules' value.

use nova_core::{Invoice, Line, Party, TaxRow};
use rust_decimal::Decimal;

use super::load::Template;
use super::run::Fields;
use super::values::{Reading, Row, Value};
use crate::text::ids::{iban_valid, vat_ids_in};

/// Confidence of a field a matched template gave, and of one from a template that missed a required field.
const CONFIDENCE: f32 = 0.95;
const CONFIDENCE_INCOMPLETE: f32 = 0.8;

/// Lays the template's fields over `invoice` (the generic rules' result) and marks it as a template's.
pub(crate) fn overlay(template: &Template, fields: &Fields, invoice: &mut Invoice) {
    let missing: Vec<&str> =
        template.required_fields.iter().map(String::as_str).filter(|f| !fields.contains_key(*f)).collect();
    let confidence = if missing.is_empty() { CONFIDENCE } else { CONFIDENCE_INCOMPLETE };
    if !missing.is_empty() {
        invoice.warnings.push(format!(
            "template {} matched but did not find its required field(s) {}; the generic rules filled in",
            template.name,
            missing.join(", ")
        ));
    }
    let reading = &template.options.reading;
    let mut set = Setter { invoice, confidence };

    if let Some(number) = fields.get("invoice_number").and_then(Value::text).filter(|n| plausible_number(n)) {
        set.text("invoice_number", number, |i| &mut i.invoice_number);
    }
    if let Some(date) = fields.get("date").and_then(|v| v.date(reading)) {
        set.value("issue_date", date, |i| &mut i.issue_date);
    }
    if let Some(date) = fields.get("date_due").and_then(|v| v.date(reading)) {
        set.value("due_date", date, |i| &mut i.due_date);
    }
    if let Some(code) = fields.get("currency").and_then(Value::text).and_then(|c| currency_code(&c)) {
        set.text("currency", code.to_string(), |i| &mut i.currency);
    }
    let issuer = fields.get("issuer").and_then(Value::text).filter(|s| !s.is_empty());
    if let Some(name) = issuer {
        set.text("seller.name", name, |i| &mut party(&mut i.seller).name);
    }
    if let Some(vat) = fields.get("vat").and_then(Value::text).map(|v| compact_id(&v)).filter(|v| vat_plausible(v)) {
        set.text("seller.vat_id", vat, |i| &mut party(&mut i.seller).vat_id);
    }
    if let Some(country) = fields.get("country_code").and_then(Value::text).filter(|c| is_country(c)) {
        set.text("seller.country", country.to_uppercase(), |i| &mut party(&mut i.seller).country);
    }
    if let Some(city) = fields.get("partner_city").and_then(Value::text).filter(|c| !c.is_empty()) {
        set.text("seller.city", city, |i| &mut party(&mut i.seller).city);
    }
    if let Some(zip) = fields.get("partner_zip").and_then(Value::text).filter(|z| !z.is_empty()) {
        set.text("seller.postcode", zip, |i| &mut party(&mut i.seller).postcode);
    }
    if let Some(iban) = fields.get("iban").and_then(Value::text).map(|v| compact_id(&v)).filter(|v| iban_valid(v)) {
        set.text("payment_iban", iban, |i| &mut i.payment_iban);
    }
    set_totals(&mut set, fields, reading);

    if let Some(Value::Rows(rows)) = fields.get("lines") {
        let lines: Vec<Line> = rows.iter().filter_map(|row| line(row, reading)).collect();
        if !lines.is_empty() {
            set.invoice.lines = lines;
        }
    }
    if let Some(Value::Rows(rows)) = fields.get("tax_lines") {
        let taxes: Vec<TaxRow> = rows.iter().filter_map(|row| tax_row(row, reading)).collect();
        if !taxes.is_empty() {
            set.invoice.tax_breakdown = taxes;
        }
    }
    set.invoice.source = Some("template".to_string());
}

/// Sets fields and their confidence.
struct Setter<'a> {
    invoice: &'a mut Invoice,
    confidence: f32,
}

impl Setter<'_> {
    fn value<T>(&mut self, path: &str, value: T, slot: impl FnOnce(&mut Invoice) -> &mut Option<T>) {
        *slot(self.invoice) = Some(value);
        self.invoice.confidence.insert(path.to_string(), self.confidence);
    }

    fn text(&mut self, path: &str, value: String, slot: impl FnOnce(&mut Invoice) -> &mut Option<String>) {
        self.value(path, value, slot);
    }
}

fn party(slot: &mut Option<Party>) -> &mut Party {
    slot.get_or_insert_with(Party::default)
}

/// The three totals a template gives, checked against each other: net plus tax must be the grand total.
/// A generic total that does not fit the template's grand total was confirmed against another one, and is
/// dropped; template totals that disagree among themselves are kept (they are the vendor's own reading)
/// with a warning and a lower confidence.
fn set_totals(set: &mut Setter<'_>, fields: &Fields, reading: &Reading) {
    let amount = |name: &str| fields.get(name).and_then(|v| v.amount(reading)).map(|a| a.abs());
    let (grand, net, tax) = (amount("amount"), amount("amount_untaxed"), amount("amount_tax"));
    if let Some(grand) = grand {
        set.value("totals.grand_total", grand, |i| &mut i.totals.grand_total);
    }
    if let Some(net) = net {
        set.value("totals.tax_basis_total", net, |i| &mut i.totals.tax_basis_total);
    }
    if let Some(tax) = tax {
        set.value("totals.tax_total", tax, |i| &mut i.totals.tax_total);
    }
    let Some(grand) = grand else { return };
    let totals = &mut set.invoice.totals;
    match (net, tax) {
        (Some(net), Some(tax)) if !close(net + tax, grand) => {
            set.invoice
                .warnings
                .push(format!("the template's totals do not add up: {net} without VAT plus {tax} VAT is not {grand}"));
            for path in ["totals.grand_total", "totals.tax_basis_total", "totals.tax_total"] {
                set.invoice.confidence.insert(path.into(), 0.6);
            }
        }
        (Some(_), Some(_)) => {}
        (Some(net), None) => {
            if totals.tax_total.is_some_and(|t| !close(net + t, grand)) {
                drop_generic(set.invoice, "totals.tax_total", |i| &mut i.totals.tax_total);
            }
        }
        (None, Some(tax)) => {
            if totals.tax_basis_total.is_some_and(|n| !close(n + tax, grand)) {
                drop_generic(set.invoice, "totals.tax_basis_total", |i| &mut i.totals.tax_basis_total);
            }
        }
        (None, None) => {
            if let (Some(n), Some(t)) = (totals.tax_basis_total, totals.tax_total) {
                if !close(n + t, grand) {
                    drop_generic(set.invoice, "totals.tax_basis_total", |i| &mut i.totals.tax_basis_total);
                    drop_generic(set.invoice, "totals.tax_total", |i| &mut i.totals.tax_total);
                }
            }
        }
    }
    let totals = &set.invoice.totals;
    if totals.due_payable.is_some_and(|d| d > grand) {
        drop_generic(set.invoice, "totals.due_payable", |i| &mut i.totals.due_payable);
    }
}

fn drop_generic(invoice: &mut Invoice, path: &str, slot: impl FnOnce(&mut Invoice) -> &mut Option<Decimal>) {
    *slot(invoice) = None;
    invoice.confidence.remove(path);
}

/// Equal to the cent, the tolerance of printed totals.
fn close(a: Decimal, b: Decimal) -> bool {
    (a - b).abs() <= Decimal::new(1, 2)
}

/// One item line from a `lines` row. A row with neither a name nor an amount is not a line.
fn line(row: &Row, reading: &Reading) -> Option<Line> {
    let text = |names: &[&str]| names.iter().find_map(|n| row.get(*n).and_then(Value::text)).filter(|s| !s.is_empty());
    let amount = |names: &[&str]| names.iter().find_map(|n| row.get(*n).and_then(|v| v.amount(reading)));
    let line = Line {
        id: None,
        name: text(&["name", "description", "product"]),
        seller_item_id: text(&["code", "barcode"]),
        quantity: amount(&["qty", "quantity"]),
        unit: text(&["unece_code", "uom"]),
        net_price: amount(&["price_unit", "unit_price", "unitprice"]),
        tax_rate: amount(&["line_tax_percent", "vat_rate", "tax_percent"]),
        line_total: amount(&["price_subtotal", "line_total"]),
    };
    (line.name.is_some() || line.line_total.is_some() || line.net_price.is_some()).then_some(line)
}

/// One VAT row from a `tax_lines` row.
fn tax_row(row: &Row, reading: &Reading) -> Option<TaxRow> {
    let amount = |name: &str| row.get(name).and_then(|v| v.amount(reading));
    let row = TaxRow {
        category: None,
        rate: amount("line_tax_percent"),
        basis: amount("price_subtotal"),
        amount: amount("line_tax_amount"),
    };
    (row.rate.is_some() || row.amount.is_some()).then_some(row)
}

/// An invoice number as a template captured it: one line with a digit, not absurdly long (the generic
/// rules' test, less the single-token rule: templates may capture inner spaces).
fn plausible_number(number: &str) -> bool {
    number.len() <= 64 && !number.contains('\n') && number.chars().any(|c| c.is_ascii_digit())
}

/// An ISO 4217 code from what a template gives: a code, or a common symbol.
fn currency_code(raw: &str) -> Option<&'static str> {
    const CODES: &[&str] = &[
        "EUR", "USD", "GBP", "CHF", "PLN", "INR", "CAD", "AUD", "JPY", "CNY", "SEK", "NOK", "DKK", "CZK", "HUF", "RON",
        "BGN", "TRY", "BRL", "MXN", "ZAR", "NZD", "SGD", "HKD", "RUB", "UAH", "ILS", "AED", "SAR", "KRW",
    ];
    let raw = raw.trim();
    let symbol = match raw {
        "€" => Some("EUR"),
        "$" | "US$" => Some("USD"),
        "£" => Some("GBP"),
        "₹" | "Rs" | "Rs." => Some("INR"),
        "zł" | "zl" => Some("PLN"),
        "Fr." | "CHF" => Some("CHF"),
        "¥" => Some("JPY"),
        _ => None,
    };
    symbol.or_else(|| CODES.iter().copied().find(|c| c.eq_ignore_ascii_case(raw)))
}

fn is_country(code: &str) -> bool {
    code.len() == 2 && code.chars().all(|c| c.is_ascii_alphabetic())
}

/// An identifier without the spaces, dots and dashes printed inside it.
fn compact_id(raw: &str) -> String {
    raw.chars().filter(|c| !c.is_whitespace() && !matches!(c, '.' | '-')).collect::<String>().to_uppercase()
}

/// A VAT id the generic rules confirm (country prefix, shape, check digits where known), or a bare
/// national number (`7740001454`) that carries no prefix to check.
fn vat_plausible(vat: &str) -> bool {
    if vat.chars().all(|c| c.is_ascii_digit()) {
        return (8..=14).contains(&vat.len());
    }
    vat_ids_in(&format!("VAT {vat}")).iter().any(|found| found == vat)
}
