//! Whether a person should look at an extracted invoice before it is used, and why.
//!
//! Three reasons, each tied to a field: a core field is missing; a filled field's confidence is below the
//! threshold (or the rules filled it without one); the EN 16931 arithmetic between the totals, the VAT rows and
//! the lines does not close. An e-invoice read from its XML is exact, so only its arithmetic is checked; a
//! result whose values come with no confidences at all (the model's) is judged on what is missing and on the
//! arithmetic.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::invoice::{Invoice, CORE_FIELDS};

/// The confidence from which a rules' value is trusted as it is: below it, `auto` asks the model and the
/// result asks for review. `nova eval` prints how often values at or above it are wrong.
pub const DEFAULT_CONFIDENCE_THRESHOLD: f32 = 0.8;

/// Amounts that differ by at most this much still close: EN 16931 allows rounding per line and per VAT row.
const TOLERANCE: Decimal = Decimal::from_parts(2, 0, 0, false, 2);

/// The verdict on one result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Review {
    /// Whether a person should look at the result before it is used.
    pub needed: bool,
    /// Why, field by field; empty when no review is needed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<ReviewReason>,
}

/// One reason to look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewReason {
    /// The field's path (`totals.grand_total`), or `totals` for a sum over several.
    pub field: String,
    pub why: Why,
    /// What was found, for a person: the confidence, or the sums that differ.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// A core field has no value.
    Missing,
    /// The value's confidence is below the threshold.
    LowConfidence,
    /// A sum that EN 16931 requires does not close.
    Arithmetic,
}

/// Judges `invoice` with `threshold` (see [`DEFAULT_CONFIDENCE_THRESHOLD`]).
pub fn review(invoice: &Invoice, threshold: f32) -> Review {
    let mut reasons = Vec::new();
    let mut reason = |field: &str, why: Why, detail: String| {
        reasons.push(ReviewReason { field: field.to_string(), why, detail });
    };
    let filled = filled_fields(invoice);
    for field in CORE_FIELDS {
        if !filled.contains(&field) {
            reason(field, Why::Missing, "no value".into());
        }
    }
    let exact = invoice.source.as_deref() == Some("einvoice");
    let rated = !invoice.confidence.is_empty();
    if !exact && rated {
        for field in &filled {
            match invoice.confidence.get(*field) {
                Some(&c) if c >= threshold => {}
                Some(&c) => reason(field, Why::LowConfidence, format!("confidence {c:.2} below {threshold:.2}")),
                None => reason(field, Why::LowConfidence, "filled without a confidence".into()),
            }
        }
    }
    for sum in sums(invoice).iter().filter(|sum| !sum.closes()) {
        let detail = format!("{} is {}, the document says {}", sum.what, sum.computed, sum.stated);
        reason(sum.fields[0], Why::Arithmetic, detail);
    }
    Review { needed: !reasons.is_empty(), reasons }
}

/// The paths of the scalar fields that have a value.
fn filled_fields(invoice: &Invoice) -> Vec<&'static str> {
    let party = |p: &Option<crate::Party>| p.clone().unwrap_or_default();
    let (seller, buyer) = (party(&invoice.seller), party(&invoice.buyer));
    let t = &invoice.totals;
    [
        ("invoice_number", invoice.invoice_number.is_some()),
        ("type_code", invoice.type_code.is_some()),
        ("issue_date", invoice.issue_date.is_some()),
        ("due_date", invoice.due_date.is_some()),
        ("currency", invoice.currency.is_some()),
        ("seller.name", seller.name.is_some()),
        ("seller.vat_id", seller.vat_id.is_some()),
        ("buyer.name", buyer.name.is_some()),
        ("buyer.vat_id", buyer.vat_id.is_some()),
        ("payment_iban", invoice.payment_iban.is_some()),
        ("totals.line_total", t.line_total.is_some()),
        ("totals.tax_basis_total", t.tax_basis_total.is_some()),
        ("totals.tax_total", t.tax_total.is_some()),
        ("totals.grand_total", t.grand_total.is_some()),
        ("totals.due_payable", t.due_payable.is_some()),
    ]
    .into_iter()
    .filter_map(|(path, set)| set.then_some(path))
    .collect()
}

