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
//!
//! The seller's name (BT-27) is read first ([`seller_name`]): the name-like cell that the document's web and
//! e-mail domains, a legal form, a seller label or a return address speak for. Where it stands anchors the
//! seller's address.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::doc::{cells, Text};
use super::pattern::regex;

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
/// A party's contact person, labelled inside its block (`Ansprechpartner: Herr Thomas Muster`, `Contact:
/// Jane Doe`): a person, not the party's name.
static CONTACT_PERSON: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^(?:ansprechpartner(?:in)?|kontakt(?:person)?|contact(?:\s*person)?|interlocuteur|persona\s*de\s*contacto|contacto|referente|contactpersoon|osoba\s*kontaktowa)\s*:",
    )
});
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
        if ID_LINE.is_match(cell) || CONTACT_PERSON.is_match(cell) {
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

// ---------------------------------------------------------------------------------------------------------
// Seller name

/// Legal forms written in any case: `GmbH`, `Ltd`, `LLC`, `Inc.`, `SARL`, `Corporation`, ...
static LEGAL_FORM_ANY_CASE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)\b(?:gmbh(?:\s*&\s*co\.?\s*kg)?|ltd\.?|limited|llc|l\.l\.c\.|inc\.?|incorporated|corp\.?|corporation|sarl|s\.a\.r\.l\.|s\.a\.s\.?|pty\.?\s*ltd\.?|pvt\.?\s*ltd\.?|private\s+limited|s\.r\.l\.|s\.p\.a\.|kgaa|e\.\s?k\.|sp\.\s*z\s*o\.\s*o\.|company)$",
    )
});
/// Short legal forms that are only legal forms in capitals (`AG`, `SA`, `AS`, `SE`...), else ordinary words.
static LEGAL_FORM_CAPS: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"\b(?:AG|KG|UG|OHG|GbR|SA|S\.A\.|SAS|BV|B\.V\.|NV|N\.V\.|AB|AS|A/S|ApS|Oy|SE|PLC|plc|LLP|LP|SRL|SpA|Co\.|eG)$",
    )
});
/// A label that introduces the seller.
static SELLER_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^(?:from|seller|supplier|vendor|issuer|issued\s+by|sold\s+by|ver\s?käufer|lieferant|rechnungssteller|absender|émetteur|fournisseur|vendeur|emisor|proveedor|vendedor|fornitore|cedente|venditore|leverancier|verkoper|sprzedawca)\s*:\s*",
    )
});
/// A heading alone on its line over the seller's block (`Verkäufer`, `Seller`, `From`).
static SELLER_HEADING: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^\s*(?:from|seller|supplier|vendor|issuer|ver\s?käufer|lieferant|rechnungssteller|absender|émetteur|fournisseur|vendeur|emisor|proveedor|vendedor|fornitore|cedente|venditore|leverancier|verkoper|sprzedawca)\s*:?\s*$",
    )
});
/// The heading of the seller's tax representative's block.
static TAX_REPRESENTATIVE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:tax\s*representative|repr[ée]sentant\s*fiscal|fiskalvertreter|steuerlicher?\s*vertreter|representante\s*fiscal|rappresentante\s*fiscale|fiscaal\s*vertegenwoordiger)",
    )
});
/// A generic name label inside a party block.
static NAME_LABEL: LazyLock<Regex> = LazyLock::new(|| regex(r"(?i)^(?:name|firma|company|raison\s+sociale)\s*:\s*"));
/// A label that introduces the buyer: names on its line and just below belong to the buyer.
static BUYER_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:\bkäufer|livraison|delivery\s*address|shipping\s*address|lieferadresse|lieferanschrift|bill(?:ed)?\s*to|invoice\s*to|sold\s*to|ship(?:ped)?\s*to|deliver(?:ed)?\s*to|customer|client|kunde|rechnung\s*an|rechnungsempfänger|empfänger|adressat|facturé\s*à|adressé\s*à|destinataire|comprador|destinatario|cessionario|committente|klant|afnemer|factuuradres|nabywca|odbiorca|buyer|recipient|attn|z\.\s*hd|t\.\s*a\.\s*v\.)",
    )
});
/// A line that opens with "for the attention of" (`Attn:`, `FAO`, `z. Hd.`, `T.a.v.`, `à l'attention de`,
/// `a la atención de`, `all'attenzione di`, `do rąk`): the name on the line above is the addressee's.
static ATTENTION: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^\s*(?:attn\b|attention\b|for\s+the\s+attention|fao\b|z\.\s*hd\.?|zu\s+h(?:ä|ae)nden|t\.\s*a\.\s*v\.|ter\s+attentie|(?:à|a)\s+l['’]attention|a\s+la\s+atenci[óo]n|all['’]attenzione|do\s+r[ąa]k)",
    )
});
/// Whether line `i` stands just above an attention line: it names the addressee.
fn above_attention(doc: &Text<'_>, i: usize) -> bool {
    doc.lines.get(i + 1).is_some_and(|next| ATTENTION.is_match(next))
}
/// A buyer label that is not a seller's (`Verkäufer` holds `käufer`; a text layer may print it `Ver käufer`).
pub(super) fn is_buyer_label(line: &str) -> bool {
    BUYER_LABEL.is_match(line) && !SELLER_HEADING.is_match(line) && !SELLER_LABEL.is_match(line.trim_start())
}
static EMAIL_OR_URL_DOMAIN: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)(?:@|www\.|https?://)((?:[a-z0-9-]+\.)+[a-z]{2,})"));

/// Domains that say nothing about who issued the invoice.
const GENERIC_DOMAINS: &[&str] = &[
    "gmail",
    "googlemail",
    "yahoo",
    "hotmail",
    "outlook",
    "live",
    "gmx",
    "web",
    "t-online",
    "icloud",
    "aol",
    "mail",
    "example",
    "paypal",
    "stripe",
    "orange",
    "free",
    "wanadoo",
    "protonmail",
    "pdf",
    "w3",
];

/// Scores name-like cells: +3 when it contains the stem of a domain printed in the document (the issuer's
/// e-mail or web address), +2 for a legal-form suffix, +4 after a seller label; −5 on a buyer-label line or
/// just above an attention line, −3 just below one; then +1 for a cell printed more than once. The best cell
/// scoring at least 2 wins, with where it stands; ties go to the earliest, unless that one is all lower case
/// (a logo's wordmark) and a later one is not.
pub(super) fn seller_name(doc: &Text<'_>) -> Option<(String, f32, NameAt)> {
    let stems = domain_stems(doc);
    // How often each name-like cell is printed: the issuer's name tends to repeat (letterhead, sender line,
    // footer), a product or a heading less so.
    let mut printed: HashMap<String, usize> = HashMap::new();
    for line in &doc.lines {
        for (_, cell) in cells(line) {
            let cell = trim_cell(cell);
            if name_like(cell) {
                *printed.entry(cell.to_lowercase()).or_default() += 1;
            }
        }
    }
    let mut buyer_block_until = 0;
    let mut seller_block_until = 0;
    // Under a seller heading, the first name-like line is the seller's name until one is seen.
    let mut heading_name = false;
    let mut best: Option<(i32, String, NameAt)> = None;
    for (i, line) in doc.lines.iter().enumerate() {
        if SELLER_HEADING.is_match(line) {
            seller_block_until = i + 5;
            heading_name = true;
            continue;
        }
        // The seller's tax representative (EN 16931's BG-11) is another party, as the buyer is.
        let buyer_line = is_buyer_label(line) || above_attention(doc, i) || TAX_REPRESENTATIVE.is_match(line);
        if buyer_line {
            buyer_block_until = i + 4;
            seller_block_until = seller_block_until.min(i);
        } else if line.trim().is_empty() && i > buyer_block_until.saturating_sub(3) {
            buyer_block_until = buyer_block_until.min(i);
        }
        // The return address above a window envelope's address (`Acme GmbH | Hauptstr. 4 | 53229 Bonn`):
        // its first part is the sender, the issuer; the block under it is the addressee, the buyer.
        if let Some(sender) = sender_line(line).filter(|_| i < SENDER_LINE_WITHIN) {
            if let Some(next) = doc.next_nonblank(i) {
                buyer_block_until = next + 3;
            }
            if name_like(sender) {
                let score = 3 + i32::from(LEGAL_FORM_ANY_CASE.is_match(sender) || LEGAL_FORM_CAPS.is_match(sender));
                if best.as_ref().is_none_or(|(s, ..)| score > *s) {
                    best = Some((score, sender.to_string(), NameAt { line: i, cell: 0 }));
                }
            }
            continue;
        }
        let line_cells = cells(line);
        for (index, &(_, cell)) in line_cells.iter().enumerate() {
            // A legal form alone in its cell (`Bei Spiel  GmbH`, a wide gap OCR or a layout left inside the name)
            // is the end of the name in the cell before it, never a name of its own.
            let joined;
            let cell = if is_bare_legal_form(trim_cell(cell)) {
                let Some(&(_, before)) = index.checked_sub(1).and_then(|i| line_cells.get(i)) else { continue };
                joined = format!("{} {}", trim_cell(before), trim_cell(cell));
                joined.as_str()
            } else {
                cell
            };
            let (cell, labelled) = match SELLER_LABEL.find(cell) {
                Some(m) if m.end() < cell.len() => (&cell[m.end()..], true),
                _ => (cell, false),
            };
            let (cell, named) = match NAME_LABEL.find(cell) {
                Some(m) if m.end() < cell.len() => (&cell[m.end()..], true),
                _ => (cell, false),
            };
            let cell = trim_cell(before_contact(cell));
            if !name_like(cell) {
                continue;
            }
            let folded: String = cell.to_lowercase().chars().filter(|c| c.is_alphanumeric()).collect();
            let mut score = 0;
            if stems.iter().any(|stem| folded.contains(stem.as_str())) {
                score += 3;
            }
            if LEGAL_FORM_ANY_CASE.is_match(cell) || LEGAL_FORM_CAPS.is_match(cell) {
                score += 2;
            }

            let mut name = cell.to_string();
            if labelled || (named && i < seller_block_until) {
                score += 4;
                name = with_continuation(doc, i, cell);
            } else if i < seller_block_until && heading_name && line_cells.len() == 1 {
                // The first name under `Seller`/`Verkäufer`, alone on its line.
                score += 4;
                name = with_continuation(doc, i, cell);
            } else if i < seller_block_until {
                score += 1;
            }
            if i < seller_block_until {
                heading_name = false;
            }
            if buyer_line {
                score -= 5;
            } else if i < buyer_block_until {
                score -= 3;
            }
            // Repetition ranks candidates but does not make one.
            let repeated = printed.get(&cell.to_lowercase()).is_some_and(|n| *n > 1);
            let score = if score >= 2 && repeated { score + 1 } else { score };
            let lower = |name: &str| !name.chars().any(char::is_uppercase);
            let better =
                |(s, name, _): &(i32, String, NameAt)| score > *s || (score == *s && lower(name) && !lower(cell));
            if score >= 2 && best.as_ref().is_none_or(better) {
                best = Some((score, name, NameAt { line: i, cell: index }));
            }
        }
    }
    best.map(|(score, name, at)| {
        (
            name,
            if score >= 5 {
                0.85
            } else if score >= 3 {
                0.7
            } else {
                0.55
            },
            at,
        )
    })
}

/// A cell without the contact details a letterhead prints beside the name when the text layer leaves no
/// gap between them (`Acme Tel: +49 30 1234`, `Acme  E-Mail: info@acme.de`).
fn before_contact(cell: &str) -> &str {
    match CONTACT_MARKER.find(cell) {
        Some(m) if m.start() >= 3 => &cell[..m.start()],
        _ => cell,
    }
}

/// A phone, fax, e-mail or web label after a word, followed by a colon or a number.
static CONTACT_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)\s(?:tel(?:efon|ephone)?|phone|fon|fax|telefax|mobile?|e-?mail|web|internet)\s*(?::|\.?\s*[+(]?\d)")
});

