//! Judging a program's output: the schema and its types, the EN 16931 arithmetic, and the document itself.
//!
//! A model-written program is trusted for nothing. Its output must parse as the invoice schema with amounts
//! as decimal strings; its amounts must add up by the EN 16931 business rules (BR-CO-10 lines to the line
//! total, BR-CO-13 to the tax basis, BR-CO-14 VAT rows to the tax total, BR-CO-15 to the grand total,
//! BR-CO-16 to the amount due); and what it claims to have read must be printed in the document (an amount
//! as a number in the text, an identifier or a name as characters of it). Every failure is a [`Problem`]
//! that goes back to the model in words it can act on; when the loop gives up, [`Checked::confirmed_only`]
//! keeps only what passed.

use std::collections::HashSet;
use std::str::FromStr;

use nova_core::Invoice;
use rust_decimal::Decimal;
use serde_json::Value;

/// The output of one program, judged.
#[derive(Debug, Clone)]
pub struct Checked {
    pub invoice: Invoice,
    pub problems: Vec<Problem>,
}

/// One thing wrong with an output, naming the fields it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field paths (`totals.grand_total`) that cannot be trusted because of this problem.
    pub fields: Vec<&'static str>,
    pub message: String,
}

/// The fields an output must fill to be kept as a program for its layout.
pub const REQUIRED: [&str; 3] = ["invoice_number", "issue_date", "totals.grand_total"];

/// Amount fields of the totals, by path.
const TOTALS: [&str; 8] = [
    "line_total",
    "allowance_total",
    "charge_total",
    "tax_basis_total",
    "tax_total",
    "grand_total",
    "prepaid",
    "due_payable",
];

/// Largest difference accepted in a sum: rounding to the cent.
fn cent() -> Decimal {
    Decimal::new(1, 2)
}

impl Checked {
    /// Whether the output passed every check.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// The invoice with every field some problem concerns set to `None`: what can be confirmed.
    pub fn confirmed_only(&self) -> Invoice {
        let mut invoice = self.invoice.clone();
        let doubtful: HashSet<&str> = self.problems.iter().flat_map(|p| p.fields.iter().copied()).collect();
        for field in &doubtful {
            clear(&mut invoice, field);
        }
        if doubtful.contains("lines") {
            invoice.lines.clear();
        }
        if doubtful.contains("tax_breakdown") {
            invoice.tax_breakdown.clear();
        }
        invoice
    }
}

/// Parses `output` (what `extract(text)` returned, as JSON) and checks it against `text`, the document.
/// `Err` when it is not the schema at all: that is a problem of the whole output.
pub fn check(output: &Value, text: &str) -> Result<Checked, String> {
    let Value::Object(map) = output else {
        return Err(format!("extract(text) must return a dict (a JSON object), not {}", kind(output)));
    };
    let mut problems = Vec::new();
    number_amounts(output, &mut problems);
    let mut cleaned = Value::Object(map.clone());
    // What the caller sets, never the program.
    if let Value::Object(m) = &mut cleaned {
        for key in ["source", "confidence", "warnings"] {
            m.remove(key);
        }
    }
    let invoice: Invoice =
        serde_json::from_value(cleaned).map_err(|e| format!("the result does not fit the schema: {e}"))?;
    let printed = Printed::new(text);
    missing_required(&invoice, &mut problems);
    arithmetic(&invoice, &mut problems);
    not_in_document(&invoice, &printed, &mut problems);
    Ok(Checked { invoice, problems })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "None",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a dict",
    }
}

/// Amounts written as JSON numbers (binary floats in the program) instead of decimal strings.
fn number_amounts(output: &Value, problems: &mut Vec<Problem>) {
    let mut found = Vec::new();
    for name in TOTALS {
        if output["totals"][name].is_number() {
            found.push(format!("totals.{name}"));
        }
    }
    for (list, keys) in [
        ("tax_breakdown", &["rate", "basis", "amount"][..]),
        ("lines", &["quantity", "net_price", "tax_rate", "line_total"]),
    ] {
        if let Some(rows) = output[list].as_array() {
            for (i, row) in rows.iter().enumerate() {
                for key in keys {
                    if row[*key].is_number() {
                        found.push(format!("{list}[{i}].{key}"));
                    }
                }
            }
        }
    }
    if !found.is_empty() {
        problems.push(Problem {
            fields: vec![],
            message: format!(
                "amounts must be decimal strings such as \"1234.50\" (use decimal.Decimal or the printed digits, never float): {}",
                found.join(", ")
            ),
        });
    }
}