/// One sum of EN 16931 over a result's totals, VAT rows or lines, checked because every one of its terms is
/// there.
#[derive(Debug, Clone, PartialEq)]
pub struct Sum {
    /// The fields the sum vouches for when it closes and puts in doubt when it does not, the stated one
    /// first.
    pub fields: &'static [&'static str],
    /// What is computed, for a person: `tax_basis_total + tax_total`.
    pub what: &'static str,
    pub computed: Decimal,
    pub stated: Decimal,
}

impl Sum {
    /// Whether the stated amount is the computed one, within the rounding EN 16931 allows.
    pub fn closes(&self) -> bool {
        (self.computed - self.stated).abs() <= TOLERANCE
    }
}

/// The sums of EN 16931 that `invoice` can be checked by (BR-CO-10, 13, 14, 15, 16, and the VAT rows' bases
/// against the total without VAT), each whose terms are all there. The amount due does not vouch for the
/// total it is computed from: with nothing paid, it is the same number read twice.
pub fn sums(invoice: &Invoice) -> Vec<Sum> {
    let t = &invoice.totals;
    let zero = Decimal::ZERO;
    let mut sums = Vec::new();
    let mut sum = |fields, what, computed: Option<Decimal>, stated: Option<Decimal>| {
        if let (Some(computed), Some(stated)) = (computed, stated) {
            sums.push(Sum { fields, what, computed, stated });
        }
    };
    // BR-CO-15: total with VAT = total without VAT + VAT.
    sum(
        &["totals.grand_total", "totals.tax_basis_total", "totals.tax_total"],
        "tax_basis_total + tax_total",
        t.tax_basis_total.zip(t.tax_total).map(|(b, v)| b + v),
        t.grand_total,
    );
    // BR-CO-13: total without VAT = sum of lines - allowances + charges.
    sum(
        &["totals.tax_basis_total", "totals.line_total", "totals.allowance_total", "totals.charge_total"],
        "line_total - allowance_total + charge_total",
        t.line_total.map(|l| l - t.allowance_total.unwrap_or(zero) + t.charge_total.unwrap_or(zero)),
        t.tax_basis_total,
    );
    // BR-CO-16: amount due = total with VAT - paid.
    sum(
        &["totals.due_payable", "totals.prepaid"],
        "grand_total - prepaid",
        t.grand_total.map(|g| g - t.prepaid.unwrap_or(zero)),
        t.due_payable,
    );
    // A sum over a list whose every item states the amount; none for an empty list.
    fn total<T>(items: &[T], amount: impl Fn(&T) -> Option<Decimal>) -> Option<Decimal> {
        (!items.is_empty()).then(|| items.iter().map(amount).sum::<Option<Decimal>>()).flatten()
    }
    // BR-CO-14: VAT = sum of the VAT rows' amounts; and the rows' bases make the total without VAT.
    sum(&["totals.tax_total"], "the sum of the VAT rows", total(&invoice.tax_breakdown, |r| r.amount), t.tax_total);
    sum(
        &["totals.tax_basis_total"],
        "the sum of the VAT rows' bases",
        total(&invoice.tax_breakdown, |r| r.basis),
        t.tax_basis_total,
    );
    // BR-CO-10: sum of lines = the lines' net amounts.
    sum(&["totals.line_total"], "the sum of the lines", total(&invoice.lines, |l| l.line_total), t.line_total);
    sums
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::{Line, Party, TaxRow};

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// A text-path result with every core field at `confidence`, and totals that close.
    fn rules_result(confidence: f32) -> Invoice {
        let mut invoice = Invoice {
            invoice_number: Some("R-1".into()),
            issue_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 2),
            currency: Some("EUR".into()),
            seller: Some(Party { name: Some("Seller GmbH".into()), ..Party::default() }),
            source: Some("text".into()),
            ..Invoice::default()
        };
        invoice.totals.tax_basis_total = Some(d("100.00"));
        invoice.totals.tax_total = Some(d("19.00"));
        invoice.totals.grand_total = Some(d("119.00"));
        for field in filled_fields(&invoice) {
            invoice.confidence.insert(field.into(), confidence);
        }
        invoice
    }

    fn whys(review: &Review) -> Vec<(&str, Why)> {
        review.reasons.iter().map(|r| (r.field.as_str(), r.why)).collect()
    }

    #[test]
    fn a_confident_complete_result_that_adds_up_needs_no_review() {
        let review = review(&rules_result(0.9), 0.8);
        assert_eq!(review, Review { needed: false, reasons: vec![] });
    }

    #[test]
    fn missing_core_fields_and_unsure_values_are_named() {
        let mut invoice = rules_result(0.9);
        invoice.currency = None;
        invoice.confidence.insert("invoice_number".into(), 0.5);
        invoice.payment_iban = Some("DE02120300000000202051".into()); // filled without a confidence
        let review = review(&invoice, 0.8);
        assert!(review.needed);
        assert_eq!(
            whys(&review),
            [("currency", Why::Missing), ("invoice_number", Why::LowConfidence), ("payment_iban", Why::LowConfidence)]
        );
        assert!(review.reasons[1].detail.contains("0.50"), "{:?}", review.reasons[1]);
    }

    #[test]
    fn totals_that_do_not_close_are_named_whatever_the_source() {
        let mut invoice = rules_result(0.95);
        invoice.source = Some("einvoice".into());
        invoice.confidence.clear();
        invoice.totals.grand_total = Some(d("129.00"));
        invoice.totals.prepaid = Some(d("9.00"));
        invoice.totals.due_payable = Some(d("120.00"));
        invoice.tax_breakdown = vec![TaxRow { amount: Some(d("19.00")), ..TaxRow::default() }];
        invoice.lines = vec![Line { line_total: Some(d("60")), ..Line::default() }];
        invoice.totals.line_total = Some(d("100.00"));
        let review = review(&invoice, 0.8);
        assert_eq!(
            whys(&review),
            [("totals.grand_total", Why::Arithmetic), ("totals.line_total", Why::Arithmetic)],
            "{review:?}"
        );
        assert!(review.reasons[0].detail.contains("119.00") && review.reasons[0].detail.contains("129.00"));
        // Rounding within two cents closes.
        invoice.totals.grand_total = Some(d("119.02"));
        invoice.totals.due_payable = Some(d("110.02"));
        invoice.lines[0].line_total = Some(d("100.01"));
        assert_eq!(super::review(&invoice, 0.8).reasons, vec![]);
    }

    #[test]
    fn sums_are_checked_when_their_terms_are_there_and_name_what_they_vouch_for() {
        let mut invoice = rules_result(0.9);
        let checked = |invoice: &Invoice| sums(invoice).iter().map(|s| (s.what, s.closes())).collect::<Vec<_>>();
        assert_eq!(checked(&invoice), [("tax_basis_total + tax_total", true)]);
        invoice.totals.due_payable = Some(d("119.00"));
        invoice.confidence.insert("totals.due_payable".into(), 0.9);
        invoice.tax_breakdown = vec![TaxRow { basis: Some(d("90.00")), amount: Some(d("19.00")), ..TaxRow::default() }];
        assert_eq!(
            checked(&invoice),
            [
                ("tax_basis_total + tax_total", true),
                ("grand_total - prepaid", true),
                ("the sum of the VAT rows", true),
                ("the sum of the VAT rows' bases", false),
            ]
        );
        // The amount due, the grand total read again when nothing was paid, does not vouch for it.
        let due = sums(&invoice).into_iter().find(|s| s.what == "grand_total - prepaid").unwrap();
        assert!(!due.fields.contains(&"totals.grand_total"));
        assert_eq!(whys(&review(&invoice, 0.8)), [("totals.tax_basis_total", Why::Arithmetic)]);
    }

    #[test]
    fn a_result_without_confidences_is_judged_on_gaps_and_sums() {
        let mut invoice = rules_result(0.9);
        invoice.source = Some("llm".into());
        invoice.confidence.clear();
        assert!(!review(&invoice, 0.8).needed);
        invoice.issue_date = None;
        assert_eq!(whys(&review(&invoice, 0.8)), [("issue_date", Why::Missing)]);
    }
}
