//! The grand total, found by its label ([`grand_total`]), and the totals block beyond it: net (tax basis),
//! tax total, prepaid and amount due, each taken only when the EN 16931 arithmetic confirms it.
//!
//! Labels find candidates (every amount after a net, tax, total, paid or due label, or alone on the line
//! below it); a set is accepted only when it adds up: net + tax = grand total (BR-CO-15), and grand total −
//! prepaid = amount due (BR-CO-16). A label alone is never enough, so a sub-total of one page or a tax rate's
//! base is not mistaken for the invoice's net.
//!
//! [`set_totals`] copies what the arithmetic confirmed into the invoice, and [`totals_confidence`] weighs each
//! total by the sums it takes part in.

use std::sync::LazyLock;

use nova_core::Invoice;
use regex::Regex;
use rust_decimal::Decimal;

use super::amounts::{amounts_in, amounts_with_columns, last_amount, only_amount};
use super::doc::Text;
use super::pattern::regex;

// ---------------------------------------------------------------------------------------------------------
// Grand total

pub(super) struct Total {
    pub(super) value: Decimal,
    pub(super) line: usize,
    pub(super) confidence: f32,
}

/// Labels of the total including tax, strongest first. Amount-due labels come last: a paid invoice shows
/// an amount due of zero beside its real total.
pub(super) static TOTAL_LABELS: LazyLock<[(Regex, f32); 3]> = LazyLock::new(|| {
    [
        (
            regex(
                r"(?i)(?:grand\s*total|total\s*(?:amount|incl|inc\.|including|\(incl|ttc|gross|invoice|due|to\s*pay|payable)|invoice\s*(?:total|amount)|amount\s*total|total\s+\S+\s+incl|gesamtbetrag|gesamtsumme|rechnungsbetrag|rechnungssumme|bruttobetrag|brutto\s*summe|endbetrag|endsumme|gesamt\s*brutto|totale\s*(?:fattura|documento|da\s*pagare)|importe\s*total|total\s*(?:factura|a\s*pagar)|summe\s*brutto|brutto\s*gesamt|montant\s*(?:total\s*)?ttc|total\s*ttc|totaal|razem\s*do\s*zapłaty|do\s*zapłaty)",
            ),
            0.85,
        ),
        (regex(r"(?i)\b(?:total|summe|gesamt|montant\s*total|razem)\b"), 0.7),
        (
            regex(
                r"(?i)(?:amount\s*(?:due|payable|paid)|due\s*payable|balance\s*due|zu\s*zahlen|zahlbetrag|montant\s*dû|à\s*payer|\bnet\s+a\s+payer)",
            ),
            0.6,
        ),
    ]
});
/// Totals that are not the grand total: before tax, the tax itself, a sub-total.
static NOT_GRAND_TOTAL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:sub\s*-?\s*total|zwischensumme|subtotaal|excl|exkl|ohne\s*(?:mwst|ust)|\bht\b|hors\s*tax|\bnet(?:to)?\b|before\s*tax|\bnetto|quantity|menge|items?\b|discount|rabatt|remise|zuschl|abschl|allowance|surcharge)",
    )
});
/// `Net à payer` (OCR may lose the accent): the amount to pay.
static NET_PAYABLE: LazyLock<Regex> = LazyLock::new(|| regex(r"(?i)\bnet\s+[àa]\s+payer\b"));
static TAX_WORD: LazyLock<Regex> = LazyLock::new(|| regex(r"(?i)\b(?:vat|tax|mwst|ust|tva|btw|gst|iva)\b"));
static INCLUDING: LazyLock<Regex> = LazyLock::new(|| regex(r"(?i)(?:incl|inkl|inc\.|ttc|gross|brutto|with)"));

