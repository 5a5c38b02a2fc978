//! The adapter registry's use cases that reach beyond it.

use anyhow::Result;

use crate::app::App;

/// Unregisters adapter `id`, drops it from the loaded generator's cache, and forgets its
/// pricing: a different adapter registered later under the same name must not pay the first
/// one's owner. False when no adapter has that id.
pub async fn remove(app: &App, id: &str) -> Result<bool> {
    if !app.adapters()?.remove(id)? {
        return Ok(false);
    }
    if let Some(local) = app.loaded_generator() {
        local.adapter_cache().evict(id)?;
    }
    app.ledger().clear_adapter_pricing(id).await?;
    Ok(true)
}