fn missing_required(invoice: &Invoice, problems: &mut Vec<Problem>) {
    let missing: Vec<&str> = REQUIRED.iter().copied().filter(|f| is_null(invoice, f)).collect();
    if !missing.is_empty() {
        problems.push(Problem {
            fields: vec![],
            message: format!("these fields are empty but every invoice shows them: {}", missing.join(", ")),
        });
    }
}

/// The EN 16931 sums that the output's amounts allow checking.
fn arithmetic(invoice: &Invoice, problems: &mut Vec<Problem>) {
    let t = &invoice.totals;
    let mut rule = |ok: bool, fields: Vec<&'static str>, message: String| {
        if !ok {
            problems.push(Problem { fields, message });
        }
    };
    let close = |a: Decimal, b: Decimal| (a - b).abs() <= cent();

    let line_sums: Option<Decimal> = if invoice.lines.is_empty() {
        None
    } else {
        invoice.lines.iter().map(|l| l.line_total).sum::<Option<Decimal>>()
    };
    if let (Some(sum), Some(line_total)) = (line_sums, t.line_total) {
        rule(
            close(sum, line_total),
            vec!["lines", "totals.line_total"],
            format!("BR-CO-10: the lines' line_total add up to {sum}, but totals.line_total is {line_total}"),
        );
    }
    if let (Some(lines), Some(basis)) = (t.line_total, t.tax_basis_total) {
        let expected = lines - t.allowance_total.unwrap_or_default() + t.charge_total.unwrap_or_default();
        rule(
            close(expected, basis),
            vec!["totals.line_total", "totals.tax_basis_total", "totals.allowance_total", "totals.charge_total"],
            format!(
                "BR-CO-13: line_total - allowance_total + charge_total = {expected}, but tax_basis_total is {basis}"
            ),
        );
    }
    let rows_tax: Option<Decimal> = if invoice.tax_breakdown.is_empty() {
        None
    } else {
        invoice.tax_breakdown.iter().map(|r| r.amount).sum::<Option<Decimal>>()
    };
    if let (Some(sum), Some(tax)) = (rows_tax, t.tax_total) {
        rule(
            close(sum, tax),
            vec!["tax_breakdown", "totals.tax_total"],
            format!("BR-CO-14: the tax_breakdown amounts add up to {sum}, but totals.tax_total is {tax}"),
        );
    }
    for (i, row) in invoice.tax_breakdown.iter().enumerate() {
        if let (Some(basis), Some(rate), Some(amount)) = (row.basis, row.rate, row.amount) {
            let expected = (basis * rate / Decimal::from(100)).round_dp(2);
            rule(
                close(expected, amount),
                vec!["tax_breakdown"],
                format!("tax_breakdown[{i}]: {rate}% of {basis} is {expected}, not {amount}"),
            );
        }
    }
    if let (Some(basis), Some(tax), Some(grand)) = (t.tax_basis_total, t.tax_total, t.grand_total) {
        rule(
            close(basis + tax, grand),
            vec!["totals.tax_basis_total", "totals.tax_total", "totals.grand_total"],
            format!("BR-CO-15: tax_basis_total + tax_total = {}, but grand_total is {grand}", basis + tax),
        );
    }
    if let (Some(grand), Some(due)) = (t.grand_total, t.due_payable) {
        let expected = grand - t.prepaid.unwrap_or_default();
        rule(
            close(expected, due),
            vec!["totals.grand_total", "totals.prepaid", "totals.due_payable"],
            format!("BR-CO-16: grand_total - prepaid = {expected}, but due_payable is {due}"),
        );
    }
}