pub(super) fn grand_total(doc: &Text<'_>) -> Option<Total> {
    for (label, confidence) in TOTAL_LABELS.iter() {
        let candidates: Vec<(Decimal, usize)> = doc
            .lines
            .iter()
            .enumerate()
            .filter_map(|(i, line)| {
                let m = label.find(line)?;
                // `Net à payer` is the amount to pay, not a net amount.
                let net_payable = NET_PAYABLE.is_match(line);
                let excluded = (NOT_GRAND_TOTAL.is_match(line) && !net_payable)
                    || (TAX_WORD.is_match(line) && !INCLUDING.is_match(line));
                if excluded {
                    return None;
                }
                last_amount(&line[m.end()..])
                    .map(|v| (v, i))
                    .or_else(|| doc.next_nonblank(i).and_then(|j| only_amount(doc.lines[j])).map(|v| (v, i)))
                    .or_else(|| amount_in_column_below(doc, i, m).map(|v| (v, i)))
            })
            .collect();
        // An amount due is the grand total only when nothing was paid before: not where the document prints a
        // prepaid amount other than zero.
        let due_tier = *confidence < 0.65;
        if due_tier && prepaid_printed(doc) {
            continue;
        }
        // Several lines with the same label (a line-item column, a repeated footer): the largest is the total.
        if let Some((value, line)) = candidates.into_iter().max_by_key(|(v, _)| *v) {
            if value > Decimal::ZERO || due_tier {
                return Some(Total { value, line, confidence: *confidence });
            }
        }
    }
    header_row(doc).map(|row| Total { value: row.grand, line: row.line, confidence: 0.85 })
}

/// For a label that ends its line (a table's header cell): the amount in its column on one of the next two
/// lines with text, where a laid-out reading (or OCR, which keeps the page's columns) puts the value under
/// its header (`TOTAL HT   TOTAL TTC` over `100,00   120,00`).
fn amount_in_column_below(doc: &Text<'_>, i: usize, label: regex::Match<'_>) -> Option<Decimal> {
    let line = doc.lines[i];
    if !line[label.end()..].trim_matches(|c: char| c.is_whitespace() || c == ':').is_empty() {
        return None;
    }
    let start = line[..label.start()].chars().count();
    let end = start + label.as_str().chars().count();
    rows_below(doc, i)
        .flat_map(amounts_with_columns)
        .find(|&(from, to, _)| from < end + 2 && to + 2 > start)
        .map(|(_, _, v)| v)
}

/// Whether the document prints a prepaid amount other than zero (`Acompte 50,00`, `Paid -20.00`).
fn prepaid_printed(doc: &Text<'_>) -> bool {
    labelled_amounts(doc, |line| PREPAID_LABEL.find(line).map(|m| m.end())).iter().any(|a| !a.is_zero())
}

/// The next two lines with text after line `i`, a blank line or two apart at most (OCR may put a line of the
/// text beside a table between a header and its values).
fn rows_below<'a>(doc: &'a Text<'_>, i: usize) -> impl Iterator<Item = &'a str> + 'a {
    doc.lines.iter().skip(i + 1).take(4).copied().filter(|row| !row.trim().is_empty()).take(2)
}

/// Totals printed as a row of labels over a row of amounts (`Total HT  Total TVA  Total TTC` over `100,00
/// 4,90  104,90`), the amounts in the labels' order.
struct HeaderRow {
    net: Decimal,
    tax: Decimal,
    grand: Decimal,
    /// The labels' line.
    line: usize,
}

/// The first row of a net, a tax and a grand-total label whose next line ends with three amounts that add up
/// (net + tax = grand total, BR-CO-15), read in the order of the labels; OCR may have run other text of
/// the page into either line before them.
fn header_row(doc: &Text<'_>) -> Option<HeaderRow> {
    doc.lines.iter().enumerate().find_map(|(i, line)| {
        let net = NET_LABEL.find(line)?;
        let grand = TOTAL_LABELS[0].0.find_iter(line).find(|m| m.start() >= net.end() || m.end() <= net.start())?;
        let outside = |m: &regex::Match<'_>| {
            [net, grand].iter().all(|other| m.end() <= other.start() || m.start() >= other.end())
        };
        let tax = TAX_LABEL.find_iter(line).find(outside)?;
        let mut order = [(net.start(), 0), (tax.start(), 1), (grand.start(), 2)];
        order.sort();
        rows_below(doc, i)
            .filter_map(|row| {
                let amounts: Vec<Decimal> = amounts_in(row).collect();
                let last = amounts.get(amounts.len().checked_sub(3)?..)?;
                let mut values = [Decimal::ZERO; 3];
                for (&(_, kind), &amount) in order.iter().zip(last) {
                    values[kind] = amount;
                }
                let [net, tax, grand] = values;
                (!grand.is_zero() && net.checked_add(tax) == Some(grand)).then_some(HeaderRow {
                    net,
                    tax,
                    grand,
                    line: i,
                })
            })
            .next()
    })
}

// ---------------------------------------------------------------------------------------------------------
// Net, tax, allowances, charges, prepaid and amount due

