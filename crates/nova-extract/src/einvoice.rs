//! E-invoice XML (CII and UBL) mapped onto the invoice schema.
//!
//! Elements are matched by local name, ignoring namespace prefixes and URIs, because the same data comes
//! with `rsm:`/`ram:` or default namespaces and under several namespace versions (ZUGFeRD 1.0, 2.x,
//! Factur-X, XRechnung). Where ZUGFeRD 1.0 (`CrossIndustryDocument`) named an element differently from
//! CII D16B, each step lists both names. Values are taken as written: amounts keep their scale, names
//! keep their spelling. Where several elements could carry a business term, the standard's rule picks
//! one: the net payment's due date for BT-9, the top-level line items for BG-25 (not a group's sub-lines); and
//! the amount due (BT-115), when a document does not state it, is what BR-CO-16 makes of its totals.

use chrono::NaiveDate;
use nova_core::{Invoice, Line, Party, TaxRow, Totals};
use roxmltree::{Document, Node, ParsingOptions};
use rust_decimal::Decimal;

use crate::parse::{parse_compact_date, parse_xml_decimal};
use crate::ExtractError;

/// Upper bound on XML nodes: a large real e-invoice has tens of thousands.
const MAX_XML_NODES: u32 = 2_000_000;

/// Checks that the bytes are well-formed XML, without looking at what they hold.
pub(crate) fn check_well_formed(bytes: &[u8]) -> Result<(), ExtractError> {
    let text = decode(bytes);
    parse_document(&text).map(|_| ())
}

/// Maps a CII (`CrossIndustryInvoice`, ZUGFeRD 1.0 `CrossIndustryDocument`) or UBL (`Invoice`, `CreditNote`)
/// document.
pub(crate) fn parse(bytes: &[u8]) -> Result<Invoice, ExtractError> {
    let text = decode(bytes);
    let doc = parse_document(&text)?;
    let root = doc.root_element();
    let mut invoice = match root.tag_name().name() {
        "CrossIndustryInvoice" | "CrossIndustryDocument" => cii::map(root),
        "Invoice" | "CreditNote" => ubl::map(root),
        other => {
            let reason =
                format!("root element `{}` is not a CII or UBL invoice", other.chars().take(60).collect::<String>());
            return Err(ExtractError::InvalidXml { reason });
        }
    };
    invoice.source = Some("einvoice".to_string());
    Ok(invoice)
}

fn parse_document(text: &str) -> Result<Document<'_>, ExtractError> {
    // DTDs stay refused (the default): no entity expansion, no external references.
    let options = ParsingOptions { allow_dtd: false, nodes_limit: MAX_XML_NODES };
    Document::parse_with_options(text, options).map_err(|e| ExtractError::InvalidXml { reason: e.to_string() })
}

