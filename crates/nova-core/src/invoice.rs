//! The invoice schema: the extraction contract of `shared/invoices/SCHEMA.md`.
//!
//! Field names follow the EN 16931 business terms (BT-n), so a result maps onto a Factur-X, XRechnung or
//! UBL e-invoice without renaming. Amounts, quantities, prices and rates are [`Decimal`]s, written to JSON as
//! strings with a dot and the scale they were read with (`"191.00000"` stays `"191.00000"`); never floats.
//! A field that the document does not show, or that could not be read with confidence, is `None`: a wrong
//! value is worse than none.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The fields whose accuracy is the headline figure (SCHEMA.md's *core* fields), by path.
pub const CORE_FIELDS: [&str; 5] = ["invoice_number", "issue_date", "currency", "seller.name", "totals.grand_total"];

/// One extracted invoice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Invoice {
    /// BT-1, as printed (inner spaces, slashes and dashes kept).
    pub invoice_number: Option<String>,
    /// BT-3: `380` invoice, `381` credit note, `384` corrected, `389` self-billed, ...
    pub type_code: Option<String>,
    /// BT-2.
    pub issue_date: Option<NaiveDate>,
    /// BT-9.
    pub due_date: Option<NaiveDate>,
    /// BT-5, an ISO 4217 code.
    pub currency: Option<String>,
    /// BG-4.
    pub seller: Option<Party>,
    /// BG-7.
    pub buyer: Option<Party>,
    /// BT-10.
    pub buyer_reference: Option<String>,
    /// BT-13.
    pub order_reference: Option<String>,
    /// BT-84.
    pub payment_iban: Option<String>,
    /// BG-22.
    #[serde(default)]
    pub totals: Totals,
    /// BG-23.
    #[serde(default)]
    pub tax_breakdown: Vec<TaxRow>,
    /// BG-25.
    #[serde(default)]
    pub lines: Vec<Line>,

    /// Which path produced the result: `einvoice` (embedded or bare e-invoice XML), `text` (text layer and
    /// rules), ... Ignored by scoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Confidence per field path (`"totals.grand_total"`), between 0 and 1. Ignored by scoring.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub confidence: BTreeMap<String, f32>,
    /// Things a reader of the result should know (an arithmetic check that failed, a field left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Whether a person should look at the result, and which fields why ([`crate::review::review`]). Ignored
    /// by scoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<crate::review::Review>,
}

/// A seller or buyer (BG-4, BG-7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub name: Option<String>,
    pub vat_id: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    pub city: Option<String>,
    pub postcode: Option<String>,
}

/// Document totals (BG-22).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// BT-106: sum of line net amounts.
    pub line_total: Option<Decimal>,
    /// BT-107.
    pub allowance_total: Option<Decimal>,
    /// BT-108.
    pub charge_total: Option<Decimal>,
    /// BT-109: total without VAT.
    pub tax_basis_total: Option<Decimal>,
    /// BT-110.
    pub tax_total: Option<Decimal>,
    /// BT-112: total with VAT.
    pub grand_total: Option<Decimal>,
    /// BT-113.
    pub prepaid: Option<Decimal>,
    /// BT-115: amount due for payment.
    pub due_payable: Option<Decimal>,
}

impl Totals {
    /// Each total with its field path (`totals.grand_total`), in the order of the struct.
    pub fn by_path(&self) -> [(&'static str, Option<Decimal>); 8] {
        [
            ("totals.line_total", self.line_total),
            ("totals.allowance_total", self.allowance_total),
            ("totals.charge_total", self.charge_total),
            ("totals.tax_basis_total", self.tax_basis_total),
            ("totals.tax_total", self.tax_total),
            ("totals.grand_total", self.grand_total),
            ("totals.prepaid", self.prepaid),
            ("totals.due_payable", self.due_payable),
        ]
    }
}

/// One row of the VAT breakdown (BG-23).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxRow {
    /// BT-118 VAT category code (`S`, `Z`, `E`, `AE`, `K`, ...).
    pub category: Option<String>,
    /// BT-119, percent.
    pub rate: Option<Decimal>,
    /// BT-116.
    pub basis: Option<Decimal>,
    /// BT-117.
    pub amount: Option<Decimal>,
}

/// One invoice line (BG-25).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// BT-126.
    pub id: Option<String>,
    /// BT-153.
    pub name: Option<String>,
    /// BT-155.
    pub seller_item_id: Option<String>,
    /// BT-129.
    pub quantity: Option<Decimal>,
    /// BT-130, a UN/ECE Rec 20 code where known.
    pub unit: Option<String>,
    /// BT-146.
    pub net_price: Option<Decimal>,
    /// BT-152, percent.
    pub tax_rate: Option<Decimal>,
    /// BT-131.
    pub line_total: Option<Decimal>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn amounts_serialise_as_strings_keeping_their_scale() {
        let mut inv = Invoice::default();
        inv.totals.grand_total = Some(Decimal::from_str("681.87").unwrap());
        inv.lines.push(Line { net_price: Some(Decimal::from_str("191.00000").unwrap()), ..Line::default() });
        inv.issue_date = NaiveDate::from_ymd_opt(2026, 2, 17);
        let json = serde_json::to_value(&inv).unwrap();
        assert_eq!(json["totals"]["grand_total"], "681.87");
        assert_eq!(json["lines"][0]["net_price"], "191.00000");
        assert_eq!(json["issue_date"], "2026-02-17");
        assert!(json["invoice_number"].is_null());
        let back: Invoice = serde_json::from_value(json).unwrap();
        assert_eq!(back, inv);
    }
}
