pub mod check;
pub mod validate;
