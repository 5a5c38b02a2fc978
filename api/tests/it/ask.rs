//! `tributary ask` and `tributary adapter` on the sample Datanet, with the real SmolLM2 model.

use crate::{ALICE, run_ok, tributary};

fn fails(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().expect("tributary runs");
    assert!(!out.status.success(), "{cmd:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn ask_answers_from_the_passage_it_cites() {
    let dir = tempfile::tempdir().unwrap();
    let demo = run_ok(tributary(dir.path()).arg("demo"));
    assert!(demo.contains("Missouri") && demo.contains("Sources:"), "{demo}");

    let question = "Which river is the longest tributary in North America?";
    let out = run_ok(tributary(dir.path()).args(["ask", "--json", "--datanet", "rivers-demo", question]));
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(answer["answer"].as_str().unwrap().contains("Missouri"), "{answer}");
    assert_eq!(answer["grounded"], true);
    assert_eq!(answer["model"], "Smollm2 135M 8k Lc100K Mix1 Ep2");
    assert!(answer["adapter"].is_null());
    let citations = answer["citations"].as_array().unwrap();
    assert!(!citations.is_empty(), "{answer}");
    // Every citation names a real chunk: the one search returns for the question, credited to alice.
    let found = run_ok(tributary(dir.path()).args(["search", "--json", "--datanet", "rivers-demo", question]));
    let passages: serde_json::Value = serde_json::from_str(&found).unwrap();
    let chunk_ids: Vec<&str> = passages.as_array().unwrap().iter().map(|p| p["chunk_id"].as_str().unwrap()).collect();
    for c in citations {
        assert!(chunk_ids.contains(&c["chunk_id"].as_str().unwrap()), "{c}");
        assert_eq!(c["contributor"], ALICE);
        assert!(c["start"].as_u64().unwrap() < c["end"].as_u64().unwrap());
    }
    let sentences = answer["sentences"].as_array().unwrap();
    assert!(sentences.iter().any(|s| s["citations"].as_array().unwrap().contains(&citations[0]["n"])));

    // Nothing relevant: the answer says so and credits no one.
    let out = run_ok(tributary(dir.path()).args([
        "ask",
        "--json",
        "--datanet",
        "rivers-demo",
        "How do I bake sourdough bread?",
    ]));
    let none: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(none["answer"], tributary_generator::NOT_FOUND);
    assert_eq!(none["grounded"], false);
    assert!(none["citations"].as_array().unwrap().is_empty());

    let err = fails(tributary(dir.path()).args(["ask", "--datanet", "nope", question]));
    assert!(err.contains("nope"), "{err}");
    let err = fails(tributary(dir.path()).args(["ask", "--datanet", "rivers-demo", "--adapter", "legal", question]));
    assert!(err.contains("legal") && err.contains("not registered"), "{err}");
}

#[test]
fn adapters_are_checked_before_they_are_registered() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run_ok(tributary(dir.path()).args(["adapter", "list"])).contains("no adapters"));
    let bad = dir.path().join("bad-adapter");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("adapter_config.json"), r#"{"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}"#)
        .unwrap();
    std::fs::write(bad.join("adapter_model.safetensors"), b"not safetensors").unwrap();
    let err = fails(tributary(dir.path()).args(["adapter", "add", "bad"]).arg(&bad));
    assert!(err.contains("adapter bad") && err.contains("adapter_model.safetensors"), "{err}");
    assert!(run_ok(tributary(dir.path()).args(["adapter", "list", "--json"])).trim() == "[]");
    let err = fails(tributary(dir.path()).args(["adapter", "remove", "bad"]));
    assert!(err.contains("not registered"), "{err}");
}
