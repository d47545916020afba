//! The template format on small templates written here: loading, matching, each parser, the options, and
//! the merge into the invoice.

use nova_core::Invoice;

use super::load::{python_pattern, python_replacement};
use super::run::Fields;
use super::values::Value;
use super::*;

fn template(yaml: &str) -> Template {
    TemplateSet::parse("test.yml", yaml).unwrap_or_else(|e| panic!("template does not load: {e}"))
}

/// The fields `yaml` finds in `text`, or `None` when it does not match.
fn run(yaml: &str, text: &str) -> Option<Fields> {
    let t = template(yaml);
    t.match_text(text).map(|prepared| t.extract(&prepared))
}

fn text_of(fields: &Fields, name: &str) -> Option<String> {
    fields.get(name).and_then(Value::text)
}

fn num(s: &str) -> Value {
    Value::Number(s.parse().expect("a decimal"))
}

/// Applies `yaml` to `text` over an empty generic result.
fn apply(yaml: &str, text: &str) -> Invoice {
    TemplateSet::from_templates(vec![template(yaml)]).apply(text, Invoice::default())
}

const BASIC: &str = r#"
issuer: Basic Test
keywords: [Basic Test, Invoice number]
fields:
  invoice_number: Invoice number:\s+(\S+)
  date: Issue date:\s+(\d{2}\.\d{2}\.\d{4})
  amount: Total:\s+([\d.,]+)
  amount_untaxed: Net:\s+([\d.,]+)
  static_vat: DE136695976
options:
  currency: CHF
  date_formats: ['%d.%m.%Y']
  decimal_separator: ','
"#;

const BASIC_TEXT: &str =
    "Basic Test GmbH\nInvoice number: RE-2024/17\nIssue date: 03.04.2024\nNet: 1.000,00\nTotal: 1.190,00\n";

#[test]
fn legacy_fields_are_typed_by_their_names() {
    let fields = run(BASIC, BASIC_TEXT).expect("the keywords match");
    assert_eq!(text_of(&fields, "invoice_number").as_deref(), Some("RE-2024/17"));
    assert_eq!(fields.get("date"), Some(&Value::Date(chrono::NaiveDate::from_ymd_opt(2024, 4, 3).expect("date"))));
    assert_eq!(fields.get("amount"), Some(&num("1190.00")));
    assert_eq!(fields.get("amount_untaxed"), Some(&num("1000.00")));
    assert_eq!(text_of(&fields, "vat").as_deref(), Some("DE136695976"), "static_ prefix stripped");
    assert_eq!(text_of(&fields, "currency").as_deref(), Some("CHF"), "options.currency when no field gives one");
    assert_eq!(text_of(&fields, "issuer").as_deref(), Some("Basic Test"));
}

#[test]
fn every_keyword_must_match_and_no_excluded_one() {
    assert!(run(BASIC, "Basic Test only").is_none(), "one keyword missing");
    let excluded = BASIC.replace("options:", "exclude_keywords: Credit\noptions:");
    assert!(run(&excluded, BASIC_TEXT).is_some());
    assert!(run(&excluded, &format!("Credit\n{BASIC_TEXT}")).is_none());
    // A single keyword may be a plain string, and a number.
    assert!(run("keywords: 774-00-01-454\nfields: {}", "NIP 774-00-01-454").is_some());
    assert!(run("keywords: 7740001454\nfields: {}", "NIP 7740001454").is_some());
}

#[test]
fn the_template_fields_go_over_the_generic_result() {
    let mut generic = Invoice { invoice_number: Some("WRONG-1".into()), ..Invoice::default() };
    generic.due_date = chrono::NaiveDate::from_ymd_opt(2024, 5, 3);
    let set = TemplateSet::from_templates(vec![template(BASIC)]);
    let invoice = set.apply(BASIC_TEXT, generic);
    assert_eq!(invoice.source.as_deref(), Some("template"));
    assert_eq!(invoice.invoice_number.as_deref(), Some("RE-2024/17"));
    assert_eq!(invoice.due_date, chrono::NaiveDate::from_ymd_opt(2024, 5, 3), "kept from the generic rules");
    assert_eq!(invoice.issue_date.map(|d| d.to_string()).as_deref(), Some("2024-04-03"));
    assert_eq!(invoice.currency.as_deref(), Some("CHF"));
    let seller = invoice.seller.expect("seller");
    assert_eq!(seller.name.as_deref(), Some("Basic Test"));
    assert_eq!(seller.vat_id.as_deref(), Some("DE136695976"));
    assert_eq!(invoice.totals.grand_total.map(|d| d.to_string()).as_deref(), Some("1190.00"));
    assert_eq!(invoice.totals.tax_basis_total.map(|d| d.to_string()).as_deref(), Some("1000.00"));
    assert_eq!(invoice.confidence.get("invoice_number"), Some(&0.95));
    assert!(invoice.warnings.is_empty(), "{:?}", invoice.warnings);
    // No template matched: the generic result, untouched.
    let untouched = set.apply("some other vendor", Invoice::default());
    assert_eq!(untouched, Invoice::default());
}

