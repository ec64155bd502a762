pub mod bench;
pub mod check;
pub mod serve;
pub mod validate;