/// UTF-8 (with or without a byte-order mark) as e-invoice standards require; anything else is read as
/// Latin-1, which old ZUGFeRD 1.0 writers produced, rather than refused.
fn decode(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// The first child element whose local name is one of `names`.
fn child<'a>(node: Node<'a, 'a>, names: &'static [&'static str]) -> Option<Node<'a, 'a>> {
    children(node, names).next()
}

fn children<'a>(node: Node<'a, 'a>, names: &'static [&'static str]) -> impl Iterator<Item = Node<'a, 'a>> {
    node.children().filter(move |n| n.is_element() && names.contains(&n.tag_name().name()))
}

/// Follows a path of child steps, each step accepting any of its names.
fn path<'a>(node: Node<'a, 'a>, steps: &[&'static [&'static str]]) -> Option<Node<'a, 'a>> {
    steps.iter().try_fold(node, |n, names| child(n, names))
}

/// The trimmed text of an element; `None` when absent or blank.
fn text_of(node: Option<Node<'_, '_>>) -> Option<String> {
    let text = node?.text()?.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn decimal_of(node: Option<Node<'_, '_>>) -> Option<Decimal> {
    parse_xml_decimal(node?.text()?)
}

/// Among repeated amount elements (CII repeats `TaxTotalAmount` once per currency), the one in the invoice
/// currency, else the first.
fn amount_in_currency<'a>(
    mut candidates: impl Iterator<Item = Node<'a, 'a>>,
    currency: Option<&str>,
) -> Option<Decimal> {
    let all: Vec<Node<'a, 'a>> = candidates.by_ref().collect();
    let matching = all.iter().find(|n| currency.is_some() && n.attribute("currencyID") == currency);
    decimal_of(matching.or(all.first()).copied())
}

/// BT-115 where the document does not state it. EN 16931 makes the amount due mandatory (BR-15) and defines it
/// (BR-CO-16): amount due (BT-115) = total with VAT (BT-112) − paid amount (BT-113) + rounding amount (BT-114), an
/// absent BT-113 or BT-114 counting as zero. ZUGFeRD 1.0 BASIC has no element for it, so such a document states
/// it only through its total.
fn amount_due(grand_total: Option<Decimal>, prepaid: Option<Decimal>, rounding: Option<Decimal>) -> Option<Decimal> {
    let due = grand_total?;
    let due = prepaid.map_or(due, |paid| due - paid);
    Some(rounding.map_or(due, |rounding| due + rounding))
}

mod cii {
    //! UN/CEFACT Cross Industry Invoice (D16B, used by Factur-X 1.0 / ZUGFeRD 2.x / XRechnung CII) and the
    //! older Cross Industry Document of ZUGFeRD 1.0.

    use super::*;

    const HEADER: &[&str] = &["ExchangedDocument", "HeaderExchangedDocument"];
    const TRANSACTION: &[&str] = &["SupplyChainTradeTransaction", "SpecifiedSupplyChainTradeTransaction"];
    const AGREEMENT: &[&str] = &["ApplicableHeaderTradeAgreement", "ApplicableSupplyChainTradeAgreement"];
    const SETTLEMENT: &[&str] = &["ApplicableHeaderTradeSettlement", "ApplicableSupplyChainTradeSettlement"];
    const SUMMATION: &[&str] =
        &["SpecifiedTradeSettlementHeaderMonetarySummation", "SpecifiedTradeSettlementMonetarySummation"];
    const LINE_SUMMATION: &[&str] =
        &["SpecifiedTradeSettlementLineMonetarySummation", "SpecifiedTradeSettlementMonetarySummation"];
    const LINE_AGREEMENT: &[&str] = &["SpecifiedLineTradeAgreement", "SpecifiedSupplyChainTradeAgreement"];
    const LINE_DELIVERY: &[&str] = &["SpecifiedLineTradeDelivery", "SpecifiedSupplyChainTradeDelivery"];
    const LINE_SETTLEMENT: &[&str] = &["SpecifiedLineTradeSettlement", "SpecifiedSupplyChainTradeSettlement"];
    const RATE: &[&str] = &["RateApplicablePercent", "ApplicablePercent"];
    const DATE_STRING: &[&str] = &["DateTimeString"];

    pub(super) fn map(root: Node<'_, '_>) -> Invoice {
        let header = child(root, HEADER);
        let transaction = child(root, TRANSACTION);
        let agreement = transaction.and_then(|t| child(t, AGREEMENT));
        let settlement = transaction.and_then(|t| child(t, SETTLEMENT));
        let currency = settlement.and_then(|s| text_of(child(s, &["InvoiceCurrencyCode"])));

        Invoice {
            invoice_number: text_of(header.and_then(|h| child(h, &["ID"]))),
            type_code: text_of(header.and_then(|h| child(h, &["TypeCode"]))),
            issue_date: header.and_then(|h| date(path(h, &[&["IssueDateTime"], DATE_STRING]))),
            due_date: settlement.and_then(due_date),
            seller: agreement.and_then(|a| child(a, &["SellerTradeParty"])).map(party),
            buyer: agreement.and_then(|a| child(a, &["BuyerTradeParty"])).map(party),
            buyer_reference: text_of(agreement.and_then(|a| child(a, &["BuyerReference"]))),
            order_reference: agreement.and_then(|a| {
                let doc = child(a, &["BuyerOrderReferencedDocument"])?;
                text_of(child(doc, &["IssuerAssignedID"])).or_else(|| text_of(child(doc, &["ID"])))
            }),
            payment_iban: settlement.and_then(|s| {
                children(s, &["SpecifiedTradeSettlementPaymentMeans"])
                    .find_map(|means| text_of(path(means, &[&["PayeePartyCreditorFinancialAccount"], &["IBANID"]])))
            }),
            totals: settlement
                .and_then(|s| child(s, SUMMATION))
                .map(|sum| totals(sum, currency.as_deref()))
                .unwrap_or_default(),
            tax_breakdown: settlement
                .map(|s| children(s, &["ApplicableTradeTax"]).map(tax_row).collect())
                .unwrap_or_default(),
            lines: transaction
                .map(|t| {
                    children(t, &["IncludedSupplyChainTradeLineItem"]).filter(|i| is_billed(*i)).map(line).collect()
                })
                .unwrap_or_default(),
            currency,
            ..Invoice::default()
        }
    }

    fn date(node: Option<Node<'_, '_>>) -> Option<NaiveDate> {
        parse_compact_date(node?.text()?)
    }

    /// BT-9, the payment due date. EN 16931-1 defines it as the due date of the *net* payment, for partial
    /// payments the first net due date. EN 16931 and the lower profiles carry one `SpecifiedTradePaymentTerms`,
    /// whose `DueDateDateTime` is BT-9; EXTENDED may carry several, and a term with discount terms
    /// (`ApplicableTradePaymentDiscountTerms`, a cash discount) dates the end of the discount, not the net payment.
    /// So: the earliest due date of a term without discount terms, else (no such term is dated) the first due date.
    fn due_date(settlement: Node<'_, '_>) -> Option<NaiveDate> {
        let dated: Vec<(NaiveDate, bool)> = children(settlement, &["SpecifiedTradePaymentTerms"])
            .filter_map(|terms| {
                let due = date(path(terms, &[&["DueDateDateTime"], DATE_STRING]))?;
                Some((due, child(terms, &["ApplicableTradePaymentDiscountTerms"]).is_some()))
            })
            .collect();
        let net = dated.iter().filter(|(_, discount)| !discount).map(|(due, _)| *due).min();
        net.or_else(|| dated.first().map(|(due, _)| *due))
    }

    /// Whether a line item is one of the invoice's lines (BG-25) as a reader of the document sees them: a
    /// top-level item. EXTENDED (Factur-X 1.0, ZUGFeRD 2.x) may nest items under a `GROUP` item, each naming it
    /// as its parent (BT-X-304 `ParentLineID`): such a sub-line details its group, whose line carries the
    /// group's amount, so reading both would list the same goods twice. Items without a parent (a `DETAIL`,
    /// `GROUP` or `INFORMATION` item, or one of a profile without subtypes) are the lines.
    /// (`IncludedSubordinateTradeLineItem`, CII's nested sub-item, is not an `IncludedSupplyChainTradeLineItem`
    /// of the transaction and is never read as a line.)
    fn is_billed(item: Node<'_, '_>) -> bool {
        text_of(path(item, &[&["AssociatedDocumentLineDocument"], &["ParentLineID"]])).is_none()
    }

    fn party(node: Node<'_, '_>) -> Party {
        let address = child(node, &["PostalTradeAddress"]);
        let registrations: Vec<Node<'_, '_>> =
            children(node, &["SpecifiedTaxRegistration"]).filter_map(|r| child(r, &["ID"])).collect();
        // `VA` is the VAT id; `FC` a national tax number, which is not what BT-31/BT-48 mean.
        let vat = registrations.iter().find(|id| id.attribute("schemeID") == Some("VA")).copied();
        Party {
            name: text_of(child(node, &["Name"])),
            vat_id: text_of(vat),
            country: text_of(address.and_then(|a| child(a, &["CountryID"]))),
            city: text_of(address.and_then(|a| child(a, &["CityName"]))),
            postcode: text_of(address.and_then(|a| child(a, &["PostcodeCode"]))),
        }
    }

    fn totals(sum: Node<'_, '_>, currency: Option<&str>) -> Totals {
        let amount = |name: &'static [&'static str]| amount_in_currency(children(sum, name), currency);
        Totals {
            line_total: amount(&["LineTotalAmount"]),
            allowance_total: amount(&["AllowanceTotalAmount"]),
            charge_total: amount(&["ChargeTotalAmount"]),
            tax_basis_total: amount(&["TaxBasisTotalAmount"]),
            tax_total: amount(&["TaxTotalAmount"]),
            grand_total: amount(&["GrandTotalAmount"]),
            prepaid: amount(&["TotalPrepaidAmount"]),
            due_payable: amount(&["DuePayableAmount"]).or_else(|| {
                amount_due(amount(&["GrandTotalAmount"]), amount(&["TotalPrepaidAmount"]), amount(&["RoundingAmount"]))
            }),
        }
    }

    fn tax_row(tax: Node<'_, '_>) -> TaxRow {
        TaxRow {
            category: text_of(child(tax, &["CategoryCode"])),
            rate: decimal_of(child(tax, RATE)),
            basis: decimal_of(child(tax, &["BasisAmount"])),
            amount: decimal_of(child(tax, &["CalculatedAmount"])),
        }
    }

    fn line(item: Node<'_, '_>) -> Line {
        let product = child(item, &["SpecifiedTradeProduct"]);
        let quantity = path(item, &[LINE_DELIVERY, &["BilledQuantity"]]);
        let settlement = child(item, LINE_SETTLEMENT);
        Line {
            id: text_of(path(item, &[&["AssociatedDocumentLineDocument"], &["LineID"]])),
            name: text_of(product.and_then(|p| child(p, &["Name"]))),
            seller_item_id: text_of(product.and_then(|p| child(p, &["SellerAssignedID"]))),
            quantity: decimal_of(quantity),
            unit: quantity.and_then(|q| q.attribute("unitCode")).map(str::to_string),
            net_price: decimal_of(path(item, &[LINE_AGREEMENT, &["NetPriceProductTradePrice"], &["ChargeAmount"]])),
            tax_rate: settlement.and_then(|s| decimal_of(path(s, &[&["ApplicableTradeTax"], RATE]))),
            line_total: settlement.and_then(|s| decimal_of(path(s, &[LINE_SUMMATION, &["LineTotalAmount"]]))),
        }
    }
}

