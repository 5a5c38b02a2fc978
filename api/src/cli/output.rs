//! What several commands print the same way: JSON, passages, an answer's sources, a receipt.

use anyhow::Result;
use tributary_attribution::{PaidBy, Receipt, ReceiptPayment};
use tributary_generator::Answer;
use tributary_retriever::Passage;

/// Pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn print_receipt(receipt: &Receipt) {
    let paid_by = match &receipt.payment {
        Some(ReceiptPayment { paid_by: PaidBy::Unpaid, .. }) => "unpaid: free, credits no one".to_string(),
        Some(ReceiptPayment { payer: Some(payer), .. }) => format!("paid by {payer}"),
        Some(ReceiptPayment { payer: None, .. }) | None => "paid by no one (recorded before payments)".to_string(),
    };
    println!("receipt {}  fee {}  {paid_by}  ({} weighting)", receipt.id, receipt.fee, receipt.weighting.as_str());
    for c in &receipt.credits {
        let chunk = c.chunk_id.as_deref().map(|id| format!("  chunk {}", &id[..12.min(id.len())])).unwrap_or_default();
        println!("  {:>28}  {:<20} {}{chunk}", c.amount, c.role.as_str(), c.account);
    }
    for t in &receipt.trained {
        let examples = t.examples.len();
        println!(
            "  trained on chunk {} of {} ({} of adapter {}, weight {})",
            &t.chunk_id[..12.min(t.chunk_id.len())],
            t.datanet,
            if examples == 1 {
                "1 influential example".to_string()
            } else {
                format!("{examples} influential examples")
            },
            t.adapter,
            t.weight
        );
    }
}

pub fn print_passages(passages: &[Passage]) {
    if passages.is_empty() {
        println!("no passages found");
    }
    for (n, p) in passages.iter().enumerate() {
        println!(
            "[{}] score {:.3}  {}  bytes {}..{}  datanet {}\n    contributor {}\n    {}\n",
            n + 1,
            p.score,
            p.document,
            p.start,
            p.end,
            p.datanet,
            p.contributor,
            p.text.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
}

/// The numbered sources an answer cites, with who gets the credit.
pub fn print_sources(answer: &Answer) {
    if answer.draft.is_some() {
        println!("Checked against the passages, the answer is:\n  {}", answer.answer);
    }
    for sentence in answer.sentences.iter().filter(|s| !s.unsupported_facts.is_empty()) {
        println!(
            "  unsupported: {:?} states {} that no passage it could cite holds",
            sentence.text,
            sentence.unsupported_facts.join(", ")
        );
    }
    if !answer.grounded {
        println!("(no passage supports this answer: nobody is credited)");
    }
    for c in &answer.citations {
        println!(
            "  [{}] {} bytes {}..{}  datanet {}  contributor {}",
            c.n, c.document, c.start, c.end, c.datanet, c.contributor
        );
    }
    let s = &answer.stats;
    println!(
        "  citations: {} of {} sentences by marker, {} post hoc, {} unsupported ({} by the fact check); \
         {} markers dropped; {} repaired, {} quoted, {} left out",
        s.marker,
        s.sentences,
        s.post_hoc,
        s.unsupported,
        s.fact_failures,
        s.dropped_out_of_range + s.dropped_unsupported,
        s.repaired,
        s.quoted,
        s.dropped
    );
}
