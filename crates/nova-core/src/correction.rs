//! Versions of a result: what a person changed in an extracted invoice, and the corrected invoice itself.
//!
//! Version 1 is what the job produced; each correction stored through the API is the next version, with who
//! stored it, when, and which fields changed. The original stays readable.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::invoice::Invoice;
use crate::review::Review;

/// The author of version 1: the job that extracted the invoice.
pub const EXTRACTION_AUTHOR: &str = "extraction";

/// Keys of a result that describe how it was read rather than what it says: not compared as changes.
const ABOUT_THE_READING: [&str; 4] = ["confidence", "review", "warnings", "source"];

/// One version of a job's result (without the result itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResultVersion {
    /// 1 for the extracted result, then 2, 3, ... for each stored correction.
    pub version: u32,
    /// Who stored it: `extraction` for version 1, else the API key's id (`loopback` on a server without keys).
    pub author: String,
    pub created_at: DateTime<Utc>,
    /// What the author said about it, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The fields that differ from the version before.
    #[serde(default)]
    pub changes: Vec<FieldChange>,
}

/// A field that a version changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldChange {
    /// The field's path: `seller.name`, `totals.grand_total`, `lines[2].line_total`, or `lines[3]` for a line
    /// added or removed as a whole.
    pub field: String,
    /// `null` for a field that was empty (or a line that was not there).
    pub before: Value,
    /// `null` for a field emptied (or a line removed).
    pub after: Value,
}

/// The fields that differ between two results, in path order; how each was read (confidences, review,
/// warnings, source) does not count.
pub fn changes(before: &Value, after: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    compare("", before, after, &mut out);
    out
}

fn compare(path: &str, before: &Value, after: &Value, out: &mut Vec<FieldChange>) {
    let child = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                if path.is_empty() && ABOUT_THE_READING.contains(&key.as_str()) {
                    continue;
                }
                compare(&child(key), b.get(key).unwrap_or(&Value::Null), a.get(key).unwrap_or(&Value::Null), out);
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            for i in 0..b.len().max(a.len()) {
                let at = format!("{path}[{i}]");
                match (b.get(i), a.get(i)) {
                    (Some(b), Some(a)) => compare(&at, b, a, out),
                    (b, a) => out.push(FieldChange {
                        field: at,
                        before: b.cloned().unwrap_or(Value::Null),
                        after: a.cloned().unwrap_or(Value::Null),
                    }),
                }
            }
        }
        // An object that appears or goes (a party added or removed) is compared field by field with nothing.
        (Value::Object(_), Value::Null) | (Value::Null, Value::Object(_)) => {
            let empty = Value::Object(Default::default());
            let (b, a) = if before.is_null() { (&empty, after) } else { (before, &empty) };
            compare(path, b, a, out);
        }
        (b, a) if b != a => out.push(FieldChange { field: path.to_string(), before: b.clone(), after: a.clone() }),
        _ => {}
    }
}

/// The invoice a person stored: a field they filled or changed is certain (confidence 1), one they emptied has
/// no confidence, and it needs no more review. The fields they left keep what the extraction said; lines have
/// no confidences of their own.
pub fn reviewed(mut invoice: Invoice, changed: &[FieldChange]) -> Invoice {
    for change in changed.iter().filter(|c| !c.field.contains('[')) {
        if change.after.is_null() {
            invoice.confidence.remove(&change.field);
        } else {
            invoice.confidence.insert(change.field.clone(), 1.0);
        }
    }
    invoice.review = Some(Review { needed: false, reasons: Vec::new() });
    invoice
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(changes: &[FieldChange]) -> Vec<(&str, Value, Value)> {
        changes.iter().map(|c| (c.field.as_str(), c.before.clone(), c.after.clone())).collect()
    }

    #[test]
    fn changed_fields_are_found_by_path_and_the_reading_is_not_a_change() {
        let before = json!({
            "invoice_number": "R-1", "seller": {"name": "Acme", "vat_id": null},
            "totals": {"grand_total": "119.00"},
            "lines": [{"name": "Bolts", "line_total": "10.00"}, {"name": "Nuts", "line_total": "5.00"}],
            "confidence": {"seller.name": 0.6}, "review": {"needed": true}, "source": "text"
        });
        let after = json!({
            "invoice_number": "R-1", "seller": {"name": "Acme GmbH", "vat_id": null},
            "totals": {"grand_total": "119.00"},
            "lines": [{"name": "Bolts", "line_total": "12.00"}],
            "confidence": {}, "review": {"needed": false}
        });
        assert_eq!(
            fields(&changes(&before, &after)),
            [
                ("lines[0].line_total", json!("10.00"), json!("12.00")),
                ("lines[1]", json!({"name": "Nuts", "line_total": "5.00"}), Value::Null),
                ("seller.name", json!("Acme"), json!("Acme GmbH")),
            ]
        );
        assert_eq!(changes(&before, &before), []);
    }

    #[test]
    fn a_party_added_is_its_fields_added() {
        let before = json!({"buyer": null});
        let after = json!({"buyer": {"name": "Beta AG", "vat_id": null}});
        assert_eq!(fields(&changes(&before, &after)), [("buyer.name", Value::Null, json!("Beta AG"))]);
    }

    #[test]
    fn a_reviewed_invoice_is_certain_where_it_was_changed_and_needs_no_review() {
        let mut invoice = Invoice::default();
        invoice.confidence.insert("seller.name".into(), 0.5);
        invoice.confidence.insert("currency".into(), 0.7);
        invoice.confidence.insert("buyer.name".into(), 0.4);
        invoice.review = Some(Review { needed: true, reasons: Vec::new() });
        let changed = [
            FieldChange { field: "seller.name".into(), before: json!("Acme"), after: json!("Acme GmbH") },
            FieldChange { field: "buyer.name".into(), before: json!("Acme"), after: Value::Null },
            FieldChange { field: "lines[0].line_total".into(), before: json!("1"), after: json!("2") },
        ];
        let reviewed = reviewed(invoice, &changed);
        assert_eq!(reviewed.confidence["seller.name"], 1.0);
        assert_eq!(reviewed.confidence.get("buyer.name"), None, "an emptied field has no confidence");
        assert_eq!(reviewed.confidence["currency"], 0.7);
        assert_eq!(reviewed.confidence.len(), 2, "no confidence is made up for lines: {:?}", reviewed.confidence);
        assert_eq!(reviewed.review.map(|r| r.needed), Some(false));
    }
}
