//! Identifiers that carry their own check digits: IBANs (ISO 13616, mod 97) and EU VAT ids.
//!
//! A candidate counts only when its check digits hold, so a phone number or an order number of the same
//! shape is never taken for one. VAT ids of countries whose check is not implemented here are accepted only
//! on a line that names a VAT id.
//!
//! Of the valid ones, [`payment_iban`] takes the document's one IBAN, and [`vat_ids`] gives a VAT id to the
//! buyer when it stands on a buyer label's line or in the few lines below it, to the seller otherwise.

use std::sync::LazyLock;

use regex::Regex;

use super::doc::Text;
use super::parties::is_buyer_label;
use super::pattern::regex;

/// An IBAN as printed: country, check digits, then groups of up to four, separated by single spaces or not.
static IBAN: LazyLock<Regex> = LazyLock::new(|| regex(r"\b([A-Z]{2}\d{2}(?: ?[A-Z0-9]{1,4}){2,9})\b"));

/// Every valid IBAN in a line, compact (no spaces), in order. A match that runs into the next word
/// (`DE88 2008 ... BIC`) is shortened group by group until its check digits hold.
pub(crate) fn ibans_in(line: &str) -> Vec<String> {
    IBAN.find_iter(line)
        .filter_map(|m| {
            let groups: Vec<&str> = m.as_str().split(' ').collect();
            (1..=groups.len()).rev().find_map(|n| {
                let compact: String = groups[..n].concat();
                iban_valid(&compact).then_some(compact)
            })
        })
        .collect()
}

/// ISO 13616: 15 to 34 characters, moved check (country and check digits to the end), letters as 10..35,
/// the number mod 97 equals 1.
pub(crate) fn iban_valid(iban: &str) -> bool {
    let bytes = iban.as_bytes();
    if !(15..=34).contains(&bytes.len())
        || !bytes[..2].iter().all(u8::is_ascii_uppercase)
        || !bytes[2..4].iter().all(u8::is_ascii_digit)
        || !bytes.iter().all(u8::is_ascii_alphanumeric)
    {
        return false;
    }
    let mut rest = 0u32;
    for &b in bytes[4..].iter().chain(&bytes[..4]) {
        let value =
            if b.is_ascii_digit() { u32::from(b - b'0') } else { u32::from(b.to_ascii_uppercase() - b'A') + 10 };
        rest = if value >= 10 { (rest * 100 + value) % 97 } else { (rest * 10 + value) % 97 };
    }
    rest == 1
}

/// A VAT id: an EU country prefix (or `GB`/`CH`), then its body, possibly with spaces or dots inside.
static VAT_ID: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"\b(AT|BE|BG|CY|CZ|DE|DK|EE|EL|ES|FI|FR|GB|HR|HU|IE|IT|LT|LU|LV|MT|NL|PL|PT|RO|SE|SI|SK|CHE)[ \-]?([0-9A-Z][0-9A-Z .\-]{6,16}[0-9A-Z])\b",
    )
});
/// A line that names a VAT id.
static VAT_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:vat|tva|btw|iva|mwst|ust|uid|nip|tax\s*id|umsatzsteuer|steuer-?id|partita|p\.\s*iva|n°\s*tva|identifica)",
    )
});

/// Every VAT id in a line whose check digits hold (or, for countries without a check here, on a line that
/// names a VAT id), compact, in order.
pub(crate) fn vat_ids_in(line: &str) -> Vec<String> {
    let labelled = VAT_LABEL.is_match(line);
    VAT_ID
        .captures_iter(line)
        .filter_map(|c| {
            let country = &c[1];
            let body: String = c[2].chars().filter(|ch| ch.is_ascii_alphanumeric()).collect();
            let ok = match vat_check(country, &body) {
                Some(valid) => valid,
                None => labelled && body.chars().filter(char::is_ascii_digit).count() >= 8 && body.len() <= 14,
            };
            ok.then(|| format!("{country}{body}"))
        })
        .collect()
}