/// Amounts the arithmetic confirmed. Fields stay `None` when nothing adds up.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TotalsBlock {
    pub grand_total: Option<Decimal>,
    pub tax_basis_total: Option<Decimal>,
    pub tax_total: Option<Decimal>,
    /// Set when the document shows no allowance or charge, so the sum of lines is the tax basis (BR-CO-13);
    /// or when a printed sum of lines, less the allowances and plus the charges printed, gives it.
    pub line_total: Option<Decimal>,
    pub allowance_total: Option<Decimal>,
    pub charge_total: Option<Decimal>,
    pub prepaid: Option<Decimal>,
    pub due_payable: Option<Decimal>,
}

/// Net amount labels: `Subtotal`, `Net total`, `Total excl. VAT`, `Nettobetrag`, `Total HT`, `Base imponible`,
/// `Totaal excl. btw`, `Imponibile`, `Razem netto`.
static NET_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:sub\s*-?\s*total|\bnet\s*(?:total|amount|value|sum)|total\s*(?:net|excl|ex\.|ex\s|before|without|ht\b|hors)|amount\s*(?:excl|before|without)|\bnetto|summe\s*netto|gesamt\s*netto|zwischensumme|warenwert|montant\s*(?:total\s*)?ht\b|total\s*ht\b|sous[-\s]*total|base\s*(?:imponible|imposable|ht)|importe\s*neto|subtotaal|totaal\s*excl|imponibile|razem\s*netto|wartość\s*netto|steuerbasis|basisbetrag|ohne\s*(?:ust|mwst|umsatzsteuer|mehrwertsteuer)|sans\s*tva|sin\s*iva|senza\s*iva|zonder\s*btw|bez\s*vat)",
    )
});
/// Tax amount labels: `VAT`, `19% VAT`, `USt. Gesamt`, `Total taxes`, `TVA`, `IVA`, `BTW`, `Podatek VAT`.
static TAX_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:\b(?:vat|tax|taxes|mwst|ust|tva|btw|gst|iva|umsatzsteuer|mehrwertsteuer|steuer|steuerbetrag|podatek|imposta|impuesto|taxe)\b|steuerbetrag)",
    )
});
/// Words that make a tax-labelled line something else: a total including tax, a net amount, an id.
static NOT_TAX_TOTAL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:incl|inkl|inc\.|ttc|gross|brutto|with|\bexcl|exkl|\bhors|\bohne|before|without|\bnet|netto|\bht\b|basis|base|grundlage|id\b|nr|no\.|number|reg|nummer|numéro)",
    )
});
/// Amount due labels.
static DUE_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:amount\s*(?:due|payable|to\s*pay)|balance\s*due|due\s*payable|total\s*due|to\s*pay|zu\s*zahlen|zahlbetrag|restbetrag|offener\s*betrag|à\s*payer|a\s*payer|montant\s*dû|importe\s*a\s*pagar|total\s*a\s*pagar|te\s*betalen|da\s*pagare|do\s*zapłaty)",
    )
});
/// Labels of amounts already paid.
static PREPAID_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:prepaid|pre-paid|paid\s*amount|amount\s*paid|already\s*paid|payments?\s*received|deposit|advance|anzahlung|bereits\s*(?:bezahlt|gezahlt|erhalten)|geleistet|vorauszahlung|acompte|déjà\s*(?:payé|réglé|versé)|avance|anticipo|pagado|vooruitbetaald|reeds\s*betaald|acconto|zaliczka|zapłacono|virement|règlement)",
    )
});
/// The document's allowances summed (BT-107): `Gesamtbetrag der Abschläge`, `Total discount`, `Remise`.
static ALLOWANCE_TOTAL_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^\s*(?:(?:gesamtbetrag|summe)\s+(?:der\s+)?)?(?:abschl[äa]ge|nachl[äa]sse|rabatte?|(?:total\s+)?(?:discounts?|allowances?)(?:\s+total)?|(?:total\s+(?:des\s+)?)?remises?|(?:total\s+)?descuentos?|(?:totaal\s+)?kortingen?|(?:totale\s+)?sconti|rabaty?)\b",
    )
});
/// The document's charges summed (BT-108): `Gesamtbetrag der Zuschläge`, `Total charges`, `Frais`.
static CHARGE_TOTAL_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^\s*(?:(?:gesamtbetrag|summe)\s+(?:der\s+)?)?(?:zuschl[äa]ge|(?:total\s+)?(?:sur)?charges(?:\s+total)?|(?:total\s+(?:des\s+)?)?frais|(?:total\s+)?recargos|toeslagen|maggiorazioni|dopłaty)\b",
    )
});