#[test]
fn values_that_fail_the_checks_are_left_to_the_generic_rules() {
    let yaml = r#"
keywords: [ACME]
fields:
  invoice_number: Invoice\s+(\w+)
  vat: VAT\s+(\S+)
  iban: IBAN\s+(\S+)
  currency: Currency\s+(\S+)
  amount: Total\s+(\S+)
  amount_untaxed: Net\s+(\S+)
  amount_tax: Tax\s+(\S+)
"#;
    let text = "ACME\nInvoice F\nVAT DE123456789\nIBAN DE00123\nCurrency €\nNet 100.00\nTax 19.00\nTotal 120.00\n";
    let invoice = apply(yaml, text);
    assert_eq!(invoice.invoice_number, None, "no digit: not an invoice number");
    assert_eq!(invoice.seller.as_ref().and_then(|s| s.vat_id.as_deref()), None, "bad check digits");
    assert_eq!(invoice.payment_iban, None, "bad IBAN");
    assert_eq!(invoice.currency.as_deref(), Some("EUR"), "a symbol becomes its code");
    assert_eq!(invoice.totals.grand_total.map(|d| d.to_string()).as_deref(), Some("120.00"));
    assert!(invoice.warnings.iter().any(|w| w.contains("do not add up")), "{:?}", invoice.warnings);
    assert!(invoice.warnings.iter().any(|w| w.contains("required field")), "{:?}", invoice.warnings);
    assert_eq!(invoice.confidence.get("totals.grand_total"), Some(&0.6));
}

#[test]
fn a_generic_total_that_does_not_fit_the_template_total_is_dropped() {
    let yaml = "keywords: [ACME]\nfields:\n  amount: Total\\s+(\\S+)\n";
    let mut generic = Invoice::default();
    generic.totals.tax_basis_total = Some("50.00".parse().expect("decimal"));
    generic.totals.tax_total = Some("9.50".parse().expect("decimal"));
    let set = TemplateSet::from_templates(vec![template(yaml)]);
    let invoice = set.apply("ACME\nTotal 119.00", generic.clone());
    assert_eq!(invoice.totals.tax_basis_total, None);
    assert_eq!(invoice.totals.tax_total, None);
    let invoice = set.apply("ACME\nTotal 59.50", generic);
    assert_eq!(invoice.totals.tax_basis_total.map(|d| d.to_string()).as_deref(), Some("50.00"), "it fits: kept");
}

#[test]
fn regex_parser_types_groups_and_lists() {
    let yaml = r#"
keywords: [Shop]
fields:
  amount:
    parser: regex
    regex: Item\s+(\d+\.\d\d)
    type: float
    group: sum
  date:
    parser: regex
    regex: ['Date (\d{4}-\d\d-\d\d)', 'Datum (\d\d\.\d\d\.\d{4})']
    type: date
    group: last
  note:
    parser: regex
    regex: Note (\w+)
  ref:
    parser: regex
    regex: Ref ([\w-]+)
    replace: ['-', '']
  qty:
    parser: regex
    regex: Qty (.*)
    extract_number: true
    type: int
  two_groups:
    parser: regex
    regex: (Item) (\d+)
  code:
    parser: static
    value: 42
"#;
    let text = "Shop\nItem 1.50\nItem 2.25\nDate 2024-01-02\nDatum 05.01.2024\nNote a\nNote b\nNote a\nRef X-1-2\nQty 12 Stk.\n";
    let fields = run(yaml, text).expect("match");
    assert_eq!(fields.get("amount"), Some(&num("3.75")));
    assert_eq!(fields.get("date").and_then(|d| d.text()).as_deref(), Some("2024-01-05"));
    assert_eq!(fields.get("note"), Some(&Value::List(vec![Value::Text("a".into()), Value::Text("b".into())])));
    assert_eq!(text_of(&fields, "ref").as_deref(), Some("X12"));
    assert_eq!(fields.get("qty"), Some(&num("12")));
    assert!(!fields.contains_key("two_groups"), "several capture groups are refused");
    assert_eq!(text_of(&fields, "code").as_deref(), Some("42"));
}

