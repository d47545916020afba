//! The postal addresses of the seller and the buyer (postcode, city, country: BT-38..40, BT-53..55) and the
//! buyer's name (BT-44), from the address blocks of the text.
//!
//! An address is found by its anchor, the line (or the part of a sender line between `·`, `●`, `|`) that
//! holds a postcode and a city in one of the common forms: `80333 München`, `DE 80333 München`, `F-84340
//! Malaucène`, `1012 AB Amsterdam`, `00-950 Warszawa`, `SW1B 3BN London`, `London SW1B 3BN`, `Springfield,
//! IL 62704`. Its country is a code before the postcode, a country's name after the city (on its line or the
//! next), or else the party's VAT id prefix; none is guessed from the postcode's shape alone.
//!
//! Which party an address belongs to comes from where it stands: the seller's is on the line of the seller's
//! name (a sender line), under a seller heading, or just below the name in its column; the buyer's is under a
//! buyer label (not a delivery address), above an attention line, or, when none of these says, the one other
//! address of the document. The buyer's name is the top of its block above the street (`Herrn` and the like
//! keep the name after them). An address that fits neither party is left out: a wrong address is worse than
//! none.

use std::sync::LazyLock;

use regex::Regex;

use super::doc::{cells, Text};
use super::pattern::regex;
use super::{
    above_attention, is_buyer_label, name_like, LEGAL_FORM_ANY_CASE, LEGAL_FORM_CAPS, NAME_LABEL, SELLER_HEADING,
    SELLER_LABEL,
};

/// A postal address, as much of it as the text tells.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Address {
    pub postcode: String,
    pub city: String,
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
}

/// What the address blocks tell of the two parties.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Parties {
    pub seller: Option<Address>,
    pub buyer: Option<Address>,
    pub buyer_name: Option<String>,
}

/// Where the seller's name was found: its line and the index of its cell on that line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NameAt {
    pub line: usize,
    pub cell: usize,
}

/// Lines looked at below a heading or label, or below the seller's name, for its address.
const BLOCK_LINES: usize = 8;

/// Postcode and city: an optional country code, then the postcode (five digits, four, Dutch `1012 AB`, Polish
/// `00-950`, British `SW1B 3BN`), then the city's words.
static POSTCODE_CITY: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"^(?:(?P<cc>[A-Z]{1,2})(?:\s?-\s?|\s))?(?P<pc>\d{4}\s?[A-Z]{2}|\d{5}|\d{4}|\d{2}-\d{3}|[A-Z]{1,2}\d[A-Z\d]?\s\d[A-Z]{2})\s+(?P<city>\p{Lu}[\p{L}'’.\-]*(?:\s[\p{L}'’.\-]+){0,3}?)(?:\s+(?i:cedex)(?:\s+\d{1,2})?)?$",
    )
});
/// British (`London SW1B 3BN`) and American (`Springfield, IL 62704`) forms: the city first.
static CITY_POSTCODE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"^(?P<city>\p{Lu}[\p{L}'.\-]*(?:\s\p{Lu}[\p{L}'.\-]*){0,2}),?\s+(?:(?P<pc>[A-Z]{1,2}\d[A-Z\d]?\s\d[A-Z]{2})|(?P<state>[A-Z]{2})\s+(?P<zip>\d{5}(?:-\d{4})?))$",
    )
});
/// Separators inside one cell of a sender line: `Kraxi GmbH · Flugzeugallee 17 · 12345 Papierfeld`.
static SEGMENT_GAP: LazyLock<Regex> = LazyLock::new(|| regex(r"\s*[·●•|]\s*|,\s+"));
/// Labels of a delivery address: such a block is not the buyer's.
static DELIVERY_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:livraison|delivery|shipping|ship(?:ped)?\s*to|deliver(?:ed)?\s*to|liefer(?:adresse|anschrift)|warenempfänger|afleveradres|entrega|consegna|dostawy)",
    )
});
/// A courtesy title alone on the line over a person's name: it stays with the name.
static SALUTATION: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^(?:herrn?|frau|firma|mr\.?|mrs\.?|ms\.?|miss|monsieur|madame|m\.|mme\.?|sr\.?|sra\.?|señor|señora|dhr\.?|mevr\.?|de\s+heer|mevrouw|sig\.?|sig\.ra|pan|pani)$",
    )
});
/// Document titles and page numbers that may stand above an address block without being a name.
static TITLE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^(?:invoice|rechnung|gutschrift|facture|avoir|factura|fattura|faktura|factuur|credit\s*note|receipt|quittung|page|seite|pagina|página|strona|blatt)\b",
    )
});
/// A label and a number: a customer number or a global id inside an address block.
static ID_LINE: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^[\p{L}][\p{L} .\-]{1,30}:\s*[A-Z\-]*\d[\w\-/.]*(?:\s*\([A-Z]{2,6}\))?$"));
/// An address label before a street: `Anschrift:`, `Adresse:`, `Address:`.
static ADDRESS_LABEL: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)^(?:anschrift|adresse|address|dirección|direccion|indirizzo|adres|adres)\s*:\s*"));