/// Words that, on a line with an amount, mean the document may carry allowances or charges.
static ALLOWANCE_OR_CHARGE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:discount|allowance|rebate|surcharge|charge|shipping|freight|rabatt|nachl[aä]ss|zuschl[aä]g|abschl[aä]g|skonto|fracht|versand|porto|remise|ristourne|frais|descuento|recargo|korting|toeslag|sconto|rabat)",
    )
});

/// Finds the totals that add up. `grand_total` is the labelled grand total found before, if any.
pub(crate) fn totals_block(doc: &Text<'_>, grand_total: Option<Decimal>) -> TotalsBlock {
    let nets = labelled_amounts(doc, |line| NET_LABEL.find(line).map(|m| m.end()));
    let taxes = tax_amounts(doc);
    let grands = labelled_amounts(doc, |line| {
        if NOT_GRAND_TOTAL.is_match(line) && !NET_PAYABLE.is_match(line) {
            return None;
        }
        TOTAL_LABELS.iter().find_map(|(label, _)| label.find(line)).map(|m| m.end())
    });

    let mut block = TotalsBlock::default();
    // Every (net, tax, gross) that adds up, the gross among `grosses`.
    let add_up = |grosses: &[Decimal], taxes: &[Decimal]| {
        let mut triples: Vec<(Decimal, Decimal, Decimal)> = Vec::new();
        for &net in &nets {
            for &tax in taxes {
                // A credit note's tax printed without its minus (or OCR that lost it): the tax takes the sign
                // of the net it is charged on.
                let tax = if net < Decimal::ZERO && tax > Decimal::ZERO { -tax } else { tax };
                let Some(gross) = net.checked_add(tax) else { continue };
                if net != Decimal::ZERO && grosses.contains(&gross) && !triples.contains(&(net, tax, gross)) {
                    triples.push((net, tax, gross));
                }
            }
        }
        triples
    };
    // The gross must be one the labels call a total. With no total label read (a text layer that splits it,
    // `Br uttosumme`), a line's last amount that is a net plus a non-zero tax is the gross, the sum standing
    // in for the label.
    let mut triples = add_up(&grands, &taxes);
    if let Some(row) = header_row(doc) {
        if !triples.contains(&(row.net, row.tax, row.grand)) {
            triples.push((row.net, row.tax, row.grand));
        }
    }
    if triples.is_empty() && grand_total.is_none() {
        let lasts: Vec<Decimal> = doc
            .lines
            .iter()
            .filter(|line| line.contains(char::is_alphabetic) && !NOT_GRAND_TOTAL.is_match(line))
            .filter_map(|line| amounts_in(line).last())
            .collect();
        let nonzero: Vec<Decimal> = taxes.iter().copied().filter(|t| !t.is_zero()).collect();
        triples = add_up(&lasts, &nonzero);
    }
    let confirmed = match grand_total {
        Some(g) if triples.iter().any(|t| t.2 == g) => Some(g),
        _ => {
            let mut grosses: Vec<Decimal> = triples.iter().map(|t| t.2).collect();
            grosses.sort();
            grosses.dedup();
            // Without a labelled grand total to agree with, only an unambiguous sum is taken.
            (grosses.len() == 1).then(|| grosses[0])
        }
    };
    if let Some(g) = confirmed {
        let fitting: Vec<&(Decimal, Decimal, Decimal)> = triples.iter().filter(|t| t.2 == g).collect();
        if fitting.iter().all(|t| t.0 == fitting[0].0) {
            block.grand_total = Some(g);
            block.tax_basis_total = Some(fitting[0].0);
            block.tax_total = Some(fitting[0].1);
            // An allowance or charge line with an amount other than zero (`Abschläge 0,00` is none).
            let allowance_or_charge = doc
                .lines
                .iter()
                .any(|line| ALLOWANCE_OR_CHARGE.is_match(line) && amounts_in(line).any(|a| !a.is_zero()));
            if !allowance_or_charge {
                block.line_total = Some(fitting[0].0);
            }
        }
    }

    if let Some(basis) = block.tax_basis_total {
        allowances_and_charges(doc, basis, &mut block);
    }

    let grand = block.grand_total.or(grand_total);
    if let Some(g) = grand {
        let has_prepaid_label = doc.lines.iter().any(|line| PREPAID_LABEL.is_match(line));
        let dues = labelled_amounts(doc, |line| DUE_LABEL.find(line).map(|m| m.end()));
        let prepaids = labelled_amounts(doc, |line| PREPAID_LABEL.find(line).map(|_| 0));
        // A payment received may be printed as a deduction (`Erhaltene Anzahlungen -50,00`).
        let paid = prepaids
            .iter()
            .map(|p| p.abs())
            .find(|&p| p != Decimal::ZERO && g.checked_sub(p).is_some_and(|due| dues.contains(&due)));
        if let Some(p) = paid {
            block.prepaid = Some(p);
            block.due_payable = Some(g - p);
        } else if dues.contains(&g) {
            // The amount due printed equal to the grand total: nothing was paid, whatever the labels say.
            block.due_payable = Some(g);
            if prepaids.iter().any(|p| p.is_zero()) {
                block.prepaid = Some(Decimal::ZERO);
            }
        } else if !has_prepaid_label && dues.iter().all(|d| d.is_zero()) {
            // Nothing paid in advance: the amount due is the grand total (BR-CO-16 with BT-113 = 0). Not when
            // the document prints another amount due: what it was reduced or raised by is not known.
            block.due_payable = Some(g);
        }
    }
    block
}

