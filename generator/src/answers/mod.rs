//! Cited answers from retrieved passages.

pub(crate) mod answer;
pub(crate) mod cite;
pub(crate) mod evidence;
pub(crate) mod facts;
pub(crate) mod sentences;
pub(crate) mod words;
