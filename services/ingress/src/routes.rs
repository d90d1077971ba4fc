//! One module per resource; each handler decodes, decides (domain rules) and commits through `store`.

pub mod notifications;
pub mod positions;
pub mod reference;
pub mod submit;
pub mod token;
pub mod trades;
pub mod webhook;
