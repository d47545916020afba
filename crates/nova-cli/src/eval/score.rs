//! One extracted invoice against its expected answer, by the rules of `shared/invoices/SCHEMA.md`.
//!
//! Both sides are [`Invoice`]s: the expected answer is parsed at the edge ([`Expected::from_json`]), so
//! amounts are decimals and dates are dates by the time they are compared, and a malformed answer is an
//! error rather than a field silently left unscored. A field the answer does not hold is not scored; a
//! field the extraction left empty is *missing*; a value that is there and not correct is *wrong*.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use nova_core::{Invoice, Line, Party, TaxRow};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

/// The fields of SCHEMA.md whose accuracy is the headline figure.
pub use nova_core::CORE_FIELDS as CORE;

/// An expected answer: the `fields` of a `<stem>.expected.json`.
#[derive(Debug, Clone)]
pub struct Expected {
    /// What the source really knows; a `None` field is not scored.
    pub fields: Invoice,
    /// Whether `lines` is scored at all: profiles MINIMUM and BASIC WL, and most sources, carry none.
    pub has_lines: bool,
    /// Likewise for `tax_breakdown`.
    pub has_tax_breakdown: bool,
}

impl Expected {
    pub fn from_json(fields: &serde_json::Value) -> Result<Self, serde_json::Error> {
        // An answer holds only what its source knows; `Invoice` always has totals, possibly all empty.
        let mut complete = fields.clone();
        if let Some(map) = complete.as_object_mut() {
            map.entry("totals").or_insert_with(|| serde_json::json!({}));
        }
        Ok(Expected {
            fields: serde_json::from_value(complete)?,
            has_lines: fields.get("lines").is_some(),
            has_tax_breakdown: fields.get("tax_breakdown").is_some(),
        })
    }
}

/// How one expected field came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Correct,
    /// A value that is not correct: worse than none.
    Wrong,
    /// No value.
    Missing,
}

/// A list (lines, VAT rows) paired one to one: how many on each side, how many pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ListMatch {
    pub expected: usize,
    pub predicted: usize,
    pub matched: usize,
}

/// The score of one document.
#[derive(Debug, Clone, PartialEq)]
pub struct DocScore {
    /// Every field the answer holds, by path (`seller.name`), in the order of [`FIELDS`].
    pub fields: Vec<(&'static str, Verdict)>,
    /// The confidence of each scored field the extraction filled: the one it gave, 1 for an e-invoice's
    /// values (exact), none when it gave none.
    pub confidence: BTreeMap<&'static str, f32>,
    /// `None` when the answer has no `lines`.
    pub lines: Option<ListMatch>,
    /// `None` when the answer has no `tax_breakdown`.
    pub tax_breakdown: Option<ListMatch>,
}

/// Scores a prediction (`None`: the extraction failed, so every field is missing) against its answer.
pub fn score(expected: &Expected, predicted: Option<&Invoice>) -> DocScore {
    let exact = predicted.is_some_and(|p| p.source.as_deref() == Some("einvoice"));
    let mut fields = Vec::new();
    let mut confidence = BTreeMap::new();
    for field in FIELDS {
        let Some(want) = (field.get)(&expected.fields) else { continue };
        let verdict = match predicted.and_then(|p| (field.get)(p)) {
            None => Verdict::Missing,
            Some(got) if want.agrees(&got) => Verdict::Correct,
            Some(_) => Verdict::Wrong,
        };
        if verdict != Verdict::Missing {
            let given = predicted.and_then(|p| p.confidence.get(field.path).copied());
            if let Some(c) = given.or(exact.then_some(1.0)) {
                confidence.insert(field.path, c);
            }
        }
        fields.push((field.path, verdict));
    }
    let no_lines = Vec::new();
    let no_rows = Vec::new();
    let (lines, rows) = predicted.map_or((&no_lines, &no_rows), |p| (&p.lines, &p.tax_breakdown));
    DocScore {
        fields,
        confidence,
        lines: expected.has_lines.then(|| pair(&expected.fields.lines, lines, lines_match)),
        tax_breakdown: expected.has_tax_breakdown.then(|| pair(&expected.fields.tax_breakdown, rows, tax_rows_match)),
    }
}

/// A scored field: its path in the JSON and how to read it from an invoice.
pub struct Field {
    pub path: &'static str,
    get: for<'a> fn(&'a Invoice) -> Option<Value<'a>>,
}