mod ubl {
    //! OASIS UBL 2.1 `Invoice` and `CreditNote` (Peppol BIS 3, XRechnung UBL).

    use super::*;

    pub(super) fn map(root: Node<'_, '_>) -> Invoice {
        let currency = text_of(child(root, &["DocumentCurrencyCode"]));
        let totals = child(root, &["LegalMonetaryTotal"]);
        let amount = |name: &'static [&'static str]| totals.and_then(|t| decimal_of(child(t, name)));
        // TaxTotal repeats per currency like CII's TaxTotalAmount; the breakdown sits in the one that has it.
        let tax_totals: Vec<Node<'_, '_>> = children(root, &["TaxTotal"]).collect();
        let tax_total =
            amount_in_currency(tax_totals.iter().filter_map(|t| child(*t, &["TaxAmount"])), currency.as_deref());

        Invoice {
            invoice_number: text_of(child(root, &["ID"])),
            type_code: text_of(child(root, &["InvoiceTypeCode", "CreditNoteTypeCode"])),
            issue_date: date(child(root, &["IssueDate"])),
            due_date: date(child(root, &["DueDate"]))
                .or_else(|| children(root, &["PaymentMeans"]).find_map(|m| date(child(m, &["PaymentDueDate"])))),
            seller: path(root, &[&["AccountingSupplierParty"], &["Party"]]).map(party),
            buyer: path(root, &[&["AccountingCustomerParty"], &["Party"]]).map(party),
            buyer_reference: text_of(child(root, &["BuyerReference"])),
            order_reference: text_of(path(root, &[&["OrderReference"], &["ID"]])),
            payment_iban: children(root, &["PaymentMeans"])
                .find_map(|m| text_of(path(m, &[&["PayeeFinancialAccount"], &["ID"]]))),
            totals: Totals {
                line_total: amount(&["LineExtensionAmount"]),
                allowance_total: amount(&["AllowanceTotalAmount"]),
                charge_total: amount(&["ChargeTotalAmount"]),
                tax_basis_total: amount(&["TaxExclusiveAmount"]),
                tax_total,
                grand_total: amount(&["TaxInclusiveAmount"]),
                prepaid: amount(&["PrepaidAmount"]),
                due_payable: amount(&["PayableAmount"]).or_else(|| {
                    amount_due(
                        amount(&["TaxInclusiveAmount"]),
                        amount(&["PrepaidAmount"]),
                        amount(&["PayableRoundingAmount"]),
                    )
                }),
            },
            tax_breakdown: tax_totals.iter().flat_map(|t| children(*t, &["TaxSubtotal"])).map(tax_row).collect(),
            lines: children(root, &["InvoiceLine", "CreditNoteLine"]).map(line).collect(),
            currency,
            ..Invoice::default()
        }
    }

    fn date(node: Option<Node<'_, '_>>) -> Option<NaiveDate> {
        NaiveDate::parse_from_str(node?.text()?.trim(), "%Y-%m-%d").ok()
    }

    fn party(node: Node<'_, '_>) -> Party {
        let address = child(node, &["PostalAddress"]);
        let vat = children(node, &["PartyTaxScheme"])
            .find(|s| text_of(path(*s, &[&["TaxScheme"], &["ID"]])).as_deref() == Some("VAT"))
            .and_then(|s| child(s, &["CompanyID"]));
        Party {
            name: text_of(path(node, &[&["PartyLegalEntity"], &["RegistrationName"]]))
                .or_else(|| text_of(path(node, &[&["PartyName"], &["Name"]]))),
            vat_id: text_of(vat),
            country: text_of(address.and_then(|a| path(a, &[&["Country"], &["IdentificationCode"]]))),
            city: text_of(address.and_then(|a| child(a, &["CityName"]))),
            postcode: text_of(address.and_then(|a| child(a, &["PostalZone"]))),
        }
    }

    fn tax_row(sub: Node<'_, '_>) -> TaxRow {
        let category = child(sub, &["TaxCategory"]);
        TaxRow {
            category: text_of(category.and_then(|c| child(c, &["ID"]))),
            rate: category.and_then(|c| decimal_of(child(c, &["Percent"]))),
            basis: decimal_of(child(sub, &["TaxableAmount"])),
            amount: decimal_of(child(sub, &["TaxAmount"])),
        }
    }

    fn line(item: Node<'_, '_>) -> Line {
        let quantity = child(item, &["InvoicedQuantity", "CreditedQuantity"]);
        let product = child(item, &["Item"]);
        Line {
            id: text_of(child(item, &["ID"])),
            name: text_of(product.and_then(|p| child(p, &["Name"]))),
            seller_item_id: text_of(product.and_then(|p| path(p, &[&["SellersItemIdentification"], &["ID"]]))),
            quantity: decimal_of(quantity),
            unit: quantity.and_then(|q| q.attribute("unitCode")).map(str::to_string),
            net_price: decimal_of(path(item, &[&["Price"], &["PriceAmount"]])),
            tax_rate: product.and_then(|p| decimal_of(path(p, &[&["ClassifiedTaxCategory"], &["Percent"]]))),
            line_total: decimal_of(child(item, &["LineExtensionAmount"])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UBL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
  xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
  xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
  <cbc:ID>INV-7</cbc:ID><cbc:IssueDate>2024-05-02</cbc:IssueDate><cbc:DueDate>2024-06-01</cbc:DueDate>
  <cbc:InvoiceTypeCode>380</cbc:InvoiceTypeCode><cbc:DocumentCurrencyCode>EUR</cbc:DocumentCurrencyCode>
  <cbc:BuyerReference>04011000-12345-03</cbc:BuyerReference>
  <cac:AccountingSupplierParty><cac:Party>
    <cac:PostalAddress><cbc:CityName>Berlin</cbc:CityName><cbc:PostalZone>10115</cbc:PostalZone>
      <cac:Country><cbc:IdentificationCode>DE</cbc:IdentificationCode></cac:Country></cac:PostalAddress>
    <cac:PartyTaxScheme><cbc:CompanyID>DE123456789</cbc:CompanyID><cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme></cac:PartyTaxScheme>
    <cac:PartyLegalEntity><cbc:RegistrationName>Seller GmbH</cbc:RegistrationName></cac:PartyLegalEntity>
  </cac:Party></cac:AccountingSupplierParty>
  <cac:PaymentMeans><cac:PayeeFinancialAccount><cbc:ID>DE02120300000000202051</cbc:ID></cac:PayeeFinancialAccount></cac:PaymentMeans>
  <cac:TaxTotal><cbc:TaxAmount currencyID="EUR">19.00</cbc:TaxAmount>
    <cac:TaxSubtotal><cbc:TaxableAmount currencyID="EUR">100.00</cbc:TaxableAmount><cbc:TaxAmount currencyID="EUR">19.00</cbc:TaxAmount>
      <cac:TaxCategory><cbc:ID>S</cbc:ID><cbc:Percent>19</cbc:Percent></cac:TaxCategory></cac:TaxSubtotal></cac:TaxTotal>
  <cac:LegalMonetaryTotal><cbc:LineExtensionAmount currencyID="EUR">100.00</cbc:LineExtensionAmount>
    <cbc:TaxExclusiveAmount currencyID="EUR">100.00</cbc:TaxExclusiveAmount>
    <cbc:TaxInclusiveAmount currencyID="EUR">119.00</cbc:TaxInclusiveAmount>
    <cbc:PayableAmount currencyID="EUR">119.00</cbc:PayableAmount></cac:LegalMonetaryTotal>
  <cac:InvoiceLine><cbc:ID>1</cbc:ID><cbc:InvoicedQuantity unitCode="H87">2.000</cbc:InvoicedQuantity>
    <cbc:LineExtensionAmount currencyID="EUR">100.00</cbc:LineExtensionAmount>
    <cac:Item><cbc:Name>Widget</cbc:Name><cac:ClassifiedTaxCategory><cbc:ID>S</cbc:ID><cbc:Percent>19</cbc:Percent></cac:ClassifiedTaxCategory></cac:Item>
    <cac:Price><cbc:PriceAmount currencyID="EUR">50.0000</cbc:PriceAmount></cac:Price></cac:InvoiceLine>
</Invoice>"#;

    #[test]
    fn ubl_invoices_map_onto_the_schema() {
        let inv = parse(UBL.as_bytes()).expect("valid UBL");
        assert_eq!(inv.invoice_number.as_deref(), Some("INV-7"));
        assert_eq!(inv.issue_date, NaiveDate::from_ymd_opt(2024, 5, 2));
        assert_eq!(inv.due_date, NaiveDate::from_ymd_opt(2024, 6, 1));
        assert_eq!(inv.currency.as_deref(), Some("EUR"));
        let seller = inv.seller.expect("seller");
        assert_eq!(seller.name.as_deref(), Some("Seller GmbH"));
        assert_eq!(seller.vat_id.as_deref(), Some("DE123456789"));
        assert_eq!(seller.postcode.as_deref(), Some("10115"));
        assert_eq!(inv.totals.grand_total.map(|d| d.to_string()).as_deref(), Some("119.00"));
        assert_eq!(inv.totals.tax_total.map(|d| d.to_string()).as_deref(), Some("19.00"));
        assert_eq!(inv.tax_breakdown.len(), 1);
        assert_eq!(inv.lines[0].net_price.map(|d| d.to_string()).as_deref(), Some("50.0000"));
        assert_eq!(inv.lines[0].unit.as_deref(), Some("H87"));
        assert_eq!(inv.source.as_deref(), Some("einvoice"));
    }

    /// A CII invoice around the given line items and header settlement content (payment terms, summation).
    fn cii(lines: &str, settlement: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<rsm:CrossIndustryInvoice xmlns:rsm="urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
  xmlns:ram="urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
  xmlns:udt="urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100">
  <rsm:ExchangedDocument><ram:ID>R-1</ram:ID><ram:TypeCode>380</ram:TypeCode></rsm:ExchangedDocument>
  <rsm:SupplyChainTradeTransaction>{lines}
    <ram:ApplicableHeaderTradeSettlement><ram:InvoiceCurrencyCode>EUR</ram:InvoiceCurrencyCode>{settlement}
    </ram:ApplicableHeaderTradeSettlement>
  </rsm:SupplyChainTradeTransaction>
</rsm:CrossIndustryInvoice>"#
        )
    }

    /// A payment term due on `due` (`YYYYMMDD`), with a cash discount when `discount`.
    fn terms(due: &str, discount: bool) -> String {
        let discount = if discount {
            "<ram:ApplicableTradePaymentDiscountTerms><ram:CalculationPercent>2.00</ram:CalculationPercent></ram:ApplicableTradePaymentDiscountTerms>"
        } else {
            ""
        };
        format!(
            r#"<ram:SpecifiedTradePaymentTerms><ram:DueDateDateTime><udt:DateTimeString format="102">{due}</udt:DateTimeString></ram:DueDateDateTime>{discount}</ram:SpecifiedTradePaymentTerms>"#
        )
    }

    #[test]
    fn the_due_date_is_the_net_payment_date_among_several_payment_terms() {
        let due = |settlement: String| parse(cii("", &settlement).as_bytes()).expect("valid CII").due_date;
        let day = |d| NaiveDate::from_ymd_opt(2026, 6, d);
        // EXTENDED: a cash discount until the 6th, the net amount due on the 13th, in either order.
        assert_eq!(due(terms("20260606", true) + &terms("20260613", false)), day(13));
        assert_eq!(due(terms("20260613", false) + &terms("20260606", true)), day(13));
        // Partial payments: the first net due date.
        assert_eq!(due(terms("20260620", false) + &terms("20260610", false)), day(10));
        // A single term is BT-9 whatever else it says; so is the first one when none is net.
        assert_eq!(due(terms("20260606", true)), day(6));
        assert_eq!(due(terms("20260606", true) + &terms("20260603", true)), day(6));
        assert_eq!(due(String::new()), None);
    }

    /// A line item with an id, an optional parent and subtype (BT-X-304, BT-X-8) and a net amount.
    fn item(id: &str, parent: Option<&str>, subtype: Option<&str>, total: &str) -> String {
        let parent = parent.map(|p| format!("<ram:ParentLineID>{p}</ram:ParentLineID>")).unwrap_or_default();
        let subtype =
            subtype.map(|s| format!("<ram:LineStatusReasonCode>{s}</ram:LineStatusReasonCode>")).unwrap_or_default();
        format!(
            r#"<ram:IncludedSupplyChainTradeLineItem>
  <ram:AssociatedDocumentLineDocument><ram:LineID>{id}</ram:LineID>{parent}{subtype}</ram:AssociatedDocumentLineDocument>
  <ram:SpecifiedTradeProduct><ram:Name>Item {id}</ram:Name></ram:SpecifiedTradeProduct>
  <ram:SpecifiedLineTradeSettlement><ram:SpecifiedTradeSettlementLineMonetarySummation>
    <ram:LineTotalAmount>{total}</ram:LineTotalAmount></ram:SpecifiedTradeSettlementLineMonetarySummation></ram:SpecifiedLineTradeSettlement>
</ram:IncludedSupplyChainTradeLineItem>"#
        )
    }

    #[test]
    fn a_group_s_sub_lines_are_not_invoice_lines() {
        let lines = [
            item("1", None, Some("GROUP"), "150.00"),
            item("1.1", Some("1"), Some("DETAIL"), "100.00"),
            item("1.2", Some("1"), Some("GROUP"), "50.00"),
            item("1.2.1", Some("1.2"), Some("DETAIL"), "50.00"),
            item("2", None, Some("DETAIL"), "30.00"),
            item("2.1", Some("2"), Some("INFORMATION"), "0.00"),
            item("3", None, None, "20.00"),
        ]
        .concat();
        let inv = parse(cii(&lines, "").as_bytes()).expect("valid CII");
        let ids: Vec<&str> = inv.lines.iter().filter_map(|l| l.id.as_deref()).collect();
        assert_eq!(ids, ["1", "2", "3"], "the top-level items");
        let sum: Decimal = inv.lines.iter().filter_map(|l| l.line_total).sum();
        assert_eq!(sum.to_string(), "200.00", "the lines add up to BT-106 once");

        // CII's nested sub-item is part of its line, not a line of the invoice.
        let nested = item("1", None, None, "10.00").replace(
            "</ram:SpecifiedLineTradeSettlement>",
            "</ram:SpecifiedLineTradeSettlement><ram:IncludedSubordinateTradeLineItem><ram:ID>1.1</ram:ID></ram:IncludedSubordinateTradeLineItem>",
        );
        assert!(nested.contains("IncludedSubordinateTradeLineItem"));
        assert_eq!(parse(cii(&nested, "").as_bytes()).expect("valid CII").lines.len(), 1);
    }

    #[test]
    fn xrechnung_sub_invoice_lines_are_not_invoice_lines() {
        let sub = r#"<cac:SubInvoiceLine><cbc:ID>1.1</cbc:ID><cbc:InvoicedQuantity unitCode="H87">1</cbc:InvoicedQuantity>
      <cbc:LineExtensionAmount currencyID="EUR">100.00</cbc:LineExtensionAmount><cac:Item><cbc:Name>Part</cbc:Name></cac:Item></cac:SubInvoiceLine>
    </cac:InvoiceLine>"#;
        let ubl = UBL.replacen("</cac:InvoiceLine>", sub, 1);
        assert_ne!(ubl, UBL);
        let inv = parse(ubl.as_bytes()).expect("valid UBL");
        assert_eq!(inv.lines.len(), 1);
        assert_eq!(inv.lines[0].name.as_deref(), Some("Widget"));
    }

    #[test]
    fn the_amount_due_follows_br_co_16_when_the_document_does_not_state_it() {
        let due = |summation: &str| {
            let settlement = format!(
                "<ram:SpecifiedTradeSettlementHeaderMonetarySummation>{summation}</ram:SpecifiedTradeSettlementHeaderMonetarySummation>"
            );
            parse(cii("", &settlement).as_bytes()).expect("valid CII").totals.due_payable.map(|d| d.to_string())
        };
        // ZUGFeRD 1.0 BASIC has no element for BT-115: it is the total with VAT.
        assert_eq!(due("<ram:GrandTotalAmount>59.50</ram:GrandTotalAmount>").as_deref(), Some("59.50"));
        // Less what was paid, plus the rounding amount.
        let summation =
            "<ram:GrandTotalAmount>100.00</ram:GrandTotalAmount><ram:TotalPrepaidAmount>30.00</ram:TotalPrepaidAmount>\
            <ram:RoundingAmount>0.01</ram:RoundingAmount>";
        assert_eq!(due(summation).as_deref(), Some("70.01"));
        // A stated amount is taken as written, and nothing is made up without a total.
        let stated =
            "<ram:GrandTotalAmount>100.00</ram:GrandTotalAmount><ram:DuePayableAmount>90.00</ram:DuePayableAmount>";
        assert_eq!(due(stated).as_deref(), Some("90.00"));
        assert_eq!(due("<ram:TaxTotalAmount>9.50</ram:TaxTotalAmount>"), None);

        let ubl = UBL.replace("<cbc:PayableAmount currencyID=\"EUR\">119.00</cbc:PayableAmount>", "");
        assert_ne!(ubl, UBL);
        let inv = parse(ubl.as_bytes()).expect("valid UBL");
        assert_eq!(inv.totals.due_payable.map(|d| d.to_string()).as_deref(), Some("119.00"));
    }

    #[test]
    fn other_xml_and_broken_xml_are_refused() {
        for bad in ["<html><body/></html>", "<Invoice><ID>1</Invoice>", "<!DOCTYPE x [<!ENTITY a \"b\">]><Invoice/>"] {
            let err = parse(bad.as_bytes()).expect_err(bad);
            assert_eq!(err.code(), "invalid_xml", "{bad}");
        }
    }
}
