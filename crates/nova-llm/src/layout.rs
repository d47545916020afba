//! A document's layout fingerprint: what two invoices from the same template share.
//!
//! The key is the seller's VAT id (as the rules read it), or `novat`. Within a key, layouts are told apart by
//! their label words: every word of three letters or more that holds no digit, lower-cased. Two invoices of
//! one template share their labels, the seller's address and the footer, and differ in the buyer and the
//! items, so their word sets overlap far more than two templates' do; [`Layout::similarity`] is the
//! Jaccard index of the two sets, and [`SAME_LAYOUT`] the least that counts as one layout.

use std::collections::BTreeSet;

/// The least [`Layout::similarity`] at which a stored program is tried on a document.
pub const SAME_LAYOUT: f64 = 0.6;

/// Words kept of a document, at most.
const MAX_WORDS: usize = 1_000;

/// The key of a layout whose seller has no VAT id the rules could read.
pub const NO_VAT_KEY: &str = "novat";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The seller's VAT id without separators, upper-case, or `novat`.
    pub key: String,
    pub labels: BTreeSet<String>,
}

impl Layout {
    /// The layout of `text`, whose seller the rules found to have `seller_vat_id`.
    pub fn of(text: &str, seller_vat_id: Option<&str>) -> Layout {
        let key = seller_vat_id
            .map(|v| v.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_uppercase())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| NO_VAT_KEY.to_string());
        let labels = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() >= 3 && w.chars().all(char::is_alphabetic))
            .map(str::to_lowercase)
            .take(MAX_WORDS * 4)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .take(MAX_WORDS)
            .collect();
        Layout { key, labels }
    }

    /// The labels as stored: space-separated, sorted.
    pub fn labels_text(&self) -> String {
        self.labels.iter().map(String::as_str).collect::<Vec<_>>().join(" ")
    }

    /// The Jaccard index of this layout's labels and `stored` (a [`Layout::labels_text`]).
    pub fn similarity(&self, stored: &str) -> f64 {
        let other: BTreeSet<&str> = stored.split_whitespace().collect();
        let shared = self.labels.iter().filter(|w| other.contains(w.as_str())).count();
        let union = self.labels.len() + other.len() - shared;
        if union == 0 {
            0.0
        } else {
            shared as f64 / union as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_compact_vat_id() {
        assert_eq!(Layout::of("", Some("de 123.456-789")).key, "DE123456789");
        assert_eq!(Layout::of("", None).key, "novat");
    }

    #[test]
    fn labels_skip_numbers_and_short_words() {
        let layout = Layout::of("Invoice No: A-17  Date 3.2.2024\nTotal EUR 12,00 ab x2y", None);
        assert_eq!(layout.labels_text(), "date eur invoice total");
    }

    #[test]
    fn one_template_is_similar_and_another_is_not() {
        let a = Layout::of("Invoice number date customer Alpha Widgets total net tax amount due bank", None);
        let b = Layout::of("Invoice number date customer Beta Gadgets total net tax amount due bank", None);
        let other = Layout::of("Facture numéro échéance client montant hors taxe TVA règlement", None);
        assert!(a.similarity(&b.labels_text()) >= SAME_LAYOUT);
        assert!(a.similarity(&other.labels_text()) < SAME_LAYOUT);
    }
}
