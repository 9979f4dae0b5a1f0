pub mod diagnostic;
pub mod parse;
pub mod source;
pub mod spec;
pub mod validate;
