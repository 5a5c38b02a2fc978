//! `tributary eval` on the project's factual QA dev set (benches/data/facts): its documents
//! ingested under their contributors, the first questions answered by SmolLM2 and scored (the
//! whole set runs in benches/facts.sh).

use std::collections::BTreeMap;
use std::path::PathBuf;

use tributary::app::eval::states;

use crate::{run_ok, tributary};

fn dev_set() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benches/data/facts")
}

#[test]
fn values_are_stated_in_any_writing() {
    assert!(states("The Varne flows 212 km to the sea.", "212 kilometres"));
    assert!(!states("The Varne rises at 1,840 metres.", "212 kilometres"));
    assert!(states("It was mapped by Dr. Harriet Quell.", "Harriet Quell"));
    assert!(!states("It was mapped by Harriet Monkton.", "Harriet Quell"));
    assert!(states("The fee is £6.50.", "£6.50"));
    assert!(states("It opened on 9 May 1938.", "9 May 1938"));
    assert!(!states("It opened on 9 May 1939.", "9 May 1938"));
}

#[test]
fn eval_scores_answers_on_the_dev_set() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(tributary(dir.path()).args(["datanet", "create", "facts"]));
    let contributors: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(dev_set().join("contributors.json")).unwrap()).unwrap();
    let mut by_contributor: BTreeMap<&str, Vec<PathBuf>> = BTreeMap::new();
    for (file, contributor) in &contributors {
        by_contributor.entry(contributor).or_default().push(dev_set().join("documents").join(file));
    }
    for (contributor, files) in &by_contributor {
        run_ok(tributary(dir.path()).args(["ingest", "--datanet", "facts", "--contributor", contributor]).args(files));
    }
    let out = dir.path().join("results.jsonl");
    let questions = dev_set().join("questions.jsonl");
    let report = run_ok(tributary(dir.path()).args(["eval", "--datanet", "facts", "--limit", "6", "--json"]).args([
        "--questions".as_ref(),
        questions.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["questions"], 6, "{report}");
    // No wrong fact is marked grounded; most of these are answered right from their document.
    assert_eq!(report["wrong_grounded"], 0, "{report}");
    assert!(report["right_and_cited"].as_f64().unwrap() >= 0.5, "{report}");
    assert_eq!(report["citation_precision"], 1.0, "{report}");
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 6);
    // Each question's document, by id.
    let documents: BTreeMap<String, serde_json::Value> = std::fs::read_to_string(&questions)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|q| (q["id"].as_str().unwrap().to_string(), q["document"].clone()))
        .collect();
    for line in &lines {
        if line["outcome"] == "right_and_cited" {
            // Cited to the question's own document, credited to its contributor.
            let document = &documents[line["id"].as_str().unwrap()];
            assert!(line["cited_documents"].as_array().unwrap().iter().any(|d| d == document), "{line}");
        }
    }
}