const LINES_TEXT: &str = "\
Shop
Pos Item           Qty   Price   Total
1   Apples           2    1,50    3,00
    green, organic
2   Pears            1    2,00    2,00
Subtotal
Total 5,00
";

#[test]
fn lines_parser_builds_rows_from_first_and_following_lines() {
    let yaml = r#"
keywords: [Shop]
fields:
  lines:
    parser: lines
    start: Pos\s+Item
    end: Subtotal
    first_line: ^\d+\s+(?P<name>\S+)\s+(?P<qty>\d+)\s+(?P<price_unit>[\d,]+)\s+(?P<price_subtotal>[\d,]+)
    line: ^\s+(?P<name>\S.*)$
    types:
      qty: float
      price_unit: float
      price_subtotal: float
options:
  decimal_separator: ','
"#;
    let invoice = apply(yaml, LINES_TEXT);
    let names: Vec<&str> = invoice.lines.iter().filter_map(|l| l.name.as_deref()).collect();
    assert_eq!(names, ["Apples\ngreen, organic", "Pears"]);
    let totals: Vec<String> = invoice.lines.iter().filter_map(|l| l.line_total.map(|d| d.to_string())).collect();
    assert_eq!(totals, ["3.00", "2.00"]);
    assert_eq!(invoice.lines[0].quantity.map(|d| d.to_string()).as_deref(), Some("2"));
    assert_eq!(invoice.lines[0].net_price.map(|d| d.to_string()).as_deref(), Some("1.50"));
}

#[test]
fn legacy_lines_section_with_last_line_and_several_rules() {
    let yaml = r#"
keywords: [Shop]
fields: {}
lines:
  start: Pos\s+Item
  end: Subtotal
  first_line: ^(?P<id>\d+)\s+(?P<name>\S+)
  last_line: ^\d+\s+\S+\s+\d+\s+[\d,]+\s+(?P<price_subtotal>[\d,]+)
  line: ^\s+(?P<name>\S.*)$
"#;
    let fields = run(yaml, LINES_TEXT).expect("match");
    let Some(Value::Rows(rows)) = fields.get("lines") else { panic!("no rows: {fields:?}") };
    // Each item line opens a row; the same line does not also close it, so the next opening closes it.
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get("name").and_then(Value::text).as_deref(), Some("Apples\ngreen, organic"));

    let rules = r#"
keywords: [Shop]
fields:
  lines:
    parser: lines
    rules:
      - start: Pos\s+Item
        end: Subtotal
        line: ^\d+\s+(?P<name>\S+)
      - start: Subtotal
        end: \Z
        line: ^Total (?P<price_subtotal>\S+)
"#;
    let fields = run(rules, LINES_TEXT).expect("match");
    let Some(Value::Rows(rows)) = fields.get("lines") else { panic!("no rows: {fields:?}") };
    assert_eq!(rows.len(), 3, "two item rows and one total row: {rows:?}");
}

#[test]
fn tables_give_fields_and_groups() {
    let yaml = r#"
keywords: [Shop]
fields: {}
tables:
  - start: Rate\s+Net\s+Tax
    end: End of taxes
    body: (?P<rate>\d+)%\s+(?P<amount_untaxed>[\d.]+)\s+(?P<amount_tax>[\d.]+)
    fields:
      amount_tax:
        group: sum
  - start: Booking ID
    end: Payment
    body: (?P<invoice_number>\w+)\s+(?P<date>\d\d/\d\d/\d{4})
options:
  date_formats: ['%d/%m/%Y']
"#;
    let text = "Shop\nRate   Net     Tax\n19%   100.00  19.00\n7%    10.00   0.70\nEnd of taxes\nBooking ID\nIB42   31/12/2017\nPayment\n";
    let fields = run(yaml, text).expect("match");
    assert_eq!(fields.get("amount_tax"), Some(&num("19.70")));
    assert_eq!(fields.get("amount_untaxed"), Some(&Value::List(vec![num("100.00"), num("10.00")])));
    assert_eq!(text_of(&fields, "invoice_number").as_deref(), Some("IB42"));
    assert_eq!(fields.get("date").and_then(Value::text).as_deref(), Some("2017-12-31"));
}

#[test]
fn options_prepare_the_text() {
    let yaml = r#"
keywords: [acme]
fields:
  invoice_number: invoicenr:(\w+)
options:
  remove_whitespace: true
  remove_accents: true
  lowercase: true
  replace:
    - ['nr\.', 'nr']
"#;
    let fields = run(yaml, "ACMÉ\nInvoice Nr.: AB12").expect("keywords checked on the prepared text too");
    assert_eq!(text_of(&fields, "invoice_number").as_deref(), Some("ab12"));
}

