//! What the model is told: the task, the schema, the document and what the rules found; then, round after
//! round, what went wrong.

use nova_core::Invoice;

/// Characters of document text sent at most.
const MAX_TEXT_CHARS: usize = 30_000;

/// The standing instructions.
pub const SYSTEM: &str = r#"You write Python 3 programs that extract invoices from their text.

Answer with exactly one ```python code block holding a module that defines

    def extract(text: str) -> dict

`text` is the invoice's text layer with its layout kept (columns are separated by runs of spaces). Use the
standard library only (re, decimal, datetime); the program runs with no network, no files but its own, and a
few seconds of time. Do not print.

The program will be reused on later invoices from the same template: find every value by its label or its
position next to a label, never by copying a value from this document into the code.

Return a dict with these keys, a value that the document does not show being None:
  invoice_number (string, as printed), type_code ("380" invoice, "381" credit note), issue_date and due_date
  ("YYYY-MM-DD"), currency (ISO 4217 code such as "EUR"), buyer_reference, order_reference, payment_iban,
  seller and buyer: {name, vat_id, country (ISO 3166-1 alpha-2), city, postcode},
  totals: {line_total, allowance_total, charge_total, tax_basis_total, tax_total, grand_total, prepaid,
           due_payable},
  tax_breakdown: list of {category, rate, basis, amount},
  lines: list of {id, name, seller_item_id, quantity, unit, net_price, tax_rate, line_total}.
Amounts, quantities, prices and rates are strings of decimal digits with a dot ("1234.50"), never floats.
Credit notes carry positive amounts. The output is checked: the EN 16931 sums must hold (lines add up to
line_total; line_total - allowance_total + charge_total = tax_basis_total; tax_breakdown amounts add up to
tax_total; tax_basis_total + tax_total = grand_total; grand_total - prepaid = due_payable), and every value
must be printed in the document. Leave a value None rather than guess."#;

/// The first request for a document.
pub fn first(text: &str, rules: &Invoice) -> String {
    let found = serde_json::to_string(&rules_summary(rules)).unwrap_or_else(|_| "{}".into());
    let text: String = text.chars().take(MAX_TEXT_CHARS).collect();
    format!(
        "The invoice's text:\n<<<\n{text}\n>>>\n\nGeneric rules read these fields (they may be incomplete or wrong):\n{found}\n\nWrite the program."
    )
}

/// The request after a failed round.
pub fn repair(failure: &str) -> String {
    format!(
        "The program did not pass on this document:\n{failure}\n\nFix it and answer with the whole corrected program in one ```python block."
    )
}

/// The rules' result without the bookkeeping keys.
fn rules_summary(rules: &Invoice) -> serde_json::Value {
    let mut value = serde_json::to_value(rules).unwrap_or_default();
    if let serde_json::Value::Object(map) = &mut value {
        for key in ["source", "confidence", "warnings"] {
            map.remove(key);
        }
        map.retain(|_, v| !(v.is_null() || v.as_array().is_some_and(Vec::is_empty)));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_request_carries_the_text_and_the_rules_findings() {
        let rules = Invoice { invoice_number: Some("A-17".into()), source: Some("text".into()), ..Invoice::default() };
        let message = first("Invoice A-17", &rules);
        assert!(message.contains("<<<\nInvoice A-17\n>>>"));
        assert!(message.contains("\"invoice_number\":\"A-17\""));
        assert!(!message.contains("source"));
    }
}