/// Country names in the languages of the rules, with their codes.
const COUNTRIES: &[(&str, &[&str])] = &[
    ("DE", &["germany", "deutschland", "allemagne", "alemania", "duitsland", "germania", "niemcy"]),
    ("FR", &["france", "frankreich", "francia", "frankrijk", "francja"]),
    ("ES", &["spain", "spanien", "espagne", "españa", "espana", "spanje", "spagna", "hiszpania"]),
    ("IT", &["italy", "italien", "italie", "italia", "italië", "włochy"]),
    (
        "NL",
        &[
            "netherlands",
            "the netherlands",
            "niederlande",
            "pays-bas",
            "países bajos",
            "nederland",
            "paesi bassi",
            "holandia",
        ],
    ),
    ("BE", &["belgium", "belgien", "belgique", "bélgica", "belgië", "belgio", "belgia"]),
    ("AT", &["austria", "österreich", "autriche", "oostenrijk"]),
    ("CH", &["switzerland", "schweiz", "suisse", "suiza", "zwitserland", "svizzera", "szwajcaria"]),
    ("PL", &["poland", "polen", "pologne", "polonia", "polska"]),
    ("LU", &["luxembourg", "luxemburg", "lussemburgo"]),
    (
        "GB",
        &[
            "united kingdom",
            "uk",
            "great britain",
            "england",
            "vereinigtes königreich",
            "royaume-uni",
            "reino unido",
            "verenigd koninkrijk",
            "regno unito",
            "wielka brytania",
        ],
    ),
    ("IE", &["ireland", "irland", "irlande", "irlanda", "ierland"]),
    (
        "US",
        &[
            "united states",
            "usa",
            "united states of america",
            "vereinigte staaten",
            "états-unis",
            "estados unidos",
            "stati uniti",
        ],
    ),
    ("DK", &["denmark", "dänemark", "danemark", "dinamarca", "denemarken", "danimarca", "dania"]),
    ("SE", &["sweden", "schweden", "suède", "suecia", "zweden", "svezia", "szwecja"]),
    ("PT", &["portugal", "portogallo", "portugalia"]),
    ("CZ", &["czech republic", "czechia", "tschechien", "république tchèque", "república checa", "tsjechië", "czechy"]),
    ("IN", &["india", "indien", "inde"]),
];

/// Country codes that may stand before a postcode: ISO codes of the countries above, and the old
/// one-letter forms (`D-80333`, `F-84340`).
fn code_before_postcode(code: &str) -> Option<&'static str> {
    let iso = match code {
        "D" => "DE",
        "F" => "FR",
        "A" => "AT",
        "B" => "BE",
        "I" => "IT",
        "E" => "ES",
        "L" => "LU",
        "NL" => "NL",
        "CH" => "CH",
        "S" => "SE",
        "P" => "PT",
        other => return COUNTRIES.iter().map(|(c, _)| *c).find(|c| *c == other),
    };
    Some(iso)
}

/// The code of a country named by the whole of `text` (`Deutschland`, `Deutschland / Germany`).
fn country_named(text: &str) -> Option<&'static str> {
    let first = text.split('/').next()?.trim().trim_end_matches([',', '.']).to_lowercase();
    COUNTRIES.iter().find(|(_, names)| names.contains(&first.as_str())).map(|(code, _)| *code)
}

/// An address anchor: where a postcode and city stand.
#[derive(Debug, Clone)]
struct Anchor {
    line: usize,
    cell: usize,
    /// Cells on the anchor's line.
    cells: usize,
    address: Address,
}

impl Anchor {
    fn same_place(&self, other: &Anchor) -> bool {
        self.address.postcode == other.address.postcode && self.address.city == other.address.city
    }
}