/// The sum of lines, allowances and charges, when a printed line sum less the printed allowances plus the
/// printed charges is the confirmed tax basis (BR-CO-13), and only one set does it. Allowances and charges may
/// be printed negative or positive; a kind without a label counts as none.
fn allowances_and_charges(doc: &Text<'_>, basis: Decimal, block: &mut TotalsBlock) {
    let sums = line_sums(doc);
    let labelled = |label: &Regex| {
        let found: Vec<Decimal> =
            labelled_amounts(doc, |line| label.find(line).map(|m| m.end())).iter().map(|v| v.abs()).collect();
        let printed = doc.lines.iter().any(|line| label.is_match(line));
        (found, printed)
    };
    let (allowances, allowance_printed) = labelled(&ALLOWANCE_TOTAL_LABEL);
    let (charges, charge_printed) = labelled(&CHARGE_TOTAL_LABEL);
    if !allowance_printed && !charge_printed {
        return;
    }
    let or_none = |found: Vec<Decimal>, printed: bool| if printed { found } else { vec![Decimal::ZERO] };
    let (allowances, charges) = (or_none(allowances, allowance_printed), or_none(charges, charge_printed));
    let mut solutions = Vec::new();
    for &lines in &sums {
        for &a in &allowances {
            for &c in &charges {
                let fits = lines.checked_sub(a).and_then(|v| v.checked_add(c)) == Some(basis);
                if fits && !solutions.contains(&(lines, a, c)) {
                    solutions.push((lines, a, c));
                }
            }
        }
    }
    if let [(lines, a, c)] = solutions[..] {
        if block.line_total.is_some_and(|known| known != lines) {
            return;
        }
        block.line_total = Some(lines);
        block.allowance_total = allowance_printed.then_some(a);
        block.charge_total = charge_printed.then_some(c);
    }
}

/// Every amount printed after a net label (a sub-total, a net total), confirmed or not.
pub(crate) fn net_amounts(doc: &Text<'_>) -> Vec<Decimal> {
    labelled_amounts(doc, |line| NET_LABEL.find(line).map(|m| m.end()))
}

/// Whether a line carries a net amount label.
pub(crate) fn is_net_label(line: &str) -> bool {
    NET_LABEL.is_match(line)
}

/// Whether a text names an allowance or a charge (a discount, a surcharge, shipping).
pub(crate) fn is_allowance_or_charge(text: &str) -> bool {
    ALLOWANCE_OR_CHARGE.is_match(text)
}

/// Labels of the sum of the lines themselves: `Positionssumme`, `Summe Positionen`, `Total lines`,
/// `Somme des lignes`, `Totaal regels`.
pub(super) static LINE_SUM_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:positionssumme|summe\s*(?:der\s*)?positionen|summe\s*artikel|(?:sum|total)\s*(?:of\s*)?(?:the\s*)?(?:lines|items|positions)|line\s*items?\s*total|items?\s*total|somme\s*des\s*lignes|total\s*(?:des\s*)?(?:lignes|articles)|total\s*(?:de\s*)?(?:l[íi]neas|art[íi]culos)|totaal\s*regels|totale\s*(?:righe|articoli))",
    )
});

/// The amounts printed after a line-sum label.
pub(super) fn line_sums(doc: &Text<'_>) -> Vec<Decimal> {
    doc.lines
        .iter()
        .filter_map(|line| LINE_SUM_LABEL.find(line).map(|m| &line[m.end()..]))
        .flat_map(amounts_in)
        .take(64)
        .collect()
}

