pub mod bench;
pub mod check;
pub mod inventory;
pub mod serve;
pub mod validate;