/// The check-digit rule of a country's VAT id: `Some(valid)` where one is implemented, `None` otherwise.
fn vat_check(country: &str, body: &str) -> Option<bool> {
    let digits: Option<Vec<u32>> = body.chars().map(|c| c.to_digit(10)).collect();
    Some(match country {
        "DE" => digits.is_some_and(|d| d.len() == 9 && de_check(&d)),
        "AT" => body.len() == 9 && body.starts_with('U') && at_check(&body[1..]),
        "FR" => body.len() == 11 && fr_check(body),
        "IT" => digits.is_some_and(|d| d.len() == 11 && luhn(&d)),
        "BE" => digits.is_some_and(|d| d.len() == 10 && be_check(&d)),
        "NL" => body.len() == 12 && nl_check(body),
        "PL" => digits.is_some_and(|d| d.len() == 10 && weighted_mod11(&d, &[6, 5, 7, 2, 3, 4, 5, 6, 7])),
        "ES" => body.len() == 9,
        _ => return None,
    })
}

/// Germany: ISO 7064 MOD 11,10 over the first eight digits.
fn de_check(d: &[u32]) -> bool {
    let mut product = 10;
    for &digit in &d[..8] {
        let mut sum = (digit + product) % 10;
        if sum == 0 {
            sum = 10;
        }
        product = (2 * sum) % 11;
    }
    (11 - product) % 10 == d[8]
}

/// Austria: `U` and eight digits, a Luhn-like sum with the last digit as check.
fn at_check(digits: &str) -> bool {
    let Some(d) = digits.chars().map(|c| c.to_digit(10)).collect::<Option<Vec<u32>>>() else { return false };
    if d.len() != 8 {
        return false;
    }
    let s: u32 = (0..7)
        .map(|i| {
            if i % 2 == 1 {
                let x = d[i] * 2;
                x / 10 + x % 10
            } else {
                d[i]
            }
        })
        .sum();
    (10 - (s + 4) % 10) % 10 == d[7]
}

/// France: two key characters (digits here) then the nine-digit SIREN; key = (12 + 3 × (SIREN mod 97)) mod 97.
fn fr_check(body: &str) -> bool {
    let (key, siren) = body.split_at(2);
    match (key.parse::<u64>(), siren.parse::<u64>()) {
        (Ok(key), Ok(siren)) => (12 + 3 * (siren % 97)) % 97 == key,
        // Alphabetic keys use another scheme; accept their shape only.
        _ => siren.bytes().all(|b| b.is_ascii_digit()) && key.bytes().all(|b| b.is_ascii_alphanumeric()),
    }
}

fn luhn(d: &[u32]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Belgium: the last two digits are 97 − (the first eight mod 97).
fn be_check(d: &[u32]) -> bool {
    let first = d[..8].iter().fold(0u64, |n, &x| n * 10 + u64::from(x));
    let check = u64::from(d[8] * 10 + d[9]);
    97 - first % 97 == check
}

/// The Netherlands: nine digits, `B`, two digits; the first nine pass the mod-11 weighting, or the whole
/// id passes mod 97 (the 2020 sole-proprietor scheme).
fn nl_check(body: &str) -> bool {
    let b = body.as_bytes();
    if b[9] != b'B' || !b[..9].iter().chain(&b[10..]).all(u8::is_ascii_digit) {
        return false;
    }
    let d: Vec<u32> = b[..9].iter().map(|&c| u32::from(c - b'0')).collect();
    let sum: u32 = (0..8).map(|i| d[i] * (9 - i as u32)).sum();
    if sum % 11 == d[8] {
        return true;
    }
    iban_like_mod97(&format!("NL{body}"))
}

fn iban_like_mod97(s: &str) -> bool {
    let mut rest = 0u32;
    for c in s.chars() {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            '+' => 36,
            '*' => 37,
            _ => return false,
        };
        rest = if v >= 10 { (rest * 100 + v) % 97 } else { (rest * 10 + v) % 97 };
    }
    rest == 1
}

/// Weighted sum of the leading digits mod 11 equals the last digit (Poland).
fn weighted_mod11(d: &[u32], weights: &[u32]) -> bool {
    let sum: u32 = d.iter().zip(weights).map(|(x, w)| x * w).sum();
    sum % 11 == d[weights.len()]
}

// ---------------------------------------------------------------------------------------------------------
// Payment IBAN and VAT ids

