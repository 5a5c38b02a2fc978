//! Both embedding backends against sentence-transformers' own output (recorded fixture).

use tributary_indexer::{BertEmbedder, EmbedBackend, Embedder, OnnxEmbedder, load_embedder};

#[derive(serde::Deserialize)]
struct Fixture {
    items: Vec<Item>,
}

#[derive(serde::Deserialize)]
struct Item {
    text: String,
    vector: Vec<f32>,
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn matches_reference(embedder: &dyn Embedder) {
    let fixture: Fixture =
        serde_json::from_str(include_str!("../fixtures/minilm_reference.json")).expect("fixture parses");
    assert_eq!(embedder.dimension(), 384);
    let texts: Vec<&str> = fixture.items.iter().map(|i| i.text.as_str()).collect();
    // Batched (with padding) and one at a time must both match.
    let batched = embedder.embed(&texts).unwrap();
    for (item, got) in fixture.items.iter().zip(&batched) {
        let c = cosine(got, &item.vector);
        assert!(c >= 0.999, "cosine {c} for {:?}", &item.text[..item.text.len().min(40)]);
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "not normalized: {norm}");
        let alone = embedder.embed(&[item.text.as_str()]).unwrap();
        assert!(cosine(&alone[0], got) > 0.9999, "padding changed the embedding");
    }
}

#[test]
fn candle_matches_sentence_transformers() {
    matches_reference(&BertEmbedder::load(&crate::model_dir()).unwrap());
}

#[test]
fn onnx_matches_sentence_transformers() {
    matches_reference(&OnnxEmbedder::load(&crate::model_dir(), &crate::onnxruntime()).unwrap());
}

#[test]
fn backends_agree_on_a_mixed_batch() {
    let candle = BertEmbedder::load(&crate::model_dir()).unwrap();
    let onnx = OnnxEmbedder::load(&crate::model_dir(), &crate::onnxruntime()).unwrap();
    assert_eq!(candle.model_name(), onnx.model_name(), "one index must accept vectors from either");
    let long = "A tributary carries sediment downstream. ".repeat(40);
    let texts = ["short", long.as_str(), "Rivers meet at a confluence.", "", "ümlaut and 日本語 text"];
    let (a, b) = (candle.embed(&texts).unwrap(), onnx.embed(&texts).unwrap());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(cosine(x, y) >= 0.999, "text {i}: cosine {}", cosine(x, y));
    }
    assert_eq!(onnx.count_tokens(&long), candle.count_tokens(&long));
}

#[test]
fn backend_choice() {
    assert_eq!("onnx".parse::<EmbedBackend>().unwrap(), EmbedBackend::Onnx);
    assert_eq!("Candle".parse::<EmbedBackend>().unwrap(), EmbedBackend::Candle);
    let err = "tpu".parse::<EmbedBackend>().unwrap_err().to_string();
    assert!(err.contains("tpu") && err.contains("candle"), "{err}");
    // A model directory without onnx/model.onnx: `onnx` is refused, `auto` falls back to candle.
    let bare = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(crate::model_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "onnx" {
            std::os::unix::fs::symlink(entry.path(), bare.path().join(entry.file_name())).unwrap();
        }
    }
    let err = load_embedder(bare.path(), EmbedBackend::Onnx).err().expect("no ONNX file").to_string();
    assert!(err.contains("onnx/model.onnx"), "{err}");
    let fallback = load_embedder(bare.path(), EmbedBackend::Auto).unwrap();
    assert_eq!(fallback.embed(&["river"]).unwrap()[0].len(), 384);
}

#[test]
fn counts_tokens_without_truncation() {
    let embedder = BertEmbedder::load(&crate::model_dir()).unwrap();
    let long = "river ".repeat(600);
    assert_eq!(embedder.count_tokens(&long), 600);
    assert_eq!(embedder.count_tokens("A tributary joins."), 4);
}