#[test]
fn priority_orders_templates_and_a_complete_match_wins() {
    let low = template("keywords: [ACME]\npriority: 1\nfields:\n  invoice_number: No (\\d+)\n  amount: Total (\\S+)\n  date: Date (\\S+)\n");
    let high = template("issuer: High\nkeywords: [ACME]\npriority: 9\nfields:\n  invoice_number: No (\\d+)\n  amount: Total (\\S+)\n  date: Date (\\S+)\n");
    let text = "ACME\nNo 7\nTotal 1.00\nDate 2024-01-02";
    let set = TemplateSet::from_templates(vec![low, high]);
    assert_eq!(set.find(text).map(|m| m.template), Some("test.yml".to_string()));
    let invoice = set.apply(text, Invoice::default());
    assert_eq!(invoice.seller.and_then(|s| s.name).as_deref(), Some("High"));

    let incomplete = template("issuer: First\nkeywords: [ACME]\npriority: 9\nfields:\n  invoice_number: No (\\d+)\n");
    let complete = template(
        "issuer: Second\nkeywords: [ACME]\nrequired_fields: [invoice_number]\nfields:\n  invoice_number: No (\\d+)\n",
    );
    let set = TemplateSet::from_templates(vec![incomplete, complete]);
    let invoice = set.apply(text, Invoice::default());
    assert_eq!(invoice.seller.and_then(|s| s.name).as_deref(), Some("Second"));
}

#[test]
fn a_repeated_key_keeps_its_last_value_as_in_pyyaml() {
    let fields = run("keywords: [A]\nfields:\n  invoice_number: X(\\d)\n  invoice_number: No (\\d+)\n", "A No 12")
        .expect("match");
    assert_eq!(text_of(&fields, "invoice_number").as_deref(), Some("12"));
}

#[test]
fn broken_templates_fail_with_a_reason() {
    let check = |yaml: &str, want: &str| {
        let err = TemplateSet::parse("bad.yml", yaml).expect_err(yaml).to_string();
        assert!(err.contains(want), "{err:?} should mention {want:?}");
        assert!(err.starts_with("bad.yml"), "{err:?} names the file");
    };
    check("fields: {}", "keywords");
    check("keywords: [A]\nfields:\n  x:\n    parser: magic\n", "unknown parser");
    check("keywords: [A]\nfields:\n  x:\n    parser: regex\n    regex: a\n    type: money\n", "unknown type");
    check("keywords: [A]\nfields:\n  x: (?<=a)b\n", "`x`");
    check("keywords: [A]\noptions:\n  decimal_separator: ';'\n", "decimal_separator");
    check("keywords: [A]\noptions:\n  languages: [english]\n", "two-letter");
    check("keywords: [A\n", "not valid YAML");
}

#[test]
fn python_regex_syntax_is_translated() {
    assert_eq!(python_pattern(r"\d{,3}x{2}y{1,}z{2,4}\Z"), r"\d{0,3}x{2}y{1,}z{2,4}\z");
    assert_eq!(python_pattern(r"a{b}c\{"), r"a\{b}c\{");
    assert_eq!(python_pattern(r"(?P<n>\w+)\\Z"), r"(?P<n>\w+)\\Z");
    assert_eq!(python_replacement(r"\g<a>-\1 $5\n"), "${a}-${1} $$5\n");
}

#[test]
fn a_folder_loads_recursively_and_bad_files_do_not_stop_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("de")).expect("subfolder");
    std::fs::write(dir.path().join("a.yml"), BASIC).expect("write");
    std::fs::write(dir.path().join("de/b.yaml"), "keywords: [B]\nfields: {}").expect("write");
    std::fs::write(dir.path().join("de/c.json"), r#"{"keywords": ["C"], "fields": {"invoice_number": "No (\\d+)"}}"#)
        .expect("write");
    std::fs::write(dir.path().join("broken.yml"), "keywords: [A\n").expect("write");
    std::fs::write(dir.path().join("README.md"), "not a template").expect("write");
    let loaded = TemplateSet::load_dir(dir.path()).expect("the folder reads");
    assert_eq!(loaded.set.len(), 3);
    assert_eq!(loaded.errors.len(), 1);
    assert!(loaded.errors[0].to_string().contains("broken.yml"));
    assert!(TemplateSet::load_dir(&dir.path().join("missing")).is_err());
}