/// A party's name on line `i`, joined with the next line when the name runs on to it: the name without a
/// legal form, the next line alone on its line, name-like and unlabelled, with the street (a house number,
/// or an address label) right below it
/// (`Name: Musterhafter\nVersicherungsverein Musterstadt\nAnschrift: Musterstr. 12`).
fn with_continuation(doc: &Text<'_>, i: usize, name: &str) -> String {
    // The next two lines with text, a few blank lines apart at most.
    let mut below = doc.lines.iter().skip(i + 1).take(6).map(|line| line.trim()).filter(|line| !line.is_empty());
    let (Some(next), after) = (below.next(), below.next().unwrap_or_default()) else { return name.to_string() };
    let street = after.chars().any(|c| c.is_ascii_digit()) || ADDRESS_LABEL.is_match(after);
    // A name that ends with its legal form is whole: a line below it is a department or a contact.
    let carries_on = !is_company(name)
        && cells(next).len() == 1
        && name_like(next)
        && !next.chars().any(|c| c.is_ascii_digit())
        && !ID_LINE.is_match(next)
        && !is_buyer_label(next)
        && street;
    if carries_on {
        format!("{name} {next}")
    } else {
        name.to_string()
    }
}

/// A cell that is nothing but a legal form: `GmbH`, `Ltd.`, `AG`.
fn is_bare_legal_form(cell: &str) -> bool {
    let form = |re: &Regex| re.find(cell).is_some_and(|m| m.start() == 0 && m.end() == cell.len());
    form(&LEGAL_FORM_ANY_CASE) || form(&LEGAL_FORM_CAPS)
}

