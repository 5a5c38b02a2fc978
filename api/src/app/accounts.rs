//! Payers' accounts: balances, grants (`account fund`, deployments without a chain) and sponsor
//! budgets. Deposits on chain are recorded by `onchain::sync`.

use anyhow::Result;
use tributary_attribution::{Amount, Balance, Error as AttributionError, Payer, Transfer};
use tributary_indexer::{Address, Datanet};

use crate::app::App;

/// An amount of money from user input: a positive integer in the token's smallest unit.
pub fn parse_amount(text: &str) -> Result<Amount, AttributionError> {
    let amount: Amount = text
        .trim()
        .parse()
        .map_err(|_| AttributionError::InvalidArgument(format!("{text:?} is not a whole number of base units")))?;
    if amount == 0 || amount > tributary_attribution::policy::MAX_PRICE * 1_000_000 {
        return Err(AttributionError::InvalidArgument(format!("an amount is 1 to 10^36 base units, not {amount}")));
    }
    Ok(amount)
}

/// `address`'s balance, held money, deposits, grants and spending.
pub async fn balance(app: &App, address: &Address) -> Result<Balance> {
    Ok(app.ledger().balance(&Payer::Address(*address)).await?)
}

/// Grants `amount` to `address` off chain; `key` makes a retried grant land once.
pub async fn grant(app: &App, address: &Address, amount: Amount, key: Option<&str>) -> Result<Transfer> {
    Ok(app.ledger().grant(address, amount, key).await?)
}

/// Moves `amount` from the Datanet owner's balance into the Datanet's sponsor budget, which
/// then pays for unpaid questions on that Datanet alone.
pub async fn sponsor(app: &App, datanet: &Datanet, amount: Amount) -> Result<Transfer> {
    if datanet.owner == Address::ZERO {
        return Err(
            AttributionError::InvalidArgument(format!("Datanet {} has no owner to sponsor it", datanet.name)).into()
        );
    }
    Ok(app.ledger().sponsor(&datanet.owner, datanet.id, amount).await?)
}

/// The Datanet's sponsor budget.
pub async fn sponsor_budget(app: &App, datanet: &Datanet) -> Result<Balance> {
    Ok(app.ledger().balance(&Payer::Sponsor(datanet.id)).await?)
}