/// Values the output claims that the document does not show.
fn not_in_document(invoice: &Invoice, printed: &Printed, problems: &mut Vec<Problem>) {
    let mut absent = |field: &'static str, shown: bool, value: String| {
        if !shown {
            problems.push(Problem {
                fields: vec![field],
                message: format!("{field} is {value:?}, which the document does not show"),
            });
        }
    };
    let code = |field: &'static str, v: &Option<String>, absent: &mut dyn FnMut(&'static str, bool, String)| {
        if let Some(v) = v {
            absent(field, printed.has_code(v), v.clone());
        }
    };
    code("invoice_number", &invoice.invoice_number, &mut absent);
    code("payment_iban", &invoice.payment_iban, &mut absent);
    code("buyer_reference", &invoice.buyer_reference, &mut absent);
    code("order_reference", &invoice.order_reference, &mut absent);
    for (prefix, party) in [("seller", &invoice.seller), ("buyer", &invoice.buyer)] {
        let Some(party) = party else { continue };
        let (name, vat) =
            if prefix == "seller" { ("seller.name", "seller.vat_id") } else { ("buyer.name", "buyer.vat_id") };
        code(vat, &party.vat_id, &mut absent);
        if let Some(v) = &party.name {
            absent(name, printed.has_words(v), v.clone());
        }
    }
    if let Some(currency) = &invoice.currency {
        absent("currency", printed.has_currency(currency), currency.clone());
    }
    for (name, value) in invoice.totals.by_path() {
        if let Some(v) = value {
            absent(name, printed.has_amount(v), v.to_string());
        }
    }
    for (i, row) in invoice.tax_breakdown.iter().enumerate() {
        for v in [row.basis, row.amount].into_iter().flatten() {
            if !printed.has_amount(v) {
                absent("tax_breakdown", false, format!("{v} (tax_breakdown[{i}])"));
            }
        }
    }
    for (i, line) in invoice.lines.iter().enumerate() {
        if let Some(v) = line.line_total {
            if !printed.has_amount(v) {
                absent("lines", false, format!("{v} (lines[{i}].line_total)"));
            }
        }
    }
}

fn is_null(invoice: &Invoice, field: &str) -> bool {
    match field {
        "invoice_number" => invoice.invoice_number.is_none(),
        "issue_date" => invoice.issue_date.is_none(),
        other => invoice.totals.by_path().iter().find(|(name, _)| *name == other).is_some_and(|(_, v)| v.is_none()),
    }
}

fn clear(invoice: &mut Invoice, field: &str) {
    let t = &mut invoice.totals;
    match field {
        "invoice_number" => invoice.invoice_number = None,
        "payment_iban" => invoice.payment_iban = None,
        "buyer_reference" => invoice.buyer_reference = None,
        "order_reference" => invoice.order_reference = None,
        "currency" => invoice.currency = None,
        "seller.name" | "seller.vat_id" | "buyer.name" | "buyer.vat_id" => {
            let party = if field.starts_with("seller") { &mut invoice.seller } else { &mut invoice.buyer };
            if let Some(p) = party {
                if field.ends_with("name") {
                    p.name = None;
                } else {
                    p.vat_id = None;
                }
            }
        }
        "totals.line_total" => t.line_total = None,
        "totals.allowance_total" => t.allowance_total = None,
        "totals.charge_total" => t.charge_total = None,
        "totals.tax_basis_total" => t.tax_basis_total = None,
        "totals.tax_total" => t.tax_total = None,
        "totals.grand_total" => t.grand_total = None,
        "totals.prepaid" => t.prepaid = None,
        "totals.due_payable" => t.due_payable = None,
        _ => {}
    }
}

/// What the document prints, prepared for look-ups: its numbers as decimals (read both ways, `1.234,56`
/// and `1,234.56`), its characters without separators, and its words.
struct Printed {
    amounts: HashSet<Decimal>,
    compact: String,
    folded: String,
}

impl Printed {
    fn new(text: &str) -> Printed {
        let mut amounts = HashSet::new();
        for token in text.split(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | ',' | '\''))) {
            let token = token.trim_matches(|c: char| !c.is_ascii_digit());
            if token.is_empty() {
                continue;
            }
            for v in readings(token) {
                amounts.insert(v.normalize());
            }
        }
        let compact = compact(text);
        let folded = text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        Printed { amounts, compact, folded }
    }

    fn has_amount(&self, v: Decimal) -> bool {
        v.is_zero() || self.amounts.contains(&v.abs().normalize())
    }

    fn has_code(&self, v: &str) -> bool {
        let c = compact(v);
        !c.is_empty() && self.compact.contains(&c)
    }

    fn has_words(&self, v: &str) -> bool {
        let folded = v.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        !folded.is_empty() && (self.folded.contains(&folded) || self.compact.contains(&compact(v)))
    }

    fn has_currency(&self, code: &str) -> bool {
        let symbol = match code {
            "EUR" => Some('€'),
            "USD" => Some('$'),
            "GBP" => Some('£'),
            "JPY" => Some('¥'),
            "INR" => Some('₹'),
            _ => None,
        };
        self.folded.contains(&code.to_lowercase()) || symbol.is_some_and(|s| self.folded.contains(s))
    }
}

