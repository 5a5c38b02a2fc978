//! PEFT LoRA adapters: loading and checking them, planning a batch's deltas, the registry and
//! the cache of loaded adapters.

pub(crate) mod lora;
pub(crate) mod registry;
