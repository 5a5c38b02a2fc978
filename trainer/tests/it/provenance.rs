//! The training log names the data that trained an adapter: its root verifies, and any change
//! to it (a loss, an example, a dropped or reordered step) fails.

use tributary_generator::Architecture;
use tributary_trainer::{Control, FrozenBase, LOG_FILE, TrainSettings, log_root, train, verify_log};

use crate::{header, small_lora, tiny_examples, tiny_model};

#[test]
fn the_training_root_verifies_and_a_tampered_log_fails() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), Architecture::Llama);
    let base = FrozenBase::new(&model).unwrap();
    let examples = tiny_examples(3);
    let settings = TrainSettings { epochs: 2, batch_size: 2, learning_rate: 1e-3, ..TrainSettings::default() };
    let head = header(&examples, small_lora(), settings);
    let run = tempfile::tempdir().unwrap();
    let outcome = train(&base, &examples, &head, run.path(), &mut |_| Control::Continue).unwrap();
    let path = run.path().join(LOG_FILE);
    let verified = verify_log(&path, Some(&outcome.log_root)).unwrap();
    assert_eq!(verified.header, head);
    assert_eq!(verified.steps.len(), 4);
    // Every example is read once an epoch, and its chunks are named where it is.
    let mut seen: Vec<&String> = verified.steps[..2].iter().flat_map(|s| &s.examples).collect();
    seen.sort();
    let mut all: Vec<&String> = head.examples.iter().collect();
    all.sort();
    assert_eq!(seen, all);
    assert!(verified.steps.iter().all(|s| !s.chunks.is_empty() && s.chunks.iter().all(|c| c.starts_with("chunk-"))));

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let tampered = |lines: Vec<String>| {
        let bad = run.path().join("tampered.jsonl");
        std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
        verify_log(&bad, Some(&outcome.log_root)).unwrap_err().to_string()
    };
    let owned = || lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    // A loss changed.
    let mut changed = owned();
    changed[2] = changed[2].replacen("\"loss\":", "\"loss\":1", 1);
    assert!(tampered(changed).contains("root"));
    // A step dropped; two steps swapped; an example replaced by another's hash.
    let mut dropped = owned();
    dropped.remove(3);
    assert!(tampered(dropped).contains("root"));
    let mut swapped = owned();
    swapped.swap(1, 2);
    assert!(tampered(swapped).contains("root"));
    let mut replaced = owned();
    replaced[1] = replaced[1].replace(&head.examples[0], &head.examples[1]);
    if replaced[1] != lines[1] {
        assert!(tampered(replaced).contains("root"));
    }
    // A log rewritten with a root of its own still has to be consistent: a step naming an
    // example the header does not list fails even without the expected root.
    let mut forged = owned();
    forged[1] = forged[1]
        .replace(&head.examples[0], &"ff".repeat(32))
        .replace(&head.examples[1], &"ff".repeat(32))
        .replace(&head.examples[2], &"ff".repeat(32));
    let bad = run.path().join("forged.jsonl");
    std::fs::write(&bad, forged.join("\n") + "\n").unwrap();
    let err = verify_log(&bad, None).unwrap_err().to_string();
    assert!(err.contains("not in the header"), "{err}");
    assert_eq!(log_root(&lines), outcome.log_root);
}
