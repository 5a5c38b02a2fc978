//! Helpers shared by the benchmark binaries: BEIR qrels, TREC runs, IR metrics, random LoRA
//! adapters.
//! Metrics follow trec_eval / pytrec_eval (as BEIR reports them): gain = relevance grade,
//! log2 discount, ideal DCG from the judged documents; a query with no relevant documents is
//! skipped.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// query id -> document id -> relevance.
pub type Qrels = HashMap<String, HashMap<String, u32>>;
/// query id -> ranked `(document id, score)`.
pub type Run = HashMap<String, Vec<(String, f32)>>;

/// Reads BEIR `qrels/*.tsv` (`query-id<TAB>corpus-id<TAB>score`, with a header line).
pub fn read_qrels(path: &Path) -> Result<Qrels> {
    let body = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut qrels = Qrels::new();
    for (i, line) in body.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        if i == 0 && fields.first().is_some_and(|f| f.contains("query")) {
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let [query, doc, score] = fields[..] else {
            bail!("{}:{}: expected 3 tab-separated fields", path.display(), i + 1)
        };
        let score: u32 = score.trim().parse().with_context(|| format!("{}:{}: bad score", path.display(), i + 1))?;
        if score > 0 {
            qrels.entry(query.to_string()).or_default().insert(doc.to_string(), score);
        }
    }
    Ok(qrels)
}

/// Reads a TREC run file (`qid Q0 docid rank score tag`).
pub fn read_trec_run(path: &Path) -> Result<Run> {
    let body = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut run = Run::new();
    for (i, line) in body.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [qid, _, doc, _, score, ..] = fields[..] else {
            bail!("{}:{}: not a TREC run line", path.display(), i + 1)
        };
        run.entry(qid.to_string()).or_default().push((doc.to_string(), score.parse()?));
    }
    for ranked in run.values_mut() {
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    }
    Ok(run)
}

pub fn ndcg_at(ranked: &[(String, f32)], relevant: &HashMap<String, u32>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, (doc, _))| relevant.get(doc).copied().unwrap_or(0) as f64 / (i as f64 + 2.0).log2())
        .sum();
    let mut ideal: Vec<u32> = relevant.values().copied().collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, g)| *g as f64 / (i as f64 + 2.0).log2()).sum();
    if idcg > 0.0 { dcg / idcg } else { 0.0 }
}

pub fn recall_at(ranked: &[(String, f32)], relevant: &HashMap<String, u32>, k: usize) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    let hits = ranked.iter().take(k).filter(|(doc, _)| relevant.contains_key(doc)).count();
    hits as f64 / relevant.len() as f64
}

/// Mean nDCG@10 and Recall@100 of `run` over the judged queries.
pub fn evaluate(run: &Run, qrels: &Qrels) -> (f64, f64) {
    let empty = Vec::new();
    let (mut ndcg, mut recall) = (0.0, 0.0);
    for (qid, relevant) in qrels {
        let ranked = run.get(qid).unwrap_or(&empty);
        ndcg += ndcg_at(ranked, relevant, 10);
        recall += recall_at(ranked, relevant, 100);
    }
    let n = qrels.len().max(1) as f64;
    (ndcg / n, recall / n)
}

/// A random PEFT adapter of `rank` on every projection of every layer of a model with `config`
/// (values N(0, 0.02): an adapter's cost, not its answers, is what the benchmarks measure).
pub fn write_random_adapter(dir: &Path, config: &tributary_generator::ModelConfig, rank: usize) -> Result<()> {
    use candle_core::{Device, Tensor};
    use tributary_generator::Projection;
    std::fs::create_dir_all(dir)?;
    let mut tensors = HashMap::new();
    for layer in 0..config.num_layers {
        for p in Projection::ALL {
            let (input, output) = p.shape(config);
            let block =
                if matches!(p, Projection::Gate | Projection::Up | Projection::Down) { "mlp" } else { "self_attn" };
            let name = format!("base_model.model.model.layers.{layer}.{block}.{}", p.peft_name());
            tensors.insert(format!("{name}.lora_A.weight"), Tensor::randn(0f32, 0.02, (rank, input), &Device::Cpu)?);
            tensors.insert(format!("{name}.lora_B.weight"), Tensor::randn(0f32, 0.02, (output, rank), &Device::Cpu)?);
        }
    }
    candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors"))?;
    let modules: Vec<&str> = Projection::ALL.iter().map(|p| p.peft_name()).collect();
    let config = serde_json::json!({"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": modules});
    std::fs::write(dir.join("adapter_config.json"), config.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(docs: &[&str]) -> Vec<(String, f32)> {
        docs.iter().enumerate().map(|(i, d)| (d.to_string(), 10.0 - i as f32)).collect()
    }

    #[test]
    fn metrics_match_hand_computed_values() {
        let rel: HashMap<String, u32> = [("a".to_string(), 1), ("b".to_string(), 1)].into();
        assert!((ndcg_at(&ranked(&["a", "b", "x"]), &rel, 10) - 1.0).abs() < 1e-12);
        // Relevant at ranks 2 and 3: (1/log2(3) + 1/log2(4)) / (1 + 1/log2(3)).
        let expected = (1.0 / 3f64.log2() + 0.5) / (1.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at(&ranked(&["x", "a", "b"]), &rel, 10) - expected).abs() < 1e-12);
        assert_eq!(recall_at(&ranked(&["x", "a"]), &rel, 100), 0.5);
        assert_eq!(ndcg_at(&ranked(&["x"]), &rel, 10), 0.0);
    }
}
