//! `tributary earnings|receipt|proof` and `verify` without a Datanet: the ledger's records.

use anyhow::{Result, bail};
use tributary_attribution::Earnings;

use super::output::{print_json, print_receipt};
use crate::app::{App, parse_address};

pub async fn earnings(app: &App, address: &str, json: bool) -> Result<()> {
    let account = parse_address(address)?;
    let earnings: Earnings = app.ledger().earnings(&account).await?;
    if json {
        return print_json(&earnings);
    }
    println!(
        "{}: total {} (settled {}, unsettled {}, slashed {})",
        account.to_checksummed(),
        earnings.total,
        earnings.settled,
        earnings.unsettled,
        earnings.slashed
    );
    for d in &earnings.by_datanet {
        println!("  datanet {:<20} {}", d.datanet, d.amount);
    }
    for e in &earnings.by_epoch {
        println!("  epoch {:<6} {}", e.epoch, e.amount);
    }
    for e in &earnings.entries {
        let what = match (&e.receipt_id, &e.chunk_id) {
            (Some(r), Some(c)) => format!("answer {r} chunk {}", &c[..12.min(c.len())]),
            (Some(r), None) => format!("answer {r}"),
            (None, _) => format!("flag {}", e.flag_id.unwrap_or_default()),
        };
        println!("  {:>28}  {:<8} {:<14} {what}", e.amount, e.kind, e.role.as_str());
    }
    Ok(())
}

pub async fn receipt(app: &App, id: &str, json: bool) -> Result<()> {
    let receipt = app.ledger().receipt(id).await?;
    if json {
        print_json(&receipt)
    } else {
        print_receipt(&receipt);
        Ok(())
    }
}

pub async fn proof(app: &App, address: &str, epoch: Option<i64>, json: bool) -> Result<()> {
    let account = parse_address(address)?;
    let proof = app.ledger().proof(&account, epoch).await?;
    if json {
        return print_json(&proof);
    }
    println!("epoch {}  {}  cumulative {}", proof.epoch, account.to_checksummed(), proof.cumulative);
    println!("  root {}\n  leaf {}", proof.root, proof.leaf);
    for p in &proof.proof {
        println!("  {p}");
    }
    Ok(())
}

/// `tributary verify` without a Datanet: the ledger, from the data alone.
pub async fn verify(app: &App) -> Result<()> {
    let report = app.ledger().verify().await?;
    print_json(&report)?;
    if !report.ok() {
        bail!("the ledger does not check: {} problem(s)", report.problems.len());
    }
    Ok(())
}