/// A return address on one line, `Name | Street 4 | 12345 City` (or with `·`, `•`, `–`, ` - ` between the
/// parts): at least three parts, the last but one or the last a postcode and a place. Its first part, the
/// sender's name.
fn sender_line(line: &str) -> Option<&str> {
    let parts: Vec<&str> = SENDER_SEPARATOR.split(line.trim()).map(str::trim).filter(|p| !p.is_empty()).collect();
    if parts.len() < 3 || !parts.iter().skip(1).any(|p| POSTCODE_PLACE.is_match(p)) {
        return None;
    }
    // A name, not a street: the address of a footer line starts with its street.
    Some(trim_cell(parts[0])).filter(|name| !name.contains(|c: char| c.is_ascii_digit()))
}

/// The lines from the top within which a return address sits: above the window envelope's address, on the
/// first page; further down, a line of that shape is a footer.
const SENDER_LINE_WITHIN: usize = 25;
static SENDER_SEPARATOR: LazyLock<Regex> = LazyLock::new(|| regex(r"\s+[|·•–]\s+|\s+-\s+"));
/// `53229 Bonn`, `F-75001 Paris`, `1010 Wien`, `SW1A 1AA London`.
static POSTCODE_PLACE: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^(?:[A-Z]{1,2}-)?\d{4,5}\s+\p{L}|^[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}\s+\p{L}"));