/// Every amount after a label (where `label_end` finds one in a line), or alone on the line below it.
fn labelled_amounts(doc: &Text<'_>, label_end: impl Fn(&str) -> Option<usize>) -> Vec<Decimal> {
    let mut found = Vec::new();
    for (i, line) in doc.lines.iter().enumerate() {
        let Some(end) = label_end(line) else { continue };
        let after = amounts_in(&line[end..]).collect::<Vec<_>>();
        if after.is_empty() {
            if let Some(v) = doc.next_nonblank(i).and_then(|j| only_amount(doc.lines[j])) {
                push_unique(&mut found, v);
            }
        }
        for v in after {
            push_unique(&mut found, v);
        }
    }
    found
}

/// Tax amounts: the amounts of tax-labelled lines, and the sum of the last amounts of those lines when
/// there are several (one per rate).
fn tax_amounts(doc: &Text<'_>) -> Vec<Decimal> {
    let mut found = Vec::new();
    let mut per_line = Vec::new();
    for (i, line) in doc.lines.iter().enumerate() {
        let Some(m) = TAX_LABEL.find(line) else { continue };
        if NOT_TAX_TOTAL.is_match(line) {
            continue;
        }
        let after = amounts_in(&line[m.start()..]).collect::<Vec<_>>();
        if let Some(&last) = after.last() {
            per_line.push(last);
        } else if let Some(v) = doc.next_nonblank(i).and_then(|j| only_amount(doc.lines[j])) {
            push_unique(&mut found, v);
        }
        for v in after {
            push_unique(&mut found, v);
        }
    }
    if per_line.len() > 1 {
        push_unique(&mut found, per_line.iter().sum());
    }
    found
}