/// Lower-case letters and digits only: identifiers compare without their spaces, dots and dashes.
fn compact(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// The values a printed number can stand for: with a comma or a dot as the decimal mark, the other (or an
/// apostrophe) grouping thousands.
fn readings(token: &str) -> Vec<Decimal> {
    let mut out = Vec::new();
    let plain = |s: String| Decimal::from_str(&s).ok();
    // Dot decimal, comma/apostrophe grouping.
    out.extend(plain(token.replace([',', '\''], "")));
    // Comma decimal, dot/apostrophe grouping.
    out.extend(plain(token.replace(['.', '\''], "").replace(',', ".")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEXT: &str = "ACME GmbH   Rechnung Nr. RE-2024/17   Datum 03.02.2024\n\
        DE 123 456 789   IBAN DE89 3704 0044 0532 0130 00\n\
        Widget   2   10,00   20,00\nNetto 1.020,00  USt 19% 193,80  Gesamt EUR 1.213,80\n";

    fn output() -> Value {
        json!({
            "invoice_number": "RE-2024/17", "issue_date": "2024-02-03", "currency": "EUR",
            "seller": {"name": "ACME GmbH", "vat_id": "DE123456789"},
            "payment_iban": "DE89370400440532013000",
            "totals": {"tax_basis_total": "1020.00", "tax_total": "193.80", "grand_total": "1213.80"},
            "tax_breakdown": [{"rate": "19", "basis": "1020.00", "amount": "193.80"}],
        })
    }

    #[test]
    fn a_faithful_output_passes() {
        let checked = check(&output(), TEXT).unwrap();
        assert!(checked.passed(), "{:?}", checked.problems);
        assert_eq!(checked.invoice.totals.grand_total, Decimal::from_str("1213.80").ok());
    }

    #[test]
    fn not_a_dict_or_not_the_schema_is_refused_whole() {
        assert!(check(&json!([1, 2]), TEXT).unwrap_err().contains("dict"));
        assert!(check(&json!({"issue_date": "3 Feb"}), TEXT).unwrap_err().contains("schema"));
    }

    #[test]
    fn broken_arithmetic_is_a_problem_and_its_fields_are_dropped() {
        let mut out = output();
        out["totals"]["grand_total"] = json!("1203.80");
        let checked = check(&out, TEXT).unwrap();
        assert!(checked.problems.iter().any(|p| p.message.starts_with("BR-CO-15")), "{:?}", checked.problems);
        let kept = checked.confirmed_only();
        assert_eq!(kept.totals.grand_total, None);
        assert_eq!(kept.totals.tax_total, None);
        assert_eq!(kept.invoice_number.as_deref(), Some("RE-2024/17"));
    }

    #[test]
    fn values_the_document_does_not_show_are_problems() {
        let mut out = output();
        out["invoice_number"] = json!("INV-999");
        out["seller"]["name"] = json!("Other Corp");
        let checked = check(&out, TEXT).unwrap();
        let fields: Vec<&str> = checked.problems.iter().flat_map(|p| p.fields.clone()).collect();
        assert!(fields.contains(&"invoice_number") && fields.contains(&"seller.name"), "{fields:?}");
        let kept = checked.confirmed_only();
        assert_eq!(kept.invoice_number, None);
        assert_eq!(kept.seller.unwrap().vat_id.as_deref(), Some("DE123456789"));
    }

    #[test]
    fn float_amounts_and_empty_required_fields_are_named() {
        let mut out = output();
        out["totals"]["tax_total"] = json!(193.8);
        out["invoice_number"] = Value::Null;
        let messages: Vec<String> = check(&out, TEXT).unwrap().problems.into_iter().map(|p| p.message).collect();
        assert!(
            messages.iter().any(|m| m.contains("decimal strings") && m.contains("totals.tax_total")),
            "{messages:?}"
        );
        assert!(messages.iter().any(|m| m.contains("invoice_number")), "{messages:?}");
    }

    #[test]
    fn printed_numbers_are_read_in_both_conventions() {
        let p = Printed::new("Total 1.213,80 and 2,500.5 and 1'000.00");
        for v in ["1213.80", "2500.5", "1000", "1213.8"] {
            assert!(p.has_amount(Decimal::from_str(v).unwrap()), "{v}");
        }
        assert!(!p.has_amount(Decimal::from_str("1213.81").unwrap()));
    }
}