/// Reads the addresses of both parties and the buyer's name. `seller_at` is where the seller's name was
/// found; the VAT ids give a country where the address shows none.
pub(crate) fn parties(
    doc: &Text<'_>,
    seller_at: Option<NameAt>,
    seller_vat: Option<&str>,
    buyer_vat: Option<&str>,
) -> Parties {
    let anchors = anchors(doc);
    if anchors.is_empty() {
        return Parties::default();
    }
    let blocks = labelled_blocks(doc);
    let in_block = |a: &Anchor, kind: Block| {
        blocks.iter().any(|&(k, start)| k == kind && (start..start + BLOCK_LINES).contains(&a.line))
    };
    let seller = seller_anchor(doc, &anchors, seller_at, &in_block);
    // The seller's name over a block makes it the seller's, whatever label stands above it.
    let sellers_block = |a: &Anchor| {
        let (Some(at), Some(name)) = (seller_at, block_name(doc, a)) else { return false };
        cells(doc.lines[at.line]).get(at.cell).is_some_and(|(_, seller)| same_name(&name, seller))
    };
    let buyer = anchors
        .iter()
        .find(|a| in_block(a, Block::Buyer) && !in_block(a, Block::Seller) && !sellers_block(a))
        .or_else(|| {
            // Unlabelled: the one address that is neither the seller's nor in a delivery or seller block.
            let seller = seller?;
            let mut others = anchors.iter().filter(|a| {
                !a.same_place(seller)
                    && !in_block(a, Block::Delivery)
                    && !in_block(a, Block::Seller)
                    && !sellers_block(a)
            });
            let first = others.next()?;
            // It must read as an address block (a name over a street), not a number before a word.
            (others.all(|a| a.same_place(first)) && block_name(doc, first).is_some()).then_some(first)
        })
        .filter(|b| seller.is_none_or(|s| !std::ptr::eq(*b, s)));
    let with_country = |anchor: &Anchor, vat: Option<&str>| {
        let mut address = anchor.address.clone();
        if address.country.is_none() {
            address.country = vat.and_then(vat_country);
        }
        address
    };
    Parties {
        seller: seller.map(|a| with_country(a, seller_vat)),
        buyer: buyer.map(|a| with_country(a, buyer_vat)),
        buyer_name: buyer.and_then(|a| block_name(doc, a)),
    }
}

/// Whether a block's name is the seller's (its cell, which may hold a label before the name): one holds the
/// other, case aside.
fn same_name(name: &str, seller_cell: &str) -> bool {
    let (name, seller) = (name.to_lowercase(), seller_cell.to_lowercase());
    !name.is_empty() && !seller.is_empty() && (seller.contains(&name) || name.contains(&seller))
}

/// A name with a legal form: a company's.
fn is_company(name: &str) -> bool {
    LEGAL_FORM_ANY_CASE.is_match(name) || LEGAL_FORM_CAPS.is_match(name)
}

