//! A run stopped (or killed) after a checkpoint and resumed ends exactly where an
//! uninterrupted run ends: the same factors to the bit and the same training log.

use candle_core::Device;
use tributary_generator::Architecture;
use tributary_trainer::{Control, FrozenBase, LOG_FILE, Outcome, TrainSettings, train};

use crate::{header, small_lora, tiny_examples, tiny_model};

fn values(outcome: &Outcome) -> Vec<Vec<f32>> {
    outcome.params.vars().iter().map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()).collect()
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), Architecture::Llama);
    let base = FrozenBase::new(&model).unwrap();
    let examples = tiny_examples(5);
    let settings = TrainSettings {
        epochs: 3,
        learning_rate: 1e-2,
        batch_size: 2,
        micro_batch: 1,
        warmup_steps: 2,
        checkpoint_every: 2,
        seed: 42,
        ..TrainSettings::default()
    };
    let head = header(&examples, small_lora(), settings.clone());
    let whole = tempfile::tempdir().unwrap();
    let straight = train(&base, &examples, &head, whole.path(), &mut |_| Control::Continue).unwrap();
    assert_eq!((straight.steps_done, straight.total_steps, straight.resumed_at), (9, 9, None));

    // Stopped at step 4 (a checkpoint), then two more steps logged past it before a "kill"
    // (steps 5 and 6 ran but were never checkpointed), and a half-written checkpoint file.
    let broken = tempfile::tempdir().unwrap();
    let stopped = train(&base, &examples, &head, broken.path(), &mut |s| {
        if s.step == 4 { Control::Stop } else { Control::Continue }
    })
    .unwrap();
    assert_eq!((stopped.steps_done, stopped.finished()), (4, false));
    let log = broken.path().join(LOG_FILE);
    let full = std::fs::read_to_string(whole.path().join(LOG_FILE)).unwrap();
    let extra: Vec<&str> = full.lines().skip(5).take(2).collect();
    let mut partial = std::fs::read_to_string(&log).unwrap();
    partial.push_str(&format!("{}\n{}\n", extra[0], &extra[1][..20]));
    std::fs::write(&log, partial).unwrap();
    std::fs::write(broken.path().join("checkpoint-6.safetensors.tmp"), b"half").unwrap();

    let resumed = train(&base, &examples, &head, broken.path(), &mut |_| Control::Continue).unwrap();
    assert_eq!(resumed.resumed_at, Some(4));
    assert!(resumed.finished());
    assert_eq!(values(&resumed), values(&straight), "factors differ after resuming");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), full, "the logs differ");
    assert_eq!(resumed.log_root, straight.log_root);
    let leftovers: Vec<String> = std::fs::read_dir(broken.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint-"))
        .collect();
    assert_eq!(leftovers, ["checkpoint-9.safetensors"]);

    // Another run's settings never pick up this checkpoint.
    let other = header(&examples, small_lora(), TrainSettings { seed: 43, ..settings });
    let err = train(&base, &examples, &other, broken.path(), &mut |_| Control::Continue).err().unwrap();
    assert!(err.to_string().contains("another run"), "{err}");
    let _ = Device::Cpu;
}