fn push_unique(found: &mut Vec<Decimal>, v: Decimal) {
    if !found.contains(&v) && found.len() < 64 {
        found.push(v);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Into the invoice

/// Copies the amounts the arithmetic confirmed; a confirmed grand total replaces a merely labelled one.
pub(super) fn set_totals(invoice: &mut Invoice, block: &TotalsBlock) {
    let fields = [
        ("totals.grand_total", block.grand_total, &mut invoice.totals.grand_total),
        ("totals.tax_basis_total", block.tax_basis_total, &mut invoice.totals.tax_basis_total),
        ("totals.tax_total", block.tax_total, &mut invoice.totals.tax_total),
        ("totals.line_total", block.line_total, &mut invoice.totals.line_total),
        ("totals.allowance_total", block.allowance_total, &mut invoice.totals.allowance_total),
        ("totals.charge_total", block.charge_total, &mut invoice.totals.charge_total),
        ("totals.prepaid", block.prepaid, &mut invoice.totals.prepaid),
        ("totals.due_payable", block.due_payable, &mut invoice.totals.due_payable),
    ];
    for (name, value, slot) in fields {
        if let Some(value) = value {
            *slot = Some(value);
            invoice.confidence.insert(name.into(), 0.9);
        }
    }
}

/// Weighs the totals by the EN 16931 sums they take part in ([`nova_core::sums`]): a total that a sum
/// confirms keeps its label's confidence (at least 0.9); one that no sum can check is held below the `auto`
/// threshold (0.75), since a lone amount may be the wrong one of several; one in a sum that does not close
/// is doubtful (0.5). The label finds a candidate; the arithmetic is what makes it trustworthy.
pub(super) fn totals_confidence(invoice: &mut Invoice) {
    let sums = nova_core::sums(invoice);
    for (field, confidence) in invoice.confidence.iter_mut() {
        if !field.starts_with("totals.") {
            continue;
        }
        let verdicts: Vec<bool> =
            sums.iter().filter(|sum| sum.fields.contains(&field.as_str())).map(nova_core::Sum::closes).collect();
        *confidence = if verdicts.contains(&false) {
            confidence.min(0.5)
        } else if verdicts.contains(&true) {
            confidence.max(0.9)
        } else {
            confidence.min(0.75)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> TotalsBlock {
        let doc = Text::new(text);
        let grand = grand_total(&doc).map(|t| t.value);
        totals_block(&doc, grand)
    }

    fn d(s: &str) -> Option<Decimal> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn net_and_tax_are_taken_when_they_add_up_to_the_total() {
        let b = block("Subtotal  573.00\n19% VAT  108.87\nTotal € Incl. VAT  681.87");
        assert_eq!(b.tax_basis_total, d("573.00"));
        assert_eq!(b.tax_total, d("108.87"));
        assert_eq!(b.line_total, d("573.00"));
        assert_eq!(b.due_payable, d("681.87"));
    }

    #[test]
    fn a_row_of_total_labels_over_a_row_of_amounts() {
        // OCR ran a paragraph into both lines and put a line of it between them.
        let b = block(
            "terms of payment apply   TOTAL HT   TOTAL TVA   TOTAL TTC\nlate fees 40 €\nno discount   100,00   4,90   104,90",
        );
        assert_eq!((b.tax_basis_total, b.tax_total, b.grand_total), (d("100.00"), d("4.90"), d("104.90")));
        // Amounts that do not add up in the labels' order are not the row.
        let b = block("TOTAL HT   TOTAL TVA   TOTAL TTC\n100,00   104,90   4,90");
        assert_eq!(b.grand_total, None);
    }

    #[test]
    fn a_total_label_that_ends_its_line_takes_the_amount_in_its_column_below() {
        let doc = Text::new(
            "misread header                       TOTAL TTC\n\nsome words     100,00   20,00         120,00\n\
             Acompte 20,00\nNET A PAYER 100,00 EUR",
        );
        assert_eq!(grand_total(&doc).map(|t| t.value), d("120.00"));
        // Not an amount in another column.
        let doc = Text::new("                    TOTAL TTC\nnotes 15,00 apply here");
        assert_eq!(grand_total(&doc).map(|t| t.value), None);
    }

    #[test]
    fn net_a_payer_is_the_amount_due_and_the_total_only_when_nothing_was_paid() {
        let doc = Text::new("Acompte : 0,00\nNET A PAYER 104,90 EUR");
        assert_eq!(grand_total(&doc).map(|t| t.value), d("104.90"));
        let doc = Text::new("Acompte : 20,00\nNET A PAYER 100,00 EUR");
        assert_eq!(grand_total(&doc).map(|t| t.value), None);
        let doc = Text::new("Total HT 100,00\nTVA 20,00\nTotal TTC 120,00\nAcompte 20,00\nNet à payer 100,00");
        assert_eq!(grand_total(&doc).map(|t| t.value), d("120.00"));
    }

    #[test]
    fn tax_rows_per_rate_are_summed() {
        let b = block("Nettobetrag: 496,00 €\n7% USt 11,20 €\n19% USt 63,84 €\nGesamtbetrag: 571,04 €");
        assert_eq!(b.tax_basis_total, d("496.00"));
        assert_eq!(b.tax_total, d("75.04"));
    }

    #[test]
    fn amounts_that_do_not_add_up_stay_empty() {
        let b = block("Subtotal  500.00\nVAT  108.87\nTotal  681.87");
        assert_eq!(b.tax_basis_total, None);
        assert_eq!(b.tax_total, None);
        assert_eq!(b.grand_total, None);
    }

    #[test]
    fn a_negative_net_takes_the_tax_with_its_sign() {
        let b = block("Total HT -218,48 €\nTotal taxes 14,99 €\nTotal TTC -233,47 €");
        assert_eq!((b.tax_basis_total, b.tax_total, b.grand_total), (d("-218.48"), d("-14.99"), d("-233.47")));
    }

    #[test]
    fn allowances_and_charges_between_the_line_sum_and_the_net() {
        let text = "Positionssumme 180,76\nGesamtbetrag der Zuschläge 5,80\nGesamtbetrag der Abschläge -9,07\n\
                    Rechnungssumme ohne USt. 177,49\nSteuerbetrag 20,16\nBruttosumme 197,65";
        let b = block(text);
        assert_eq!((b.line_total, b.allowance_total, b.charge_total), (d("180.76"), d("9.07"), d("5.80")));
        // Printed zeros are totals of zero.
        let b = block(
            "Positionssumme 59,50\nGesamtbetrag der Zuschläge 0,00\nGesamtbetrag der Abschläge -0,00\n\
                       Rechnungssumme ohne USt. 59,50\nSteuerbetrag 0,00\nBruttosumme 59,50",
        );
        assert_eq!((b.line_total, b.allowance_total, b.charge_total), (d("59.50"), d("0"), d("0")));
        // A line sum that does not add up is not taken.
        let b = block(&text.replace("180,76", "181,76"));
        assert_eq!((b.line_total, b.allowance_total, b.charge_total), (None, None, None));
    }

    #[test]
    fn a_payment_printed_as_a_deduction_and_a_zero_one() {
        let b = block("Bruttosumme 197,65\nErhaltene Anzahlungen -50,00\nZahlbetrag 147,65");
        assert_eq!((b.prepaid, b.due_payable), (d("50.00"), d("147.65")));
        let b = block("Bruttosumme 59,50\nErhaltene Anzahlungen -0,00\nZahlbetrag 59,50");
        assert_eq!((b.prepaid, b.due_payable), (d("0"), d("59.50")));
        // A payment label without any amount due printed: nothing is confirmed.
        let b = block("Bruttosumme 59,50\nErhaltene Anzahlungen 10,00");
        assert_eq!((b.prepaid, b.due_payable), (None, None));
    }

    #[test]
    fn prepaid_is_confirmed_by_the_amount_due() {
        let b = block("Total HT 624,90 €\nTotal taxes 46,25 €\nTotal TTC 671,15 €\nAcompte versé 201,00 €\nSolde à payer 470,15 €");
        assert_eq!(b.grand_total, d("671.15"));
        assert_eq!(b.prepaid, d("201.00"));
        assert_eq!(b.due_payable, d("470.15"));
        // A paid amount that does not explain the amount due leaves both empty.
        let b = block(
            "Total HT 624,90 €\nTotal taxes 46,25 €\nTotal TTC 671,15 €\nAcompte 100,00 €\nSolde à payer 470,15 €",
        );
        assert_eq!(b.prepaid, None);
        assert_eq!(b.due_payable, None);
    }

    #[test]
    fn a_gross_whose_label_is_unreadable_is_found_by_its_sum() {
        // `Bruttosumme` split by the text layer: no total label is read, but net + tax is printed.
        let b = block("Rechnungssumme ohne USt. 198,00\nSteuerbetrag 37,62\nBr uttosumme 235,62");
        assert_eq!((b.grand_total, b.tax_basis_total, b.tax_total), (d("235.62"), d("198.00"), d("37.62")));
        // Without tax, net + tax is the net itself: no evidence of a gross.
        let b = block("Nettobetrag 100,00\nSteuerbetrag 0,00\nBr uttosumme 100,00");
        assert_eq!(b.grand_total, None);
        // An amount that is not net + tax is not taken.
        let b = block("Rechnungssumme ohne USt. 198,00\nSteuerbetrag 37,62\nBr uttosumme 235,00");
        assert_eq!(b.grand_total, None);
    }

    #[test]
    fn the_amount_due_is_the_grand_total_unless_another_is_printed() {
        let b = block("Nettobetrag 100,00\nUSt. 19,00\nBruttosumme 119,00");
        assert_eq!(b.due_payable, d("119.00"), "nothing paid and nothing else due: the grand total");
        // An amount due of its own (a balance carried over, a payment not labelled as one) is not overruled.
        let b = block("Nettobetrag 100,00\nUSt. 19,00\nBruttosumme 119,00\nOffene Posten 119,00\nZahlbetrag 238,00");
        assert_eq!(b.grand_total, d("119.00"));
        assert_eq!(b.due_payable, None);
    }

    #[test]
    fn discounts_keep_the_line_total_empty() {
        let b = block("Subtotal 90.00\nDiscount 10.00\nVAT 17.10\nTotal 107.10");
        assert_eq!(b.tax_basis_total, d("90.00"));
        assert_eq!(b.line_total, None);
        // The word alone, without an amount, is no allowance.
        let b = block("Shipping method: road\nSubtotal 90.00\nVAT 17.10\nTotal 107.10");
        assert_eq!(b.line_total, d("90.00"));
    }

    #[test]
    fn a_total_in_a_sum_that_does_not_close_is_doubted() {
        let mut invoice = Invoice::default();
        let amount = |s: &str| Some(s.parse::<Decimal>().unwrap());
        invoice.totals.tax_basis_total = amount("100.00");
        invoice.totals.tax_total = amount("19.00");
        invoice.totals.grand_total = amount("129.00");
        invoice.totals.due_payable = amount("129.00");
        for field in ["totals.tax_basis_total", "totals.tax_total", "totals.grand_total", "totals.due_payable"] {
            invoice.confidence.insert(field.into(), 0.9);
        }
        totals_confidence(&mut invoice);
        let confidence = |field: &str| invoice.confidence[field];
        assert!(confidence("totals.grand_total") <= 0.5, "{:?}", invoice.confidence);
        assert!(confidence("totals.tax_total") <= 0.5, "every term of the broken sum is doubted");
        assert!(confidence("totals.due_payable") >= 0.9, "the amount due agrees with the stated total");
    }
}