/// The country of a VAT id: its prefix, Greece's `EL` as `GR`, Northern Ireland's `XI` as `GB`.
fn vat_country(vat: &str) -> Option<String> {
    let prefix = vat.get(..2)?;
    if !prefix.chars().all(|c| c.is_ascii_uppercase()) {
        return None;
    }
    Some(match prefix {
        "EL" => "GR".to_string(),
        "XI" => "GB".to_string(),
        other => other.to_string(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Block {
    Seller,
    Buyer,
    Delivery,
}

/// Lines that open a party's block: seller headings and labels, buyer labels, delivery labels, and the name
/// above an attention line (the addressee's, so the buyer's).
fn labelled_blocks(doc: &Text<'_>) -> Vec<(Block, usize)> {
    let mut blocks = Vec::new();
    for (i, line) in doc.lines.iter().enumerate() {
        let trimmed = line.trim();
        if SELLER_HEADING.is_match(trimmed) || SELLER_LABEL.is_match(trimmed) {
            blocks.push((Block::Seller, i));
        } else if DELIVERY_LABEL.is_match(line) && label_like(trimmed) {
            blocks.push((Block::Delivery, i));
        } else if (is_buyer_label(line) && label_like(trimmed)) || above_attention(doc, i) {
            blocks.push((Block::Buyer, i));
        }
    }
    blocks
}

/// The seller's address: on the line of its name, under a seller heading, or the first below its name in
/// its column (or alone on its line). An address merely printed twice says nothing: a buyer's billing and
/// delivery addresses repeat too.
fn seller_anchor<'a>(
    doc: &Text<'_>,
    anchors: &'a [Anchor],
    at: Option<NameAt>,
    in_block: &dyn Fn(&Anchor, Block) -> bool,
) -> Option<&'a Anchor> {
    if let Some(at) = at {
        if let Some(a) = anchors.iter().find(|a| a.line == at.line && a.cell >= at.cell) {
            return Some(a);
        }
    }
    if let Some(a) = anchors.iter().find(|a| in_block(a, Block::Seller)) {
        return Some(a);
    }
    let at = at?;
    let seller_cell = cells(doc.lines[at.line]).get(at.cell).map(|(_, c)| c.to_lowercase()).unwrap_or_default();
    anchors.iter().find(|a| {
        a.line > at.line
                && a.line <= at.line + BLOCK_LINES
                && (a.cell == at.cell || a.cells == 1)
                && !in_block(a, Block::Buyer)
                && !in_block(a, Block::Delivery)
                // Another label or another name over it (a block of its own) makes it another party's.
                && !(at.line + 1..a.line).any(|l| starts_block(doc, l))
                // A company's name in the block that is not the seller's.
                && !block_names(doc, a).iter().any(|name| !same_name(name, &seller_cell) && is_company(name))
    })
}

/// A label over a block: with a colon, or a few words alone (`Rechnungsempfänger`, `Bill to`, `Adresse de
/// livraison`), not a table's header (`Numéro de ligne  Id.client`).
fn label_like(line: &str) -> bool {
    line.contains(':') || (line.split_whitespace().count() <= 3 && cells(line).len() == 1)
}

/// A line that opens a party's block: a buyer or delivery label.
fn starts_block(doc: &Text<'_>, line: usize) -> bool {
    let text = doc.lines[line];
    is_buyer_label(text) || DELIVERY_LABEL.is_match(text)
}

/// Every postcode-and-city anchor of the document, with the country its line or the next one names.
fn anchors(doc: &Text<'_>) -> Vec<Anchor> {
    let mut found = Vec::new();
    for (i, line) in doc.lines.iter().enumerate() {
        if line.len() > 300 {
            continue;
        }
        let line_cells = cells(line);
        for (c, (_, cell)) in line_cells.iter().enumerate() {
            let segments: Vec<&str> = SEGMENT_GAP.split(cell).map(str::trim).filter(|s| !s.is_empty()).collect();
            for (s, segment) in segments.iter().enumerate() {
                let segment = ADDRESS_LABEL.find(segment).map_or(*segment, |m| &segment[m.end()..]);
                // A postcode whose city stands in the next cell (`3012 CN  Rotterdam`).
                let split = || {
                    let next = line_cells.get(c + 1).filter(|_| s + 1 == segments.len())?;
                    address_in(&format!("{segment} {}", next.1))
                };
                let Some(mut address) = address_in(segment).or_else(split) else { continue };
                if address.country.is_none() {
                    // A country after the city on its line (`· Deutschland`), or alone on the next line.
                    let after = segments.get(s + 1).copied().or_else(|| line_cells.get(c + 1).map(|(_, t)| *t));
                    let next = doc.next_nonblank(i).and_then(|j| {
                        let next_cells = cells(doc.lines[j]);
                        let cell = if next_cells.len() == 1 { next_cells.first() } else { next_cells.get(c) };
                        cell.map(|(_, t)| *t)
                    });
                    address.country =
                        after.and_then(country_named).or_else(|| next.and_then(country_named)).map(str::to_string);
                }
                found.push(Anchor { line: i, cell: c, cells: line_cells.len(), address });
                if found.len() >= 64 {
                    return found;
                }
            }
        }
    }
    found
}

/// The postcode, city and (when written before the postcode) country of one segment of a line.
fn address_in(segment: &str) -> Option<Address> {
    if let Some(c) = POSTCODE_CITY.captures(segment) {
        let country = match c.name("cc") {
            Some(cc) => Some(code_before_postcode(cc.as_str())?),
            None => None,
        };
        let city = c["city"].trim_end_matches([',', '.']).to_string();
        // A year and a word (`2018 Bestellung`) or a country named where a city should be is no address.
        if country_named(&city).is_some() || city.chars().filter(|c| c.is_alphabetic()).count() < 3 {
            return None;
        }
        let postcode = c["pc"].to_string();
        let country = country.map(str::to_string);
        return Some(Address { postcode, city, country });
    }
    let c = CITY_POSTCODE.captures(segment)?;
    let city = c["city"].to_string();
    if country_named(&city).is_some() {
        return None;
    }
    match (c.name("pc"), c.name("zip")) {
        (Some(pc), _) => Some(Address { postcode: pc.as_str().to_string(), city, country: None }),
        (None, Some(zip)) => Some(Address { postcode: zip.as_str().to_string(), city, country: Some("US".into()) }),
        _ => None,
    }
}

/// The name at the top of an address block ([`block_names`]); a courtesy title keeps the name below it.
fn block_name(doc: &Text<'_>, anchor: &Anchor) -> Option<String> {
    let mut names = block_names(doc, anchor);
    let top = names.pop()?;
    match names.pop() {
        Some(below) if SALUTATION.is_match(&top) => Some(format!("{top} {below}")),
        _ if SALUTATION.is_match(&top) => None,
        _ => Some(top),
    }
}

/// The name lines of an address block, nearest the street first: walking up from the postcode line over at
/// most two street lines to at most two name lines, in the anchor's column. A label (`Name:`, `Bill to:`)
/// ends the walk with the name after it.
fn block_names(doc: &Text<'_>, anchor: &Anchor) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut streets = 0;
    let mut looked = 0;
    let mut line = anchor.line;
    while line > 0 && looked < BLOCK_LINES {
        line -= 1;
        looked += 1;
        let text = doc.lines[line];
        if text.trim().is_empty() {
            continue;
        }
        let line_cells = cells(text);
        let cell = if line_cells.len() == 1 { line_cells.first() } else { line_cells.get(anchor.cell) };
        let Some(&(_, cell)) = cell else { break };
        // A line of several cells over a block of one column is something else (a sender line).
        if anchor.cells == 1 && line_cells.len() > 1 {
            break;
        }
        if let Some(m) = NAME_LABEL.find(cell) {
            names.push(cell[m.end()..].trim().to_string());
            break;
        }
        // A labelled number inside the block (`Nummer: 009420`, `Globale Nummer: 4304171000002 (GTIN)`).
        if ID_LINE.is_match(cell) {
            continue;
        }
        let has_digit = cell.chars().any(|c| c.is_ascii_digit());
        if names.is_empty() && streets < 2 && (has_digit || ADDRESS_LABEL.is_match(cell)) {
            streets += 1;
            continue;
        }
        // A label, not a name that holds a label's word (`Kunden AG Mitte`).
        if is_buyer_label(cell) && (cell.contains(':') || cell.split_whitespace().count() <= 2) {
            if let Some((_, after)) = cell.split_once(':') {
                let after = after.trim();
                if streets > 0 && name_like(after) {
                    names.push(after.to_string());
                }
            }
            break;
        }
        if streets == 0 || !name_like(cell) || TITLE.is_match(cell) {
            break;
        }
        names.push(cell.to_string());
        if names.len() == 2 {
            break;
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, seller_at: Option<(usize, usize)>) -> Parties {
        let doc = Text::new(text);
        parties(&doc, seller_at.map(|(line, cell)| NameAt { line, cell }), None, None)
    }

    fn address(postcode: &str, city: &str, country: Option<&str>) -> Option<Address> {
        Some(Address { postcode: postcode.into(), city: city.into(), country: country.map(str::to_string) })
    }

    #[test]
    fn postcodes_and_cities_in_the_common_forms() {
        let one = |s: &str| address_in(s).map(|a| (a.postcode, a.city, a.country));
        let some = |p: &str, c: &str, cc: Option<&str>| Some((p.to_string(), c.to_string(), cc.map(str::to_string)));
        assert_eq!(one("80333 München"), some("80333", "München", None));
        assert_eq!(one("DE 80333 München"), some("80333", "München", Some("DE")));
        assert_eq!(one("D-80333 München"), some("80333", "München", Some("DE")));
        assert_eq!(one("F-84340 Malaucène"), some("84340", "Malaucène", Some("FR")));
        assert_eq!(one("1012 AB Amsterdam"), some("1012 AB", "Amsterdam", None));
        assert_eq!(one("00-950 Warszawa"), some("00-950", "Warszawa", None));
        assert_eq!(one("GB SW1B 3BN London"), some("SW1B 3BN", "London", Some("GB")));
        assert_eq!(one("London SW1B 3BN"), some("SW1B 3BN", "London", None));
        assert_eq!(one("Springfield, IL 62704"), some("62704", "Springfield", Some("US")));
        assert_eq!(one("12346 Bad Musterhausen"), some("12346", "Bad Musterhausen", None));
        assert_eq!(one("75008 Paris Cedex 08"), some("75008", "Paris", None));
        assert_eq!(one("3012 CN"), None, "a Dutch postcode without its city");
        // Not addresses: amounts, quantities, sentences, a country where the city should be.
        for text in ["3 Stk", "12345 Deutschland", "1.000,00 EUR", "2018 Bestellung von 5 kg Schweinesteak aus Bayern"]
        {
            assert_eq!(one(text), None, "{text}");
        }
    }

    #[test]
    fn a_sender_line_and_a_window_address() {
        let text = "Kraxi GmbH\nKraxi GmbH · Flugzeugallee 17 · 12345 Papierfeld · Deutschland\n\
                    Papierflieger-Vertriebs-GmbH\nHelga Musterfrau\nRabattstr. 25\n34567 Osterhausen\nDeutschland\n\
                    Rechnungsnummer: 2014-03";
        let got = read(text, Some((0, 0)));
        assert_eq!(got.seller, address("12345", "Papierfeld", Some("DE")));
        assert_eq!(got.buyer, address("34567", "Osterhausen", Some("DE")));
        assert_eq!(got.buyer_name.as_deref(), Some("Papierflieger-Vertriebs-GmbH"));
    }

    #[test]
    fn labelled_blocks_and_a_delivery_address() {
        let text = "Verkäufer\nName: Lieferant GmbH\n\nAnschrift: Lieferantenstraße 20\n\nDE 80333 München\n\
                    Käufer/Leistungsempfänger\nNummer: GE2020211\nName: Kunden AG Mitte\nAnschrift: Kundenstraße 15\n\
                    DE 69876 Frankfurt\nLieferadresse\nName: Kunden AG Lager\nLagerweg 1\nDE 60311 Offenbach";
        let got = read(text, Some((1, 0)));
        assert_eq!(got.seller, address("80333", "München", Some("DE")));
        assert_eq!(got.buyer, address("69876", "Frankfurt", Some("DE")));
        assert_eq!(got.buyer_name.as_deref(), Some("Kunden AG Mitte"));
    }

    #[test]
    fn a_courtesy_title_stays_with_the_name_and_vat_ids_give_the_country() {
        let text = "Käufer:\nHerrn\nMax Mustermann\nMusterstr. 11\n12346 Bad Musterhausen";
        let doc = Text::new(text);
        let got = parties(&doc, None, None, Some("DE123456789"));
        assert_eq!(got.buyer, address("12346", "Bad Musterhausen", Some("DE")));
        assert_eq!(got.buyer_name.as_deref(), Some("Herrn Max Mustermann"));
    }

    #[test]
    fn two_columns_the_seller_below_its_name() {
        let text = "Adatum Corporation  CRONUS DE\nStation Road, 21  Hofstraße 12\n48436 Düsseldorf  Benrath\n\
                    20097 Hamburg\nDeutschland";
        let got = read(text, Some((0, 1)));
        assert_eq!(got.seller, address("20097", "Hamburg", Some("DE")));
        assert_eq!(got.buyer, address("48436", "Düsseldorf", None));
        assert_eq!(got.buyer_name.as_deref(), Some("Adatum Corporation"));
        // A page number above the block is no name.
        let got = read(&format!("Page  1/1\n{text}"), Some((1, 1)));
        assert_eq!(got.buyer_name.as_deref(), Some("Adatum Corporation"));
    }

    #[test]
    fn the_seller_address_below_its_name_is_not_another_named_block() {
        // The seller's name stands alone above the buyer's window block; its own address comes after.
        let text =
            "cronus\nAdatum Corporation\nStation Road, 21\n48436 Düsseldorf  Benrath\n20097 Hamburg\nDeutschland";
        assert_eq!(read(text, Some((0, 0))).seller, address("20097", "Hamburg", Some("DE")));
    }

    #[test]
    fn an_address_no_party_claims_is_left_out() {
        // No seller name, no labels, two addresses: nothing says whose is whose.
        let got = read("Alpha\nWeg 1\n10115 Berlin\nBeta\nPfad 2\n20095 Hamburg", None);
        assert_eq!(got, Parties::default());
        // A customer's address printed twice (window and footer) is not the seller's for that.
        let got = read("10115 Berlin\nKunde Alpha\nWeg 1\n10115 Berlin\nRechnung 7", None);
        assert_eq!(got.seller, None);
    }

    #[test]
    fn a_postcode_and_its_city_in_two_cells() {
        let text = "Coolblue B.V.\nWeena 664\n3012 CN  Rotterdam\nNederland";
        assert_eq!(read(text, Some((0, 0))).seller, address("3012 CN", "Rotterdam", Some("NL")));
    }
}