/// The IBAN to pay to: the one valid IBAN of the document (several distinct ones are ambiguous).
pub(super) fn payment_iban(doc: &Text<'_>) -> Option<String> {
    let mut found: Vec<String> = Vec::new();
    for line in &doc.lines {
        for iban in ibans_in(line) {
            if !found.contains(&iban) {
                found.push(iban);
            }
        }
    }
    (found.len() == 1).then(|| found.remove(0))
}

/// The seller's and the buyer's VAT ids. A valid id on a buyer-labelled line, or in the few lines below a
/// buyer label, is the buyer's; any other is the seller's. Two distinct candidates for one party leave it
/// empty.
pub(super) fn vat_ids(doc: &Text<'_>) -> (Option<String>, Option<String>) {
    let mut seller: Vec<String> = Vec::new();
    let mut buyer: Vec<String> = Vec::new();
    let mut buyer_block_until = 0;
    for (i, line) in doc.lines.iter().enumerate() {
        let buyer_line = is_buyer_label(line);
        if buyer_line {
            buyer_block_until = i + 6;
        }
        for id in vat_ids_in(line) {
            let list = if buyer_line || i < buyer_block_until { &mut buyer } else { &mut seller };
            if !list.contains(&id) {
                list.push(id);
            }
        }
    }
    // An id printed in both places (a footer repeating the seller's) belongs to the seller.
    buyer.retain(|id| !seller.contains(id));
    let one = |list: Vec<String>| if list.len() == 1 { list.into_iter().next() } else { None };
    (one(seller), one(buyer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ibans_are_validated_by_their_check_digits() {
        assert_eq!(ibans_in("IBAN DE88200800000970375700"), ["DE88200800000970375700"]);
        assert_eq!(
            ibans_in("IBAN : FR20 1242 1242 1242 1242 1242 124 - BIC : FIDCFR21XXX"),
            ["FR2012421242124212421242124"]
        );
        // A trailing word that fits the pattern is dropped until the check holds.
        assert_eq!(ibans_in("IBAN DE88 2008 0000 0970 3757 00 BIC COBADEFFXXX"), ["DE88200800000970375700"]);
        // One digit changed: the check fails.
        assert!(ibans_in("IBAN DE88200800000970375701").is_empty());
        assert!(ibans_in("Order AB12 3456 7890").is_empty());
    }

    #[test]
    fn vat_ids_are_validated_by_their_check_digits() {
        assert_eq!(vat_ids_in("USt-ID: DE136695976"), ["DE136695976"]);
        assert!(vat_ids_in("USt-ID: DE136695977").is_empty());
        assert_eq!(vat_ids_in("TVA : FR11999999998 - SIRET"), ["FR11999999998"]);
        assert!(vat_ids_in("TVA : FR12999999998").is_empty());
        assert_eq!(vat_ids_in("P.IVA IT00743110157"), ["IT00743110157"]);
        assert_eq!(vat_ids_in("BTW NL004495445B01"), ["NL004495445B01"]);
        assert_eq!(vat_ids_in("UID ATU13585627"), ["ATU13585627"]);
        assert_eq!(vat_ids_in("NIP PL5260250995"), ["PL5260250995"]);
        assert_eq!(vat_ids_in("BTW BE0403019261"), ["BE0403019261"]);
        // No check here for Sweden: only on a line that names a VAT id.
        assert_eq!(vat_ids_in("VAT no SE556677889901"), ["SE556677889901"]);
        assert!(vat_ids_in("Ref SE556677889901").is_empty());
    }

    #[test]
    fn vat_ids_go_to_seller_or_buyer_by_the_buyer_block() {
        let (seller, buyer) = vat_ids(&Text::new("USt-ID: DE136695976\n\nRechnung an: Kunde GmbH\nUSt-ID DE811128135"));
        assert_eq!(seller.as_deref(), Some("DE136695976"));
        assert_eq!(buyer.as_deref(), Some("DE811128135"));
        let (seller, _) = vat_ids(&Text::new("VAT DE136695976\nVAT DE811128135"));
        assert_eq!(seller, None, "two seller candidates are ambiguous");
    }
}