/// A cell without the separators and punctuation that cling to it (`Acme GmbH,`, `Tariff X -`).
fn trim_cell(cell: &str) -> &str {
    cell.trim_matches(|c: char| matches!(c, ',' | ';' | '-' | '–' | '|' | '·') || c.is_whitespace())
}

/// The distinctive part of each e-mail and web domain in the document (`info@cronus.com` → `cronus`,
/// `billing.indeed.com` → `indeed`).
fn domain_stems(doc: &Text<'_>) -> Vec<String> {
    let mut stems: Vec<String> = Vec::new();
    for line in &doc.lines {
        for c in EMAIL_OR_URL_DOMAIN.captures_iter(line) {
            let labels: Vec<String> = c[1].to_lowercase().split('.').map(str::to_string).collect();
            // The label before the public suffix; two-part suffixes like `co.uk` shift it by one.
            let n = labels.len();
            let idx = if n >= 3 && matches!(labels[n - 2].as_str(), "co" | "com" | "org" | "net" | "ac" | "gov") {
                n - 3
            } else {
                n.saturating_sub(2)
            };
            let stem: String = labels[idx].chars().filter(|c| c.is_alphanumeric()).collect();
            if stem.len() >= 3 && !GENERIC_DOMAINS.contains(&labels[idx].as_str()) && !stems.contains(&stem) {
                stems.push(stem);
            }
        }
    }
    stems
}

