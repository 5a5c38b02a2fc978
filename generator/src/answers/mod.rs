//! Cited answers from retrieved passages.

pub(crate) mod answer;
pub(crate) mod cite;