/// Every scalar field of the schema, in schema order.
pub const FIELDS: &[Field] = &[
    Field { path: "invoice_number", get: |i| i.invoice_number.as_deref().map(Value::Id) },
    Field { path: "type_code", get: |i| i.type_code.as_deref().map(Value::Code) },
    Field { path: "issue_date", get: |i| i.issue_date.map(Value::Date) },
    Field { path: "due_date", get: |i| i.due_date.map(Value::Date) },
    Field { path: "currency", get: |i| i.currency.as_deref().map(Value::Code) },
    Field { path: "seller.name", get: |i| party(&i.seller, |p| &p.name).map(Value::Name) },
    Field { path: "seller.vat_id", get: |i| party(&i.seller, |p| &p.vat_id).map(Value::Id) },
    Field { path: "seller.country", get: |i| party(&i.seller, |p| &p.country).map(Value::Code) },
    Field { path: "seller.city", get: |i| party(&i.seller, |p| &p.city).map(Value::Name) },
    Field { path: "seller.postcode", get: |i| party(&i.seller, |p| &p.postcode).map(Value::Id) },
    Field { path: "buyer.name", get: |i| party(&i.buyer, |p| &p.name).map(Value::Name) },
    Field { path: "buyer.vat_id", get: |i| party(&i.buyer, |p| &p.vat_id).map(Value::Id) },
    Field { path: "buyer.country", get: |i| party(&i.buyer, |p| &p.country).map(Value::Code) },
    Field { path: "buyer.city", get: |i| party(&i.buyer, |p| &p.city).map(Value::Name) },
    Field { path: "buyer.postcode", get: |i| party(&i.buyer, |p| &p.postcode).map(Value::Id) },
    Field { path: "buyer_reference", get: |i| i.buyer_reference.as_deref().map(Value::Id) },
    Field { path: "order_reference", get: |i| i.order_reference.as_deref().map(Value::Id) },
    Field { path: "payment_iban", get: |i| i.payment_iban.as_deref().map(Value::Id) },
    Field { path: "totals.line_total", get: |i| i.totals.line_total.map(Value::Amount) },
    Field { path: "totals.allowance_total", get: |i| i.totals.allowance_total.map(Value::Amount) },
    Field { path: "totals.charge_total", get: |i| i.totals.charge_total.map(Value::Amount) },
    Field { path: "totals.tax_basis_total", get: |i| i.totals.tax_basis_total.map(Value::Amount) },
    Field { path: "totals.tax_total", get: |i| i.totals.tax_total.map(Value::Amount) },
    Field { path: "totals.grand_total", get: |i| i.totals.grand_total.map(Value::Amount) },
    Field { path: "totals.prepaid", get: |i| i.totals.prepaid.map(Value::Amount) },
    Field { path: "totals.due_payable", get: |i| i.totals.due_payable.map(Value::Amount) },
];