/// A cell that could be a company name: mostly letters, no address or contact markers, not a sentence.
fn name_like(cell: &str) -> bool {
    let chars = cell.chars().count();
    let letters = cell.chars().filter(|c| c.is_alphabetic()).count();
    let digits = cell.chars().filter(|c| c.is_ascii_digit()).count();
    (3..=60).contains(&chars)
        && letters * 2 >= chars
        && digits * 5 <= chars
        && cell.split_whitespace().count() <= 7
        && cell.starts_with(|c: char| c.is_alphanumeric())
        && !cell.contains(['@', ':', '/'])
        && !cell.to_lowercase().contains("www.")
        && !STREET_LINE.is_match(cell)
}

/// A street line: a house number before the street's kind (`35 rue d'ici`, `12 Main Street`, `4, avenue
/// Foch`, `10 Via Roma`), or a street with its number after (`Musterstraße 12`, `Hauptstr. 4a`, `Lindenweg 3`).
static STREET_LINE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^\d+\s*[a-z]?\s*,?\s+(?:bis\s+|ter\s+)?(?:rue|avenue|av\.|bd|boulevard|chemin|allée|allee|impasse|place|quai|route|cours|street|st\.?|road|rd\.?|lane|ln\.?|drive|dr\.?|avenida|avda\.?|calle|carrer|plaza|via|viale|piazza|corso)\b|^\p{L}[\p{L}\-]*(?:straße|strasse|str\.|weg|gasse|allee|platz|ring|damm|laan|straat|plein|gracht)\s+\d+\s*[a-z]?\b",
    )
});

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
    fn a_return_address_names_its_sender() {
        assert_eq!(sender_line("Feldweg 3 - Haus 2 - Stock 4"), None, "no postcode and place: no return address");
        assert_eq!(sender_line("Hauptstraße 16 · D-60318 Frankfurt · Telefon 069 99-0"), None, "a footer's street");
        assert_eq!(sender_line("Acme SARL – 1 rue Haute – F-75001 Paris"), Some("Acme SARL"));
        assert_eq!(sender_line("Acme Ltd | 1 High St | SW1A 1AA London"), Some("Acme Ltd"));
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
    fn a_contact_person_inside_a_block_is_not_its_name() {
        let text = "Verkäufer\nName: Lieferant GmbH\nAnschrift: Lieferantenstraße 20\nDE 80333 München\n\n\
                    Käufer\nName: Kunden AG\n\nAnsprechpartner: Herr Max Muster\n\nAnschrift: Kundenstraße 15\n\n\
                    DE 69876 Frankfurt";
        let got = read(text, Some((1, 0)));
        assert_eq!(got.buyer, address("69876", "Frankfurt", Some("DE")));
        assert_eq!(got.buyer_name.as_deref(), Some("Kunden AG"));
        let contact = "Bill to:\nAcme Corp\nContact: Jane Doe\n12 Main Street\nLondon SW1A 1AA";
        assert_eq!(read(contact, None).buyer_name.as_deref(), Some("Acme Corp"));
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
