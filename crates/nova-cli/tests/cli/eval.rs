//! `nova eval` as a user runs it: over the dev set, and over a folder made to hold a known score.

use std::path::Path;

use serde_json::{json, Value};

use crate::common::{dev_dir, nova};

fn eval_json(dir: &Path, variant: &str) -> Value {
    let out = nova().arg("eval").arg(dir).args(["--variant", variant, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn group<'a>(report: &'a Value, name: &str) -> &'a Value {
    let groups = report["groups"].as_array().unwrap();
    groups.iter().find(|g| g["name"] == name).unwrap_or_else(|| panic!("no group {name} in {groups:?}"))
}

fn document<'a>(report: &'a Value, file: &str) -> &'a Value {
    report["documents"].as_array().unwrap().iter().find(|d| d["file"] == file).unwrap()
}

#[test]
fn eval_scores_each_variant_of_the_dev_set_per_source_and_layout() {
    let dev = dev_dir();
    // Floors for the core fields' accuracy, the accuracy over all fields and the lines' F1, a little under
    // what each variant reaches (core: 94.4%, 95.4%, 100.0%), so that a regression fails.
    for (variant, documents, groups, core_floor, all_fields, lines_f1) in [
        (
            "pdf",
            52,
            &[
                "all",
                "facturx",
                "invoice2data",
                "parsee",
                "business",
                "xml-visualisation",
                "path: e-invoice",
                "path: text",
                "path: OCR",
            ][..],
            0.93,
            0.95,
            0.9,
        ),
        ("noxml", 26, &["all", "facturx", "business", "xml-visualisation", "path: text"][..], 0.92, 0.75, 0.8),
        ("scan", 9, &["all", "facturx", "business", "path: OCR"][..], 0.95, 0.55, 0.65),
    ] {
        let report = eval_json(&dev, variant);
        let docs = report["documents"].as_array().unwrap();
        assert_eq!(docs.len(), documents, "{variant}");
        assert_eq!(report["skipped"].as_u64().unwrap() as usize + documents, 52, "{variant}");
        let names: Vec<&str> =
            report["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
        assert_eq!(names, groups, "{variant}");
        let all = group(&report, "all");
        assert_eq!(all["documents"], documents);
        let core = &all["core"];
        let counts = ["correct", "wrong", "missing"].map(|k| core[k].as_u64().unwrap());
        assert_eq!(counts.iter().sum::<u64>(), core["expected"].as_u64().unwrap(), "{variant}: {core}");
        assert!(core["accuracy"].as_f64().unwrap() >= core_floor, "{variant}: {core}");
        for key in ["precision", "recall", "f1"] {
            assert!(all["lines"].get(key).is_some(), "{variant}: {}", all["lines"]);
        }
        assert!(all["lines"]["f1"].as_f64().unwrap() >= lines_f1, "{variant}: {}", all["lines"]);
        assert!(all["all_fields"]["accuracy"].as_f64().unwrap() >= all_fields, "{variant}: {}", all["all_fields"]);
        assert!(all["all_fields"]["wrong_rate"].as_f64().unwrap() <= 0.05, "{variant}: {}", all["all_fields"]);
        assert!(all["fields"]["totals.grand_total"]["accuracy"].is_number(), "{variant}");
        // Confidences that can be trusted: at most 1% of the values at or above the `auto` threshold are wrong,
        // and there are such values on every path (on a scan, the values its words were read cleanly for).
        let confident = &all["confident"];
        let trusted = confident["correct"].as_u64().unwrap() + confident["wrong"].as_u64().unwrap();
        assert!(trusted > 0, "{variant}: no value is trusted: {confident}");
        assert!(confident["wrong_rate"].as_f64().unwrap() <= 0.01, "{variant}: {confident}");
        let extracted = docs.iter().filter(|d| d["error"].is_null()).count() as u64;
        assert!(all["pages"].as_u64().unwrap() >= extracted, "{variant}");
        // A failed document is reported with its code and counts as every field missing.
        for doc in docs.iter().filter(|d| !d["error"].is_null()) {
            assert!(!doc["error"]["code"].as_str().unwrap().is_empty(), "{doc}");
            assert_eq!((doc["correct"].as_array().unwrap().len(), doc["wrong"].as_array().unwrap().len()), (0, 0));
            assert!(!doc["missing"].as_array().unwrap().is_empty(), "{doc}");
        }
    }

    let out = nova().arg("eval").arg(&dev).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    for row in ["core fields", "all fields", "lines P R F1", "VAT rows P R F1", "pages/s", "totals.grand_total *"] {
        assert!(table.contains(row), "{row} missing from:\n{table}");
    }
    assert!(table.lines().any(|l| l.contains("xml-visualisation") && l.contains("parsee")), "{table}");
}

/// One e-invoice read exactly, the same one against an answer with two wrong values, and a broken file.
#[test]
fn eval_counts_exact_values_right_altered_answers_wrong_and_failures_missing() {
    let dev = dev_dir().join("facturx");
    let tmp = tempfile::tempdir().unwrap();
    let pdf = std::fs::read(dev.join("mustang__validV2PDF.pdf")).unwrap();
    let answer: Value =
        serde_json::from_slice(&std::fs::read(dev.join("mustang__validV2PDF.expected.json")).unwrap()).unwrap();
    let write = |name: &str, bytes: &[u8], answer: &Value| {
        std::fs::write(tmp.path().join(format!("{name}.pdf")), bytes).unwrap();
        std::fs::write(tmp.path().join(format!("{name}.expected.json")), answer.to_string()).unwrap();
    };
    write("exact", &pdf, &answer);
    let mut altered = answer.clone();
    altered["fields"]["totals"]["grand_total"] = json!("1.00");
    altered["fields"]["seller"]["name"] = json!("Somebody Else AG");
    write("altered", &pdf, &altered);
    write("broken", b"%PDF-1.7\nthis is not a PDF body", &answer);
    std::fs::write(tmp.path().join("unscored.expected.json"), answer.to_string()).unwrap();

    let report = eval_json(tmp.path(), "pdf");
    assert_eq!(report["skipped"], 1, "an answer without its input is skipped");
    let scored = answer["fields"]["lines"].as_array().unwrap().len();
    assert!(scored > 0);

    let exact = document(&report, "exact.pdf");
    assert!(exact["error"].is_null(), "{exact}");
    assert_eq!(
        (exact["wrong"].as_array().unwrap().len(), exact["missing"].as_array().unwrap().len()),
        (0, 0),
        "{exact}"
    );
    let fields = exact["correct"].as_array().unwrap().len();
    assert!(fields >= 20, "{exact}");
    assert_eq!(exact["lines"], json!({"expected": scored, "predicted": scored, "matched": scored}));

    let altered = document(&report, "altered.pdf");
    assert_eq!(altered["wrong"], json!(["seller.name", "totals.grand_total"]), "{altered}");
    assert_eq!(altered["correct"].as_array().unwrap().len(), fields - 2);

    let broken = document(&report, "broken.pdf");
    assert_eq!(broken["error"]["code"], "invalid_pdf", "{broken}");
    assert_eq!(broken["missing"].as_array().unwrap().len(), fields);

    let all = group(&report, "all");
    assert_eq!(all["documents"], 3);
    assert_eq!(all["failed"], 1);
    assert_eq!(
        all["core"],
        json!({"expected": 15, "correct": 8, "wrong": 2, "missing": 5,
        "accuracy": 8.0 / 15.0, "wrong_rate": 2.0 / 15.0})
    );
    assert_eq!(all["fields"]["totals.grand_total"]["correct"], 1);
    assert_eq!(all["lines"]["recall"], json!(2.0 / 3.0));
    assert_eq!(all["lines"]["precision"], json!(1.0));
}

#[test]
fn eval_of_a_folder_without_answers_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let out = nova().arg("eval").arg(tmp.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected.json"));
}

#[test]
fn eval_with_templates_says_which_documents_a_template_read() {
    let dev = dev_dir().join("invoice2data");
    let tmp = tempfile::tempdir().unwrap();
    for file in ["basic.txt", "basic.expected.json", "lines-basic.txt", "lines-basic.expected.json"] {
        std::fs::copy(dev.join(file), tmp.path().join(file)).unwrap();
    }
    let templates = tempfile::tempdir().unwrap();
    let template = "issuer: Basic Test\nkeywords: ['Issuer: Basic Test']\nfields:\n  \
                    invoice_number: Invoice number:\\s+(\\S+)\n  amount: Total:\\s+(\\d+\\.\\d\\d)\n  \
                    date: Issue date:\\s+(\\S+)\n";
    std::fs::write(templates.path().join("basic.yml"), template).unwrap();
    std::fs::write(templates.path().join("broken.yml"), "keywords: [").unwrap();

    let out =
        nova().arg("eval").arg(tmp.path()).arg("--templates").arg(templates.path()).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.yml"), "a template that does not load is named");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["templates"].as_str().unwrap().ends_with("1 loaded, 1 not loaded"), "{}", report["templates"]);
    let basic = document(&report, "basic.txt");
    assert_eq!(basic["extracted_by"], "template");
    assert_eq!(basic["template"], "basic.yml");
    assert_eq!(basic["wrong"], json!([]), "{basic}");
    let other = document(&report, "lines-basic.txt");
    assert_eq!(other["extracted_by"], "text", "no template matched: the generic rules");
    assert!(other["template"].is_null());

    let generic = eval_json(tmp.path(), "pdf");
    assert!(generic["templates"].is_null(), "without --templates the rules run alone");
    assert_eq!(document(&generic, "basic.txt")["extracted_by"], "text");
}