/// A field's value, tagged with the rule it is compared by.
///
/// SCHEMA.md names the rule of most fields; the others follow the nearest one: cities are names, references
/// are identifiers like the invoice number, and codes (type code, currency, country) are equal as strings.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    /// Equal as decimals to the cent.
    Amount(Decimal),
    Date(NaiveDate),
    /// Equal as strings.
    Code(&'a str),
    /// Equal once spaces, dots and dashes are removed.
    Id(&'a str),
    /// See [`names_match`].
    Name(&'a str),
}

impl Value<'_> {
    fn agrees(&self, predicted: &Value<'_>) -> bool {
        match (*self, *predicted) {
            (Value::Amount(a), Value::Amount(b)) => same_amount(a, b),
            (Value::Date(a), Value::Date(b)) => a == b,
            (Value::Code(a), Value::Code(b)) => a == b,
            (Value::Id(a), Value::Id(b)) => ids_match(a, b),
            (Value::Name(a), Value::Name(b)) => names_match(a, b),
            _ => false,
        }
    }
}

fn party(party: &Option<Party>, field: fn(&Party) -> &Option<String>) -> Option<&str> {
    party.as_ref().and_then(|p| field(p).as_deref())
}

/// Amounts are equal to the cent: `59.5000` is `59.50`, `300` is `300.00`.
pub fn same_amount(a: Decimal, b: Decimal) -> bool {
    let cents = |d: Decimal| d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    cents(a) == cents(b)
}

/// Identifiers are equal once spaces, dots and dashes are removed; case still counts.
pub fn ids_match(expected: &str, predicted: &str) -> bool {
    let strip = |s: &str| -> String {
        s.chars().filter(|c| !c.is_whitespace() && !matches!(c, '.' | '-' | '‐' | '–' | '—')).collect()
    };
    strip(expected) == strip(predicted)
}

/// Normalised Levenshtein similarity from which two names count as the same ("very similar strings"): one
/// misread letter in ten.
const NAME_SIMILARITY: f64 = 0.85;

/// Names are equal after case and whitespace folding, or when every expected word appears in a prediction
/// that is not much longer (at most half as long again, plus five characters: "OYO Rooms" for "OYO", not
/// the seller's whole address block), or when the folded strings are very similar.
pub fn names_match(expected: &str, predicted: &str) -> bool {
    let (want, got) = (fold(expected), fold(predicted));
    if want == got {
        return true;
    }
    if want.is_empty() || got.is_empty() {
        return false;
    }
    let not_much_longer = 2 * got.chars().count() <= 3 * want.chars().count() + 10;
    let got_words = words(&got);
    if not_much_longer && words(&want).iter().all(|w| got_words.contains(w)) {
        return true;
    }
    strsim::normalized_levenshtein(&want, &got) >= NAME_SIMILARITY
}

/// Lower case, with every run of whitespace (line breaks included) made one space.
fn fold(s: &str) -> String {
    s.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The words of a folded string, punctuation dropped: `a.g.` is `a`, `g`.
fn words(folded: &str) -> Vec<&str> {
    folded.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect()
}

/// A predicted line matches an expected one when `line_total` is equal, `quantity` equal where both have
/// it, and the names are similar. A part the answer does not hold is not a condition (invoice2data's goldens
/// give some lines a name and a price only).
fn lines_match(expected: &Line, predicted: &Line) -> bool {
    required(expected.line_total, predicted.line_total, same_amount)
        && expected.quantity.zip(predicted.quantity).is_none_or(|(a, b)| same_amount(a, b))
        && match (&expected.name, &predicted.name) {
            (Some(a), Some(b)) => names_match(a, b),
            (Some(_), None) => false,
            (None, _) => true,
        }
}

/// VAT rows are matched on `rate`, `basis` and `amount`; the category is not compared.
fn tax_rows_match(expected: &TaxRow, predicted: &TaxRow) -> bool {
    required(expected.rate, predicted.rate, same_amount)
        && required(expected.basis, predicted.basis, same_amount)
        && required(expected.amount, predicted.amount, same_amount)
}

/// A condition on a part the answer holds: the prediction must have it too, and agree.
fn required<T>(expected: Option<T>, predicted: Option<T>, eq: fn(T, T) -> bool) -> bool {
    match (expected, predicted) {
        (Some(a), Some(b)) => eq(a, b),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// Pairs each expected item, in order, with the first unpaired prediction that matches it.
fn pair<T>(expected: &[T], predicted: &[T], matches: fn(&T, &T) -> bool) -> ListMatch {
    let mut used = vec![false; predicted.len()];
    let mut matched = 0;
    for want in expected {
        if let Some(i) = (0..predicted.len()).find(|&i| !used[i] && matches(want, &predicted[i])) {
            used[i] = true;
            matched += 1;
        }
    }
    ListMatch { expected: expected.len(), predicted: predicted.len(), matched }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::str::FromStr;

    use serde_json::json;

    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn expected(fields: serde_json::Value) -> Expected {
        Expected::from_json(&fields).unwrap()
    }

    /// A prediction, read like an answer (so `totals` may be left out).
    fn invoice(fields: serde_json::Value) -> Invoice {
        expected(fields).fields
    }

    /// The verdict on one field, predicted as `got` (JSON `null` for an empty field) against `want`.
    fn verdict(path: &str, want: serde_json::Value, got: serde_json::Value) -> Option<Verdict> {
        let nest = |v: serde_json::Value| {
            let mut root = json!({});
            let parts: Vec<&str> = path.split('.').collect();
            let mut node = &mut root;
            for part in &parts[..parts.len() - 1] {
                node = node.as_object_mut().unwrap().entry(*part).or_insert(json!({}));
            }
            node[parts[parts.len() - 1]] = v;
            root
        };
        let scored = score(&expected(nest(want)), Some(&invoice(nest(got))));
        scored.fields.iter().find(|(p, _)| *p == path).map(|(_, v)| *v)
    }

    fn check(path: &str, want: &str, got: &str, correct: bool) {
        let expect = if correct { Verdict::Correct } else { Verdict::Wrong };
        assert_eq!(verdict(path, json!(want), json!(got)), Some(expect), "{path}: {want:?} against {got:?}");
    }

    #[test]
    fn amounts_are_equal_as_decimals_to_the_cent() {
        check("totals.grand_total", "59.50", "59.5000", true);
        check("totals.grand_total", "300", "300.00", true);
        check("totals.grand_total", "-8.79", "-8.790", true);
        check("totals.grand_total", "10.00", "10.004", true);
        check("totals.grand_total", "1234.50", "1234.51", false);
        check("totals.grand_total", "10.00", "10.005", false);
        check("totals.grand_total", "-8.79", "8.79", false);
        // A thousands separator misread as a decimal point is a different amount, not a rounding.
        check("totals.grand_total", "1234.50", "1.23450", false);
        assert!(same_amount(dec("0.125"), dec("0.13")), "half a cent rounds away from zero");
    }

    #[test]
    fn dates_are_equal_as_dates_and_answers_must_be_iso() {
        check("issue_date", "2017-11-13", "2017-11-13", true);
        check("issue_date", "2017-11-13", "2017-11-14", false);
        // Day and month swapped (a US reading of 11/12) is wrong, not close.
        check("due_date", "2017-12-11", "2017-11-12", false);
        // An answer in another form is refused loudly instead of leaving the field unscored.
        assert!(Expected::from_json(&json!({"issue_date": "13.11.2017"})).is_err());
    }

    #[test]
    fn codes_are_equal_as_strings() {
        check("currency", "EUR", "EUR", true);
        check("currency", "EUR", "eur", false);
        check("currency", "EUR", "€", false);
        check("type_code", "380", "381", false);
        check("seller.country", "DE", "DE", true);
        check("buyer.country", "DE", "AT", false);
    }

    #[test]
    fn ids_ignore_spaces_dots_and_dashes_but_not_case_or_other_characters() {
        check("invoice_number", "FA-2017-0010", "FA 2017 0010", true);
        check("invoice_number", "01.234.567.8-2018-1", "012345678 2018 1", true);
        check("invoice_number", "FA-2017-0010", "FA-2017-0011", false);
        check("invoice_number", "007/10/2022", "007/10/2022", true);
        check("invoice_number", "007/10/2022", "0071O2022", false);
        check("invoice_number", "RE-20140703/502", "re-20140703/502", false);
        check("payment_iban", "FR2012421242124212421242124", "FR20 1242 1242 1242 1242 1242 124", true);
        check("seller.vat_id", "DE234567891", "DE 234.567.891", true);
        check("seller.postcode", "84340", "84341", false);
    }

    #[test]
    fn names_fold_case_and_whitespace_and_allow_a_little_more_or_a_misread_letter() {
        check("seller.name", "Au bon moulin", "AU BON  MOULIN", true);
        check("seller.name", "MVM Musterhafter\nVersicherungsverein", "MVM Musterhafter Versicherungsverein", true);
        check("seller.name", "OYO", "OYO Rooms", true);
        check("seller.name", "Bei Spiel GmbH", "Bei Spiel GmbH,", true);
        check("seller.name", "Au bon moulin", "Au bon mouiin", true);
        check("seller.city", "Malaucène", "MALAUCÈNE", true);
        check("seller.name", "Bei Spiel GmbH", "Bei Spiel GmbH Ring 1 12345 Musterstadt Deutschland", false);
        check("seller.name", "Lieferant GmbH", "Kunde GmbH", false);
        check("buyer.name", "OYO", "OY", false);
        check("seller.name", "TeamGantt", "", false);
    }

    #[test]
    fn an_empty_prediction_is_missing_and_an_unknown_answer_is_not_scored() {
        assert_eq!(verdict("invoice_number", json!("A-1"), json!(null)), Some(Verdict::Missing));
        assert_eq!(verdict("seller.name", json!("ACME"), json!(null)), Some(Verdict::Missing));
        // Only the fields of the answer are scored, whatever else the prediction holds.
        let want = expected(json!({"currency": "EUR"}));
        let got = invoice(json!({"currency": "USD", "invoice_number": "A-1", "totals": {"grand_total": "1.00"}}));
        assert_eq!(score(&want, Some(&got)).fields, vec![("currency", Verdict::Wrong)]);
        assert_eq!(score(&want, Some(&got)).lines, None);
        // A failed extraction is every field missing, and no lines.
        let want = expected(json!({"currency": "EUR", "seller": {"name": "ACME"}, "lines": [{"line_total": "1"}]}));
        let failed = score(&want, None);
        assert_eq!(failed.fields, vec![("currency", Verdict::Missing), ("seller.name", Verdict::Missing)]);
        assert_eq!(failed.lines, Some(ListMatch { expected: 1, predicted: 0, matched: 0 }));
    }

    fn lines(expected_lines: serde_json::Value, predicted_lines: serde_json::Value) -> ListMatch {
        let want = expected(json!({ "lines": expected_lines }));
        score(&want, Some(&invoice(json!({ "lines": predicted_lines })))).lines.unwrap()
    }

    #[test]
    fn lines_match_on_total_quantity_and_name_one_to_one() {
        let book = json!({"name": "Trennblätter A4", "quantity": "20.0000", "line_total": "198.00"});
        let m = |matched, predicted| ListMatch { expected: 1, predicted, matched };
        assert_eq!(
            lines(json!([book]), json!([{"name": "TRENNBLÄTTER A4", "quantity": "20", "line_total": "198"}])),
            m(1, 1)
        );
        // Quantity only where both have it; a longer name holding every word is similar.
        assert_eq!(
            lines(json!([book]), json!([{"name": "Art. 4012 Trennblätter A4", "line_total": "198.00"}])),
            m(1, 1)
        );
        assert_eq!(
            lines(json!([book]), json!([{"name": "Trennblätter A4", "quantity": "2", "line_total": "198.00"}])),
            m(0, 1)
        );
        assert_eq!(
            lines(json!([book]), json!([{"name": "Trennblätter A4", "quantity": "20", "line_total": "19.80"}])),
            m(0, 1)
        );
        assert_eq!(
            lines(json!([book]), json!([{"name": "Joghurt Banane", "quantity": "20", "line_total": "198.00"}])),
            m(0, 1)
        );
        assert_eq!(lines(json!([book]), json!([{"name": "Trennblätter A4", "quantity": "20"}])), m(0, 1));
        // One prediction pairs with one expected line only; extra predictions cost precision.
        let twice = lines(json!([book, book]), json!([book, {"name": "Porto", "line_total": "5.00"}]));
        assert_eq!(twice, ListMatch { expected: 2, predicted: 2, matched: 1 });
        // An answer without a total (invoice2data's AWS lines) matches on the name.
        assert_eq!(
            lines(json!([{"name": "Amazon Glacier", "net_price": "2.22"}]), json!([{"name": "Amazon Glacier"}])),
            m(1, 1)
        );
    }

    #[test]
    fn tax_rows_match_on_rate_basis_and_amount_not_category() {
        let want = expected(json!({"tax_breakdown": [
            {"category": "S", "rate": "20.00", "basis": "81.90", "amount": "16.38"},
            {"category": "S", "rate": "5.50", "basis": "543.00", "amount": "29.87"},
        ]}));
        let got = invoice(json!({"tax_breakdown": [
            {"rate": "5.5", "basis": "543", "amount": "29.87"},
            {"category": "S", "rate": "20", "basis": "81.90", "amount": "16.39"},
        ]}));
        assert_eq!(score(&want, Some(&got)).tax_breakdown, Some(ListMatch { expected: 2, predicted: 2, matched: 1 }));
    }

    /// The dev set's answers, as they are read by `nova eval`.
    fn dev_answers() -> Vec<(PathBuf, serde_json::Value)> {
        let dev = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/invoices/dev");
        let mut answers = Vec::new();
        for sub in ["facturx", "invoice2data", "parsee"] {
            for entry in std::fs::read_dir(dev.join(sub)).expect("the shared invoices sit beside the repository") {
                let path = entry.unwrap().path();
                if path.to_string_lossy().ends_with(".expected.json") {
                    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                    answers.push((path, doc["fields"].clone()));
                }
            }
        }
        assert!(answers.len() >= 50, "dev set incomplete: {}", answers.len());
        answers
    }

    #[test]
    fn every_dev_answer_scores_perfect_against_itself_and_a_cent_off_is_wrong() {
        for (path, fields) in dev_answers() {
            let want = Expected::from_json(&fields).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let scored = score(&want, Some(&want.fields));
            assert!(!scored.fields.is_empty(), "{}", path.display());
            for (field, verdict) in &scored.fields {
                assert_eq!(*verdict, Verdict::Correct, "{}: {field}", path.display());
            }
            for list in [scored.lines, scored.tax_breakdown].into_iter().flatten() {
                assert_eq!(list.matched, list.expected, "{}", path.display());
            }
            assert_eq!(scored.lines.is_some(), fields.get("lines").is_some());

            let mut off = want.fields.clone();
            let Some(total) = off.totals.grand_total.as_mut() else { continue };
            *total += dec("0.01");
            let scored = score(&want, Some(&off));
            assert!(scored.fields.contains(&("totals.grand_total", Verdict::Wrong)), "{}", path.display());
            assert_eq!(scored.fields.iter().filter(|(_, v)| *v != Verdict::Correct).count(), 1);
        }
    }

    #[test]
    fn core_fields_are_scored_fields() {
        for core in CORE {
            assert!(FIELDS.iter().any(|f| f.path == core), "{core}");
        }
    }
}
