//! The candle embedder against sentence-transformers' own output (recorded fixture).

use tributary_indexer::{BertEmbedder, Embedder};

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

#[test]
fn matches_sentence_transformers() {
    let fixture: Fixture =
        serde_json::from_str(include_str!("../fixtures/minilm_reference.json")).expect("fixture parses");
    let embedder = BertEmbedder::load(&crate::model_dir()).unwrap();
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
fn counts_tokens_without_truncation() {
    let embedder = BertEmbedder::load(&crate::model_dir()).unwrap();
    let long = "river ".repeat(600);
    assert_eq!(embedder.count_tokens(&long), 600);
    assert_eq!(embedder.count_tokens("A tributary joins."), 4);
}
